"""One clock: the CSMS publishes its (maybe simulated) time; the monitor extrapolates it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.clock import ClockAnchor, SimClock
from csms.store import queries
from tests.conftest import start_app

WALL = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SIM = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)


def test_an_anchored_clock_runs_at_its_speed_from_its_anchor() -> None:
    anchor = ClockAnchor(SIM, WALL, 60.0)
    assert anchor.at(WALL) == SIM
    assert anchor.at(WALL + timedelta(seconds=10)) == SIM + timedelta(minutes=10)


def test_a_frozen_clock_stands_still() -> None:
    anchor = ClockAnchor.frozen(SIM)
    assert anchor.at(WALL) == anchor.at(WALL + timedelta(days=3)) == SIM


@pytest.mark.parametrize("speed", [-1.0, -0.001])
def test_a_negative_speed_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="negative"):
        ClockAnchor(SIM, WALL, speed)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        ClockAnchor(SIM.replace(tzinfo=None), WALL, 1.0)


async def test_csms_serve_publishes_its_simulated_clock(db_url: str) -> None:
    app = await start_app(db_url, clock=SimClock(speed=60.0, start=SIM))
    try:
        anchor = await queries.clock_anchor(app.repository.sessionmaker)
        assert anchor is not None
        assert anchor.speed == 60.0
        # Whatever the wall clock says, the monitor's "now" is the CSMS's: within the few
        # simulated minutes this test takes of the simulated start.
        assert abs((anchor.at(datetime.now(UTC)) - app.clock.now()).total_seconds()) < 60
        assert abs((anchor.sim_at - SIM).total_seconds()) < 600
    finally:
        await app.stop()
