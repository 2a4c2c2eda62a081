"""Engine and session factory. Built on request and injected, never at import time."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from csms.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///garagegrid.db"
DATABASE_URL_ENV = "GARAGEGRID_DATABASE_URL"
# How long a writer waits for a SQLite lock held by another process (the monitor, the CLI).
SQLITE_BUSY_TIMEOUT_MS = 10_000


def database_url(explicit: str | None = None) -> str:
    """The URL given on the command line, else the environment, else the SQLite default."""
    url = explicit or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite+aiosqlite:///PATH "
            "or postgresql+asyncpg://USER@HOST/DB"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.drivername != "sqlite+aiosqlite":
        raise ConfigError(f"SQLite needs the async driver: sqlite+aiosqlite:///..., got {url!r}")
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+asyncpg":
        raise ConfigError(
            f"PostgreSQL needs the async driver: postgresql+asyncpg://..., got {url!r}"
        )
    return url


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        _sqlite_on_connect(dbapi_connection, busy_timeout_ms)

    return on_connect


def _sqlite_on_connect(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the monitor read while the CSMS writes; FULL survives power loss
    # (NORMAL only a process crash), see FIELD-NOTES "Transactions and durability".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.close()


def create_engine(
    url: str | None = None, *, echo: bool = False, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> AsyncEngine:
    """Create the async engine for ``url`` (validated), with SQLite pragmas applied.

    ``busy_timeout_ms``: how long a SQLite writer waits for a lock before giving up (the
    charger then gets an InternalError and resends; nothing is acknowledged unstored).
    """
    resolved = database_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if is_sqlite(resolved):
        kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(resolved, **kwargs)
    if is_sqlite(resolved):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_timeout_ms))
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
