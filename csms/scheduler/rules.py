"""The hard rules, and turning sessions into the cars a strategy works on.

Every strategy except ``thesis`` must return limits where
- each car gets 0 or a value between its minimum (6 A, IEC 61851-1) and
  min(station max, car max), on the charger's allowed steps if it has any;
- the sum on each supply phase stays within fuse - margin - building load.
Strategies compute continuous currents; :func:`finalize` rounds them down onto what the
charger accepts and hands the crumbs freed by rounding to others, and :func:`enforce`
re-checks the result as a last safety net. :func:`llf_key` and :func:`edf_key` hold a car
that already charges in its place with a margin (hysteresis), so that two nearly equal cars
do not swap limits every tick.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from csms.errors import ConfigError
from csms.scheduler.model import (
    Allocation,
    ConnectorKey,
    ConnectorSpec,
    Diagnostics,
    PerPhase,
    SessionDemand,
    SiteLimits,
)
from csms.scheduler.phases import supply_phases

#: Floating-point slack when comparing currents (A); far below any meter's resolution.
EPS_A = 1e-9
#: OCPP 1.6 ChargingSchedulePeriod.limit accepts at most one decimal (e.g. 8.1).
RESOLUTION_A = 0.1
#: A car drawing this much less than its limit is taking less than it is offered...
TAPER_THRESHOLD_A = 1.0
#: ...and is then capped at its draw plus this headroom. Headroom > threshold keeps the
#: cap stable while the car keeps drawing the same, and lets it grow back when it draws more.
TAPER_HEADROOM_A = 2.0
#: Limits closer than this count as the same level: a car within it of its minimum holds
#: the minimum, and (in :mod:`csms.scheduler.calm`) a change smaller than it is not made.
#: The controller never sent a change below 1 A either (README, Load management).
DEADBAND_A = 1.0
#: Hysteresis of the priority orders: a car that holds a higher standing (paused < at its
#: minimum < more than its minimum < its full rate) keeps its place before a car of lower
#: standing until that car's laxity (or time left, for ``edf``) is smaller by
#: HYSTERESIS_S + HYSTERESIS_SHARE x the holder's, per standing between them. Times, not
#: ticks, so the margin is the same at any tick. The share makes the margin large while
#: nobody is in a hurry (whose turn it is then decides no deadline, only who gets the next
#: contactor click)...
HYSTERESIS_S = 900.0
HYSTERESIS_SHARE = 0.1
#: ...and this cap makes it small near the deadline, where the order decides energy: never
#: more than this share of the holder's own laxity per standing (so 15 min or more once
#: the holder has 1.5 h of laxity). With three standings a holder keeps at least half its
#: laxity as its priority, so a car with far less slack always comes first.
HYSTERESIS_MAX_SHARE = 1.0 / 6.0


@dataclass(slots=True)
class Car:
    """A session that needs energy and can charge, as strategies see it."""

    index: int
    key: ConnectorKey
    phases: tuple[int, ...]
    lo_a: float  # smallest limit the charger accepts that is >= the minimum
    hi_a: float  # largest limit for this tick: station, car, taper and remaining need
    max_a: float  # largest limit ignoring taper and need, for planning ahead
    steps_a: tuple[float, ...] | None  # allowed limits in [lo_a, max_a]; None: 0.1 A grid
    need_wh: float
    delivered_wh: float  # already received in this session (0 when not known)
    time_left_s: float
    power_per_a_w: float
    laxity_s: float
    last_a: float | None = None  # the limit in force now (None: the car has none yet)
    since_change_s: float = math.inf  # since that limit was set (inf: not known)
    standing: int = 0  # 0 paused or new, 1 at its minimum, 2 above it, 3 at its full rate

    @property
    def overdue(self) -> bool:
        return self.time_left_s <= 0.0


@dataclass(slots=True)
class Problem:
    """One tick's input, checked and flattened."""

    capacity_a: PerPhase
    cars: list[Car]
    connectors: list[ConnectorKey]
    blocked: list[ConnectorKey]  # need energy but can never get the minimum
    voltage_v: float


