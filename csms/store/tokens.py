"""Bearer tokens of the operator HTTP API: made, listed, revoked and checked.

A token is ``gg_`` and 43 URL-safe characters (256 bits from the OS's CSPRNG), shown once
when it is made. The store keeps its SHA-256 only: with 256 random bits a fast hash is as
safe as a slow one (nobody can try 2**256 guesses), and a request is checked by one index
lookup. A token has one of the monitor's roles (`csms.auth.Role`); a resident token is
bound to a resident account and acts as that account, with the stations and tags the
account has at the moment of the request. Revoking keeps the row (who had access, until
when) and refuses the token from then on; removing the account removes its tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from csms.auth import Role, check_user_name
from csms.errors import ConfigError, NotFoundError, StoreError
from csms.store import models as m

SessionMaker = async_sessionmaker[AsyncSession]

TOKEN_PREFIX = "gg_"  # noqa: S105 - a marker, not a secret
TOKEN_BYTES = 32
# `csms token list` shows this many characters of a token (the prefix and 5 more).
SHOWN_CHARACTERS = 8
# A token's last use is written at most this often (not a database write per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class ApiTokenInfo:
    """A token as listed (never the token itself)."""

    id: int
    name: str
    role: Role
    user: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    # The site a manager or viewer token acts within; None: every site (an operator).
    site_id: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _info(row: m.ApiToken, user: str | None) -> ApiTokenInfo:
    return ApiTokenInfo(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        user=user,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        site_id=row.site_id,
    )


async def add_token(
    sm: SessionMaker,
    name: str,
    role: Role,
    *,
    user: str | None,
    now: datetime,
    site: str | None = None,
) -> tuple[ApiTokenInfo, str]:
    """Make a token; returns it with the token itself (shown once, stored hashed).

    A resident token needs ``user``, a resident account. A manager or viewer token may
    name an account of the same role (for the audit log); it is not needed.
    """
    name = check_user_name(name)
    role = Role(role)
    if role is Role.resident and user is None:
        raise ConfigError("a resident token acts for a resident: give --user NAME")
    if role is Role.resident and site is not None:
        raise ConfigError("a resident token acts within its account's site: no --site")
    token = new_token()
    try:
        async with sm() as s, s.begin():
            if await s.scalar(select(m.ApiToken.id).where(m.ApiToken.name == name)) is not None:
                raise ConfigError(f"token {name!r} already exists")
            user_id: int | None = None
            if user is not None:
                found = await s.scalar(select(m.User).where(m.User.name == user))
                if found is None:
                    raise ConfigError(f"no user {user!r} (`csms user add` it first)")
                if found.role != role.value:
                    raise ConfigError(
                        f"user {user!r} is a {found.role}; a {role} token acts for a {role}"
                    )
                user_id = found.id
            site_id: int | None = None
            if site is not None:
                site_id = await s.scalar(
                    select(m.SiteSettings.id).where(m.SiteSettings.name == site)
                )
                if site_id is None:
                    raise ConfigError(f"no site {site!r} (`csms site add` it first)")
            row = m.ApiToken(
                name=name,
                role=role.value,
                user_id=user_id,
                token_hash=token_hash(token),
                prefix=token[:SHOWN_CHARACTERS],
                created_at=now,
                site_id=site_id,
            )
            s.add(row)
            await s.flush()
            return _info(row, user), token
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc


async def list_tokens(sm: SessionMaker) -> list[ApiTokenInfo]:
    async with sm() as s:
        rows = (
            await s.execute(
                select(m.ApiToken, m.User.name)
                .outerjoin(m.User, m.User.id == m.ApiToken.user_id)
                .order_by(m.ApiToken.name)
            )
        ).all()
    return [_info(row, user) for row, user in rows]


async def revoke_token(sm: SessionMaker, name: str, *, now: datetime) -> ApiTokenInfo:
    """Refuse the token from now on (it stays listed as revoked)."""
    try:
        async with sm() as s, s.begin():
            row = await s.scalar(select(m.ApiToken).where(m.ApiToken.name == name))
            if row is None:
                raise NotFoundError(f"no token {name!r}")
            if row.revoked_at is None:
                row.revoked_at = now
            user = None if row.user_id is None else await s.get(m.User, row.user_id)
            return _info(row, user.name if user else None)
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc


@dataclass(frozen=True)
class TokenIdentity:
    """Who a presented token is: its name, role and the account it acts for (if any)."""

    name: str
    role: Role
    user_id: int | None
    # The site a manager or viewer token acts within; None: every site.
    site_id: int | None = None


async def identify_token(sm: SessionMaker, token: str, *, now: datetime) -> TokenIdentity | None:
    """The token's identity; None for an unknown or revoked token. Notes its last use."""
    digest = token_hash(token)
    try:
        async with sm() as s, s.begin():
            row = await s.scalar(select(m.ApiToken).where(m.ApiToken.token_hash == digest))
            # The lookup is by hash; compare again in constant time all the same.
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                return None
            if row.revoked_at is not None:
                return None
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                row.last_used_at = now
            return TokenIdentity(row.name, Role(row.role), row.user_id, row.site_id)
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc
