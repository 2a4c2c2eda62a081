"""Many sites on the command line (issue 12 item 1): `csms site add/list/set`, and
--site on station, idtag, user, provision and export; a single-site install names none."""

from __future__ import annotations

import csv
import io
import json

import pytest

from csms.cli import main
from csms.scenario import load_scenario


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)
    return db_url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return out


def test_a_single_site_install_names_no_site(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "station", "add", "CP1", "--password", "correct-horse-battery")
    ok(capsys, "idtag", "add", "TAG1")
    ok(capsys, "site", "set", "--fuse-limit-a", "40")
    sites = json.loads(ok(capsys, "site", "list", "--json"))
    assert [(s["id"], s["name"], s["stations"], s["fuse_limit_a"]) for s in sites] == [
        (1, "default", 1, 40.0)
    ]
    rows = json.loads(ok(capsys, "station", "list", "--json"))
    assert [r["id"] for r in rows] == ["CP1"] and "site" not in rows[0]
    ok(capsys, "user", "add", "boss", "--role", "manager", "--password", "a-long-password-1")
    users = json.loads(ok(capsys, "user", "list", "--json"))
    assert [(u["name"], u["site"]) for u in users] == [("boss", "default")]


def test_two_sites_keep_their_stations_tags_settings_and_export(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "station", "add", "A1", "--password", "correct-horse-battery")
    out = ok(capsys, "site", "add", "Berg", "--fuse-limit-a", "25", "--strategy", "edf")
    assert "added site Berg (id 2, fuse 25 A)" in out
    code, _, err = run(capsys, "site", "add", "Berg")
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "site", "add", "Dal", "--fuse-limit-a", "-3")
    assert code == 2 and "fuse_limit_a" in err

    # Several sites: a command on one site must name it, and is told which there are.
    code, _, err = run(capsys, "station", "add", "B1", "--password", "correct-horse-battery")
    assert code == 2 and "there are 2 sites" in err and "default, Berg" in err
    code, _, err = run(capsys, "station", "add", "B1", "--site", "Nowhere", "--unsecured")
    assert code == 1 and "no site 'Nowhere'" in err and "default, Berg" in err
    ok(capsys, "station", "add", "B1", "--site", "Berg", "--password", "correct-horse-battery")
    ok(capsys, "--site", "Berg", "idtag", "add", "TAG-B")  # before the command works too
    ok(capsys, "idtag", "add", "TAG-A", "--site", "default")

    rows = json.loads(ok(capsys, "station", "list", "--json"))
    assert [(r["site"], r["id"]) for r in rows] == [("default", "A1"), ("Berg", "B1")]
    rows = json.loads(ok(capsys, "station", "list", "--json", "--site", "Berg"))
    assert [r["id"] for r in rows] == ["B1"]
    tags = json.loads(ok(capsys, "idtag", "list", "--json", "--site", "Berg"))
    assert [t["id_tag"] for t in tags] == ["TAG-B"]

    # Settings: per site; a change on one leaves the other.
    ok(capsys, "site", "set", "--site", "Berg", "--fuse-limit-a", "20", "--name", "Berg N")
    berg = json.loads(ok(capsys, "site", "show", "--site", "Berg N"))
    default = json.loads(ok(capsys, "site", "show", "--site", "default"))
    assert (berg["fuse_limit_a"], berg["strategy"], berg["name"]) == (20.0, "edf", "Berg N")
    assert (default["fuse_limit_a"], default["strategy"]) == (63.0, "llf")
    code, _, err = run(capsys, "site", "show")
    assert code == 2 and "name one with --site" in err
    ok(capsys, "site", "load", "--site", "Berg N", "--l1", "5", "--l2", "6", "--l3", "7")
    assert json.loads(ok(capsys, "site", "show", "--site", "Berg N"))["building_load"]["a"] == [
        5.0,
        6.0,
        7.0,
    ]
    assert "building_load" not in json.loads(ok(capsys, "site", "show", "--site", "default"))

    # Accounts: a site's, or every site's.
    ok(
        capsys,
        "user",
        "add",
        "anna",
        "--role",
        "manager",
        "--site",
        "Berg N",
        "--password",
        "a-long-password-1",
    )
    ok(
        capsys,
        "user",
        "add",
        "olav",
        "--role",
        "manager",
        "--all-sites",
        "--password",
        "a-long-password-2",
    )
    code, _, err = run(
        capsys, "user", "add", "x", "--role", "viewer", "--password", "a-long-password-3"
    )
    assert code == 2 and "name one with --site" in err
    users = json.loads(ok(capsys, "user", "list", "--json", "--site", "default"))
    assert [(u["name"], u["site"]) for u in users] == [("olav", "*")]
    ok(capsys, "user", "set-site", "anna", "--site", "default")
    users = json.loads(ok(capsys, "user", "list", "--json", "--site", "default"))
    assert [u["name"] for u in users] == ["anna", "olav"]

    # Export: per site.
    code, _, err = run(capsys, "export", "sessions")
    assert code == 2 and "name one with --site" in err
    out = ok(capsys, "export", "sessions", "--site", "default")
    assert list(csv.DictReader(io.StringIO(out))) == []


def test_provision_into_a_named_site(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "site", "add", "Berg", "--fuse-limit-a", "10")
    ok(capsys, "site", "set", "--site", "default", "--fuse-limit-a", "30")
    ok(capsys, "--site", "Berg", "provision", "--scenario", "garage-20", "--site")
    rows = json.loads(ok(capsys, "station", "list", "--json", "--site", "Berg"))
    assert len(rows) == 20
    assert json.loads(ok(capsys, "station", "list", "--json", "--site", "default")) == []
    tags = json.loads(ok(capsys, "idtag", "list", "--json", "--site", "Berg"))
    assert tags and {t["site_id"] for t in tags} == {2}
    berg = json.loads(ok(capsys, "site", "show", "--site", "Berg"))
    default = json.loads(ok(capsys, "site", "show", "--site", "default"))
    fuse = load_scenario("garage-20").site.fuse_limit_a
    assert (berg["fuse_limit_a"], default["fuse_limit_a"]) == (fuse, 30.0)
