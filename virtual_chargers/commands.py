"""What a virtual station does when the central system asks (spec chapter 5).

`CentralSystemCommands` implements `virtual_chargers.client.StationApi`. Each method runs
inside the `ocpp` library's handler and returns the answer's status at once; anything
that sends a message of its own (StopTransaction after RemoteStop, a triggered message,
a reboot) is deferred and run by the matching `@after` hook, once the CALLRESULT is out.

Charging profiles go through `csms.profiles.ProfileStore` (the same rules the CSMS
predicts with), with the station's quirks on top: stack level 0 only, W only, connector 0
rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ocpp.v16.enums import (
    AvailabilityStatus,
    AvailabilityType,
    ChargingProfileStatus,
    ClearChargingProfileStatus,
    ConfigurationStatus,
    GetCompositeScheduleStatus,
    MessageTrigger,
    Reason,
    RemoteStartStopStatus,
    ResetStatus,
    TriggerMessageStatus,
    UnlockStatus,
)

from csms.profiles import (
    ChargingProfilePurpose,
    ChargingRateUnit,
    ProfileError,
    ProfileRejectedError,
    composite_to_ocpp,
    profile_from_ocpp,
)
from virtual_chargers import messages
from virtual_chargers.charging import CONNECTOR
from virtual_chargers.config import ChangeStatus
from virtual_chargers.options import RemoteStart

if TYPE_CHECKING:
    from virtual_chargers.station import VirtualStation

log = logging.getLogger("virtual_chargers.commands")

_CONFIG_STATUS = {
    ChangeStatus.accepted: ConfigurationStatus.accepted,
    ChangeStatus.rejected: ConfigurationStatus.rejected,
    ChangeStatus.reboot_required: ConfigurationStatus.reboot_required,
    ChangeStatus.not_supported: ConfigurationStatus.not_supported,
}


class CentralSystemCommands:
    """The station side of every central-system-initiated operation it supports."""

    def __init__(self, station: VirtualStation) -> None:
        self._station = station
        self._deferred: list[Callable[[], object]] = []

    def _defer(self, action: Callable[[], object]) -> None:
        self._deferred.append(action)

    def _run_deferred(self) -> None:
        actions, self._deferred = self._deferred, []
        for action in actions:
            action()

    # ------------------------------------------------------------ transactions
    def remote_start(
        self, id_tag: str, connector_id: int | None, profile: dict[str, Any] | None
    ) -> str:
        station = self._station
        rejected = str(RemoteStartStopStatus.rejected)
        if connector_id not in (None, CONNECTOR) or station.transaction_running:
            return rejected
        if station.closing or not station.state.operative:
            return rejected
        reservation = station.features.active_reservation(station.now())
        if reservation is not None and not station.features.may_use(
            reservation, id_tag, station.now()
        ):
            return rejected  # reserved for someone else (section 5.13)
        parsed = None
        if profile is not None:
            try:
                parsed = profile_from_ocpp(profile)
                # Spec 5.11: a TxProfile without transactionId, within this charger's
                # limits (stack level, rate unit), else Rejected. Installed at the start.
                station.charging.profiles.install_remote_start_profile(CONNECTOR, parsed)
            except ProfileError as exc:
                log.warning(
                    "remote start profile refused", extra={"cp_id": station.id, "error": str(exc)}
                )
                return rejected
        timeout_s = station.config.integer("ConnectionTimeOut")
        station.remote = RemoteStart(id_tag, station.now() + timedelta(seconds=timeout_s), parsed)
        self._defer(station.start_remote_if_plugged)
        return str(RemoteStartStopStatus.accepted)

    def after_remote_start(self) -> None:
        self._run_deferred()

    def remote_stop(self, transaction_id: int) -> str:
        station = self._station
        if not station.transaction_running or station.transaction_id != transaction_id:
            return str(RemoteStartStopStatus.rejected)
        self._defer(lambda: station.stop_transaction(Reason.remote))
        return str(RemoteStartStopStatus.accepted)

    def after_remote_stop(self) -> None:
        self._run_deferred()

    def unlock(self, connector_id: int) -> str:
        if connector_id != CONNECTOR:
            return str(UnlockStatus.not_supported)
        station = self._station
        self._defer(lambda: station.stop_transaction(Reason.unlock_command))
        return str(UnlockStatus.unlocked)

    def after_unlock(self) -> None:
        self._run_deferred()

    # ------------------------------------------------------------ the device
    def reset(self, kind: str) -> str:
        station = self._station
        self._defer(lambda: station.request_reboot(kind))
        return str(ResetStatus.accepted)

    def after_reset(self) -> None:
        self._run_deferred()

    def change_availability(self, connector_id: int, kind: str) -> str:
        station = self._station
        if connector_id not in (0, CONNECTOR):
            return str(AvailabilityStatus.rejected)
        operative = kind == AvailabilityType.operative
        if not operative and station.transaction_running:
            # Spec 5.2: becomes Unavailable when the transaction has finished.
            station.pending_inoperative = True
            return str(AvailabilityStatus.scheduled)
        station.pending_inoperative = False
        self._defer(lambda: station.set_operative(operative))
        return str(AvailabilityStatus.accepted)

    def after_change_availability(self) -> None:
        self._run_deferred()

    def trigger(self, message: str, connector_id: int | None) -> str:
        station = self._station
        if connector_id not in (None, 0, CONNECTOR):
            return str(TriggerMessageStatus.rejected)
        uplink = station.uplink
        options = station.options
        if message == MessageTrigger.status_notification:
            self._defer(lambda: self._trigger_status(connector_id))
        elif message == MessageTrigger.meter_values:
            self._defer(
                lambda: station.enqueue_meter_values("Trigger", station.advance(), persistent=False)
            )
        elif message == MessageTrigger.heartbeat:
            self._defer(lambda: station.spawn(uplink.call_now("Heartbeat", {}), "trigger"))
        elif message == MessageTrigger.boot_notification:
            payload = messages.boot_notification(
                options.vendor, options.model, f"VC-{station.id}", station.firmware_version
            )
            self._defer(
                lambda: station.spawn(uplink.call_now("BootNotification", payload), "trigger")
            )
        elif message == MessageTrigger.firmware_status_notification:
            # Errata 3.x: Idle unless an update is under way (the current status then).
            firmware = {"status": station.features.firmware_status}
            self._defer(
                lambda: station.spawn(
                    uplink.call_now("FirmwareStatusNotification", firmware), "trigger"
                )
            )
        elif message == MessageTrigger.diagnostics_status_notification:
            diagnostics = {"status": station.features.diagnostics_status}
            self._defer(
                lambda: station.spawn(
                    uplink.call_now("DiagnosticsStatusNotification", diagnostics), "trigger"
                )
            )
        else:
            return str(TriggerMessageStatus.not_implemented)
        return str(TriggerMessageStatus.accepted)

    def _trigger_status(self, connector_id: int | None) -> None:
        station = self._station
        now = station.advance()
        if connector_id in (None, 0):
            station.report_status(now, force=True, connector=0)
        if connector_id in (None, CONNECTOR):
            station.report_status(now, force=True)

    def after_trigger(self) -> None:
        self._run_deferred()

    # ------------------------------------------------------------ configuration
    def get_configuration(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        entries, unknown = self._station.config.get(keys)
        return [{"key": e.key, "readonly": e.readonly, "value": e.value} for e in entries], unknown

    def change_configuration(self, key: str, value: str) -> str:
        station = self._station
        status = station.config.change(key, value)
        if status is ChangeStatus.accepted:
            station.persist()
            name = key.lower()
            if name == "heartbeatinterval":
                station.uplink.heartbeat_interval_changed()
            elif name == "metervaluesampleinterval":
                station.reschedule_samples()
            elif name == "clockaligneddatainterval":
                station.reset_clock_aligned()
            # AuthorizationKey and WebSocketPingInterval apply from the next connection.
            log.info("configuration changed", extra={"cp_id": station.id, "key": key})
        return str(_CONFIG_STATUS[status])

    # ------------------------------------------------------------ smart charging
    def set_charging_profile(self, connector_id: int, profile: dict[str, Any]) -> str:
        station = self._station
        rejected = str(ChargingProfileStatus.rejected)
        if connector_id == 0 and station.options.quirks.reject_connector_0:
            return rejected
        try:
            parsed = profile_from_ocpp(profile)
        except ProfileError as exc:
            log.warning("invalid charging profile", extra={"cp_id": station.id, "error": str(exc)})
            return rejected
        store = station.charging.profiles
        transaction_id = station.transaction_id if connector_id == CONNECTOR else None
        try:
            if (
                connector_id == CONNECTOR
                and station.transaction_running
                and transaction_id is None
                and parsed.purpose is ChargingProfilePurpose.TxProfile
                and parsed.transaction_id is None
            ):
                # Started while offline, its id not known yet: the profile is for it.
                store = store.install_remote_start_profile(CONNECTOR, parsed)
            else:
                store = store.install(connector_id, parsed, transaction_id=transaction_id)
        except ProfileRejectedError as exc:
            log.info("charging profile rejected", extra={"cp_id": station.id, "error": str(exc)})
            return rejected
        station.set_profiles(store)  # the past ran under the old profiles
        log.info(
            "charging profile installed",
            extra={
                "cp_id": station.id,
                "connector_id": connector_id,
                "profile_id": parsed.profile_id,
                "purpose": parsed.purpose.value,
                "stack_level": parsed.stack_level,
            },
        )
        return str(ChargingProfileStatus.accepted)

    def after_profiles_changed(self) -> None:
        self._station.wake()

    def clear_charging_profile(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str:
        station = self._station
        try:
            parsed_purpose = ChargingProfilePurpose(purpose) if purpose is not None else None
        except ValueError:
            return str(ClearChargingProfileStatus.unknown)
        store, cleared = station.charging.profiles.clear(
            profile_id, connector_id, parsed_purpose, stack_level
        )
        if not cleared:
            return str(ClearChargingProfileStatus.unknown)
        station.set_profiles(store)
        return str(ClearChargingProfileStatus.accepted)

    def composite_schedule(
        self, connector_id: int, duration_s: int, rate_unit: str | None
    ) -> dict[str, Any]:
        station = self._station
        if not 0 <= connector_id <= CONNECTOR:
            return {"status": str(GetCompositeScheduleStatus.rejected)}
        now = station.advance()
        default_unit = (
            ChargingRateUnit.W if station.options.quirks.only_watts else ChargingRateUnit.A
        )
        unit = ChargingRateUnit(rate_unit) if rate_unit else default_unit
        try:
            schedule = station.charging.composite(connector_id, now, duration_s, unit)
        except ProfileError as exc:
            log.info("composite schedule refused", extra={"cp_id": station.id, "error": str(exc)})
            return {"status": str(GetCompositeScheduleStatus.rejected)}
        return {
            "status": str(GetCompositeScheduleStatus.accepted),
            "connector_id": connector_id,
            "schedule_start": messages.timestamp(now),
            "charging_schedule": composite_to_ocpp(schedule),
        }

    # ------------------------------------------------------------ local auth list
    def send_local_list(self, payload: dict[str, Any]) -> str:
        return self._station.features.send_local_list(payload)

    def get_local_list_version(self) -> int:
        return self._station.features.get_local_list_version()

    # ------------------------------------------------------------ reservation
    def reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None,
    ) -> str:
        station = self._station
        status = station.features.reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        if status == "Accepted":
            self._defer(lambda: station.report_status(station.advance()))
        return status

    def cancel_reservation(self, reservation_id: int) -> str:
        station = self._station
        status = station.features.cancel_reservation(reservation_id)
        if status == "Accepted":
            self._defer(lambda: station.report_status(station.advance()))
        return status

    def after_reservation(self) -> None:
        self._run_deferred()

    # ------------------------------------------------------------ firmware management
    def update_firmware(
        self, location: str, retrieve_date: str, retries: int | None, retry_interval: int | None
    ) -> None:
        self._station.features.update_firmware(
            location, retrieve_date, retries or 1, retry_interval or 60
        )

    def get_diagnostics(
        self, location: str, retries: int | None, retry_interval: int | None
    ) -> str | None:
        return self._station.features.get_diagnostics(location, retries or 1, retry_interval or 60)
