"""The fuse model (csms.fuse): the worst current each connector may draw, OCPP 1.6 section 3.13.

Every expectation is worked out by hand in the table, never by calling the code under
test; the properties check bounds any correct answer must meet, against the profile
arithmetic of csms.profiles sampled by brute force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms.errors import ConfigError
from csms.fuse import (
    HORIZON,
    ChargerView,
    RunningTx,
    connector_worst_case_a,
    fuse_holds,
    site_worst_case_a,
    worst_case_a,
)
from csms.profiles import (
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    InstalledProfile,
    ProfileStore,
    RecurrencyKind,
    limit_at,
)

MAX = ChargingProfilePurpose.ChargePointMaxProfile
DEFAULT = ChargingProfilePurpose.TxDefaultProfile
TX = ChargingProfilePurpose.TxProfile
RELATIVE = ChargingProfileKind.Relative
ABSOLUTE = ChargingProfileKind.Absolute
RECURRING = ChargingProfileKind.Recurring
A = ChargingRateUnit.A
W = ChargingRateUnit.W

NOW = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
TX_ID = 7


def hours(n: float) -> datetime:
    return NOW + timedelta(hours=n)


def profile(
    purpose: ChargingProfilePurpose,
    periods: Sequence[tuple[int, float] | tuple[int, float, int]],
    *,
    stack: int = 0,
    kind: ChargingProfileKind = RELATIVE,
    unit: ChargingRateUnit = A,
    start: datetime | None = None,
    duration_s: int | None = None,
    recurrency: RecurrencyKind | None = None,
    transaction_id: int | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    profile_id: int = 0,
) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack,
        purpose=purpose,
        kind=kind,
        schedule=ChargingSchedule(
            rate_unit=unit,
            periods=tuple(
                ChargingSchedulePeriod(p[0], p[1], p[2] if len(p) > 2 else None) for p in periods
            ),
            duration_s=duration_s,
            start_schedule=start,
        ),
        transaction_id=transaction_id,
        recurrency_kind=recurrency,
        valid_from=valid_from,
        valid_to=valid_to,
    )


def store(*placed: tuple[int, ChargingProfile]) -> ProfileStore:
    """Profiles as a charger holds them; ids numbered in order (install replaces by id)."""
    result = ProfileStore()
    for index, (connector_id, p) in enumerate(placed, 1):
        # A TxProfile needs a transaction to be accepted: its own, or the running one.
        result = result.install(
            connector_id, replace(p, profile_id=index), transaction_id=p.transaction_id or TX_ID
        )
    return result


def default(
    limit: float,
    *,
    connector: int = 0,
    stack: int = 0,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> tuple[int, ChargingProfile]:
    return connector, profile(
        DEFAULT, [(0, limit)], stack=stack, valid_from=valid_from, valid_to=valid_to
    )


def tx(
    limit: float, *, stack: int = 1, transaction_id: int | None = TX_ID
) -> tuple[int, ChargingProfile]:
    return 1, profile(TX, [(0, limit)], stack=stack, transaction_id=transaction_id)


def cp_max(limit: float) -> tuple[int, ChargingProfile]:
    return 0, profile(MAX, [(0, limit)])


RUNNING = {1: RunningTx(TX_ID, NOW - timedelta(minutes=30))}


@dataclass(frozen=True)
class Case:
    name: str
    profiles: ProfileStore | None
    expected: tuple[float, float, float]
    running: dict[int, RunningTx] = field(default_factory=dict)
    wiring: tuple[str, ...] = ("L1", "L2", "L3")
    max_current_a: float = 32.0
    managed: bool = True
    connector_id: int = 1


CASES = [
    Case("idle connector under a 6 A TxDefaultProfile", store(default(6)), (6, 6, 6)),
    Case(
        "running: TxProfile 16 A, default 6 A -> 16 A",
        store(default(6), tx(16)),
        (16, 16, 16),
        RUNNING,
    ),
    Case(
        "running, paused at 0 A, default 6 A: the next car gets 6 A at once",
        store(default(6), tx(0)),
        (6, 6, 6),
        RUNNING,
    ),
    Case(
        "override at stack level 8 (10 A) over ours at level 1 (20 A) -> 10 A",
        store(default(6), tx(20, stack=1), tx(10, stack=8)),
        (10, 10, 10),
        RUNNING,
    ),
    Case(
        "an override above ours counts (25 A over 16 A)",
        store(default(6), tx(16, stack=1), tx(25, stack=8)),
        (25, 25, 25),
        RUNNING,
    ),
    Case(
        "ChargePointMaxProfile 10 A caps a 16 A TxProfile",
        store(cp_max(10), default(6), tx(16)),
        (10, 10, 10),
        RUNNING,
    ),
    Case(
        "4140 W on 3 phases at 230 V = 4140 / (3 x 230) = 6 A per phase",
        store((0, profile(DEFAULT, [(0, 4140, 3)], unit=W))),
        (6, 6, 6),
    ),
    Case(
        "4140 W without numberPhases means 3 phases (spec 7.12): 6 A",
        store((0, profile(DEFAULT, [(0, 4140)], unit=W))),
        (6, 6, 6),
    ),
    Case(
        "one-phase station: 4600 W fall on its one phase, 4600 / 230 = 20 A on L1",
        store((0, profile(DEFAULT, [(0, 4600)], unit=W))),
        (20, 0, 0),
        wiring=("L1",),
    ),
    Case(
        "TxDefault rising to 24 A at 22:00 counts from now (16:00)",
        store(
            (0, profile(DEFAULT, [(0, 6), (6 * 3600, 24)], kind=ABSOLUTE, start=NOW)),
        ),
        (24, 24, 24),
    ),
    Case(
        "Relative TxDefault 6 A, 16 A after an hour of charging: a car reaches the second",
        store((0, profile(DEFAULT, [(0, 6), (3600, 16)]))),
        (16, 16, 16),
    ),
    Case(
        "Daily recurring TxDefault, 20 A from 22:00 each day",
        store(
            (
                0,
                profile(
                    DEFAULT,
                    [(0, 6), (6 * 3600, 20), (8 * 3600, 6)],
                    kind=RECURRING,
                    recurrency=RecurrencyKind.Daily,
                    start=hours(-24),
                ),
            )
        ),
        (20, 20, 20),
    ),
    Case(
        "a 32 A default whose validTo has passed is ignored",
        store(default(6), default(32, stack=2, valid_to=hours(-1))),
        (6, 6, 6),
    ),
    Case(
        "a 6 A default valid until 18:00 over a 16 A one: 16 A counts after it expires",
        store(default(16), default(6, stack=2, valid_to=hours(2))),
        (16, 16, 16),
    ),
    Case(
        "a 20 A default valid only from tomorrow counts today",
        store(default(6), default(20, stack=2, valid_from=hours(20))),
        (20, 20, 20),
    ),
    Case(
        "a car plugging in at 18:00, when the cap rises to 20 A, starts at the 32 A the "
        "first hour of the Relative default allows: min(20, 32) = 20 A",
        store(
            (0, profile(MAX, [(0, 10), (2 * 3600, 20)], kind=ABSOLUTE, start=NOW)),
            (0, profile(DEFAULT, [(0, 32), (3600, 6)])),
        ),
        (20, 20, 20),
    ),
    Case("unmanaged charger: its maximum", store(default(6)), (32, 32, 32), managed=False),
    Case("no profile at all: unlimited = its maximum", store(), (22, 22, 22), max_current_a=22),
    Case("profiles unknown: its maximum", None, (16, 16, 16), max_current_a=16),
    Case(
        "a TxDefault above the charger's maximum is capped at it",
        store(default(40)),
        (32, 32, 32),
    ),
    Case(
        "one-phase station wired to L2 loads only L2",
        store(default(6)),
        (0, 6, 0),
        wiring=("L2",),
    ),
    Case(
        "connector 1's own TxDefault (6 A) beats connector 0's (16 A) on connector 1",
        store(default(16), default(6, connector=1)),
        (6, 6, 6),
    ),
    Case(
        "... and connector 0's applies to connector 2",
        store(default(16), default(6, connector=1)),
        (16, 16, 16),
        connector_id=2,
    ),
    Case(
        "connector 1's own 16 A at level 0 under connector 0's 6 A at level 3: a charger "
        "may let its own replace connector 0's (spec 3.13.1), so 16 A",
        store(default(6, stack=3), default(16, connector=1)),
        (16, 16, 16),
    ),
    Case(
        "a TxProfile for another transaction does not apply: the default does",
        store(default(6), tx(20, transaction_id=99)),
        (6, 6, 6),
        RUNNING,
    ),
    Case(
        "a TxProfile waiting for the next transaction (RemoteStartTransaction) counts "
        "on an idle connector",
        store(default(6), tx(16, transaction_id=None)),
        (16, 16, 16),
    ),
    Case(
        "default 0 A and a paused car: nothing can be drawn",
        store(default(0), tx(0)),
        (0, 0, 0),
        RUNNING,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_worst_case_per_connector(case: Case) -> None:
    view = ChargerView(
        id="CP1",
        wiring=case.wiring,
        max_current_a=case.max_current_a,
        connector_ids=(1, 2),
        profiles=case.profiles,
        running=case.running,
        managed=case.managed,
    )
    assert worst_case_a([view], NOW)[("CP1", case.connector_id)] == pytest.approx(case.expected)


def test_offline_charger_counts_like_an_online_one() -> None:
    """Profiles persist offline and a TxProfile stays in force (section 3.13)."""
    profiles = store(default(6), tx(16))
    online = ChargerView("CP1", ("L1", "L2", "L3"), 32, (1,), profiles, RUNNING)
    offline = ChargerView("CP1", ("L1", "L2", "L3"), 32, (1,), profiles, RUNNING, online=False)
    assert worst_case_a([offline], NOW) == worst_case_a([online], NOW) == {("CP1", 1): (16, 16, 16)}


def test_a_one_phase_car_draws_its_own_limit_on_its_phase_only() -> None:
    """A car known to draw on one phase (catalogue or its own readings) loads the
    station's first phase with its TxProfile; every wired phase keeps what the next car,
    maybe three-phase, starts under (the default). Rotated wiring moves it."""
    one_phase = {1: RunningTx(TX_ID, NOW - timedelta(minutes=30), car_phases=1)}
    profiles = store(default(6), tx(16))
    view = ChargerView("CP1", ("L1", "L2", "L3"), 32, (1,), profiles, one_phase)
    assert worst_case_a([view], NOW) == {("CP1", 1): (16, 6, 6)}
    rotated = ChargerView("CP1", ("L2", "L3", "L1"), 32, (1,), profiles, one_phase)
    assert worst_case_a([rotated], NOW) == {("CP1", 1): (6, 16, 6)}
    two = {1: RunningTx(TX_ID, NOW - timedelta(minutes=30), car_phases=2)}
    assert worst_case_a([ChargerView("CP1", ("L3", "L1", "L2"), 32, (1,), profiles, two)], NOW) == {
        ("CP1", 1): (16, 6, 16)
    }
    # Unknown phases: every phase, as before; the single number is the larger part.
    assert worst_case_a(
        [ChargerView("CP1", ("L1", "L2", "L3"), 32, (1,), profiles, RUNNING)], NOW
    ) == {("CP1", 1): (16, 16, 16)}
    assert connector_worst_case_a(view, 1, NOW) == 16
    # A default above the car's own limit shows on every phase.
    high_default = ChargerView(
        "CP1", ("L1", "L2", "L3"), 32, (1,), store(default(20), tx(16)), one_phase
    )
    assert worst_case_a([high_default], NOW) == {("CP1", 1): (20, 20, 20)}
    with pytest.raises(ConfigError):
        RunningTx(TX_ID, NOW, car_phases=4)


def test_a_change_beyond_the_horizon_is_not_counted() -> None:
    later = store((0, profile(DEFAULT, [(0, 6), (9 * 24 * 3600, 32)], kind=ABSOLUTE, start=NOW)))
    view = ChargerView("CP1", ("L1", "L2", "L3"), 32, (1,), later)
    assert timedelta(days=8) == HORIZON
    assert connector_worst_case_a(view, 1, NOW) == 6
    assert connector_worst_case_a(view, 1, NOW, horizon=timedelta(days=10)) == 32


def test_uncertain_store_counts_the_larger_of_both() -> None:
    """A SetChargingProfile whose answer was lost: old 6 A or new 16 A default -> 16 A."""
    view = ChargerView(
        "CP1", ("L1", "L2", "L3"), 32, (1,), store(default(6)), alternatives=(store(default(16)),)
    )
    assert connector_worst_case_a(view, 1, NOW) == 16


def test_running_connector_not_in_connector_ids_is_counted() -> None:
    view = ChargerView("CP1", ("L1",), 32, (), store(default(6), tx(10)), RUNNING)
    assert worst_case_a([view], NOW) == {("CP1", 1): (10, 0, 0)}


def test_site_sum_and_fuse_check() -> None:
    """Hand sums: CP1 (3 phases, 2 idle connectors at 6 A) = 12 A on each phase; CP2 (L2
    only, running at 16 A, default 6 A) adds 16 A on L2; CP3 unmanaged 1-phase 16 A on L3."""
    views = [
        ChargerView("CP1", ("L1", "L2", "L3"), 32, (1, 2), store(default(6))),
        ChargerView("CP2", ("L2",), 32, (1,), store(default(6), tx(16)), RUNNING),
        ChargerView("CP3", ("L3",), 16, (1,), store(default(6)), managed=False),
    ]
    assert site_worst_case_a(views, NOW) == pytest.approx((12, 28, 28))
    assert fuse_holds(views, NOW, 28)
    assert not fuse_holds(views, NOW, 27.9)
    assert fuse_holds(views, NOW, (12, 28, 28))
    assert not fuse_holds(views, NOW, (11.9, 40, 40))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wiring": ("L1", "L1")}, "distinct"),
        ({"wiring": ("L4",)}, "L1, L2 or L3"),
        ({"wiring": ()}, "1 to 3"),
        ({"max_current_a": -1.0}, "max_current_a"),
        ({"voltage_v": 0.0}, "voltage_v"),
        ({"connector_ids": (0,)}, "connector ids"),
    ],
)
def test_view_rejects_impossible_stations(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "id": "CP1",
        "wiring": ("L1", "L2", "L3"),
        "max_current_a": 32.0,
        "connector_ids": (1,),
        "profiles": None,
    }
    with pytest.raises(ConfigError, match=message):
        ChargerView(**(base | kwargs))  # type: ignore[arg-type]


def test_capacity_needs_three_phases() -> None:
    with pytest.raises(ConfigError, match="L1, L2 and L3"):
        fuse_holds([], NOW, (10.0, 10.0))


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------

STEP = timedelta(minutes=30)
# Every change point generated below falls on this grid of 30 minutes from NOW, so a
# brute-force sweep over the grid sees every value the limits take.
GRID_S = [0, 1800, 3600, 7200, 5 * 3600]


@st.composite
def profiles_st(
    draw: st.DrawFn, *, purposes: Sequence[tuple[int, ChargingProfilePurpose, int | None]]
) -> tuple[int, ChargingProfile]:
    connector_id, purpose, transaction_id = draw(st.sampled_from(purposes))
    starts = sorted(draw(st.sets(st.sampled_from(GRID_S[1:]), max_size=2)))
    limits = draw(st.lists(st.integers(0, 40), min_size=len(starts) + 1, max_size=len(starts) + 1))
    kind = draw(st.sampled_from([RELATIVE, ABSOLUTE, ABSOLUTE, RECURRING]))
    start = hours(draw(st.integers(-30, 20))) if kind is not RELATIVE else None
    valid_from = draw(st.one_of(st.none(), st.integers(-10, 20).map(hours)))
    valid_to = draw(st.one_of(st.none(), st.integers(1, 30).map(hours)))
    if valid_from and valid_to and valid_to <= valid_from:
        valid_to = valid_from + timedelta(hours=1)
    return connector_id, profile(
        purpose,
        list(zip([0, *starts], limits, strict=True)),
        stack=draw(st.integers(0, 3)),
        kind=kind,
        start=start,
        duration_s=draw(st.sampled_from([None, None, 1800, 7200, 90000])),
        recurrency=RecurrencyKind.Daily if kind is RECURRING else None,
        transaction_id=transaction_id if purpose is TX else None,
        valid_from=valid_from,
        valid_to=valid_to,
    )


SPEC_PURPOSES = [
    (0, MAX, None),
    (0, DEFAULT, None),
    (1, DEFAULT, None),
    (1, TX, TX_ID),
    (1, TX, None),
    (1, TX, 99),
]
# Without a TxDefaultProfile on connector 1 the two readings of section 3.13.1 agree,
# so csms.profiles alone is the oracle.
ONE_READING = [p for p in SPEC_PURPOSES if p[:2] != (1, DEFAULT)]


def build(placed: Sequence[tuple[int, ChargingProfile]]) -> ProfileStore:
    """Entries as given, without install's checks (several may share a stack level)."""
    entries = tuple(
        InstalledProfile(c, replace(p, profile_id=i)) for i, (c, p) in enumerate(placed, 1)
    )
    return ProfileStore(entries=entries)


