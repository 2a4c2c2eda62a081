"""Will a car be full before its driver leaves? A plain estimate at today's rate (pure).

The controller re-plans every tick, so any forecast is only as good as the current
limit; this is the figure the Live and Resident pages show: energy still needed divided
by what the car draws now (or, when it is paused or just plugged in, what its latest
limit allows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from csms.controller.planning import default_departure
from csms.domain import SiteConfig
from csms.ev import EVSpec

# A power reading older than this no longer says what the car draws now.
FRESH_POWER_S = 300.0
# Below this the car is taken as not drawing (chargers report a few W of standby).
DRAWING_W = 50.0


@dataclass(frozen=True)
class Outlook:
    transaction_id: int
    delivered_wh: float
    needed_wh: float  # for the whole session
    remaining_wh: float
    rate_w: float
    drawing: bool
    departure_at: datetime
    departure_is_default: bool
    full_at: datetime | None  # None: never at the current rate
    will_miss: bool


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number  # NaN from pandas


def _time(value: Any) -> datetime | None:
    # pandas' NaT is a datetime subclass whose every method raises: it means "no value".
    if value is None or value is pd.NaT:
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        return None
    return value


def session_outlook(
    row: Mapping[str, Any],
    site: SiteConfig,
    now: datetime,
    catalogue: Mapping[str, EVSpec],
) -> Outlook:
    """The outlook of one running session (a row of `queries.open_session_readings`)."""
    started_at = _time(row["started_at"])
    assert started_at is not None
    register = _number(row.get("register_wh"))
    delivered = max(0.0, register - float(row["meter_start_wh"])) if register else 0.0
    ev = catalogue.get(str(row.get("ev_model") or ""))
    battery_kwh = _number(row.get("battery_kwh")) or (ev.battery_kwh if ev else None)
    target = _number(row.get("target_soc"))
    soc_pct = _number(row.get("soc_pct"))
    needed_input = _number(row.get("energy_needed_wh"))
    if needed_input is not None:
        needed = needed_input
    elif target is not None and battery_kwh and soc_pct is not None:
        needed = delivered + max(0.0, target - soc_pct / 100.0) * battery_kwh * 1000.0
    else:
        needed = site.default_energy_kwh * 1000.0
    remaining = max(0.0, needed - delivered)
    power = _number(row.get("power_w")) or 0.0
    power_at = _time(row.get("power_at"))
    fresh = power_at is not None and (now - power_at).total_seconds() <= FRESH_POWER_S
    drawing = fresh and power > DRAWING_W
    if drawing:
        rate = power
    else:
        limit = _number(row.get("limit_a")) or 0.0
        station_phases = int(_number(row.get("phases")) or 3)
        phases = min(ev.phases, station_phases) if ev else station_phases
        amps = min(limit, ev.max_current_a) if ev else limit
        rate = amps * site.voltage_v * phases if amps >= 6 else 0.0
    departure = _time(row.get("departure_at"))
    is_default = departure is None
    if departure is None:
        departure = default_departure(started_at, site)
    if remaining <= 0:
        full_at: datetime | None = now
    elif rate > 0:
        full_at = now + timedelta(hours=remaining / rate)
    else:
        full_at = None
    will_miss = remaining > 0 and (full_at is None or full_at > departure)
    return Outlook(
        transaction_id=int(row["transaction_id"]),
        delivered_wh=delivered,
        needed_wh=needed,
        remaining_wh=remaining,
        rate_w=rate,
        drawing=drawing,
        departure_at=departure,
        departure_is_default=is_default,
        full_at=full_at,
        will_miss=will_miss,
    )
