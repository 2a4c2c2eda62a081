"""The controller loop of `csms serve`.

Every tick (site setting, simulated seconds) and at once on events — a transaction
starts or stops, a connector changes status, a charger boots, or someone else changes
the settings, the building load or a resident's input (noticed within a second) — it
reads the store, runs the selected strategy and sends what changed as TxProfiles,
lowering before raising. Every limit sent is recorded with the charger's answer, and
residents get a notification when their limit is raised, lowered, paused or resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from csms import metrics
from csms.clock import Clock
from csms.controller.capabilities import read_capabilities
from csms.controller.headroom import fuse_headroom_a
from csms.controller.mirror import ChargerIdentity, ProfileMirror
from csms.controller.planning import (
    CHARGE_POINT_MAX_PROFILE_ID,
    IDLE_ROOM_GAIN_A,
    TX_DEFAULT_PROFILE_ID,
    TX_PROFILE_ID_BASE,
    TX_STACK_LEVEL,
    Change,
    ConnectorKey,
    Plan,
    Reading,
    Snapshot,
    StationState,
    build_plan,
    changes_to_send,
    draws_above_limit,
    floor_paused,
    idle_room_gain_a,
    notification_for,
    override_caps,
    pinned_a,
    safe_default_a,
    station_max_a,
)
from csms.domain import PHASES, ChargePointInfo, OpenSession, SiteConfig
from csms.errors import CallFailedError, ConfigError, GarageGridError
from csms.events import (
    ChargePointBooted,
    ChargePointDisconnected,
    ConnectorStatusChanged,
    Event,
    EventBus,
    MeterSampled,
    SettingsChanged,
    TransactionStarted,
    TransactionStopped,
)
from csms.fuse import RunningTx
from csms.ocpp16.server import CentralSystem
from csms.profiles import (
    ChargingProfilePurpose,
    ChargingRateUnit,
    ProfileStore,
    default_profile,
    profile_to_ocpp,
    tx_profile,
)
from csms.scheduler import LIVE_STRATEGIES, MIN_CURRENT_A, Allocation, allocate
from csms.store.repository import Repository
from csms.waiting import wait_event

log = logging.getLogger("csms.controller")

# How often other processes' changes (monitor, CLI) are looked for, in real seconds.
POLL_S = 1.0
# The shortest time between two periodic replans, in real seconds (accelerated clocks).
MIN_REAL_TICK_S = 0.5
# A charger whose measured current exceeds its accepted limit this many samples in a row,
# after this much simulated time to settle, is counted at its maximum from then on.
NONCOMPLIANT_SAMPLES = 3
SETTLE_S = 30.0
# A TxProfile rejected for a transaction the charger has not confirmed yet (its queued
# StopTransaction is still on the way, or its StartTransaction has not been resent) is a
# race of conforming chargers (OCPP 1.6 §3.7), not proof that it ignores profiles. The
# charger is marked unmanaged only after this many rejections of a transaction it was
# seen charging (a status, a MeterValues or a resent StartTransaction with that id).
REJECTIONS_TO_UNMANAGED = 3
# A first rejection is tried again after this many simulated seconds even unconfirmed.
RETRY_REJECTED_AFTER_S = 5.0
# Chargers whose default profiles are sent at the same time (a fuse change, a new plan).
DEFAULTS_IN_FLIGHT = 200
# States in which a connector's StatusNotification shows its transaction is running.
_RUNNING_STATUSES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})


@dataclass
class _Rejection:
    """TxProfiles a charger rejected for one transaction; held until it confirms it."""

    transaction_id: int
    count: int = 0
    confirmed: bool = False
    retried: bool = False


@dataclass
class _Sent:
    """The last limit a running transaction's charger accepted."""

    transaction_id: int
    limit_a: float
    at: datetime
    accepted: bool


