from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from csms.app import CsmsApp, ServeConfig
from csms.logs import configure_logging
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository


@pytest.fixture(autouse=True, scope="session")
def _structured_logs_at_info() -> None:
    """Every log call runs for real (a bad ``extra`` key fails the test that hits it)."""
    configure_logging("INFO")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'garagegrid.db'}"


async def start_app(db_url: str, **overrides: object) -> CsmsApp:
    """The real CSMS on 127.0.0.1, a free port; load management only when asked for."""
    overrides.setdefault("controller", False)
    config = ServeConfig(
        database_url=db_url,
        host="127.0.0.1",
        port=0,
        outbox_poll_s=0.1,
        **overrides,  # type: ignore[arg-type]
    )
    app = CsmsApp(config)
    await app.start()
    return app


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[CsmsApp]:
    app = await start_app(db_url)
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def repo(app: CsmsApp, db_url: str) -> AsyncIterator[Repository]:
    """A second, independent connection to the same database (like the monitor or CLI)."""
    engine = create_engine(db_url)
    try:
        yield Repository(create_sessionmaker(engine))
    finally:
        await engine.dispose()


def ws_url(app: CsmsApp, cp_id: str) -> str:
    return f"ws://127.0.0.1:{app.port}/ocpp/{cp_id}"
