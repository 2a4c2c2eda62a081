"""Wall clock and accelerated simulation clock.

The thesis's demonstrator ran 100x faster than real time. GarageGrid keeps one clock
abstraction so that the CSMS, the controller and the virtual chargers can all run the
same simulated time: ``SimClock(speed=100, start=...)`` maps elapsed real seconds to
simulated seconds. Everything that needs "now" takes a clock instead of calling
``datetime.now``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of the current time, possibly accelerated."""

    speed: float

    def now(self) -> datetime:
        """Current (simulated) time, timezone-aware UTC."""
        ...

    async def sleep(self, simulated_s: float) -> None:
        """Sleep for a span of simulated seconds."""
        ...


@dataclass
class WallClock:
    """Real time."""

    speed: float = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, simulated_s))


@dataclass
class SimClock:
    """Simulated time that starts at ``start`` and runs ``speed`` times faster than real time."""

    speed: float = 1.0
    start: datetime | None = None
    _t0_monotonic: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"clock speed must be positive, got {self.speed}")
        if self.start is None:
            self.start = datetime.now(UTC)
        elif self.start.tzinfo is None:
            raise ValueError("clock start must carry a time zone (e.g. 2026-01-05T16:00:00+02:00)")

    def now(self) -> datetime:
        assert self.start is not None
        elapsed = (time.monotonic() - self._t0_monotonic) * self.speed
        return (self.start + timedelta(seconds=elapsed)).astimezone(UTC)

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, simulated_s) / self.speed)

    def join(self, anchor: ClockAnchor, wall_now: datetime) -> None:
        """Run on the clock ``anchor`` describes (another process's), from now on."""
        if anchor.speed <= 0:
            raise ValueError("cannot join a clock that stands still")
        self.speed = anchor.speed
        self.start = anchor.at(wall_now)
        self._t0_monotonic = time.monotonic()


def make_clock(speed: float = 1.0, start: datetime | None = None) -> Clock:
    """Return a wall clock for real time, a simulated one otherwise."""
    if speed == 1.0 and start is None:
        return WallClock()
    return SimClock(speed=speed, start=start)


@dataclass(frozen=True)
class ClockAnchor:
    """A clock pinned to the wall clock: at wall time ``wall_at`` it read ``sim_at`` and
    runs ``speed`` times faster than real time (0: it stands still).

    ``csms serve`` publishes its clock this way through the store, so that the monitor
    shows the CSMS's time, simulated or real, rather than its own computer's.
    """

    sim_at: datetime
    wall_at: datetime
    speed: float

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ValueError(f"clock speed must not be negative, got {self.speed}")
        if self.sim_at.tzinfo is None or self.wall_at.tzinfo is None:
            raise ValueError("clock anchor times must carry a time zone")

    def at(self, wall_now: datetime) -> datetime:
        """The anchored clock's time when the wall clock reads ``wall_now``."""
        return (self.sim_at + (wall_now - self.wall_at) * self.speed).astimezone(UTC)

    @classmethod
    def of(cls, clock: Clock, wall_now: datetime | None = None) -> ClockAnchor:
        """Pin ``clock`` to the wall clock as it reads now."""
        return cls(clock.now(), wall_now or utcnow(), clock.speed)

    @classmethod
    def frozen(cls, at: datetime) -> ClockAnchor:
        """A clock that always reads ``at`` (tests; a replay paused at one instant)."""
        return cls(at, at, 0.0)


def utcnow() -> datetime:
    """Real current time in UTC (for bookkeeping that is never simulated)."""
    return datetime.now(UTC)
