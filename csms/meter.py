"""Normalisation of OCPP 1.6 sampled values (pure).

Meter values arrive with a measurand, a unit (or none: then the spec default applies,
Wh for energy), a phase, a context and a location. GarageGrid keeps the raw value and
a normalised one: Wh for energy, W for power, A for current, % for SoC, V, Hz, Celsius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
