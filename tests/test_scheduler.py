"""Table-driven behaviour of each scheduling strategy and of the hard rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from csms.errors import ConfigError
from csms.scheduler import (
    LIVE_STRATEGIES,
    STRATEGIES,
    ConnectorSpec,
    RateUnit,
    SessionDemand,
    SiteLimits,
    allocate,
    rate_for_charger,
    thesis_fraction,
)
from csms.scheduler.phases import supply_phases

NOW = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)
FAIR = ("equal", "edf", "llf", "optimal")


def station(name: str, **kw: object) -> ConnectorSpec:
    return ConnectorSpec(name, 1, **kw)  # type: ignore[arg-type]


def car(
    name: str,
    *,
    need_wh: float = 20_000,
    leaves_in_h: float = 8,
    arrived_h_ago: float = 1,
    **kw: object,
) -> SessionDemand:
    return SessionDemand(
        (name, 1),
        NOW - timedelta(hours=arrived_h_ago),
        NOW + timedelta(hours=leaves_in_h),
        need_wh,
        **kw,  # type: ignore[arg-type]
    )


def limits(
    strategy: str,
    site: SiteLimits,
    stations: list[ConnectorSpec],
    cars: list[SessionDemand],
    **kw: Any,
) -> dict[str, float]:
    alloc = allocate(strategy, site, stations, cars, NOW, **kw)
    assert not alloc.diagnostics.repaired
    return {key[0]: value for key, value in alloc.limits_a.items()}


# --- registry -----------------------------------------------------------------------------


def test_registry_names_every_strategy() -> None:
    assert STRATEGIES == ("thesis", "equal", "edf", "llf", "optimal")


def test_live_strategies_are_every_strategy_that_obeys_the_hard_rules() -> None:
    assert LIVE_STRATEGIES == ("equal", "edf", "llf", "optimal")
    assert set(LIVE_STRATEGIES) == set(STRATEGIES) - {"thesis"}


def test_thesis_never_controls_real_chargers() -> None:
    # Four 32 A stations behind 63 A: thesis would give all four 32 A (128 A per phase).
    stations = [station(f"s{i}", max_current_a=32) for i in range(4)]
    cars = [car(f"s{i}", arrived_h_ago=0.1, leaves_in_h=2) for i in range(4)]
    with pytest.raises(ConfigError) as refused:
        allocate("thesis", SiteLimits(63), stations, cars, NOW, live=True)
    message = str(refused.value)
    assert message.startswith("thesis is a benchmark baseline")
    assert message.endswith("choose one of equal, edf, llf, optimal")
    # The same allocation is still the baseline of simulate and bench.
    baseline = allocate("thesis", SiteLimits(63), stations, cars, NOW)
    assert baseline.diagnostics.phase_load_a == (128.0, 128.0, 128.0)


@pytest.mark.parametrize("strategy", LIVE_STRATEGIES)
def test_live_strategies_run_live_within_the_fuse(strategy: str) -> None:
    stations = [station(f"s{i}", max_current_a=32) for i in range(4)]
    cars = [car(f"s{i}", arrived_h_ago=0.1, leaves_in_h=2) for i in range(4)]
    alloc = allocate(strategy, SiteLimits(63), stations, cars, NOW, live=True)
    assert max(alloc.diagnostics.phase_load_a) <= 63.0
    assert not alloc.diagnostics.repaired


def test_unknown_strategy_live_is_a_config_error_listing_the_live_ones() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'greedy'; choose one of equal, edf"):
        allocate("greedy", SiteLimits(32), [station("a")], [], NOW, live=True)


def test_unknown_strategy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown strategy"):
        allocate("greedy", SiteLimits(32), [station("a")], [], NOW)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_session_on_unknown_connector_is_a_config_error(strategy: str) -> None:
    with pytest.raises(ConfigError, match="unknown connector"):
        allocate(strategy, SiteLimits(32), [station("a")], [car("b")], NOW)


def test_two_sessions_on_one_connector_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="two sessions"):
        allocate("equal", SiteLimits(32), [station("a")], [car("a"), car("a")], NOW)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"phases": 2}, "phases must be 1 or 3"),
        ({"phases": 1, "wiring": ("L1", "L2", "L3")}, "must name 1"),
        ({"wiring": ("L1", "L1", "L2")}, "distinct"),
        ({"wiring": ("L1", "L2", "N")}, "L1, L2, L3"),
        ({"min_current_a": 4.0}, "min current"),
        ({"current_steps_a": ()}, "steps"),
    ],
)
def test_inconsistent_connector_is_a_config_error(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        station("a", **kw)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_idle_connectors_and_satisfied_cars_get_zero(strategy: str) -> None:
    stations = [station("idle"), station("full"), station("hungry")]
    got = limits(strategy, SiteLimits(63), stations, [car("full", need_wh=0), car("hungry")])
    assert got["idle"] == 0.0
    assert got["full"] == 0.0
    assert got["hungry"] > 0.0


# --- thesis -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total_s", "charged_s", "fraction"),
    [
        # fast (< 10,000 s): 100 % for the first 20 %, 60 % for the next 20 %, then 20 %
        (9_000, 0, 1.0),
        (9_000, 1_799, 1.0),
        (9_000, 1_800, 0.6),
        (9_000, 3_599, 0.6),
        (9_000, 3_600, 0.2),
        (9_000, 8_999, 0.2),
        (9_000, 9_000, 0.0),
        # medium (10,000-20,000 s): 60 % for the first half, then 20 %
        (10_000, 0, 0.6),
        (15_000, 7_499, 0.6),
        (15_000, 7_500, 0.2),
        (19_999, 19_000, 0.2),
        # slow (>= 20,000 s): 20 % all along
        (20_000, 0, 0.2),
        (80_000, 79_999, 0.2),
        (80_000, 80_000, 0.0),
    ],
)
def test_thesis_tiers_reproduce_the_thesis_numbers(
    total_s: float, charged_s: float, fraction: float
) -> None:
    assert thesis_fraction(total_s, charged_s) == fraction


@pytest.mark.parametrize(
    ("arrived_h_ago", "leaves_in_h", "expected_a"),
    [
        (0.1, 2.0, 16.0),  # 2.1 h total (fast), 5 % in: full power
        (0.6, 1.5, 9.6),  # fast, 29 % in: 60 %
        (1.0, 3.0, 9.6),  # 4 h total (medium), first half: 60 %
        (1.0, 23.0, 3.2),  # slow: 20 % of 16 A, below the 6 A minimum: kept faithful
        (3.0, -0.1, 0.0),  # past its departure
    ],
)
def test_thesis_limits_are_fractions_of_station_max(
    arrived_h_ago: float, leaves_in_h: float, expected_a: float
) -> None:
    got = limits(
        "thesis",
        SiteLimits(63),
        [station("a", max_current_a=16)],
        [car("a", arrived_h_ago=arrived_h_ago, leaves_in_h=leaves_in_h)],
    )
    assert got["a"] == pytest.approx(expected_a)


def test_thesis_ignores_the_fuse_as_the_baseline_to_beat() -> None:
    stations = [station(f"s{i}", max_current_a=32) for i in range(4)]
    cars = [car(f"s{i}", arrived_h_ago=0.1, leaves_in_h=2) for i in range(4)]
    alloc = allocate("thesis", SiteLimits(63), stations, cars, NOW)
    assert alloc.diagnostics.phase_load_a == (128.0, 128.0, 128.0)


# --- equal --------------------------------------------------------------------------------


def test_equal_shares_evenly() -> None:
    stations = [station(n, max_current_a=32) for n in "abc"]
    got = limits("equal", SiteLimits(30), stations, [car(n) for n in "abc"])
    assert got == {"a": 10.0, "b": 10.0, "c": 10.0}


def test_equal_gives_the_share_a_capped_car_cannot_take_to_the_others() -> None:
    stations = [station(n, max_current_a=32) for n in "abc"]
    cars = [car("a", ev_max_current_a=6), car("b"), car("c")]
    got = limits("equal", SiteLimits(30), stations, cars)
    assert got == {"a": 6.0, "b": 12.0, "c": 12.0}


def test_equal_rounds_down_to_the_ocpp_decimal() -> None:
    stations = [station(n, max_current_a=32) for n in "abc"]
    got = limits("equal", SiteLimits(20), stations, [car(n) for n in "abc"])
    assert sorted(got.values()) == [6.6, 6.6, 6.8]  # the 0.2 A crumb goes to one car


def test_equal_pauses_the_car_with_most_slack_when_6a_each_does_not_fit() -> None:
    stations = [station(n) for n in "abc"]
    cars = [car("a", need_wh=20_000), car("b", need_wh=1_000), car("c", need_wh=15_000)]
    got = limits("equal", SiteLimits(16), stations, cars)
    assert got == {"a": 8.0, "b": 0.0, "c": 8.0}


# --- edf / llf ----------------------------------------------------------------------------


def _urgent_vs_hungry() -> tuple[list[ConnectorSpec], list[SessionDemand]]:
    # "soon" leaves first but needs little; "hungry" leaves later but has less slack.
    stations = [station("soon"), station("hungry")]
    cars = [
        car("soon", leaves_in_h=2, need_wh=2_000),
        car("hungry", leaves_in_h=4, need_wh=40_000),
    ]
    return stations, cars


def test_edf_favours_the_earliest_departure() -> None:
    got = limits("edf", SiteLimits(20), *_urgent_vs_hungry())
    assert got == {"soon": 14.0, "hungry": 6.0}


def test_llf_favours_the_least_laxity() -> None:
    got = limits("llf", SiteLimits(20), *_urgent_vs_hungry())
    assert got == {"soon": 6.0, "hungry": 14.0}


@pytest.mark.parametrize("strategy", ["edf", "llf"])
def test_priority_pauses_the_fullest_car_when_not_all_fit_at_6a(strategy: str) -> None:
    stations = [station(n) for n in "abc"]
    cars = [car("a", need_wh=30_000), car("b", need_wh=500), car("c", need_wh=25_000)]
    got = limits(strategy, SiteLimits(13), stations, cars)
    # The most urgent car takes the whole 13 A rather than 7 + 6 A with "c": full rate
    # for the first in line is what lets the urgent cars finish before they leave.
    assert got == {"a": 13.0, "b": 0.0, "c": 0.0}


@pytest.mark.parametrize("strategy", ["edf", "llf"])
def test_priority_serves_the_first_in_line_at_full_rate_not_everybody_at_6a(
    strategy: str,
) -> None:
    stations = [station(n, max_current_a=32) for n in "abcdef"]
    cars = [car(n, leaves_in_h=2 + i, need_wh=30_000 - 1_000 * i) for i, n in enumerate("abcdef")]
    got = limits(strategy, SiteLimits(40), stations, cars)
    # Six cars at 6 A would fit, but the first two in line charge at 32 A and 8 A.
    assert got == {"a": 32.0, "b": 8.0, "c": 0.0, "d": 0.0, "e": 0.0, "f": 0.0}


@pytest.mark.parametrize("strategy", ["edf", "llf"])
def test_room_too_small_for_a_minimum_is_given_to_one_more_car(strategy: str) -> None:
    stations = [station(n, max_current_a=16) for n in "abc"]
    cars = [car(n, leaves_in_h=2 + i) for i, n in enumerate("abc")]
    # 16 + 16 A leave 3 A, too little for "c": "b" gives up 3 A so that "c" gets 6 A.
    got = limits(strategy, SiteLimits(35), stations, cars)
    assert got == {"a": 16.0, "b": 13.0, "c": 6.0}


def test_room_on_a_phase_the_paused_car_does_not_use_is_not_taken_from_it() -> None:
    # "b" is a one-phase car on L1, where 2 A are left. Lowering the three-phase "a" by
    # 4 A to fit "b" would add 2 A on L1 but leave 4 A idle on L2 and on L3: a car that
    # loads phases the paused car does not use is no donor for it.
    stations = [station("a", max_current_a=32), station("b", phases=1, wiring=("L1",))]
    cars = [car("a", leaves_in_h=1), car("b", leaves_in_h=8)]
    got = limits("llf", SiteLimits(34), stations, cars)
    assert got == {"a": 32.0, "b": 0.0}


def test_llf_serves_overdue_cars_after_the_ones_still_on_time() -> None:
    stations = [station("late"), station("on_time")]
    cars = [car("late", leaves_in_h=-1, need_wh=30_000), car("on_time", leaves_in_h=9)]
    got = limits("llf", SiteLimits(10), stations, cars)
    assert got == {"late": 0.0, "on_time": 10.0}


def test_cars_beyond_the_tick_need_get_only_what_they_need_and_others_the_rest() -> None:
    stations = [station("nearly"), station("empty", max_current_a=32)]
    # 50 Wh at 3 x 230 V over a 60 s tick is 4.3 A: the 6 A minimum is enough. "nearly"
    # leaves first, so it is first in line, and takes only that.
    cars = [car("nearly", need_wh=50, leaves_in_h=1), car("empty", leaves_in_h=8)]
    got = limits("llf", SiteLimits(32), stations, cars, tick_s=60)
    assert got == {"nearly": 6.0, "empty": 26.0}


# --- optimal ------------------------------------------------------------------------------


def _run_ticks(
    strategy: str,
    site: SiteLimits,
    stations: list[ConnectorSpec],
    cars: list[SessionDemand],
    hours: float,
    tick_s: float = 300,
) -> dict[str, float]:
    """Cars draw exactly their limit; return the energy still missing per car (Wh)."""
    need = {c.connector: c.energy_needed_wh for c in cars}
    by_key = {s.key: s for s in stations}
    t = NOW
    while t < NOW + timedelta(hours=hours):
        present = [
            SessionDemand(c.connector, c.arrival_at, c.departure_at, need[c.connector])
            for c in cars
            if c.departure_at > t
        ]
        alloc = allocate(strategy, site, stations, present, t, tick_s=tick_s)
        for s in present:
            phases = by_key[s.connector].phases
            energy = alloc.limits_a[s.connector] * 230 * phases * tick_s / 3600
            need[s.connector] = max(0.0, need[s.connector] - energy)
        t += timedelta(seconds=tick_s)
    return {key[0]: wh for key, wh in need.items()}


def _deadline_crunch() -> tuple[SiteLimits, list[ConnectorSpec], list[SessionDemand]]:
    # 32 A per phase for three 32 A cars. "early" must get 22 kWh in 2 h (16 A on average),
    # the two others have all night: feasible only if "early" goes first.
    stations = [station(n, max_current_a=32) for n in ("early", "night1", "night2")]
    cars = [
        SessionDemand(("early", 1), NOW, NOW + timedelta(hours=2), 22_000),
        SessionDemand(("night1", 1), NOW, NOW + timedelta(hours=10), 40_000),
        SessionDemand(("night2", 1), NOW, NOW + timedelta(hours=10), 40_000),
    ]
    return SiteLimits(32), stations, cars


def test_optimal_delivers_to_all_when_feasible() -> None:
    missing = _run_ticks("optimal", *_deadline_crunch(), hours=10)
    assert missing == pytest.approx({"early": 0.0, "night1": 0.0, "night2": 0.0}, abs=1.0)


def test_equal_share_misses_the_early_deadline_that_optimal_meets() -> None:
    missing = _run_ticks("equal", *_deadline_crunch(), hours=10)
    assert missing["early"] > 1_000


def test_optimal_first_slot_is_fair_when_nobody_is_in_a_hurry() -> None:
    stations = [station(n, max_current_a=32) for n in "abc"]
    got = limits("optimal", SiteLimits(30), stations, [car(n, leaves_in_h=12) for n in "abc"])
    assert got == {"a": 10.0, "b": 10.0, "c": 10.0}


def test_optimal_gives_an_urgent_car_full_rate_rather_than_everybody_the_minimum() -> None:
    # "urgent" needs 20 kWh in 1 h (29 A flat out); four others have all night. The fuse
    # could give all five 6 A, but then "urgent" would miss most of its need.
    stations = [station(n, max_current_a=32) for n in ("urgent", "a", "b", "c", "d")]
    cars = [car("urgent", leaves_in_h=1, need_wh=20_000)]
    cars += [car(n, leaves_in_h=12, need_wh=10_000) for n in "abcd"]
    got = limits("optimal", SiteLimits(32), stations, cars, tick_s=300)
    assert got["urgent"] >= 29.0
    assert sum(got.values()) == pytest.approx(32.0)


def test_optimal_finishes_a_car_that_needs_less_than_a_tick_at_the_minimum() -> None:
    # 200 Wh is 4.8 A for one 5-minute tick at 3 x 230 V: its wish rounds to 0 A, and
    # without help it would stay at 0 tick after tick while "other" takes the fuse.
    stations = [station("nearly"), station("other", max_current_a=32)]
    cars = [
        car("nearly", leaves_in_h=5 / 60, need_wh=200),
        car("other", leaves_in_h=1, need_wh=30_000),
    ]
    got = limits("optimal", SiteLimits(32), stations, cars, tick_s=300)
    assert got == {"nearly": 6.0, "other": 26.0}


def test_optimal_shares_a_shortage_in_served_fractions_of_the_whole_request() -> None:
    # Same laxity and remaining need; "fed" asked for 30 kWh and has 20 already (67 %),
    # "starved" asked for 10 kWh and has nothing. The 5.5 kWh that 30 minutes of 16 A
    # bring all go to "starved" (55 %). Without what was delivered the two look the same
    # and share evenly.
    stations = [station(n) for n in ("fed", "starved")]
    cars = [
        car("fed", leaves_in_h=0.5, need_wh=10_000, energy_delivered_wh=20_000),
        car("starved", leaves_in_h=0.5, need_wh=10_000, energy_delivered_wh=0.0),
    ]
    got = limits("optimal", SiteLimits(16), stations, cars, tick_s=300)
    assert got == {"fed": 0.0, "starved": 16.0}
    blind = [
        SessionDemand(c.connector, c.arrival_at, c.departure_at, c.energy_needed_wh) for c in cars
    ]
    assert limits("optimal", SiteLimits(16), stations, blind, tick_s=300) == {
        "fed": 8.0,
        "starved": 8.0,
    }


def test_optimal_falls_back_to_llf_when_its_budget_is_exceeded() -> None:
    stations, cars = _urgent_vs_hungry()
    alloc = allocate("optimal", SiteLimits(20), stations, cars, NOW, budget_s=1e-9)
    assert alloc.diagnostics.fallback == "llf"
    assert alloc.diagnostics.fallback_reason
    llf = allocate("llf", SiteLimits(20), stations, cars, NOW)
    assert alloc.limits_a == llf.limits_a


def test_optimal_reports_no_fallback_when_it_solves_in_time() -> None:
    stations, cars = _urgent_vs_hungry()
    alloc = allocate("optimal", SiteLimits(20), stations, cars, NOW)
    assert alloc.diagnostics.fallback is None
    assert alloc.diagnostics.solve_ms is not None


# --- phases, building load, steps, tapering -----------------------------------------------


@pytest.mark.parametrize("strategy", FAIR)
def test_one_phase_cars_count_only_on_their_phase(strategy: str) -> None:
    stations = [
        station("three", max_current_a=16),
        station("one", max_current_a=16, phases=1, wiring=("L2",)),
    ]
    cars = [car("three", ev_phases=1), car("one")]
    alloc = allocate(strategy, SiteLimits((16, 16, 0)), stations, cars, NOW)
    assert {k[0]: v for k, v in alloc.limits_a.items()} == {"three": 16.0, "one": 16.0}
    assert alloc.diagnostics.phase_load_a == (16.0, 16.0, 0.0)


@pytest.mark.parametrize("strategy", FAIR)
def test_phase_rotation_spreads_one_phase_cars_over_the_supply(strategy: str) -> None:
    rotated = [
        station("a", wiring=("L1", "L2", "L3")),
        station("b", wiring=("L2", "L3", "L1")),
    ]
    same = [station("a"), station("b")]
    cars = [car("a", ev_phases=1), car("b", ev_phases=1)]
    assert limits(strategy, SiteLimits(16), rotated, cars) == {"a": 16.0, "b": 16.0}
    assert sum(limits(strategy, SiteLimits(16), same, cars).values()) == 16.0


def test_supply_phases_follow_the_wiring_and_the_car() -> None:
    rotated = station("a", wiring=("L3", "L1", "L2"))
    assert supply_phases(rotated, None) == (2, 0, 1)
    assert supply_phases(rotated, 1) == (2,)
    assert supply_phases(rotated, 2) == (2, 0)
    assert supply_phases(station("b", phases=1, wiring=("L2",)), 3) == (1,)


def test_unknown_car_drawing_on_one_phase_only_counts_there() -> None:
    stations = [station("a", wiring=("L2", "L3", "L1")), station("b", phases=1, wiring=("L3",))]
    cars = [car("a", drawn_a=(10.0, 0.1, 0.0), last_limit_a=10.0), car("b")]
    alloc = allocate("equal", SiteLimits(16), stations, cars, NOW)
    assert alloc.diagnostics.phase_load_a == (0.0, 16.0, 16.0)


@pytest.mark.parametrize("strategy", FAIR)
def test_building_load_and_margin_lower_the_capacity(strategy: str) -> None:
    site = SiteLimits(32, margin_a=2, building_load_a=(20, 5, 0))
    alloc = allocate(strategy, site, [station("a", max_current_a=32)], [car("a")], NOW)
    assert alloc.diagnostics.capacity_a == (10.0, 25.0, 30.0)
    assert alloc.limits_a[("a", 1)] == 10.0


@pytest.mark.parametrize("strategy", FAIR)
def test_building_load_above_the_fuse_pauses_everybody(strategy: str) -> None:
    site = SiteLimits(32, building_load_a=(40, 0, 0))
    alloc = allocate(strategy, site, [station("a")], [car("a")], NOW)
    assert alloc.limits_a[("a", 1)] == 0.0
    assert alloc.diagnostics.paused == (("a", 1),)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("equal", [10.0, 13.0]),
        ("edf", [8.0, 16.0]),
        ("llf", [8.0, 16.0]),
        ("optimal", [10.0, 13.0]),
    ],
)
def test_limits_land_on_the_chargers_steps(strategy: str, expected: list[float]) -> None:
    steps = (6.0, 8.0, 10.0, 13.0, 16.0)
    stations = [station(n, current_steps_a=steps) for n in "ab"]
    got = limits(strategy, SiteLimits(25), stations, [car("a"), car("b")])
    assert sorted(got.values()) == expected


def test_a_car_below_the_smallest_step_is_paused() -> None:
    stations = [station("a", current_steps_a=(8.0, 16.0))]
    got = limits("llf", SiteLimits(7.5), stations, [car("a")])
    assert got == {"a": 0.0}


@pytest.mark.parametrize("strategy", FAIR)
def test_surplus_from_a_tapering_car_goes_to_others(strategy: str) -> None:
    stations = [station("tapering"), station("other")]
    # The tapering car is the more urgent one, so priority strategies would favour it.
    eager = [car("tapering", need_wh=40_000, last_limit_a=10), car("other", need_wh=10_000)]
    tapering = [
        car("tapering", need_wh=40_000, drawn_a=(3.0, 3.0, 3.0), last_limit_a=10),
        car("other", need_wh=10_000),
    ]
    assert limits(strategy, SiteLimits(20), stations, eager)["other"] < 14.0
    # It drew 3 A of 10 A: capped at max(6 A minimum, 3 A + 2 A headroom).
    assert limits(strategy, SiteLimits(20), stations, tapering) == {"tapering": 6.0, "other": 14.0}


def test_a_car_drawing_its_full_limit_is_not_capped() -> None:
    stations = [station("a", max_current_a=32)]
    cars = [car("a", drawn_a=(9.6, 9.7, 9.5), last_limit_a=10)]
    assert limits("llf", SiteLimits(32), stations, cars) == {"a": 32.0}


def test_watts_for_chargers_that_take_power_limits() -> None:
    w_only = station("w", rate_unit=RateUnit.W)
    assert rate_for_charger(10.0, w_only, phases=3, voltage_v=230) == 6900.0
    assert rate_for_charger(10.0, station("a"), phases=3, voltage_v=230) == 10.0


def test_site_limits_accept_a_fuse_per_phase() -> None:
    site = SiteLimits((63, 50, 40), margin_a=3, building_load_a=(0, 10, 50))
    assert site.capacity_a() == (60.0, 37.0, 0.0)
