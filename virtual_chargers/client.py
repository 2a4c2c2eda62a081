"""The OCPP boundary of a virtual charge point, on the ``ocpp`` package's ChargePoint.

One `OcppClient` per WebSocket connection. Outgoing CALLs take camelCase payloads and a
chosen message id (a queued transaction message keeps its id across resends). Incoming
CALLs from the central system are dispatched by the library to the `@on` handlers below,
which translate them into calls of the station (`StationApi`) and back. Follow-ups that
send a CALL of their own (a StopTransaction after RemoteStop, a triggered message) run in
`@after` hooks, after the CALLRESULT is out: a CALL sent from inside a handler would wait
for the library's lock that the handler holds (FIELD-NOTES).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from ocpp.messages import Call, MessageType
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, ClearCacheStatus, DataTransferStatus

from csms.ocpp16.validation import validate_request

log = logging.getLogger("virtual_chargers.ocpp")

_F = TypeVar("_F", bound=Callable[..., Any])


def _on(action: Action) -> Callable[[_F], _F]:
    """The library's untyped `@on`, typed (schema validation stays on)."""
    return cast(Callable[[_F], _F], on(action))


def _after(action: Action) -> Callable[[_F], _F]:
    return cast(Callable[[_F], _F], after(action))


class CallErrorReceived(Exception):  # noqa: N818 - it is the OCPP message's name
    """The central system answered a CALL with a CALLERROR."""

    def __init__(self, action: str, code: str, description: str) -> None:
        super().__init__(f"{action}: {code}: {description}")
        self.action = action
        self.code = code
        self.description = description


class StationApi(Protocol):
    """What the OCPP handlers need from a station; each returns the answer's fields."""

    def remote_start(
        self, id_tag: str, connector_id: int | None, profile: dict[str, Any] | None
    ) -> str: ...
    def after_remote_start(self) -> None: ...
    def remote_stop(self, transaction_id: int) -> str: ...
    def after_remote_stop(self) -> None: ...
    def reset(self, kind: str) -> str: ...
    def after_reset(self) -> None: ...
    def unlock(self, connector_id: int) -> str: ...
    def after_unlock(self) -> None: ...
    def change_availability(self, connector_id: int, kind: str) -> str: ...
    def after_change_availability(self) -> None: ...
    def trigger(self, message: str, connector_id: int | None) -> str: ...
    def after_trigger(self) -> None: ...
    def get_configuration(
        self, keys: list[str] | None
    ) -> tuple[list[dict[str, Any]], list[str]]: ...
    def change_configuration(self, key: str, value: str) -> str: ...
    def set_charging_profile(self, connector_id: int, profile: dict[str, Any]) -> str: ...
    def after_profiles_changed(self) -> None: ...
    def clear_charging_profile(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str: ...
    def composite_schedule(
        self, connector_id: int, duration_s: int, rate_unit: str | None
    ) -> dict[str, Any]: ...
    def send_local_list(self, payload: dict[str, Any]) -> str: ...
    def get_local_list_version(self) -> int: ...
    def reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None,
    ) -> str: ...
    def cancel_reservation(self, reservation_id: int) -> str: ...
    def after_reservation(self) -> None: ...
    def update_firmware(
        self, location: str, retrieve_date: str, retries: int | None, retry_interval: int | None
    ) -> None: ...
    def get_diagnostics(
        self, location: str, retries: int | None, retry_interval: int | None
    ) -> str | None: ...


