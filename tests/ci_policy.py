"""A pytest plugin: under CI a skip is a failure, and every run prints its skip count.

`make test` installs every tool the tests need (PostgreSQL, Chromium, the npm peer), so a
test that would skip for a missing tool under CI (CI=true, as `.ci/run` runs) is a broken
setup and fails instead of passing in silence.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _fail_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if in_ci() and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI=true, which is a failure: {reason} "
            "(`make test` installs every tool the tests need)"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_skip(report)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = len(terminalreporter.stats.get("skipped", []))
    terminalreporter.write_line(
        f"skipped tests: {skipped}" + (" (CI requires 0)" if skipped else "")
    )
