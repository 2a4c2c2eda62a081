"""Shared set-up of the feature profile tests (tests/test_profiles_*.py): the real CSMS on
127.0.0.1 and a real virtual charger connected to it, both on one simulated clock."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from csms.app import CsmsApp
from csms.clock import SimClock
from csms.store.features import FeatureStore
from tests.conftest import T0, start_app
from virtual_chargers.options import StationOptions
from virtual_chargers.simulation import Electrics
from virtual_chargers.station import VirtualStation

# The simulated clock of the CSMS and the charger: a firmware install (30 s) and reboot
# (10 s) take two real seconds.
SPEED = 20.0
TIME_FACTOR = float(os.environ.get("GARAGEGRID_TEST_TIME_FACTOR", "1"))
TIMEOUT_S = 15.0 * TIME_FACTOR
PASSWORD = "0123456789abcdef0123"


@dataclass
class Garage:
    app: CsmsApp
    station: VirtualStation
    clock: SimClock
    features: FeatureStore


async def eventually(
    predicate: Callable[[], Awaitable[bool] | bool], what: str, timeout_s: float = TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def wait_command(app: CsmsApp, command_id: int) -> dict[str, Any]:
    row: dict[str, Any] | None = None

    async def done() -> bool:
        nonlocal row
        row = await app.repository.get_command(command_id)
        return row is not None and row["status"] in ("done", "failed")

    await eventually(done, f"command {command_id} answered")
    assert row is not None
    return row


async def command(app: CsmsApp, cp_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Queue through the outbox (as the CLI, the monitor and the API do); the done row."""
    command_id = await app.repository.enqueue_command(cp_id, action, payload)
    return await wait_command(app, command_id)


@asynccontextmanager
async def garage(
    db_url: str,
    *,
    options: StationOptions | None = None,
    speed: float = SPEED,
    station_fields: dict[str, Any] | None = None,
    **app_options: Any,
) -> AsyncIterator[Garage]:
    """The CSMS with one registered, connected and accepted virtual charger ``CP1``."""
    clock = SimClock(speed=speed, start=T0)
    app = await start_app(db_url, clock=clock, **app_options)
    station: VirtualStation | None = None
    task: asyncio.Task[None] | None = None
    try:
        await app.repository.add_charge_point("CP1", password=PASSWORD, max_current_a=32.0)
        if station_fields:
            await app.repository.update_charge_point("CP1", **station_fields)
        station = VirtualStation(
            "CP1",
            f"ws://127.0.0.1:{app.port}/ocpp",
            Electrics(32.0, 3),
            clock,
            options or StationOptions(password=PASSWORD),
        )
        task = asyncio.create_task(station.run())
        running = station
        await eventually(lambda: running.online, "CP1 accepted")
        yield Garage(app, station, clock, FeatureStore(app.repository))
    finally:
        if station is not None and task is not None:
            await station.shutdown(flush_timeout_real_s=1.0)
            await asyncio.wait_for(task, TIMEOUT_S)
        await app.stop()
