"""The CI policy plugin: a skip fails under CI=true and passes (counted) elsewhere."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_needs_a_tool():
    pytest.skip("tool X is not installed")

def test_fine():
    assert True
"""


def test_a_skip_fails_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest("-p", "tests.ci_policy", "-p", "no:asyncio")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*skipped under CI=true*tool X is not installed*"])


def test_a_module_level_skip_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile('import pytest\npytest.skip("no browser", allow_module_level=True)\n')
    result = pytester.runpytest("-p", "tests.ci_policy", "-p", "no:asyncio")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped under CI=true*no browser*"])


def test_outside_ci_a_skip_is_counted(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest("-p", "tests.ci_policy", "-p", "no:asyncio")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["skipped tests: 1 (CI requires 0)"])
