"""Helpers of the API tests: the real CSMS with its API on 127.0.0.1, tokens, clients."""

from __future__ import annotations

from typing import Any

import httpx

from csms.app import CsmsApp
from csms.auth import Role, hash_user_password
from csms.store.tokens import add_token
from tests.conftest import start_app

PROBLEM = "application/problem+json"


async def start_api_app(db_url: str, **overrides: Any) -> CsmsApp:
    """`csms serve --api-port 0` on 127.0.0.1: the CSMS and its API in one process."""
    overrides.setdefault("api_port", 0)
    return await start_app(db_url, **overrides)


def api_url(app: CsmsApp) -> str:
    assert app.api is not None
    return f"http://127.0.0.1:{app.api.port}"


async def make_token(app: CsmsApp, name: str, role: str, user: str | None = None) -> str:
    _info, token = await add_token(
        app.repository.sessionmaker, name, Role(role), user=user, now=app.clock.now()
    )
    return token


# One hash for every test account: hashing is slow on purpose (csms.auth).
_PASSWORD_HASH: str | None = None


async def add_resident(
    app: CsmsApp,
    name: str,
    *,
    stations: list[str] = (),
    tags: list[str] = (),  # type: ignore[assignment]
) -> str:
    """A resident account bound to stations and tags, and a token acting for it."""
    global _PASSWORD_HASH
    if _PASSWORD_HASH is None:
        _PASSWORD_HASH = hash_user_password("resident-password-1")
    await app.repository.add_user(name, Role.resident, _PASSWORD_HASH, stations=stations, tags=tags)
    return await make_token(app, f"{name}-app", "resident", user=name)


def client(app: CsmsApp, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.AsyncClient(base_url=api_url(app), headers=headers, timeout=30.0)
