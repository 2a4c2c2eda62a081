"""One virtual charge point: sessions and transactions around the pure simulation.

A `VirtualStation` behaves like an AC wallbox with one connector:

- a car plugs in (`arrive`): StatusNotification Preparing, Authorize, StartTransaction;
  every simulated second the car draws `csms.ev.draw_current_a` of what the composite
  limit of its charging profiles allows (`virtual_chargers.charging`), and MeterValues go
  out every MeterValueSampleInterval (Charging / SuspendedEV / SuspendedEVSE follow);
- the car leaves (`depart`): StopTransaction with the begin and end readings in
  `transactionData`, Finishing, and Available once the cable is out;
- while the central system is unreachable it keeps charging under its stored profiles,
  queues its transaction messages (`virtual_chargers.queue`) and the `Uplink` replays
  them in order after reconnecting;
- it answers the central system's calls (`virtual_chargers.commands`) and survives a
  simulated reboot with its profiles, configuration, availability and queue, which it
  keeps in its "flash" (and in a JSON file when `StationOptions.state_file` is set).

All timestamps and intervals are simulated time of the station's clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from ocpp.v16.enums import AuthorizationStatus, Reason, ResetType

from csms.charging_needs import CHARGING_NEEDS, VENDOR_ID, charging_needs_data
from csms.clock import Clock
from csms.profiles import ChargingProfile, ChargingRateUnit, ProfileRejectedError, ProfileStore
from virtual_chargers import messages, simulation
from virtual_chargers.charging import CONNECTOR, ChargingPoint
from virtual_chargers.client import CallErrorReceived
from virtual_chargers.commands import CentralSystemCommands
from virtual_chargers.config import ChargerConfig, phase_rotation
from virtual_chargers.features import StationFeatures
from virtual_chargers.options import (
    RemoteStart,
    SessionRecord,
    StationOptions,
    StationSnapshot,
    StationStats,
)
from virtual_chargers.queue import METER_VALUES, START, STOP, MessageQueue, QueuedMessage
from virtual_chargers.simulation import Car, ConnectorState, Electrics
from virtual_chargers.uplink import (
    ConnectionLostError,
    Uplink,
    sleep_simulated,
    wait_event,
)

log = logging.getLogger("virtual_chargers.station")

_MAX_PENDING_SAMPLES: Final = 20_000


@dataclass
class _Transaction:
    local_id: int
    id_tag: str
    started_at: datetime
    meter_start_wh: int
    begin: dict[str, Any] | None  # the Transaction.Begin reading for transactionData
    next_sample_at: datetime
    record: SessionRecord


@dataclass(frozen=True)
class _Visit:
    """A car's stay at the station, possibly with several transactions (reboots)."""

    number: int
    id_tag: str
    arrived_at: datetime
    departure_at: datetime | None
    needed_wh: float
    remote: bool = False


