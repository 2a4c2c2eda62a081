"""The offline optimum: the hindsight upper bound on deliverable energy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from csms.errors import ConfigError
from csms.scheduler import (
    ConnectorSpec,
    OfflineSession,
    SessionDemand,
    SiteLimits,
    allocate,
    offline_optimum,
)

H = 3600.0


def test_a_lone_car_gets_what_its_station_can_give_in_its_window() -> None:
    # 16 A x 230 V x 3 phases x 2 h = 22,080 Wh, less than the 30 kWh asked for.
    result = offline_optimum(
        SiteLimits(63),
        [ConnectorSpec("a", max_current_a=16)],
        [OfflineSession(("a", 1), 1_000.0, 1_000.0 + 2 * H, 30_000)],
    )
    assert result.energy_delivered_wh == pytest.approx((22_080.0,), rel=1e-6)
    assert result.total_requested_wh == 30_000


def test_cars_sharing_a_phase_split_its_capacity_but_never_exceed_their_need() -> None:
    stations = [
        ConnectorSpec("a", phases=1, wiring=("L1",), max_current_a=32),
        ConnectorSpec("b", phases=1, wiring=("L1",), max_current_a=32),
        ConnectorSpec("c", phases=1, wiring=("L2",), max_current_a=32),
    ]
    sessions = [
        OfflineSession(("a", 1), 0, 4 * H, 2_000),
        OfflineSession(("b", 1), 0, 4 * H, 50_000),
        OfflineSession(("c", 1), 0, 4 * H, 50_000),
    ]
    result = offline_optimum(SiteLimits(20), stations, sessions, slot_s=900)
    a, b, c = result.energy_delivered_wh
    # L1 carries 20 A x 230 V x 4 h = 18,400 Wh for a and b together; c has L2 alone.
    assert a <= 2_000 + 1e-6
    assert a + b == pytest.approx(18_400, rel=1e-6)
    assert c == pytest.approx(18_400, rel=1e-6)
    assert result.total_delivered_wh == pytest.approx(36_800, rel=1e-6)


def test_a_one_phase_car_on_a_three_phase_station_uses_one_phase() -> None:
    stations = [ConnectorSpec("a", max_current_a=16)]
    one = offline_optimum(
        SiteLimits(63), stations, [OfflineSession(("a", 1), 0, H, 50_000, ev_phases=1)]
    )
    three = offline_optimum(SiteLimits(63), stations, [OfflineSession(("a", 1), 0, H, 50_000)])
    assert one.total_delivered_wh == pytest.approx(16 * 230, rel=1e-6)
    assert three.total_delivered_wh == pytest.approx(3 * 16 * 230, rel=1e-6)


def test_overlapping_sessions_on_one_connector_share_its_maximum() -> None:
    stations = [ConnectorSpec("a", max_current_a=16, phases=1, wiring=("L1",))]
    sessions = [
        OfflineSession(("a", 1), 0, H, 50_000),
        OfflineSession(("a", 1), 0, H, 50_000),
    ]
    result = offline_optimum(SiteLimits(63), stations, sessions, slot_s=600)
    assert result.total_delivered_wh == pytest.approx(16 * 230, rel=1e-6)


def test_no_sessions_deliver_nothing() -> None:
    result = offline_optimum(SiteLimits(63), [ConnectorSpec("a")], [])
    assert result.energy_delivered_wh == ()
    assert result.total_delivered_wh == 0.0


def test_session_on_an_unknown_connector_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown connector"):
        offline_optimum(SiteLimits(63), [ConnectorSpec("a")], [OfflineSession(("b", 1), 0, H, 1)])


def _simulate_online(
    strategy: str,
    site: SiteLimits,
    stations: list[ConnectorSpec],
    sessions: list[OfflineSession],
    tick_s: float,
) -> float:
    """Energy (Wh) an online strategy delivers when cars draw exactly their limits."""
    origin = datetime(2026, 1, 5, tzinfo=UTC)
    left = [s.energy_needed_wh for s in sessions]
    by_key = {c.key: c for c in stations}
    t = 0.0
    end = max(s.departure_s for s in sessions)
    while t < end:
        present = [i for i, s in enumerate(sessions) if s.arrival_s <= t < s.departure_s]
        demands = [
            SessionDemand(
                sessions[i].connector,
                origin + timedelta(seconds=sessions[i].arrival_s),
                origin + timedelta(seconds=sessions[i].departure_s),
                left[i],
            )
            for i in present
        ]
        now = origin + timedelta(seconds=t)
        alloc = allocate(strategy, site, stations, demands, now, tick_s=tick_s)
        for i in present:
            s = sessions[i]
            limit = alloc.limits_a[s.connector]
            span = min(tick_s, s.departure_s - t)
            energy = limit * site.voltage_v * by_key[s.connector].phases * span / H
            left[i] = max(0.0, left[i] - energy)
        t += tick_s
    return sum(s.energy_needed_wh for s in sessions) - sum(left)


@pytest.mark.parametrize(
    ("strategy", "at_least"), [("equal", 0.7), ("llf", 0.9), ("optimal", 0.98)]
)
def test_online_strategies_stay_below_and_optimal_close_to_the_offline_optimum(
    strategy: str, at_least: float
) -> None:
    rng = random.Random(7)
    stations = [ConnectorSpec(f"s{i}", max_current_a=32) for i in range(5)]
    sessions = []
    for i, conn in enumerate(stations):
        arrival = rng.choice((0.0, 1800.0, 3600.0)) + 600 * i
        stay = rng.choice((2 * H, 4 * H, 6 * H))
        sessions.append(OfflineSession(conn.key, arrival, arrival + stay, rng.uniform(5e3, 4e4)))
    site = SiteLimits(40)
    bound = offline_optimum(site, stations, sessions, slot_s=300).total_delivered_wh
    online = _simulate_online(strategy, site, stations, sessions, tick_s=300)
    assert online <= bound + 1.0
    assert online >= at_least * bound
