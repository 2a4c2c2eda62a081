"""The controller's pure planning: reservations, defaults, dispatch order, messages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from csms.controller.headroom import fuse_headroom_a
from csms.controller.mirror import ProfileMirror
from csms.controller.planning import (
    Reading,
    Snapshot,
    StationState,
    build_plan,
    car_phases,
    changes_to_send,
    default_limit_a,
    departure_for,
    draws_above_limit,
    effective_building_load,
    floor_paused,
    idle_room_gain_a,
    notification_for,
    pinned_a,
    safe_default_a,
)
from csms.domain import ChargePointId, ChargePointInfo, OpenSession, SiteConfig, TransactionId
from csms.fuse import RunningTx
from csms.profiles import (
    ChargingProfilePurpose,
    ProfileStore,
    default_profile,
    profile_to_ocpp,
    tx_profile,
)
from csms.scheduler import allocate

NOW = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
SITE = SiteConfig(
    fuse_limit_a=32.0,
    margin_a=2.0,
    phases=3,
    voltage_v=230.0,
    strategy="llf",
    tick_s=5.0,
    default_departure="07:30",
    default_energy_kwh=20.0,
    timezone="Europe/Oslo",
    price_per_kwh=0.0,
    currency="NOK",
    heartbeat_interval_s=300,
    building_load_max_age_s=300.0,
    building_load_worst_case_a=10.0,
)


def station(
    cp: str,
    *,
    wiring: str = "L1L2L3",
    connected: bool = True,
    unmanaged: bool = False,
    max_a: float = 16.0,
) -> StationState:
    info = ChargePointInfo(
        id=ChargePointId(cp),
        name=None,
        password_hash=None,
        max_current_a=max_a,
        phases=len(wiring) // 2,
        wiring=wiring,
        min_current_a=6.0,
        only_stack_level_0=False,
        rate_unit="A",
        current_steps_a=None,
        boot_status="Accepted",
        vendor=None,
        model=None,
        firmware_version=None,
        connected=connected,
        last_seen_at=None,
        unmanaged=unmanaged,
    )
    return StationState(info, (1,))


def session(cp: str, tx: int, **kw: object) -> OpenSession:
    base = OpenSession(
        transaction_id=TransactionId(tx),
        charge_point_id=ChargePointId(cp),
        connector_id=1,
        id_tag="T",
        started_at=NOW - timedelta(hours=1),
        meter_start_wh=0,
        departure_at=None,
        energy_needed_wh=None,
        ev_model=None,
        battery_kwh=None,
        target_soc=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def snap(stations: list[StationState], sessions: list[OpenSession], **kw: object) -> Snapshot:
    return Snapshot(
        now=NOW,
        site=SITE,
        building_load_a=(0.0, 0.0, 0.0),
        building_load_at=NOW,
        stations=stations,
        sessions=sessions,
        **kw,  # type: ignore[arg-type]
    )


def test_idle_connectors_reserve_their_default_profile() -> None:
    plan = build_plan(snap([station("A"), station("B"), station("C")], [session("A", 1)]), {})
    assert plan.default_a == 6.0  # 3 connectors x 6 A fit in 30 A
    assert plan.reserved_a == (12.0, 12.0, 12.0)
    assert plan.site.capacity_a() == (18.0, 18.0, 18.0)
    assert [c.key for c in plan.connectors] == [("A", 1)]


def test_default_is_zero_when_not_every_connector_fits_6a() -> None:
    many = [station(f"S{i}") for i in range(6)]  # 6 x 6 A = 36 A > 30 A
    assert default_limit_a(snap(many, []), (0.0, 0.0, 0.0)) == 0.0


def test_default_drops_to_zero_when_a_paused_car_could_be_replaced_at_6a() -> None:
    # The fleet bug: A (3-phase) 7 A, B (one-phase on L2) 17 A, C paused at 0 A: 24 A on L2
    # of 30 A. C's car leaves, the next car starts under C's 6 A default before the
    # controller can react: 30 A is fine, but at 18 A for B it is 31 A > 30 A.
    stations = [station("A"), station("B", wiring="L2", max_a=32.0), station("C")]
    sessions = [session("A", 1), session("B", 2), session("C", 3)]
    plan = build_plan(snap(stations, sessions), {})
    assert plan.default_a == 6.0
    fits = {("A", 1): 7.0, ("B", 1): 17.0, ("C", 1): 0.0}
    assert safe_default_a(plan, fits) == 6.0
    assert safe_default_a(plan, fits | {("B", 1): 18.0}) == 0.0
    # Every car at or above 6 A: a new car draws no more than the one it replaces.
    assert safe_default_a(plan, {("A", 1): 6.0, ("B", 1): 18.0, ("C", 1): 6.0}) == 6.0


def test_a_floored_paused_car_is_reserved_at_the_default_and_not_scheduled() -> None:
    stations = [station("A"), station("B", wiring="L2", max_a=32.0), station("C")]
    sessions = [session("A", 1), session("B", 2), session("C", 3)]
    plan = floor_paused(build_plan(snap(stations, sessions), {}), [("C", 1)])
    assert [c.key for c in plan.connectors] == [("A", 1), ("B", 1)]
    assert plan.floored == {("C", 1)}
    assert plan.reserved_a == (6.0, 6.0, 6.0)
    assert plan.site.capacity_a() == (24.0, 24.0, 24.0)
    # What the scheduler may hand out now keeps the fuse when C's car is replaced.
    assert safe_default_a(plan, {("A", 1): 6.0, ("B", 1): 18.0}) == 6.0
    assert safe_default_a(plan, {("A", 1): 7.0, ("B", 1): 18.0}) == 0.0


def test_offline_paused_car_counts_at_the_default_for_the_next_car() -> None:
    s = snap(
        [station("A", connected=False), station("B")],
        [session("A", 1), session("B", 2)],
        last_sent_a={("A", 1): 0.0},
    )
    plan = build_plan(s, {})
    assert plan.reserved_a == (0.0, 0.0, 0.0)
    assert safe_default_a(plan, {("B", 1): 24.0}) == 6.0
    assert safe_default_a(plan, {("B", 1): 25.0}) == 0.0


def test_offline_charger_keeps_its_last_limit_reserved() -> None:
    s = snap(
        [station("A", connected=False), station("B")],
        [session("A", 1), session("B", 2)],
        last_sent_a={("A", 1): 10.0},
    )
    plan = build_plan(s, {})
    assert plan.reserved_a == (10.0, 10.0, 10.0)
    assert [c.key for c in plan.connectors] == [("B", 1)]


def test_unmanaged_charger_is_counted_at_its_maximum_on_its_phase() -> None:
    plan = build_plan(
        snap(
            [station("A", wiring="L2", unmanaged=True, max_a=32.0), station("B")],
            [session("A", 1), session("B", 2)],
        ),
        {},
    )
    assert plan.reserved_a == (0.0, 32.0, 0.0)


def test_stale_building_load_counts_as_worst_case() -> None:
    fresh = snap([], [])
    stale = replace(
        fresh, building_load_a=(1.0, 2.0, 3.0), building_load_at=NOW - timedelta(hours=1)
    )
    assert effective_building_load(stale) == (10.0, 10.0, 10.0)
    assert effective_building_load(replace(stale, building_load_at=NOW)) == (1.0, 2.0, 3.0)


def test_default_departure_is_next_morning_in_site_time_zone() -> None:
    evening = session("A", 1, started_at=datetime(2026, 1, 5, 16, 0, tzinfo=UTC))
    assert departure_for(evening, SITE, NOW) == datetime(2026, 1, 6, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("arrival_utc", "departure_utc"),
    [
        # Winter (CET, UTC+1): 07:30 Oslo is 06:30 UTC.
        (datetime(2026, 1, 14, 0, 30), datetime(2026, 1, 14, 6, 30)),
        # 07:35 Oslo: today's 07:30 has passed, so tomorrow's.
        (datetime(2026, 1, 14, 6, 35), datetime(2026, 1, 15, 6, 30)),
        # 07:00 Oslo: less than an hour before 07:30, so tomorrow's.
        (datetime(2026, 1, 14, 6, 0), datetime(2026, 1, 15, 6, 30)),
        (datetime(2026, 1, 14, 18, 35), datetime(2026, 1, 15, 6, 30)),
        # Spring forward (29 March 2026, 02:00 CET -> 03:00 CEST): 07:30 CEST is 05:30 UTC.
        (datetime(2026, 3, 28, 21, 0), datetime(2026, 3, 29, 5, 30)),
        (datetime(2026, 3, 29, 0, 30), datetime(2026, 3, 29, 5, 30)),
        # Fall back (25 October 2026, 03:00 CEST -> 02:00 CET): 07:30 CET is 06:30 UTC.
        (datetime(2026, 10, 24, 20, 0), datetime(2026, 10, 25, 6, 30)),
        (datetime(2026, 10, 25, 0, 45), datetime(2026, 10, 25, 6, 30)),
    ],
)
def test_default_departure_at_any_hour_and_across_dst(
    arrival_utc: datetime, departure_utc: datetime
) -> None:
    arrival = arrival_utc.replace(tzinfo=UTC)
    plugged = session("A", 1, started_at=arrival)
    assert departure_for(plugged, SITE, arrival) == departure_utc.replace(tzinfo=UTC)


def test_passed_departure_counts_as_imminent() -> None:
    late = session("A", 1, departure_at=NOW - timedelta(hours=2))
    assert departure_for(late, SITE, NOW) == NOW + timedelta(seconds=300)


def test_lowering_first_and_deadband() -> None:
    sessions = {("A", 1): session("A", 1), ("B", 1): session("B", 2), ("C", 1): session("C", 3)}
    accepted = {("A", 1): 16.0, ("B", 1): 10.0, ("C", 1): 12.0}
    lowering, raising = changes_to_send(
        {("A", 1): 10.0, ("B", 1): 16.0, ("C", 1): 12.4}, accepted, sessions, accepted
    )
    assert [c.key for c in lowering] == [("A", 1)]
    assert [c.key for c in raising] == [("B", 1)]


def test_first_limit_above_the_default_is_a_raise() -> None:
    """A new transaction draws under the 6 A TxDefaultProfile until its own TxProfile:
    giving it 14 A must wait until the others have been lowered."""
    sessions = {("A", 1): session("A", 1), ("B", 1): session("B", 2)}
    lowering, raising = changes_to_send(
        {("A", 1): 0.0, ("B", 1): 14.0}, {}, sessions, dict.fromkeys(sessions, 6.0)
    )
    assert [c.key for c in lowering] == [("A", 1)]
    assert [(c.key, c.in_force_a) for c in raising] == [(("B", 1), 6.0)]


def test_a_limit_whose_answer_was_lost_is_sent_again_as_a_lowering() -> None:
    """Finding 6's sibling: a raise to 20 A got no answer; the charger may hold 20 A. The
    next limit of 12 A is a lowering (sent before any raise), even though the last
    accepted limit was 10 A, and it is sent although 12 A is within the deadband of
    nothing accepted."""
    sessions = {("A", 1): session("A", 1)}
    lowering, raising = changes_to_send({("A", 1): 12.0}, {}, sessions, {("A", 1): 20.0})
    assert [(c.key, c.in_force_a) for c in lowering] == [(("A", 1), 20.0)]
    assert raising == []


def test_pause_and_resume_are_always_sent() -> None:
    sessions = {("A", 1): session("A", 1)}
    lowering, _ = changes_to_send({("A", 1): 0.0}, {("A", 1): 6.5}, sessions, {("A", 1): 6.5})
    assert [c.limit_a for c in lowering] == [0.0]  # pausing is sent
    paused = {("A", 1): 0.0}
    assert changes_to_send(paused, paused, sessions, paused) == ([], [])
    _, raising = changes_to_send({("A", 1): 6.0}, paused, sessions, paused)
    assert [c.limit_a for c in raising] == [6.0]


@pytest.mark.parametrize(
    ("previous", "limit", "kind"),
    [
        (None, 16.0, "started"),
        (16.0, 0.0, "paused"),
        (0.0, 8.0, "resumed"),
        (8.0, 16.0, "raised"),
        (16.0, 8.0, "lowered"),
    ],
)
def test_residents_are_told_what_changed(previous: float | None, limit: float, kind: str) -> None:
    note = notification_for(previous, limit)
    assert note is not None and note[0] == kind


def test_draw_above_limit_needs_a_clear_margin() -> None:
    assert not draws_above_limit([16.5, 16.4, 0.0], 16.0)
    assert draws_above_limit([18.0, 0.0, 0.0], 16.0)


def test_delivered_energy_reaches_the_scheduler() -> None:
    plan = build_plan(snap([station("A")], [session("A", 1)], delivered_wh={1: 4200.0}), {})
    (demand,) = plan.demands
    assert demand.energy_delivered_wh == 4200.0
    assert demand.energy_needed_wh == 20000.0 - 4200.0


# ------------------------------------------------------- readings know their moment
def _phase_load(plan_limits: dict[tuple[str, int], float], wired: dict[str, list[int]]) -> list:
    """Per supply phase, what every connector's limit could draw on the phases its
    station is wired to (the worst case: the car uses every phase of its station)."""
    load = [0.0, 0.0, 0.0]
    for (cp, _connector), limit in plan_limits.items():
        for phase in wired[cp]:
            load[phase] += limit
    return load


def test_the_last_cars_one_phase_reading_is_not_the_next_cars() -> None:
    """Finding 5: a one-phase reading (16, 0, 0) of transaction 1 was counted for the
    three-phase car of transaction 2 on the same connector, which then got 32 A on L2
    where a one-phase car already drew 32 A. A new transaction starts with no history."""
    site = replace(SITE, fuse_limit_a=40.0, margin_a=2.0)
    three = station("A", max_a=32.0)  # L1 L2 L3
    one = station("B", wiring="L2", max_a=32.0)
    old_reading = Reading(transaction_id=1, at=NOW - timedelta(minutes=5), current_a=(16, 0, 0))
    snapshot = replace(
        snap([three, one], [session("A", 2), session("B", 3)], readings={("A", 1): old_reading}),
        site=site,
    )
    plan = build_plan(snapshot, {})
    demand = next(d for d in plan.demands if d.connector == ("A", 1))
    assert demand.ev_phases is None and demand.drawn_a is None
    limits = allocate("llf", plan.site, plan.connectors, plan.demands, NOW).limits_a
    load = _phase_load(dict(limits), {"A": [0, 1, 2], "B": [1]})
    assert max(load) <= 38.0 + 1e-9, load


def test_this_cars_one_phase_reading_tells_its_phases() -> None:
    reading = Reading(transaction_id=2, at=NOW - timedelta(minutes=1), current_a=(16, 0, 0))
    plan = build_plan(snap([station("A")], [session("A", 2)], readings={("A", 1): reading}), {})
    assert plan.demands[0].ev_phases == 1


def test_a_reading_taken_before_a_raise_does_not_undo_it() -> None:
    """Finding 8: a car at 6 A was raised to 24 A; the charger's next sample, taken before
    the raise (or just after, before the car followed), still shows 6 A. It must not cap
    the car at 6 + 2 A: only a reading taken under the limit now in force counts."""
    raised_at = NOW - timedelta(seconds=5)
    stale = Reading(transaction_id=1, at=NOW - timedelta(seconds=10), current_a=(6, 6, 6))
    fresh = Reading(transaction_id=1, at=NOW, current_a=(6, 6, 6))  # 5 s after: not settled
    for reading in (stale, fresh):
        plan = build_plan(
            snap(
                [station("A", max_a=32.0)],
                [session("A", 1)],
                readings={("A", 1): reading},
                last_sent_a={("A", 1): 24.0},
                limit_since={("A", 1): raised_at},
            ),
            {},
        )
        assert plan.demands[0].drawn_a is None
    settled = Reading(transaction_id=1, at=raised_at + timedelta(seconds=30), current_a=(10,) * 3)
    plan = build_plan(
        snap(
            [station("A", max_a=32.0)],
            [session("A", 1)],
            readings={("A", 1): settled},
            last_sent_a={("A", 1): 24.0},
            limit_since={("A", 1): raised_at},
        ),
        {},
    )
    assert plan.demands[0].drawn_a == (10, 10, 10)  # a car that takes less: capped later


def test_idle_connectors_of_an_unmanaged_charger_are_reserved_at_its_maximum() -> None:
    """Finding 7: a charger that ignores profiles lets the next car take its maximum."""
    plan = build_plan(snap([station("U", unmanaged=True, max_a=16.0), station("A")], []), {})
    assert plan.reserved_a == (16.0 + 6.0, 16.0 + 6.0, 16.0 + 6.0)


# ------------------------------------------------------------------- overrides counted
def _override_store(tx: int, override_a: float) -> ProfileStore:
    store = ProfileStore().install(
        0,
        default_profile(ChargingProfilePurpose.TxDefaultProfile, 6.0, profile_id=2),
    )
    store = store.install(1, tx_profile(101, 1, tx, 20.0), transaction_id=tx)
    return store.install(1, tx_profile(9001, 8, tx, override_a), transaction_id=tx)


def test_an_override_pins_its_transaction_and_is_reserved_with_the_next_cars_default() -> None:
    """Finding 4: a manager's 10 A override at stack level 8 decides what the car draws
    whatever the controller sends: the connector is reserved at 10 A (plus what a next car
    could take under the default beyond that), not planned."""
    info = station("A", max_a=32.0).info
    pinned = pinned_a(info, (1,), _override_store(7, 10.0), {1: RunningTx(7, NOW)}, NOW, 230.0)
    assert pinned == {("A", 1): 10.0}
    plan = build_plan(snap([station("A", max_a=32.0)], [session("A", 7)], pinned_a=pinned), {})
    assert plan.connectors == ()
    assert plan.reserved_a == (10.0, 10.0, 10.0)


def test_our_own_profiles_pin_nothing() -> None:
    store = ProfileStore().install(
        0, default_profile(ChargingProfilePurpose.TxDefaultProfile, 6.0, profile_id=2)
    )
    store = store.install(1, tx_profile(101, 1, 7, 20.0), transaction_id=7)
    info = station("A", max_a=32.0).info
    assert pinned_a(info, (1,), store, {1: RunningTx(7, NOW)}, NOW, 230.0) == {}


def test_a_foreign_default_above_ours_pins_an_idle_connector() -> None:
    """Another central system's 16 A TxDefaultProfile at stack level 5 outweighs ours."""
    store = ProfileStore().install(
        0,
        default_profile(
            ChargingProfilePurpose.TxDefaultProfile, 16.0, profile_id=77, stack_level=5
        ),
    )
    info = station("A", max_a=32.0).info
    assert pinned_a(info, (1,), store, {}, NOW, 230.0) == {("A", 1): 16.0}


