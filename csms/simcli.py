"""`csms simulate` and `csms bench`: the pure scheduler over scenarios, no sockets."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from csms.datasets import DATASET_SCENARIOS
from csms.scenario import BUILTIN_SCENARIOS, load_scenario
from csms.scheduler import STRATEGIES

SCENARIO_NAMES: tuple[str, ...] = (*BUILTIN_SCENARIOS, *DATASET_SCENARIOS)
"""What `csms simulate --scenario` accepts besides a path to a scenario file."""


def _unknown(command: str, kind: str, names: Sequence[str], valid: Sequence[str]) -> int:
    """One line on stderr naming the unknown names and the valid ones; exit status 2."""
    quoted = ", ".join(repr(name) for name in names)
    plural = "s" if len(names) > 1 else ""
    print(
        f"csms {command}: unknown {kind}{plural} {quoted}; choose from: {', '.join(valid)}",
        file=sys.stderr,
    )
    return 2


def _simulate(args: argparse.Namespace) -> int:
    from csms.simulate import simulate

    if args.scenario not in SCENARIO_NAMES and not Path(args.scenario).is_file():
        return _unknown(
            "simulate", "scenario", [args.scenario], [*SCENARIO_NAMES, "or a scenario file path"]
        )
    scenario = load_scenario(args.scenario)
    result = simulate(scenario, args.strategy, args.step_s, with_offline_optimum=args.offline)
    if args.json:
        print(result.to_json(per_session=args.per_session))
        return 0
    share = 100 * result.delivered_share
    print(f"scenario {result.scenario}, strategy {result.strategy}, step {result.step_s:g} s")
    print(f"  sessions met          {result.sessions_met}/{result.sessions} (>= 99 % of need)")
    print(
        f"  energy delivered      {result.energy_delivered_kwh:.1f} of "
        f"{result.energy_requested_kwh:.1f} kWh ({share:.2f} %)"
    )
    if result.energy_offline_optimum_kwh:
        print(
            f"  offline optimum       {result.energy_offline_optimum_kwh:.1f} kWh "
            f"({100 * result.energy_delivered_kwh / result.energy_offline_optimum_kwh:.2f} % of it)"
        )
    phases = ", ".join(f"{p} {a:.1f} A" for p, a in result.max_phase_current_a.items())
    print(
        f"  max phase current     {phases} "
        f"(fuse {result.fuse_limit_a:g} A, margin {result.margin_a:g} A)"
    )
    print(f"  fuse violations       {result.fuse_violations}")
    print(f"  smallest limit > 0    {result.min_nonzero_limit_a}")
    print(f"  Jain fairness         {result.jain_index:.3f}")
    print(f"  peak                  {result.peak_kw:.1f} kW")
    print(
        f"  limit changes         {result.limit_changes_per_car_hour:.2f} per car-hour "
        f"({result.limit_changes} in {result.plugged_in_hours:.1f} h plugged in)"
    )
    print(
        f"  compute per step      p50 {result.compute_ms_p50:.2f} ms, "
        f"max {result.compute_ms_max:.1f} ms"
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from csms.bench import BENCH_CASES, format_report, report_json, run_bench

    case_names = [c.name for c in BENCH_CASES]
    if unknown := [name for name in args.only or () if name not in case_names]:
        return _unknown("bench", "scenario", unknown, case_names)
    if unknown := [name for name in args.strategies if name not in STRATEGIES]:
        return _unknown("bench", "strategy", unknown, STRATEGIES)
    cases = [c for c in BENCH_CASES if not args.only or c.name in args.only]
    started = time.perf_counter()
    results, timings = run_bench(cases, args.strategies, workers=args.workers)
    elapsed = time.perf_counter() - started
    if args.json:
        print(report_json(results, timings))
    else:
        print(format_report(results, timings))
        print(f"\nbench took {elapsed:.1f} s on {args.workers or 'all'} worker(s)", file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    sim = sub.add_parser("simulate", help="run a strategy over a scenario (no sockets)")
    sim.add_argument(
        "--scenario",
        required=True,
        help=f"{', '.join(SCENARIO_NAMES)} or a path to a scenario JSON file",
    )
    sim.add_argument("--strategy", default="llf", choices=STRATEGIES)
    sim.add_argument("--step-s", type=float, default=60.0, help="simulation step (default 60 s)")
    sim.add_argument("--offline", action="store_true", help="also solve the offline optimum")
    sim.add_argument("--json", action="store_true", help="one JSON object with the metrics")
    sim.add_argument("--per-session", action="store_true", help="with --json: energy per session")
    sim.set_defaults(run=_simulate)

    bench = sub.add_parser("bench", help="every strategy over the benchmark scenarios")
    bench.add_argument(
        "--only", nargs="+", metavar="NAME", help="scenario names to run (default: all)"
    )
    bench.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        metavar="NAME",
        help=f"strategies to run: {', '.join(STRATEGIES)} (default: all)",
    )
    bench.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=_bench)
