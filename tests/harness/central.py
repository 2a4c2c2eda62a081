"""The central system's side of the harness: a fake CentralSystem, the real store and the
real Controller.

`FakeCentralSystem` offers what `csms.ocpp16.server.CentralSystem` offers the controller
and the outbox: ``async call(cp_id, action, payload) -> dict`` (NotConnectedError, or
CallFailedError for an invalid payload, a timeout or a CALLERROR, as `send_call` raises
them), ``add_call_observer(fn)`` (``fn(cp_id, action, payload, answer)`` after every call,
``answer`` None when it failed) and ``boot_gate``. Each call goes to its `ModelCharger`;
right after the charger applied or refused a single profile the garage's fuse is checked.

`CsmsUnderTest` is the real Repository on a SQLite file, the real EventBus and the real
Controller, built as `csms/app.py` builds them. Its ``connect``/``boot``/``status``/
``start_transaction``/``stop_transaction``/``meter_values`` do the store writes of
`csms/ocpp16/handlers.py` (and `server.py` on connect) and publish the same events; the
controller gets each event through ``_on_event`` as ``_consume_events`` would hand it on,
and ``react()`` plans the way its loop does (``plan_once``, again at once while it asked
for it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call_payloads

from csms.controller.service import Controller
from csms.errors import CallFailedError, GarageGridError, NotConnectedError
from csms.events import (
    ChargePointBooted,
    ChargePointConnected,
    ConnectorStatusChanged,
    Event,
    EventBus,
    TransactionStarted,
    TransactionStopped,
)
from csms.ocpp16.handlers import sampled_values, summarise_samples
from csms.ocpp16.protocol import KNOWN_ACTIONS

try:
    from csms.ocpp16.protocol import AnswerUnknownError
except ImportError:  # a protocol that does not tell a lost answer from a CALLERROR yet
    AnswerUnknownError = CallFailedError  # type: ignore[misc,assignment]
from csms.ocpp16.validation import validate_request, validate_response
from csms.store import migrate
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.harness.chargers import (
    FixedClock,
    Garage,
    ManualClock,
    UnsupportedActionError,
    profile_limits_a,
)

log = logging.getLogger("tests.harness")

CallObserver = Callable[[str, str, dict[str, Any], dict[str, Any] | None], None]
FAULTS = ("timeout", "lost_answer", "callerror")
RESPONSE_TIMEOUT_S = 30.0


def describe_call(cp_id: str, action: str, payload: dict[str, Any]) -> str:
    if action != "SetChargingProfile":
        return f"{cp_id} {action} {payload}"
    profile = payload.get("csChargingProfiles", {})
    limits = "/".join(f"{a:g}" for a in profile_limits_a(payload))
    tx = profile.get("transactionId")
    return (
        f"{cp_id} SetChargingProfile connector {payload.get('connectorId')} "
        f"{profile.get('chargingProfilePurpose')} id {profile.get('chargingProfileId')} "
        f"level {profile.get('stackLevel')}"
        + (f" tx {tx}" if tx is not None else "")
        + f": {limits} A"
    )


class FakeCentralSystem:
    """What the controller and the outbox see of the central system."""

    def __init__(self, garage: Garage) -> None:
        self.garage = garage
        # Set by load management, as csms/app.py does with the real one.
        self.boot_gate: Callable[[str], bool] | None = None
        self._call_observers: list[CallObserver] = []
        self.faults_fired = 0
        # Calls the harness itself sends (the outbox) are never given an injected fault.
        self.outbox_sending = False

    def add_call_observer(self, observer: CallObserver) -> None:
        self._call_observers.append(observer)

    def connected_ids(self) -> list[str]:
        return sorted(cp for cp, ch in self.garage.chargers.items() if ch.connected)

    def is_connected(self, cp_id: str) -> bool:
        charger = self.garage.chargers.get(cp_id)
        return charger is not None and charger.connected

    async def call(self, cp_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] | None = None
        try:
            answer = await self._call(cp_id, action, payload)
            return answer
        finally:
            self._tell_observers(cp_id, action, payload, answer)

    def _tell_observers(
        self, cp_id: str, action: str, payload: dict[str, Any], answer: dict[str, Any] | None
    ) -> None:
        for observer in self._call_observers:
            try:
                observer(cp_id, action, payload, answer)
            except Exception:
                # As the real CentralSystem does: an observer never breaks a call.
                log.exception("call observer failed", extra={"cp_id": cp_id, "action": action})

    async def _call(self, cp_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        charger = self.garage.chargers.get(cp_id)
        if charger is None or not charger.connected:
            raise NotConnectedError(f"charge point {cp_id!r} is not connected")
        if action not in KNOWN_ACTIONS or not hasattr(call_payloads, action):
            raise CallFailedError(f"{action!r} is not an OCPP 1.6 central-system action")
        try:
            validate_request(action, payload)
        except OCPPError as exc:
            raise CallFailedError(
                f"{action} payload is invalid: {exc.description}", code=exc.code
            ) from exc
        where = describe_call(cp_id, action, payload)
        self.garage.check_sent(cp_id, action, payload, where)
        await asyncio.sleep(0)  # on the wire: other tasks run meanwhile
        fault = None
        if action == "SetChargingProfile" and charger.faults and not self.outbox_sending:
            fault = charger.faults.popleft()
            self.faults_fired += 1
        answer: dict[str, Any] = {}
        if fault in (None, "lost_answer"):
            try:
                answer = charger.handle(action, payload, self.garage.clock.now())
            except UnsupportedActionError:
                raise CallFailedError(
                    f"{action}: charge point answered NotImplemented: the model charger "
                    "does not implement it",
                    code="NotImplemented",
                ) from None
            self.garage.check(f"{where} -> {answer.get('status', 'answered')}")
        if fault == "callerror":
            raise CallFailedError(
                f"{action}: charge point answered InternalError: injected by the harness",
                code="InternalError",
            )
        if fault is not None:  # "timeout" (request lost) or "lost_answer" (installed)
            raise AnswerUnknownError(
                f"{action}: no answer within {RESPONSE_TIMEOUT_S:g} s", code="Timeout"
            )
        try:
            validate_response(action, answer)
        except OCPPError as exc:
            raise CallFailedError(
                f"{action}: invalid answer: {exc.description}", code=exc.code
            ) from exc
        if action == "SetChargingProfile":
            self.garage.record_answer(cp_id, payload, answer)
        return answer


async def settle(rounds: int = 200) -> None:
    """Run every other task of this loop to its end (the controller's spawned sends)."""
    me = asyncio.current_task()
    for _ in range(rounds):
        pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not pending:
            return
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
    raise AssertionError("the controller keeps spawning tasks")


class CsmsUnderTest:
    """The real store and controller; the OCPP layer's store writes and events by hand."""

    def __init__(self, db_url: str, clock: ManualClock, garage: Garage) -> None:
        self.db_url = db_url
        self.clock = clock
        self.garage = garage
        self.central = FakeCentralSystem(garage)
        self._engine: Any = None
        self.repository: Repository
        self.events: EventBus
        self.controller: Controller
        self._queue: asyncio.Queue[Event]

    async def start(self) -> None:
        """What CsmsApp.__init__ and start() do, and what Controller.run() does first."""
        self._engine = create_engine(self.db_url)
        await migrate.upgrade(self._engine)
        self.repository = Repository(create_sessionmaker(self._engine), self.clock)
        self.events = EventBus()
        self.controller = Controller(self.repository, self.central, self.events, self.clock)  # type: ignore[arg-type]
        self.central.boot_gate = self.controller.boot_gate
        # The queue the controller subscribed to in its constructor (its _consume_events
        # reads it); our own subscription if it has none any more.
        queue = getattr(self.controller, "_queue", None)
        self._queue = queue if queue is not None else self.events.subscribe()
        await self.repository.mark_all_disconnected()
        await self.repository.site_config()
        restore = getattr(self.controller, "_restore", None)
        if restore is not None:
            await restore()

    async def stop(self) -> None:
        try:
            await settle()
        finally:
            if self._engine is not None:
                await self._engine.dispose()
                self._engine = None

    # ------------------------------------------------------------ controller
    def pump(self) -> None:
        """Hand the controller every published event, as its _consume_events does."""
        while not self._queue.empty():
            self.controller._on_event(self._queue.get_nowait())

    async def react(self, replans: int = 3) -> None:
        """What the controller's loop does after events: plan now, and again at once as
        long as it asked for that (a postponed raise, an unmanaged charger)."""
        for attempt in range(1 + replans):
            self.pump()
            await settle()
            wake = getattr(self.controller, "_wake", None)
            if attempt > 0 and (wake is None or not wake.is_set()):
                break
            if wake is not None:
                wake.clear()
            await self.controller.plan_once()
        self.pump()
        await settle()

    # -------------------------------------------- what the OCPP layer does
    async def connect(self, cp_id: str) -> None:
        """server.CentralSystem._handle: the WebSocket is open."""
        await self.repository.set_connected(cp_id, True)
        self.events.publish(ChargePointConnected(cp_id))

    async def boot(self, cp_id: str) -> str:
        gate = self.central.boot_gate
        status = "Accepted" if gate is None or gate(cp_id) else "Pending"
        await self.repository.record_boot(
            cp_id, status, vendor="GarageGrid harness", model="ModelCharger"
        )
        if status == "Accepted":
            self.events.publish(ChargePointBooted(cp_id))
        return status

    async def status(self, cp_id: str, connector_id: int, status: str, at: datetime) -> None:
        await self.repository.record_status(cp_id, connector_id, status, "NoError", timestamp=at)
        self.events.publish(ConnectorStatusChanged(cp_id, connector_id, status, "NoError"))

    async def start_transaction(
        self, cp_id: str, connector_id: int, id_tag: str, meter_start_wh: int, at: datetime
    ) -> int:
        result = await self.repository.start_transaction(
            cp_id, connector_id, id_tag, meter_start_wh, at, None
        )
        if not result.duplicate:
            self.events.publish(TransactionStarted(cp_id, connector_id, result.transaction_id))
        return int(result.transaction_id)

    async def stop_transaction(
        self, cp_id: str, transaction_id: int, meter_stop_wh: int, at: datetime
    ) -> None:
        _info, orphan = await self.repository.stop_transaction(
            cp_id, transaction_id, meter_stop_wh, at, reason="EVDisconnected"
        )
        if not orphan:
            self.events.publish(TransactionStopped(cp_id, None, transaction_id))

    async def meter_values(
        self,
        cp_id: str,
        connector_id: int,
        transaction_id: int | None,
        meter_value: list[dict[str, Any]],
    ) -> None:
        """`meter_value` as the ocpp library hands it to the handler (snake_case).

        Samples the store flags as implausible are left out of the event, as the handler
        of a store that flags them does."""
        samples = sampled_values(meter_value)
        flags = await self.repository.add_meter_values(cp_id, connector_id, transaction_id, samples)
        # A flagged (implausible) sample is stored, but nothing plans with it.
        plausible = (
            [s for s, flag in zip(samples, flags, strict=True) if flag is None]
            if isinstance(flags, list)
            else samples
        )
        summary = summarise_samples(cp_id, connector_id, transaction_id, plausible)
        if summary is not None:
            self.events.publish(summary)

    # -------------------------------------------------- other processes
    async def building_load(
        self, values: tuple[float, float, float], measured_at: datetime
    ) -> None:
        """A reading as `csms site load` writes it, from a process whose clock read
        `measured_at` (an old stamp: a reading that arrives stale)."""
        writer = Repository(self.repository.sessionmaker, FixedClock(measured_at))
        await writer.record_building_load(*values, source="harness")

    async def outbox(self, cp_id: str, action: str, payload: dict[str, Any]) -> None:
        """A monitor command: a row in the outbox, sent as csms.outbox.OutboxWorker does."""
        await self.repository.enqueue_command(cp_id, action, payload, requested_by="monitor")
        for command in await self.repository.claim_pending_commands():
            self.central.outbox_sending = True
            try:
                answer = await self.central.call(
                    command.charge_point_id, command.action, dict(command.payload)
                )
            except GarageGridError as exc:
                await self.repository.complete_command(command.id, error=str(exc))
                continue
            finally:
                self.central.outbox_sending = False
            await self.repository.complete_command(command.id, response=answer)
