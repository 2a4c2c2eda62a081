"""`virtual-chargers run --residents`: each session's departure and need reach the CSMS."""

from __future__ import annotations

import asyncio

import pytest

from csms.scenario import parse_scenario
from tests.conftest import start_app
from tests.test_virtual_fleet import SCENARIO, SPEED, T0, TIMEOUT_S, add_tags, describe_site
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions
from virtual_chargers.options import StationOptions
from virtual_chargers.residents import Residents


async def test_residents_tell_the_csms_their_departure_and_need(db_url: str) -> None:
    garage = parse_scenario(SCENARIO, source="three-short")
    app = await start_app(db_url, auto_register=True, speed=SPEED, clock_start=T0, controller=True)
    residents = Residents(db_url)
    try:
        await add_tags(app, ["TAG1", "TAG2", "TAG3", "TAG4"])
        await describe_site(app, garage)
        fleet = Fleet(
            garage,
            f"ws://127.0.0.1:{app.port}/ocpp",
            FleetClock(SPEED, T0),
            FleetOptions(
                station=StationOptions(
                    config={"MeterValueSampleInterval": "60"},
                    on_transaction_started=residents.on_transaction_started,
                )
            ),
        )
        report = await asyncio.wait_for(fleet.run(), TIMEOUT_S)
        await residents.close()
        rows = {r["id_tag"]: r for r in await app.repository.sessions_for_export()}
        stored = {
            tag: await app.repository.get_transaction(int(row["transaction_id"]))
            for tag, row in rows.items()
        }
    finally:
        await app.stop()
    needs = {s.id_tag: s.energy_needed_kwh * 1000 for s in garage.sessions}
    records = {r.record.id_tag: r.record for r in report.sessions if r.record.transaction_id}
    assert set(records) == set(needs)
    for tag, record in records.items():
        tx = stored[tag]
        assert tx is not None and record.departure_at is not None
        assert tx["departure_at"] == record.departure_at
        assert tx["energy_needed_wh"] == pytest.approx(needs[tag])
