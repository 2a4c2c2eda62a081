"""The `csms` command line: stations, id tags, site settings, export, clear errors."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csms.cli import main


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)
    return db_url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_station_add_list_remove(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "station",
        "add",
        "CP7",
        "--max-current-a",
        "16",
        "--phases",
        "1",
        "--wiring",
        "L2",
        "--name",
        "Apt B12",
        "--password",
        "correct-horse-battery",
    )
    assert code == 0, err
    code, out, _ = run(capsys, "station", "list", "--json")
    rows = json.loads(out)
    assert rows[0]["id"] == "CP7" and rows[0]["wiring"] == "L2" and rows[0]["name"] == "Apt B12"
    assert rows[0]["password"] == "set"
    assert "correct-horse-battery" not in out
    assert run(capsys, "station", "remove", "CP7")[0] == 0
    assert json.loads(run(capsys, "station", "list", "--json")[1]) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("station", "add", "X", "--max-current-a", "3"), "max_current_a: must be at least 6"),
        (("station", "add", "X", "--phases", "3", "--wiring", "L1L1L2"), "wiring"),
        (("site", "set", "--fuse-limit-a", "-5"), "fuse_limit_a: must be greater than 0"),
        (("site", "set", "--margin-a", "100"), "margin_a"),
        (("site", "set", "--strategy", "yolo"), "unknown strategy 'yolo'"),
        (("site", "set", "--default-departure", "25:00"), "default_departure"),
        (("station", "remove", "NOPE"), "no charge point 'NOPE'"),
        (("idtag", "block", "NOPE"), "no id tag 'NOPE'"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    cli_env: str, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = run(capsys, *args)
    assert code != 0
    assert message in err


def test_refused_site_update_writes_nothing(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "site", "set", "--fuse-limit-a", "80", "--margin-a", "3")[0] == 0
    assert run(capsys, "site", "set", "--fuse-limit-a", "50", "--strategy", "nope")[0] == 2
    shown = json.loads(run(capsys, "site", "show")[1])
    assert (shown["fuse_limit_a"], shown["margin_a"]) == (80.0, 3.0)


def test_idtags_and_site_load(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            capsys, "idtag", "add", "TAG1", "--owner", "Apt A1", "--expires", "2030-01-01T00:00:00Z"
        )[0]
        == 0
    )
    assert run(capsys, "idtag", "add", "TAG2", "--parent", "TAG1")[0] == 0
    assert run(capsys, "idtag", "block", "TAG2")[0] == 0
    tags = {t["id_tag"]: t for t in json.loads(run(capsys, "idtag", "list", "--json")[1])}
    assert tags["TAG1"]["owner"] == "Apt A1" and not tags["TAG1"]["blocked"]
    assert tags["TAG2"]["blocked"] and tags["TAG2"]["parent"] == "TAG1"
    assert run(capsys, "site", "load", "--l1", "10", "--l2", "12.5", "--l3", "0")[0] == 0
    shown = json.loads(run(capsys, "site", "show")[1])
    assert shown["building_load"]["a"] == [10.0, 12.5, 0.0]


def test_export_sessions_csv(db_url: str, cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    from datetime import UTC, datetime

    from csms.store import migrate
    from csms.store.engine import create_engine, create_sessionmaker
    from csms.store.repository import Repository

    async def seed() -> None:
        engine = create_engine(db_url)
        await migrate.upgrade(engine)
        repo = Repository(create_sessionmaker(engine))
        await repo.add_charge_point("CP1")
        await repo.add_id_tag("TAG1", owner="Apt A1")
        for day in (3, 10):
            start = await repo.start_transaction(
                "CP1", 1, "TAG1", 1000 * day, datetime(2026, 1, day, 18, tzinfo=UTC)
            )
            await repo.stop_transaction(
                "CP1",
                start.transaction_id,
                1000 * day + 7000,
                datetime(2026, 1, day, 22, tzinfo=UTC),
                reason="EVDisconnected",
            )
        await engine.dispose()

    asyncio.run(seed())
    code, out, _ = run(
        capsys,
        "export",
        "sessions",
        "--from",
        "2026-01-05",
        "--to",
        "2026-01-31",
        "--format",
        "csv",
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1
    assert rows[0]["energy_wh"] == "7000" and rows[0]["owner"] == "Apt A1"
    assert list(rows[0]) == [
        "transaction_id",
        "charge_point_id",
        "connector_id",
        "id_tag",
        "owner",
        "started_at",
        "stopped_at",
        "meter_start_wh",
        "meter_stop_wh",
        "energy_wh",
        "stop_reason",
    ]


def test_console_script_is_installed_and_db_upgrade_works(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("csms")
    env = os.environ | {"GARAGEGRID_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    result = subprocess.run(
        [str(exe), "db", "upgrade"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.db").exists()


def test_unsupported_database_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--database-url", "mysql://x/y", "station", "list")
    assert code == 2 and "unsupported database" in err


def test_provision_registers_a_scenario_once(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "provision", "--scenario", "garage-20", "--site")
    assert code == 0, err
    stations = json.loads(run(capsys, "station", "list", "--json")[1])
    assert len(stations) == 20
    assert any(s["phases"] == 1 and s["wiring"] in ("L1", "L2", "L3") for s in stations)
    tags = json.loads(run(capsys, "idtag", "list", "--json")[1])
    assert tags and all(t["owner"] for t in tags)
    code, out, _ = run(capsys, "provision", "--scenario", "garage-20")
    assert "0 stations and 0 id tags added" in out


# ------------------------------------------- unmanaged reason, capabilities (issue 9)
class _FrozenClock:
    speed = 0.0

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    async def sleep(self, simulated_s: float) -> None:
        self.at += timedelta(seconds=simulated_s)


MARKED_AT = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
REASON = "Charger CP1 rejected its 10 A limit (Rejected)"


@pytest.fixture
def marked(cli_env: str) -> str:
    """CP1: unmanaged with a reason, capabilities read (W only, stack 3, rotation STR);
    CP2: managed, never read."""
    from csms.controller.capabilities import parse_configuration
    from csms.store import migrate
    from csms.store.engine import create_engine, create_sessionmaker
    from csms.store.repository import Repository

    answer = {
        "configurationKey": [
            {"key": key, "readonly": True, "value": value}
            for key, value in (
                ("ChargingScheduleAllowedChargingRateUnit", "Power"),
                ("ChargeProfileMaxStackLevel", "3"),
                ("ConnectorPhaseRotation", "0.RST, 1.STR"),
            )
        ]
    }

    async def seed() -> None:
        engine = create_engine(cli_env)
        try:
            await migrate.upgrade(engine)
            repo = Repository(create_sessionmaker(engine), clock=_FrozenClock(MARKED_AT))
            await repo.add_charge_point("CP1", name="Apt A1")
            await repo.add_charge_point("CP2")
            await repo.set_unmanaged("CP1", True, REASON)
            await repo.set_capabilities("CP1", parse_configuration(answer), MARKED_AT)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    return cli_env


def _listed(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    code, out, err = run(capsys, "station", "list", "--json")
    assert code == 0, err
    return {r["id"]: r for r in json.loads(out)}


def test_station_list_shows_why_unmanaged_and_what_was_read(
    marked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _listed(capsys)
    cp1, cp2 = rows["CP1"], rows["CP2"]
    assert (cp1["unmanaged"], cp1["unmanaged_reason"]) == (True, REASON)
    assert cp1["unmanaged_at"] == "2026-01-05T16:00:00+00:00"
    assert (cp1["rate_unit"], cp1["wiring"], cp1["wiring_set_by"]) == ("W", "L2L3L1", "charger")
    caps = cp1["capabilities"]
    assert caps["rate_units"] == ["Power"] and caps["max_stack_level"] == 3
    assert caps["phase_rotation"] == {"0": "RST", "1": "STR"}
    assert caps["read_at"] == "2026-01-05T16:00:00+00:00"
    assert (cp2["unmanaged"], cp2["unmanaged_reason"], cp2["capabilities"]) == (False, None, None)
    assert cp2["rate_unit"] == "A"

    code, out, _ = run(capsys, "station", "list")
    assert code == 0
    header, line1, line2 = out.splitlines()
    for column in ("unit", "reported_units", "max_stack_level", "phase_rotation", "unmanaged"):
        assert column in header.split()
    assert REASON in line1 and "0.RST, 1.STR" in line1 and "Power" in line1
    assert "not read" in line2 and line2.endswith("-")


def test_station_reset_managed(marked: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "station", "reset-managed", "CP1")
    assert code == 0, err
    assert f"CP1 was counted at its maximum since 2026-01-05T16:00:00+00:00: {REASON}" in out
    assert "CP1 is managed again" in out
    cp1 = _listed(capsys)["CP1"]
    assert (cp1["unmanaged"], cp1["unmanaged_reason"], cp1["unmanaged_at"]) == (False, None, None)
    code, out, _ = run(capsys, "station", "reset-managed", "CP1")
    assert code == 0 and "CP1 was not marked unmanaged; nothing changed" in out
    code, _, err = run(capsys, "station", "reset-managed", "NOPE")
    assert code == 1 and "no charge point 'NOPE'" in err


def test_station_set_wiring_is_the_managers(
    marked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "station", "set", "CP1", "--name", "Apt A2")[0] == 0
    assert _listed(capsys)["CP1"]["wiring_set_by"] == "charger"  # a rename keeps who set it
    assert run(capsys, "station", "set", "CP1", "--wiring", "L2L3L1")[0] == 0
    cp1 = _listed(capsys)["CP1"]
    assert (cp1["wiring"], cp1["wiring_set_by"]) == ("L2L3L1", "manager")
