"""The async store, run for Streamlit's synchronous scripts on one background loop.

Streamlit runs each page script in a thread of its own, without an event loop, while the
store is async (SQLAlchemy 2 + aiosqlite/asyncpg). One `MonitorStore` per database URL
owns an event loop in a daemon thread and the engine built on it; a script submits
coroutines with `MonitorStore.run` and waits for the answer. `get_store` caches it with
``st.cache_resource``, so every session and rerun shares one engine and connection pool.

Errors come back as `csms.errors.StoreError` with a message fit for an error box: the
database is missing, has no GarageGrid schema, is locked, or does not answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from csms.errors import GarageGridError, StoreError
from csms.store.engine import create_engine, create_sessionmaker, database_url, is_sqlite
from csms.store.queries import SessionMaker
from csms.store.repository import Repository

T = TypeVar("T")

# A page waits this long for one database call; SQLite itself waits up to 10 s for a lock.
CALL_TIMEOUT_S = 30.0


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, None for other databases and in-memory SQLite."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def explain(exc: BaseException, url: str) -> str:
    """A sentence for the error box, with what to do about it."""
    text = str(getattr(exc, "orig", None) or exc)
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return (
            "The database has no GarageGrid tables yet. Start the CSMS (`csms serve`) or run "
            f"`csms db upgrade` against {url}."
        )
    if "locked" in text or "busy" in text:
        return (
            "The database is locked by another process and did not free up within 10 s. "
            "Try again in a moment."
        )
    if "unable to open" in text:
        return f"The database file cannot be opened ({text})."
    return f"Database error: {exc.__class__.__name__}: {text}"


class MonitorStore:
    """An engine, a session factory and a repository on a private event loop."""

    def __init__(self, url: str) -> None:
        self.url = database_url(url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="garagegrid-monitor-store", daemon=True
        )
        self._thread.start()
        self._engine = create_engine(self.url)
        self.sessionmaker: SessionMaker = create_sessionmaker(self._engine)
        self.repo = Repository(self.sessionmaker)

    def run(self, coro: Coroutine[Any, Any, T], *, timeout_s: float = CALL_TIMEOUT_S) -> T:
        """Run ``coro`` on the store's loop and return its result (or raise StoreError)."""
        path = sqlite_path(self.url)
        if path is not None and not path.exists():
            coro.close()
            raise StoreError(
                f"The database file {path} does not exist. Start the CSMS (`csms serve`) or "
                "set GARAGEGRID_DATABASE_URL to the database it uses."
            )
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise StoreError(
                f"The database did not answer within {timeout_s:g} s (locked or overloaded)."
            ) from None
        except GarageGridError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(explain(exc, self.url)) from exc

    def close(self) -> None:
        """Dispose of the engine and stop the loop (cache release, tests)."""
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._engine.dispose(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
