"""``optimal``: re-plan the whole horizon as a linear program every tick, apply its first slot.

The plan runs from now to the last departure in slots: the first slot is this tick, then
``slot_s`` each. It maximises energy delivered by each car's departure with three small,
linear tie-breakers (a convex program would use a quadratic regulariser; HiGHS LP is faster):

- energy earlier in the horizon is worth slightly more (so capacity is used now, not later);
- the first half of every car's remaining need is worth a bit more (nobody is starved so
  that others can be topped up: a max-min proxy);
- in the first slot, the minimum and then the ``equal`` fair share of every car are worth a
  bit more, which settles the many equally good plans on a fair one.
The bonuses are below the value of the energy itself, so they never trade energy away for
fairness except in the rounding. The first slot's currents are then rounded onto accepted
values without breaking the fuse (:func:`csms.scheduler.rules.finalize`).

Cars whose departure has passed are not planned; they share what is left after rounding.
If the budget runs out or HiGHS fails, the caller falls back to ``llf`` for this tick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from csms.scheduler.lp import (
    RowBuilder,
    add_capacity_rows,
    add_need_rows,
    slot_variables,
    solve_max,
)
from csms.scheduler.rules import Problem, finalize, llf_key, order_by
from csms.scheduler.strategies.fair import fair_shares

DEFAULT_BUDGET_S = 0.5
DEFAULT_SLOT_S = 900.0
#: Plans never look further than this; a car leaving later is planned up to it.
HORIZON_MAX_S = 48 * 3600.0
EARLY_BONUS = 0.05  # energy at the end of the horizon is worth 5 % less than now
HALF_NEED_BONUS = 0.05
MIN_CURRENT_BONUS = 0.5
FAIR_SHARE_BONUS = 0.25


@dataclass(frozen=True, slots=True)
class OptimalOutcome:
    limits_a: list[float] | None  # None: no plan in time, fall back
    reason: str | None
    solve_ms: float


def allocate_optimal(
    problem: Problem,
    *,
    tick_s: float,
    budget_s: float = DEFAULT_BUDGET_S,
    slot_s: float = DEFAULT_SLOT_S,
) -> OptimalOutcome:
    t0 = time.perf_counter()
    order = order_by(problem.cars, llf_key)
    planned = [car for car in problem.cars if not car.overdue]
    if not planned:
        y = finalize(problem, [0.0] * len(problem.cars), order)
        return OptimalOutcome(y, None, 0.0)

    n = len(planned)
    time_left = np.array([car.time_left_s for car in planned])
    horizon = min(float(time_left.max()), HORIZON_MAX_S)
    boundaries = np.concatenate(
        ([0.0], tick_s + np.arange(0.0, max(horizon - tick_s, 0.0) + slot_s, slot_s))
    )
    power = np.array([car.power_per_a_w for car in planned])
    v = slot_variables(np.zeros(n), np.minimum(time_left, horizon), boundaries, power)
    m = len(v.car)
    first = v.slot == 0
    first_var = np.full(n, -1, dtype=np.int64)
    first_var[v.car[first]] = np.flatnonzero(first)
    upper_r = np.array([car.max_a for car in planned])[v.car]
    upper_r[first] = np.array([car.hi_a for car in planned])[v.car[first]]

    mid = 0.5 * (boundaries[v.slot] + boundaries[v.slot + 1])
    gain_r = v.energy_wh_per_a * (1.0 - EARLY_BONUS * mid / boundaries[-1])

    phase_mask = np.zeros((n, 3), dtype=np.bool_)
    for j, car in enumerate(planned):
        phase_mask[j, list(car.phases)] = True
    need = np.array([car.need_wh for car in planned])
    rows = RowBuilder.empty()
    add_capacity_rows(rows, v, phase_mask, problem.capacity_a)
    add_need_rows(rows, v, need)

    # Half-need bonus: h_j <= energy_j, 0 <= h_j <= need_j / 2.
    cars = np.arange(n, dtype=np.int64)
    h_cols = m + cars
    rows.add(
        np.concatenate((v.car, cars)),
        np.concatenate((np.arange(m, dtype=np.int64), h_cols)),
        np.concatenate((-v.energy_wh_per_a, np.ones(n))),
        np.zeros(n),
    )
    # First-slot bonus: u1_j + u2_j <= r_j0, u1_j <= minimum, u2_j <= fair share - minimum.
    fair = fair_shares(problem)
    has_first = first_var >= 0
    k = np.flatnonzero(has_first)
    nk = len(k)
    u1_cols = m + n + np.arange(nk, dtype=np.int64)
    u2_cols = u1_cols + nk
    local = np.arange(nk, dtype=np.int64)
    rows.add(
        np.concatenate((local, local, local)),
        np.concatenate((first_var[k], u1_cols, u2_cols)),
        np.concatenate((-np.ones(nk), np.ones(nk), np.ones(nk))),
        np.zeros(nk),
    )
    lo = np.array([car.lo_a for car in planned])[k]
    share = np.array([fair[car.index] for car in planned])[k]
    e0 = v.energy_wh_per_a[first_var[k]]

    gain = np.concatenate(
        (gain_r, np.full(n, HALF_NEED_BONUS), MIN_CURRENT_BONUS * e0, FAIR_SHARE_BONUS * e0)
    )
    upper = np.concatenate((upper_r, need / 2.0, lo, np.maximum(share - lo, 0.0)))

    remaining = budget_s - (time.perf_counter() - t0)
    if remaining <= 0.0:
        return OptimalOutcome(None, "time budget spent before solving", _ms(t0))
    res = solve_max(gain, rows, upper, time_limit_s=remaining)
    if res.x is None:
        return OptimalOutcome(None, f"HiGHS: {res.message}", _ms(t0))

    target = [0.0] * len(problem.cars)
    for col in k.tolist():
        target[planned[col].index] = float(res.x[first_var[col]])
    y = finalize(problem, target, order, target)
    return OptimalOutcome(y, None, _ms(t0))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
