"""One controller per site in one `csms serve` (issue 12 item 1, "Many sites").

Each site's `Controller` reads its own site through `Repository.for_site` (its settings
and fuse, its stations, their sessions, its building load) and looks only at its own
chargers' calls and events (``owns``). A booting charger is prepared by its site's
controller: the boot gate of the central system asks the charger's site here.

Which charger is on which site is read at start, again when an unknown charger boots
(it is answered Pending meanwhile, as any charger whose fail-safe profiles are not in
place), and every ``REFRESH_S``; a site added while serving gets its controller within
``REFRESH_S`` as well.

With several `csms serve` instances on one PostgreSQL database (``clustered``), a site's
controller runs only on the instance that leads the site (``csms.cluster`` elects it and
calls `lead` and `release`); a charger of a site led elsewhere is asked about there.

A single-site install runs one controller over the whole store, as before sites: no site
filter on its reads (a site's view costs about a quarter more per plan at 1,000
chargers). When a second site appears, that controller is limited to site 1 in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from csms.clock import Clock
from csms.controller.mirror import ChargerIdentity
from csms.controller.service import Controller
from csms.errors import GarageGridError
from csms.events import EventBus
from csms.ocpp16.server import CentralSystem
from csms.store.repository import Repository

log = logging.getLogger("csms.controller")

# How often the chargers' sites and the list of sites are read again, in real seconds.
REFRESH_S = 5.0


class SiteControllers:
    def __init__(
        self,
        repository: Repository,
        central: CentralSystem,
        events: EventBus,
        clock: Clock,
        *,
        refresh_s: float = REFRESH_S,
        clustered: bool = False,
    ) -> None:
        self._repo = repository
        self._central = central
        self._events = events
        self._clock = clock
        self._refresh_s = refresh_s
        self.controllers: dict[int, Controller] = {}
        self._site_of: dict[str, int] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        self._looking_up: set[str] = set()
        self._spawned: set[asyncio.Task[None]] = set()
        self._started = False
        self._whole_store = False
        self.clustered = clustered
        # Clustered: asks the leader of a charger's site whether it may be Accepted
        # (cp_id, site_id, identity), set by csms.cluster.
        self.remote_gate: Callable[[str, int, ChargerIdentity | None], Awaitable[bool]] | None = (
            None
        )
        # Clustered: told of every charger a controller here lets be Accepted.
        self.ready_listener: Callable[[str], None] | None = None

    async def prepare(self) -> Controller | None:
        """Read the sites and make their controllers; the central system's boot gate asks
        here from now on. Returns site 1's (the first site's) controller; clustered, none
        yet (`lead` makes them as the sites are won)."""
        self._site_of = await self._repo.charge_point_sites()
        self._central.boot_gate = self.boot_gate
        if self.clustered:
            return None
        sites = await self._repo.list_sites()
        if len(sites) == 1:
            # The whole store is site 1's: its controller reads it without a site filter.
            self.controllers[sites[0].site_id] = Controller(
                self._repo, self._central, self._events, self._clock
            )
            self._whole_store = True
        else:
            for site in sites:
                self._add(site.site_id)
        return self.controllers[min(self.controllers)]

    def site_of(self, cp_id: str) -> int | None:
        return self._site_of.get(cp_id)

    def learn_site(self, cp_id: str, site_id: int) -> None:
        """A charger's site as another instance knows it (added since the last read here);
        the next read of the stations' sites confirms or corrects it."""
        self._site_of.setdefault(cp_id, site_id)

    def leads(self, site_id: int) -> bool:
        return site_id in self.controllers

    def lead(self, site_id: int) -> Controller:
        """Clustered: this instance won the site; its controller starts here."""
        if site_id in self.controllers:
            return self.controllers[site_id]
        return self._install(site_id, "site controller leads here")

    async def release(self, site_id: int) -> None:
        """Clustered: the site is no longer led here (handed over, or the lease is lost):
        its controller stops and saves the copy of its chargers' profiles."""
        controller = self.controllers.pop(site_id, None)
        task = self._running.pop(site_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if controller is not None:
            with contextlib.suppress(GarageGridError):
                await controller.close()
            log.info("site controller stopped here", extra={"site_id": site_id})

    def _owns(self, site_id: int) -> Callable[[str], bool]:
        return lambda cp_id: self._site_of.get(cp_id) == site_id

    def _add(self, site_id: int) -> Controller:
        if self._whole_store:
            # A second site: the first controller keeps to its own site from now on.
            self._whole_store = False
            for known_id, known in self.controllers.items():
                known.limit_to_site(self._repo.for_site(known_id), self._owns(known_id))
        return self._install(site_id, "site controller ready")

    def _install(self, site_id: int, message: str) -> Controller:
        """The site's controller, over its view of the store; running if we are."""
        controller = Controller(
            self._repo.for_site(site_id),
            self._central,
            self._events,
            self._clock,
            owns=self._owns(site_id),
        )
        controller.ready_listener = self.ready_listener
        self.controllers[site_id] = controller
        if self._started:
            self._start(site_id)
        log.info(message, extra={"site_id": site_id})
        return controller

    def _start(self, site_id: int) -> None:
        self._running[site_id] = asyncio.create_task(
            self.controllers[site_id].run(), name=f"controller-site-{site_id}"
        )

    def controller_of(self, cp_id: str) -> Controller | None:
        site_id = self._site_of.get(cp_id)
        if self._whole_store and site_id is not None:
            return self.controllers[min(self.controllers)]
        return None if site_id is None else self.controllers.get(site_id)

    def boot_gate(
        self, cp_id: str, identity: ChargerIdentity | None = None
    ) -> bool | Awaitable[bool]:
        """The charger's site's controller decides (clustered: the one of the instance that
        leads the site); a charger not known yet is answered Pending while its site is
        read, and then prepared by that site's controller."""
        controller = self.controller_of(cp_id)
        if controller is not None:
            return controller.boot_gate(cp_id, identity)
        site_id = self._site_of.get(cp_id)
        if self.clustered and site_id is not None and self.remote_gate is not None:
            return self.remote_gate(cp_id, site_id, identity)
        if cp_id not in self._looking_up:
            self._looking_up.add(cp_id)
            task = asyncio.create_task(self._boot_unknown(cp_id, identity))
            self._spawned.add(task)
            task.add_done_callback(self._spawned.discard)
        return False

    async def _boot_unknown(self, cp_id: str, identity: ChargerIdentity | None) -> None:
        try:
            await self._refresh()
            controller = self.controller_of(cp_id)
            site_id = self._site_of.get(cp_id)
            if controller is not None:
                controller.boot_gate(cp_id, identity)  # prepares it; next boot Accepted
            elif self.clustered and site_id is not None and self.remote_gate is not None:
                await self.remote_gate(cp_id, site_id, identity)  # prepared by the leader
            else:
                log.warning("booting charger is on no site", extra={"cp_id": cp_id})
        except GarageGridError:
            log.exception("could not read a booting charger's site", extra={"cp_id": cp_id})
        finally:
            self._looking_up.discard(cp_id)

    async def _refresh(self, *, stations: bool = True) -> None:
        if self.clustered:
            # Which site's controller runs here is the election's (csms.cluster).
            self._site_of = await self._repo.charge_point_sites()
            return
        new = [
            s.site_id for s in await self._repo.list_sites() if s.site_id not in self.controllers
        ]
        if stations or new or not self._whole_store:
            self._site_of = await self._repo.charge_point_sites()
        for site_id in new:
            self._add(site_id)

    async def run(self) -> None:
        self._started = True
        for site_id in self.controllers:
            self._start(site_id)
        try:
            while True:
                await asyncio.sleep(self._refresh_s)
                try:
                    # A single site's controller needs no map of the stations' sites.
                    await self._refresh(stations=False)
                except GarageGridError:
                    log.exception("could not read the sites; the controllers keep running")
        finally:
            if self.clustered:
                # Leases end with the process: each controller saves its copy first.
                for site_id in list(self.controllers):
                    await self.release(site_id)
            tasks: list[asyncio.Task[Any]] = [*self._running.values(), *self._spawned]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
