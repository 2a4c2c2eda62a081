"""``edf`` and ``llf``: serve the most urgent car first, as much as it can take.

Who gets at least the minimum is decided least-laxity first for both (thesis 5.2: pause
the fullest cars), then each admitted car in priority order tops up as far as its phases
allow. Laxity = time left - energy needed / max rate: the slack before the car must charge
flat out to finish.
"""

from __future__ import annotations

from csms.scheduler.rules import (
    PriorityKey,
    Problem,
    admit,
    edf_key,
    fill_in_order,
    finalize,
    llf_key,
    order_by,
)


def _allocate_by(problem: Problem, key: PriorityKey) -> list[float]:
    by_laxity = order_by(problem.cars, llf_key)
    x, room = admit(problem, by_laxity)
    order = by_laxity if key is llf_key else order_by(problem.cars, key)
    fill_in_order(order, x, room)
    return finalize(problem, x, order)


def allocate_edf(problem: Problem) -> list[float]:
    return _allocate_by(problem, edf_key)


def allocate_llf(problem: Problem) -> list[float]:
    return _allocate_by(problem, llf_key)