def capped(limit: object, maximum: float) -> float:
    current = getattr(limit, "current_a", None)
    return maximum if current is None else min(maximum, current)


running_st = st.one_of(
    st.none(), st.integers(0, 300).map(lambda m: RunningTx(TX_ID, NOW - timedelta(minutes=m)))
)
# Started on the grid, so that its Relative change points are on it too.
running_on_grid_st = st.one_of(
    st.none(), st.integers(0, 10).map(lambda k: RunningTx(TX_ID, NOW - k * STEP))
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    placed=st.lists(profiles_st(purposes=SPEC_PURPOSES), max_size=5),
    tx_=running_st,
    maximum=st.sampled_from([16.0, 32.0]),
    wiring=st.sampled_from([("L1", "L2", "L3"), ("L3",), ("L2", "L3", "L1")]),
)
def test_bounds(
    placed: list[tuple[int, ChargingProfile]],
    tx_: RunningTx | None,
    maximum: float,
    wiring: tuple[str, ...],
) -> None:
    """0 <= worst <= maximum, only on wired phases, and at least what applies right now:
    the running transaction's limit and the limit a car plugging in now would get."""
    profiles = build(placed)
    running = {1: tx_} if tx_ else {}
    view = ChargerView("CP1", wiring, maximum, (1,), profiles, running)
    loads = worst_case_a([view], NOW)[("CP1", 1)]
    wired = {("L1", "L2", "L3").index(p) for p in wiring}
    worst = max(loads)
    assert 0 <= worst <= maximum
    assert all(loads[i] == (worst if i in wired else 0) for i in range(3))
    now_new = profiles.end_transaction(1) if tx_ else profiles
    assert (
        worst
        >= capped(limit_at(now_new, 1, NOW, transaction_id=None, transaction_start=None), maximum)
        - 1e-9
    )
    if tx_:
        current = limit_at(profiles, 1, NOW, transaction_id=TX_ID, transaction_start=tx_.started_at)
        assert worst >= capped(current, maximum) - 1e-9
    # An unmanaged charger or an unknown one is never counted below this one.
    assert (
        connector_worst_case_a(
            ChargerView("CP1", wiring, maximum, (1,), profiles, running, managed=False), 1, NOW
        )
        == maximum
    )
    assert (
        connector_worst_case_a(ChargerView("CP1", wiring, maximum, (1,), None, running), 1, NOW)
        == maximum
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(placed=st.lists(profiles_st(purposes=ONE_READING), max_size=4), tx_=running_on_grid_st)
def test_equals_brute_force_over_every_start_and_instant(
    placed: list[tuple[int, ChargingProfile]], tx_: RunningTx | None
) -> None:
    """Over one day, on a 30-minute grid that holds every change point: the running
    transaction at every instant t, and a new transaction started at every s <= t (after
    the running one ends) at every t. The model is exactly the largest of these."""
    profiles = build(placed)
    horizon = timedelta(days=1)
    maximum = 100.0
    steps = int(horizon / STEP)
    expected = 0.0
    # The next transaction starts without TxProfiles; on an idle connector it may also be
    # the one a waiting (RemoteStartTransaction) TxProfile is for.
    nexts = [profiles.end_transaction(1)]
    if tx_:
        for k in range(steps):
            limit = limit_at(
                profiles, 1, NOW + k * STEP, transaction_id=TX_ID, transaction_start=tx_.started_at
            )
            expected = max(expected, capped(limit, maximum))
    else:
        nexts.append(profiles)
    for after in nexts:
        for k in range(steps):
            for j in range(k + 1):
                limit = limit_at(
                    after, 1, NOW + k * STEP, transaction_id=None, transaction_start=NOW + j * STEP
                )
                expected = max(expected, capped(limit, maximum))
    view = ChargerView("CP1", ("L1", "L2", "L3"), maximum, (1,), profiles, {1: tx_} if tx_ else {})
    assert connector_worst_case_a(view, 1, NOW, horizon=horizon) == pytest.approx(expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    placed=st.lists(profiles_st(purposes=SPEC_PURPOSES), max_size=4),
    tx_=running_st,
    limit=st.integers(0, 40),
    extra=st.lists(profiles_st(purposes=SPEC_PURPOSES), min_size=1, max_size=2),
)
def test_monotone(
    placed: list[tuple[int, ChargingProfile]],
    tx_: RunningTx | None,
    limit: int,
    extra: list[tuple[int, ChargingProfile]],
) -> None:
    """Never lower than it should be:
    - a ChargePointMaxProfile added where there was none only caps;
    - a TxDefaultProfile added on connector 0 above every stack level, always valid, no
      higher than every default limit there was, never raises the worst case;
    - possible stores (lost answers) only add: each counts at the largest."""
    profiles = build(placed)
    running = {1: tx_} if tx_ else {}

    def worst(store: ProfileStore, alternatives: tuple[ProfileStore, ...] = ()) -> float:
        view = ChargerView(
            "CP1", ("L1", "L2", "L3"), 32, (1,), store, running, alternatives=alternatives
        )
        return connector_worst_case_a(view, 1, NOW)

    base = worst(profiles)
    if not any(p.purpose is MAX for _, p in placed):
        assert worst(build([*placed, cp_max(limit)])) <= base + 1e-9
    defaults = [p for _, p in placed if p.purpose is DEFAULT]
    lowest = min((period.limit for p in defaults for period in p.schedule.periods), default=40)
    top = max((p.stack_level for p in defaults), default=-1) + 1
    low = min(limit, lowest)
    assert worst(build([*placed, default(low, stack=top)])) <= base + 1e-9
    other = build([*placed, *extra])
    assert worst(profiles, (other,)) == max(base, worst(other))