class OcppClient(ChargePoint):  # type: ignore[misc]  # the ocpp package is untyped
    """One connection's OCPP-J 1.6 endpoint of a charge point."""

    def __init__(
        self,
        cp_id: str,
        connection: Any,
        station: StationApi,
        *,
        response_timeout_s: float = 30.0,
        validate: bool = True,
    ) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout_s, logger=log)
        self._station = station
        self._validate = validate

    async def start(self) -> None:
        """Read frames until the connection closes (raises ConnectionClosed then)."""
        while True:
            message = await self._connection.recv()
            log.debug("frame received", extra={"cp_id": self.id, "frame": str(message)[:200]})
            await self.route_message(message)

    async def _handle_call(self, msg: Any) -> Any:
        log.info(
            "received CALL",
            extra={"cp_id": self.id, "action": msg.action, "message_id": msg.unique_id},
        )
        return await super()._handle_call(msg)

    async def _send(self, message: str) -> None:
        # The library logs every frame unstructured at INFO; ours says it once, at DEBUG.
        log.debug("frame sent", extra={"cp_id": self.id, "frame": message[:200]})
        await self._connection.send(message)

    async def send_call(
        self, action: str, payload: dict[str, Any], message_id: str | None = None
    ) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload (camelCase).

        Raises CallErrorReceived, TimeoutError, or websockets' ConnectionClosed.
        """
        if self._validate:
            # Our own payloads: a schema error here is a bug in the virtual charger.
            validate_request(action, payload)
        call = Call(message_id or str(uuid.uuid4()), action, payload)
        log.debug(
            "sending CALL",
            extra={"cp_id": self.id, "action": action, "message_id": call.unique_id},
        )
        async with self._call_lock:
            await self._connection.send(call.to_json())
            response = await self._get_specific_response(call.unique_id, self._response_timeout)
        if response.message_type_id == MessageType.CallError:
            log.warning(
                "CALLERROR received",
                extra={
                    "cp_id": self.id,
                    "action": action,
                    "message_id": call.unique_id,
                    "error_code": response.error_code,
                    "description": response.error_description,
                },
            )
            raise CallErrorReceived(
                action, str(response.error_code), str(response.error_description)
            )
        payload_out = response.payload
        return payload_out if isinstance(payload_out, dict) else {}

    # ------------------------------------------------------------- handlers
    @_on(Action.remote_start_transaction)
    def on_remote_start_transaction(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        status = self._station.remote_start(id_tag, connector_id, charging_profile)
        return call_result.RemoteStartTransaction(status=status)

    @_after(Action.remote_start_transaction)
    def after_remote_start_transaction(self, **_: Any) -> None:
        self._station.after_remote_start()

    @_on(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, transaction_id: int, **_: Any) -> Any:
        return call_result.RemoteStopTransaction(status=self._station.remote_stop(transaction_id))

    @_after(Action.remote_stop_transaction)
    def after_remote_stop_transaction(self, **_: Any) -> None:
        self._station.after_remote_stop()

    @_on(Action.reset)
    def on_reset(self, type: str, **_: Any) -> Any:
        return call_result.Reset(status=self._station.reset(type))

    @_after(Action.reset)
    def after_reset(self, **_: Any) -> None:
        self._station.after_reset()

    @_on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id: int, **_: Any) -> Any:
        return call_result.UnlockConnector(status=self._station.unlock(connector_id))

    @_after(Action.unlock_connector)
    def after_unlock_connector(self, **_: Any) -> None:
        self._station.after_unlock()

    @_on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        status = self._station.change_availability(connector_id, type)
        return call_result.ChangeAvailability(status=status)

    @_after(Action.change_availability)
    def after_change_availability(self, **_: Any) -> None:
        self._station.after_change_availability()

    @_on(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> Any:
        status = self._station.trigger(requested_message, connector_id)
        return call_result.TriggerMessage(status=status)

    @_after(Action.trigger_message)
    def after_trigger_message(self, **_: Any) -> None:
        self._station.after_trigger()

    @_on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        entries, unknown = self._station.get_configuration(key)
        return call_result.GetConfiguration(
            configuration_key=entries or None, unknown_key=unknown or None
        )

    @_on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        return call_result.ChangeConfiguration(
            status=self._station.change_configuration(key, value)
        )

    @_on(Action.set_charging_profile)
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any
    ) -> Any:
        status = self._station.set_charging_profile(connector_id, cs_charging_profiles)
        return call_result.SetChargingProfile(status=status)

    @_after(Action.set_charging_profile)
    def after_set_charging_profile(self, **_: Any) -> None:
        self._station.after_profiles_changed()

    @_on(Action.clear_charging_profile)
    def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **_: Any,
    ) -> Any:
        status = self._station.clear_charging_profile(
            id, connector_id, charging_profile_purpose, stack_level
        )
        return call_result.ClearChargingProfile(status=status)

    @_after(Action.clear_charging_profile)
    def after_clear_charging_profile(self, **_: Any) -> None:
        self._station.after_profiles_changed()

    @_on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        answer = self._station.composite_schedule(connector_id, duration, charging_rate_unit)
        return call_result.GetCompositeSchedule(**answer)

    # ------------------------------------------- local auth list, reservation, firmware
    @_on(Action.send_local_list)
    def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        # The library hands over snake_case; the list arithmetic reads OCPP's camelCase.
        items = [
            {"idTag": item["id_tag"]}
            | (
                {"idTagInfo": _camel_info(item["id_tag_info"])}
                if item.get("id_tag_info") is not None
                else {}
            )
            for item in local_authorization_list or []
        ]
        payload = {
            "listVersion": list_version,
            "updateType": update_type,
            "localAuthorizationList": items,
        }
        return call_result.SendLocalList(status=self._station.send_local_list(payload))

    @_on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> Any:
        return call_result.GetLocalListVersion(list_version=self._station.get_local_list_version())

    @_on(Action.reserve_now)
    def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
        **_: Any,
    ) -> Any:
        status = self._station.reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return call_result.ReserveNow(status=status)

    @_after(Action.reserve_now)
    def after_reserve_now(self, **_: Any) -> None:
        self._station.after_reservation()

    @_on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        return call_result.CancelReservation(
            status=self._station.cancel_reservation(reservation_id)
        )

    @_after(Action.cancel_reservation)
    def after_cancel_reservation(self, **_: Any) -> None:
        self._station.after_reservation()

    @_on(Action.update_firmware)
    def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ) -> Any:
        self._station.update_firmware(location, retrieve_date, retries, retry_interval)
        return call_result.UpdateFirmware()

    @_on(Action.get_diagnostics)
    def on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ) -> Any:
        name = self._station.get_diagnostics(location, retries, retry_interval)
        return call_result.GetDiagnostics(file_name=name)

    @_on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> Any:
        return call_result.ClearCache(status=ClearCacheStatus.accepted)

    @_on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        # No vendor extensions (spec 4.3: unknown vendor -> UnknownVendorId).
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)


def _camel_info(info: dict[str, Any]) -> dict[str, Any]:
    """An IdTagInfo as the library hands it over (snake_case) in OCPP's camelCase."""
    names = {"status": "status", "expiry_date": "expiryDate", "parent_id_tag": "parentIdTag"}
    return {names[k]: v for k, v in info.items() if k in names and v is not None}
