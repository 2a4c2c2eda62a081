"""OCPP-J 1.6 framing on top of the ``ocpp`` package's ChargePoint.

The library's own ``route_message`` stays silent on frames it cannot parse, answers schema
errors in OCPP 2.0.1 terms and processes a resent message id twice (FIELD-NOTES). This
subclass takes over framing, validation, the "accepted before anything else" rule and
duplicate detection, then hands well-formed calls to the library's handler dispatch.

Outgoing calls are its own too: one outstanding CALL per connection (OCPP-J 4.1.1), an
answer matched to its call by message id, a call that gets no answer fails after the
response timeout (the next one proceeds), a call in flight fails at once when the
connection closes, and a late answer is dropped without logging its payload. An answer
never carries a password beyond this layer (``csms.auth.redact_secrets``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType
from ocpp.v16 import ChargePoint as _LibChargePoint
from ocpp.v16.enums import Action
from websockets.exceptions import ConnectionClosed

from csms import metrics
from csms.auth import redact_secrets
from csms.errors import CallFailedError, NotConnectedError
from csms.logs import remember_secret
from csms.ocpp16.errors import (
    FormationViolation,
    NotImplementedAction,
    NotSupportedAction,
    ProtocolError,
    SecurityError,
)
from csms.ocpp16.validation import validate_request, validate_response

log = logging.getLogger("csms.ocpp")

# OCPP-J 1.6 section 4.1.3: the unique id is at most 36 characters.
MAX_MESSAGE_ID_LEN = 36
# How many answered message ids a connection remembers to spot resends.
DUPLICATE_WINDOW = 256
KNOWN_ACTIONS = frozenset(a.value for a in Action)

#: A handler that takes the CALL's payload as it came (camelCase, validated) and returns
#: the CALLRESULT's payload (camelCase): no conversions by the ``ocpp`` package.
DirectHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class AnswerUnknownError(CallFailedError):
    """A CALL went out but no valid answer came back (no answer within the timeout, the
    connection closed, an answer that breaks the schema): the charger may or may not have
    acted on it. ``code`` is "Timeout", "ConnectionClosed" or the schema error's code."""


