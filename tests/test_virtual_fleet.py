"""A small virtual garage against the real CSMS over loopback, and the CLI around it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from csms.app import CsmsApp
from csms.scenario import Scenario, parse_scenario
from tests.conftest import start_app
from virtual_chargers.__main__ import main
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions
from virtual_chargers.options import StationOptions

SPEED = 500.0
T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
TIME_FACTOR = float(os.environ.get("GARAGEGRID_TEST_TIME_FACTOR", "1"))
TIMEOUT_S = 30.0 * TIME_FACTOR
CLI = Path(sys.executable).with_name("virtual-chargers")

SCENARIO: dict[str, Any] = {
    "name": "three-short",
    "site": {"fuse_limit_a": 40, "margin_a": 2, "phases": 3, "voltage_v": 230},
    "start": "2026-01-05T16:00:00+00:00",
    "stations": [
        {"id": "VC1", "max_current_a": 16, "phases": 3, "wiring": "L1L2L3"},
        {"id": "VC2", "max_current_a": 32, "phases": 1, "wiring": "L2"},
        {"id": "VC3", "max_current_a": 32, "phases": 3, "wiring": "L3L1L2"},
    ],
    "sessions": [
        {"station": "VC1", "id_tag": "TAG1", "arrival_s": 0, "departure_s": 1200,
         "ev": "tesla-model-3-lr", "soc_start": 0.5, "soc_target": 0.6},
        {"station": "VC2", "id_tag": "TAG2", "arrival_s": 60, "departure_s": 1500,
         "ev": "nissan-leaf-40", "soc_start": 0.7, "soc_target": 0.75},
        {"station": "VC3", "id_tag": "TAG3", "arrival_s": 0, "departure_s": 600,
         "ev": "renault-zoe-52", "soc_start": 0.4, "soc_target": 0.5},
        {"station": "VC3", "id_tag": "TAG4", "arrival_s": 600, "departure_s": 1400,
         "ev": "bmw-i3-42", "soc_start": 0.2, "soc_target": 0.3},
    ],
}  # fmt: skip


def scenario() -> Scenario:
    return parse_scenario(SCENARIO, source="three-short")


async def add_tags(app: CsmsApp, tags: list[str]) -> None:
    for tag in tags:
        await app.repository.add_id_tag(tag)


async def describe_site(app: CsmsApp, garage: Scenario) -> None:
    """Tell the CSMS what the scenario's garage looks like (fuse, stations, wiring)."""
    await app.repository.update_site(
        fuse_limit_a=garage.site.fuse_limit_a, margin_a=garage.site.margin_a
    )
    for station in garage.stations:
        await app.repository.add_charge_point(
            station.id,
            max_current_a=station.max_current_a,
            phases=station.phases,
            wiring="".join(station.wiring),
        )


async def test_every_session_ends_as_a_stopped_transaction_in_the_csms(db_url: str) -> None:
    app = await start_app(db_url, auto_register=True, speed=SPEED, clock_start=T0, controller=True)
    try:
        await add_tags(app, ["TAG1", "TAG2", "TAG3", "TAG4"])
        await describe_site(app, scenario())
        fleet = Fleet(
            scenario(),
            f"ws://127.0.0.1:{app.port}/ocpp",
            FleetClock(SPEED, T0),
            FleetOptions(
                station=StationOptions(
                    config={"MeterValueSampleInterval": "60"}, validate_messages=True
                )
            ),
        )
        report = await asyncio.wait_for(fleet.run(), TIMEOUT_S)
        exported = await app.repository.sessions_for_export()
    finally:
        await app.stop()
    assert report.call_errors == 0 and report.refused == 0
    assert report.max_over_limit_a == pytest.approx(0.0, abs=1e-9)
    assert len(exported) == 4 == report.stopped
    fleet_energy = {r.record.transaction_id: r.record for r in report.sessions}
    for row in exported:
        assert row["stopped_at"] is not None and row["stop_reason"] == "Local"
        record = fleet_energy[row["transaction_id"]]
        assert row["id_tag"] == record.id_tag
        assert row["energy_wh"] == record.energy_wh
        # Sensible: something flowed, never more than the car wanted.
        assert 0 < row["energy_wh"] <= record.needed_wh + 1
    by_tag = {row["id_tag"]: row for row in exported}
    stations = {s["id"]: s for s in SCENARIO["stations"]}
    for session in SCENARIO["sessions"]:
        station = stations[session["station"]]
        stay_h = (session["departure_s"] - session["arrival_s"]) / 3600
        max_wh = station["max_current_a"] * station["phases"] * 230 * stay_h
        assert by_tag[session["id_tag"]]["energy_wh"] <= max_wh
    # One charger, two cars one after the other: the register keeps counting.
    assert by_tag["TAG4"]["meter_start_wh"] >= by_tag["TAG3"]["meter_stop_wh"]
    # The CSMS's load management kept the whole site under its fuse.
    assert max(report.peak_supply_a) <= 40
    assert report.delivery_real_s and report.meter_lag_sim_s


def _scenario_file(tmp_path: Path) -> Path:
    long = json.loads(json.dumps(SCENARIO))
    for session in long["sessions"]:
        session["departure_s"] += 86_400  # nobody leaves while the test runs
    long["sessions"] = [s for s in long["sessions"] if s["id_tag"] != "TAG4"]
    path = tmp_path / "garage.json"
    path.write_text(json.dumps(long))
    return path


async def test_cli_stops_cleanly_on_sigterm(db_url: str, tmp_path: Path) -> None:
    app = await start_app(db_url, auto_register_unsecured=True, speed=100, clock_start=T0)
    try:
        await add_tags(app, ["TAG1", "TAG2", "TAG3"])
        process = await asyncio.create_subprocess_exec(
            str(CLI),
            "run",
            "--csms-url",
            f"ws://127.0.0.1:{app.port}/ocpp",
            "--scenario",
            str(_scenario_file(tmp_path)),
            "--speed",
            "100",
            "--clock-start",
            T0.isoformat(),
            "--quiet",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        deadline = time.monotonic() + TIMEOUT_S
        while len(await app.repository.open_sessions()) < 3:
            assert time.monotonic() < deadline, "the three sessions did not start"
            assert process.returncode is None, (await process.communicate())[1].decode()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # some meter values
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
        exported = await app.repository.sessions_for_export()
        still_connected = app.central.connected_ids()
    finally:
        await app.stop()
    assert process.returncode == 0, err.decode()
    assert "3 started, 3 stopped" in out.decode()
    assert len(exported) == 3
    assert all(row["stop_reason"] == "Local" and row["energy_wh"] > 0 for row in exported)
    assert still_connected == []


def test_cli_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--csms-url", "ws://x/ocpp", "--scenario", "no-such"]) == 2
    assert "no-such" in capsys.readouterr().err
    assert main(["run", "--csms-url", "ws://x/ocpp", "--count", "2", "--quirk", "CP99:w-only"]) == 2
    assert "CP99" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--csms-url", "http://x", "--count", "2"])
