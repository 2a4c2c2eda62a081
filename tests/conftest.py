from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from csms.app import CsmsApp, ServeConfig
from csms.clock import Clock, SimClock
from csms.logs import configure_logging
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository

pytest_plugins = ["tests.ci_policy"]


@pytest.fixture(autouse=True, scope="session")
def _structured_logs_at_info() -> None:
    """Every log call runs for real (a bad ``extra`` key fails the test that hits it)."""
    configure_logging("INFO")


async def wait_for(predicate: Callable[[], object], within_s: float = 15.0) -> None:
    """Poll ``predicate`` every 50 ms until it is true; AssertionError after ``within_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'garagegrid.db'}"


# The CSMS's clock in tests: it starts at this fixed instant (the time the test chargers'
# messages carry) and runs at real speed, so nothing depends on the hour the tests run at.
T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)


def fixed_clock(start: datetime = T0, speed: float = 1.0) -> SimClock:
    return SimClock(speed=speed, start=start)


async def start_app(db_url: str, *, clock: Clock | None = None, **overrides: object) -> CsmsApp:
    """The real CSMS on 127.0.0.1, a free port, on a clock that starts at ``T0`` (or
    ``clock``); load management only when asked for."""
    overrides.setdefault("controller", False)
    # The local list sync talks to every charger after its boot: only where a test asks.
    overrides.setdefault("local_list_sync", False)
    config = ServeConfig(
        database_url=db_url,
        host="127.0.0.1",
        port=0,
        outbox_poll_s=0.1,
        **overrides,  # type: ignore[arg-type]
    )
    if clock is None:
        clock = fixed_clock(config.clock_start or T0, config.speed)
    app = CsmsApp(config, clock=clock)
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
