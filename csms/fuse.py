"""The fuse model: the worst current each connector may draw, from what its charger accepted.

A connector counts, on every supply phase its station is wired to, at the most it may draw
at any instant from now on, even if the CSMS never speaks again. With a running transaction
that is max(the transaction's limit, the limit the next car would start under), since a car
can leave and the next start at once; idle, the limit a car plugging in would start under.
A limit is min(ChargePointMaxProfile, the TxProfile else the TxDefaultProfile), the highest
stack level within a purpose, no profile = unlimited (OCPP 1.6 section 3.13), capped at the
charger's maximum. A charger that ignores profiles, or whose profiles are unknown, counts
at its maximum on every connector.

Pure: no clock, no I/O. The inputs are what the CSMS knows (see `csms.controller.mirror`);
offline chargers follow the same rules, since profiles persist and a TxProfile stays in
force for its transaction while the charger is cut off (section 3.13).

Choices where the spec leaves room, each taken on the side of the larger current:

- "At any instant" looks `HORIZON` ahead (8 days): a whole Weekly recurrence plus a day,
  so every part of a Daily or Weekly profile is seen. A change later than that would need
  the CSMS to be down for more than a week; the controller re-evaluates every tick.
- A new transaction may start at any moment, so a Relative schedule (or an Absolute one
  without startSchedule, which also runs from the start of charging, spec 7.13) counts
  with every one of its periods, each combined with whatever fixed-time profile applies
  then.
- A TxDefaultProfile on a connector either stacks with the one on connector 0 (the reading
  of `csms.profiles`: the connector's own wins at equal stack level) or replaces it outright
  (another reading of section 3.13.1, whatever the stack levels): both are evaluated and
  the larger counts.
- A TxProfile without transactionId that waits on an idle connector (RemoteStartTransaction,
  spec 5.11) is what the next car there may start under, or the TxDefaultProfile for a car
  started otherwise: both count.
- W limits become A per phase with the period's numberPhases, 3 when absent (spec 7.12);
  a station cannot spread power over more phases than it is wired to, so a one-phase
  station takes the whole power on its one phase. (A charger that divided by the phases a
  car actually uses would let a one-phase car draw up to 3x that on one phase; send such
  a charger A.)
- Each connector loads every phase its station is wired to with its per-phase limit: the
  worst case is a three-phase car on a three-phase station. Except where the caller knows
  the running car's phases (`RunningTx.car_phases`, the planner's `car_phases`): its own
  limit then loads only the station's first phases; the next car's, every phase.
- A charger whose profiles are in doubt (an answer that was lost) counts at the largest
  limit among the stores it may hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final

from csms.domain import PHASES
from csms.errors import ConfigError
from csms.profiles import (
    DEFAULT_PHASES,
    DEFAULT_VOLTAGE_V,
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    InstalledProfile,
    Limit,
    ProfileStore,
    limit_at,
    limit_timeline,
)

__all__ = [
    "HORIZON",
    "ChargerView",
    "ConnectorKey",
    "PhaseAmps",
    "RunningTx",
    "connector_worst_case_a",
    "fuse_holds",
    "site_worst_case_a",
    "worst_case_a",
]

# One full Weekly recurrence (spec 7.8 RecurrencyKind) plus one day; see the docstring.
HORIZON: Final = timedelta(days=8)
# Sums of tenths of amps: compare with a little room for binary noise.
_TOLERANCE_A: Final = 1e-6
_RECURRENCE: Final = {"Daily": timedelta(days=1), "Weekly": timedelta(weeks=1)}

ConnectorKey = tuple[str, int]
PhaseAmps = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class RunningTx:
    """A transaction running on a connector; the id may be unknown just after a start.

    `car_phases`: how many phases the car itself draws on, when known (the EV catalogue,
    or this transaction's own readings: `csms.scheduler.phases.infer_ev_phases`); the car
    loads the station's first ones. None: every phase of the station.
    """

    transaction_id: int | None
    started_at: datetime
    car_phases: int | None = None

    def __post_init__(self) -> None:
        if self.started_at.utcoffset() is None:
            raise ConfigError(f"started_at must carry a time zone, got {self.started_at}")
        if self.car_phases is not None and not 1 <= self.car_phases <= 3:
            raise ConfigError(f"car_phases must be 1, 2 or 3, got {self.car_phases}")


@dataclass(frozen=True, slots=True)
class ChargerView:
    """What the CSMS knows about one charger, as the fuse model needs it.

    `wiring`: the supply phase of each station phase, in the station's own order
    (`domain.split_wiring`), 1 to 3 long. `profiles`: the profiles it accepted, None when
    unknown. `alternatives`: other stores it may hold instead (a SetChargingProfile or
    ClearChargingProfile whose answer was lost). `managed` False: it rejects or ignores
    profiles. `online` does not change the worst case (profiles persist offline) and is
    kept for callers that build views from their station rows.
    """

    id: str
    wiring: tuple[str, ...]
    max_current_a: float
    connector_ids: tuple[int, ...]
    profiles: ProfileStore | None
    running: Mapping[int, RunningTx] = field(default_factory=dict)
    managed: bool = True
    online: bool = True
    voltage_v: float = DEFAULT_VOLTAGE_V
    alternatives: tuple[ProfileStore, ...] = ()

    def __post_init__(self) -> None:
        wiring = tuple(self.wiring)
        if not 1 <= len(wiring) <= 3 or len(set(wiring)) != len(wiring):
            raise ConfigError(f"{self.id}: wiring must name 1 to 3 distinct phases, got {wiring}")
        unknown = [p for p in wiring if p not in PHASES]
        if unknown:
            raise ConfigError(f"{self.id}: wiring phases must be L1, L2 or L3, got {unknown[0]!r}")
        if not (math.isfinite(self.max_current_a) and self.max_current_a >= 0):
            raise ConfigError(f"{self.id}: max_current_a must be >= 0, got {self.max_current_a}")
        if not (math.isfinite(self.voltage_v) and self.voltage_v > 0):
            raise ConfigError(f"{self.id}: voltage_v must be > 0, got {self.voltage_v}")
        connectors = (*self.connector_ids, *self.running)
        if any(c < 1 for c in connectors):
            raise ConfigError(f"{self.id}: connector ids must be >= 1, got {sorted(connectors)}")
        object.__setattr__(self, "wiring", wiring)
        object.__setattr__(self, "connector_ids", tuple(self.connector_ids))
        # A read-only copy: the caller's dict may change after the view was built.
        object.__setattr__(self, "running", MappingProxyType(dict(self.running)))
        object.__setattr__(self, "alternatives", tuple(self.alternatives))

    def connectors(self) -> tuple[int, ...]:
        """Every connector to count: the configured ones and any with a transaction."""
        return tuple(sorted({*self.connector_ids, *self.running}))


def connector_worst_case_a(
    view: ChargerView, connector_id: int, at: datetime, *, horizon: timedelta = HORIZON
) -> float:
    """The most `connector_id` may draw per phase at any instant in [at, at + horizon)."""
    return max(_connector_worst_parts_a(view, connector_id, at, horizon))


def _connector_worst_parts_a(
    view: ChargerView, connector_id: int, at: datetime, horizon: timedelta
) -> tuple[float, float]:
    """(the running transaction's own worst, what a transaction starting from now may
    draw) per phase; the first is 0 on an idle connector."""
    if at.utcoffset() is None:
        raise ConfigError(f"at must carry a time zone, got {at}")
    if horizon <= timedelta(0):
        raise ConfigError(f"horizon must be positive, got {horizon}")
    top = view.max_current_a
    if not view.managed or view.profiles is None:
        return top, top
    phases = len(view.wiring)
    tx = view.running.get(connector_id)
    own = fresh = 0.0
    for store in (view.profiles, *view.alternatives):
        fitted = _fit_phases(store, phases)
        for reading in _default_readings(fitted, connector_id):
            parts = _store_worst_parts_a(reading, connector_id, tx, at, horizon, view.voltage_v)
            own = top if parts[0] is None else max(own, min(parts[0], top))
            fresh = top if parts[1] is None else max(fresh, min(parts[1], top))
            if own >= top and fresh >= top:
                return top, top
    return own, fresh


def worst_case_a(
    views: Iterable[ChargerView], at: datetime, *, horizon: timedelta = HORIZON
) -> dict[ConnectorKey, PhaseAmps]:
    """Per connector, the worst current on L1, L2, L3 (0 on phases it is not wired to).

    A running car whose phases are known (`RunningTx.car_phases`) draws its own limit on
    the station's first phases only; every wired phase carries what the next car may
    draw, since the next car may use them all."""
    out: dict[ConnectorKey, PhaseAmps] = {}
    for view in views:
        wired = [PHASES.index(p) for p in view.wiring]
        for connector_id in view.connectors():
            own, fresh = _connector_worst_parts_a(view, connector_id, at, horizon)
            tx = view.running.get(connector_id)
            car = set(wired if tx is None or tx.car_phases is None else wired[: tx.car_phases])
            loads = [max(own if i in car else 0.0, fresh) if i in wired else 0.0 for i in range(3)]
            out[(view.id, connector_id)] = (loads[0], loads[1], loads[2])
    return out


def site_worst_case_a(
    views: Iterable[ChargerView], at: datetime, *, horizon: timedelta = HORIZON
) -> PhaseAmps:
    """The sum over all connectors of `worst_case_a`, per supply phase."""
    total = [0.0, 0.0, 0.0]
    for loads in worst_case_a(views, at, horizon=horizon).values():
        for i, amps in enumerate(loads):
            total[i] += amps
    return (total[0], total[1], total[2])


def fuse_holds(
    views: Iterable[ChargerView],
    at: datetime,
    capacity_a: float | Sequence[float],
    *,
    horizon: timedelta = HORIZON,
) -> bool:
    """Whether the site's worst case stays within `capacity_a` on every phase.

    `capacity_a`: one number for all phases, or (L1, L2, L3), e.g. fuse - margin -
    building load (`controller.planning.capacity_a`).
    """
    capacity: tuple[float, ...]
    if isinstance(capacity_a, int | float):
        capacity = (float(capacity_a),) * 3
    else:
        capacity = tuple(float(c) for c in capacity_a)
        if len(capacity) != 3:
            raise ConfigError(f"capacity_a must give L1, L2 and L3, got {capacity_a!r}")
    site = site_worst_case_a(views, at, horizon=horizon)
    return all(load <= cap + _TOLERANCE_A for load, cap in zip(site, capacity, strict=True))


# --------------------------------------------------------------------------------------
# One store, one connector
# --------------------------------------------------------------------------------------


def _store_worst_parts_a(
    store: ProfileStore,
    connector_id: int,
    tx: RunningTx | None,
    at: datetime,
    horizon: timedelta,
    voltage_v: float,
) -> tuple[float | None, float | None]:
    """The largest per-phase limit over the horizon of the running transaction and of a
    transaction starting from now; None where something is unlimited."""
    own: list[Limit | None] = []
    if tx is not None:
        timeline = limit_timeline(
            store,
            connector_id,
            at,
            math.ceil(horizon.total_seconds()),
            transaction_id=tx.transaction_id,
            transaction_start=tx.started_at,
            voltage_v=voltage_v,
        )
        own.extend(change.limit for change in timeline)
    # The running transaction's TxProfiles end with it (section 3.13.1); a new one starts
    # under the TxDefaultProfile.
    next_limits: list[Limit | None] = []
    fresh = store.end_transaction(connector_id)
    next_limits.extend(_next_transaction_limits(fresh, connector_id, at, horizon, voltage_v))
    if tx is None and fresh is not store:
        # A TxProfile waiting on an idle connector is for the transaction its
        # RemoteStartTransaction starts (spec 5.11); a car started otherwise does without.
        next_limits.extend(_next_transaction_limits(store, connector_id, at, horizon, voltage_v))
    return _largest(own), _largest(next_limits)


def _largest(limits: list[Limit | None]) -> float | None:
    if any(limit is None for limit in limits):
        return None
    return max((limit.current_a for limit in limits if limit is not None), default=0.0)


def _next_transaction_limits(
    store: ProfileStore,
    connector_id: int,
    at: datetime,
    horizon: timedelta,
    voltage_v: float,
) -> Iterator[Limit | None]:
    """The limits a transaction starting at any s in [at, end) has at any t in [s, end).

    The limit at t of a transaction that started at s depends on t through the fixed-time
    profiles (validity, Absolute with startSchedule, Recurring) and on u = t - s through
    the ones that run from the start of charging. It is constant on each cell
    [T_i, T_i+1) x [U_j, U_j+1) of their change points, so one instant per reachable cell
    (s = t - u >= at) sees every value: t = max(T_i, at + U_j), s = t - U_j.
    """
    end = at + horizon
    profiles = [e.profile for e in store.entries if e.connector_id in (0, connector_id)]
    fixed = sorted({at, *(t for p in profiles for t in _fixed_changes(p, at, end))})
    offsets = sorted({timedelta(0), *(u for p in profiles for u in _relative_changes(p))})
    for i, cell_start in enumerate(fixed):
        cell_end = fixed[i + 1] if i + 1 < len(fixed) else end
        for offset in offsets:
            t = max(cell_start, at + offset)
            if t >= cell_end:
                continue
            # transaction_id None: the new transaction's id is not known; only TxProfiles
            # without one (waiting for the next transaction) apply to it.
            yield limit_at(
                store,
                connector_id,
                t,
                transaction_id=None,
                transaction_start=t - offset,
                voltage_v=voltage_v,
            )


def _runs_from_start_of_charging(profile: ChargingProfile) -> bool:
    # Spec 7.13: Absolute without startSchedule starts when charging starts, like Relative.
    return profile.kind is ChargingProfileKind.Relative or profile.schedule.start_schedule is None


def _relative_changes(profile: ChargingProfile) -> Iterator[timedelta]:
    if not _runs_from_start_of_charging(profile):
        return
    schedule = profile.schedule
    yield from (timedelta(seconds=p.start_period_s) for p in schedule.periods)
    if schedule.duration_s is not None:
        yield timedelta(seconds=schedule.duration_s)


def _fixed_changes(profile: ChargingProfile, start: datetime, end: datetime) -> Iterator[datetime]:
    """Instants in (start, end) at which `profile` may change at a fixed time."""
    points: list[datetime] = [t for t in (profile.valid_from, profile.valid_to) if t is not None]
    schedule = profile.schedule
    base = schedule.start_schedule
    if base is not None and not _runs_from_start_of_charging(profile):
        offsets = [timedelta(seconds=p.start_period_s) for p in schedule.periods]
        if schedule.duration_s is not None:
            offsets.append(timedelta(seconds=schedule.duration_s))
        if profile.recurrency_kind is None:
            points.extend(base + offset for offset in offsets)
        else:
            cycle = _RECURRENCE[profile.recurrency_kind.value]
            # Beyond one recurrence nothing is executed (errata 3.44).
            offsets = [offset for offset in offsets if offset < cycle]
            first = max(0, (start - base) // cycle)
            last = max(0, (end - base) // cycle)
            for k in range(first, last + 1):
                points.extend(base + k * cycle + offset for offset in offsets)
    yield from (t for t in points if start < t < end)


# --------------------------------------------------------------------------------------
# Conservative readings of a store
# --------------------------------------------------------------------------------------


def _fit_phases(store: ProfileStore, phases: int) -> ProfileStore:
    """A station cannot use more phases than it is wired to: a W limit meant for three
    phases falls on the phases it has (spec 7.12: current per phase = W / (V x phases))."""
    if phases >= DEFAULT_PHASES:
        return store
    entries = []
    for entry in store.entries:
        schedule = entry.profile.schedule
        if schedule.rate_unit is ChargingRateUnit.W:
            periods = tuple(
                replace(p, number_phases=min(p.number_phases or DEFAULT_PHASES, phases))
                for p in schedule.periods
            )
            profile = replace(entry.profile, schedule=replace(schedule, periods=periods))
            entry = InstalledProfile(entry.connector_id, profile)
        entries.append(entry)
    return replace(store, entries=tuple(entries))


def _default_readings(store: ProfileStore, connector_id: int) -> tuple[ProfileStore, ...]:
    """The store as `csms.profiles` reads it, and, when `connector_id` has its own
    TxDefaultProfile, as a charger that lets it replace connector 0's entirely would."""
    default = ChargingProfilePurpose.TxDefaultProfile
    own = any(
        e.connector_id == connector_id and e.profile.purpose is default for e in store.entries
    )
    shared = any(e.connector_id == 0 and e.profile.purpose is default for e in store.entries)
    if not (own and shared):
        return (store,)
    replaced = tuple(
        e for e in store.entries if not (e.connector_id == 0 and e.profile.purpose is default)
    )
    return (store, replace(store, entries=replaced))
