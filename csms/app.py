"""Wiring of `csms serve`: database, migrations, WebSocket server, outbox, controller."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from csms import metrics
from csms.api.context import ApiContext
from csms.api.server import ApiServer
from csms.clock import Clock, ClockAnchor, SimClock, make_clock, utcnow
from csms.cluster import Cluster
from csms.controller.service import Controller
from csms.controller.sites import SiteControllers
from csms.errors import ConfigError
from csms.events import EventBus
from csms.files import FileEndpoint
from csms.gc_policy import GcPolicy
from csms.local_list_sync import LocalListSync
from csms.ocpp16.server import CentralSystem, make_ssl_context
from csms.outbox import OutboxWorker
from csms.pki import SiteCA
from csms.store import migrate, queries
from csms.store.engine import create_engine, create_sessionmaker, database_url
from csms.store.meter_writer import MeterWriter
from csms.store.repository import Repository

log = logging.getLogger("csms.app")


@dataclass(frozen=True)
class ServeConfig:
    database_url: str | None = None
    host: str = "0.0.0.0"  # noqa: S104 - chargers connect from the garage network
    port: int = 9000
    auto_register: bool = False
    # Also register an unknown id that brings no password, as unsecured (lab use).
    auto_register_unsecured: bool = False
    speed: float = 1.0
    clock_start: datetime | None = None
    # Run on the (simulated) clock another instance published (csms.cluster tests, demos).
    join_clock: bool = False
    # On PostgreSQL: one of several instances (csms.cluster); off only for a certain
    # single instance.
    cluster: bool = True
    certfile: str | None = None
    keyfile: str | None = None
    # Security profile 3: the CA that signs charge points' client certificates.
    client_ca: str | None = None
    # The site CA that signs the CSRs chargers send (SignCertificate); PEM files.
    ca_cert: str | None = None
    ca_key: str | None = None
    response_timeout_s: float = 30.0
    outbox_poll_s: float = 0.5
    controller: bool = True
    sqlite_busy_timeout_ms: int = 10_000
    # The operator HTTP API and /metrics (csms.api), off unless a port is given (0: any).
    api_port: int | None = None
    # Loopback unless told otherwise: the API changes the garage, give it to the network
    # on purpose (--api-host 0.0.0.0, ideally behind a TLS reverse proxy).
    api_host: str = "127.0.0.1"
    # Local Auth List Management: push id tag changes to the chargers' local lists.
    local_list_sync: bool = True
    local_list_poll_s: float = 2.0
    # Firmware Management: the HTTP file endpoint (off unless a port is given; 0 = any).
    files_port: int | None = None
    files_host: str = "127.0.0.1"
    files_dir: str = "garagegrid-files"


class CsmsApp:
    """The running central system; an async context manager for tests and `csms serve`."""

    def __init__(self, config: ServeConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or (
            SimClock(speed=config.speed, start=config.clock_start)
            if config.join_clock
            else make_clock(config.speed, config.clock_start)
        )
        self.url = database_url(config.database_url)
        self.engine = create_engine(self.url, busy_timeout_ms=config.sqlite_busy_timeout_ms)
        self.repository = Repository(create_sessionmaker(self.engine), self.clock)
        self.events = EventBus()
        # MeterValues: many chargers' messages per commit (csms.store.meter_writer).
        self.meter_writer = MeterWriter(self.repository)
        self.central = CentralSystem(
            self.repository,
            self.events,
            self.clock,
            auto_register=config.auto_register,
            auto_register_unsecured=config.auto_register_unsecured,
            response_timeout_s=config.response_timeout_s,
            certificate_authority=_site_ca(config),
            meter_writer=self.meter_writer,
        )
        # One controller per site (made at start, when the sites are read); `controller`
        # is site 1's, the only one of a single-site install. Several instances on one
        # PostgreSQL database share the sites out (csms.cluster).
        clustered = config.cluster and self.engine.dialect.name == "postgresql"
        self.sites = (
            SiteControllers(
                self.repository, self.central, self.events, self.clock, clustered=clustered
            )
            if config.controller
            else None
        )
        self.cluster = (
            Cluster(self.engine.url, self.repository, self.central, self.events, self.sites)
            if clustered
            else None
        )
        cluster = self.cluster
        self.outbox = OutboxWorker(
            self.repository,
            self.central,
            poll_s=config.outbox_poll_s,
            alive_instances=(lambda: cluster.alive) if cluster is not None else None,
        )
        self.controller: Controller | None = None
        self.local_lists = (
            LocalListSync(
                self.repository,
                self.central,
                self.events,
                self.clock,
                poll_s=config.local_list_poll_s,
            )
            if config.local_list_sync
            else None
        )
        self.files = (
            FileEndpoint(Path(config.files_dir), config.files_host, config.files_port)
            if config.files_port is not None
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        metrics.instrument_engine(self.engine)
        self.api: ApiServer | None = None

    @property
    def port(self) -> int:
        return self.central.port

    async def start(self) -> None:
        await migrate.upgrade(self.engine)
        if self.config.join_clock:
            await self._join_clock()
        alive = await self.cluster.connect() if self.cluster is not None else None
        await self.repository.mark_all_disconnected(alive)
        await self.repository.site_config()
        if self.sites is not None:
            self.controller = await self.sites.prepare()
        if self.cluster is not None:
            # A lone instance leads every site before it answers any charger.
            await self.cluster.start()
            if self.sites is not None:
                self.controller = self.sites.controllers.get(min(self.sites.controllers, default=1))
        await self.repository.publish_clock(
            ClockAnchor.of(self.clock), f"csms serve pid {os.getpid()} on {socket.gethostname()}"
        )
        ssl_context = (
            make_ssl_context(
                self.config.certfile, self.config.keyfile, client_ca=self.config.client_ca
            )
            if self.config.certfile
            else None
        )
        self.meter_writer.start()
        await self.central.start(self.config.host, self.config.port, ssl_context=ssl_context)
        self._tasks.append(asyncio.create_task(self.outbox.run(), name="outbox"))
        if self.local_lists is not None:
            self._tasks.append(asyncio.create_task(self.local_lists.run(), name="local-lists"))
        if self.files is not None:
            self.files.start()
            log.info(
                "firmware and diagnostics files served",
                extra={"url": self.files.base_url, "dir": str(self.files.root)},
            )
        if self.sites is not None:
            self._tasks.append(asyncio.create_task(self.sites.run(), name="controllers"))
        if self.config.api_port is not None:
            context = ApiContext(
                self.repository,
                self.clock,
                self.central,
                self.controller,
                self.outbox,
                sites=self.sites,
                events=self.events,
            )
            # The CSMS's certificate serves the API too: a bearer token must not cross the
            # network in clear where the chargers' passwords do not.
            self.api = ApiServer(
                context,
                self.config.api_host,
                self.config.api_port,
                ssl_context=make_ssl_context(self.config.certfile, self.config.keyfile)
                if self.config.certfile
                else None,
            )
            await self.api.start()
        log.info(
            "CSMS listening",
            extra={
                "host": self.config.host,
                "port": self.port,
                "tls": ssl_context is not None,
                "client_certificates": self.config.client_ca is not None,
                "site_ca": self.central.certificate_authority is not None,
                "auto_register": self.config.auto_register,
                "database": self.engine.url.render_as_string(hide_password=True),
                "speed": self.clock.speed,
                "load_management": self.controller is not None,
            },
        )

    async def _join_clock(self) -> None:
        anchor = await queries.clock_anchor(self.repository.sessionmaker)
        if anchor is None or not isinstance(self.clock, SimClock):
            raise ConfigError("--join-clock: no clock published in this database yet")
        self.clock.join(anchor, utcnow())
        log.info("clock joined", extra={"now": self.clock.now().isoformat(), "speed": anchor.speed})

    async def stop(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop_electing()
        if self.api is not None:
            await self.api.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.outbox.drain()
        if self.cluster is not None:
            await self.cluster.close()  # after the controllers saved their copies
        if self.files is not None:
            self.files.stop()
        await self.central.close()
        await self.meter_writer.close()
        await self.engine.dispose()
        log.info("CSMS stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _site_ca(config: ServeConfig) -> SiteCA | None:
    if config.client_ca is not None and config.certfile is None:
        raise ConfigError("--client-ca needs TLS: give --certfile and --keyfile too")
    if (config.ca_cert is None) != (config.ca_key is None):
        raise ConfigError("give both --ca-cert and --ca-key, or neither")
    if config.ca_cert is None or config.ca_key is None:
        return None
    return SiteCA.load(config.ca_cert, config.ca_key)


async def serve_forever(config: ServeConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = CsmsApp(config)
    await app.start()
    # Objects that live as long as their connection are kept out of full collections
    # (csms.gc_policy): a process of its own, so the whole heap is the CSMS's.
    collector = GcPolicy(app.events)
    collector.start()
    try:
        await stop.wait()
        log.info("shutdown requested")
    finally:
        await collector.stop()
        await app.stop()
