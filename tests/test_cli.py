"""The `csms` command line: stations, id tags, site settings, export, clear errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

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