def floor_allowed(car: Car, value_a: float) -> float:
    """Largest limit the car's charger accepts that is <= value, or 0 if below the minimum."""
    if car.steps_a is not None:
        i = bisect_right(car.steps_a, value_a + EPS_A) - 1
        return car.steps_a[i] if i >= 0 else 0.0
    v = min(_grid_floor(value_a), car.max_a)
    return v if v >= car.lo_a - EPS_A else 0.0


def ceil_allowed(car: Car, value_a: float) -> float:
    """Smallest accepted limit >= value (capped at the car's maximum); 0 stays 0."""
    if value_a <= EPS_A:
        return 0.0
    if value_a <= car.lo_a:
        return car.lo_a
    if car.steps_a is not None:
        i = bisect_left(car.steps_a, value_a - EPS_A)
        return car.steps_a[min(i, len(car.steps_a) - 1)]
    return min(math.ceil(value_a * _PER_A - 1e-9) / _PER_A, car.max_a)


_PER_A = round(1 / RESOLUTION_A)


def _grid_floor(value_a: float) -> float:
    # k / 10 (not k * 0.1) is the double nearest to the decimal, so sums stay clean.
    return math.floor(value_a * _PER_A + 1e-9) / _PER_A


def compile_problem(
    site: SiteLimits,
    stations: Sequence[ConnectorSpec],
    sessions: Sequence[SessionDemand],
    now: datetime,
    tick_s: float,
) -> Problem:
    """Check the input and build the cars; sessions that need nothing are left out."""
    if tick_s <= 0:
        raise ConfigError(f"tick must be positive, got {tick_s} s")
    by_key: dict[ConnectorKey, ConnectorSpec] = {}
    for spec in stations:
        if spec.key in by_key:
            raise ConfigError(f"connector {spec.key} listed twice")
        by_key[spec.key] = spec
    voltage = site.voltage_v
    cars: list[Car] = []
    blocked: list[ConnectorKey] = []
    seen: set[ConnectorKey] = set()
    for s in sessions:
        conn = by_key.get(s.connector)
        if conn is None:
            raise ConfigError(f"session on unknown connector {s.connector}")
        if s.connector in seen:
            raise ConfigError(f"two sessions on connector {s.connector}")
        seen.add(s.connector)
        need = s.energy_needed_wh
        if not need > 0.0:
            continue
        cap = conn.max_current_a
        if s.ev_max_current_a is not None:
            cap = min(cap, s.ev_max_current_a)
        steps: tuple[float, ...] | None = None
        if conn.current_steps_a is not None:
            steps = tuple(x for x in conn.current_steps_a if conn.min_current_a <= x <= cap)
            if not steps:
                blocked.append(s.connector)
                continue
            lo, top = steps[0], steps[-1]
        else:
            lo, top = conn.min_current_a, _grid_floor(cap)
            if top < lo:
                blocked.append(s.connector)
                continue
        phases = supply_phases(conn, s.ev_phases, s.drawn_a)
        power_per_a = voltage * len(phases)
        hi = top
        if s.drawn_a and s.last_limit_a is not None:
            drawn = max(s.drawn_a)
            if drawn < s.last_limit_a - TAPER_THRESHOLD_A:
                hi = min(hi, max(lo, drawn + TAPER_HEADROOM_A))
        # No more than the car still needs within this tick (but never below the minimum).
        hi = min(hi, max(lo, need * 3600.0 / (power_per_a * tick_s)))
        time_left = (s.departure_at - now).total_seconds()
        since_change = (
            math.inf if s.last_change_at is None else (now - s.last_change_at).total_seconds()
        )
        car = Car(
            index=len(cars),
            key=s.connector,
            phases=phases,
            lo_a=lo,
            hi_a=top,
            max_a=top,
            steps_a=steps,
            need_wh=need,
            delivered_wh=max(0.0, s.energy_delivered_wh or 0.0),
            time_left_s=time_left,
            power_per_a_w=power_per_a,
            laxity_s=time_left - need * 3600.0 / (top * power_per_a),
            last_a=s.last_limit_a,
            # A clock step backwards (or a change stamped in the future) is no recent change.
            since_change_s=since_change if since_change >= 0.0 else math.inf,
        )
        if hi < top:
            car.hi_a = max(lo, floor_allowed(car, hi))
        car.standing = standing(car)
        cars.append(car)
    return Problem(
        capacity_a=site.capacity_a(),
        cars=cars,
        connectors=list(by_key),
        blocked=blocked,
        voltage_v=voltage,
    )


