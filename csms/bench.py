"""`csms bench`: every strategy over built-in, congested and real-data scenarios.

For each scenario it runs every strategy through :func:`csms.simulate.simulate`, adds the
offline optimum (the same LP solved once with hindsight: an upper bound on the energy any
strategy can deliver) and prints one table (with the limit changes per car-hour plugged in:
calm limits must not cost energy); then it times one allocation for 10, 100 and
1,000 connectors per strategy, and ``optimal`` for 200 sessions over a 24 h horizon.
Scenarios run in parallel processes (one per core by default).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from csms.errors import ConfigError
from csms.scenario import Scenario, load_scenario, make_garage_scenario
from csms.scheduler import STRATEGIES, ConnectorSpec, SessionDemand, SiteLimits, allocate
from csms.simulate import SimulationResult, simulate


@dataclass(frozen=True)
class BenchCase:
    name: str
    step_s: float
    load: Callable[[], Scenario]
    note: str = ""


def _risvollan_125() -> Scenario:
    scenario = load_scenario("risvollan-2020-01")
    return replace(
        scenario,
        name="risvollan-2020-01-125a",
        site=replace(scenario.site, fuse_limit_a=125.0),
    )


def _acn(limit_kw: float) -> Callable[[], Scenario]:
    def build() -> Scenario:
        from csms.datasets import acn_scenario

        return acn_scenario(limit_kw)

    return build


BENCH_CASES: tuple[BenchCase, ...] = (
    BenchCase("thesis", 60.0, lambda: load_scenario("thesis"), "the thesis's 4 stations"),
    BenchCase("garage-20", 60.0, lambda: load_scenario("garage-20"), "3x63 A"),
    BenchCase("garage-100", 300.0, lambda: load_scenario("garage-100"), "3x125 A"),
    BenchCase(
        "congested-40",
        300.0,
        lambda: make_garage_scenario(40, seed=40, fuse_limit_a=63.0, name="congested-40"),
        "40 cars on 3x63 A",
    ),
    BenchCase(
        "risvollan-2019-01", 300.0, lambda: load_scenario("risvollan-2019-01"), "real, 3x25 A"
    ),
    BenchCase(
        "risvollan-2020-01", 300.0, lambda: load_scenario("risvollan-2020-01"), "real, 3x63 A"
    ),
    BenchCase("risvollan-2020-01-125a", 300.0, _risvollan_125, "real, 3x125 A"),
    BenchCase("acn-20kw", 300.0, _acn(20.0), "real, ACN-Sim ref LLF 88.21 %"),
    BenchCase("acn-30kw", 300.0, _acn(30.0), "real, ACN-Sim ref LLF 99.17 %"),
    BenchCase("acn-40kw", 300.0, _acn(40.0), "real"),
)


@dataclass(frozen=True)
class CaseResult:
    case: str
    note: str
    sessions: int
    requested_kwh: float
    offline_kwh: float | None
    results: tuple[SimulationResult, ...]
    seconds: float


def run_case(case_name: str, strategies: Sequence[str]) -> CaseResult:
    """Run one benchmark case by name (names cross process boundaries, loaders do not)."""
    case = next((c for c in BENCH_CASES if c.name == case_name), None)
    if case is None:
        raise ConfigError(
            f"unknown benchmark scenario {case_name!r}; choose from: "
            f"{', '.join(c.name for c in BENCH_CASES)}"
        )
    started = time.perf_counter()
    scenario = case.load()
    results = []
    offline = None
    for i, strategy in enumerate(strategies):
        result = simulate(scenario, strategy, case.step_s, with_offline_optimum=i == 0)
        if i == 0:
            offline = result.energy_offline_optimum_kwh
        results.append(result)
    return CaseResult(
        case=case.name,
        note=case.note,
        sessions=len(scenario.sessions),
        requested_kwh=results[0].energy_requested_kwh if results else 0.0,
        offline_kwh=offline,
        results=tuple(results),
        seconds=time.perf_counter() - started,
    )


def time_allocations(repeats: int = 20) -> list[dict[str, Any]]:
    """Median and max time of one allocation for 10, 100 and 1,000 connectors."""
    rows = []
    now = datetime(2026, 1, 5, 18, tzinfo=UTC)
    for n in (10, 100, 1000):
        stations, sessions = _synthetic_garage(n, now)
        site = SiteLimits(fuse_limit_a=max(63.0, n * 4.0), margin_a=2.0)
        for strategy in STRATEGIES:
            if strategy == "optimal" and n > 200:
                continue
            timings = []
            for _ in range(repeats if strategy != "optimal" else 3):
                t0 = time.perf_counter()
                allocation = allocate(strategy, site, stations, sessions, now)
                timings.append((time.perf_counter() - t0) * 1000)
            rows.append(
                {
                    "connectors": n,
                    "strategy": strategy,
                    "ms_p50": round(statistics.median(timings), 2),
                    "ms_max": round(max(timings), 2),
                    "fallback": allocation.diagnostics.fallback,
                }
            )
    stations, sessions = _synthetic_garage(200, now)
    site = SiteLimits(fuse_limit_a=400.0, margin_a=2.0)
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        allocation = allocate("optimal", site, stations, sessions, now, budget_s=5.0)
        timings.append((time.perf_counter() - t0) * 1000)
    rows.append(
        {
            "connectors": 200,
            "strategy": "optimal (24 h horizon)",
            "ms_p50": round(statistics.median(timings), 2),
            "ms_max": round(max(timings), 2),
            "fallback": allocation.diagnostics.fallback,
        }
    )
    return rows


def _synthetic_garage(n: int, now: datetime) -> tuple[list[ConnectorSpec], list[SessionDemand]]:
    wirings = (("L1", "L2", "L3"), ("L2", "L3", "L1"), ("L3", "L1", "L2"))
    stations = []
    sessions = []
    for i in range(n):
        one_phase = i % 4 == 3
        wiring = (("L1",), ("L2",), ("L3",))[i % 3] if one_phase else wirings[i % 3]
        stations.append(
            ConnectorSpec(
                station_id=f"CP{i:04d}",
                max_current_a=32.0 if i % 2 else 16.0,
                phases=1 if one_phase else 3,
                wiring=wiring,
            )
        )
        sessions.append(
            SessionDemand(
                connector=(f"CP{i:04d}", 1),
                arrival_at=now - timedelta(minutes=i % 90),
                departure_at=now + timedelta(hours=4 + (i * 7) % 20),
                energy_needed_wh=5000.0 + (i * 1337) % 40000,
            )
        )
    return stations, sessions


def _pct(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "-"
    return f"{100.0 * part / whole:.2f}"


def format_report(cases: Sequence[CaseResult], timings: Sequence[dict[str, Any]]) -> str:
    lines = []
    header = (
        f"{'scenario':24} {'strategy':8} {'deliv %req':>10} {'% offline':>9} {'met':>9} "
        f"{'fuse viol':>9} {'min>0 A':>7} {'jain':>6} {'peak kW':>8} {'chg/car-h':>9} "
        f"{'ms p50':>7} {'ms max':>8}"
    )
    for case in cases:
        lines.append(
            f"\n{case.case} — {case.note}: {case.sessions} sessions, "
            f"{case.requested_kwh:.1f} kWh requested, offline optimum "
            f"{case.offline_kwh if case.offline_kwh is None else round(case.offline_kwh, 1)} kWh "
            f"({_pct(case.offline_kwh, case.requested_kwh)} %), {case.seconds:.1f} s"
        )
        lines.append(header)
        for r in case.results:
            min_nonzero = "-" if r.min_nonzero_limit_a is None else f"{r.min_nonzero_limit_a:.1f}"
            of_requested = _pct(r.energy_delivered_kwh, r.energy_requested_kwh)
            lines.append(
                f"{case.case:24} {r.strategy:8} {of_requested:>10} "
                f"{_pct(r.energy_delivered_kwh, case.offline_kwh):>9} "
                f"{f'{r.sessions_met}/{r.sessions}':>9} {r.fuse_violations:>9} {min_nonzero:>7} "
                f"{r.jain_index:>6.3f} {r.peak_kw:>8.1f} {r.limit_changes_per_car_hour:>9.2f} "
                f"{r.compute_ms_p50:>7.2f} {r.compute_ms_max:>8.1f}"
            )
    lines.append("\nOne allocation (synthetic garage, mixed 1- and 3-phase, rotated wiring):")
    lines.append(f"{'connectors':>10} {'strategy':24} {'ms p50':>8} {'ms max':>8}  fallback")
    for t in timings:
        lines.append(
            f"{t['connectors']:>10} {t['strategy']:24} {t['ms_p50']:>8.2f} {t['ms_max']:>8.2f}  "
            f"{t['fallback'] or '-'}"
        )
    return "\n".join(lines)


def run_bench(
    cases: Sequence[BenchCase] = BENCH_CASES,
    strategies: Sequence[str] = STRATEGIES,
    *,
    workers: int | None = None,
) -> tuple[list[CaseResult], list[dict[str, Any]]]:
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        results = [run_case(c.name, strategies) for c in cases]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run_case, c.name, list(strategies)) for c in cases]
            results = [f.result() for f in futures]
    return results, time_allocations()


def report_json(cases: Sequence[CaseResult], timings: Sequence[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "scenarios": [
                {
                    "scenario": c.case,
                    "note": c.note,
                    "sessions": c.sessions,
                    "energy_requested_kwh": c.requested_kwh,
                    "energy_offline_optimum_kwh": c.offline_kwh,
                    "seconds": round(c.seconds, 2),
                    "strategies": [
                        {k: v for k, v in asdict(r).items() if k != "session_delivered_kwh"}
                        for r in c.results
                    ],
                }
                for c in cases
            ],
            "allocation_timings": list(timings),
        },
        indent=2,
    )
