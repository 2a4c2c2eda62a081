"""Several `csms serve` instances on one PostgreSQL database (issue 12 item 4).

A charger may connect to any instance (behind a TCP load balancer); each site's controller
runs on exactly one instance: the one holding the site's PostgreSQL advisory lock
(``pg_try_advisory_lock(LOCK_CLASS, site_id)``) on its control connection. That lock is
the lease: PostgreSQL drops it the moment the connection ends, so when an instance dies
(SIGKILL: its socket closes at once; a machine gone: the server's TCP keepalives, set
below, end it within ~8 s), another instance takes the site at its next election, every
``ELECT_S``. An instance whose control connection fails stops leading at once, before
the server can give the lease to another.

The instances are known by their control connections' ``application_name``
(``garagegrid/<instance id>`` in ``pg_stat_activity``); a site is not taken by the first
instance to ask but spread: at most a fair share each (sites / live instances), each
preferring the sites it wins by rendezvous hashing, and an instance above its share hands
one site over every ``REBALANCE_S``. A site nobody leads for two elections is taken by
any instance with room, for four by any instance at all.

Between instances, on one LISTEN/NOTIFY channel (payloads of at most ``MAX_PAYLOAD``
bytes, longer messages in parts):

- the domain events of every charger held here (`csms.events`) go to the instance that
  leads its site; where each charger is connected, and whether its boot was Accepted,
  goes to all (presence, for `CentralSystem.is_connected` and the outbox);
- a call for a charger held by another instance is sent there, made there, and its
  answer (or its error) comes back (`CentralSystem.remote`); the leader of the charger's
  site is told of every call any instance made to it, so that its copy of the profiles
  (`csms.controller.mirror`) sees a manager's override sent by another instance's outbox;
- a booting charger's BootNotification asks its site's leader whether it may be
  Accepted (answered Pending after ``GATE_WAIT_S`` without an answer, or when nobody
  leads the site: its fail-safe profiles hold meanwhile), and the leader says when the
  charger is ready.

While nobody leads a site (at most ~``ELECT_S`` after a lease ends, plus the new
controller's start), its chargers keep the limits and defaults they hold, which the last
plan made safe for any car that starts; new boots are Pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import itertools
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from csms.controller.mirror import ChargerIdentity
from csms.controller.sites import SiteControllers
from csms.errors import CallFailedError, GarageGridError, NotConnectedError
from csms.events import (
    ChargePointBooted,
    ChargePointConnected,
    ChargePointDisconnected,
    ConnectorStatusChanged,
    Event,
    EventBus,
    MeterSampled,
    SettingsChanged,
    TransactionStarted,
    TransactionStopped,
)
from csms.ocpp16.server import CentralSystem
from csms.store.migrate import ADVISORY_LOCK_CLASS
from csms.store.repository import Repository

log = logging.getLogger("csms.cluster")

# First key of the site-leadership advisory locks ("GG"); the second is the site's id.
LOCK_CLASS = ADVISORY_LOCK_CLASS
CHANNEL = "garagegrid_cluster"
APP_PREFIX = "garagegrid/"
ELECT_S = 1.0
REBALANCE_S = 5.0
# A NOTIFY payload must stay under 8000 bytes; longer messages go in parts.
MAX_PAYLOAD = 7000
FLUSH_S = 0.01
GATE_WAIT_S = 2.0
# On top of the call's own response timeout at the holding instance.
CALL_SLACK_S = 5.0
CONTROL_TIMEOUT_S = 3.0
# The server ends a control connection whose client is gone within about 5 + 3 x 1 s.
SERVER_SETTINGS = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
}

_PRESENCE = (ChargePointConnected, ChargePointDisconnected, ChargePointBooted)
_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        ChargePointConnected,
        ChargePointDisconnected,
        ChargePointBooted,
        ConnectorStatusChanged,
        TransactionStarted,
        TransactionStopped,
        MeterSampled,
        SettingsChanged,
    )
}
# A forwarded call made here for another instance: that instance tells the site's leader.
_forwarded: contextvars.ContextVar[bool] = contextvars.ContextVar("forwarded", default=False)


def make_instance_id() -> str:
    """Host, process and a random part (a restarted process is another instance)."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(3)}"


def asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# ------------------------------------------------------------------ pure parts
def encode_event(event: Event) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        body[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return body


def decode_event(data: Mapping[str, Any]) -> Event | None:
    """The event ``encode_event`` made; None for a type this version does not know."""
    values = dict(data)
    cls = _EVENT_TYPES.get(str(values.pop("type", "")))
    if cls is None:
        return None
    if isinstance(values.get("timestamp"), str):
        values["timestamp"] = datetime.fromisoformat(values["timestamp"])
    event: Event = cls(**values)
    return event


def pack(sender: str, messages: Sequence[dict[str, Any]], limit: int = MAX_PAYLOAD) -> list[str]:
    """Payloads of at most ``limit`` bytes: as many messages as fit in each, in order; a
    message that does not fit alone is cut into parts (``part``: id, index, count)."""
    payloads: list[str] = []
    batch: list[str] = []
    size = 0
    head = json.dumps({"from": sender, "m": []})
    for message in messages:
        text = json.dumps(message, separators=(",", ":"))
        if len(head) + len(text) + 1 > limit:
            if batch:
                payloads.append(_envelope(sender, batch))
                batch, size = [], 0
            payloads.extend(_parts(sender, text, limit))
            continue
        if batch and len(head) + size + len(text) + 1 > limit:
            payloads.append(_envelope(sender, batch))
            batch, size = [], 0
        batch.append(text)
        size += len(text) + 1
    if batch:
        payloads.append(_envelope(sender, batch))
    return payloads


def _envelope(sender: str, texts: Sequence[str]) -> str:
    return '{"from":%s,"m":[%s]}' % (json.dumps(sender), ",".join(texts))  # noqa: UP031


def _parts(sender: str, text: str, limit: int) -> list[str]:
    room = max(100, limit - 200 - len(sender))
    # Cut on characters; escaped by json.dumps each part may grow: leave room for that.
    step = max(50, room // 6) if not text.isascii() else room // 2
    chunks = [text[i : i + step] for i in range(0, len(text), step)]
    ident = secrets.token_hex(4)
    return [
        json.dumps(
            {"from": sender, "part": [ident, index, len(chunks)], "data": chunk},
            separators=(",", ":"),
        )
        for index, chunk in enumerate(chunks)
    ]


@dataclass
class Reassembler:
    """Puts messages sent in parts back together (parts from one sender arrive in order)."""

    _open: dict[str, list[str]] = field(default_factory=dict)

    def feed(self, payload: str) -> tuple[str, list[dict[str, Any]]]:
        """(sender, complete messages) of one payload; none while parts are missing."""
        data = json.loads(payload)
        sender = str(data.get("from", ""))
        part = data.get("part")
        if part is None:
            return sender, [m for m in data.get("m", []) if isinstance(m, dict)]
        ident, index, count = str(part[0]), int(part[1]), int(part[2])
        key = f"{sender}/{ident}"
        chunks = self._open.setdefault(key, [])
        if index != len(chunks):
            self._open.pop(key, None)  # a part lost: drop the message (a call times out)
            return sender, []
        chunks.append(str(data.get("data", "")))
        if len(chunks) < count:
            return sender, []
        del self._open[key]
        message = json.loads("".join(chunks))
        return sender, [message] if isinstance(message, dict) else []


def preference(instance: str, site_id: int) -> int:
    """Rendezvous hashing: the live instance with the highest score prefers the site."""
    digest = hashlib.sha256(f"{instance}/{site_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class Election:
    """One instance's view at one election."""

    me: str
    sites: Sequence[int]
    leaders: Mapping[int, str]  # site -> instance holding its lease
    alive: Collection[str]  # live instances, this one included
    leaderless_rounds: Mapping[int, int]  # elections each site has had no leader

    @property
    def fair_share(self) -> int:
        return max(1, math.ceil(len(self.sites) / max(1, len(self.alive))))

    def mine(self) -> list[int]:
        return sorted(s for s in self.sites if self.leaders.get(s) == self.me)

    def winner(self, site_id: int) -> str:
        return max(self.alive, key=lambda instance: preference(instance, site_id))

    def to_take(self) -> list[int]:
        """Leaderless sites to try to lock now, best first."""
        room = self.fair_share - len(self.mine())
        out: list[int] = []
        free = [s for s in self.sites if s not in self.leaders]
        free.sort(key=lambda s: -preference(self.me, s))
        for site_id in free:
            rounds = self.leaderless_rounds.get(site_id, 0)
            if rounds >= 4 or (room > 0 and (self.winner(site_id) == self.me or rounds >= 2)):
                out.append(site_id)
                room -= 1
        return out

    def to_hand_over(self) -> int | None:
        """A site to let go so another instance takes it: only above the fair share and
        while no site is leaderless; the one this instance prefers least."""
        mine = self.mine()
        if len(mine) <= self.fair_share or any(s not in self.leaders for s in self.sites):
            return None
        return min(mine, key=lambda s: preference(self.me, s))


async def read_leases(connection: asyncpg.Connection) -> tuple[set[str], dict[int, str]]:
    """The live instances on this database and which one leads each site (site -> id)."""
    rows = await connection.fetch(
        """
        SELECT a.application_name AS name, l.objid::int AS site_id
        FROM pg_stat_activity a
        LEFT JOIN pg_locks l
          ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
         AND l.classid = $1::int::oid AND l.objsubid = 2
        WHERE a.datname = current_database() AND a.application_name LIKE $2
        """,
        LOCK_CLASS,
        APP_PREFIX + "%",
        timeout=CONTROL_TIMEOUT_S,
    )
    alive: set[str] = set()
    leaders: dict[int, str] = {}
    for row in rows:
        instance = str(row["name"])[len(APP_PREFIX) :]
        alive.add(instance)
        if row["site_id"] is not None:
            leaders[int(row["site_id"])] = instance
    return alive, leaders


async def cluster_status(url: URL, repository: Repository) -> dict[str, Any]:
    """What `csms cluster status` prints: the live instances, the sites each leads and the
    chargers each holds, and the sites nobody leads."""
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        alive, leaders = await read_leases(connection)
    finally:
        await connection.close()
    sites = {site.site_id: site.name for site in await repository.list_sites()}
    held = await repository.chargers_per_instance()
    instances = [
        {
            "instance": instance,
            "leads": [sites.get(s, str(s)) for s, i in sorted(leaders.items()) if i == instance],
            "chargers": held.get(instance, 0),
        }
        for instance in sorted(alive)
    ]
    return {
        "instances": instances,
        "sites_without_leader": [name for s, name in sorted(sites.items()) if s not in leaders],
        "chargers_on_no_live_instance": sum(n for i, n in held.items() if i not in alive),
    }


async def announce_settings_changed(url: URL, reason: str, site_id: int | None) -> bool:
    """Tell the instances on this database that a site's settings changed (`csms site
    set`, `csms site load`): its leader plans at once. Best effort: False when it could
    not be told (the leader then notices within its poll second)."""
    message = {"k": "ev", "e": encode_event(SettingsChanged(reason, site_id))}
    try:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
        try:
            for payload in pack(f"cli:{os.getpid()}", [message]):
                await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        log.warning("controllers not told of the change", extra={"error": repr(exc)})
        return False
    return True


# ------------------------------------------------------------------ the instance
class Cluster:
    """This instance among several: leases, presence, relayed events and calls."""

    def __init__(
        self,
        url: URL,
        repository: Repository,
        central: CentralSystem,
        events: EventBus,
        sites: SiteControllers | None,
        *,
        instance_id: str | None = None,
        elect_s: float = ELECT_S,
        rebalance_s: float = REBALANCE_S,
        call_timeout_s: float = 30.0 + CALL_SLACK_S,
    ) -> None:
        self.instance_id = instance_id or make_instance_id()
        self._dsn = asyncpg_dsn(url)
        self._repo = repository
        self._central = central
        self._events = events
        self._sites = sites
        self._elect_s = elect_s
        self._rebalance_s = rebalance_s
        self._call_timeout_s = call_timeout_s
        self._control: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None
        self._send_lock = asyncio.Lock()
        self._outgoing: list[dict[str, Any]] = []
        self._flush_wake = asyncio.Event()
        self._reassembler = Reassembler()
        self._queue = events.subscribe()
        # Presence: chargers other instances hold -> (instance, boot Accepted).
        self._where: dict[str, tuple[str, bool]] = {}
        # Chargers held here that their site's leader (elsewhere) let be Accepted.
        self._ready: set[str] = set()
        self.alive: set[str] = set()
        self.leaders: dict[int, str] = {}
        self._leaderless: dict[int, int] = {}
        self._last_change = -math.inf
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._elect_lock = asyncio.Lock()
        self._spawned: set[asyncio.Task[None]] = set()
        self.elections = 0
        self.notifies_sent = 0
        self.notifies_received = 0
        self.messages_sent = 0
        repository.instance_id = self.instance_id

    # ------------------------------------------------------------ lifecycle
    async def connect(self) -> set[str]:
        """Open the control connection (leases, LISTEN); returns the live instances."""
        await self._open_control()
        self._sender = await self._open()
        self.alive, self.leaders = await self._read_leases()
        return set(self.alive)

    async def _open(self) -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=10,
            server_settings={"application_name": APP_PREFIX + self.instance_id, **SERVER_SETTINGS},
        )
        return connection

    async def start(self) -> None:
        """Presence from the store, the first election (a lone instance leads every site
        before it answers any charger), then the loops."""
        if self._sites is not None:
            self._sites.remote_gate = self.remote_gate
            self._sites.ready_listener = self._on_ready
        self._central.remote = self
        self._central.health_extra = lambda: {"cluster": self.status()}
        self._central.add_call_observer(self._observe_call)
        try:
            self._where = await self._repo.connected_elsewhere()
        except GarageGridError:
            log.exception("could not read where chargers are connected")
        await self.elect()
        self._tasks = [
            asyncio.create_task(self._elect_loop(), name="cluster-elect"),
            asyncio.create_task(self._relay_loop(), name="cluster-relay"),
            asyncio.create_task(self._flush_loop(), name="cluster-send"),
        ]
        log.info(
            "cluster instance started",
            extra={
                "instance": self.instance_id,
                "alive": sorted(self.alive),
                "leads": sorted(s for s, i in self.leaders.items() if i == self.instance_id),
            },
        )

    async def stop_electing(self) -> None:
        for task in self._tasks[:1]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """After the controllers stopped (their copies saved): the leases go with the
        control connection."""
        self._closing = True
        for task in [*self._tasks, *self._spawned]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._spawned, return_exceptions=True)
        self._tasks.clear()
        for connection in (self._control, self._sender):
            if connection is not None and not connection.is_closed():
                with contextlib.suppress(Exception):
                    await connection.close(timeout=5)
        self._central.remote = None
        self._central.remove_call_observer(self._observe_call)
        self._events.unsubscribe(self._queue)

    def status(self) -> dict[str, Any]:
        """For /healthz."""
        return {
            "instance": self.instance_id,
            "instances_alive": len(self.alive),
            "leads_sites": sorted(s for s, i in self.leaders.items() if i == self.instance_id),
            "chargers_elsewhere": len(self._where),
            "elections": self.elections,
            "notifies_sent": self.notifies_sent,
            "messages_sent": self.messages_sent,
            "notifies_received": self.notifies_received,
        }

    # ------------------------------------------------------------ elections
    async def _read_leases(self) -> tuple[set[str], dict[int, str]]:
        assert self._control is not None
        return await read_leases(self._control)

    async def _elect_loop(self) -> None:
        while True:
            await asyncio.sleep(self._elect_s)
            try:
                await self.elect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.error("cluster control connection failed", extra={"error": repr(exc)})
                await self._lost_control()
            except GarageGridError:
                log.exception("election could not read the sites")

    async def elect(self) -> None:
        """One election: see who lives and leads, take or hand over sites (never while a
        lost control connection's sites are being let go)."""
        async with self._elect_lock:
            await self._elect()

    async def _elect(self) -> None:
        if self._control is None or self._control.is_closed():
            await self._reconnect_control()
        assert self._control is not None
        alive, leaders = await self._read_leases()
        for dead in sorted(self.alive - alive):
            await self._instance_died(dead)
        self.alive, self.leaders = alive, leaders
        self.elections += 1
        if self._sites is None:
            return
        sites = [s.site_id for s in await self._repo.list_sites()]
        for site_id in sites:
            self._leaderless[site_id] = (
                0 if site_id in leaders else self._leaderless.get(site_id, 0) + 1
            )
        # A lease this process believes it holds but the server does not show: gone.
        for site_id in list(self._sites.controllers):
            if leaders.get(site_id) != self.instance_id:
                log.error("site lease lost: its controller stops here", extra={"site_id": site_id})
                await self._sites.release(site_id)
        election = Election(self.instance_id, sites, leaders, alive, self._leaderless)
        for site_id in election.to_take():
            won = await self._control.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)",
                LOCK_CLASS,
                site_id,
                timeout=CONTROL_TIMEOUT_S,
            )
            if won:
                self.leaders[site_id] = self.instance_id
                self._leaderless[site_id] = 0
                self._last_change = time.monotonic()
                log.warning(
                    "site lease taken: its controller runs here",
                    extra={"site_id": site_id, "instance": self.instance_id},
                )
                self._sites.lead(site_id)
        handover = election.to_hand_over()
        if handover is not None and time.monotonic() - self._last_change >= self._rebalance_s:
            self._last_change = time.monotonic()
            log.warning(
                "site handed over to balance the instances",
                extra={"site_id": handover, "instance": self.instance_id},
            )
            await self._sites.release(handover)  # its copy of the profiles is saved first
            await self._control.fetchval(
                "SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, handover, timeout=CONTROL_TIMEOUT_S
            )
            self.leaders.pop(handover, None)

    def _on_control_lost(self, connection: Any) -> None:
        if self._closing or connection is not self._control:
            return  # closed by us (stopping, or an old connection given up)
        log.error("cluster control connection closed: leases lost")
        task = asyncio.get_running_loop().create_task(self._lost_control())
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _lost_control(self) -> None:
        """The leases are gone with the connection (or will be, at the server): stop
        leading at once, before another instance can take the sites."""
        async with self._elect_lock:
            await self._let_go()

    async def _let_go(self) -> None:
        if self._sites is not None:
            for site_id in list(self._sites.controllers):
                await self._sites.release(site_id)
        self.leaders = {s: i for s, i in self.leaders.items() if i != self.instance_id}
        # Forgotten before it is ended, so that no lease can outlive our knowledge of it.
        control, self._control = self._control, None
        if control is not None:
            with contextlib.suppress(Exception):
                control.terminate()

    async def _open_control(self) -> None:
        """The connection that holds the leases and listens on the channel."""
        self._control = await self._open()
        await self._control.add_listener(CHANNEL, self._on_notify)
        self._control.add_termination_listener(self._on_control_lost)

    async def _reconnect_control(self) -> None:
        await self._open_control()
        log.warning("cluster control connection open again")

    async def _instance_died(self, dead: str) -> None:
        """Its chargers are disconnected (until they reconnect to a live instance), its
        calls in flight fail now."""
        log.warning("cluster instance gone", extra={"instance": dead})
        try:
            await self._repo.disconnect_instance(dead)
        except GarageGridError:
            log.exception("could not mark a dead instance's chargers disconnected")
        for cp_id, (holder, _) in list(self._where.items()):
            if holder == dead:
                del self._where[cp_id]
                self._inject(ChargePointDisconnected(cp_id))
        for _ident, (holder, future) in list(self._pending.items()):
            if holder == dead and not future.done():
                future.set_exception(NotConnectedError(f"instance {dead} holding it is gone"))

    # ------------------------------------------------------------ presence
    def holder(self, cp_id: str) -> str | None:
        where = self._where.get(cp_id)
        return where[0] if where is not None else None

    def is_accepted(self, cp_id: str) -> bool:
        where = self._where.get(cp_id)
        return where is not None and where[1]

    def _site_of(self, cp_id: str) -> int | None:
        return self._sites.site_of(cp_id) if self._sites is not None else None

    def _learn_site(self, cp_id: str, message: Mapping[str, Any]) -> None:
        """The sender's idea of the charger's site, for a charger added since this
        instance last read the stations' sites."""
        site_id = message.get("site")
        if self._sites is not None and isinstance(site_id, int):
            self._sites.learn_site(cp_id, site_id)

    def _leads_charger(self, cp_id: str) -> bool:
        if self._sites is None:
            return False
        site_id = self._sites.site_of(cp_id)
        return site_id is not None and self._sites.leads(site_id)

    def _leader_of(self, cp_id: str) -> str | None:
        site_id = self._sites.site_of(cp_id) if self._sites is not None else None
        return None if site_id is None else self.leaders.get(site_id)

    # ------------------------------------------------------------ relaying events
    async def _relay_loop(self) -> None:
        while True:
            event = await self._queue.get()
            self._relay(event)

    def _relay(self, event: Event) -> None:
        cp_id = getattr(event, "charge_point_id", None)
        if cp_id is None:
            self._send({"k": "ev", "e": encode_event(event)})
            return
        if isinstance(event, ChargePointDisconnected):
            self._ready.discard(cp_id)
        elif not self._central.is_local(cp_id):
            return
        elif isinstance(event, ChargePointConnected):
            self._where.pop(cp_id, None)  # it came here from another instance
        presence = isinstance(event, _PRESENCE)
        if not presence and self._leads_charger(cp_id):
            return  # its site's controller is here and has seen it
        self._send(
            {
                "k": "ev",
                "e": encode_event(event),
                "acc": self._central.is_accepted(cp_id),
                "to": None if presence else self._leader_of(cp_id),
                "site": self._site_of(cp_id),
            }
        )

    def _inject(self, event: Event) -> None:
        """An event from another instance, for the controllers here."""
        self._events.publish(event, skip=self._queue)

    def _on_event(self, sender: str, message: dict[str, Any]) -> None:
        event = decode_event(message["e"])
        if event is None:
            return
        cp_id = getattr(event, "charge_point_id", None)
        if cp_id is not None:
            self._learn_site(cp_id, message)
            if isinstance(event, ChargePointDisconnected):
                if self.holder(cp_id) != sender:
                    return  # an old connection's end; the charger is elsewhere now
                del self._where[cp_id]
            else:
                self._where[cp_id] = (sender, bool(message.get("acc")))
            if isinstance(event, ChargePointConnected) and self._central.is_local(cp_id):
                # Newer than the connection here, which is old (half-open): it goes, as a
                # second connection to one instance replaces the first.
                task = asyncio.get_running_loop().create_task(
                    self._central.drop_replaced(cp_id, sender)
                )
                self._spawned.add(task)
                task.add_done_callback(self._spawned.discard)
            if not self._leads_charger(cp_id):
                return
        self._inject(event)

    # ------------------------------------------------------------ calls
    async def call(self, cp_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        holder = self.holder(cp_id)
        if holder is None:
            raise NotConnectedError(f"charge point {cp_id!r} is not connected")
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = (holder, future)
        self._send({"k": "call", "to": holder, "id": ident, "cp": cp_id, "a": action, "p": payload})
        try:
            async with asyncio.timeout(self._call_timeout_s):
                answer: dict[str, Any] = await future
                return answer
        except TimeoutError as exc:
            raise CallFailedError(
                f"{action} to {cp_id} through instance {holder}: no answer in "
                f"{self._call_timeout_s:g} s"
            ) from exc
        finally:
            self._pending.pop(ident, None)

    async def _serve_call(self, sender: str, message: dict[str, Any]) -> None:
        """A call another instance sends to a charger held here."""
        _forwarded.set(True)
        reply: dict[str, Any] = {"k": "reply", "to": sender, "id": message["id"]}
        try:
            reply["answer"] = await self._central.call(
                str(message["cp"]), str(message["a"]), dict(message["p"])
            )
        except NotConnectedError as exc:
            reply["error"], reply["kind"] = str(exc), "not_connected"
        except CallFailedError as exc:
            reply["error"], reply["kind"], reply["code"] = str(exc), "failed", exc.code
        except GarageGridError as exc:
            reply["error"], reply["kind"] = str(exc), "failed"
        self._send(reply)

    def _on_reply(self, message: dict[str, Any]) -> None:
        pending = self._pending.get(int(message["id"]))
        if pending is None or pending[1].done():
            return
        future = pending[1]
        if "answer" in message:
            future.set_result(message["answer"])
        elif message.get("kind") == "not_connected":
            future.set_exception(NotConnectedError(str(message.get("error"))))
        else:
            future.set_exception(
                CallFailedError(str(message.get("error")), code=message.get("code"))
            )

    def _observe_call(
        self, cp_id: str, action: str, payload: dict[str, Any], answer: dict[str, Any] | None
    ) -> None:
        """A call made from here (not one made here for another instance: that one tells
        the leader) to a charger whose site is led elsewhere: the leader is told."""
        if _forwarded.get() or self._leads_charger(cp_id):
            return
        leader = self._leader_of(cp_id)
        if leader is None or action not in (
            "SetChargingProfile",
            "ClearChargingProfile",
            "RemoteStartTransaction",
        ):
            return
        self._send(
            {
                "k": "obs",
                "to": leader,
                "cp": cp_id,
                "a": action,
                "p": payload,
                "r": answer,
                "site": self._site_of(cp_id),
            }
        )

    def _on_observed(self, message: dict[str, Any]) -> None:
        cp_id = str(message["cp"])
        self._learn_site(cp_id, message)
        if self._leads_charger(cp_id):
            answer = message.get("r")
            self._central.tell_observers(
                cp_id,
                str(message["a"]),
                dict(message["p"]),
                dict(answer) if isinstance(answer, dict) else None,
            )

    # ------------------------------------------------------------ boots
    async def remote_gate(self, cp_id: str, site_id: int, identity: ChargerIdentity | None) -> bool:
        """Ask the leader of the charger's site whether it may be Accepted now."""
        if cp_id in self._ready:
            return True
        leader = self.leaders.get(site_id)
        if leader is None:
            log.info("boot pending: nobody leads the site yet", extra={"cp_id": cp_id})
            return False
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = (leader, future)
        self._send(
            {
                "k": "boot",
                "to": leader,
                "id": ident,
                "cp": cp_id,
                "site": site_id,
                "v": identity.vendor if identity else None,
                "m": identity.model if identity else None,
            }
        )
        try:
            async with asyncio.timeout(GATE_WAIT_S):
                ok = bool((await future).get("ok"))
        except (TimeoutError, GarageGridError):
            return False
        finally:
            self._pending.pop(ident, None)
        if ok:
            self._ready.add(cp_id)
        return ok

    def _on_boot(self, sender: str, message: dict[str, Any]) -> None:
        self._learn_site(str(message["cp"]), message)
        ok = False
        controller = (
            self._sites.controllers.get(int(message["site"])) if self._sites is not None else None
        )
        if controller is not None:
            vendor, model = message.get("v"), message.get("m")
            identity = (
                ChargerIdentity(str(vendor), str(model), None)
                if vendor is not None and model is not None
                else None
            )
            ok = controller.boot_gate(str(message["cp"]), identity)
        self._send({"k": "reply", "to": sender, "id": message["id"], "answer": {"ok": ok}})

    def _on_ready(self, cp_id: str) -> None:
        """A controller here let a charger held elsewhere be Accepted."""
        holder = self.holder(cp_id)
        if holder is not None:
            self._send({"k": "ready", "to": holder, "cp": cp_id})

    # ------------------------------------------------------------ the channel
    def _send(self, message: dict[str, Any]) -> None:
        self._outgoing.append(message)
        self._flush_wake.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wake.wait()
            await asyncio.sleep(FLUSH_S)  # a few more events join this batch
            self._flush_wake.clear()
            messages, self._outgoing = self._outgoing, []
            if messages:
                self.messages_sent += len(messages)
                await self._notify(pack(self.instance_id, messages))

    async def _notify(self, payloads: Iterable[str]) -> None:
        args = [(CHANNEL, payload) for payload in payloads]
        for attempt in (1, 2):
            try:
                if self._sender is None or self._sender.is_closed():
                    self._sender = await self._open()
                await self._sender.executemany("SELECT pg_notify($1, $2)", args)
                self.notifies_sent += len(args)
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.error(
                    "cluster messages not sent",
                    extra={"error": repr(exc), "payloads": len(args), "attempt": attempt},
                )
                self._sender = None

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            sender, messages = self._reassembler.feed(payload)
        except (ValueError, TypeError, IndexError, KeyError):
            log.warning("unreadable cluster message dropped", extra={"size": len(payload)})
            return
        if sender == self.instance_id:
            return
        self.notifies_received += 1
        for message in messages:
            to = message.get("to")
            if to is not None and to != self.instance_id:
                continue
            try:
                self._dispatch(sender, message)
            except (ValueError, TypeError, KeyError):
                log.warning("cluster message dropped", extra={"kind": message.get("k")})

    def _dispatch(self, sender: str, message: dict[str, Any]) -> None:
        kind = message.get("k")
        if kind == "ev":
            self._on_event(sender, message)
        elif kind == "call":
            task = asyncio.get_running_loop().create_task(self._serve_call(sender, message))
            self._spawned.add(task)
            task.add_done_callback(self._spawned.discard)
        elif kind == "reply":
            self._on_reply(message)
        elif kind == "obs":
            self._on_observed(message)
        elif kind == "boot":
            self._on_boot(sender, message)
        elif kind == "ready" and self._central.is_local(str(message["cp"])):
            self._ready.add(str(message["cp"]))