def standing(car: Car) -> int:
    """How much of its place in line the car holds now, from the limit in force.

    0: paused or no limit yet; 1: its minimum (within :data:`DEADBAND_A`); 2: more than
    its minimum; 3: its full rate for this tick (within :data:`DEADBAND_A` of ``hi_a``).
    """
    last = car.last_a
    if last is None or last <= EPS_A:
        return 0
    if last >= car.hi_a - DEADBAND_A:
        return 3
    if last <= car.lo_a + DEADBAND_A:
        return 1
    return 2


def held_place(value_s: float, standing: int) -> float:
    """A laxity (or time left) as the priority order sees it: lowered by the hysteresis
    margin once per standing the car holds.

    Per standing the margin is HYSTERESIS_S + HYSTERESIS_SHARE x value, at most
    HYSTERESIS_MAX_SHARE x value: a car that holds its full rate (standing 3) with 12 h of
    laxity keeps its place before a car at its minimum (standing 1) until that car has
    about 3 h less, with 1 h of laxity until it has 24 min less. Increasing in
    ``value_s`` for every standing (3 x HYSTERESIS_SHARE < 1), so cars of equal standing
    keep the plain order; a negative value (the car cannot finish any more) gets no margin.
    """
    if standing <= 0 or value_s <= 0.0:
        return value_s
    margin = min(HYSTERESIS_S + HYSTERESIS_SHARE * value_s, HYSTERESIS_MAX_SHARE * value_s)
    return value_s - standing * margin


# Priority orders. Overdue cars (departure passed) come last: no deadline of theirs can be
# met any more, while the others' still can. A car keeps its place against cars of lower
# standing by a margin (held_place), so two nearly equal cars do not swap every tick: the
# one that just got more would otherwise have more slack on the next tick. The connector
# key, a fixed key, breaks exact ties (equal defaults on the same tick).
def llf_key(car: Car) -> tuple[bool, float, float, ConnectorKey]:
    """Least laxity first; the car with the most slack (or the fullest) is paused first."""
    return (car.overdue, held_place(car.laxity_s, car.standing), car.time_left_s, car.key)


def edf_key(car: Car) -> tuple[bool, float, float, ConnectorKey]:
    """Earliest departure first."""
    return (car.overdue, held_place(car.time_left_s, car.standing), car.laxity_s, car.key)


PriorityKey = Callable[[Car], tuple[bool, float, float, ConnectorKey]]


def order_by(cars: Sequence[Car], key: PriorityKey) -> list[Car]:
    return sorted(cars, key=key)


def admit(problem: Problem, order: Sequence[Car]) -> tuple[list[float], list[float]]:
    """Give each car its minimum in order while every phase still has room for it.

    Cars later in the order that do not fit are paused (0). Returns the currents and the
    room left per phase.
    """
    x = [0.0] * len(problem.cars)
    room = list(problem.capacity_a)
    for car in order:
        lo = car.lo_a
        if all(room[p] >= lo - EPS_A for p in car.phases):
            x[car.index] = lo
            for p in car.phases:
                room[p] -= lo
    return x, room


def serve_in_order(problem: Problem, order: Sequence[Car]) -> list[float]:
    """Each car in ``order`` takes as much as it can (up to its maximum for this tick)
    while its phases have room; a car for whose minimum no room is left is paused.

    This is the sorted-greedy of ACN-Sim: the first cars of the order charge at full rate
    rather than everybody at the minimum, so the most urgent cars finish before they leave.
    """
    x = [0.0] * len(problem.cars)
    room = list(problem.capacity_a)
    for car in order:
        give = min(car.hi_a, *(room[p] for p in car.phases))
        if give >= car.lo_a - EPS_A:
            x[car.index] = give
            for p in car.phases:
                room[p] -= give
    return x


