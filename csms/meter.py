"""Normalisation of OCPP 1.6 sampled values (pure).

Meter values arrive with a measurand, a unit (or none: then the spec default applies,
Wh for energy), a phase, a context and a location. GarageGrid keeps the raw value and
a normalised one: Wh for energy, W for power, A for current, % for SoC, V, Hz, Celsius.
``register_flag`` says why an energy register reading cannot be true (it runs backwards,
or gains more than the station can draw): such a reading is stored flagged and left out
of energy totals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

DEFAULT_MEASURAND = "Energy.Active.Import.Register"

# OCPP 1.6 section 7.31 UnitOfMeasure -> (normalised unit, factor).
_UNIT_FACTORS: dict[str, tuple[str, float]] = {
    "Wh": ("Wh", 1.0),
    "kWh": ("Wh", 1000.0),
    "varh": ("varh", 1.0),
    "kvarh": ("varh", 1000.0),
    "W": ("W", 1.0),
    "kW": ("W", 1000.0),
    "VA": ("VA", 1.0),
    "kVA": ("VA", 1000.0),
    "var": ("var", 1.0),
    "kvar": ("var", 1000.0),
    "A": ("A", 1.0),
    "V": ("V", 1.0),
    "K": ("Celsius", 1.0),
    "Celcius": ("Celsius", 1.0),  # sic, the OCPP 1.6 spelling
    "Celsius": ("Celsius", 1.0),
    "Fahrenheit": ("Celsius", 1.0),
    "Percent": ("%", 1.0),
}

# The unit a measurand has when the charger leaves `unit` out.
_DEFAULT_UNITS: dict[str, str] = {
    "Energy.Active.Import.Register": "Wh",
    "Energy.Active.Export.Register": "Wh",
    "Energy.Reactive.Import.Register": "varh",
    "Energy.Reactive.Export.Register": "varh",
    "Energy.Active.Import.Interval": "Wh",
    "Energy.Active.Export.Interval": "Wh",
    "Power.Active.Import": "W",
    "Power.Active.Export": "W",
    "Power.Offered": "W",
    "Power.Reactive.Import": "var",
    "Current.Import": "A",
    "Current.Export": "A",
    "Current.Offered": "A",
    "Voltage": "V",
    "Frequency": "Hz",
    "SoC": "Percent",
    "Temperature": "Celsius",
    "RPM": "RPM",
    "Power.Factor": "",
}


@dataclass(frozen=True)
class NormalisedValue:
    value: float | None
    unit: str | None


def normalise(raw_value: str, measurand: str | None, unit: str | None) -> NormalisedValue:
    """Convert one sampled value to GarageGrid's units; ``value`` is None if unreadable."""
    measurand = measurand or DEFAULT_MEASURAND
    unit = unit or _DEFAULT_UNITS.get(measurand)
    try:
        number = float(raw_value)
    except (TypeError, ValueError):
        return NormalisedValue(None, unit)
    if not math.isfinite(number):
        return NormalisedValue(None, unit)
    if measurand == "Frequency":
        return NormalisedValue(number, "Hz")
    if unit is None:
        return NormalisedValue(number, None)
    if unit == "K":
        return NormalisedValue(number - 273.15, "Celsius")
    if unit == "Fahrenheit":
        return NormalisedValue((number - 32.0) * 5.0 / 9.0, "Celsius")
    norm_unit, factor = _UNIT_FACTORS.get(unit, (unit, 1.0))
    return NormalisedValue(number * factor, norm_unit)


# ------------------------------------------------------- energy register sanity
# A register reading that cannot be true is stored flagged and left out of energy totals
# (the charger still gets its CALLRESULT: OCPP 1.6 section 3.7, chargers resend what is
# not acknowledged).
BACKWARDS = "backwards"
JUMP = "jump"
# The most a station can draw: its maximum current on each of its phases at the nominal
# voltage (EN 50160: 230 V), with room for a meter that reads a little high and a
# charger clock that ticks a little slow.
NOMINAL_VOLTAGE_V = 230.0
JUMP_MARGIN = 1.25
# Registers reported in 0.1 kWh steps, timestamps rounded to the second.
JUMP_SLACK_WH = 100.0


@dataclass(frozen=True)
class RegisterReading:
    at: datetime
    energy_wh: float


def station_max_power_w(max_current_a: float, phases: int) -> float:
    return max_current_a * phases * NOMINAL_VOLTAGE_V


def max_energy_wh(max_power_w: float, elapsed_s: float) -> float:
    """The most energy a register may gain in ``elapsed_s`` at ``max_power_w``."""
    return max_power_w * max(0.0, elapsed_s) / 3600.0 * JUMP_MARGIN + JUMP_SLACK_WH


def register_flag(
    reading: RegisterReading,
    *,
    before: RegisterReading | None,
    after: RegisterReading | None,
    max_power_w: float,
) -> str | None:
    """Why an energy register ``reading`` cannot be true, or None.

    ``before`` and ``after`` are the plausible readings of the same register nearest in
    time (for a transaction, ``before`` is at least its meterStart). Registers never run
    backwards, and never gain more than the station's maximum power allows.
    """
    if before is not None:
        if reading.energy_wh < before.energy_wh:
            return BACKWARDS
        elapsed_s = (reading.at - before.at).total_seconds()
        if reading.energy_wh - before.energy_wh > max_energy_wh(max_power_w, elapsed_s):
            return JUMP
    if after is not None:
        if reading.energy_wh > after.energy_wh:
            return BACKWARDS
        elapsed_s = (after.at - reading.at).total_seconds()
        if after.energy_wh - reading.energy_wh > max_energy_wh(max_power_w, elapsed_s):
            return JUMP
    return None


def sample_key(
    transaction_id: int | None, measurand: str, phase: str | None, location: str | None
) -> str:
    """What identifies a sample besides its station, time and connector.

    Migration 0005 builds the same text in SQL for the rows it found; the store keeps
    samples unique per station, connector, time and this key.
    """
    tx = "" if transaction_id is None else str(transaction_id)
    return f"{tx}|{measurand}|{phase or ''}|{location or ''}"
