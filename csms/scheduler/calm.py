"""Calm limits: change a car's limit only when it matters.

Every change of a limit moves the pilot duty cycle; cars open their contactors, wake their
battery management, and some stop charging for good after repeated changes (FIELD-NOTES,
"Smart charging"). A strategy plans every tick from scratch, so tiny differences (0.3 A
freed somewhere, a tapering car's cap creeping down) would become a change on every tick.
Calm has two halves:

- the priority orders hold a car that already charges in its place by a margin
  (:func:`csms.scheduler.rules.held_place`), so that two nearly equal cars do not swap;
- :func:`calm`, run on every strategy's limits before the safety net, moves them back
  to the limits in force wherever that is safe:

  1. a raise is not made when it is smaller than :data:`DEADBAND_A`, or when the car's
     limit was set less than :data:`HOLD_S` ago (it comes on a later tick, once the hold
     is over); a lower limit than planned is always safe for the fuse;
  2. then a lowering is not made where every supply phase of the car still has room for
     the limit in force (cars in their hold time first, then in priority order): room that
     nobody else takes this tick is no reason for a change. Where it has not room, the car
     is lowered at once, also within its hold time: the fuse comes before calm;
  3. the room that 1 left goes, in priority order, to the cars whose limit changes anyway
     (up to their maximum for this tick) and to paused cars that may resume, so that no
     current is withheld for calm where a change is made anyway; what is still left goes
     to cars whose small raise 1 left out, where it makes a raise of at least
     :data:`DEADBAND_A` (one car 2 A up rather than four 0.5 A each) or takes the car to
     its full rate for the tick (0.6 A that nobody else can use is not left idle).

Every limit that comes out is the strategy's, the one in force (when it is still an
accepted value for the car), or a value rounded down onto accepted values, and the phase
sums are tracked throughout: the result obeys every hard rule by construction, and
:func:`csms.scheduler.rules.enforce` stays the last safety net that never has to act.
"""

from __future__ import annotations

from collections.abc import Sequence

from csms.scheduler.rules import (
    DEADBAND_A,
    EPS_A,
    Car,
    Problem,
    floor_allowed,
    phase_load,
)

#: A limit set less than this ago is not raised (a raise waits until the hold is over) and
#: is lowered only when the fuse needs the room. One minute, as the enable/disable delays
#: of load managers in the field (evcc): a paused car resumes a minute after its pause at
#: the earliest, and a resumed car is paused within its first minute only for the fuse.
#: Many live ticks (2-5 s) long, and no longer than a bench step (60-300 s), so the bench
#: measures what the deadband and the hysteresis cost, not a delay of every raise.
HOLD_S = 60.0

__all__ = ["DEADBAND_A", "HOLD_S", "calm", "in_force"]


def in_force(car: Car) -> float | None:
    """The car's limit in force if it is still a limit the car may be given, else None.

    None for a car without one (its first tick) and for a limit the car may no longer get
    (its charger's steps or maximum changed, or it was never on the 0.1 A grid).
    """
    below = _at_most_in_force(car)
    if below is None or car.last_a is None or abs(below - car.last_a) > 1e-6:
        return None
    return below


def _at_most_in_force(car: Car) -> float | None:
    """The largest limit the car may be given that is no more than the one in force (0 when
    none is), or None when the car has no limit in force."""
    last = car.last_a
    if last is None:
        return None
    if last <= EPS_A:
        return 0.0
    return floor_allowed(car, min(last, car.max_a))


def calm(problem: Problem, y: Sequence[float], order: Sequence[Car]) -> list[float]:
    """The strategy's limits ``y`` with the changes that are not needed left out.

    ``order`` is the strategy's priority order (most urgent first). Pure and
    deterministic; see the module docstring for the three passes.
    """
    cars = problem.cars
    z = list(y)
    old = [in_force(car) for car in cars]
    held = [car.since_change_s < HOLD_S for car in cars]

    # 1. Raises that are too small to matter, or too soon after the last change, wait.
    for car in cars:
        i, was = car.index, old[car.index]
        if was is not None and z[i] > was + EPS_A and (held[i] or z[i] - was < DEADBAND_A):
            z[i] = was
        elif held[i] and was is None:
            # The limit in force is no longer allowed (e.g. below the charger's smallest
            # step): still no raise within the hold, so the nearest allowed one below it.
            below = _at_most_in_force(car)
            if below is not None and z[i] > below:
                z[i] = below

    # 2. Lowerings are made only where the room is needed. Cars in their hold time have
    # the first claim on the room: their limit changed least long ago.
    capacity = problem.capacity_a
    room = [c - u for c, u in zip(capacity, phase_load(problem, z), strict=True)]
    for car in sorted(order, key=lambda c: not held[c.index]):
        i, was = car.index, old[car.index]
        if was is None or not z[i] < was - EPS_A:
            continue
        extra = was - z[i]
        if all(room[p] >= extra - EPS_A for p in car.phases):
            z[i] = was
            for p in car.phases:
                room[p] -= extra

    # 3. What step 1 withheld goes to cars whose limit changes anyway, and to paused cars
    # free to resume (nobody stays paused while there is room for its minimum); then, in
    # steps of at least the deadband, to cars whose small raise step 1 withheld: many
    # small raises left out would otherwise leave amperes idle tick after tick.
    # A car within its hold time may get back up to its limit in force, never above it.
    ceiling = [car.hi_a for car in cars]
    for car in cars:
        below = _at_most_in_force(car) if held[car.index] else None
        if below is not None:
            ceiling[car.index] = min(car.hi_a, below)
    for small in (False, True):
        for car in order:
            i, was = car.index, old[car.index]
            top = ceiling[i]
            if z[i] >= top - EPS_A:
                continue
            if small:
                if held[i] or not y[i] > z[i] + EPS_A:
                    continue
            elif not (was is None or z[i] != was or (z[i] == 0.0 and not held[i])):
                continue
            headroom = min(room[p] for p in car.phases)
            new = floor_allowed(car, min(top, z[i] + headroom))
            # A small raise that takes the car to its full rate is made too: the room
            # would stay idle otherwise, and a car at its full rate has no share to chase.
            step = DEADBAND_A if small and new < car.hi_a - EPS_A else 0.0
            if new > z[i] + max(step - EPS_A, EPS_A):
                for p in car.phases:
                    room[p] -= new - z[i]
                z[i] = new
    return z
