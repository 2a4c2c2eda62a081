"""What an API request reaches: the store, the garage's clock, and the CSMS when in-process."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from csms.clock import Clock, ClockAnchor, utcnow
from csms.controller.service import Controller
from csms.controller.sites import SiteControllers
from csms.errors import GarageGridError
from csms.events import EventBus, SettingsChanged
from csms.ocpp16.server import CentralSystem
from csms.outbox import OutboxWorker
from csms.store import queries
from csms.store.repository import Repository

# A separate `csms api` process reads the clock `csms serve` published at most this often.
ANCHOR_REFRESH_S = 5.0


class PublishedClock:
    """The garage's clock as `csms serve` published it in the store (simulated when it runs
    with --speed), for a `csms api` process; this computer's clock until one is published."""

    def __init__(self) -> None:
        self.anchor: ClockAnchor | None = None
        self._read_at: float | None = None
        self.speed = 1.0

    def now(self) -> datetime:
        wall = utcnow()
        return self.anchor.at(wall) if self.anchor is not None else wall

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(simulated_s / self.speed)

    async def refresh(self, sm: async_sessionmaker[AsyncSession]) -> None:
        if self._read_at is not None and time.monotonic() - self._read_at < ANCHOR_REFRESH_S:
            return
        try:
            self.anchor = await queries.clock_anchor(sm)
        except (GarageGridError, SQLAlchemyError):
            return
        self.speed = self.anchor.speed if self.anchor is not None and self.anchor.speed else 1.0
        self._read_at = time.monotonic()


@dataclass
class ApiContext:
    """``central`` and ``controller``: set when the API runs inside `csms serve`."""

    repository: Repository
    clock: Clock
    central: CentralSystem | None = None
    controller: Controller | None = None
    outbox: OutboxWorker | None = None
    # How often a command's row is looked at while its answer is awaited.
    command_poll_s: float = 0.1
    # The longest a request may wait for a charger's answer.
    max_command_wait_s: float = 120.0
    published_clock: PublishedClock | None = field(default=None)
    # In-process with several sites: each site's controller.
    sites: SiteControllers | None = None
    # In-process: the central system's events (a settings change reaches the site's
    # controller on whichever instance leads it, csms.cluster).
    events: EventBus | None = None

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self.repository.sessionmaker

    def now(self) -> datetime:
        """The garage's time (the CSMS's clock, simulated or not)."""
        return self.clock.now()

    async def refresh_clock(self) -> None:
        if self.published_clock is not None:
            await self.published_clock.refresh(self.sessionmaker)

    def wake_outbox(self) -> None:
        """In-process: the outbox sends a new command at once (else within its poll)."""
        if self.outbox is not None:
            self.outbox.wake()

    def controller_of_site(self, site_id: int) -> Controller | None:
        """In-process: the site's controller (``controller`` is the first site's)."""
        if self.sites is not None:
            return self.sites.controllers.get(site_id)
        return self.controller if site_id == 1 else None

    def request_plan(self, site_id: int | None = None) -> None:
        """In-process: the site's controller (every site's when None) plans at once (a
        separate process waits for its poll)."""
        if self.events is not None:
            self.events.publish(SettingsChanged("api", site_id))
        if self.sites is not None:
            for known_id, controller in self.sites.controllers.items():
                if site_id is None or known_id == site_id:
                    controller.request_plan()
        elif self.controller is not None:
            self.controller.request_plan()