class Controller:
    def __init__(
        self,
        repository: Repository,
        central: CentralSystem,
        events: EventBus,
        clock: Clock,
        *,
        ev_lookup: Mapping[str, tuple[float, float, int]] | None = None,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self._repo = repository
        # One site's controller among several (csms.controller.sites): which chargers are
        # its own; the others' calls and events are not its business. None: every charger.
        self._owns = owns
        self._central = central
        self._clock = clock
        self._events = events
        self._queue = events.subscribe()
        # Told of every charger this controller lets be Accepted (its fail-safe profiles
        # are in place): another instance holding the charger's connection (csms.cluster).
        self.ready_listener: Callable[[str], None] | None = None
        # What every charger holds, from every call sent to it (ours, the outbox's, a
        # manager's override) and its answer: the input of the fuse model (csms.fuse).
        self._mirror = ProfileMirror()
        self._mirror_dirty: set[str] = set()
        self._saving = asyncio.Lock()
        central.add_call_observer(self._observe_call)
        self._ev_lookup = dict(ev_lookup) if ev_lookup is not None else _catalogue()
        self._sent: dict[ConnectorKey, _Sent] = {}
        self._defaults_sent: dict[str, float] = {}
        self._defaults_in_force: dict[str, float] = {}
        self._retried: set[str] = set()  # see `_retry_once`
        # The last plan's `override_caps`: ChargePointMaxProfile limits below a station's
        # maximum that bring an override above what the site has left under the fuse.
        self._caps_wanted: dict[str, float] = {}
        self._ready: set[str] = set()
        self._preparing: set[str] = set()
        # Booted while a car may run there and its profiles unknown: the plan prepares it.
        self._deferred_boots: set[str] = set()
        # Chargers with a transaction in the last read of the open sessions, and the
        # transactions started since that read began (`_car_running`); before the first
        # read (`_restore`) any charger may have one.
        self._sessions_read = False
        self._running_read: frozenset[str] = frozenset()
        self._started_since_read: dict[str, set[int]] = {}
        self._readings: dict[ConnectorKey, Reading] = {}
        self._energy: dict[int, float] = {}
        self._soc: dict[int, float] = {}
        self._strikes: dict[ConnectorKey, int] = {}
        self._rejections: dict[ConnectorKey, _Rejection] = {}
        # A TxProfile whose answer never came may be in force or not: the highest limit
        # the charger may hold, until an answer settles it.
        self._uncertain: dict[ConnectorKey, float] = {}
        # The planning inputs others may change, as last read (Controller._probe_inputs).
        self._probe: tuple[object, ...] | None = None
        self._refused_strategy: str | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # The TxDefaultProfile limit of the last plan (what a booting charger gets).
        self.default_a: float | None = None
        self._last_snapshot: Snapshot | None = None

    def limit_to_site(self, repository: Repository, owns: Callable[[str], bool]) -> None:
        """From now on one site's controller among several (csms.controller.sites)."""
        self._repo, self._owns = repository, owns

    # ------------------------------------------------------------ running
    async def run(self) -> None:
        await self._restore()
        consumer = asyncio.create_task(self._consume_events(), name="controller-events")
        try:
            next_tick = 0.0
            while True:
                site = await self._safe(self._repo.site_config())
                tick_s = site.tick_s if site else 5.0
                # At high simulation speeds a 5 s tick would replan 20 times a real second;
                # events still trigger a replan at once.
                real_tick_s = max(MIN_REAL_TICK_S, tick_s / self._clock.speed)
                now = time.monotonic()
                due = now >= next_tick
                if not due and not self._wake.is_set():
                    # Someone else's change (CLI, monitor) is noticed by a cheap read of
                    # the planning inputs, not a whole snapshot every second.
                    probe = await self._safe(self._probe_inputs())
                    if probe is not None and probe != self._probe:
                        due = True
                if due or self._wake.is_set():
                    self._wake.clear()
                    started = time.perf_counter()
                    # Read before the plan's snapshot: a change in between plans again.
                    probe = await self._safe(self._probe_inputs())
                    if probe is not None:
                        self._probe = probe
                    try:
                        await self.plan_once()
                    except Exception:
                        # One bad plan must not stop load management: the chargers keep
                        # what they accepted, and the next tick plans again.
                        log.exception("plan failed; the next tick plans again")
                    metrics.TICK_DURATION.observe(time.perf_counter() - started)
                    next_tick = time.monotonic() + real_tick_s
                # Not asyncio.wait_for: see csms.waiting (a stop could hang).
                await wait_event(self._wake, min(POLL_S, max(0.05, next_tick - time.monotonic())))
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            for task in list(self._tasks):
                task.cancel()

    async def _probe_inputs(self) -> tuple[object, ...]:
        """`Repository.controller_inputs` and whether the building load is stale now (the
        worst case counts from then on: a replan within the poll second, as before)."""
        inputs = await self._repo.controller_inputs()
        site, building = inputs[0], inputs[1]
        stale = True
        if isinstance(site, SiteConfig) and isinstance(building, tuple):
            age_s = (self._clock.now() - building[0]).total_seconds()
            stale = age_s > site.building_load_max_age_s
        return (*inputs, stale)

    async def _safe(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except GarageGridError:
            log.exception("controller could not read the store")
            return None

    async def _restore(self) -> None:
        """After a restart: what each running charger last accepted stays in force, and
        the copy of every charger's profiles comes back from the store."""
        try:
            accepted = await self._repo.last_accepted_limits()
            saved = await self._repo.installed_profiles()
        except GarageGridError:
            log.exception("could not restore the last limits")
            return
        chargers: dict[str, Any] = {}
        document: dict[str, Any] = {}
        for cp_id, data in saved.items():
            if isinstance(data, dict) and isinstance(data.get("chargers"), dict):
                document = data
                chargers |= {k: v for k, v in data["chargers"].items() if k == cp_id}
        if chargers:
            try:
                self._mirror = ProfileMirror.from_json(
                    json.dumps({"format": document.get("format"), "chargers": chargers})
                )
            except GarageGridError:
                log.exception("stored charging profiles unreadable; counted as unknown")
        now = self._clock.now()
        for key, (transaction_id, limit) in accepted.items():
            self._sent[key] = _Sent(transaction_id, limit, now, True)
        try:
            await self._read_sessions()  # which chargers run a car (`_car_running`)
        except GarageGridError:
            log.exception("could not read the open sessions; the first plan reads them")

    def _observe_call(
        self, cp_id: str, action: str, payload: dict[str, Any], answer: dict[str, Any] | None
    ) -> None:
        if action not in ("SetChargingProfile", "ClearChargingProfile", "RemoteStartTransaction"):
            return
        if self._owns is not None and not self._owns(cp_id):
            return
        profile = payload.get("csChargingProfiles")
        running_tx = profile.get("transactionId") if isinstance(profile, dict) else None
        self._mirror.observe_call(
            cp_id,
            action,
            payload,
            answer,
            running_tx=running_tx if isinstance(running_tx, int) else None,
        )
        self._mirror_dirty.add(cp_id)
        if action != "SetChargingProfile" or not isinstance(profile, dict):
            self._wake.set()  # a clear or a remote start: plan with what is left
        elif profile.get("chargingProfileId") not in (
            CHARGE_POINT_MAX_PROFILE_ID,
            TX_DEFAULT_PROFILE_ID,
            TX_PROFILE_ID_BASE + int(payload.get("connectorId") or 0),
        ):
            self._wake.set()  # someone else's profile (an override): plan around it

    async def _save_mirror(self) -> None:
        """Persist the copy of the profiles of every charger it changed for, in one unit
        of work, one save at a time (only those chargers are serialised: a site-wide copy per
        charger was quadratic at a mass boot; in a reconnect storm 500 chargers stayed Pending
        for over ten minutes, scripts/bench_storm.py). A charger is unmarked before its copy
        is taken, so a change made while the save awaits the store marks it again."""
        async with self._saving:
            if not self._mirror_dirty:
                return
            dirty = sorted(self._mirror_dirty)
            self._mirror_dirty.difference_update(dirty)
            document = json.loads(self._mirror.to_json(only=dirty))
            profiles: dict[str, dict[str, Any] | None] = {}
            for cp_id in dirty:
                item = document["chargers"].get(cp_id)
                profiles[cp_id] = (
                    None
                    if item is None
                    else {"format": document["format"], "chargers": {cp_id: item}}
                )
            try:
                await self._repo.save_installed_profiles_many(profiles)
            except GarageGridError:
                log.exception("could not store chargers' profiles", extra={"cp_ids": dirty[:20]})
                # Saved again with the next change: what changed meanwhile is marked again.
                self._mirror_dirty.update(dirty)

    async def _consume_events(self) -> None:
        while True:
            self._take(await self._queue.get())

    def _take_arrived(self) -> None:
        """Handle the events that have arrived and not been handled yet (the boot gate
        decides on what the charger sent before its BootNotification)."""
        while True:
            try:
                event = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._take(event)

    def _take(self, event: Event) -> None:
        cp_id = getattr(event, "charge_point_id", None)
        if self._owns is not None and cp_id is not None and not self._owns(cp_id):
            return
        self._on_event(event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MeterSampled):
            self._on_meter(event)
            if event.transaction_id is not None:
                self._confirm((event.charge_point_id, event.connector_id), event.transaction_id)
            return
        if isinstance(event, SettingsChanged):
            # A whole-store controller (a single-site install) is site 1's.
            if event.site_id in (None, self._repo.site_id or 1):
                self._wake.set()
            return
        if isinstance(event, ChargePointDisconnected):
            # A charger that comes back may be another unit: prepared again at its boot
            # (the boot gate sends its fail-safe profiles once, before it is Accepted).
            self._ready.discard(event.charge_point_id)
            self._deferred_boots.discard(event.charge_point_id)
        if isinstance(event, TransactionStarted):
            self._confirm((event.charge_point_id, event.connector_id), event.transaction_id)
            self._started_since_read.setdefault(event.charge_point_id, set()).add(
                event.transaction_id
            )
        if isinstance(event, ConnectorStatusChanged) and event.status in _RUNNING_STATUSES:
            key = (event.charge_point_id, event.connector_id)
            rejection = self._rejections.get(key)
            if rejection is not None:
                self._confirm(key, rejection.transaction_id)
        if isinstance(event, TransactionStopped):
            self._started_since_read.get(event.charge_point_id, set()).discard(event.transaction_id)
            self._mirror.transaction_stopped(
                event.charge_point_id, event.connector_id, event.transaction_id
            )
            self._mirror_dirty.add(event.charge_point_id)
            for key in [
                k for k, r in self._rejections.items() if r.transaction_id == event.transaction_id
            ]:
                del self._rejections[key]
        if isinstance(
            event,
            TransactionStarted | TransactionStopped | ConnectorStatusChanged | ChargePointBooted,
        ):
            self._wake.set()

    def _on_meter(self, event: MeterSampled) -> None:
        key = (event.charge_point_id, event.connector_id)
        if event.current_import_a:
            drawn = tuple(event.current_import_a.get(p, 0.0) for p in PHASES)
            known = self._readings.get(key)
            # A queue replayed after an outage delivers old readings late: keep the newest.
            if (
                known is None
                or known.transaction_id != event.transaction_id
                or event.timestamp >= known.at
            ):
                self._readings[key] = Reading(event.transaction_id, event.timestamp, drawn)
            self._check_compliance(key, event.transaction_id, drawn, event.timestamp)
        if event.transaction_id is not None:
            if event.energy_wh is not None:
                self._energy[event.transaction_id] = event.energy_wh
            if event.soc_percent is not None:
                self._soc[event.transaction_id] = event.soc_percent / 100.0

    def _check_compliance(
        self,
        key: ConnectorKey,
        transaction_id: int | None,
        drawn: tuple[float, ...],
        at: datetime,
    ) -> None:
        sent = self._sent.get(key)
        if sent is None or not sent.accepted or (at - sent.at).total_seconds() < SETTLE_S:
            return
        if transaction_id is not None and transaction_id != sent.transaction_id:
            return  # another car's reading: says nothing about this limit
        if not draws_above_limit(drawn, sent.limit_a):
            self._strikes.pop(key, None)
            return
        self._strikes[key] = self._strikes.get(key, 0) + 1
        if self._strikes[key] == NONCOMPLIANT_SAMPLES:
            self._spawn(
                self._mark_unmanaged(
                    key[0],
                    f"Charger {key[0]} draws {max(drawn):.1f} A above its {sent.limit_a:g} A "
                    "limit; it is counted at its maximum until a manager checks it.",
                )
            )

    def _confirm(self, key: ConnectorKey, transaction_id: int) -> None:
        """The charger showed it runs this transaction: a held TxProfile is tried again."""
        rejection = self._rejections.get(key)
        held = rejection is not None and rejection.transaction_id == transaction_id
        if held and rejection is not None and not rejection.confirmed:
            rejection.confirmed = True
            self._wake.set()

    def boot_gate(self, cp_id: str, identity: ChargerIdentity | None = None) -> bool:
        """Whether a booting charger may be Accepted now.

        Not before its fail-safe profiles are in place: until then its BootNotification is
        answered Pending (OCPP 1.6 section 4.2 lets the central system configure a Pending
        charger) and the profiles are sent; the charger's next BootNotification is
        Accepted. So no car can start on a charger that has no limit at all.

        A charger that reconnects as the same unit (``identity``: what its BootNotification
        says) while the copy of its profiles certainly holds our fail-safe defaults is
        Accepted at once: profiles persist across reboots (section 3.13), and the fuse
        model counts what the copy holds; a changed default follows with the next plan,
        lowering first (issue 13 finding a).
        """
        if cp_id in self._ready:
            return True
        if (
            identity is not None
            and cp_id not in self._preparing
            and self._mirror.holds_defaults(
                cp_id,
                identity,
                {
                    ChargingProfilePurpose.ChargePointMaxProfile: CHARGE_POINT_MAX_PROFILE_ID,
                    ChargingProfilePurpose.TxDefaultProfile: TX_DEFAULT_PROFILE_ID,
                },
            )
        ):
            log.info(
                "charger reconnected with its fail-safe profiles in place: accepted at once",
                extra={"cp_id": cp_id},
            )
            self._mark_ready(cp_id)
            return True
        if cp_id in self._preparing:
            return False
        self._take_arrived()  # a StartTransaction just before this boot, say
        if self._mirror.store_for(cp_id) is None and self._car_running(cp_id):
            # Back mid-transaction with profiles we do not know: the clear lets its car
            # draw the charger's maximum, so the plan makes room for that first and
            # prepares it then (`plan_once`); Pending meanwhile.
            self._deferred_boots.add(cp_id)
            self._wake.set()
            return False
        self._preparing.add(cp_id)
        self._spawn(self._prepare(cp_id, identity))
        return False

    def _awaiting_clear(self, info: ChargePointInfo) -> bool:
        """Connected, nothing known of its profiles, and not prepared since it came: it is
        to be cleared (or is being cleared) before it gets our profiles. A charger that
        was prepared and cannot clear (NotImplemented) is not: it has our defaults."""
        return (
            info.connected
            and not info.unmanaged
            and info.id not in self._ready
            # OCPP 1.6 section 4.2 (the boot the gate deferred may not be stored yet)
            and (info.boot_status in ("Accepted", "Pending") or info.id in self._deferred_boots)
            and self._mirror.store_for(info.id) is None
        )

    def _car_running(self, cp_id: str) -> bool:
        """Whether a transaction may run on the charger as far as the controller knows: in
        the last read of the open sessions, or started since; before the first read (a
        controller just started: a restart, a site taken over) any may."""
        if not self._sessions_read:
            return True
        return cp_id in self._running_read or bool(self._started_since_read.get(cp_id))

    async def _read_sessions(self) -> list[OpenSession]:
        """The open sessions, and what `_car_running` knows from them."""
        started_before = self._started_since_read
        self._started_since_read = {}  # a start from now on may not be in this read
        try:
            sessions = await self._repo.open_sessions()
        except BaseException:
            for cp_id, started in started_before.items():
                self._started_since_read.setdefault(cp_id, set()).update(started)
            raise
        self._running_read = frozenset(s.charge_point_id for s in sessions)
        self._sessions_read = True
        return sessions

    async def _prepare(self, cp_id: str, identity: ChargerIdentity | None = None) -> None:
        """A booting charger, answered Pending: read what it can do (rate unit, stack
        levels, phase rotation: OCPP 1.6 §9.4 keys), then install its fail-safe profiles
        in a form it accepts."""
        try:
            await asyncio.sleep(0)  # the Pending answer goes out first
            info = await self._repo.get_charge_point(cp_id)
            if identity is not None:
                # What this boot says: the store may not have recorded it yet.
                self._mirror.charger_booted(
                    cp_id, vendor=identity.vendor, model=identity.model, serial_number=None
                )
            elif info is not None:
                self._mirror.charger_booted(
                    cp_id, vendor=info.vendor, model=info.model, serial_number=None
                )
            if self._mirror.store_for(cp_id) is None:
                # A charger we know nothing of may hold profiles from before (another
                # central system, a lost copy) at any stack level: clear them all so that
                # what it holds is what we send (OCPP 1.6 §5.5; answers Accepted or Unknown).
                with contextlib.suppress(GarageGridError):
                    await self._central.call(cp_id, "ClearChargingProfile", {})
            capabilities = await read_capabilities(self._central.call, cp_id)
            if capabilities is not None:
                try:
                    changes = await self._repo.set_capabilities(
                        cp_id, capabilities, self._clock.now()
                    )
                except GarageGridError:
                    log.exception("charger capabilities not stored", extra={"cp_id": cp_id})
                else:
                    if changes:
                        log.info(
                            "charger capabilities applied",
                            extra={
                                "cp_id": cp_id,
                                "changes": ", ".join(
                                    f"{key}={new}" for key, (_old, new) in sorted(changes.items())
                                ),
                            },
                        )
            await self._send_defaults(cp_id, force=True)
            await self._save_mirror()
        finally:
            self._preparing.discard(cp_id)

    def _mark_ready(self, cp_id: str) -> None:
        self._ready.add(cp_id)
        if self.ready_listener is not None:
            try:
                self.ready_listener(cp_id)
            except Exception:
                log.exception("ready listener failed", extra={"cp_id": cp_id})

    async def close(self) -> None:
        """After `run` was cancelled: the copy of the chargers' profiles is saved, and
        this controller hears no more calls or events (its site is led elsewhere now)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._save_mirror()
        self._central.remove_call_observer(self._observe_call)
        self._events.unsubscribe(self._queue)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def request_plan(self) -> None:
        self._wake.set()

    def fuse_headroom_a(self) -> tuple[float, float, float] | None:
        """Per phase, what the fuse has left in the worst case at the last plan (metrics);
        None before the first plan."""
        if self._last_snapshot is None:
            return None
        return fuse_headroom_a(self._last_snapshot, self._mirror, self._ev_lookup)

    # ------------------------------------------------------------ planning
    async def _snapshot(self) -> Snapshot:
        site = await self._repo.site_config()
        stations = await self._repo.list_charge_points()
        connectors = await self._repo.connectors_by_charge_point()
        sessions = await self._read_sessions()
        self._forget_finished(sessions)
        building = await self._repo.latest_building_load()
        energy, soc = self._energy, self._soc
        missing = [s.transaction_id for s in sessions if s.transaction_id not in energy]
        if missing:
            db_energy, db_soc = await self._repo.latest_readings(missing)
            energy = energy | db_energy
            soc = db_soc | soc
        infos: dict[str, ChargePointInfo] = {info.id: info for info in stations}
        now = self._clock.now()
        running: dict[str, dict[int, RunningTx]] = {}
        for session in sessions:
            running.setdefault(session.charge_point_id, {})[session.connector_id] = RunningTx(
                session.transaction_id, session.started_at
            )
        pinned: dict[ConnectorKey, float] = {}
        for index, info in enumerate(stations):
            await _breathe(index)
            args = (
                info,
                connectors.get(info.id, (1,)),
                self._mirror.store_for(info.id),
                running.get(info.id, {}),
                now,
                site.voltage_v,
            )
            # What a foreign profile asks for under the station's own maximum (a cap of
            # ours taken away: `override_caps` decides on caps), but never less than under
            # the ChargePointMaxProfile installed, which may be higher (the fuse went down).
            installed = pinned_a(*args)
            for key, amps in pinned_a(*args, station_max_a=station_max_a(info, site)).items():
                pinned[key] = max(amps, installed.get(key, amps))
            if self._awaiting_clear(info):
                # Its profiles are unknown and the clear is coming: a running car there may
                # then draw the charger's maximum (as the fuse model counts it already).
                for connector_id in running.get(info.id, {}):
                    pinned[(info.id, connector_id)] = info.max_current_a
        return Snapshot(
            now=now,
            site=site,
            building_load_a=building[1] if building else None,
            building_load_at=building[0] if building else None,
            stations=[StationState(info, connectors.get(info.id, (1,))) for info in stations],
            sessions=sessions,
            delivered_wh={
                s.transaction_id: energy[s.transaction_id] - s.meter_start_wh
                for s in sessions
                if s.transaction_id in energy
            },
            soc=soc,
            readings=dict(self._readings),
            defaults_in_force=dict(self._defaults_in_force),
            pinned_a=pinned,
            held_a={
                key: self._in_force_a(key, infos[key[0]])
                for key, rejection in self._rejections.items()
                if not rejection.confirmed and key[0] in infos
            },
            last_sent_a={k: v.limit_a for k, v in self._sent.items()},
            limit_since={k: v.at for k, v in self._sent.items()},
        )

    async def plan_once(self, snapshot: Snapshot | None = None) -> dict[ConnectorKey, float]:
        """Read (unless given a fresh snapshot), allocate, send. Returns the limits decided
        (also on partial failures)."""
        if snapshot is None:
            try:
                snapshot = await self._snapshot()
            except GarageGridError:
                log.exception("controller could not read the store; keeping current limits")
                return {}
        caps_lifted = await self._cap_overrides(snapshot)
        held: dict[str, float] = {}
        for index, station in enumerate(snapshot.stations):
            await _breathe(index)
            cap = self._caps_held(station.info.id, station.info, snapshot.site)
            if cap is not None:
                held[station.info.id] = cap
        if held:
            # A cap of 0 A is a cap too (an override that must pause).
            snapshot = replace(
                snapshot,
                pinned_a={
                    key: min(amps, held.get(key[0], amps))
                    for key, amps in snapshot.pinned_a.items()
                },
            )
        self._last_snapshot = snapshot
        try:
            # Pure and CPU-bound (a few hundred ms at thousands of chargers): in a worker
            # thread, so that the event loop keeps answering chargers meanwhile.
            plan, allocation, limits = await asyncio.to_thread(self._decide_limits, snapshot)
        except ConfigError:
            log.exception("scheduler refused its input; keeping current limits")
            return {}
        if allocation.diagnostics.fallback:
            log.warning(
                "strategy fell back",
                extra={
                    "strategy": snapshot.site.strategy,
                    "fallback": allocation.diagnostics.fallback,
                    "reason": allocation.diagnostics.fallback_reason,
                },
            )
        stations: dict[str, ChargePointInfo] = {s.info.id: s.info for s in snapshot.stations}
        # The default is lowered before any TxProfile and raised only after the lowered
        # TxProfiles were accepted, like a TxProfile: a raised default is what a car that
        # arrives right now draws, and this plan counted on it only with the new limits.
        default_a = safe_default_a(plan, limits)
        self.default_a = default_a
        default_to: dict[str, bool] = {}  # station -> the new default is a raise
        to_prepare: list[str] = []
        for cp_id in {k[0] for k in plan.session_by_key} | set(stations):
            info = stations.get(cp_id)
            sent = self._defaults_sent.get(cp_id)
            if info is None or not info.connected or info.unmanaged or cp_id in self._preparing:
                continue
            if self._awaiting_clear(info):
                # Connected without this controller's boot gate (it booted while nobody led
                # the site, or reconnected without a BootNotification) and nothing is known
                # of its profiles: prepared as at a boot (cleared first), never given our
                # defaults over profiles that may outweigh them. Only once this plan's
                # lowerings are in: a running car there is counted at the charger's
                # maximum (`_snapshot`), which is what it may draw once cleared.
                to_prepare.append(cp_id)
                continue
            if sent != default_a:
                default_to[cp_id] = sent is not None and default_a > sent
        defaults_lowered = await self._send_defaults_to(
            sorted(c for c, raise_ in default_to.items() if not raise_),
            default_a,
            stations,
            snapshot.site,
        )
        await self._tuck_under_overrides(snapshot, stations)
        lowering, raising = changes_to_send(
            limits,
            {k: v.limit_a for k, v in self._sent.items() if k not in self._uncertain},
            plan.session_by_key,
            {key: self._in_force_a(key, stations[key[0]]) for key in plan.session_by_key},
        )
        ok = await self._apply(lowering, stations, plan, snapshot, allocation.strategy)
        with_car = {s.charge_point_id for s in snapshot.sessions}
        for cp_id in to_prepare:
            if cp_id in with_car and not ok:
                continue  # its car may draw the charger's maximum once cleared: room first
            if cp_id in self._caps_wanted:
                # The fuse needs a cap on it now (others cannot make room yet): a clear
                # would take the cap away too. Prepared once the plan needs none.
                continue
            self._deferred_boots.discard(cp_id)
            self._preparing.add(cp_id)
            self._spawn(self._prepare(cp_id))
        if ok and defaults_lowered:
            # Raises, like the TxProfiles': in the stored copy before they go out.
            await self._send_defaults_to(
                sorted(c for c, raise_ in default_to.items() if raise_),
                default_a,
                stations,
                snapshot.site,
                announce=True,
            )
            for cp_id, cap in caps_lifted.items():
                await self._send_cap(cp_id, stations[cp_id], cap, snapshot, announce=True)
            await self._apply(raising, stations, plan, snapshot, allocation.strategy, announce=True)
        elif raising or caps_lifted or any(default_to.values()):
            log.warning(
                "raising postponed: a lowered charger did not accept",
                extra={"postponed": len(raising) + sum(default_to.values())},
            )
            self._retry_once(_POSTPONED)
        if ok and defaults_lowered:
            self._retried.discard(_POSTPONED)
        await self._save_mirror()
        return limits

    async def _cap_overrides(self, snapshot: Snapshot) -> dict[str, float | None]:
        """Send the ChargePointMaxProfile caps `override_caps` asks for where they lower
        what a station may draw (at once: the fuse first); return the caps to raise or
        lift (None: back to the station's maximum), which wait for the tick's lowerings
        like any raise."""
        wanted: dict[str, float] = {}
        if snapshot.pinned_a:  # no override, no cap wanted (the common case: no plan built)
            try:
                lean = build_plan(snapshot, self._ev_lookup, default_a=0.0)
            except ConfigError:
                return {}
            wanted = override_caps(lean, snapshot)
        self._caps_wanted = wanted
        raises: dict[str, float | None] = {}
        for index, info in enumerate(station.info for station in snapshot.stations):
            await _breathe(index)
            if not info.connected:
                continue
            cap = wanted.get(info.id)
            caps = self._caps_installed(info.id, info, snapshot.site)
            held = _highest_cap(caps)
            if cap is not None and (held is None or cap < held - 1e-9):
                await self._send_cap(info.id, info, cap, snapshot)
            elif any(c is not None and (cap is None or c < cap - 1e-9) for c in caps):
                raises[info.id] = cap
        return raises

    def _caps_installed(
        self, cp_id: str, info: ChargePointInfo, site: SiteConfig
    ) -> list[float | None]:
        """Per store the charger may hold (answers lost: more than one), our cap in force:
        its ChargePointMaxProfile where below the station's maximum, else None."""
        top = station_max_a(info, site)
        store = self._mirror.store_for(cp_id)
        stores = [] if store is None else [store, *self._mirror.alternatives_for(cp_id)]
        caps: list[float | None] = []
        for one in stores:
            cap = _installed_cap_a(one)
            caps.append(cap if cap is not None and cap < top - 1e-9 else None)
        return caps

    def _caps_held(self, cp_id: str, info: ChargePointInfo, site: SiteConfig) -> float | None:
        """The cap to count: the highest the charger may hold, None if it may hold none."""
        return _highest_cap(self._caps_installed(cp_id, info, site))

    async def _send_cap(
        self,
        cp_id: str,
        info: ChargePointInfo,
        cap: float | None,
        snapshot: Snapshot,
        *,
        announce: bool = False,
    ) -> None:
        """Our ChargePointMaxProfile at ``cap`` (None: the station's normal maximum);
        ``announce`` for a lift (see `_set_on_charge_point`)."""
        limit = station_max_a(info, snapshot.site) if cap is None else cap
        profile = default_profile(
            ChargingProfilePurpose.ChargePointMaxProfile,
            limit,
            profile_id=CHARGE_POINT_MAX_PROFILE_ID,
            number_phases=info.phases,
            rate_unit=ChargingRateUnit(info.rate_unit),
            voltage_v=snapshot.site.voltage_v,
        )
        extra = {"cp_id": cp_id, "limit_a": limit}
        try:
            status = await self._set_on_charge_point(
                cp_id, profile_to_ocpp(profile), announce=announce
            )
        except GarageGridError as exc:
            # The copy of its profiles (csms.controller.mirror) knows what it may hold.
            log.warning("station cap not sent", extra=extra | {"error": str(exc)})
            self._retry_once(cp_id)
            return
        if status != "Accepted":
            log.warning("station cap refused", extra=extra | {"status": status})
            return
        self._retried.discard(cp_id)
        if cap is None:
            log.info("station cap lifted", extra=extra)
            return
        log.warning(
            "override above what the site has left: station capped",
            extra=extra,
        )
        with contextlib.suppress(GarageGridError):
            await self._repo.add_notification(
                "warning",
                f"An override on {cp_id} asks for more than the fuse has left: the station "
                f"is capped at {limit:g} A until it fits again.",
                charge_point_id=cp_id,
            )

    async def _tuck_under_overrides(
        self, snapshot: Snapshot, stations: Mapping[str, ChargePointInfo]
    ) -> None:
        """Keep our own TxProfile under a manager's override no higher than the override.

        The connector is reserved at the override's limit; when the manager resumes (the
        override is cleared), the car falls back to our TxProfile at once, before the CSMS
        can react: so ours must not be above what the plan counted.
        """
        sessions: dict[ConnectorKey, OpenSession] = {
            (s.charge_point_id, s.connector_id): s for s in snapshot.sessions
        }
        for key, pinned in sorted(snapshot.pinned_a.items()):
            session = sessions.get(key)
            sent = self._sent.get(key)
            info = stations.get(key[0])
            if session is None or sent is None or info is None:
                continue
            if sent.transaction_id != session.transaction_id:
                continue
            # 0 or at least the minimum (IEC 61851-1): below it, pause.
            target = pinned if pinned >= MIN_CURRENT_A else 0.0
            if sent.limit_a <= target + 1e-9:
                continue
            change = Change(key, session.transaction_id, sent.limit_a, target, sent.limit_a)
            await self._send_limit(
                change, info, snapshot, self._limit_payload(change, info, snapshot)
            )

    def _decide_limits(
        self, snapshot: Snapshot
    ) -> tuple[Plan, Allocation, dict[ConnectorKey, float]]:
        """The plan and the limits for a snapshot (pure but for the log)."""
        plan, allocation, limits = self._decide(build_plan(snapshot, self._ev_lookup), snapshot)
        # No idle amp: while cars wait for room, idle connectors' TxDefaultProfile drops
        # to 0 A (a car that plugs in there gets its own TxProfile at the plan its
        # StartTransaction triggers) and comes back once the cars gain nothing by it.
        running = Counter(key[0] for key in plan.session_by_key)
        if plan.default_a > 0 and any(
            s.info.connected and len(s.connector_ids) > running[s.info.id]
            for s in snapshot.stations
        ):
            lean = self._decide(build_plan(snapshot, self._ev_lookup, default_a=0.0), snapshot)
            wanting = [d.connector for d in lean[0].demands if d.energy_needed_wh > 0]
            gain = idle_room_gain_a(limits, lean[2], wanting)
            lean_now = self.default_a == 0.0
            if gain >= IDLE_ROOM_GAIN_A or (lean_now and gain > 0.0):
                plan, allocation, limits = lean
        return plan, allocation, limits

    def _decide(
        self, plan: Plan, snapshot: Snapshot
    ) -> tuple[Plan, Allocation, dict[ConnectorKey, float]]:
        """Allocate; then, while the default does not fit beside the limits, hold paused
        cars at the default and plan the others around them."""
        allocation = self._allocate(plan, snapshot)
        limits = {k: float(v) for k, v in allocation.limits_a.items()}
        # A paused car's connector counts at the default anyway (the next car there
        # starts under it): if that does not fit, such cars get the default and the
        # others are planned around it, as long as the default itself is safe.
        while plan.default_a > 0 and safe_default_a(plan, limits) < plan.default_a:
            paused = [c.key for c in plan.connectors if limits.get(c.key, 0.0) < plan.default_a]
            if not paused:
                break
            plan = floor_paused(plan, paused)
            allocation = self._allocate(plan, snapshot)
            limits = {k: float(v) for k, v in allocation.limits_a.items()}
        limits |= dict.fromkeys(plan.floored, plan.default_a)
        return plan, allocation, limits

    def _allocate(self, plan: Plan, snapshot: Snapshot) -> Allocation:
        strategy = snapshot.site.strategy
        if strategy not in LIVE_STRATEGIES:
            # `thesis` is the benchmark's baseline and breaks the fuse; a database set to it
            # (before it was refused) runs the default strategy instead.
            if strategy != self._refused_strategy:
                log.warning(
                    "strategy not for live control; using llf",
                    extra={"strategy": strategy, "live_strategies": ",".join(LIVE_STRATEGIES)},
                )
                self._refused_strategy = strategy
            strategy = "llf"
        return allocate(
            strategy,
            plan.site,
            plan.connectors,
            plan.demands,
            snapshot.now,
            tick_s=snapshot.site.tick_s,
            live=True,
        )

    def _in_force_a(self, key: ConnectorKey, info: ChargePointInfo) -> float:
        """What a running transaction's charger may let it draw now: its accepted TxProfile,
        else its TxDefaultProfile (its maximum when none is known), or more while an answer
        is missing."""
        sent = self._sent.get(key)
        base = (
            sent.limit_a
            if sent is not None
            else self._defaults_in_force.get(key[0], info.max_current_a)
        )
        return max(base, self._uncertain.get(key, 0.0))

    def _forget_finished(self, sessions: Sequence[OpenSession]) -> None:
        # Keyed by connector, but only valid for its transaction: a new car on the same
        # connector starts under the TxDefaultProfile, not under the last car's limit.
        open_tx: dict[ConnectorKey, int] = {
            (s.charge_point_id, s.connector_id): s.transaction_id for s in sessions
        }
        for key in [k for k, v in self._sent.items() if open_tx.get(k) != v.transaction_id]:
            del self._sent[key]
            self._strikes.pop(key, None)
        for key in [k for k in self._uncertain if k not in open_tx]:
            del self._uncertain[key]
        for key in [k for k, r in self._rejections.items() if open_tx.get(k) != r.transaction_id]:
            del self._rejections[key]
        for key in [
            k
            for k, r in self._readings.items()
            if r.transaction_id is not None and open_tx.get(k) != r.transaction_id
        ]:
            del self._readings[key]
        open_ids = set(open_tx.values())
        for cache in (self._energy, self._soc):
            for tx in [t for t in cache if t not in open_ids]:
                del cache[tx]

    async def _apply(
        self,
        changes: list[Change],
        stations: Mapping[str, ChargePointInfo],
        plan: Plan,
        snapshot: Snapshot,
        strategy: str,
        *,
        announce: bool = False,
    ) -> bool:
        """Send each change's TxProfile. ``announce`` (raises): first, the copy of the
        chargers' profiles is stored as if every raise had taken effect (uncertain until
        its answer): an instance that takes the site over after a crash in between counts
        the higher limit, never a limit lower than a charger may hold."""
        if not changes:
            return True
        payloads = [self._limit_payload(c, stations[c.key[0]], snapshot) for c in changes]
        before: list[tuple[object, object] | None] = [None] * len(changes)
        if announce:
            for i, (change, payload) in enumerate(zip(changes, payloads, strict=True)):
                before[i] = self._announce(change.key[0], payload, change.transaction_id)
            await self._save_mirror()
        results = await asyncio.gather(
            *(
                self._send_limit(c, stations[c.key[0]], snapshot, payload, before=b)
                for c, payload, b in zip(changes, payloads, before, strict=True)
            )
        )
        rows = []
        for change, (answer, _accepted) in zip(changes, results, strict=True):
            rows.append(
                {
                    "decided_at": snapshot.now,
                    "charge_point_id": change.key[0],
                    "connector_id": change.key[1],
                    "transaction_id": change.transaction_id,
                    "strategy": strategy,
                    "limit_a": change.limit_a,
                    "sent": True,
                    "answer": answer,
                }
            )
        try:
            await self._repo.record_allocations(rows)
        except GarageGridError:
            log.exception("could not record allocations")
        for change, (_answer, accepted) in zip(changes, results, strict=True):
            if not accepted:
                continue
            note = notification_for(change.previous_a, change.limit_a)
            session = plan.session_by_key[change.key]
            if note is not None:
                with contextlib.suppress(GarageGridError):
                    await self._repo.add_notification(
                        note[0],
                        note[1],
                        charge_point_id=change.key[0],
                        transaction_id=change.transaction_id,
                        id_tag=session.id_tag,
                    )
        return all(accepted for _answer, accepted in results)

    def _announce(
        self, cp_id: str, payload: dict[str, Any], running_tx: int | None = None
    ) -> tuple[object, object]:
        """Put a SetChargingProfile about to be sent into the copy of the charger's
        profiles as possibly in force (stored with the next `_save_mirror`, which the
        caller awaits before sending); returns what `_settle` needs to take it back."""
        checkpoint = self._mirror.checkpoint(cp_id)
        self._mirror.observe_call(cp_id, "SetChargingProfile", payload, None, running_tx=running_tx)
        self._mirror_dirty.add(cp_id)
        return checkpoint, self._mirror.checkpoint(cp_id)

    def _settle(self, cp_id: str, status: str, before: tuple[object, object] | None) -> None:
        """Refused after an announcement: the charger kept what it had, as the copy said
        before (if nothing else was learnt of it meanwhile; else it stays counted high)."""
        if (
            status != "Accepted"
            and before is not None
            and self._mirror.restore(cp_id, before[0], if_still=before[1])
        ):
            self._mirror_dirty.add(cp_id)

    def _limit_payload(
        self, change: Change, info: ChargePointInfo, snapshot: Snapshot
    ) -> dict[str, Any]:
        profile = tx_profile(
            TX_PROFILE_ID_BASE + change.key[1],
            0 if info.only_stack_level_0 else TX_STACK_LEVEL,
            change.transaction_id,
            change.limit_a,
            number_phases=info.phases,
            rate_unit=ChargingRateUnit(info.rate_unit),
            voltage_v=snapshot.site.voltage_v,
        )
        return {"connectorId": change.key[1], "csChargingProfiles": profile_to_ocpp(profile)}

    async def _send_limit(
        self,
        change: Change,
        info: ChargePointInfo,
        snapshot: Snapshot,
        payload: dict[str, Any],
        *,
        before: tuple[object, object] | None = None,
    ) -> tuple[str, bool]:
        try:
            answer = await self._central.call(info.id, "SetChargingProfile", payload)
        except GarageGridError as exc:
            # No answer (timeout, closed link) or a CALLERROR: the charger may have installed
            # the profile or not. Until an answer settles it, it may draw the higher of the
            # two, and the limit is sent again on the next plan.
            self._uncertain[change.key] = max(change.limit_a, change.in_force_a)
            log.warning(
                "SetChargingProfile failed",
                extra={
                    "cp_id": info.id,
                    "connector_id": change.key[1],
                    "transaction_id": change.transaction_id,
                    "error": str(exc),
                },
            )
            code = exc.code if isinstance(exc, CallFailedError) else None
            metrics.count_limit(code or type(exc).__name__)
            return (code or type(exc).__name__), False
        status = str(answer.get("status"))
        metrics.count_limit(status)
        accepted = status == "Accepted"
        self._settle(info.id, status, before)
        self._uncertain.pop(change.key, None)
        if accepted:
            self._sent[change.key] = _Sent(
                change.transaction_id, change.limit_a, snapshot.now, True
            )
            self._strikes.pop(change.key, None)
            self._rejections.pop(change.key, None)
        elif await self._still_running(change.transaction_id):
            await self._on_rejected(change, info, status)
        # else: the transaction ended while its limit was on the way; a charger rightly
        # rejects a TxProfile without a matching transaction (OCPP 1.6 section 3.13.4).
        log.info(
            "limit sent",
            extra={
                "cp_id": info.id,
                "connector_id": change.key[1],
                "transaction_id": change.transaction_id,
                "limit_a": change.limit_a,
                "previous_a": change.previous_a,
                "answer": status,
            },
        )
        return status, accepted

    async def _on_rejected(self, change: Change, info: ChargePointInfo, status: str) -> None:
        """Hold the connector at what it has until the charger confirms the transaction;
        mark the charger unmanaged only after repeated rejections of a confirmed one."""
        rejection = self._rejections.get(change.key)
        if rejection is None or rejection.transaction_id != change.transaction_id:
            rejection = self._rejections[change.key] = _Rejection(change.transaction_id)
        if rejection.confirmed:
            rejection.count += 1
        rejection.confirmed = False
        if not rejection.retried:
            # The limit of a transaction that has just started can reach the charger a few
            # milliseconds before the charger has taken in its own transaction id (its
            # StatusNotification may even arrive first): try once more shortly, without
            # waiting for its first MeterValues (one meter interval of a car at 0 A).
            rejection.retried = True
            self._spawn(self._retry_soon(change.key, change.transaction_id))
        log.info(
            "TxProfile rejected; held until the charger confirms the transaction",
            extra={
                "cp_id": info.id,
                "connector_id": change.key[1],
                "transaction_id": change.transaction_id,
                "rejections": rejection.count,
            },
        )
        if rejection.count >= REJECTIONS_TO_UNMANAGED:
            del self._rejections[change.key]
            await self._mark_unmanaged(
                info.id,
                f"Charger {info.id} rejected its limit {rejection.count} times ({status}) for "
                f"transaction {change.transaction_id}, which it was seen charging; it is "
                "counted at its maximum until a manager checks it.",
            )

    async def _retry_soon(self, key: ConnectorKey, transaction_id: int) -> None:
        await self._clock.sleep(RETRY_REJECTED_AFTER_S)
        self._confirm(key, transaction_id)

    async def _still_running(self, transaction_id: int) -> bool:
        try:
            row = await self._repo.get_transaction(transaction_id)
        except GarageGridError:
            return True
        return row is not None and row["stopped_at"] is None

    async def _send_defaults_to(
        self,
        cp_ids: Sequence[str],
        default_a: float,
        stations: Mapping[str, ChargePointInfo],
        site: SiteConfig,
        *,
        announce: bool = False,
    ) -> bool:
        """`_send_defaults` to many chargers at once (each charger's calls in order, up to
        `DEFAULTS_IN_FLIGHT` chargers at a time: one after the other took ~6 ms a charger,
        6 s for a fuse change at 1,000 chargers); whether all of them accepted."""
        if not cp_ids:
            return True
        turns = asyncio.Semaphore(DEFAULTS_IN_FLIGHT)

        async def one(cp_id: str) -> bool:
            async with turns:
                return await self._send_defaults(
                    cp_id, default_a=default_a, info=stations[cp_id], site=site, announce=announce
                )

        results = await asyncio.gather(*(one(cp_id) for cp_id in cp_ids))
        return all(results)

    async def _send_defaults(
        self,
        cp_id: str,
        *,
        default_a: float | None = None,
        info: ChargePointInfo | None = None,
        force: bool = False,
        site: SiteConfig | None = None,
        announce: bool = False,
    ) -> bool:
        """ChargePointMaxProfile (station max) and the fail-safe TxDefaultProfile.

        Returns whether the charger now holds this default. Only an Accepted answer
        records it: a refusal, a CALLERROR or a lost answer leaves the last accepted
        default in force (a lowering that may not have happened holds back the raises that
        counted on it) and the default is sent again on the next plan.
        """
        try:
            info = info or await self._repo.get_charge_point(cp_id)
            if info is None or info.boot_status not in ("Accepted", "Pending"):
                # OCPP 1.6 section 4.2: nothing is sent to a charger that was refused or
                # has not booted; while Pending, the CSMS may configure it.
                return False
            if default_a is None:
                default_a = self.default_a if self.default_a is not None else 0.0
            if not force and self._defaults_sent.get(cp_id) == default_a:
                return True
            site = site or await self._repo.site_config()
            unit = ChargingRateUnit(info.rate_unit)
            # Never lifts a cap on the side: only `_cap_overrides` does, in order.
            max_a = min(
                station_max_a(info, site),
                self._caps_wanted.get(cp_id, math.inf),
                *(c for c in self._caps_installed(cp_id, info, site) if c is not None),
            )
            profiles = [
                default_profile(
                    ChargingProfilePurpose.ChargePointMaxProfile,
                    max_a,
                    profile_id=CHARGE_POINT_MAX_PROFILE_ID,
                    number_phases=info.phases,
                    rate_unit=unit,
                    voltage_v=site.voltage_v,
                ),
                default_profile(
                    ChargingProfilePurpose.TxDefaultProfile,
                    default_a,
                    profile_id=TX_DEFAULT_PROFILE_ID,
                    number_phases=info.phases,
                    rate_unit=unit,
                    voltage_v=site.voltage_v,
                ),
            ]
            statuses = [
                await self._set_on_charge_point(cp_id, profile_to_ocpp(profile), announce=announce)
                for profile in profiles
            ]
        except GarageGridError as exc:
            # No answer: the charger may hold the new default or the old one. Count the
            # higher of the two until an answer settles it.
            if default_a is not None:
                held = self._defaults_in_force.get(cp_id)
                self._defaults_in_force[cp_id] = max(default_a, held if held is not None else 0)
            log.warning("default profiles not sent", extra={"cp_id": cp_id, "error": str(exc)})
            self._retry_once(cp_id)
            return False
        all_ok = all(status == "Accepted" for status in statuses)
        if all_ok:
            self._retried.discard(cp_id)
            self._defaults_sent[cp_id] = default_a
            self._defaults_in_force[cp_id] = default_a
            self._mark_ready(cp_id)
            if info.unmanaged and "refused its fail-safe" in (info.unmanaged_reason or ""):
                # It refused its profiles before (a wrong rate unit, say) and accepts them
                # now: it is managed again.
                with contextlib.suppress(GarageGridError):
                    await self._repo.set_unmanaged(cp_id, False)
                    log.info("charger managed again", extra={"cp_id": cp_id})
                    self._wake.set()
        elif force or self._defaults_sent.get(cp_id) is None:
            # A charger that refuses its fail-safe profiles at boot has no limit we know of:
            # it is counted at its maximum, and booted all the same (a car may charge,
            # counted so). A refusal of a later change leaves its last accepted default in
            # force, and the change is tried again on the next plan.
            self._defaults_sent[cp_id] = default_a  # not asked again on every tick
            self._defaults_in_force.pop(cp_id, None)
            self._mark_ready(cp_id)
            await self._mark_unmanaged(
                cp_id,
                f"Charger {cp_id} refused its fail-safe default profiles "
                f"({', '.join(statuses)}); it is counted at its maximum until a manager "
                "checks it.",
            )
        log.info(
            "default profiles sent",
            extra={
                "cp_id": cp_id,
                "tx_default_a": default_a,
                "accepted": all_ok,
                "answers": ",".join(statuses),
            },
        )
        return all_ok

    def _retry_once(self, cp_id: str) -> None:
        """A charger's profiles went unanswered: plan again at once rather than on the next
        tick (a lowering that may not have happened leaves the fuse at stake), but only
        once until it answers again, so a charger that never answers sets the pace of
        the ticks, not of a loop."""
        if cp_id not in self._retried:
            self._retried.add(cp_id)
            self._wake.set()

    async def _set_on_charge_point(
        self, cp_id: str, profile: dict[str, Any], *, announce: bool = False
    ) -> str:
        """Set a charge-point-wide profile on connector 0, or per connector if 0 is refused.

        ``announce`` (a raise): each call is in the stored copy of the charger's profiles
        before it goes out (see `_apply`)."""
        status = await self._set_profile(cp_id, 0, profile, announce=announce)
        if status == "Accepted" or profile["chargingProfilePurpose"] == "ChargePointMaxProfile":
            return status
        connectors = (await self._repo.connectors_by_charge_point()).get(cp_id, (1,))
        statuses = [
            await self._set_profile(cp_id, connector_id, profile, announce=announce)
            for connector_id in connectors
        ]
        return "Accepted" if all(s == "Accepted" for s in statuses) else "Rejected"

    async def _set_profile(
        self, cp_id: str, connector_id: int, profile: dict[str, Any], *, announce: bool
    ) -> str:
        payload = {"connectorId": connector_id, "csChargingProfiles": profile}
        before = None
        if announce:
            before = self._announce(cp_id, payload)
            await self._save_mirror()
        # No answer (raises): the announcement stays, the charger may hold it.
        answer = await self._central.call(cp_id, "SetChargingProfile", payload)
        status = str(answer.get("status"))
        self._settle(cp_id, status, before)
        return status

    async def _mark_unmanaged(self, cp_id: str, message: str) -> None:
        log.warning("charger counted at its maximum", extra={"cp_id": cp_id, "why": message})
        try:
            await self._repo.set_unmanaged(cp_id, True, message)
            await self._repo.add_notification("warning", message, charge_point_id=cp_id)
        except GarageGridError:
            log.exception("could not record an unmanaged charger", extra={"cp_id": cp_id})
        self._wake.set()


# Loops over every station let the event loop answer chargers after this many (the
# controller's tick held it for a quarter of a second at 5,000 stations).
STATIONS_PER_TURN = 500


async def _breathe(index: int) -> None:
    if index % STATIONS_PER_TURN == STATIONS_PER_TURN - 1:
        await asyncio.sleep(0)


def _highest_cap(caps: Sequence[float | None]) -> float | None:
    """Of the caps a charger may hold (one per possible store), the one to count."""
    if not caps or any(c is None for c in caps):
        return None
    return max(c for c in caps if c is not None)


#: `Controller._retried` key of a plan whose raises waited for a lowering.
_POSTPONED = "\x00postponed"


def _installed_cap_a(store: ProfileStore | None) -> float | None:
    """The limit in A of our ChargePointMaxProfile in a charger's copy, if it holds one
    we sent in A with a single period (what `Controller._send_cap` and the boot send)."""
    if store is None:
        return None
    for profile in store.profiles_on(0):
        if (
            profile.profile_id == CHARGE_POINT_MAX_PROFILE_ID
            and profile.purpose is ChargingProfilePurpose.ChargePointMaxProfile
            and profile.schedule.rate_unit is ChargingRateUnit.A
            and len(profile.schedule.periods) == 1
        ):
            return profile.schedule.periods[0].limit
    return None


def _catalogue() -> dict[str, tuple[float, float, int]]:
    from csms.ev import CATALOGUE

    return {k: (v.battery_kwh, v.max_current_a, v.phases) for k, v in CATALOGUE.items()}