class OcppConnection(_LibChargePoint):
    """One charge point's connection, speaking OCPP-J 1.6 strictly."""

    def __init__(
        self,
        cp_id: str,
        connection: Any,
        *,
        is_accepted: Callable[[], bool],
        response_timeout: float = 30.0,
        allowed_before_accepted: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout, logger=log)
        self._is_accepted = is_accepted
        # Actions a charger not yet accepted may send all the same (what the central
        # system asked for with TriggerMessage while it was Pending, section 4.2).
        self._allowed_before_accepted = allowed_before_accepted
        self._answered: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._current: dict[str, str] = {}
        # Outgoing calls: one at a time, each waiting for the answer with its message id.
        self._outgoing = asyncio.Lock()
        self._awaiting: dict[str, asyncio.Future[CallResult | CallError]] = {}
        # Actions on the hot path, handled without the library's dispatch (its snake_case
        # conversions, signature inspection and dataclass round trip cost more than the
        # handler itself for a MeterValues).
        self.direct_handlers: dict[str, DirectHandler] = {}
        self._closed_waiter: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- incoming
    async def start(self) -> None:
        try:
            while True:
                message = await self._connection.recv()
                await self.route_message(message)
        finally:
            if self._closed_waiter is not None:
                self._closed_waiter.cancel()

    async def route_message(self, raw_msg: str | bytes) -> None:
        if isinstance(raw_msg, bytes):
            # OCPP-J uses text frames only (section 3.2).
            await self._send_error("-1", FormationViolation("binary frames are not OCPP-J"))
            return
        try:
            frame = json.loads(raw_msg)
        except (ValueError, RecursionError):
            # ValueError: not JSON (JSONDecodeError), or an integer literal of more than
            # 4300 digits (CPython's int conversion limit; found by tests/test_edge_fuzz.py:
            # it used to end the session with 1011). RecursionError: nested too deep.
            log.warning(
                "frame is not JSON",
                extra={"cp_id": self.id, "direction": "in", "frame": raw_msg[:200]},
            )
            await self._send_error(
                "-1", FormationViolation("message is not valid JSON or cannot be read")
            )
            return
        if not isinstance(frame, list) or not frame:
            await self._send_error("-1", ProtocolError("an OCPP-J message is a non-empty array"))
            return
        message_type = frame[0]
        message_id = frame[1] if len(frame) > 1 and isinstance(frame[1], str) else None
        if message_type == MessageType.Call:
            await self._route_call(frame, message_id)
        elif message_type in (MessageType.CallResult, MessageType.CallError):
            self._route_response(frame, message_id)
        else:
            await self._send_error(
                message_id or "-1", ProtocolError(f"unknown message type id {message_type!r}")
            )

    async def _route_call(self, frame: list[Any], message_id: str | None) -> None:
        if message_id is None or len(message_id) > MAX_MESSAGE_ID_LEN:
            await self._send_error(
                "-1", ProtocolError("message id must be a string of at most 36 characters")
            )
            return
        if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            await self._send_error(
                message_id, ProtocolError("a CALL is [2, messageId, action, {payload}]")
            )
            return
        action, payload = frame[2], frame[3]
        metrics.count_message(action, "in")
        direct = self.direct_handlers.get(action)
        # A direct (hot path) call gets one line at INFO, when answered (_handle_direct).
        log.log(
            logging.DEBUG if direct is not None else logging.INFO,
            "received CALL",
            extra={"cp_id": self.id, "direction": "in", "action": action, "message_id": message_id},
        )
        fingerprint = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        previous = self._answered.get(message_id)
        if previous is not None and previous[0] == fingerprint:
            # A resend (same id, same content): answer as before, process nothing twice.
            log.info(
                "duplicate CALL answered from cache",
                extra={"cp_id": self.id, "action": action, "message_id": message_id},
            )
            await self._connection.send(previous[1])
            return
        try:
            if action not in KNOWN_ACTIONS:
                raise NotImplementedAction(f"{action!r} is not an OCPP 1.6 action")
            if action not in self.route_map or "_on_action" not in self.route_map[action]:
                raise NotSupportedAction(f"{action} is not accepted by this central system")
            if (
                action != Action.boot_notification
                and not self._is_accepted()
                and not (
                    self._allowed_before_accepted is not None
                    and self._allowed_before_accepted(action)
                )
            ):
                raise SecurityError(
                    f"{action} before the charge point was accepted by a BootNotification"
                )
            validate_request(action, payload)
        except OCPPError as error:
            await self._send_error(message_id, error, action=action)
            return
        if direct is not None:
            await self._handle_direct(direct, message_id, action, payload, fingerprint)
            return
        self._current[message_id] = fingerprint
        call = Call(message_id, action, payload)
        try:
            await self._handle_call(call)
        finally:
            self._current.pop(message_id, None)

    async def _handle_direct(
        self,
        handler: DirectHandler,
        message_id: str,
        action: str,
        payload: dict[str, Any],
        fingerprint: str,
    ) -> None:
        try:
            answer = await handler(payload)
        except Exception as error:
            # As the library answers a failing handler: its OCPP error, else InternalError.
            log.exception(
                "handler failed",
                extra={"cp_id": self.id, "action": action, "message_id": message_id},
            )
            call = Call(message_id, action, payload)
            await self._send(call.create_call_error(error).to_json())
            return
        message = json.dumps([MessageType.CallResult, message_id, answer], separators=(",", ":"))
        log.info(
            "CALL answered",
            extra={
                "cp_id": self.id,
                "direction": "out",
                "action": action,
                "message_id": message_id,
            },
        )
        self._remember_answer(message_id, fingerprint, message)
        await self._connection.send(message)

    def _remember_answer(self, message_id: str, fingerprint: str, message: str) -> None:
        self._answered[message_id] = (fingerprint, message)
        while len(self._answered) > DUPLICATE_WINDOW:
            self._answered.popitem(last=False)

    def _route_response(self, frame: list[Any], message_id: str | None) -> None:
        if message_id is None:
            log.warning("response without a message id dropped", extra={"cp_id": self.id})
            return
        response: CallResult | CallError
        if frame[0] == MessageType.CallResult and len(frame) == 3:
            # DEBUG: the caller logs "call answered" (with the action and the time taken).
            log.debug(
                "received CALLRESULT",
                extra={"cp_id": self.id, "direction": "in", "message_id": message_id},
            )
            response = CallResult(message_id, frame[2])
        elif frame[0] == MessageType.CallError and len(frame) >= 4:
            metrics.count_call_error(frame[2], "in")
            log.warning(
                "received CALLERROR",
                extra={
                    "cp_id": self.id,
                    "direction": "in",
                    "message_id": message_id,
                    "error_code": frame[2],
                    "description": frame[3] if len(frame) > 3 else "",
                },
            )
            details = frame[4] if len(frame) > 4 and isinstance(frame[4], dict) else {}
            response = CallError(message_id, frame[2], frame[3], details)
        else:
            log.warning(
                "malformed response dropped", extra={"cp_id": self.id, "message_id": message_id}
            )
            return
        waiting = self._awaiting.get(message_id)
        if waiting is None or waiting.done():
            # Late (its call timed out) or never asked for; the payload is not logged: it
            # may be a GetConfiguration answer with a password in it.
            log.warning(
                "answer to no outstanding call dropped",
                extra={"cp_id": self.id, "message_id": message_id},
            )
            return
        waiting.set_result(response)

    async def _send_error(self, message_id: str, error: OCPPError, *, action: str = "") -> None:
        metrics.count_call_error(error.code, "out")
        log.warning(
            "sending CALLERROR",
            extra={
                "cp_id": self.id,
                "direction": "out",
                "action": action,
                "message_id": message_id,
                "error_code": error.code,
                "description": error.description,
            },
        )
        frame = json.dumps(
            [MessageType.CallError, message_id, error.code, error.description, error.details or {}],
            separators=(",", ":"),
            default=str,
        )
        await self._connection.send(frame)

    async def _send(self, message: str) -> None:
        # Only CALLRESULTs and CALLERRORs of handled calls come through here.
        try:
            frame = json.loads(message)
        except json.JSONDecodeError:
            frame = []
        if len(frame) >= 2 and frame[0] in (MessageType.CallResult, MessageType.CallError):
            message_id = frame[1]
            if frame[0] == MessageType.CallError:
                metrics.count_call_error(frame[2], "out")
                log.warning(
                    "sending CALLERROR",
                    extra={
                        "cp_id": self.id,
                        "direction": "out",
                        "message_id": message_id,
                        "error_code": frame[2],
                        "description": frame[3],
                    },
                )
            else:
                log.info(
                    "sending CALLRESULT",
                    extra={"cp_id": self.id, "direction": "out", "message_id": message_id},
                )
            fingerprint = self._current.get(message_id)
            if fingerprint is not None and frame[0] == MessageType.CallResult:
                self._remember_answer(message_id, fingerprint, message)
        await self._connection.send(message)

    # ---------------------------------------------------------------- outgoing
    async def send_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL with a camelCase OCPP payload; return the camelCase CALLRESULT payload.

        Raises CallFailedError on a CALLERROR, a timeout or an invalid answer.
        """
        from ocpp.v16 import call as call_payloads

        if action not in KNOWN_ACTIONS or not hasattr(call_payloads, action):
            raise CallFailedError(f"{action!r} is not an OCPP 1.6 central-system action")
        try:
            validate_request(action, payload)
        except OCPPError as exc:
            raise CallFailedError(
                f"{action} payload is invalid: {exc.description}", code=exc.code
            ) from exc
        message_id = str(uuid.uuid4())
        call = Call(message_id, action, payload)
        async with self._outgoing:
            started = time.monotonic()
            log.info(
                "sending CALL",
                extra={
                    "cp_id": self.id,
                    "direction": "out",
                    "action": action,
                    "message_id": message_id,
                },
            )
            answer: asyncio.Future[CallResult | CallError] = (
                asyncio.get_running_loop().create_future()
            )
            self._awaiting[message_id] = answer
            metrics.count_message(action, "out")
            try:
                try:
                    await self._connection.send(call.to_json())
                except ConnectionClosed as exc:
                    raise NotConnectedError(
                        f"charge point {self.id!r} closed its connection; {action} not sent"
                    ) from exc
                response = await self._answer_or_close(action, answer)
            except AnswerUnknownError as exc:
                metrics.count_call_error(exc.code, "in")
                raise
            finally:
                self._awaiting.pop(message_id, None)
        elapsed_ms = (time.monotonic() - started) * 1000
        metrics.observe_call(action, elapsed_ms / 1000)
        if isinstance(response, CallError):
            raise CallFailedError(
                f"{action}: charge point answered {response.error_code}: "
                f"{response.error_description}",
                code=str(response.error_code),
            )
        result: dict[str, Any] = response.payload if isinstance(response.payload, dict) else {}
        # AuthorizationKey is write-only (security whitepaper), yet some firmwares report
        # it: it goes here, before any caller, observer, log or table sees the answer.
        found: list[str] = []
        result = redact_secrets(result, found)
        for secret in found:
            remember_secret(secret)
        try:
            validate_response(action, result)
        except OCPPError as exc:
            raise AnswerUnknownError(
                f"{action}: invalid answer: {exc.description}", code=exc.code
            ) from exc
        log.info(
            "call answered",
            extra={
                "cp_id": self.id,
                "action": action,
                "message_id": message_id,
                "elapsed_ms": round(elapsed_ms, 1),
            },
        )
        return result

    async def _answer_or_close(
        self, action: str, answer: asyncio.Future[CallResult | CallError]
    ) -> CallResult | CallError:
        """The answer; AnswerUnknownError after the timeout or as soon as the connection
        closes (a silent charger never holds up another one: each has its own session)."""
        # One waiter on the connection's end for all its calls, not a task per call.
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.ensure_future(self._connection.wait_closed())
        closed = self._closed_waiter
        await asyncio.wait(
            (answer, closed),
            timeout=self._response_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if answer.done():
            return answer.result()
        if closed.done():
            raise AnswerUnknownError(
                f"{action}: the connection closed before the charge point answered",
                code="ConnectionClosed",
            )
        raise AnswerUnknownError(
            f"{action}: no answer within {self._response_timeout:g} s", code="Timeout"
        )
