"""Handlers of charge-point-initiated OCPP 1.6 messages (Core profile and friends).

Each handler translates OCPP into a repository call and a domain event; the business rules
live in the repository, the controller and the scheduler. Everything a CALLRESULT
confirms is committed before the handler returns.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cryptography import x509
from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo as OcppIdTagInfo
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    CertificateSignedStatus,
    ConfigurationStatus,
    DataTransferStatus,
    GenericStatus,
    RegistrationStatus,
)

from csms.auth import authorization_key_change
from csms.charging_needs import CHARGING_NEEDS, VENDOR_ID, parse_charging_needs
from csms.clock import Clock
from csms.controller.mirror import ChargerIdentity
from csms.domain import IdTagInfo, SampledValue
from csms.errors import CallFailedError, ChargePointError, ConfigError
from csms.events import (
    ChargePointBooted,
    ConnectorStatusChanged,
    EventBus,
    MeterSampled,
    TransactionStarted,
    TransactionStopped,
)
from csms.logs import remember_secret, scrub
from csms.ocpp16.errors import PropertyConstraintViolation
from csms.ocpp16.protocol import AnswerUnknownError, OcppConnection
from csms.ocpp16.validation import parse_timestamp
from csms.pki import CertificateRequestError, SiteCA, read_csr
from csms.store.features import FeatureStore
from csms.store.meter_writer import MeterWriter
from csms.store.repository import Repository

log = logging.getLogger("csms.ocpp")

# Vendors whose DataTransfer messages GarageGrid understands (csms.charging_needs); any
# other vendor id gets UnknownVendorId, as OCPP 1.6 section 4.3 prescribes.
KNOWN_VENDORS: frozenset[str] = frozenset({VENDOR_ID})
# A heartbeat refreshes the charge point's last_seen_at in the database at most this often
# (real seconds); every other message refreshes it anyway.
TOUCH_EVERY_S = 30.0
# While Pending, the charger boots again after this many seconds (its own clock).
PENDING_RETRY_S = 5


def _id_tag_info(info: IdTagInfo) -> OcppIdTagInfo:
    return OcppIdTagInfo(
        status=AuthorizationStatus(info.status.value),
        expiry_date=info.expiry_date.isoformat() if info.expiry_date else None,
        parent_id_tag=info.parent_id_tag,
    )


def sampled_values(
    meter_values: Sequence[dict[str, Any]], *, key: str = "sampled_value"
) -> list[SampledValue]:
    """Flatten OCPP meterValue entries into SampledValues (``key``: "sampled_value" once
    the library made them snake_case, "sampledValue" as they came)."""
    out: list[SampledValue] = []
    for entry in meter_values:
        timestamp = parse_timestamp(entry["timestamp"])
        for sv in entry.get(key, []):
            out.append(
                SampledValue(
                    timestamp=timestamp,
                    value=str(sv["value"]),
                    measurand=sv.get("measurand"),
                    phase=sv.get("phase"),
                    unit=sv.get("unit"),
                    context=sv.get("context"),
                    location=sv.get("location"),
                )
            )
    return out


def summarise_samples(
    cp_id: str, connector_id: int, transaction_id: int | None, samples: Sequence[SampledValue]
) -> MeterSampled | None:
    """The latest per-phase current, offered current, power, energy and SoC of a batch."""
    from csms.meter import normalise

    if not samples:
        return None
    latest = max(s.timestamp for s in samples)
    current: dict[str, float] = {}
    offered = power = energy = soc = None
    for s in samples:
        if s.timestamp != latest:
            continue
        norm = normalise(s.value, s.measurand, s.unit)
        if norm.value is None:
            continue
        measurand = s.measurand or "Energy.Active.Import.Register"
        if measurand == "Current.Import":
            phase = (s.phase or "L1").split("-")[0]
            if phase in ("L1", "L2", "L3"):
                current[phase] = norm.value
        elif measurand == "Current.Offered":
            offered = norm.value
        elif measurand == "Power.Active.Import" and s.phase is None:
            power = norm.value
        elif measurand == "Energy.Active.Import.Register" and s.phase is None:
            energy = norm.value
        elif measurand == "SoC":
            soc = norm.value
    return MeterSampled(
        charge_point_id=cp_id,
        connector_id=connector_id,
        transaction_id=transaction_id,
        timestamp=latest,
        current_import_a=current,
        current_offered_a=offered,
        power_w=power,
        energy_wh=energy,
        soc_percent=soc,
    )


class ChargePointSession(OcppConnection):
    """The central system's side of one charge point connection."""

    def __init__(
        self,
        cp_id: str,
        connection: Any,
        *,
        repository: Repository,
        events: EventBus,
        clock: Clock,
        heartbeat_interval_s: int,
        accepted: bool,
        response_timeout: float = 30.0,
        boot_gate: Callable[[str, ChargerIdentity | None], bool | Awaitable[bool]] | None = None,
        certificate_authority: SiteCA | None = None,
        meter_writer: MeterWriter | None = None,
    ) -> None:
        self._accepted_event = asyncio.Event()
        self.accepted = accepted
        # What this central system asked for with TriggerMessage while the charger was not
        # accepted: section 4.2 lets a Pending charger send exactly that.
        self._triggered: set[str] = set()
        super().__init__(
            cp_id,
            connection,
            is_accepted=lambda: self.accepted,
            response_timeout=response_timeout,
            allowed_before_accepted=self._triggered.__contains__,
        )
        self._repo = repository
        self._features = FeatureStore(repository)
        self._events = events
        self._clock = clock
        self._heartbeat_interval_s = heartbeat_interval_s
        self._boot_gate = boot_gate
        self._last_touch = -math.inf
        self._ca = certificate_authority
        # CSRs accepted by SignCertificate, signed once the CALLRESULT is out.
        self._csrs_to_sign: dict[str, x509.CertificateSigningRequest] = {}
        self._background: set[asyncio.Task[None]] = set()
        # MeterValues go to the group-commit writer when there is one (csms serve).
        self._meter_writer = meter_writer
        self.direct_handlers[Action.meter_values.value] = self._direct_meter_values
        self.direct_handlers[Action.heartbeat.value] = self._direct_heartbeat

    @property
    def accepted(self) -> bool:
        """Whether its last BootNotification was Accepted (on this connection or before)."""
        return self._accepted_event.is_set()

    @accepted.setter
    def accepted(self, value: bool) -> None:
        if value:
            self._accepted_event.set()
        else:
            self._accepted_event.clear()

    async def wait_accepted(self, timeout_s: float) -> bool:
        """Wait until the charger is accepted; False when ``timeout_s`` passes first."""
        if self.accepted:
            return True
        accepted = asyncio.ensure_future(self._accepted_event.wait())
        closed = asyncio.ensure_future(self._connection.wait_closed())
        try:
            await asyncio.wait(
                (accepted, closed), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            accepted.cancel()
            closed.cancel()
        return self.accepted

    def _now_iso(self) -> str:
        return self._clock.now().isoformat().replace("+00:00", "Z")

    # ------------------------------------------------------- outgoing calls
    async def send_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL; a ChangeConfiguration(AuthorizationKey) also changes the password
        this charger must log in with, whoever sent it (rotation, outbox, anything else).

        Per the OCPP 1.6 security whitepaper: Accepted -> the new key replaces the old one
        before this returns (the old one stops working at once); Rejected, NotSupported or a
        CALLERROR -> the old key stays; RebootRequired, no answer or a closed connection
        (the charger may have taken it) -> the old key stays and the new one is accepted
        too, until the charger first logs in with it.
        """
        if action == Action.trigger_message and not self.accepted:
            return await self._send_trigger_while_pending(payload)
        key = authorization_key_change(action, payload)
        if key is None:
            return await super().send_call(action, payload)
        remember_secret(key)
        extra = {"cp_id": self.id, "action": action}
        try:
            answer = await super().send_call(action, payload)
        except AnswerUnknownError as exc:
            await self._repo.set_authorization_key(self.id, key, confirmed=False)
            log.warning(
                "AuthorizationKey change unanswered: the old key stays, the new one is "
                "accepted too until the charger uses it",
                extra=extra | {"error": scrub(str(exc))},
            )
            raise AnswerUnknownError(scrub(str(exc)), code=exc.code) from None
        except CallFailedError as exc:
            # A validation message may quote the value: never let it out with the error.
            raise CallFailedError(scrub(str(exc)), code=exc.code) from None
        status = answer.get("status")
        if status == ConfigurationStatus.accepted:
            await self._repo.set_authorization_key(self.id, key, confirmed=True)
            log.info("AuthorizationKey changed: the old key no longer works", extra=extra)
        elif status == ConfigurationStatus.reboot_required:
            await self._repo.set_authorization_key(self.id, key, confirmed=False)
            log.info(
                "AuthorizationKey taken after a reboot: both keys work until it uses the new one",
                extra=extra,
            )
        else:
            log.warning(
                "AuthorizationKey change refused: the old key stays",
                extra=extra | {"status": status},
            )
        return answer

    async def _send_trigger_while_pending(self, payload: dict[str, Any]) -> dict[str, Any]:
        """TriggerMessage to a charger that is not accepted yet: the message it asks for
        may come in before the answer is read, so it is allowed from the start and stays
        allowed only if the charger answers Accepted (until its next BootNotification)."""
        requested = str(payload.get("requestedMessage", ""))
        already = requested in self._triggered
        self._triggered.add(requested)
        answer: dict[str, Any] | None = None
        try:
            answer = await super().send_call(Action.trigger_message.value, payload)
            return answer
        finally:
            if not already and (answer is None or answer.get("status") != "Accepted"):
                self._triggered.discard(requested)

    @on(Action.boot_notification, skip_schema_validation=True)
    async def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any
    ) -> call_result.BootNotification:
        self._triggered.clear()
        gate = self._boot_gate
        # The serial number stays out, as in the profile mirror's record of the unit.
        identity = ChargerIdentity(charge_point_vendor, charge_point_model, None)
        verdict = True if gate is None else gate(self.id, identity)
        # Another instance's controller may be asked (csms.cluster): awaited then.
        allowed = await verdict if inspect.isawaitable(verdict) else verdict
        if not allowed:
            station = await self._repo.get_charge_point(self.id)
            if station is not None and station.accept_boot_at_once:
                # A charger that never boots again after Pending (issue 13): accepted now;
                # the controller installs its fail-safe profiles meanwhile, and counts it
                # at its maximum until they are in place.
                log.info(
                    "boot accepted at once (station setting); fail-safe profiles follow",
                    extra={"cp_id": self.id},
                )
                allowed = True
        status = RegistrationStatus.accepted if allowed else RegistrationStatus.pending
        await self._repo.record_boot(
            self.id,
            status.value,
            vendor=charge_point_vendor,
            model=charge_point_model,
            serial_number=kwargs.get("charge_point_serial_number")
            or kwargs.get("charge_box_serial_number"),
            firmware_version=kwargs.get("firmware_version"),
            iccid=kwargs.get("iccid"),
            imsi=kwargs.get("imsi"),
            meter_type=kwargs.get("meter_type"),
            meter_serial_number=kwargs.get("meter_serial_number"),
        )
        if status is RegistrationStatus.pending:
            log.info("boot pending until the fail-safe profiles are set", extra={"cp_id": self.id})
            return call_result.BootNotification(
                current_time=self._now_iso(), interval=PENDING_RETRY_S, status=status
            )
        self.accepted = True
        self._events.publish(ChargePointBooted(self.id))
        return call_result.BootNotification(
            current_time=self._now_iso(), interval=self._heartbeat_interval_s, status=status
        )

    @on(Action.heartbeat, skip_schema_validation=True)
    async def on_heartbeat(self) -> call_result.Heartbeat:
        # Registered for the route map; CALLs take the direct path (_direct_heartbeat).
        return call_result.Heartbeat(current_time=(await self._direct_heartbeat({}))["currentTime"])

    async def _direct_heartbeat(self, _payload: dict[str, Any]) -> dict[str, Any]:
        # last_seen_at to the minute is enough; a write per heartbeat is not.
        now = time.monotonic()
        if now - self._last_touch >= TOUCH_EVERY_S:
            self._last_touch = now
            if self._meter_writer is not None:
                # The last-seen UPDATE goes with the next group commit; the answer does not
                # wait for it (it acknowledges no data).
                self._meter_writer.touch(self.id)
            else:
                await self._repo.touch(self.id)
        return {"currentTime": self._now_iso()}

    @on(Action.status_notification, skip_schema_validation=True)
    async def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **kwargs: Any
    ) -> call_result.StatusNotification:
        timestamp = kwargs.get("timestamp")
        await self._repo.record_status(
            self.id,
            connector_id,
            status,
            error_code,
            info=kwargs.get("info"),
            vendor_id=kwargs.get("vendor_id"),
            vendor_error_code=kwargs.get("vendor_error_code"),
            timestamp=parse_timestamp(timestamp) if timestamp else None,
        )
        self._events.publish(ConnectorStatusChanged(self.id, connector_id, status, error_code))
        return call_result.StatusNotification()

    @on(Action.authorize, skip_schema_validation=True)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        info = await self._repo.authorize(id_tag, self.id)
        return call_result.Authorize(id_tag_info=_id_tag_info(info))

    @on(Action.start_transaction, skip_schema_validation=True)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs: Any
    ) -> call_result.StartTransaction:
        if connector_id < 1:
            raise PropertyConstraintViolation("connectorId: a transaction needs a connector > 0")
        result = await self._repo.start_transaction(
            self.id,
            connector_id,
            id_tag,
            meter_start,
            parse_timestamp(timestamp),
            kwargs.get("reservation_id"),
        )
        reservation_id = kwargs.get("reservation_id")
        if reservation_id is not None and not result.duplicate:
            used = await self._features.use_reservation(
                self.id, reservation_id, result.transaction_id
            )
            log.info(
                "transaction took its reservation"
                if used is not None
                else "StartTransaction names a reservation this charger does not have",
                extra={
                    "cp_id": self.id,
                    "reservation_id": reservation_id,
                    "transaction_id": result.transaction_id,
                },
            )
        self._events.publish(
            TransactionStarted(
                self.id, connector_id, result.transaction_id, resent=result.duplicate
            )
        )
        log.info(
            "transaction started",
            extra={
                "cp_id": self.id,
                "connector_id": connector_id,
                "transaction_id": result.transaction_id,
                "auth_status": result.id_tag_info.status.value,
                "duplicate": result.duplicate,
            },
        )
        return call_result.StartTransaction(
            transaction_id=result.transaction_id, id_tag_info=_id_tag_info(result.id_tag_info)
        )

    @on(Action.stop_transaction, skip_schema_validation=True)
    async def on_stop_transaction(
        self, meter_stop: int, timestamp: str, transaction_id: int, **kwargs: Any
    ) -> call_result.StopTransaction:
        raw_data = kwargs.get("transaction_data") or []
        info, orphan = await self._repo.stop_transaction(
            self.id,
            transaction_id,
            meter_stop,
            parse_timestamp(timestamp),
            reason=kwargs.get("reason"),
            id_tag=kwargs.get("id_tag"),
            transaction_data=sampled_values(raw_data),
            raw_transaction_data=raw_data or None,
        )
        if orphan:
            log.warning(
                "StopTransaction for an unknown transaction recorded as orphan",
                extra={"cp_id": self.id, "transaction_id": transaction_id},
            )
        else:
            self._events.publish(TransactionStopped(self.id, None, transaction_id))
        return call_result.StopTransaction(id_tag_info=_id_tag_info(info) if info else None)

    @on(Action.meter_values, skip_schema_validation=True)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], **kwargs: Any
    ) -> call_result.MeterValues:
        # Registered for the route map; CALLs take the direct path (_direct_meter_values).
        await self._meter_values(connector_id, kwargs.get("transaction_id"), meter_value)
        return call_result.MeterValues()

    async def _direct_meter_values(self, payload: dict[str, Any]) -> dict[str, Any]:
        await self._meter_values(
            payload["connectorId"],
            payload.get("transactionId"),
            payload["meterValue"],
            key="sampledValue",
        )
        return {}

    async def _meter_values(
        self,
        connector_id: int,
        transaction_id: int | None,
        meter_value: list[dict[str, Any]],
        *,
        key: str = "sampled_value",
    ) -> None:
        samples = sampled_values(meter_value, key=key)
        if self._meter_writer is not None:
            flags = await self._meter_writer.add(self.id, connector_id, transaction_id, samples)
        else:
            flags = await self._repo.add_meter_values(
                self.id, connector_id, transaction_id, samples
            )
        if any(flags):
            log.warning(
                "implausible energy register reading stored flagged",
                extra={
                    "cp_id": self.id,
                    "connector_id": connector_id,
                    "transaction_id": transaction_id,
                    "flags": sorted({f for f in flags if f}),
                },
            )
        # A flagged reading is acknowledged and stored, but nothing plans with it.
        plausible = [s for s, flag in zip(samples, flags, strict=True) if flag is None]
        summary = summarise_samples(self.id, connector_id, transaction_id, plausible)
        if summary is not None:
            self._events.publish(summary)

    @on(Action.data_transfer, skip_schema_validation=True)
    async def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        log.info(
            "DataTransfer",
            extra={
                "cp_id": self.id,
                "vendor_id": vendor_id,
                "data_message_id": kwargs.get("message_id"),
            },
        )
        if vendor_id not in KNOWN_VENDORS:
            return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)
        if kwargs.get("message_id") != CHARGING_NEEDS:
            return call_result.DataTransfer(status=DataTransferStatus.unknown_message_id)
        return await self._charging_needs(kwargs.get("data"))

    async def _charging_needs(self, data: str | None) -> call_result.DataTransfer:
        """GarageGrid/ChargingNeeds: the running session's departure and energy need."""
        extra: dict[str, Any] = {"cp_id": self.id, "data_message_id": CHARGING_NEEDS}
        try:
            needs = parse_charging_needs(data, self._clock.now())
            if needs.transaction_id is not None:
                tx = await self._repo.get_transaction(needs.transaction_id)
                if tx is None or tx["charge_point_id"] != self.id or tx["stopped_at"]:
                    raise ConfigError(f"no running transaction {needs.transaction_id} here")
                transaction_id = needs.transaction_id
            else:
                running = await self._features.open_transaction(self.id, needs.connector_id)
                if running is None:
                    raise ConfigError("no single running session on this charger")
                transaction_id = int(running["transaction_id"])
            await self._repo.set_session_input(
                transaction_id,
                departure_at=needs.departure_at,
                energy_needed_wh=needs.energy_wh,
            )
        except ConfigError as exc:
            log.warning("ChargingNeeds rejected", extra=extra | {"why": str(exc)})
            return call_result.DataTransfer(status=DataTransferStatus.rejected, data=str(exc))
        log.info(
            "ChargingNeeds stored",
            extra=extra
            | {
                "transaction_id": transaction_id,
                "departure_at": needs.departure_at.isoformat(),
                "energy_needed_wh": round(needs.energy_wh),
            },
        )
        return call_result.DataTransfer(
            status=DataTransferStatus.accepted,
            data=json.dumps({"transactionId": transaction_id}),
        )

    @on(Action.diagnostics_status_notification, skip_schema_validation=True)
    async def on_diagnostics_status_notification(
        self, status: str
    ) -> call_result.DiagnosticsStatusNotification:
        await self._features.record_maintenance(self.id, "diagnostics", status)
        log.info("diagnostics status", extra={"cp_id": self.id, "status": status})
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification, skip_schema_validation=True)
    async def on_firmware_status_notification(
        self, status: str
    ) -> call_result.FirmwareStatusNotification:
        await self._features.record_maintenance(self.id, "firmware", status)
        log.info("firmware status", extra={"cp_id": self.id, "status": status})
        return call_result.FirmwareStatusNotification()

    # ------------------------------------------- 1.6 security extension (whitepaper)
    @on(Action.security_event_notification, skip_schema_validation=True)
    async def on_security_event_notification(
        self, type: str, timestamp: str, **kwargs: Any
    ) -> call_result.SecurityEventNotification:
        # techInfo is free text from the charger: never let a known key out with it.
        tech_info = kwargs.get("tech_info")
        tech_info = scrub(tech_info) if tech_info is not None else None
        await self._repo.add_security_event(
            self.id, type, parse_timestamp(timestamp), tech_info=tech_info
        )
        log.warning(
            "security event",
            extra={"cp_id": self.id, "event_type": type, "tech_info": tech_info},
        )
        return call_result.SecurityEventNotification()

    @on(Action.sign_certificate, skip_schema_validation=True)
    async def on_sign_certificate(
        self, csr: str, call_unique_id: str
    ) -> call_result.SignCertificate:
        if self._ca is None:
            log.warning(
                "SignCertificate rejected: no site CA (csms serve --ca-cert/--ca-key)",
                extra={"cp_id": self.id},
            )
            return call_result.SignCertificate(status=GenericStatus.rejected)
        try:
            request = read_csr(csr, expected_cn=self.id)
        except CertificateRequestError as exc:
            log.warning("SignCertificate rejected", extra={"cp_id": self.id, "why": str(exc)})
            return call_result.SignCertificate(status=GenericStatus.rejected)
        self._csrs_to_sign[call_unique_id] = request
        return call_result.SignCertificate(status=GenericStatus.accepted)

    @after(Action.sign_certificate)
    def after_sign_certificate(self, csr: str, call_unique_id: str) -> None:
        # CertificateSigned is a CALL to this same charger: it goes out from its own task
        # once the SignCertificate CALLRESULT is sent (FIELD-NOTES: a handler that calls
        # its own charger would wait for itself).
        request = self._csrs_to_sign.pop(call_unique_id, None)
        if request is None:
            return
        task = asyncio.create_task(self._send_certificate(request))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_certificate(self, request: x509.CertificateSigningRequest) -> None:
        assert self._ca is not None
        chain = self._ca.sign(request, self._clock.now())
        extra = {"cp_id": self.id, "action": Action.certificate_signed.value}
        try:
            answer = await self.send_call(
                Action.certificate_signed.value, {"certificateChain": chain}
            )
        except ChargePointError as exc:
            log.warning("CertificateSigned failed", extra=extra | {"error": str(exc)})
            return
        status = answer.get("status")
        if status == CertificateSignedStatus.accepted:
            log.info("charge point installed its new certificate", extra=extra)
        else:
            log.warning(
                "charge point refused its new certificate", extra=extra | {"status": status}
            )
