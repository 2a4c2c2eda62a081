"""`csms bench` report: one row per scenario and strategy, with the limit changes."""

from __future__ import annotations

from dataclasses import replace

from csms.bench import CaseResult, format_report
from csms.scenario import builtin_scenario
from csms.simulate import simulate


def test_the_bench_table_has_a_limit_changes_column() -> None:
    result = simulate(builtin_scenario("thesis"), "llf")
    result = replace(result, limit_changes_per_car_hour=1.234)
    case = CaseResult(
        case="thesis",
        note="the thesis's 4 stations",
        sessions=result.sessions,
        requested_kwh=result.energy_requested_kwh,
        offline_kwh=None,
        results=(result,),
        seconds=0.1,
    )
    lines = format_report([case], []).splitlines()
    header = next(line for line in lines if line.startswith("scenario"))
    row = next(line for line in lines if line.startswith("thesis ") and " llf " in line)
    # ... peak kW | chg/car-h | ms p50 | ms max: the new column before the timings.
    assert header.split()[-5:] == ["chg/car-h", "ms", "p50", "ms", "max"]
    assert row.split()[-3] == "1.23"
