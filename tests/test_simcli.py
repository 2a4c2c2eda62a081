"""`csms simulate` and `csms bench` from the command line."""

from __future__ import annotations

import json

import pytest

from csms.cli import main

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
