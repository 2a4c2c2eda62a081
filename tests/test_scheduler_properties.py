"""Property tests: whatever the site and the cars, the hard rules hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms.scheduler import (
    MIN_CURRENT_A,
    ConnectorSpec,
    SessionDemand,
    SiteLimits,
    allocate,
)
from csms.scheduler.calm import HOLD_S
from csms.scheduler.phases import supply_phases

NOW = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)
RULED = ("equal", "edf", "llf", "optimal")
ROTATIONS = (("L1", "L2", "L3"), ("L2", "L3", "L1"), ("L3", "L1", "L2"), ("L1", "L3", "L2"))
STEP_CHOICES = (5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 32.0)

currents = st.floats(min_value=0, max_value=40, allow_nan=False).map(lambda a: round(a, 2))


@st.composite
def sites(draw: st.DrawFn) -> SiteLimits:
    fuse = draw(st.one_of(currents, st.tuples(currents, currents, currents)))
    building = draw(st.none() | st.tuples(currents, currents, currents))
    margin = draw(st.floats(min_value=0, max_value=10).map(lambda a: round(a, 1)))
    return SiteLimits(fuse, margin_a=margin, building_load_a=building)


@st.composite
def connectors(draw: st.DrawFn, name: str) -> ConnectorSpec:
    phases = draw(st.sampled_from((1, 3)))
    wiring = (
        (draw(st.sampled_from(("L1", "L2", "L3"))),)
        if phases == 1
        else draw(st.sampled_from(ROTATIONS))
    )
    steps = draw(st.none() | st.lists(st.sampled_from(STEP_CHOICES), min_size=1, max_size=5))
    return ConnectorSpec(
        name,
        1,
        max_current_a=draw(st.sampled_from((0.0, 5.0, 6.0, 10.0, 13.5, 16.0, 32.0))),
        phases=phases,
        wiring=wiring,
        current_steps_a=None if steps is None else tuple(steps),
    )


@st.composite
def sessions(draw: st.DrawFn, key: tuple[str, int], *, with_changes: bool = False) -> SessionDemand:
    arrived = draw(st.floats(min_value=0, max_value=24 * 3600))
    stays = draw(st.floats(min_value=0, max_value=30 * 3600))
    drawn = draw(st.none() | st.lists(currents, min_size=1, max_size=3).map(tuple))
    return SessionDemand(
        key,
        NOW - timedelta(seconds=arrived),
        NOW - timedelta(seconds=arrived) + timedelta(seconds=stays),
        draw(st.sampled_from((0.0, -5.0, 10.0, 5_000.0)) | st.floats(0, 80_000)),
        drawn_a=drawn,
        last_limit_a=draw(st.none() | currents),
        ev_max_current_a=draw(st.none() | st.sampled_from((4.0, 6.0, 10.0, 16.0, 32.0))),
        ev_phases=draw(st.none() | st.sampled_from((1, 2, 3))),
        # Limits in force on the 0.1 A grid or on a charger's steps (as a controller sends
        # them), changed any time from just now to long ago.
        last_change_at=(
            NOW - timedelta(seconds=draw(st.floats(min_value=0, max_value=600)))
            if with_changes and draw(st.booleans())
            else None
        ),
    )


@st.composite
def garages(
    draw: st.DrawFn, *, with_changes: bool = False
) -> tuple[SiteLimits, list[ConnectorSpec], list[SessionDemand]]:
    n = draw(st.integers(min_value=0, max_value=12))
    stations = [draw(connectors(f"cp{i}")) for i in range(n)]
    occupied = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    cars = [
        draw(sessions(s.key, with_changes=with_changes))
        for s, busy in zip(stations, occupied, strict=True)
        if busy
    ]
    if with_changes:
        # Limits in force as a controller sends them (on the grid, often a step), and some
        # a charger may no longer take (its steps or maximum changed).
        grid = st.sampled_from((0.0, *STEP_CHOICES)) | st.integers(0, 400).map(lambda a: a / 10)
        cars = [
            replace(c, last_limit_a=draw(st.none() | grid | currents)) if draw(st.booleans()) else c
            for c in cars
        ]
    return draw(sites()), stations, cars


def assert_hard_rules(
    site: SiteLimits,
    stations: list[ConnectorSpec],
    cars: list[SessionDemand],
    limits_a: dict[tuple[str, int], float],
) -> None:
    by_key = {s.key: s for s in stations}
    assert set(limits_a) == set(by_key)
    load = [0.0, 0.0, 0.0]
    with_car = {c.connector: c for c in cars}
    for key, limit in limits_a.items():
        conn = by_key[key]
        session = with_car.get(key)
        if session is None or session.energy_needed_wh <= 0:
            assert limit == 0.0, f"{key} has no need but got {limit} A"
            continue
        if limit == 0.0:
            continue
        cap = conn.max_current_a
        if session.ev_max_current_a is not None:
            cap = min(cap, session.ev_max_current_a)
        assert max(MIN_CURRENT_A, conn.min_current_a) <= limit <= cap, (key, limit, cap)
        if conn.current_steps_a is not None:
            assert limit in conn.current_steps_a, (key, limit, conn.current_steps_a)
        else:
            assert abs(limit * 10 - round(limit * 10)) < 1e-9, f"{limit} A is not on the 0.1 A grid"
        for p in supply_phases(conn, session.ev_phases, session.drawn_a):
            load[p] += limit
    for used, capacity in zip(load, site.capacity_a(), strict=True):
        assert used <= capacity + 1e-6, (load, site.capacity_a())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    garage=garages(with_changes=True),
    strategy=st.sampled_from(RULED),
    tick_s=st.sampled_from((5.0, 60.0)),
)
def test_every_strategy_but_thesis_obeys_every_hard_rule(
    garage: tuple[SiteLimits, list[ConnectorSpec], list[SessionDemand]],
    strategy: str,
    tick_s: float,
) -> None:
    site, stations, cars = garage
    alloc = allocate(strategy, site, stations, cars, NOW, tick_s=tick_s)
    assert not alloc.diagnostics.repaired, "the safety net had to fix the strategy's limits"
    assert_hard_rules(site, stations, cars, dict(alloc.limits_a))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garage=garages(), strategy=st.sampled_from(("equal", "edf", "llf")))
def test_nobody_is_paused_while_there_is_room_for_their_minimum(
    garage: tuple[SiteLimits, list[ConnectorSpec], list[SessionDemand]], strategy: str
) -> None:
    """A car that needs energy and gets 0 has no room left for its smallest limit."""
    site, stations, cars = garage
    alloc = allocate(strategy, site, stations, cars, NOW)
    room = [c - u for c, u in zip(site.capacity_a(), alloc.diagnostics.phase_load_a, strict=True)]
    by_key = {s.key: s for s in stations}
    for c in cars:
        conn = by_key[c.connector]
        if c.energy_needed_wh <= 0 or alloc.limits_a[c.connector] > 0:
            continue
        cap = (
            conn.max_current_a
            if c.ev_max_current_a is None
            else min(conn.max_current_a, c.ev_max_current_a)
        )
        allowed = [
            a for a in (conn.current_steps_a or (MIN_CURRENT_A,)) if MIN_CURRENT_A <= a <= cap
        ]
        if not allowed:
            continue
        phases = supply_phases(conn, c.ev_phases, c.drawn_a)
        assert min(room[p] for p in phases) < min(allowed) - 1e-9


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    garage=garages(with_changes=True),
    strategy=st.sampled_from(RULED),
    tick_s=st.sampled_from((2.0, 5.0, 60.0)),
)
def test_no_car_is_raised_within_the_hold_time(
    garage: tuple[SiteLimits, list[ConnectorSpec], list[SessionDemand]],
    strategy: str,
    tick_s: float,
) -> None:
    """Whatever the strategy wants, a limit set less than HOLD_S ago is never raised (a
    raise is always safe to postpone); lowerings may come at once."""
    site, stations, cars = garage
    alloc = allocate(strategy, site, stations, cars, NOW, tick_s=tick_s)
    assert not alloc.diagnostics.repaired
    for c in cars:
        if c.last_limit_a is None or c.last_change_at is None:
            continue
        if (NOW - c.last_change_at).total_seconds() < HOLD_S:
            assert alloc.limits_a[c.connector] <= c.last_limit_a + 1e-9, c