def admit_paused(
    problem: Problem,
    order: Sequence[Car],
    x: list[float],
    urgent: Sequence[bool] | None = None,
) -> bool:
    """Give paused cars their minimum by lowering others (never below their own minimum).

    Without ``urgent``, for each paused car in ``order`` whose phases all have some room,
    but less than its minimum (4 A of a 20 A fuse after a 16 A car): that room would
    stay idle, so served cars on its phases only (least urgent first) give up the rest
    and more current flows in total ("crumbs").

    With ``urgent``, only the paused cars marked urgent (they cannot wait, and an LP
    wanted them charging but their wish was rounded to 0): besides the crumbs, the
    served cars later in ``order`` give up what such a car lacks, least urgent first.

    In place; returns whether anything changed (lowered cars may then be off their steps).
    """
    room = _room(problem, x)
    position = {car.index: i for i, car in enumerate(order)}
    served = [car for car in order if x[car.index] > 0.0]
    # (phases, minimum) of crumb attempts that failed since the last change: an identical
    # car fails too, which keeps a garage of 1,000 mostly paused cars linear.
    failed: set[tuple[tuple[int, ...], float]] = set()
    changed = False
    for car in order:
        if x[car.index] > 0.0:
            continue
        priority = urgent is not None and urgent[car.index]
        if urgent is not None and not priority:
            continue
        crumbs = all(room[p] > EPS_A for p in car.phases)
        if not priority and (not crumbs or (car.phases, car.lo_a) in failed):
            continue
        deficit = {p: max(0.0, car.lo_a - room[p]) for p in car.phases}
        cuts: list[tuple[Car, float]] = []
        for donor in reversed(served):
            if all(d <= EPS_A for d in deficit.values()):
                break
            later = priority and position[donor.index] > position[car.index]
            if not (later or (crumbs and set(donor.phases) <= deficit.keys())):
                continue
            want = max((deficit.get(p, 0.0) for p in donor.phases), default=0.0)
            cut = min(x[donor.index] - donor.lo_a, want)
            if cut <= EPS_A:
                continue
            cuts.append((donor, cut))
            for p in donor.phases:
                if p in deficit:
                    deficit[p] -= cut
        if any(d > EPS_A for d in deficit.values()):
            if not priority:
                failed.add((car.phases, car.lo_a))
            continue
        for donor, cut in cuts:
            x[donor.index] -= cut
            for p in donor.phases:
                room[p] += cut
        x[car.index] = car.lo_a
        for p in car.phases:
            room[p] -= car.lo_a
        served = [c for c in order if x[c.index] > 0.0]
        failed.clear()
        changed = True
    return changed


def phase_load(problem: Problem, x: Sequence[float]) -> PerPhase:
    total = [0.0, 0.0, 0.0]
    for car in problem.cars:
        current = x[car.index]
        if current:
            for p in car.phases:
                total[p] += current
    return (total[0], total[1], total[2])


def _raise_towards(car: Car, y: list[float], room: list[float], ceiling_a: float) -> None:
    current = y[car.index]
    if ceiling_a <= current + EPS_A:
        return
    headroom = min(room[p] for p in car.phases)
    new = floor_allowed(car, min(ceiling_a, current + headroom))
    if new > current:
        y[car.index] = new
        for p in car.phases:
            room[p] -= new - current


