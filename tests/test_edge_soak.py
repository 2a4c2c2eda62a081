"""Soak, short (issue 10, item 7): a virtual garage of 20 chargers through a simulated day
at high speed against the real CSMS with load management. At the end no connection is
left open, the CSMS's asyncio tasks are back to what they were before the chargers came,
and the store agrees with the chargers' meters (`csms.store.audit.audit_store`).

`scripts/soak.py` runs 100 chargers through a simulated week against `csms serve` and
prints the CSMS's resident memory at the start and the end.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime

from csms.app import CsmsApp
from csms.scenario import make_garage_scenario
from csms.store.audit import audit_store
from tests.conftest import start_app
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions
from virtual_chargers.options import StationOptions

N = 20
SPEED = 4000.0
PASSWORD = "soak-test-key-0123456789"
T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
TIME_FACTOR = float(os.environ.get("GARAGEGRID_TEST_TIME_FACTOR", "1"))


def server_connections(app: CsmsApp) -> int:
    server = app.central._server
    assert server is not None
    return len(server.connections)


async def settled_task_count(baseline: int, timeout_s: float) -> int:
    """The number of asyncio tasks once short-lived ones (a last plan, a last call) end."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = len(asyncio.all_tasks())
        if count <= baseline or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.05)


async def test_a_simulated_day_leaks_nothing_and_the_store_adds_up(db_url: str) -> None:
    garage = make_garage_scenario(N, seed=11, start=T0)
    app = await start_app(db_url, controller=True, speed=SPEED, clock_start=T0)
    try:
        repo = app.repository
        await repo.update_site(
            fuse_limit_a=garage.site.fuse_limit_a,
            margin_a=garage.site.margin_a,
            heartbeat_interval_s=3600,
        )
        for station in garage.stations:
            await repo.add_charge_point(
                station.id,
                max_current_a=station.max_current_a,
                phases=station.phases,
                wiring="".join(station.wiring),
                password=PASSWORD,
            )
        for tag in sorted({s.id_tag for s in garage.sessions}):
            await repo.add_id_tag(tag)
        await asyncio.sleep(0.2)  # the controller's first plan
        baseline_tasks = len(asyncio.all_tasks())
        fleet = Fleet(
            garage,
            f"ws://127.0.0.1:{app.port}/ocpp",
            FleetClock(SPEED, T0),
            FleetOptions(
                station=StationOptions(
                    password=PASSWORD, config={"MeterValueSampleInterval": "900"}
                ),
                boot_wait_real_s=30 * TIME_FACTOR,
                shutdown_flush_real_s=30 * TIME_FACTOR,
            ),
        )
        run = asyncio.create_task(fleet.run())
        await fleet.wait_sessions_started()
        connected_at_start = len(app.central.connected_ids())
        tasks_during = len(asyncio.all_tasks())
        report = await asyncio.wait_for(run, 120 * TIME_FACTOR)
        for _ in range(round(200 * TIME_FACTOR)):  # up to 10 s for the server to see them go
            if not (app.central.connected_ids() or server_connections(app)):
                break
            await asyncio.sleep(0.05)
        connected_at_end = len(app.central.connected_ids())
        connections_at_end = server_connections(app)
        tasks_at_end = await settled_task_count(baseline_tasks, 10 * TIME_FACTOR)
        audit = await audit_store(repo.sessionmaker, report.sessions)
    finally:
        await app.stop()

    # The day was played: every car that came charged and left, through the CSMS.
    assert connected_at_start == N
    assert report.elapsed_sim_s >= 86_400 * 0.9
    assert len(report.sessions) >= len(garage.sessions)
    assert report.stopped == len(report.sessions) and report.refused == 0
    assert report.call_errors == 0
    assert report.energy_wh > 0

    # Nothing leaked: the chargers' tasks and connections came and went.
    assert tasks_during > baseline_tasks
    assert connected_at_end == 0 and connections_at_end == 0
    assert tasks_at_end <= baseline_tasks

    # The store adds up to the meters.
    assert audit.consistent, audit.problems
    assert audit.transactions == audit.fleet_sessions == len(report.sessions)
    assert audit.energy_store_wh == audit.energy_fleet_wh == report.energy_wh
    assert audit.samples > audit.transactions
