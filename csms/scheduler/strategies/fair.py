"""``equal``: max-min fair shares per phase, pausing the most-slack cars when short."""

from __future__ import annotations

from csms.scheduler.fill import fill_evenly
from csms.scheduler.rules import Problem, admit, finalize, llf_key, order_by


def fair_shares(problem: Problem) -> list[float]:
    """Continuous max-min fair currents (before rounding onto accepted values).

    When the phases cannot give every car its 6 A minimum, the cars with the most slack
    (the fullest, or the ones leaving last for their need) are paused until the rest fit.
    """
    order = order_by(problem.cars, llf_key)
    x, room = admit(problem, order)
    fill_evenly(problem.cars, x, room)
    return x


def allocate_equal(problem: Problem) -> list[float]:
    return finalize(problem, fair_shares(problem), order_by(problem.cars, llf_key))
