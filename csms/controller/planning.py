"""Pure planning for the controller: no I/O, no asyncio.

The fuse invariant (FIELD-NOTES, "Smart charging"): at every instant, also while the CSMS
is down, the sum over all connectors of what each may draw — the TxProfile of a running
transaction, else the TxDefaultProfile a newly plugged car would start under — stays
under fuse - margin - building load on every phase. So:

- every idle connector keeps a reservation equal to its TxDefaultProfile (6 A when the
  site can give every connector 6 A at once, else 0 A: a new car then waits for its own
  TxProfile, at most one tick);
- a running car can leave at any instant and the next car on that connector starts under
  the TxDefaultProfile, not under the last car's TxProfile: so a connector with a running
  transaction may draw max(its TxProfile, the default). When the limits given to running
  cars (a paused car at 0 A, above all) leave no room for that, a paused car gets the
  default it is reserved anyway (`floor_paused`, when every connector fits its default),
  else the default is 0 A (`safe_default_a`), lowered before and raised only after the
  TxProfiles;
- a charger that is offline with a running transaction keeps its last TxProfile, and one
  that ignores or rejects profiles may draw its maximum: both are reserved, not planned;
- changes are applied lowering first, raising only once every lowered charger accepted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from csms.domain import PHASES, ChargePointInfo, OpenSession, SiteConfig, split_wiring
from csms.errors import ConfigError
from csms.fuse import ChargerView, RunningTx, connector_worst_case_a
from csms.profiles import (
    ChargingProfilePurpose,
    ProfileError,
    ProfileStore,
    default_profile,
    tx_profile,
)
from csms.scheduler import MIN_CURRENT_A, ConnectorSpec, RateUnit, SessionDemand, SiteLimits
from csms.scheduler.phases import infer_ev_phases, supply_phases

ConnectorKey = tuple[str, int]
# Profile ids GarageGrid owns on every charger (a new profile with the same id replaces
# the old one, OCPP 1.6 section 3.13.2); any other id was put there by someone else (a
# manager's override through the outbox, another central system).
CHARGE_POINT_MAX_PROFILE_ID = 1
TX_DEFAULT_PROFILE_ID = 2
TX_PROFILE_ID_BASE = 100  # + connector id
TX_STACK_LEVEL = 1
# Limits that differ by less than this are not re-sent (deadband); pausing and resuming
# are always sent.
DEADBAND_A = 1.0
# Idle connectors' TxDefaultProfile drops to 0 A when running cars could then get at least
# this much more current in all (no idle amp while cars wait), and comes back once they gain
# nothing from it. A car that plugs into such a connector gets its own TxProfile at the
# plan its StartTransaction triggers.
IDLE_ROOM_GAIN_A = 1.0
# A departure that has passed while the car is still plugged in counts as this soon.
OVERDUE_DEPARTURE_S = 300.0
# A car follows a new limit within a few seconds (IEC 61851-1 gives it 5 s after a PWM
# change); chargers sample and report late. A reading counts as taken under a limit only
# this long (simulated seconds) after the charger accepted it.
READING_SETTLE_S = 15.0


@dataclass(frozen=True)
class StationState:
    info: ChargePointInfo
    connector_ids: tuple[int, ...]


@dataclass(frozen=True)
class Reading:
    """What a connector's meter said, when, and for which transaction (None: not given)."""

    transaction_id: int | None
    at: datetime
    current_a: tuple[float, ...]


def reading_for(reading: Reading | None, session: OpenSession) -> Reading | None:
    """``reading`` if it belongs to this session's car, else None: a reading of the last car
    on the connector says nothing about the next one (FIELD-NOTES, "a meter reading belongs
    to its moment"). A reading without a transaction id counts when it was taken after
    this transaction started."""
    if reading is None:
        return None
    if reading.transaction_id == session.transaction_id:
        return reading
    if reading.transaction_id is None and reading.at >= session.started_at:
        return reading
    return None