class VirtualStation:
    """A simulated AC charge point with one connector, speaking OCPP 1.6J."""

    def __init__(
        self,
        station_id: str,
        csms_url: str,
        electrics: Electrics,
        clock: Clock,
        options: StationOptions | None = None,
    ) -> None:
        self.id = station_id
        self.options = options or StationOptions()
        quirks = self.options.quirks
        if quirks.current_steps_a is not None:
            electrics = replace(electrics, current_steps_a=quirks.current_steps_a)
        self.electrics = electrics
        self.url = f"{csms_url.rstrip('/')}/{quote(station_id, safe='')}"
        self._clock = clock
        self.stats = StationStats()
        self.sessions: list[SessionRecord] = []
        self._records: dict[int, SessionRecord] = {}  # by local transaction number

        self._flash: dict[str, Any] = {}
        self._config = self._initial_config()
        # Local list, reservation, firmware and diagnostics (virtual_chargers.features).
        self.features = StationFeatures(self)
        self._queue = MessageQueue()
        self.charging = ChargingPoint(
            electrics,
            clock.now(),
            profiles=self._initial_profiles(),
            ignore_profiles=quirks.ignore_profiles,
        )
        self._load_state_file()

        self._tx: _Transaction | None = None
        self._visit: _Visit | None = None
        self._visits = 0
        self._auth_cache: dict[str, str] = {}
        self.remote: RemoteStart | None = None
        self.pending_inoperative = False
        self._next_aligned: datetime | None = None
        self._reported: dict[int, str] = {}
        self._sampled_at: dict[int, float] = {}

        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self.closing = False
        self._reboot: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._begin_task: asyncio.Task[None] | None = None
        self.commands = CentralSystemCommands(self)
        self.uplink = Uplink(
            self.id, self.url, clock, self.options, self.stats, self, self.commands
        )

    # ------------------------------------------------------------ set-up
    def _initial_config(self) -> ChargerConfig:
        options = self.options
        config = ChargerConfig()
        config.set_local("ConnectorPhaseRotation", phase_rotation(self.electrics.wiring))
        if options.password:
            config.set_local("AuthorizationKey", options.password)
        if options.quirks.only_stack_level_0:
            config.set_local("ChargeProfileMaxStackLevel", "0")
        if options.quirks.only_watts:
            config.set_local("ChargingScheduleAllowedChargingRateUnit", "Power")
        if options.free_vend:
            config.set_local("StopTransactionOnInvalidId", "false")
        for key, value in options.config.items():
            config.set_local(key, value)
        return config

    def _initial_profiles(self) -> ProfileStore:
        units = {"Current": ChargingRateUnit.A, "Power": ChargingRateUnit.W}
        config = self._config
        return ProfileStore(
            max_stack_level=config.integer("ChargeProfileMaxStackLevel"),
            max_profiles=config.integer("MaxChargingProfilesInstalled"),
            max_periods=config.integer("ChargingScheduleMaxPeriods"),
            allowed_rate_units=frozenset(
                units[u] for u in config.csl("ChargingScheduleAllowedChargingRateUnit")
            ),
            connector_count=config.integer("NumberOfConnectors"),
        )

    def _load_state_file(self) -> None:
        path = self.options.state_file
        if path is None or not path.is_file():
            return
        self._flash = json.loads(path.read_text("utf-8"))
        self._restore_flash()
        log.info("state restored", extra={"cp_id": self.id, "file": str(path)})

    # ------------------------------------------------------------ "flash"
    def persist(self, *, with_queue: bool = False) -> None:
        """Write what survives a reboot: profiles, configuration, availability (+ queue)."""
        self._flash["profiles"] = self.charging.profiles.to_dict()
        self._flash["config"] = self._config.to_dict()
        self._flash["operative"] = self.charging.state.operative
        self._flash["features"] = self.features.to_flash()
        if with_queue:
            self._flash["queue"] = self._queue.to_dict()
        path = self.options.state_file
        if path is not None:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._flash), "utf-8")
            tmp.replace(path)

    def _restore_flash(self) -> None:
        flash = self._flash
        if "config" in flash:
            self._config = ChargerConfig.from_dict(flash["config"])
        if "profiles" in flash:
            self.charging.profiles = ProfileStore.from_dict(flash["profiles"])
        if "queue" in flash:
            self._queue = MessageQueue.from_dict(flash["queue"])
        if "features" in flash:
            self.features.from_flash(flash["features"])
        operative = bool(flash.get("operative", True))
        self.charging.state = simulation.set_operative(self.charging.state, operative)

    # ------------------------------------------------------------ plumbing
    @property
    def config(self) -> ChargerConfig:
        return self._config

    @property
    def queue(self) -> MessageQueue:
        return self._queue

    @property
    def firmware_version(self) -> str:
        """What BootNotification reports: the options' version until an update installs."""
        return self.features.firmware_version

    async def send_charging_needs(self, departure_at: datetime, energy_kwh: float) -> str:
        """The charger's own app tells the central system when the car leaves and what it
        needs (the GarageGrid DataTransfer, csms.charging_needs); returns the status."""
        payload = {
            "vendorId": VENDOR_ID,
            "messageId": CHARGING_NEEDS,
            "data": charging_needs_data(departure_at, energy_kwh, connector_id=CONNECTOR),
        }
        result = await self.uplink.call_in_order("DataTransfer", payload)
        return str(result.get("status"))

    async def _tell_needs(self, departure_at: datetime, needed_wh: float) -> None:
        try:
            status = await self.send_charging_needs(departure_at, needed_wh / 1000.0)
        except (CallErrorReceived, TimeoutError, ConnectionLostError) as exc:
            status = f"not delivered: {exc}"
        log.info("charging needs told", extra={"cp_id": self.id, "status": status})

    def send_volatile(self, action: str, payload: dict[str, Any]) -> None:
        """A message that is not kept across a lost connection (status notifications)."""
        self._enqueue(action, payload, persistent=False)

    @property
    def speed(self) -> float:
        return float(self._clock.speed)

    def now(self) -> datetime:
        now: datetime = self._clock.now()
        return now

    def advance(self) -> datetime:
        """Bring the simulation to now; return now."""
        now = self.now()
        self.charging.advance(now)
        return now

    def wake(self) -> None:
        self._wake.set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "station task failed",
                extra={"cp_id": self.id, "task": task.get_name()},
                exc_info=task.exception(),
            )

    @property
    def transaction_running(self) -> bool:
        return self._tx is not None

    @property
    def transaction_id(self) -> int | None:
        """The central system's id of the running transaction (None: none, or not yet)."""
        return None if self._tx is None else self.charging.transaction_id

    def set_profiles(self, profiles: ProfileStore) -> None:
        self.charging.set_profiles(self.now(), profiles)
        self.persist()

    def set_operative(self, operative: bool) -> None:
        self.charging.update(self.now(), lambda s: simulation.set_operative(s, operative))
        self.persist()
        self.wake()

    # ============================================================ the simulation loop
    async def _physics_loop(self) -> None:
        while True:
            self._wake.clear()
            now = self.advance()
            self._on_tick(now)
            await wait_event(self._wake, self._next_wake_in(now), self.speed)

    def _next_wake_in(self, now: datetime) -> float:
        tick = self.options.max_tick_real_s * self.speed
        candidates = [tick]
        if self._tx is not None:
            if self._config.integer("MeterValueSampleInterval") > 0:
                candidates.append((self._tx.next_sample_at - now).total_seconds())
            candidates.append(self.charging.seconds_until_idle())
            candidates.append(self.charging.next_change_in(now, tick))
        if self._next_aligned is not None:
            candidates.append((self._next_aligned - now).total_seconds())
        return max(0.001, min(candidates))

    def _on_tick(self, now: datetime) -> None:
        self.features.active_reservation(now)  # lapses at its expiryDate
        self.report_status(now)
        tx = self._tx
        interval = self._config.integer("MeterValueSampleInterval")
        if tx is not None and interval > 0 and now >= tx.next_sample_at:
            self.stats.meter_lag_s.append((now - tx.next_sample_at).total_seconds())
            self.enqueue_meter_values("Sample.Periodic", now)
            step = timedelta(seconds=interval)
            tx.next_sample_at += step
            if tx.next_sample_at <= now:  # behind by more than an interval: skip ahead
                tx.next_sample_at = now + step
        self._clock_aligned(now)
        if self.remote is not None and now >= self.remote.expires_at:
            log.info("remote start expired: no car came", extra={"cp_id": self.id})
            self.remote = None

    def _clock_aligned(self, now: datetime) -> None:
        """Sample.Clock readings at whole multiples of ClockAlignedDataInterval (9.1.3)."""
        interval = self._config.integer("ClockAlignedDataInterval")
        if interval <= 0:
            self._next_aligned = None
            return
        if self._next_aligned is None:
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            elapsed = (now - midnight).total_seconds()
            self._next_aligned = midnight + timedelta(
                seconds=(math.floor(elapsed / interval) + 1) * interval
            )
            return
        if now < self._next_aligned:
            return
        measurands = self._config.csl("MeterValuesAlignedData")
        if measurands:
            self.enqueue_meter_values(
                "Sample.Clock", now, measurands=measurands, persistent=self._tx is not None
            )
        while self._next_aligned <= now:
            self._next_aligned += timedelta(seconds=interval)

    def reset_clock_aligned(self) -> None:
        self._next_aligned = None
        self.wake()

    def reschedule_samples(self) -> None:
        if self._tx is not None:
            interval = self._config.integer("MeterValueSampleInterval")
            self._tx.next_sample_at = self.now() + timedelta(seconds=max(interval, 1))
            self.wake()

    # ============================================================ outgoing
    def _enqueue(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        tx_local_id: int | None = None,
        persistent: bool = True,
    ) -> QueuedMessage:
        offline = persistent and not self.uplink.accepted
        message = self._queue.enqueue(
            action, payload, tx_local_id=tx_local_id, persistent=persistent, offline=offline
        )
        if offline:
            self.stats.queued_offline += 1
        self.uplink.notify()
        return message

    def enqueue_meter_values(
        self,
        context: str,
        now: datetime,
        *,
        measurands: tuple[str, ...] | None = None,
        persistent: bool = True,
    ) -> None:
        reading = self.charging.reading()
        wanted = measurands or self._config.csl("MeterValuesSampledData")
        value = messages.meter_value(reading, wanted, context, now)
        if not value["sampledValue"]:
            return
        tx = self._tx
        message = self._enqueue(
            METER_VALUES,
            messages.meter_values(CONNECTOR, [value]),
            tx_local_id=tx.local_id if tx else None,
            persistent=persistent,
        )
        if len(self._sampled_at) < _MAX_PENDING_SAMPLES:
            self._sampled_at[message.seq] = time.monotonic()

    def report_status(
        self, now: datetime, *, force: bool = False, connector: int = CONNECTOR
    ) -> None:
        """Queue a StatusNotification when the status changed (or when forced)."""
        if not self.uplink.accepted:
            return
        if connector == 0:
            status = "Available" if self.charging.state.operative else "Unavailable"
        else:
            status = self.charging.state.status.value
            if status == "Available" and self.features.active_reservation(now) is not None:
                status = "Reserved"
        if force or self._reported.get(connector) != status:
            self._reported[connector] = status
            self._enqueue(
                "StatusNotification",
                messages.status_notification(connector, status, now),
                persistent=False,
            )

    # ------------------------------------------------------------ uplink callbacks
    def on_accepted(self) -> None:
        """Booted: report every connector's status (spec 4.2 / 4.9)."""
        now = self.advance()
        self.report_status(now, force=True, connector=0)
        self.report_status(now, force=True)
        self.features.on_accepted()

    def on_answered(self, message: QueuedMessage, result: dict[str, Any]) -> None:
        if message.queued_offline:
            self.stats.replayed += 1
        if message.action == METER_VALUES:
            sampled = self._sampled_at.pop(message.seq, None)
            if sampled is not None:
                self.stats.delivery_real_s.append(time.monotonic() - sampled)
        elif message.action == START and message.tx_local_id is not None:
            self._on_started(message.tx_local_id, result)

    def on_dropped(self, message: QueuedMessage, exc: Exception) -> None:
        log.warning(
            "message discarded after repeated CALLERRORs",
            extra={"cp_id": self.id, "action": message.action, "message_id": message.message_id},
        )
        self._sampled_at.pop(message.seq, None)
        if message.action == START and message.tx_local_id is not None:
            record = self._records.pop(message.tx_local_id, None)
            if record is not None:
                record.start_failed = True

    def _on_started(self, local_id: int, result: dict[str, Any]) -> None:
        transaction_id = self._queue.transaction(local_id).transaction_id
        record = self._records.pop(local_id, None)
        if record is not None:
            record.transaction_id = transaction_id
            hook = self.options.on_transaction_started
            if hook is not None and transaction_id is not None and transaction_id > 0:
                hook(self.id, transaction_id, record.departure_at, record.needed_wh)
            if (
                self.options.needs_by_data_transfer
                and record.departure_at is not None
                and record.needed_wh > 0
            ):
                self.spawn(self._tell_needs(record.departure_at, record.needed_wh), "needs")
        status = str((result.get("idTagInfo") or {}).get("status", ""))
        log.info(
            "transaction started",
            extra={"cp_id": self.id, "transaction_id": transaction_id, "status": status},
        )
        tx = self._tx
        if tx is None or tx.local_id != local_id:
            return  # already stopped (it ran offline); its Stop carries the id now
        self.charging.transaction_id = transaction_id
        self._cache_tag(tx.id_tag, status)
        if status != AuthorizationStatus.accepted and not self.options.free_vend:
            log.warning(
                "transaction not accepted",
                extra={"cp_id": self.id, "transaction_id": transaction_id, "status": status},
            )
            if self._config.boolean("StopTransactionOnInvalidId"):
                self.stop_transaction(Reason.de_authorized)
            else:
                self.charging.update(self.now(), simulation.hold_energy)
                self.wake()

    # ============================================================ reboot
    @property
    def reboot_pending(self) -> bool:
        return self._reboot is not None

    def request_reboot(self, kind: str) -> None:
        reason = Reason.hard_reset if kind == ResetType.hard else Reason.soft_reset
        self.stop_transaction(reason)
        self._reboot = kind
        self.uplink.disconnect()

    async def power_cycle(self) -> None:
        log.info("rebooting", extra={"cp_id": self.id, "kind": self._reboot})
        # Power down writes the queue; RAM is lost; what was in flash comes back.
        self.persist(with_queue=True)
        self._restore_flash()
        self.remote = None
        self._next_aligned = None
        await sleep_simulated(self.options.reboot_s, self.speed)
        self._reboot = None
        if self._visit is not None and self._tx is None:
            self._begin_task = self.spawn(self._begin_session(), "resume-session")

    # ============================================================ sessions
    def arrive(
        self,
        car: Car,
        id_tag: str,
        *,
        departure_at: datetime | None = None,
        needed_wh: float = 0.0,
    ) -> None:
        """A car plugs in; the station authorises `id_tag` and starts a transaction."""
        if self.closing:
            return
        now = self.now()
        self.charging.update(now, lambda s: simulation.plug_in(s, car))
        self._visits += 1
        remote = self.remote is not None
        if self.remote is not None:
            id_tag = self.remote.id_tag
        self._visit = _Visit(self._visits, id_tag, now, departure_at, needed_wh, remote)
        log.info("car plugged in", extra={"cp_id": self.id, "id_tag": id_tag, "ev": car.spec.key})
        self.wake()
        self._begin_task = self.spawn(self._begin_session(), "begin-session")

    def start_remote_if_plugged(self) -> None:
        """After an accepted RemoteStartTransaction: a car that is already waiting starts."""
        visit, remote = self._visit, self.remote
        if visit is None or self._tx is not None or remote is None:
            return
        if self._begin_task is not None:
            self._begin_task.cancel()
        self._visit = replace(visit, id_tag=remote.id_tag, remote=True)
        self._begin_task = self.spawn(self._begin_session(), "remote-start")

    async def _begin_session(self) -> None:
        visit = self._visit
        while visit is not None and self._visit is visit and self._tx is None and not self.closing:
            if not self.charging.state.operative or self._reboot is not None:
                await sleep_simulated(self.options.boot_retry_s, self.speed)
                continue
            status = await self._authorize(visit.id_tag, remote=visit.remote)
            if status is None:
                # Offline and not allowed to start offline: wait for the central system.
                await self.uplink.online.wait()
                continue
            if self._visit is not visit or self._tx is not None:
                return
            reservation = self.features.active_reservation(self.now())
            if (
                status == AuthorizationStatus.accepted
                and reservation is not None
                and not self.features.may_use(reservation, visit.id_tag, self.now())
            ):
                status = "Reserved"  # for someone else (section 5.13)
            if status != AuthorizationStatus.accepted:
                log.warning(
                    "id tag not accepted",
                    extra={"cp_id": self.id, "id_tag": visit.id_tag, "status": status},
                )
                self.sessions.append(
                    SessionRecord(
                        visit.number,
                        visit.id_tag,
                        visit.arrived_at,
                        visit.departure_at,
                        visit.needed_wh,
                        refused=status,
                    )
                )
                return
            profile = None
            if self.remote is not None and visit.remote:
                profile = self.remote.profile
                self.remote = None
            self._start_transaction(
                visit, profile, None if reservation is None else reservation.reservation_id
            )
            return

    def _cache_tag(self, id_tag: str, status: str) -> None:
        if self._config.boolean("AuthorizationCacheEnabled") and status:
            self._auth_cache[id_tag] = status

    async def _authorize(self, id_tag: str, *, remote: bool) -> str | None:
        """Accepted / Invalid / ... or None when it cannot be decided now (offline)."""
        accepted = str(AuthorizationStatus.accepted)
        config = self._config
        if self.options.free_vend:
            return accepted
        if remote and not config.boolean("AuthorizeRemoteTxRequests"):
            return accepted
        # The Local Authorization List comes before the cache (section 3.4): online with
        # LocalPreAuthorize for an Accepted tag, offline whatever the list says.
        listed = self.features.list_status(id_tag, self.now())
        if listed == accepted and config.boolean("LocalPreAuthorize"):
            return accepted
        offline = not self.uplink.accepted
        if listed is not None and offline and config.boolean("LocalAuthorizeOffline"):
            return listed
        cached = self._auth_cache.get(id_tag)
        if cached == accepted and config.boolean("LocalPreAuthorize"):
            return accepted
        if self.uplink.accepted:
            try:
                result = await self.uplink.call_in_order("Authorize", {"idTag": id_tag})
            except (CallErrorReceived, TimeoutError, ConnectionLostError):
                pass
            else:
                status = str((result.get("idTagInfo") or {}).get("status", "Invalid"))
                self._cache_tag(id_tag, status)
                return status
        # Offline (spec 3.5): the authorisation cache, then AllowOfflineTxForUnknownId.
        if cached == accepted and config.boolean("LocalAuthorizeOffline"):
            return accepted
        if config.boolean("AllowOfflineTxForUnknownId"):
            return accepted
        return None

    def _start_transaction(
        self, visit: _Visit, profile: ChargingProfile | None, reservation_id: int | None = None
    ) -> None:
        now = self.advance()
        local_id = self._queue.new_transaction()
        reading = self.charging.reading()
        stop_measurands = self._config.csl("StopTxnSampledData")
        begin = (
            messages.meter_value(reading, stop_measurands, "Transaction.Begin", now)
            if stop_measurands
            else None
        )
        record = SessionRecord(
            visit.number,
            visit.id_tag,
            visit.arrived_at,
            visit.departure_at,
            visit.needed_wh,
            started_at=now,
            meter_start_wh=reading.energy_wh,
        )
        self.sessions.append(record)
        self._records[local_id] = record
        interval = self._config.integer("MeterValueSampleInterval")
        self._tx = _Transaction(
            local_id,
            visit.id_tag,
            now,
            reading.energy_wh,
            begin,
            now + timedelta(seconds=max(interval, 1)),
            record,
        )
        if profile is not None:
            try:
                self.set_profiles(
                    self.charging.profiles.install_remote_start_profile(CONNECTOR, profile)
                )
            except ProfileRejectedError as exc:
                log.warning(
                    "remote start profile refused", extra={"cp_id": self.id, "error": str(exc)}
                )
        self.charging.transaction_id = None
        self.charging.transaction_start = now
        self.charging.update(now, simulation.start_transaction)
        self._enqueue(
            START,
            messages.start_transaction(
                CONNECTOR, visit.id_tag, reading.energy_wh, now, reservation_id=reservation_id
            ),
            tx_local_id=local_id,
        )
        if reservation_id is not None:
            self.features.reservation = None  # used up by this transaction
        self.wake()

    def stop_transaction(self, reason: str, *, id_tag: str | None = None) -> None:
        """Stop the running transaction (if any) now, for `reason` (spec 7.37 Reason)."""
        tx = self._tx
        if tx is None:
            return
        now = self.advance()
        reading = self.charging.reading()
        data = []
        measurands = self._config.csl("StopTxnSampledData")
        if measurands and tx.begin is not None:
            data = [tx.begin, messages.meter_value(reading, measurands, "Transaction.End", now)]
        payload = messages.stop_transaction(
            reading.energy_wh, now, str(reason), id_tag=id_tag, transaction_data=data
        )
        self._enqueue(STOP, payload, tx_local_id=tx.local_id)
        tx.record.stopped_at = now
        tx.record.meter_stop_wh = reading.energy_wh
        tx.record.stop_reason = str(reason)
        self._tx = None
        self.charging.update(now, simulation.stop_transaction)
        self.charging.transaction_id = None
        self.charging.transaction_start = None
        profiles = self.charging.profiles.end_transaction(CONNECTOR)
        if profiles is not self.charging.profiles:
            self.set_profiles(profiles)
        if self.pending_inoperative:
            self.pending_inoperative = False
            self.set_operative(False)
        log.info(
            "transaction stopped",
            extra={
                "cp_id": self.id,
                "transaction_id": tx.record.transaction_id,
                "reason": str(reason),
                "energy_wh": tx.record.energy_wh,
            },
        )
        self.wake()

    async def depart(self, reason: str = Reason.local) -> None:
        """The driver ends the session and unplugs: StopTransaction, Finishing, Available."""
        if self._visit is None:
            return
        if self._begin_task is not None:
            self._begin_task.cancel()
            self._begin_task = None
        tx = self._tx
        if tx is not None:
            self.stop_transaction(reason, id_tag=tx.id_tag if reason == Reason.local else None)
        self._visit = None
        self.remote = None
        await sleep_simulated(self.options.unplug_delay_s, self.speed)
        if self.charging.state.car is not None:
            self.charging.update(self.now(), simulation.unplug)
        self.wake()

    # ============================================================ running
    async def run(self) -> None:
        """Run until `shutdown()` (or cancellation)."""
        self.spawn(self._physics_loop(), "physics")
        self.spawn(self.uplink.run(), "uplink")
        try:
            await self._done.wait()
        finally:
            self.closing = True
            await self.uplink.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self, flush_timeout_real_s: float = 5.0) -> None:
        """Stop a running transaction (reason Local), deliver the queue if online, stop."""
        if self._begin_task is not None:
            self._begin_task.cancel()
        tx = self._tx
        if tx is not None:
            self.stop_transaction(Reason.local, id_tag=tx.id_tag)
        self.closing = True
        deadline = time.monotonic() + flush_timeout_real_s
        while time.monotonic() < deadline:
            if not (self._queue.count(persistent=True) and self.uplink.accepted):
                break
            await asyncio.sleep(0.02)
        self.persist(with_queue=True)
        self._done.set()

    # ============================================================ views
    @property
    def online(self) -> bool:
        return self.uplink.accepted

    @property
    def state(self) -> ConnectorState:
        return self.charging.state

    def supply_currents_a(self) -> tuple[float, float, float]:
        return self.charging.supply_currents_a()

    def snapshot(self) -> StationSnapshot:
        now = self.advance()
        state = self.charging.state
        limit = self.charging.limit_at(now)
        reading = self.charging.reading()
        tx = self._tx
        car = state.car
        eta = None
        if car is not None and tx is not None:
            remaining = self.charging.seconds_until_idle()
            if car.soc >= car.target_soc:
                eta = now
            elif math.isfinite(remaining):
                eta = now + timedelta(seconds=remaining)
        visit = self._visit
        return StationSnapshot(
            station_id=self.id,
            status=state.status,
            online=self.uplink.accepted,
            limit_a=None if limit is None else limit.current_a,
            offered_a=state.offered_a,
            current_a=state.current_a,
            power_w=reading.power_w,
            soc=None if car is None else car.soc,
            target_soc=None if car is None else car.target_soc,
            session_energy_wh=0.0 if tx is None else state.energy_wh - tx.meter_start_wh,
            transaction_id=self.transaction_id,
            id_tag=None if visit is None else visit.id_tag,
            eta=eta,
            departure_at=None if visit is None else visit.departure_at,
            queued=len(self._queue),
        )
