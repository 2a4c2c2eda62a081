"""`csms simulate` and `csms bench` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csms.cli import main
from csms.datasets import DATASET_SCENARIOS
from csms.scenario import BUILTIN_SCENARIOS
from csms.scheduler import STRATEGIES

REQUIRED_KEYS = {
    "strategy",
    "scenario",
    "energy_requested_kwh",
    "energy_delivered_kwh",
    "sessions",
    "sessions_met",
    "max_phase_current_a",
    "fuse_limit_a",
    "fuse_violations",
    "min_nonzero_limit_a",
    "jain_index",
    "peak_kw",
    "compute_ms_p50",
    "compute_ms_max",
    "limit_changes_per_car_hour",
}


def test_simulate_json_has_every_metric(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "thesis", "--strategy", "llf", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= REQUIRED_KEYS
    assert set(data["max_phase_current_a"]) == {"L1", "L2", "L3"}
    assert data["fuse_violations"] == 0
    assert data["sessions"] == 4 and data["strategy"] == "llf"


def test_simulate_thesis_baseline_breaks_the_fuse_llf_does_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = {}
    for strategy in ("thesis", "llf"):
        assert main(["simulate", "--scenario", "garage-20", "--strategy", strategy, "--json"]) == 0
        results[strategy] = json.loads(capsys.readouterr().out)
    assert results["llf"]["fuse_violations"] == 0
    assert results["llf"]["min_nonzero_limit_a"] >= 6.0
    assert results["llf"]["energy_delivered_kwh"] > results["thesis"]["energy_delivered_kwh"]


def test_simulate_bad_scenario_file_names_the_field(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"  # type: ignore[operator]
    path.write_text(
        json.dumps({"name": "x", "site": {"fuse_limit_a": -1}, "stations": [], "sessions": []})
    )
    assert main(["simulate", "--scenario", str(path)]) == 2
    assert "fuse_limit_a" in capsys.readouterr().err


def test_bench_runs_a_chosen_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "bench",
                "--only",
                "thesis",
                "--strategies",
                "llf",
                "equal",
                "--workers",
                "1",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    (scenario,) = data["scenarios"]
    assert scenario["scenario"] == "thesis"
    assert [s["strategy"] for s in scenario["strategies"]] == ["llf", "equal"]
    assert scenario["energy_offline_optimum_kwh"] > 0
    sizes = {(t["connectors"], t["strategy"]) for t in data["allocation_timings"]}
    assert (1000, "llf") in sizes and (200, "optimal (24 h horizon)") in sizes


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_bench_unknown_scenario_is_an_error_listing_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from csms.bench import BENCH_CASES

    assert main(["bench", "--only", "thesis", "risvolan-2019-01", "--workers", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran, not even the chosen valid scenario
    line = _one_line(captured.err)
    assert line.startswith("csms bench: unknown scenario 'risvolan-2019-01'; choose from: ")
    assert line.split("choose from: ")[1].split(", ") == [c.name for c in BENCH_CASES]


def test_bench_names_every_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "nope", "garage-200"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "unknown scenarios 'nope', 'garage-200'; choose from: thesis, garage-20," in line


def test_bench_unknown_strategy_is_an_error_listing_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "--only", "thesis", "--strategies", "llf", "lfl"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_line(captured.err)
    assert line == "csms bench: unknown strategy 'lfl'; choose from: " + ", ".join(STRATEGIES)


@pytest.mark.parametrize("option", ["--only", "--strategies"])
def test_bench_option_without_names_is_a_usage_error(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", option])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_simulate_unknown_scenario_is_an_error_listing_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.json"
    assert main(["simulate", "--scenario", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_line(captured.err)
    assert line.startswith(f"csms simulate: unknown scenario {str(missing)!r}; choose from: ")
    for name in (*BUILTIN_SCENARIOS, *DATASET_SCENARIOS):
        assert name in line
    assert "scenario file path" in line


def test_simulate_a_directory_is_not_a_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--scenario", str(tmp_path)]) == 2
    assert "unknown scenario" in capsys.readouterr().err


def test_simulate_runs_a_real_data_scenario_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--scenario", "risvollan-2019-01", "--step-s", "300", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["scenario"], data["sessions"]) == ("risvollan-2019-01-07-7d", 23)


def test_simulate_prints_limit_changes_per_car_hour(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "garage-20", "--strategy", "llf"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.strip().startswith("limit changes")]
    assert "per car-hour" in line and "h plugged in" in line
