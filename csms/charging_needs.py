"""The GarageGrid vendor DataTransfer: a charger's own app tells a departure and a need.

OCPP 1.6 carries neither a departure time nor an energy need. A charger (its app, its
display) may send them with DataTransfer.req (section 4.3):

    vendorId  "GarageGrid"
    messageId "ChargingNeeds"
    data      a JSON-encoded string: {"departure": "<RFC 3339>", "energyKwh": <number>}
              optional "connectorId" (which connector's session; needed on a charger
              with more than one running) or "transactionId".

Answered Accepted once the session's departure and need are stored (the same store
write the monitor's Resident page makes), Rejected when the data cannot be read or
breaks the same rules the Resident page applies (a departure in the future, at most 14
days ahead; 0 < energy <= 250 kWh) or no session runs there, UnknownMessageId for another
messageId of ours and UnknownVendorId for another vendor.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from csms.errors import ConfigError
from csms.ev import MAX_BATTERY_KWH
from csms.ocpp16.validation import parse_timestamp

VENDOR_ID: Final = "GarageGrid"
CHARGING_NEEDS: Final = "ChargingNeeds"
# The Resident page's bound on a departure (csms.monitor.pages.resident).
MAX_AHEAD: Final = timedelta(days=14)


@dataclass(frozen=True)
class ChargingNeeds:
    departure_at: datetime
    energy_wh: float
    connector_id: int | None = None
    transaction_id: int | None = None


def _int_field(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def parse_charging_needs(data: str | None, now: datetime) -> ChargingNeeds:
    """The needs in a DataTransfer ``data`` string; ConfigError saying why not."""
    if data is None:
        raise ConfigError("data: missing")
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        raise ConfigError("data: not JSON") from None
    if not isinstance(parsed, dict):
        raise ConfigError("data: expected a JSON object")
    unknown = set(parsed) - {"departure", "energyKwh", "connectorId", "transactionId"}
    if unknown:
        raise ConfigError(f"data: unknown field(s) {', '.join(sorted(unknown))}")
    departure = parsed.get("departure")
    if not isinstance(departure, str):
        raise ConfigError("departure: expected an RFC 3339 date-time string")
    try:
        departure_at = parse_timestamp(departure)
    except ValueError:
        raise ConfigError(f"departure: not an RFC 3339 date-time: {departure[:40]!r}") from None
    if departure_at <= now:
        raise ConfigError("departure: that time has passed")
    if departure_at > now + MAX_AHEAD:
        raise ConfigError("departure: at most 14 days ahead")
    energy = parsed.get("energyKwh")
    if isinstance(energy, bool) or not isinstance(energy, int | float) or not math.isfinite(energy):
        raise ConfigError("energyKwh: expected a number")
    if not 0 < energy <= MAX_BATTERY_KWH:
        raise ConfigError(f"energyKwh: between 0 and {MAX_BATTERY_KWH:g} kWh, got {energy}")
    return ChargingNeeds(
        departure_at,
        float(energy) * 1000.0,
        _int_field(parsed, "connectorId"),
        _int_field(parsed, "transactionId"),
    )


def charging_needs_data(
    departure_at: datetime, energy_kwh: float, *, connector_id: int | None = None
) -> str:
    """The ``data`` string a charger sends (the virtual chargers use it)."""
    body: dict[str, Any] = {
        "departure": departure_at.isoformat().replace("+00:00", "Z"),
        "energyKwh": round(energy_kwh, 3),
    }
    if connector_id is not None:
        body["connectorId"] = connector_id
    return json.dumps(body, separators=(",", ":"))