def drawn_under_limit(
    reading: Reading | None, limit_since: datetime | None
) -> tuple[float, ...] | None:
    """The car's draw if it was measured under the limit now in force, after the car had
    time to follow it (``READING_SETTLE_S``); None otherwise. A reading taken before a raise
    says nothing about what the car takes at the new limit, so it must not undo the raise."""
    if reading is None or limit_since is None:
        return None
    if (reading.at - limit_since).total_seconds() < READING_SETTLE_S:
        return None
    return reading.current_a


@dataclass(frozen=True)
class Snapshot:
    """Everything the controller needs from the store for one decision."""

    now: datetime
    site: SiteConfig
    building_load_a: tuple[float, float, float] | None
    building_load_at: datetime | None
    stations: Sequence[StationState]
    sessions: Sequence[OpenSession]
    delivered_wh: Mapping[int, float] = field(default_factory=dict)
    soc: Mapping[int, float] = field(default_factory=dict)
    # The latest meter reading per connector, with its moment and transaction.
    readings: Mapping[ConnectorKey, Reading] = field(default_factory=dict)
    # The TxProfile limit each running transaction's charger accepted, and since when.
    last_sent_a: Mapping[ConnectorKey, float] = field(default_factory=dict)
    limit_since: Mapping[ConnectorKey, datetime] = field(default_factory=dict)
    # Running connectors to hold at what they may draw now instead of planning them.
    held_a: Mapping[ConnectorKey, float] = field(default_factory=dict)
    # The TxDefaultProfile each charger last accepted (absent: not known).
    defaults_in_force: Mapping[str, float] = field(default_factory=dict)
    # Connectors whose worst case our own profiles cannot move (see `pinned_a`).
    pinned_a: Mapping[ConnectorKey, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    site: SiteLimits
    connectors: tuple[ConnectorSpec, ...]
    demands: tuple[SessionDemand, ...]
    default_a: float
    reserved_a: tuple[float, float, float]
    session_by_key: Mapping[ConnectorKey, OpenSession]
    # Per phase, what the planned transactions may draw if every running car were replaced
    # by a new one under the default: fuse - margin - building load - reservations, where an
    # offline charger's running transaction counts at max(what it holds, the default).
    swap_headroom_a: tuple[float, float, float] = (math.inf, math.inf, math.inf)
    # Running connectors held at the default instead of being scheduled (`floor_paused`).
    floored: frozenset[ConnectorKey] = frozenset()


def phase_indexes(wiring: str, phases_used: int | None = None) -> list[int]:
    parts = split_wiring(wiring)
    if phases_used is not None:
        parts = parts[:phases_used]
    return [PHASES.index(p) for p in parts]


def effective_building_load(snapshot: Snapshot) -> tuple[float, float, float]:
    """The latest building load, or the configured worst case when it is missing or stale."""
    site = snapshot.site
    worst = site.building_load_worst_case_a
    if snapshot.building_load_a is None or snapshot.building_load_at is None:
        return (worst, worst, worst)
    age_s = (snapshot.now - snapshot.building_load_at).total_seconds()
    if age_s > site.building_load_max_age_s:
        return (worst, worst, worst)
    return snapshot.building_load_a


def capacity_a(site: SiteConfig, building: tuple[float, float, float]) -> tuple[float, ...]:
    return tuple(max(0.0, site.fuse_limit_a - site.margin_a - b) for b in building)


def default_limit_a(snapshot: Snapshot, building: tuple[float, float, float]) -> float:
    """The TxDefaultProfile limit every connector gets: 6 A if all fit at once, else 0 A."""
    capacity = capacity_a(snapshot.site, building)
    per_phase = [0, 0, 0]
    for station in snapshot.stations:
        for index in phase_indexes(station.info.wiring):
            per_phase[index] += len(station.connector_ids)
    if all(n * MIN_CURRENT_A <= c for n, c in zip(per_phase, capacity, strict=True)):
        return MIN_CURRENT_A
    return 0.0


def default_fits(plan: Plan) -> bool:
    """Whether the plan's default fits beside everything it reserves: every planned
    connector at the default at once (each car may leave and the next start under it),
    with overrides, unmanaged and offline chargers at what they may draw. A manager's 16 A
    override where 18 A are left makes a 6 A default on a second car unsafe (22 A)."""
    load = [0.0, 0.0, 0.0]
    for connector in plan.connectors:
        for phase in {PHASES.index(p) for p in connector.wiring}:
            load[phase] += plan.default_a
    return all(a <= h + 1e-6 for a, h in zip(load, plan.swap_headroom_a, strict=True))


def default_departure(started_at: datetime, site: SiteConfig) -> datetime:
    """The site's default departure: the next HH:MM (site time) at least an hour after arrival."""
    zone = ZoneInfo(site.timezone)
    local_start = started_at.astimezone(zone)
    hour, minute = (int(x) for x in site.default_departure.split(":"))
    candidate = datetime.combine(local_start.date(), time(hour, minute), zone)
    if candidate - local_start < timedelta(hours=1):
        candidate += timedelta(days=1)
    return candidate


def departure_for(session: OpenSession, site: SiteConfig, now: datetime) -> datetime:
    """The resident's departure, else the site default; an overdue one counts as imminent."""
    departure = session.departure_at or default_departure(session.started_at, site)
    return max(departure, now + timedelta(seconds=OVERDUE_DEPARTURE_S))


def energy_needed_wh(
    session: OpenSession,
    site: SiteConfig,
    delivered_wh: float,
    soc: float | None,
    battery_kwh: float | None,
) -> float:
    """What the car still needs: the resident's kWh, else target SoC, else the site default."""
    if session.energy_needed_wh is not None:
        return max(0.0, session.energy_needed_wh - delivered_wh)
    if session.target_soc is not None and battery_kwh and soc is not None:
        return max(0.0, (session.target_soc - soc) * battery_kwh * 1000)
    return max(0.0, site.default_energy_kwh * 1000 - delivered_wh)


def build_plan(
    snapshot: Snapshot,
    ev_lookup: Mapping[str, tuple[float, float, int]],
    *,
    default_a: float | None = None,
) -> Plan:
    """Turn a snapshot into scheduler input. ``ev_lookup``: model -> (kWh, max A, phases).

    ``default_a``: the TxDefaultProfile to plan with (default: 6 A when every connector
    fits it beside what is reserved, see `default_fits`, else 0 A; 0 A frees idle
    connectors' room for running cars, see ``IDLE_ROOM_GAIN_A``).
    """
    building = effective_building_load(snapshot)
    if default_a is None:
        if default_limit_a(snapshot, building) > 0:
            plan = build_plan(snapshot, ev_lookup, default_a=MIN_CURRENT_A)
            if default_fits(plan):
                return plan
        default_a = 0.0
    reserved = [0.0, 0.0, 0.0]
    swap = [0.0, 0.0, 0.0]
    open_by_key = {(s.charge_point_id, s.connector_id): s for s in snapshot.sessions}
    connectors: list[ConnectorSpec] = []
    demands: list[SessionDemand] = []
    session_by_key: dict[ConnectorKey, OpenSession] = {}
    for station in snapshot.stations:
        info = station.info
        keys = {(info.id, c) for c in station.connector_ids} | {
            k for k in open_by_key if k[0] == info.id
        }
        for key in sorted(keys):
            session = open_by_key.get(key)
            if key in snapshot.pinned_a:
                # An override (or a foreign profile) decides what it may draw, whatever we
                # send: reserved at that, planned around; with a car, the next car may
                # still start under our default, paid for as for an offline charger.
                held = snapshot.pinned_a[key]
                _reserve(reserved, info.wiring, held)
                if session is not None:
                    _reserve(swap, info.wiring, max(0.0, default_a - held))
                continue
            if session is None:
                _reserve(reserved, info.wiring, _idle_reservation_a(info, default_a, snapshot))
                continue
            if info.unmanaged:
                _reserve(reserved, info.wiring, info.max_current_a)
                continue
            if not info.connected or key in snapshot.held_a:
                # Offline, or its last TxProfile was rejected and the charger has not yet
                # confirmed the transaction: it keeps what it has, reserved, not planned.
                held = snapshot.held_a.get(key, snapshot.last_sent_a.get(key, default_a))
                _reserve(reserved, info.wiring, held)
                _reserve(swap, info.wiring, max(0.0, default_a - held))
                continue
            connectors.append(
                ConnectorSpec(
                    station_id=info.id,
                    connector_id=key[1],
                    max_current_a=info.max_current_a,
                    phases=info.phases,
                    wiring=split_wiring(info.wiring),
                    min_current_a=max(MIN_CURRENT_A, info.min_current_a),
                    current_steps_a=info.current_steps_a,
                    rate_unit=RateUnit(info.rate_unit),
                )
            )
            ev = ev_lookup.get(session.ev_model or "")
            battery_kwh = session.battery_kwh or (ev[0] if ev else None)
            tx = session.transaction_id
            reading = reading_for(snapshot.readings.get(key), session)
            limit_since = snapshot.limit_since.get(key)
            ev_phases = car_phases(session, info, snapshot, ev_lookup)
            demands.append(
                SessionDemand(
                    connector=key,
                    arrival_at=min(session.started_at, snapshot.now),
                    departure_at=departure_for(session, snapshot.site, snapshot.now),
                    energy_needed_wh=energy_needed_wh(
                        session,
                        snapshot.site,
                        snapshot.delivered_wh.get(tx, 0.0),
                        snapshot.soc.get(tx),
                        battery_kwh,
                    ),
                    drawn_a=drawn_under_limit(reading, limit_since),
                    last_limit_a=snapshot.last_sent_a.get(key),
                    last_change_at=limit_since,
                    ev_max_current_a=ev[1] if ev else None,
                    ev_phases=ev_phases,
                    # A shortage is shared by each car's served share of its whole need.
                    energy_delivered_wh=snapshot.delivered_wh.get(tx),
                )
            )
            session_by_key[key] = session
    load = tuple(b + r for b, r in zip(building, reserved, strict=True))
    usable = snapshot.site.fuse_limit_a - snapshot.site.margin_a
    headroom = [usable - a - s for a, s in zip(load, swap, strict=True)]
    site = SiteLimits(
        fuse_limit_a=snapshot.site.fuse_limit_a,
        margin_a=snapshot.site.margin_a,
        building_load_a=(load[0], load[1], load[2]),
        voltage_v=snapshot.site.voltage_v,
    )
    return Plan(
        site=site,
        connectors=tuple(connectors),
        demands=tuple(demands),
        default_a=default_a,
        reserved_a=(reserved[0], reserved[1], reserved[2]),
        session_by_key=session_by_key,
        swap_headroom_a=(headroom[0], headroom[1], headroom[2]),
    )


def car_phases(
    session: OpenSession,
    info: ChargePointInfo,
    snapshot: Snapshot,
    ev_lookup: Mapping[str, tuple[float, float, int]],
) -> int | None:
    """How many phases the car of ``session`` draws on: the catalogue's for its model,
    else what this transaction's own readings show (`infer_ev_phases`), else None (all
    of the station's). The planner and the fuse model (`csms.fuse.RunningTx.car_phases`)
    count a running car by the same answer."""
    ev = ev_lookup.get(session.ev_model or "")
    if ev:
        return ev[2]
    key = (session.charge_point_id, session.connector_id)
    reading = reading_for(snapshot.readings.get(key), session)
    return infer_ev_phases(reading.current_a, info.phases) if reading else None


def pinned_a(
    info: ChargePointInfo,
    connector_ids: Sequence[int],
    store: ProfileStore | None,
    running: Mapping[int, RunningTx],
    at: datetime,
    voltage_v: float,
    station_max_a: float | None = None,
) -> dict[ConnectorKey, float]:
    """Connectors on which a profile that is not ours (a manager's override at a higher
    stack level, a foreign TxDefaultProfile) decides the worst case: the fuse model
    (`csms.fuse`) gives the same answer whether our own TxProfile and TxDefaultProfile
    say 0 A or the charger's maximum. Those are counted at that answer and not planned.

    ``station_max_a``: evaluate with our ChargePointMaxProfile at this limit instead of the
    one installed, i.e. what the foreign profile asks for before `override_caps` capped it.
    """
    if store is None or info.unmanaged:
        return {}
    ours = {CHARGE_POINT_MAX_PROFILE_ID, TX_DEFAULT_PROFILE_ID}
    ours |= {TX_PROFILE_ID_BASE + c for c in (*connector_ids, *running)}
    if all(entry.profile.profile_id in ours for entry in store.entries):
        return {}
    if station_max_a is not None:
        try:
            store = store.install(
                0,
                default_profile(
                    ChargingProfilePurpose.ChargePointMaxProfile,
                    station_max_a,
                    profile_id=CHARGE_POINT_MAX_PROFILE_ID,
                    number_phases=info.phases,
                ),
            )
        except (ProfileError, ConfigError):
            return {}
    wiring = split_wiring(info.wiring)
    stack = 0 if info.only_stack_level_0 else TX_STACK_LEVEL
    out: dict[ConnectorKey, float] = {}
    for connector_id in sorted({*connector_ids, *running}):
        tx = running.get(connector_id)
        worst: list[float] = []
        for limit in (0.0, info.max_current_a):
            # Running: only the transaction's own limit is in question (our default, what
            # the next car starts under, is held at 0 A in both cases and paid for by the
            # plan's default like an offline charger's); idle: the default.
            default_a = 0.0 if tx is not None else limit
            try:
                mine = store.install(
                    0,
                    default_profile(
                        ChargingProfilePurpose.TxDefaultProfile,
                        default_a,
                        profile_id=TX_DEFAULT_PROFILE_ID,
                    ),
                )
                if tx is not None and tx.transaction_id is not None:
                    mine = mine.install(
                        connector_id,
                        tx_profile(
                            TX_PROFILE_ID_BASE + connector_id, stack, tx.transaction_id, limit
                        ),
                        transaction_id=tx.transaction_id,
                    )
                view = ChargerView(
                    info.id,
                    wiring,
                    info.max_current_a,
                    tuple(connector_ids),
                    mine,
                    running=running,
                    voltage_v=voltage_v,
                )
                worst.append(connector_worst_case_a(view, connector_id, at))
            except (ProfileError, ConfigError):
                break
        if len(worst) == 2 and abs(worst[0] - worst[1]) < 1e-6:
            out[(info.id, connector_id)] = worst[0]
    return out


def _idle_reservation_a(info: ChargePointInfo, default_a: float, snapshot: Snapshot) -> float:
    """What a car plugged into this idle connector right now could draw before the CSMS
    reacts: the TxDefaultProfile the charger holds."""
    if info.unmanaged:
        return info.max_current_a  # it rejects or ignores profiles: its maximum
    if not info.connected:
        # It cannot be told a new default: it keeps the one it accepted (its maximum when
        # we know of none), and a new car there starts under that.
        held = snapshot.defaults_in_force.get(info.id)
        return info.max_current_a if held is None else max(held, 0.0)
    return default_a  # sent before (lowered) or after (raised) the TxProfiles


def idle_room_gain_a(
    normal: Mapping[ConnectorKey, float],
    lean: Mapping[ConnectorKey, float],
    wanting: Iterable[ConnectorKey],
) -> float:
    """How much more current the cars that still need energy (``wanting``) get when idle
    connectors' defaults are 0 A. A full car held at the default in the normal plan and at
    0 A in the lean one gains nothing from it and must not weigh against it."""
    return sum(lean.get(k, 0.0) - normal.get(k, 0.0) for k in set(wanting))


def floor_paused(plan: Plan, keys: Iterable[ConnectorKey]) -> Plan:
    """``plan`` with these running connectors taken out of the scheduling and reserved at
    the default: they get the default as their limit (the caller's part), which the fuse
    pays for anyway since the next car there would start under it."""
    chosen = set(keys)
    load = (
        list(plan.site.building_load_a)
        if isinstance(plan.site.building_load_a, tuple)
        else [0.0] * 3
    )
    reserved = list(plan.reserved_a)
    headroom = list(plan.swap_headroom_a)
    for connector in plan.connectors:
        if connector.key in chosen:
            for phase in {PHASES.index(p) for p in connector.wiring}:
                load[phase] += plan.default_a
                reserved[phase] += plan.default_a
                headroom[phase] -= plan.default_a
    return replace(
        plan,
        site=replace(plan.site, building_load_a=(load[0], load[1], load[2])),
        connectors=tuple(c for c in plan.connectors if c.key not in chosen),
        demands=tuple(d for d in plan.demands if d.connector not in chosen),
        reserved_a=(reserved[0], reserved[1], reserved[2]),
        swap_headroom_a=(headroom[0], headroom[1], headroom[2]),
        floored=plan.floored | frozenset(chosen),
    )


def safe_default_a(plan: Plan, limits: Mapping[ConnectorKey, float]) -> float:
    """The TxDefaultProfile that keeps the fuse with these limits: ``plan.default_a``, or 0.

    Any running car may leave and the next one start at once under the default (its
    TxProfile ends with its transaction), before the controller can react. So every
    connector with a planned transaction counts at max(its limit, the default) on every
    phase a new car could use; if that does not fit on some phase, the default is 0 A and
    a new car waits for its own TxProfile.
    """
    default = plan.default_a
    if default <= 0:
        return 0.0
    load = [0.0, 0.0, 0.0]
    demands = {d.connector: d for d in plan.demands}
    for connector in plan.connectors:
        limit = limits.get(connector.key, 0.0)
        demand = demands.get(connector.key)
        used = supply_phases(
            connector,
            demand.ev_phases if demand else None,
            demand.drawn_a if demand else None,
        )
        for phase in {PHASES.index(p) for p in connector.wiring}:
            load[phase] += max(limit if phase in used else 0.0, default)
    fits = all(a <= h + 1e-6 for a, h in zip(load, plan.swap_headroom_a, strict=True))
    return default if fits else 0.0


def station_max_a(info: ChargePointInfo, site: SiteConfig) -> float:
    """The ChargePointMaxProfile limit a station gets: its maximum, within the fuse."""
    return min(info.max_current_a, max(0.0, site.fuse_limit_a - site.margin_a))


#: Steps in which `override_caps` lowers a station's ChargePointMaxProfile.
CAP_STEP_A = 0.5


def override_caps(plan: Plan, snapshot: Snapshot) -> dict[str, float]:
    """ChargePointMaxProfile limits that bring overrides back under the fuse.

    ``plan`` is built with a 0 A default (`build_plan(..., default_a=0.0)`): every car we
    control can be paused, so whatever it still puts above fuse - margin - building load is
    what overrides (``snapshot.pinned_a``, uncapped), unmanaged and offline chargers hold.
    Our TxProfiles cannot lower an override (it sits above them on the stack, OCPP 1.6
    section 3.13.2), but the charge point's own cap bounds every profile on it (3.13.3).
    The stations with the largest overrides are capped first, each to the highest limit
    (0, or 6 A and up in `CAP_STEP_A` steps) that removes the excess on its phases; a cap
    also bounds the station's other connectors, which the plan then over-counts (safe).
    Empty when nothing is over: the caps are lifted again.
    """
    usable = snapshot.site.fuse_limit_a - snapshot.site.margin_a
    load = list(plan.site.building_load_a) if isinstance(plan.site.building_load_a, tuple) else []
    if not load:
        return {}
    excess = [a - usable for a in load]
    if all(e <= 1e-6 for e in excess):
        return {}
    by_station: dict[str, list[float]] = {}
    for (cp_id, _), amps in snapshot.pinned_a.items():
        by_station.setdefault(cp_id, []).append(amps)
    infos: dict[str, ChargePointInfo] = {s.info.id: s.info for s in snapshot.stations}
    caps: dict[str, float] = {}
    for cp_id, pinned in sorted(by_station.items(), key=lambda kv: (-sum(kv[1]), kv[0])):
        info = infos.get(cp_id)
        if info is None:
            continue
        phases = phase_indexes(info.wiring)
        over = max(excess[p] for p in phases)
        if over <= 1e-6:
            continue
        top = max(pinned)
        cap = math.floor(top / CAP_STEP_A) * CAP_STEP_A
        while cap >= MIN_CURRENT_A and sum(a - min(a, cap) for a in pinned) < over - 1e-6:
            cap -= CAP_STEP_A
        if cap < MIN_CURRENT_A:
            cap = 0.0
        freed = sum(a - min(a, cap) for a in pinned)
        if freed <= 1e-6:
            continue
        caps[cp_id] = cap
        for p in phases:
            excess[p] -= freed
    return caps


def _reserve(reserved: list[float], wiring: str, amps: float) -> None:
    for index in phase_indexes(wiring):
        reserved[index] += amps


@dataclass(frozen=True)
class Change:
    """A new limit for a running transaction; ``in_force_a`` is what it may draw now."""

    key: ConnectorKey
    transaction_id: int
    previous_a: float | None
    limit_a: float
    in_force_a: float

    @property
    def lowering(self) -> bool:
        return self.limit_a <= self.in_force_a


def changes_to_send(
    limits: Mapping[ConnectorKey, float],
    last_sent: Mapping[ConnectorKey, float],
    sessions: Mapping[ConnectorKey, OpenSession],
    in_force_a: Mapping[ConnectorKey, float],
) -> tuple[list[Change], list[Change]]:
    """(lowering, raising) changes beyond the deadband.

    ``last_sent``: the TxProfile limit each charger accepted (the deadband is measured from
    it; a connector without one always gets its limit). ``in_force_a``: what each running
    transaction may draw right now: its accepted TxProfile, else its charger's
    TxDefaultProfile (the charger's maximum if it has none), or more while the answer to a
    TxProfile is missing. A new limit at or below it is a lowering, sent first.
    """
    lowering: list[Change] = []
    raising: list[Change] = []
    for key, limit in sorted(limits.items()):
        session = sessions.get(key)
        if session is None:
            continue
        previous = last_sent.get(key)
        if previous is not None:
            # Only raises have a deadband: the plan may have given even a fraction of an
            # ampere of a lowering to another car (found by the live harness: 63.2 A on a
            # 61 A budget), and the scheduler's calm pass already keeps needless ones away.
            paused_now, paused_before = limit <= 0, previous <= 0
            small_raise = previous <= limit < previous + DEADBAND_A
            if paused_now == paused_before and small_raise:
                continue
        in_force = in_force_a.get(key, previous if previous is not None else math.inf)
        change = Change(key, session.transaction_id, previous, limit, in_force)
        (lowering if change.lowering else raising).append(change)
    return lowering, raising


def notification_for(previous_a: float | None, limit_a: float) -> tuple[str, str] | None:
    """(kind, message) for a resident when their limit changes (thesis 3.3)."""
    if previous_a is None:
        if limit_a <= 0:
            return "paused", "Waiting for power: the garage is at its limit right now."
        return "started", f"Charging at {limit_a:g} A."
    if limit_a <= 0 < previous_a:
        return "paused", "Charging paused: the garage is crowded; you will resume as others finish."
    if previous_a <= 0 < limit_a:
        return "resumed", f"Charging resumed at {limit_a:g} A."
    if limit_a > previous_a:
        return "raised", f"Power raised to {limit_a:g} A: the garage is quieter."
    if limit_a < previous_a:
        return "lowered", f"Power lowered to {limit_a:g} A: the garage is busy."
    return None


def draws_above_limit(drawn_a: Iterable[float], limit_a: float) -> bool:
    """True when a measured current is clearly above the limit the charger accepted."""
    tolerance = max(1.0, 0.1 * limit_a)
    return any(a > limit_a + tolerance for a in drawn_a if math.isfinite(a))


def inputs_fingerprint(snapshot: Snapshot) -> tuple[object, ...]:
    """What, when changed by someone else (settings, residents, stations), triggers a replan."""
    return (
        snapshot.site,
        effective_building_load(snapshot),
        tuple(
            (
                s.info.id,
                s.info.max_current_a,
                s.info.phases,
                s.info.wiring,
                s.info.connected,
                s.info.unmanaged,
                s.connector_ids,
            )
            for s in snapshot.stations
        ),
        tuple(
            (
                s.transaction_id,
                s.departure_at,
                s.energy_needed_wh,
                s.ev_model,
                s.battery_kwh,
                s.target_soc,
            )
            for s in snapshot.sessions
        ),
    )
