"""A station's link to the central system: connect, boot, heartbeat, send in order.

`Uplink` owns the WebSocket: it connects to ``<csms_url>/<id>`` with subprotocol ocpp1.6
and HTTP Basic auth (the station's AuthorizationKey, read anew for every connection),
sends BootNotification until Accepted (retrying after the interval given on Pending or
Rejected, spec 4.2), then runs the Heartbeat timer and the sender that drains the
station's `MessageQueue` in order. When the connection breaks it reconnects with
exponential back-off and jitter (so a garage of chargers does not reconnect in step).

Waiting is in simulated seconds of the station's clock; network timeouts and the
WebSocket ping are transport matters and stay in real seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from datetime import datetime
from typing import Any, Final, Protocol

from ocpp.v16.enums import RegistrationStatus
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.headers import build_authorization_basic
from websockets.typing import Subprotocol

from csms.clock import Clock
from csms.profiles import ProfileError, parse_ocpp_datetime
from virtual_chargers import messages
from virtual_chargers.client import CallErrorReceived, OcppClient, StationApi
from virtual_chargers.config import ChargerConfig
from virtual_chargers.options import StationOptions, StationStats
from virtual_chargers.queue import MessageQueue, QueuedMessage

log = logging.getLogger("virtual_chargers.uplink")

SUBPROTOCOL: Final = Subprotocol("ocpp1.6")
# Never retry faster than this in real time, however fast the simulated clock runs.
MIN_RETRY_REAL_S: Final = 0.05


class ConnectionLostError(Exception):
    """A message waiting for its answer was dropped because the connection went."""


async def wait_event(event: asyncio.Event, simulated_s: float, speed: float) -> None:
    """Wait until `event` is set or `simulated_s` simulated seconds have passed."""
    if event.is_set():
        return
    if math.isinf(simulated_s):
        await event.wait()
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, simulated_s) / speed):
            await event.wait()


async def sleep_simulated(simulated_s: float, speed: float) -> None:
    await asyncio.sleep(max(0.0, simulated_s) / speed)


class UplinkHost(Protocol):
    """What the uplink needs from its station."""

    @property
    def config(self) -> ChargerConfig: ...
    @property
    def queue(self) -> MessageQueue: ...
    @property
    def reboot_pending(self) -> bool: ...
    @property
    def firmware_version(self) -> str: ...
    async def power_cycle(self) -> None: ...
    def on_accepted(self) -> None: ...
    def on_answered(self, message: QueuedMessage, result: dict[str, Any]) -> None: ...
    def on_dropped(self, message: QueuedMessage, exc: Exception) -> None: ...


class Uplink:
    """The connection of one station, for as long as the station runs."""

    def __init__(
        self,
        cp_id: str,
        url: str,
        clock: Clock,
        options: StationOptions,
        stats: StationStats,
        host: UplinkHost,
        commands: StationApi,
    ) -> None:
        self.id = cp_id
        self.url = url
        self._clock = clock
        self._options = options
        self._stats = stats
        self._host = host
        self._commands = commands
        self._rng = random.Random(options.seed)
        self._client: OcppClient | None = None
        self._ws: ClientConnection | None = None
        self.accepted = False
        self.online = asyncio.Event()
        self._outbox = asyncio.Event()
        self._heartbeat_changed = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._last_answered_seq = 0  # of a transaction message

    @property
    def speed(self) -> float:
        return float(self._clock.speed)

    # -------------------------------------------------------------- signals
    def notify(self) -> None:
        """Something was queued."""
        self._outbox.set()

    def heartbeat_interval_changed(self) -> None:
        self._heartbeat_changed.set()

    async def call_in_order(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send after everything queued before it and return the answer.

        Raises CallErrorReceived, TimeoutError or ConnectionLostError.
        """
        message = self._host.queue.enqueue(action, payload, persistent=False)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[message.seq] = future
        self.notify()
        try:
            return await future
        finally:
            self._waiters.pop(message.seq, None)

    async def call_now(self, action: str, payload: dict[str, Any]) -> None:
        """A direct CALL whose answer does not matter (triggered messages: section 4.2
        lets a Pending charger send what the central system asked for)."""
        client = self._client
        if client is None:
            return
        self._stats.sent[action] += 1
        with contextlib.suppress(CallErrorReceived, TimeoutError, ConnectionClosed):
            await client.send_call(action, payload)
            self._stats.answered += 1

    def disconnect(self) -> None:
        """Drop the connection (a reboot); the run loop decides what comes next."""
        if self._ws is not None:
            self._close_task = asyncio.create_task(self._ws.close(code=1000, reason="reboot"))

    async def close(self) -> None:
        self.closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    def _fail_waiter(self, message: QueuedMessage, exc: Exception) -> None:
        future = self._waiters.pop(message.seq, None)
        if future is not None and not future.done():
            future.set_exception(exc)

    # ------------------------------------------------------------- connecting
    def _auth_headers(self) -> dict[str, str]:
        key = self._host.config.value("AuthorizationKey")
        if not key:
            return {}
        return {"Authorization": build_authorization_basic(self.id, key)}

    def _backoff_s(self, failures: int) -> float:
        """Exponential back-off, jittered between half and all of the doubled delay."""
        options = self._options
        ceiling = min(
            options.reconnect_max_s, options.reconnect_initial_s * math.pow(2, max(0, failures))
        )
        return self._rng.uniform(0.5, 1.0) * ceiling

    async def run(self) -> None:
        failures = 0
        while not self.closing:
            if self._host.reboot_pending:
                await self._host.power_cycle()
                continue
            ping = self._host.config.integer("WebSocketPingInterval")
            try:
                async with connect(
                    self.url,
                    subprotocols=[SUBPROTOCOL],
                    additional_headers=self._auth_headers(),
                    open_timeout=self._options.open_timeout_real_s,
                    # Transport keepalive, in real seconds (a NAT does not run simulated).
                    ping_interval=ping if ping > 0 else None,
                    close_timeout=2,
                    # Embedded chargers rarely negotiate permessage-deflate; it costs CPU.
                    compression=None,
                    proxy=None,
                ) as ws:
                    if ws.subprotocol != SUBPROTOCOL:
                        log.error("central system refused ocpp1.6", extra={"cp_id": self.id})
                        failures += 1
                    else:
                        failures = 0
                        await self._serve(ws)
            except InvalidStatus as exc:
                failures += 1
                log.warning(
                    "connection refused",
                    extra={"cp_id": self.id, "http_status": exc.response.status_code},
                )
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                failures += 1
                log.info(
                    "cannot connect",
                    extra={"cp_id": self.id, "error": f"{type(exc).__name__}: {exc}"},
                )
            if self.closing or self._host.reboot_pending:
                continue
            delay = self._backoff_s(failures - 1)
            await sleep_simulated(max(delay, MIN_RETRY_REAL_S * self.speed), self.speed)

    async def _serve(self, ws: ClientConnection) -> None:
        client = OcppClient(
            self.id,
            ws,
            self._commands,
            response_timeout_s=self._options.response_timeout_real_s,
            validate=self._options.validate_messages,
        )
        self._client, self._ws = client, ws
        self._stats.connects += 1
        log.info("connected", extra={"cp_id": self.id, "url": self.url})
        reader = asyncio.create_task(client.start(), name=f"{self.id}:reader")
        session = asyncio.create_task(self._session(client), name=f"{self.id}:session")
        try:
            done, _ = await asyncio.wait({reader, session}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = None if task.cancelled() else task.exception()
                if exc is not None and not isinstance(exc, ConnectionClosed):
                    log.error("connection task failed", extra={"cp_id": self.id}, exc_info=exc)
        finally:
            for task in (reader, session):
                task.cancel()
            await asyncio.gather(reader, session, return_exceptions=True)
            self._client = self._ws = None
            self.accepted = False
            self.online.clear()
            self._stats.disconnects += 1
            queue = self._host.queue
            for message in list(queue):
                if not message.persistent:
                    self._fail_waiter(message, ConnectionLostError(message.action))
            queue.drop_volatile()
            log.info("disconnected", extra={"cp_id": self.id, "queued": len(queue)})

    async def _session(self, client: OcppClient) -> None:
        await self._boot(client)
        self.accepted = True
        self.online.set()
        self._host.on_accepted()
        await asyncio.gather(self._sender(client), self._heartbeat(client))

    async def _boot(self, client: OcppClient) -> None:
        options = self._options
        payload = messages.boot_notification(
            options.vendor, options.model, f"VC-{self.id}", self._host.firmware_version
        )
        while True:
            self._stats.sent["BootNotification"] += 1
            try:
                result = await client.send_call("BootNotification", payload)
            except (CallErrorReceived, TimeoutError):
                await sleep_simulated(options.boot_retry_s, self.speed)
                continue
            self._stats.answered += 1
            with contextlib.suppress(ProfileError, KeyError):
                self.sync_time(parse_ocpp_datetime(result["currentTime"]))
            interval = int(result.get("interval", 0))
            status = result.get("status")
            log.info(
                "boot answered", extra={"cp_id": self.id, "status": status, "interval": interval}
            )
            if status == RegistrationStatus.accepted:
                if interval > 0:
                    self._host.config.set_local("HeartbeatInterval", str(interval))
                return
            # Pending or Rejected: try again after the interval (spec 4.2).
            retry = interval if interval > 0 else options.boot_retry_s
            await sleep_simulated(retry, self.speed)

    def sync_time(self, central_time: datetime) -> None:
        self._options.on_time_sync(central_time)

    async def _heartbeat(self, client: OcppClient) -> None:
        while True:
            self._heartbeat_changed.clear()
            interval = self._host.config.integer("HeartbeatInterval")
            await wait_event(
                self._heartbeat_changed, interval if interval > 0 else math.inf, self.speed
            )
            if self._heartbeat_changed.is_set():
                continue
            self._stats.sent["Heartbeat"] += 1
            try:
                sent_at = time.monotonic()
                await client.send_call("Heartbeat", {})
                self._stats.round_trips.append((sent_at, time.monotonic() - sent_at))
                self._stats.answered += 1
            except (CallErrorReceived, TimeoutError) as exc:
                log.warning("heartbeat failed", extra={"cp_id": self.id, "error": str(exc)})

    async def _sender(self, client: OcppClient) -> None:
        """Drain the queue in order: one CALL at a time, as OCPP-J requires."""
        host = self._host
        while True:
            self._outbox.clear()
            queue = host.queue
            message = queue.head()
            if message is None:
                await self._outbox.wait()
                continue
            now: datetime = self._clock.now()
            if message.not_before is not None and message.not_before > now:
                wait_s = (message.not_before - now).total_seconds()
                await wait_event(self._outbox, wait_s, self.speed)
                continue
            payload = queue.prepare(message)
            if payload is None:
                log.info(
                    "queued message dropped: its transaction never got an id",
                    extra={"cp_id": self.id, "action": message.action},
                )
                queue.discard(message)
                continue
            self._stats.sent[message.action] += 1
            message.sends += 1
            if message.sends > 1:
                self._stats.resent += 1
            try:
                sent_at = time.monotonic()
                result = await client.send_call(message.action, payload, message.message_id)
            except CallErrorReceived as exc:
                self._stats.call_errors += 1
                config = host.config
                rejection = queue.reject(
                    message,
                    now=self._clock.now(),
                    max_attempts=config.integer("TransactionMessageAttempts"),
                    retry_interval_s=config.integer("TransactionMessageRetryInterval"),
                )
                if rejection.dropped:
                    self._fail_waiter(message, exc)
                    host.on_dropped(message, exc)
                continue
            except TimeoutError:
                self._stats.timeouts += 1
                log.warning(
                    "no answer, will resend",
                    extra={
                        "cp_id": self.id,
                        "action": message.action,
                        "message_id": message.message_id,
                    },
                )
                if not message.persistent:
                    queue.discard(message)
                    self._fail_waiter(message, TimeoutError(message.action))
                continue
            self._stats.answered += 1
            self._stats.round_trips.append((sent_at, time.monotonic() - sent_at))
            if message.persistent:
                if message.seq < self._last_answered_seq:
                    self._stats.out_of_order += 1
                self._last_answered_seq = max(self._last_answered_seq, message.seq)
                if self._options.on_delivered is not None:
                    self._options.on_delivered(self.id, message.action, payload)
            queue.acknowledge(message, result)
            future = self._waiters.pop(message.seq, None)
            if future is not None and not future.done():
                future.set_result(result)
            host.on_answered(message, result)
