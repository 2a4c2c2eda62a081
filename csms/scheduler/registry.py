"""Strategies by name, and the one entry point :func:`allocate`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from csms.errors import ConfigError
from csms.scheduler.calm import calm
from csms.scheduler.model import (
    Allocation,
    ConnectorSpec,
    Diagnostics,
    SessionDemand,
    SiteLimits,
)
from csms.scheduler.phases import sum_per_phase, supply_phases
from csms.scheduler.rules import (
    compile_problem,
    edf_key,
    enforce,
    llf_key,
    order_by,
    to_allocation,
)
from csms.scheduler.strategies.fair import allocate_equal
from csms.scheduler.strategies.optimal import DEFAULT_BUDGET_S, allocate_optimal
from csms.scheduler.strategies.priority import allocate_edf, allocate_llf
from csms.scheduler.strategies.thesis import allocate_thesis

STRATEGIES: tuple[str, ...] = ("thesis", "equal", "edf", "llf", "optimal")
#: The strategies that may control real chargers. ``thesis`` is the benchmark baseline: it
#: ignores the fuse, the 6 A minimum and the chargers' steps by design (it reproduces the
#: seed thesis), so it may run in ``csms simulate`` / ``csms bench`` only.
LIVE_STRATEGIES: tuple[str, ...] = ("equal", "edf", "llf", "optimal")

_GREEDY = {"equal": allocate_equal, "edf": allocate_edf, "llf": allocate_llf}


def allocate(
    strategy: str,
    site: SiteLimits,
    stations: Sequence[ConnectorSpec],
    sessions: Sequence[SessionDemand],
    now: datetime,
    *,
    tick_s: float = 5.0,
    budget_s: float = DEFAULT_BUDGET_S,
    live: bool = False,
) -> Allocation:
    """One limit in A per connector for the coming tick of ``tick_s`` seconds.

    ``budget_s`` bounds the time ``optimal`` may spend; past it, that tick uses ``llf``.
    ``live=True`` (a controller driving real chargers) accepts only
    :data:`LIVE_STRATEGIES`. Limits are calmed (:mod:`csms.scheduler.calm`) with each
    session's ``last_limit_a`` and ``last_change_at``. Raises ConfigError for an unknown
    strategy, ``thesis`` when live, or inconsistent input.
    """
    if live and strategy not in LIVE_STRATEGIES:
        raise ConfigError(_not_live(strategy))
    if strategy == "thesis":
        return _thesis(site, stations, sessions, now)
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    t0 = time.perf_counter()
    problem = compile_problem(site, stations, sessions, now, tick_s)
    fallback = reason = None
    if strategy == "optimal":
        outcome = allocate_optimal(problem, tick_s=tick_s, budget_s=budget_s)
        y = outcome.limits_a
        if y is None:
            fallback, reason = "llf", outcome.reason
            y = allocate_llf(problem)
    else:
        y = _GREEDY[strategy](problem)
    order = order_by(problem.cars, edf_key if strategy == "edf" else llf_key)
    y, repaired = enforce(problem, calm(problem, y, order))
    solve_ms = (time.perf_counter() - t0) * 1000.0
    return to_allocation(
        strategy,
        problem,
        y,
        fallback=fallback,
        fallback_reason=reason,
        solve_ms=solve_ms,
        repaired=repaired,
    )


def _not_live(strategy: str) -> str:
    choose = f"choose one of {', '.join(LIVE_STRATEGIES)}"
    if strategy == "thesis":
        return (
            "thesis is a benchmark baseline that ignores the fuse, the 6 A minimum and the "
            f"chargers' steps; it never controls real chargers: {choose}"
        )
    return f"unknown strategy {strategy!r}; {choose}"


def _thesis(
    site: SiteLimits,
    stations: Sequence[ConnectorSpec],
    sessions: Sequence[SessionDemand],
    now: datetime,
) -> Allocation:
    limits = allocate_thesis(stations, sessions, now)
    by_key = {conn.key: conn for conn in stations}
    loads = []
    for s in sessions:
        conn = by_key.get(s.connector)
        if conn is not None:
            loads.append((supply_phases(conn, s.ev_phases, s.drawn_a), limits[s.connector]))
    return Allocation(
        strategy="thesis",
        limits_a=limits,
        diagnostics=Diagnostics(capacity_a=site.capacity_a(), phase_load_a=sum_per_phase(loads)),
    )