def test_a_full_car_held_at_the_default_does_not_weigh_against_lean_defaults() -> None:
    """With idle defaults at 6 A a full car is held at 6 A; lean it gets 0 A. Only the cars
    that still need energy count: the car that gains 12 A decides."""
    normal = {("FULL", 1): 6.0, ("NEEDS", 1): 13.0}
    lean = {("FULL", 1): 0.0, ("NEEDS", 1): 25.0}
    assert idle_room_gain_a(normal, lean, [("NEEDS", 1)]) == 12.0


def test_the_headroom_counts_a_one_phase_car_on_its_phase_as_the_planner_does() -> None:
    """The fuse model and the planner count a running car by one rule (`car_phases`): a
    car whose readings show one phase draws its 16 A on L1 only, the next car may draw the
    6 A default on every phase. Counting its 16 A on all three phases read as -20 A where
    the fuse had 0 A left (found as negative headroom in `make demo`)."""
    mirror = ProfileMirror()
    mirror.charger_booted("A", vendor="V", model="M", serial_number=None)
    # What the controller does at a first boot: clear everything, then set its own.
    mirror.observe_call("A", "ClearChargingProfile", {}, {"status": "Accepted"})
    for payload in (
        {
            "connectorId": 0,
            "csChargingProfiles": profile_to_ocpp(
                default_profile(ChargingProfilePurpose.TxDefaultProfile, 6.0, profile_id=2)
            ),
        },
        {"connectorId": 1, "csChargingProfiles": profile_to_ocpp(tx_profile(101, 1, 7, 16.0))},
    ):
        mirror.observe_call(
            "A", "SetChargingProfile", payload, {"status": "Accepted"}, running_tx=7
        )
    running = session("A", 7)
    one_phase = Reading(7, NOW - timedelta(minutes=1), (16.0, 0.0, 0.0))
    three_phase = Reading(7, NOW - timedelta(minutes=1), (16.0, 15.8, 16.1))
    for reading, expected in ((one_phase, (14.0, 24.0, 24.0)), (three_phase, (14.0, 14.0, 14.0))):
        snapshot = snap([station("A")], [running], readings={("A", 1): reading})
        assert car_phases(running, station("A").info, snapshot, {}) == (
            1 if reading is one_phase else None
        )
        assert fuse_headroom_a(snapshot, mirror) == expected
