"""Load management end to end: virtual chargers against `csms serve` with its controller.

The fuse holds at every instant (the limits the chargers accepted, plus the defaults of
idle connectors, never sum above fuse - margin) and a car that leaves frees its share to
the others within one tick.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from csms.scenario import parse_scenario
from csms.store import models as m
from tests.conftest import start_app
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions
from virtual_chargers.options import StationOptions

SPEED = 100.0
TICK_S = 60.0  # simulated
T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
CAPACITY_A = 30.0

GARAGE: dict[str, Any] = {
    "name": "tight-three",
    "site": {"fuse_limit_a": 30, "margin_a": 0, "phases": 3, "voltage_v": 230},
    "start": "2026-01-05T16:00:00+00:00",
    "stations": [
        {"id": "LM1", "max_current_a": 16, "phases": 3, "wiring": "L1L2L3"},
        {"id": "LM2", "max_current_a": 16, "phases": 3, "wiring": "L2L3L1"},
        {"id": "LM3", "max_current_a": 16, "phases": 3, "wiring": "L3L1L2"},
    ],
    "sessions": [
        {"station": "LM1", "id_tag": "T1", "arrival_s": 0, "departure_s": 300,
         "ev": "vw-id3-58", "soc_start": 0.1, "soc_target": 0.8},
        {"station": "LM2", "id_tag": "T2", "arrival_s": 0, "departure_s": 700,
         "ev": "vw-id3-58", "soc_start": 0.1, "soc_target": 0.8},
        {"station": "LM3", "id_tag": "T3", "arrival_s": 0, "departure_s": 700,
         "ev": "vw-id3-58", "soc_start": 0.1, "soc_target": 0.8},
    ],
}  # fmt: skip


async def test_fuse_holds_and_a_leaving_car_frees_its_share_within_a_tick(db_url: str) -> None:
    garage = parse_scenario(GARAGE, source="tight-three")
    app = await start_app(db_url, speed=SPEED, clock_start=T0, controller=True)
    try:
        await app.repository.update_site(
            fuse_limit_a=30.0, margin_a=0.0, strategy="equal", tick_s=TICK_S
        )
        for station in garage.stations:
            await app.repository.add_charge_point(
                station.id, max_current_a=16, phases=3, wiring="".join(station.wiring)
            )
        for tag in ("T1", "T2", "T3"):
            await app.repository.add_id_tag(tag)
        fleet = Fleet(
            garage,
            f"ws://127.0.0.1:{app.port}/ocpp",
            FleetClock(SPEED, T0),
            FleetOptions(station=StationOptions(config={"MeterValueSampleInterval": "30"})),
        )
        report = await asyncio.wait_for(fleet.run(), 60)
        async with app.repository.sessionmaker() as s:
            allocations = (
                (await s.execute(select(m.Allocation).order_by(m.Allocation.id))).scalars().all()
            )
            stops = {
                t.charge_point_id: t.stopped_at
                for t in (await s.execute(select(m.Transaction))).scalars().all()
            }
    finally:
        await app.stop()

    assert report.stopped == 3 and report.call_errors == 0
    # Replay what the chargers accepted: a running car may draw its TxProfile, an idle
    # connector its 6 A TxDefaultProfile (3 x 6 A fits 30 A, so that is the default).
    accepted = [a for a in allocations if a.answer == "Accepted"]
    assert accepted, "the controller sent no limits"
    events = sorted(
        # Within one decision the lowerings were recorded (and applied) before the raisings.
        [(a.decided_at, 1, a.id, a.charge_point_id, a.limit_a) for a in accepted]
        + [(at, 0, 0, cp, 0.0) for cp, at in stops.items() if at is not None]
    )
    limit: dict[str, float] = {}
    for at, kind, _id, cp, amps in events:
        if kind == 0:
            limit.pop(cp, None)  # transaction over: back under the 6 A default
            continue
        limit[cp] = amps
        running_total = sum(limit.values()) + 6.0 * (3 - len(limit))
        assert running_total <= CAPACITY_A + 1e-6, (at, limit)
    assert all(a.limit_a == 0 or a.limit_a >= 6 for a in allocations)
    # The physical site never went above the fuse either.
    assert max(report.peak_supply_a) <= CAPACITY_A + 0.5

    # LM1 leaves at 300 s: within one tick of its StopTransaction LM2 and LM3 together
    # get what is left once LM1's idle connector keeps its 6 A default: 30 - 6 = 24 A.
    left_at = stops["LM1"]
    assert left_at is not None

    def others_at(moment: datetime) -> float:
        latest: dict[str, float] = {}
        for a in accepted:
            if a.decided_at <= moment and a.charge_point_id in ("LM2", "LM3"):
                latest[a.charge_point_id] = a.limit_a
        return sum(latest.values())

    before = others_at(left_at)  # equal shares: 3 x 10 A while LM1 charges
    after = others_at(left_at + timedelta(seconds=TICK_S))
    assert before < after == CAPACITY_A - 6.0, (before, after)
