"""Max-min fair progressive filling under three coupled phase capacities.

Every admitted car starts at its floor; one common level ``t`` then rises and each car
follows it (its current is ``max(floor, min(cap, t))``) until the car reaches its cap or
one of its phases runs full, at which point it is frozen. Events happen at floors, caps and
at most three phase saturations, so the whole fill is O(n log n).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from csms.scheduler.rules import EPS_A, Car


def fill_evenly(cars: Sequence[Car], x: list[float], room: list[float]) -> None:
    """Raise the admitted cars (``x > 0``) evenly from their floors (in place).

    ``room`` is what is left on each phase once every admitted car has its floor; it is
    consumed as the level rises.
    """
    starts = sorted((car for car in cars if x[car.index] > 0.0), key=lambda c: c.lo_a)
    growing: list[set[int]] = [set(), set(), set()]
    full = [r <= EPS_A for r in room]
    ends: list[tuple[float, int]] = []
    frozen: set[int] = set()
    by_index = {car.index: car for car in starts}
    level = starts[0].lo_a if starts else 0.0
    next_start = 0

    def freeze(i: int, value: float) -> None:
        x[i] = value
        frozen.add(i)
        for p in by_index[i].phases:
            growing[p].discard(i)

    while True:
        while ends and ends[0][1] in frozen:
            heapq.heappop(ends)
        t_start = starts[next_start].lo_a if next_start < len(starts) else math.inf
        t_end = ends[0][0] if ends else math.inf
        t_full, p_full = math.inf, -1
        for p in range(3):
            if growing[p]:
                t = level + max(room[p], 0.0) / len(growing[p])
                if t < t_full:
                    t_full, p_full = t, p
        t_next = min(t_start, t_end, t_full)
        if t_next == math.inf:
            break
        if t_next > level:
            for p in range(3):
                room[p] -= len(growing[p]) * (t_next - level)
            level = t_next
        if t_full <= t_end and t_full <= t_start:
            full[p_full] = True
            room[p_full] = 0.0
            for i in list(growing[p_full]):
                freeze(i, level)
        elif t_end <= t_start:
            _, i = heapq.heappop(ends)
            freeze(i, by_index[i].hi_a)
        else:
            car = starts[next_start]
            next_start += 1
            if car.hi_a > car.lo_a and not any(full[p] for p in car.phases):
                heapq.heappush(ends, (car.hi_a, car.index))
                for p in car.phases:
                    growing[p].add(car.index)