def finalize(
    problem: Problem,
    x: Sequence[float],
    order: Sequence[Car],
    target: Sequence[float] | None = None,
    urgent: Sequence[bool] | None = None,
) -> list[float]:
    """Round continuous currents down onto accepted values, then re-give what that freed.

    The freed capacity goes in ``order``: first towards ``target`` (e.g. an LP's wish,
    rounded up to the next accepted value), then to the ``urgent`` cars that are still
    paused (their minimum, taken from less urgent cars if need be), then towards each
    car's maximum for this tick. Room that is left but too small for anybody's minimum
    admits one more car if others can give up the rest (:func:`admit_paused`).
    """
    y = _floored(problem, x)
    if target is not None:
        room = _room(problem, y)
        for car in order:
            want = target[car.index]
            if want > EPS_A:
                _raise_towards(car, y, room, min(car.hi_a, ceil_allowed(car, want)))
    # Before the rest is handed out: a car that cannot wait comes before less urgent
    # cars' top-ups even if its wish was rounded to 0.
    if urgent is not None and admit_paused(problem, order, y, urgent):
        y = _floored(problem, y)
    _raise_all(problem, y, order)
    if admit_paused(problem, order, y):
        y = _floored(problem, y)
        _raise_all(problem, y, order)
    return y


def _floored(problem: Problem, x: Sequence[float]) -> list[float]:
    return [
        x[car.index]
        if x[car.index] in (0.0, car.hi_a)
        else floor_allowed(car, min(x[car.index], car.hi_a))
        for car in problem.cars
    ]


def _room(problem: Problem, y: Sequence[float]) -> list[float]:
    return [c - u for c, u in zip(problem.capacity_a, phase_load(problem, y), strict=True)]


def _raise_all(problem: Problem, y: list[float], order: Sequence[Car]) -> None:
    room = _room(problem, y)
    for car in order:
        if y[car.index] < car.hi_a:
            _raise_towards(car, y, room, car.hi_a)


def violations(problem: Problem, y: Sequence[float], tol_a: float = 1e-6) -> list[str]:
    """Every hard rule the limits break, in words (empty when all hold)."""
    found: list[str] = []
    for car in problem.cars:
        v = y[car.index]
        if v == 0.0:
            continue
        if not car.lo_a - tol_a <= v <= car.max_a + tol_a:
            found.append(f"{car.key}: {v} A outside 0 or [{car.lo_a}, {car.max_a}]")
        elif car.steps_a is not None and v not in car.steps_a:
            found.append(f"{car.key}: {v} A not one of the steps {car.steps_a}")
    load = phase_load(problem, y)
    for p, (used, cap) in enumerate(zip(load, problem.capacity_a, strict=True)):
        if used > cap + tol_a:
            found.append(f"L{p + 1}: {used:.3f} A > {cap:.3f} A")
    return found


def enforce(problem: Problem, y: Sequence[float]) -> tuple[list[float], bool]:
    """Last safety net: force the hard rules, pausing the most-slack cars if need be.

    Returns the limits and whether anything had to change (a strategy bug if so).
    """
    if not violations(problem, y):
        return list(y), False
    fixed = [floor_allowed(car, min(y[car.index], car.max_a)) for car in problem.cars]
    for car in reversed(order_by(problem.cars, llf_key)):
        load = phase_load(problem, fixed)
        if all(u <= c + 1e-6 for u, c in zip(load, problem.capacity_a, strict=True)):
            break
        if any(load[p] > problem.capacity_a[p] + 1e-6 for p in car.phases):
            fixed[car.index] = 0.0
    return fixed, True


def to_allocation(
    strategy: str,
    problem: Problem,
    y: Sequence[float],
    *,
    fallback: str | None = None,
    fallback_reason: str | None = None,
    solve_ms: float | None = None,
    repaired: bool = False,
) -> Allocation:
    limits: dict[ConnectorKey, float] = dict.fromkeys(problem.connectors, 0.0)
    paused = list(problem.blocked)
    for car in problem.cars:
        v = y[car.index]
        limits[car.key] = v
        if v == 0.0:
            paused.append(car.key)
    return Allocation(
        strategy=strategy,
        limits_a=limits,
        diagnostics=Diagnostics(
            capacity_a=problem.capacity_a,
            phase_load_a=phase_load(problem, y),
            paused=tuple(paused),
            fallback=fallback,
            fallback_reason=fallback_reason,
            solve_ms=solve_ms,
            repaired=repaired,
        ),
    )
