"""`virtual-chargers run --residents`: each session's departure and need reach the CSMS
through its operator API, with a resident token (the virtual chargers import nothing of
the CSMS's store)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from csms.scenario import parse_scenario
from tests.api_support import add_resident, api_url, start_api_app
from tests.test_virtual_fleet import SCENARIO, SPEED, T0, TIMEOUT_S, add_tags, describe_site
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions
from virtual_chargers.options import StationOptions
from virtual_chargers.residents import Residents


async def test_residents_tell_the_csms_their_departure_and_need(db_url: str) -> None:
    garage = parse_scenario(SCENARIO, source="three-short")
    app = await start_api_app(
        db_url, auto_register=True, speed=SPEED, clock_start=T0, controller=True
    )
    residents: Residents | None = None
    try:
        await add_tags(app, ["TAG1", "TAG2", "TAG3", "TAG4"])
        await describe_site(app, garage)
        # One resident account for the whole virtual garage, bound to its stations: the
        # token may set departures there and nowhere else.
        token = await add_resident(app, "virtual-garage", stations=[s.id for s in garage.stations])
        residents = Residents(f"{api_url(app)}/api/v1", token)
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
        if residents is not None:
            await residents.close()
        await app.stop()
    needs = {s.id_tag: s.energy_needed_kwh * 1000 for s in garage.sessions}
    records = {r.record.id_tag: r.record for r in report.sessions if r.record.transaction_id}
    assert set(records) == set(needs)
    assert residents.stored == len(records) and residents.refused == 0
    for tag, record in records.items():
        tx = stored[tag]
        assert tx is not None and record.departure_at is not None
        assert tx["departure_at"] == record.departure_at
        assert tx["energy_needed_wh"] == pytest.approx(needs[tag])


async def test_a_token_for_other_stations_changes_nothing(db_url: str) -> None:
    """The API's role check holds for the virtual residents too: refused, not stored."""
    app = await start_api_app(db_url)
    try:
        await app.repository.add_charge_point("CP1", max_current_a=16, phases=3)
        await app.repository.add_charge_point("CP2", max_current_a=16, phases=3)
        await app.repository.add_id_tag("TAG1")
        started = await app.repository.start_transaction("CP1", 1, "TAG1", 0, T0)
        token = await add_resident(app, "neighbour", stations=["CP2"])
        residents = Residents(f"{api_url(app)}/api/v1", token)
        residents.on_transaction_started("CP1", started.transaction_id, T0.replace(hour=23), 9000)
        await residents.close()
        tx = await app.repository.get_transaction(started.transaction_id)
    finally:
        await app.stop()
    assert residents.refused == 1 and residents.stored == 0
    assert tx is not None and tx["departure_at"] is None and tx["energy_needed_wh"] is None


def test_virtual_chargers_import_nothing_of_the_store() -> None:
    """Run in a fresh interpreter: importing the virtual chargers' CLI loads no csms.store."""
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, virtual_chargers.__main__, virtual_chargers.residents;"
        "print(sorted(m for m in sys.modules if m.startswith('csms.store')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert out.strip() == "[]"
    sources = "".join(p.read_text() for p in (root / "virtual_chargers").glob("*.py"))
    assert "csms.store" not in sources


def test_residents_without_the_api_are_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from virtual_chargers.__main__ import main

    monkeypatch.delenv("GARAGEGRID_API_URL", raising=False)
    monkeypatch.delenv("GARAGEGRID_API_TOKEN", raising=False)
    code = main(
        ["run", "--csms-url", "ws://127.0.0.1:9/ocpp", "--count", "1", "--quiet", "--residents"]
    )
    assert code == 2
    assert "--api-url" in capsys.readouterr().err
