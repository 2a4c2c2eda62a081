"""The command outbox: how the monitor and the CLI ask the CSMS to talk to a charger.

Anything outside the CSMS process writes a ``commands`` row; this worker claims pending
rows every ``poll_s`` (0.5 s), sends each as an OCPP call from its own task (never from
inside a handler: the ``ocpp`` library would deadlock until its timeout) and stores the
answer or the error.

A password never stays in the outbox: the answer arrives redacted (an AuthorizationKey a
charger reports, ``csms.ocpp16.protocol``), and when a command completes its payload is
redacted too (the key a ChangeConfiguration sent, ``Repository.complete_command``). A
ChangeConfiguration(AuthorizationKey) changes the password the charger must log in with
as its answer says (``csms.ocpp16.handlers.ChargePointSession.send_call``).

RemoteStartTransaction and RemoteStopTransaction to a charger whose boot is Pending wait
until it is Accepted (OCPP 1.6 section 4.2). The answers of ReserveNow,
CancelReservation, SendLocalList and GetLocalListVersion update the store
(``csms.answers``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from csms.answers import record_answer
from csms.auth import redact_secrets
from csms.domain import CommandRequest
from csms.errors import CallFailedError, GarageGridError
from csms.logs import scrub
from csms.ocpp16.server import CentralSystem
from csms.store.features import FeatureStore
from csms.store.repository import Repository
from csms.waiting import wait_event

log = logging.getLogger("csms.outbox")

# The central-system-initiated operations GarageGrid sends: all six OCPP 1.6 feature
# profiles (Core, Smart Charging, Remote Trigger, Local Auth List Management,
# Reservation, Firmware Management).
OUTBOX_ACTIONS = frozenset(
    {
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "Reset",
        "UnlockConnector",
        "ChangeAvailability",
        "ChangeConfiguration",
        "GetConfiguration",
        "TriggerMessage",
        "SetChargingProfile",
        "ClearChargingProfile",
        "GetCompositeSchedule",
        "ClearCache",
        "DataTransfer",
        "SendLocalList",
        "GetLocalListVersion",
        "ReserveNow",
        "CancelReservation",
        "UpdateFirmware",
        "GetDiagnostics",
    }
)
# OCPP 1.6 section 4.2: while its boot is Pending, a charger is configured, not used. These
# wait (status 'sending') until it is Accepted, at most HOLD_WHILE_PENDING_S real seconds.
HELD_WHILE_PENDING = frozenset({"RemoteStartTransaction", "RemoteStopTransaction"})
HOLD_WHILE_PENDING_S = 120.0


class OutboxWorker:
    def __init__(
        self,
        repository: Repository,
        central: CentralSystem,
        *,
        poll_s: float = 0.5,
        hold_while_pending_s: float = HOLD_WHILE_PENDING_S,
        alive_instances: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self._repo = repository
        self._features = FeatureStore(repository)
        self._central = central
        self._poll_s = poll_s
        self._hold_while_pending_s = hold_while_pending_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # Several instances on one database (csms.cluster): the live ones, whose commands
        # in flight are theirs to finish.
        self._alive_instances = alive_instances

    def wake(self) -> None:
        """Look for pending commands now (a command queued in this process, by the API)."""
        self._wake.set()

    async def run(self) -> None:
        alive = self._alive_instances() if self._alive_instances is not None else None
        failed = await self._repo.requeue_interrupted_commands(alive)
        if failed:
            log.warning("commands interrupted by a restart marked failed", extra={"count": failed})
        while True:
            # Cleared before the claim: a wake during the claim is seen by the wait below.
            self._wake.clear()
            try:
                for command in await self._repo.claim_pending_commands():
                    task = asyncio.create_task(self._execute(command))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except GarageGridError:
                log.exception("outbox poll failed; retrying")
            await wait_event(self._wake, self._poll_s)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _execute(self, command: CommandRequest) -> None:
        extra = {
            "cp_id": command.charge_point_id,
            "action": command.action,
            "command_id": command.id,
        }
        if command.action not in OUTBOX_ACTIONS:
            error = f"{command.action!r} is not an operation the CSMS can send"
            log.warning("command refused", extra=extra | {"error": error})
            await self._repo.complete_command(command.id, error=error)
            return
        cp_id, payload = command.charge_point_id, dict(command.payload)
        if (
            command.action in HELD_WHILE_PENDING
            and self._central.is_connected(cp_id)
            and not self._central.is_accepted(cp_id)
        ):
            log.info("command held: the charger's boot is Pending", extra=extra)
            if not await self._central.wait_accepted(cp_id, self._hold_while_pending_s):
                error = (
                    f"held while {cp_id}'s boot was Pending (OCPP 1.6 section 4.2); "
                    "it was not Accepted in time"
                )
                if not self._central.is_connected(cp_id):
                    error = f"charge point {cp_id!r} disconnected while its boot was Pending"
                log.warning("command failed", extra=extra | {"error": error})
                await self._repo.complete_command(command.id, error=error)
                return
        try:
            answer = await self._central.call(cp_id, command.action, payload)
        except GarageGridError as exc:
            log.warning("command failed", extra=extra | {"error": str(exc)})
            code = exc.code if isinstance(exc, CallFailedError) else None
            await record_answer(
                self._features, cp_id, command.action, payload, None, error_code=code
            )
            await self._repo.complete_command(command.id, error=str(exc))
            return
        except Exception as exc:
            # Never leave a row 'sending' for good (nor its payload unredacted).
            log.exception("command failed unexpectedly", extra=extra)
            await self._repo.complete_command(command.id, error=scrub(f"internal error: {exc!r}"))
            return
        log.info("command answered", extra=extra | {"answer": redact_secrets(answer)})
        await record_answer(self._features, cp_id, command.action, payload, answer)
        await self._repo.complete_command(command.id, response=answer)
