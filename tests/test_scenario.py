"""The scenario format: parsing, errors that name the field, built-ins, the generator."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csms.errors import ConfigError
from csms.ev import CATALOGUE, EVSpec
from csms.scenario import (
    BUILTIN_SCENARIOS,
    ENERGY_ONLY_TARGET_SOC,
    Scenario,
    default_fuse_limit_a,
    load_scenario,
    make_garage_scenario,
    parse_scenario,
    scenario_to_dict,
)


def _minimal() -> dict[str, Any]:
    return {
        "name": "tiny",
        "site": {"fuse_limit_a": 63, "margin_a": 2, "phases": 3, "voltage_v": 230},
        "start": "2026-01-05T16:00:00+02:00",
        "stations": [
            {"id": "CP01", "name": "Apt A1", "max_current_a": 32, "phases": 3, "wiring": "L2L3L1"},
            {"id": "CP02", "name": "Apt A2", "max_current_a": 16, "phases": 1, "wiring": "L3"},
        ],
        "sessions": [
            {
                "station": "CP01",
                "id_tag": "TAG01",
                "arrival_s": 0,
                "departure_s": 50400,
                "ev": "renault-zoe-22",
                "soc_start": 0.2,
                "soc_target": 0.9,
            },
            {
                "station": "CP02",
                "id_tag": "TAG02",
                "arrival_s": 600,
                "departure_s": 30000,
                "ev": {"battery_kwh": 64, "max_current_a": 16, "phases": 3},
                "energy_kwh": 12.8,
            },
        ],
    }


def _with(path: str, value: object) -> dict[str, Any]:
    """The minimal scenario with one field set (value ...) or deleted (value is _DELETE)."""
    data = _minimal()
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value
    return data


_DELETE = object()


def test_minimal_scenario_parses_with_all_fields() -> None:
    scenario = parse_scenario(_minimal())
    assert scenario.name == "tiny"
    assert scenario.site.available_a == 61
    assert scenario.start == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    assert scenario.stations[0].wiring == ("L2", "L3", "L1")
    assert scenario.stations[1].wiring == ("L3",)
    first, second = scenario.sessions
    assert first.ev is CATALOGUE["renault-zoe-22"]
    assert first.energy_needed_kwh == pytest.approx(0.7 * 22)
    assert second.ev.key == "custom"
    assert second.energy_needed_kwh == pytest.approx(12.8)


def test_start_is_optional_and_left_to_the_caller() -> None:
    assert parse_scenario(_with("start", _DELETE)).start is None
    assert parse_scenario(_with("start", None)).start is None


@pytest.mark.parametrize(
    "scenario",
    [parse_scenario(_minimal()), parse_scenario(_with("start", None))],
    ids=["minimal", "no-start"],
)
def test_scenario_round_trips_through_its_json_form(scenario: Scenario) -> None:
    as_json = json.loads(json.dumps(scenario_to_dict(scenario)))
    assert parse_scenario(as_json) == scenario


@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_every_builtin_loads_validates_and_round_trips(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.stations and scenario.sessions
    assert scenario.start is not None
    assert parse_scenario(json.loads(json.dumps(scenario_to_dict(scenario)))) == scenario
    station_ids = {station.id for station in scenario.stations}
    assert {session.station for session in scenario.sessions} <= station_ids


def test_thesis_scenario_has_the_four_stations_and_the_three_duration_tiers() -> None:
    scenario = load_scenario("thesis")
    # 35, 15, 20, 40 kW at 3 x 230 V
    assert [s.max_current_a for s in scenario.stations] == [51, 22, 29, 58]
    powers_kw = [s.max_current_a * 3 * 230 / 1000 for s in scenario.stations]
    assert powers_kw == pytest.approx([35, 15, 20, 40], abs=0.3)
    durations = [s.duration_s for s in scenario.sessions]
    tiers = Counter("fast" if d < 10_000 else "medium" if d < 20_000 else "slow" for d in durations)
    assert tiers == {"fast": 1, "medium": 1, "slow": 2}
    assert {s.ev.battery_kwh for s in scenario.sessions} == {22.0}
    assert max(s.arrival_s for s in scenario.sessions) <= 600


@pytest.mark.parametrize(
    ("session_fields", "soc_start", "soc_target"),
    [
        ({"energy_kwh": 12.8}, ENERGY_ONLY_TARGET_SOC - 0.2, ENERGY_ONLY_TARGET_SOC),
        ({"energy_kwh": 60.0}, 0.0, 60 / 64),  # more than fits below the taper
        ({"energy_kwh": 12.8, "soc_start": 0.5}, 0.5, 0.7),
        ({"energy_kwh": 12.8, "soc_target": 1.0}, 0.8, 1.0),
        ({"energy_kwh": 0}, ENERGY_ONLY_TARGET_SOC, ENERGY_ONLY_TARGET_SOC),
    ],
)
def test_energy_kwh_places_the_need_on_the_battery(
    session_fields: dict[str, float], soc_start: float, soc_target: float
) -> None:
    data = _minimal()
    session = data["sessions"][1]
    del session["energy_kwh"]
    session.update(session_fields)
    parsed = parse_scenario(data).sessions[1]
    assert (parsed.soc_start, parsed.soc_target) == pytest.approx((soc_start, soc_target))
    assert parsed.energy_needed_kwh == pytest.approx(session_fields["energy_kwh"])


def test_one_phase_car_draws_only_on_the_first_phase_of_the_station_wiring() -> None:
    scenario = parse_scenario(_minimal())
    rotated = scenario.stations[0]
    assert rotated.supply_phases(CATALOGUE["nissan-leaf-40"]) == ("L2",)
    assert rotated.supply_phases(CATALOGUE["tesla-model-3-lr"]) == ("L2", "L3", "L1")
    one_phase = scenario.stations[1]
    assert one_phase.supply_phases(CATALOGUE["tesla-model-3-lr"]) == ("L3",)


@pytest.mark.parametrize(
    ("station", "wiring"),
    [
        ({"id": "X", "max_current_a": 16}, ("L1", "L2", "L3")),
        ({"id": "X", "max_current_a": 16, "phases": 1}, ("L1",)),
        ({"id": "X", "max_current_a": 16, "phases": 1, "wiring": "l2"}, ("L2",)),
        ({"id": "X", "max_current_a": 16, "wiring": ["L3", "L1", "L2"]}, ("L3", "L1", "L2")),
    ],
)
def test_wiring_defaults_and_forms(station: dict[str, Any], wiring: tuple[str, ...]) -> None:
    data = _minimal()
    data["stations"].append(station)
    assert parse_scenario(data).stations[-1].wiring == wiring


def test_one_phase_site_defaults_to_one_phase_stations_on_l1() -> None:
    data = _minimal()
    data["site"]["phases"] = 1
    data["stations"] = [{"id": "CP01", "max_current_a": 32}, {"id": "CP02", "max_current_a": 32}]
    for session in data["sessions"]:
        session["station"] = "CP01" if session["id_tag"] == "TAG01" else "CP02"
    scenario = parse_scenario(data)
    assert [(s.phases, s.wiring) for s in scenario.stations] == [(1, ("L1",)), (1, ("L1",))]


# (field to change, new value, text the error must contain)
BAD_INPUTS: list[tuple[str, object, str]] = [
    ("name", _DELETE, "name: required"),
    ("name", 7, "name: expected a non-empty string"),
    ("site", _DELETE, "site: expected an object"),
    ("site.fuse_limit_a", 0, "site.fuse_limit_a: expected a number > 0"),
    ("site.fuse_limit_a", "63", "site.fuse_limit_a: expected a number"),
    ("site.fuse_limit_a", True, "site.fuse_limit_a"),
    ("site.margin_a", 63, "site.margin_a: must be smaller than fuse_limit_a"),
    ("site.margin_a", -1, "site.margin_a: expected a number >= 0"),
    ("site.phases", 2, "site.phases: must be 1 or 3"),
    ("site.voltage_v", -230, "site.voltage_v"),
    ("site.fuse", 63, "site.fuse: unknown field"),
    ("start", "2026-01-05 16:00", "start: must include a UTC offset"),
    ("start", "yesterday", "start: expected an ISO 8601"),
    ("start", 1767621600, "start: expected an ISO 8601"),
    ("stations", [], "stations: expected at least one station"),
    ("stations", {"CP01": {}}, "stations: expected an array"),
    ("stations.0", "CP01", "stations[0]: expected an object"),
    ("stations.0.id", "", "stations[0].id: expected a non-empty string"),
    ("stations.0.id", "CP 01", "stations[0].id: expected at most 48 characters without spaces"),
    ("stations.1.id", "CP01", "stations[1].id: duplicate station id 'CP01'"),
    ("stations.0.max_current_a", 5, "stations[0].max_current_a: expected a number >= 6"),
    ("stations.0.max_current_a", _DELETE, "stations[0].max_current_a: required"),
    ("stations.0.phases", 2, "stations[0].phases: must be 1 or 3"),
    ("stations.0.wiring", "L1L1L2", "stations[0].wiring: expected the three phases"),
    ("stations.0.wiring", "L1", "stations[0].wiring: expected the three phases"),
    ("stations.0.wiring", "L1L2L4", "stations[0].wiring"),
    ("stations.1.wiring", "L4", "stations[1].wiring: expected one of L1, L2, L3"),
    ("stations.1.wiring", "L1L2", "stations[1].wiring: expected one of"),
    ("stations.1.power_kw", 7, "stations[1].power_kw: unknown field"),
    ("sessions", "none", "sessions: expected an array"),
    ("sessions.0.station", "CP99", "sessions[0].station: unknown station 'CP99'"),
    ("sessions.0.id_tag", _DELETE, "sessions[0].id_tag: required"),
    ("sessions.0.id_tag", "T" * 21, "sessions[0].id_tag: expected at most 20 characters"),
    ("sessions.0.arrival_s", -5, "sessions[0].arrival_s: expected a number >= 0"),
    ("sessions.0.arrival_s", float("nan"), "sessions[0].arrival_s"),
    ("sessions.0.departure_s", 0, "sessions[0].departure_s: must be greater than arrival_s"),
    ("sessions.1.departure_s", 100, "sessions[1].departure_s: must be greater than arrival_s"),
    ("sessions.0.ev", _DELETE, "sessions[0].ev: required"),
    ("sessions.0.ev", "tesla-cybertruck", "sessions[0].ev: unknown EV model"),
    ("sessions.0.ev", 22, "sessions[0].ev: expected a catalogue key or an object"),
    ("sessions.1.ev.phases", 2, "sessions[1].ev.phases: must be 1 or 3"),
    ("sessions.1.ev.battery_kwh", 0, "sessions[1].ev.battery_kwh"),
    ("sessions.0.soc_start", 1.5, "sessions[0].soc_start: expected a number >= 0 and <= 1"),
    ("sessions.0.soc_start", _DELETE, "sessions[0].soc_start: required unless energy_kwh"),
    ("sessions.0.soc_target", 0.1, "sessions[0].soc_target: must be at least soc_start"),
    ("sessions.0.energy_kwh", 5, "sessions[0].energy_kwh: give energy_kwh or soc_start"),
    ("sessions.1.energy_kwh", 70, "sessions[1].energy_kwh: 70 kWh does not fit"),
    ("sessions.1.energy_kwh", -1, "sessions[1].energy_kwh: expected a number >= 0"),
    ("sessions.1.soc_start", 0.9, "sessions[1].energy_kwh: soc_start 0.9 plus 12.8 kWh"),
    ("sessions.1.soc_target", 0.1, "sessions[1].energy_kwh: 12.8 kWh is more than soc_target"),
    ("sessions.0.departure", 9, "sessions[0].departure: unknown field"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), BAD_INPUTS, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD_INPUTS]
)
def test_bad_input_error_names_the_field_and_what_was_expected(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(_with(path, value), source="garage.json")
    assert str(caught.value).startswith("garage.json: ")
    assert message in str(caught.value)


def test_not_an_object_at_all_is_rejected() -> None:
    with pytest.raises(ConfigError, match="scenario: expected an object, got list"):
        parse_scenario([])


def test_departure_error_shows_both_times() -> None:
    data = _with("sessions.1.departure_s", 100)
    with pytest.raises(ConfigError, match=r"\(got 100 <= 600\)"):
        parse_scenario(data)


def test_overlapping_sessions_on_one_station_are_an_error() -> None:
    data = _minimal()
    later = copy.deepcopy(data["sessions"][0])
    later.update(id_tag="TAG09", arrival_s=50_000, departure_s=60_000)
    data["sessions"].append(later)
    with pytest.raises(ConfigError, match=r"sessions\[2\]\.arrival_s: overlaps sessions\[0\]"):
        parse_scenario(data)


def test_sessions_that_touch_on_one_station_are_fine() -> None:
    data = _minimal()
    later = copy.deepcopy(data["sessions"][0])
    later.update(id_tag="TAG09", arrival_s=50_400, departure_s=60_000)
    data["sessions"].append(later)
    assert len(parse_scenario(data).sessions) == 3


def test_comment_keys_are_ignored() -> None:
    data = _with("_comment", "hello")
    data["sessions"][0]["_note"] = "fast"
    assert parse_scenario(data) == parse_scenario(_minimal())


def test_load_scenario_reads_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(_minimal()), encoding="utf-8")
    assert load_scenario(str(path)) == parse_scenario(_minimal())


def test_load_scenario_reports_invalid_json_with_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n  "site": }', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json: invalid JSON at line 2 column 11"):
        load_scenario(str(path))


def test_load_scenario_error_for_a_bad_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_with("site.phases", 2)), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json: site\.phases"):
        load_scenario(str(path))


def test_load_scenario_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ConfigError, match="no such file, and not a built-in scenario") as caught:
        load_scenario("garage-7")
    for name in BUILTIN_SCENARIOS:
        assert name in str(caught.value)


def test_garage_generator_is_reproducible_per_seed() -> None:
    assert make_garage_scenario(12, seed=3) == make_garage_scenario(12, seed=3)
    assert make_garage_scenario(12, seed=3) != make_garage_scenario(12, seed=4)


@pytest.mark.parametrize(("n_stations", "fuse_a"), [(1, 16), (4, 25), (20, 63), (100, 125)])
def test_default_fuse_grows_with_the_square_root_of_stations(n_stations: int, fuse_a: int) -> None:
    assert default_fuse_limit_a(n_stations) == fuse_a
    assert make_garage_scenario(n_stations, seed=1).site.fuse_limit_a == fuse_a


@pytest.mark.parametrize(
    ("name", "n_stations", "fuse_a"), [("garage-20", 20, 63), ("garage-100", 100, 125)]
)
def test_garage_builtins_have_residents_evenings_and_mornings(
    name: str, n_stations: int, fuse_a: float
) -> None:
    scenario = load_scenario(name)
    assert len(scenario.stations) == n_stations
    assert scenario.site.fuse_limit_a == fuse_a
    assert scenario.start is not None
    residents = [s for s in scenario.sessions if s.id_tag.startswith("TAG")]
    visitors = [s for s in scenario.sessions if s.id_tag.startswith("VIS")]
    assert len(residents) >= 0.6 * n_stations
    assert visitors
    for session in residents:
        arrival = scenario.start + timedelta(seconds=session.arrival_s)
        departure = scenario.start + timedelta(seconds=session.departure_s)
        assert 16 * 60 <= arrival.hour * 60 + arrival.minute <= 21 * 60
        assert 6 * 60 + 30 <= departure.hour * 60 + departure.minute <= 9 * 60
        assert departure.date() == arrival.date() + timedelta(days=1)
        assert 0 < session.energy_needed_kwh <= 0.95 * session.ev.battery_kwh
    for session in visitors:
        arrival = scenario.start + timedelta(seconds=session.arrival_s)
        assert 9 <= arrival.hour < 12
    needs = [s.energy_needed_kwh for s in residents]
    assert 5 < sum(needs) / len(needs) < 25  # 20-120 km a day, sometimes several days


def test_garage_mixes_one_and_three_phase_cars_and_stations_on_all_phases() -> None:
    scenario = load_scenario("garage-100")
    phases_of_cars = Counter(s.ev.phases for s in scenario.sessions)
    assert 0.15 < phases_of_cars[1] / len(scenario.sessions) < 0.5
    one_phase = [s for s in scenario.stations if s.phases == 1]
    three_phase = [s for s in scenario.stations if s.phases == 3]
    assert len(three_phase) > len(one_phase) > 0
    assert {s.wiring[0] for s in one_phase} == {"L1", "L2", "L3"}
    assert {s.wiring for s in three_phase} == {
        ("L1", "L2", "L3"),
        ("L2", "L3", "L1"),
        ("L3", "L1", "L2"),
    }
    assert {s.max_current_a for s in scenario.stations} <= {16.0, 32.0}


def test_garage_with_several_days_keeps_sessions_apart_per_station() -> None:
    scenario = make_garage_scenario(30, seed=7, days=5)
    assert parse_scenario(scenario_to_dict(scenario)) == scenario
    assert scenario.horizon_s > 4 * 86_400


def test_garage_generator_works_without_a_start() -> None:
    assert make_garage_scenario(3, seed=1, start=None).start is None


@pytest.mark.parametrize(("n_stations", "days"), [(0, 1), (5, 0)])
def test_garage_generator_rejects_empty_requests(n_stations: int, days: int) -> None:
    with pytest.raises(ConfigError):
        make_garage_scenario(n_stations, seed=1, days=days)


def test_custom_ev_survives_the_round_trip() -> None:
    scenario = parse_scenario(_minimal())
    session = scenario.sessions[1]
    assert isinstance(session.ev, EVSpec)
    dumped = scenario_to_dict(scenario)
    assert dumped["sessions"][1]["ev"]["battery_kwh"] == 64  # type: ignore[index]
