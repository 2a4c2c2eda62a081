"""Payloads of the CALLs a virtual charge point sends, as camelCase OCPP 1.6 JSON (pure).

Timestamps are UTC with milliseconds and a "Z" (spec 3.14); meter values follow spec 7.43
SampledValue: values are strings, energy in whole Wh on the register, currents per
station phase, SoC measured at the EV.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from virtual_chargers.simulation import PHASES, MeterReading

# Where each measurand is measured (spec 7.28 Location).
_LOCATION: Final = {"SoC": "EV"}


def timestamp(at: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and "Z", e.g. 2026-01-05T14:00:00.000Z."""
    if at.utcoffset() is None:
        raise ValueError(f"timestamp must carry a time zone, got {at.isoformat()}")
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sample(
    value: str, measurand: str, unit: str, context: str, phase: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value, "context": context, "measurand": measurand}
    if phase is not None:
        out["phase"] = phase
    out["location"] = _LOCATION.get(measurand, "Outlet")
    out["unit"] = unit
    return out


def sampled_values(
    reading: MeterReading, measurands: Iterable[str], context: str
) -> list[dict[str, Any]]:
    """The sampledValue list for the configured measurands (MeterValuesSampledData)."""
    out: list[dict[str, Any]] = []
    for measurand in measurands:
        if measurand == "Energy.Active.Import.Register":
            out.append(_sample(str(reading.energy_wh), measurand, "Wh", context))
        elif measurand == "Power.Active.Import":
            out.append(_sample(f"{reading.power_w:.1f}", measurand, "W", context))
        elif measurand == "Power.Offered":
            out.append(_sample(f"{reading.offered_w:.1f}", measurand, "W", context))
        elif measurand == "Current.Import":
            out.extend(
                _sample(f"{amps:.1f}", measurand, "A", context, PHASES[index])
                for index, amps in enumerate(reading.current_a)
            )
        elif measurand == "Current.Offered":
            out.append(_sample(f"{reading.offered_a:.1f}", measurand, "A", context))
        elif measurand == "Voltage":
            out.extend(
                _sample(f"{reading.voltage_v:.1f}", measurand, "V", context, f"{PHASES[index]}-N")
                for index in range(len(reading.current_a))
            )
        elif measurand == "SoC" and reading.soc_percent is not None:
            out.append(_sample(f"{reading.soc_percent:.1f}", measurand, "Percent", context))
    return out


def meter_value(
    reading: MeterReading, measurands: Iterable[str], context: str, at: datetime
) -> dict[str, Any]:
    """One element of MeterValues.req `meterValue` / StopTransaction `transactionData`."""
    return {
        "timestamp": timestamp(at),
        "sampledValue": sampled_values(reading, measurands, context),
    }


def meter_values(
    connector_id: int, values: Sequence[dict[str, Any]], transaction_id: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"connectorId": connector_id}
    if transaction_id is not None:
        out["transactionId"] = transaction_id
    out["meterValue"] = list(values)
    return out


def status_notification(
    connector_id: int, status: str, at: datetime, error_code: str = "NoError"
) -> dict[str, Any]:
    return {
        "connectorId": connector_id,
        "errorCode": error_code,
        "status": status,
        "timestamp": timestamp(at),
    }


def boot_notification(
    vendor: str, model: str, serial_number: str, firmware_version: str
) -> dict[str, Any]:
    return {
        "chargePointVendor": vendor,
        "chargePointModel": model,
        "chargePointSerialNumber": serial_number,
        "firmwareVersion": firmware_version,
        "meterType": "virtual",
    }


def start_transaction(
    connector_id: int,
    id_tag: str,
    meter_start_wh: int,
    at: datetime,
    *,
    reservation_id: int | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": connector_id,
        "idTag": id_tag,
        "meterStart": meter_start_wh,
        "timestamp": timestamp(at),
    }
    if reservation_id is not None:
        payload["reservationId"] = reservation_id
    return payload


def stop_transaction(
    meter_stop_wh: int,
    at: datetime,
    reason: str,
    *,
    id_tag: str | None = None,
    transaction_data: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """StopTransaction.req without `transactionId`: the queue fills it in when sending."""
    out: dict[str, Any] = {"meterStop": meter_stop_wh, "timestamp": timestamp(at)}
    if id_tag is not None:
        out["idTag"] = id_tag
    out["reason"] = reason
    if transaction_data:
        out["transactionData"] = list(transaction_data)
    return out
