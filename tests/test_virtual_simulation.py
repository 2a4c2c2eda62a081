"""The pure connector simulation and its obedience to charging profiles (no sockets)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from csms.ev import CATALOGUE, EVSpec, charge
from csms.profiles import (
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    ProfileStore,
    limit_at,
)
from virtual_chargers import simulation as sim
from virtual_chargers.charging import ChargingPoint
from virtual_chargers.fleet import FleetClock
from virtual_chargers.simulation import Car, ConnectorState, ConnectorStatus, Electrics

T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
THREE_PHASE_CAR = EVSpec("test-3p", "Test 3x32 A", 60.0, 32.0, 3)
ONE_PHASE_CAR = EVSpec("test-1p", "Test 1x32 A", 60.0, 32.0, 1)
STATION = Electrics(max_current_a=32.0, phases=3, wiring=("L2", "L3", "L1"))


def charging(car: Car, electrics: Electrics = STATION, offer: float = 16.0) -> ConnectorState:
    state = sim.start_transaction(sim.plug_in(ConnectorState(), car))
    return sim.settle(state, offer)


# ---------------------------------------------------------------- statuses
@pytest.mark.parametrize(
    ("state", "status"),
    [
        (ConnectorState(), ConnectorStatus.available),
        (sim.plug_in(ConnectorState(), Car(THREE_PHASE_CAR, 0.5)), ConnectorStatus.preparing),
        (charging(Car(THREE_PHASE_CAR, 0.5)), ConnectorStatus.charging),
        (charging(Car(THREE_PHASE_CAR, 0.5), offer=5.9), ConnectorStatus.suspended_evse),
        (charging(Car(THREE_PHASE_CAR, 0.5), offer=0.0), ConnectorStatus.suspended_evse),
        (charging(Car(THREE_PHASE_CAR, 0.8, target_soc=0.8)), ConnectorStatus.suspended_ev),
        (charging(Car(THREE_PHASE_CAR, 1.0)), ConnectorStatus.suspended_ev),
        (sim.stop_transaction(charging(Car(THREE_PHASE_CAR, 0.5))), ConnectorStatus.finishing),
        (sim.set_operative(ConnectorState(), False), ConnectorStatus.unavailable),
        (sim.hold_energy(charging(Car(THREE_PHASE_CAR, 0.5))), ConnectorStatus.suspended_evse),
    ],
)
def test_status_follows_the_connector_state(state: ConnectorState, status: ConnectorStatus) -> None:
    assert state.status is status


def test_a_session_walks_through_the_ocpp_statuses() -> None:
    state = ConnectorState()
    seen = [state.status]
    state = sim.plug_in(state, Car(THREE_PHASE_CAR, 0.79, target_soc=0.8))
    seen.append(state.status)
    state = sim.settle(sim.start_transaction(state), 16.0)
    seen.append(state.status)
    state = sim.step(state, 3600, 16.0, STATION)  # reaches its own limit of 80 %
    seen.append(state.status)
    state = sim.stop_transaction(state)
    seen.append(state.status)
    seen.append(sim.unplug(state).status)
    assert [s.value for s in seen] == [
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEV",
        "Finishing",
        "Available",
    ]


# ---------------------------------------------------------------- the offer
@pytest.mark.parametrize(
    ("limit", "steps", "offer"),
    [
        (None, None, 32.0),  # no profile: the station's maximum
        (40.0, None, 32.0),  # never above the station
        (16.0, None, 16.0),
        (6.0, None, 6.0),
        (5.9, None, 0.0),  # IEC 61851-1: nothing below 6 A
        (0.0, None, 0.0),
        (12.0, (6.0, 8.0, 10.0, 13.0, 16.0), 10.0),  # rounded down to a step
        (5.0, (6.0, 8.0), 0.0),
    ],
)
def test_offer_is_capped_and_never_below_six_amps(
    limit: float | None, steps: tuple[float, ...] | None, offer: float
) -> None:
    electrics = Electrics(32.0, 3, current_steps_a=steps)
    assert sim.offered_current_a(limit, electrics) == offer


def test_below_six_amps_the_car_pauses_and_no_energy_flows() -> None:
    state = sim.step(charging(Car(THREE_PHASE_CAR, 0.5)), 600, 5.0, STATION)
    assert state.energy_wh == 0
    assert state.current_a == 0
    assert state.status is ConnectorStatus.suspended_evse


# ---------------------------------------------------------------- energy and phases
def test_energy_is_current_times_voltage_times_phases() -> None:
    state = sim.step(charging(Car(THREE_PHASE_CAR, 0.2)), 3600, 16.0, STATION)
    assert state.energy_wh == pytest.approx(16 * 230 * 3, rel=1e-9)
    assert sim.reading(state, STATION).power_w == pytest.approx(16 * 230 * 3)


def test_the_car_stops_exactly_at_its_target() -> None:
    car = Car(THREE_PHASE_CAR, 0.5, target_soc=0.6)
    state = sim.step(charging(car), 10 * 3600, 32.0, STATION)
    assert state.car is not None and state.car.soc == 0.6
    assert state.energy_wh == pytest.approx(0.1 * 60_000, rel=1e-6)
    assert state.status is ConnectorStatus.suspended_ev


def test_full_car_tapers_then_draws_nothing() -> None:
    state = charging(Car(THREE_PHASE_CAR, 0.95))
    assert 0 < state.current_a < 16
    state = sim.step(state, 24 * 3600, 32.0, STATION)
    assert state.car is not None and state.car.soc == 1.0
    assert state.status is ConnectorStatus.suspended_ev


def test_one_phase_car_draws_on_the_first_phase_of_the_wiring() -> None:
    state = sim.step(charging(Car(ONE_PHASE_CAR, 0.2)), 3600, 16.0, STATION)
    reading = sim.reading(state, STATION)
    # The meter reports its own terminals: L1 only...
    assert reading.current_a == (16.0, 0.0, 0.0)
    assert reading.power_w == pytest.approx(16 * 230)
    assert state.energy_wh == pytest.approx(16 * 230, rel=1e-9)
    # ...which this station's wiring connects to supply phase L2.
    assert sim.supply_currents_a(state, STATION) == (0.0, 16.0, 0.0)


def test_three_phase_car_on_a_one_phase_station_uses_one_phase() -> None:
    station = Electrics(32.0, 1, ("L3",))
    state = sim.step(charging(Car(THREE_PHASE_CAR, 0.2)), 3600, 16.0, station)
    assert sim.reading(state, station).current_a == (16.0,)
    assert sim.supply_currents_a(state, station) == (0.0, 0.0, 16.0)
    assert state.energy_wh == pytest.approx(16 * 230, rel=1e-9)


def test_three_phase_car_loads_every_supply_phase() -> None:
    state = charging(Car(THREE_PHASE_CAR, 0.2))
    assert sim.reading(state, STATION).current_a == (16.0, 16.0, 16.0)
    assert sim.supply_currents_a(state, STATION) == (16.0, 16.0, 16.0)


def test_meter_register_is_whole_wh_and_never_goes_down() -> None:
    state = charging(Car(THREE_PHASE_CAR, 0.2))
    last = -1
    for seconds in (0.3, 0.4, 17.0, 0.01, 120.0):
        state = sim.step(state, seconds, 16.0, STATION)
        reading = sim.reading(state, STATION)
        assert isinstance(reading.energy_wh, int)
        assert reading.energy_wh >= last
        last = reading.energy_wh


def test_seconds_until_idle_matches_the_step_that_reaches_the_target() -> None:
    state = charging(Car(THREE_PHASE_CAR, 0.5, target_soc=0.55))
    seconds = sim.seconds_until_idle(state, STATION)
    assert math.isfinite(seconds)
    assert sim.step(state, seconds * 0.99, 16.0, STATION).status is ConnectorStatus.charging
    assert sim.step(state, seconds * 1.01, 16.0, STATION).status is ConnectorStatus.suspended_ev


# ---------------------------------------------------------------- obeying profiles
def _absolute_default(periods: list[tuple[int, float]], unit: str = "A") -> ProfileStore:
    profile = ChargingProfile(
        profile_id=7,
        stack_level=0,
        purpose=ChargingProfilePurpose.TxDefaultProfile,
        kind=ChargingProfileKind.Absolute,
        schedule=ChargingSchedule(
            rate_unit=ChargingRateUnit(unit),
            periods=tuple(ChargingSchedulePeriod(start, limit) for start, limit in periods),
            start_schedule=T0,
        ),
    )
    return ProfileStore().install(0, profile)


def _started(electrics: Electrics, store: ProfileStore, car: Car) -> ChargingPoint:
    point = ChargingPoint(electrics, T0, profiles=store)
    point.update(T0, lambda s: sim.plug_in(s, car))
    point.transaction_start = T0
    point.update(T0, sim.start_transaction)
    return point


PERIODS = [(0, 20.0), (300, 8.0), (650, 4.0), (900, 13.5), (1500, 32.0)]


@pytest.mark.parametrize(
    "steps_s", [[1.0] * 2000, [37.0] * 54, [2000.0], [0.5, 299.7, 700.0, 999.8]]
)
def test_energy_follows_the_limit_however_coarsely_time_advances(steps_s: list[float]) -> None:
    """Advancing in big jumps gives the same energy as second-by-second: the limit is
    obeyed at every instant, not only when the simulation happens to look."""
    store = _absolute_default(PERIODS)
    car = Car(THREE_PHASE_CAR, 0.1)
    point = _started(STATION, store, car)
    at = T0
    for seconds in steps_s:
        at += timedelta(seconds=seconds)
        point.advance(at)
        limit = limit_at(store, 1, at, transaction_id=None, transaction_start=T0)
        assert limit is not None
        assert point.state.current_a <= limit.current_a + 1e-9
    expected_wh = 0.0
    soc = car.soc
    elapsed = (at - T0).total_seconds()
    bounds = [*[p[0] for p in PERIODS], math.inf]
    for (start, amps), end in zip(PERIODS, bounds[1:], strict=True):
        span = max(0.0, min(end, elapsed) - start)
        offer = amps if amps >= 6 else 0.0
        if span and offer:
            soc, wh = charge(THREE_PHASE_CAR, soc, min(offer, 32.0), span, phases=3)
            expected_wh += wh
    assert point.state.energy_wh == pytest.approx(expected_wh, rel=1e-9, abs=1e-6)
    assert point.max_over_limit_a == pytest.approx(0.0, abs=1e-9)


def test_a_limit_in_watts_is_converted_with_the_stations_phases() -> None:
    one_phase = Electrics(32.0, 1, ("L1",))
    store = _absolute_default([(0, 2300.0)], unit="W")  # 10 A on one phase at 230 V
    point = _started(one_phase, store, Car(ONE_PHASE_CAR, 0.2))
    point.advance(T0 + timedelta(hours=1))
    assert point.state.current_a == pytest.approx(10.0)
    assert point.state.energy_wh == pytest.approx(2300.0, rel=1e-9)


def test_a_charger_that_ignores_profiles_draws_its_maximum() -> None:
    store = _absolute_default([(0, 6.0)])
    point = _started(STATION, store, Car(THREE_PHASE_CAR, 0.2))
    point.ignore_profiles = True
    point.advance(T0 + timedelta(minutes=10))
    assert point.state.current_a == 32.0


def test_installing_a_profile_applies_from_that_instant_only() -> None:
    point = _started(STATION, ProfileStore(), Car(THREE_PHASE_CAR, 0.2))
    half_hour = T0 + timedelta(minutes=30)
    point.set_profiles(half_hour, _absolute_default([(0, 6.0)]))
    point.advance(T0 + timedelta(hours=1))
    # 30 min at 32 A (no profile: the station maximum), then 30 min at 6 A.
    assert point.state.energy_wh == pytest.approx((32 + 6) * 230 * 3 / 2, rel=1e-9)


def test_next_limit_change_is_seen_ahead() -> None:
    point = _started(STATION, _absolute_default(PERIODS), Car(THREE_PHASE_CAR, 0.2))
    assert point.next_change_in(T0 + timedelta(seconds=100), 1000) == pytest.approx(200)
    assert point.next_change_in(T0 + timedelta(seconds=100), 60) == math.inf


def test_composite_schedule_includes_the_station_maximum() -> None:
    point = _started(
        STATION, _absolute_default([(0, 40.0), (600, 10.0)]), Car(THREE_PHASE_CAR, 0.2)
    )
    schedule = point.composite(1, T0, 1200, ChargingRateUnit.A)
    assert [(p.start_period_s, p.limit) for p in schedule.periods] == [(0, 32.0), (600, 10.0)]
    in_watts = point.composite(1, T0, 1200, ChargingRateUnit.W)
    assert [p.limit for p in in_watts.periods] == [32.0 * 230 * 3, 10.0 * 230 * 3]


def test_catalogue_car_smoke() -> None:
    """A real catalogue car through a whole evening under a changing limit."""
    point = _started(STATION, _absolute_default(PERIODS), Car(CATALOGUE["vw-id3-58"], 0.3, 0.8))
    for minute in range(1, 12 * 60):
        point.advance(T0 + timedelta(minutes=minute))
    assert point.state.car is not None and point.state.car.soc == 0.8
    assert point.state.status is ConnectorStatus.suspended_ev


def _relative(purpose: ChargingProfilePurpose, limit: float, profile_id: int, **kw: Any) -> Any:
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=0,
        purpose=purpose,
        kind=ChargingProfileKind.Relative,
        schedule=ChargingSchedule(ChargingRateUnit.A, (ChargingSchedulePeriod(0, limit),)),
        **kw,
    )


def test_the_limit_without_a_central_system_follows_the_stored_profiles() -> None:
    """Spec 3.13: the running TxProfile, else min(ChargePointMax, TxDefault), else none."""
    car = Car(THREE_PHASE_CAR, 0.2)
    point = _started(STATION, ProfileStore(), car)
    point.advance(T0 + timedelta(seconds=1))
    assert point.state.current_a == 32.0  # no profile: the station maximum
    cp_max = _relative(ChargingProfilePurpose.ChargePointMaxProfile, 20.0, 1)
    default = _relative(ChargingProfilePurpose.TxDefaultProfile, 10.0, 2)
    store = ProfileStore().install(0, cp_max).install(0, default)
    point.set_profiles(T0 + timedelta(seconds=2), store)
    assert point.state.current_a == 10.0  # min(20, 10)
    tx = _relative(ChargingProfilePurpose.TxProfile, 16.0, 3, transaction_id=5)
    point.transaction_id = 5
    point.set_profiles(T0 + timedelta(seconds=3), store.install(1, tx, transaction_id=5))
    assert point.state.current_a == 16.0  # the TxProfile replaces the default, under the max
    point.set_profiles(T0 + timedelta(seconds=4), point.profiles.end_transaction(1))
    assert point.state.current_a == 10.0


def test_fleet_clock_takes_the_central_systems_time_beyond_a_tolerance() -> None:
    clock = FleetClock(100.0, T0)
    elapsed = clock.elapsed_s()
    clock.sync(clock.now() + timedelta(seconds=2))  # within 0.05 x speed = 5 s
    assert abs((clock.now() - T0).total_seconds() - clock.elapsed_s()) < 1
    clock.sync(T0 + timedelta(hours=1))
    assert clock.now() - T0 >= timedelta(hours=1)
    assert clock.elapsed_s() >= elapsed  # schedules run on elapsed time, unaffected
