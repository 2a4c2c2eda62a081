"""Real-data scenarios: counts on the real files, conversion rules, data directory."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import tomllib
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

import csms
from csms.datasets import (
    ACN_FILE,
    DATA_DIR_ENV,
    PACKAGED_DATA_DIR,
    RISVOLLAN_FILE,
    acn_scenario,
    default_data_dir,
    load_acn,
    load_risvollan,
    risvollan_scenario,
)
from csms.errors import ConfigError
from csms.scenario import load_scenario, parse_scenario, scenario_to_dict

LICENCE_FILES = (
    "README.md",
    "LICENSES",
    "LICENSE-risvollan-CC-BY-4.0.txt",
    "LICENSE-acn-BSD-3-Clause.txt",
)

# SHA-256 of the files as published (csms/data/README.md: shipped unmodified).
PUBLISHED_SHA256 = {
    RISVOLLAN_FILE: "b5f73275706b4a33c31eacc7903a779d4ca00c536febc351f6872cf60afd34cd",
    ACN_FILE: "6b688b132dc9d115e8b129ad1ff00f840597e1d3d8e0c0538cc83b96c721e054",
}


@pytest.fixture(autouse=True)
def _packaged_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test reads the shipped files unless it sets the variable itself."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


def test_default_data_dir_is_the_packaged_data_with_its_licences() -> None:
    directory = default_data_dir()
    package = Path(csms.__file__).resolve().parent
    assert directory == PACKAGED_DATA_DIR == package / "data"
    assert directory.is_relative_to(package)
    for name in (RISVOLLAN_FILE, ACN_FILE, *LICENCE_FILES):
        assert (directory / name).is_file(), name
        # Also reachable as package resources, as an installed package sees them.
        assert resources.files("csms").joinpath("data", name).is_file(), name
    assert "CC BY 4.0" in (directory / "LICENSE-risvollan-CC-BY-4.0.txt").read_text("utf-8")
    assert "Caltech Netlab" in (directory / "LICENSE-acn-BSD-3-Clause.txt").read_text("utf-8")


@pytest.mark.parametrize("name", sorted(PUBLISHED_SHA256))
def test_packaged_data_files_are_the_published_bytes(name: str) -> None:
    digest = hashlib.sha256((PACKAGED_DATA_DIR / name).read_bytes()).hexdigest()
    assert digest == PUBLISHED_SHA256[name]


def test_every_packaged_data_file_is_in_the_package_data() -> None:
    """A non-editable install carries csms/data only if pyproject lists every file."""
    pyproject = Path(csms.__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.fail(f"{pyproject} not found: run the tests from the source tree")
    setuptools = tomllib.loads(pyproject.read_text("utf-8"))["tool"]["setuptools"]
    patterns = setuptools["package-data"]["csms"]
    shipped = sorted(p.name for p in PACKAGED_DATA_DIR.iterdir() if p.name != ".gitattributes")
    assert set(shipped) >= {RISVOLLAN_FILE, ACN_FILE, *LICENCE_FILES}
    for name in shipped:
        assert any(fnmatch.fnmatch(f"data/{name}", pattern) for pattern in patterns), name


def test_acn_march_2019_has_954_sessions_on_47_evses_with_30_undeliverable() -> None:
    scenario, report = load_acn(30)
    assert (report.sessions, report.stations, report.infeasible) == (954, 47, 30)
    assert report.capped_energy == 0
    assert scenario.energy_needed_kwh == pytest.approx(8900.52, abs=0.01)


@pytest.mark.parametrize(("limit_kw", "fuse_a"), [(30, 30_000 / 208), (20, 20_000 / 208)])
def test_acn_aggregate_limit_is_a_one_phase_fuse_with_every_station_on_l1(
    limit_kw: float, fuse_a: float
) -> None:
    scenario = acn_scenario(limit_kw)
    assert scenario.site.fuse_limit_a == pytest.approx(fuse_a)
    assert (scenario.site.phases, scenario.site.margin_a, scenario.site.voltage_v) == (1, 0, 208)
    assert {(s.phases, s.wiring, s.max_current_a) for s in scenario.stations} == {
        (1, ("L1",), 32.0)
    }


def test_acn_sessions_keep_periods_energy_and_the_6_6_kw_onboard_limit() -> None:
    scenario = acn_scenario(30)
    first = scenario.sessions[0]
    # First EV of the file: arrival period 76, departure 92, 4.216 kWh, station CA-315.
    assert (first.station, first.arrival_s, first.departure_s) == ("CA-315", 76 * 300, 92 * 300)
    assert first.energy_needed_kwh == pytest.approx(4.216)
    assert first.ev.max_current_a * 208 == pytest.approx(6600)
    assert scenario.start == datetime(2019, 3, 1, 8, 0, tzinfo=UTC)
    # Needs end below the taper, as ACN-Sim's ideal battery has none.
    assert max(s.soc_target for s in scenario.sessions) <= 0.8
    assert all(s.arrival_s % 300 == 0 and s.departure_s % 300 == 0 for s in scenario.sessions)


@pytest.mark.parametrize(
    ("start", "days", "in_window", "sessions", "stations", "dropped", "infeasible"),
    [
        (date(2019, 1, 7), 7, 23, 23, 8, 0, 0),  # a winter week early in the data
        (date(2020, 1, 13), 7, 302, 301, 64, 1, 5),  # a winter week at full size
    ],
)
def test_risvollan_week_counts(
    start: date,
    days: int,
    in_window: int,
    sessions: int,
    stations: int,
    dropped: int,
    infeasible: int,
) -> None:
    scenario, report = load_risvollan(start, days, 63)
    assert report.rows == 6878
    assert (report.in_window, report.sessions, report.stations) == (in_window, sessions, stations)
    assert (report.overlaps_dropped, report.infeasible) == (dropped, infeasible)
    assert (len(scenario.sessions), len(scenario.stations)) == (sessions, stations)


def test_risvollan_session_times_are_oslo_local_and_energy_is_el_kwh() -> None:
    scenario = risvollan_scenario(date(2019, 1, 7), 1, 63)
    # Row 22 of the file: AdO1-2, 07.01.2019 20:05 -> 08.01.2019 10:05, 6,14 kWh.
    session = next(s for s in scenario.sessions if s.arrival_s == 20 * 3600 + 5 * 60)
    assert (session.station, session.id_tag) == ("AdO1-2", "AdO1-2")
    assert session.departure_s == (24 + 10) * 3600 + 5 * 60
    assert session.energy_needed_kwh == pytest.approx(6.14)
    assert scenario.start is not None
    assert scenario.start.utcoffset() == timedelta(hours=1)


def test_risvollan_night_into_summer_time_is_an_hour_shorter() -> None:
    scenario = risvollan_scenario(date(2019, 3, 30), 1, 63)
    # Bl2-2: 30.03.2019 17:20 CET -> 31.03.2019 11:52 CEST is 17 h 32 min of real time.
    session = next(s for s in scenario.sessions if s.station == "Bl2-2")
    assert session.duration_s == 17 * 3600 + 32 * 60


def test_risvollan_chargers_are_users_and_shared_ids_not_garages() -> None:
    scenario = risvollan_scenario(date(2020, 1, 13), 7, 63)
    ids = {s.id for s in scenario.stations}
    assert any(i.startswith("Shared-") for i in ids)
    assert "Bl2" not in ids
    assert {s.max_current_a for s in scenario.stations} == {32.0}
    assert Counter(s.wiring[0] for s in scenario.stations).keys() == {"L1", "L2", "L3"}


def test_risvollan_gives_each_user_one_car_that_holds_their_sessions() -> None:
    scenario = risvollan_scenario(date(2020, 1, 13), 7, 63)
    cars: dict[str, set[str]] = {}
    for session in scenario.sessions:
        cars.setdefault(session.id_tag, set()).add(session.ev.key)
        assert session.energy_needed_kwh <= session.ev.battery_kwh
    assert all(len(keys) == 1 for keys in cars.values())


@pytest.mark.parametrize(
    "make",
    [lambda: acn_scenario(30), lambda: risvollan_scenario(date(2020, 1, 13), 7, 63)],
    ids=["acn", "risvollan"],
)
def test_real_data_scenarios_are_valid_scenarios(make: object) -> None:
    scenario = make()  # type: ignore[operator]
    assert parse_scenario(json.loads(json.dumps(scenario_to_dict(scenario)))) == scenario


def test_named_real_data_scenarios_load_by_name() -> None:
    assert load_scenario("acn-30kw") == acn_scenario(30)
    assert len(load_scenario("risvollan-2019-01").sessions) == 23


def test_missing_data_file_names_the_directory_and_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"not found in {tmp_path}.*{DATA_DIR_ENV}"):
        acn_scenario(30, data_dir=tmp_path)


def test_data_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path
    message = f"{RISVOLLAN_FILE} not found in {tmp_path} (from {DATA_DIR_ENV})"
    with pytest.raises(ConfigError, match=re.escape(message)):
        risvollan_scenario(date(2019, 1, 7), 7, 63)
    (tmp_path / RISVOLLAN_FILE).write_bytes((PACKAGED_DATA_DIR / RISVOLLAN_FILE).read_bytes())
    assert len(risvollan_scenario(date(2019, 1, 7), 7, 63).sessions) == 23
    # The data_dir argument still wins over the variable.
    assert len(acn_scenario(30, data_dir=PACKAGED_DATA_DIR).sessions) == 954


def test_empty_variable_means_the_packaged_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, "")
    assert default_data_dir() == PACKAGED_DATA_DIR


def test_window_of_zero_days_is_rejected() -> None:
    with pytest.raises(ConfigError, match="days"):
        risvollan_scenario(date(2019, 1, 7), 0, 63)
