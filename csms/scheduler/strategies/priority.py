"""``edf`` and ``llf``: serve the most urgent car first, as much as it can take.

Cars are sorted (earliest departure, or least laxity, first; overdue cars last) and each in
turn gets as much as it can take this tick while its phases have room, as ACN-Sim's sorted
algorithms do. A car for whose minimum (6 A) no room is left is paused, so when not
everybody fits, the cars with the most slack (thesis 5.2: the fullest) are the ones paused;
room left over that is too small for a minimum is used by lowering the least urgent served
cars so that one more car gets its minimum (in :func:`~csms.scheduler.rules.finalize`).
Laxity = time left - energy needed / max rate: the slack before the car must charge flat
out to finish.

Giving every car its minimum first and only then topping up the urgent ones spreads the
fuse thin: on the Caltech month at 30 kW that lost 1.5 points of energy, because the cars
about to leave got 6 A instead of their full rate.
"""

from __future__ import annotations

from csms.scheduler.rules import (
    PriorityKey,
    Problem,
    edf_key,
    finalize,
    llf_key,
    order_by,
    serve_in_order,
)


def _allocate_by(problem: Problem, key: PriorityKey) -> list[float]:
    order = order_by(problem.cars, key)
    return finalize(problem, serve_in_order(problem, order), order)


def allocate_edf(problem: Problem) -> list[float]:
    return _allocate_by(problem, edf_key)


def allocate_llf(problem: Problem) -> list[float]:
    return _allocate_by(problem, llf_key)
