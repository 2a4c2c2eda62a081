"""Electric vehicles as the load sees them: battery, onboard charger, taper.

Pure: no I/O, no asyncio. The virtual chargers and the load-management simulation use
the same model, so a car behaves identically whether it is driven over OCPP or in a
bench run.

The model, deliberately small:

* An AC-charged car draws at most ``min(offered, onboard charger limit, taper(SoC))``
  amperes on each of its phases (1 or 3). The onboard charger, not the station, decides
  how many phases are used: a one-phase car on a three-phase station draws on one phase.
* Above ``TAPER_START_SOC`` the battery management system lowers the current linearly
  to ``TAPER_END_A`` just before 100 %, and to 0 at 100 %. Real cars vary (many hold
  full AC power to 90 % and more); this is a common, slightly conservative shape.
* Below 6 A offered the car draws nothing: IEC 61851-1 cannot signal less than 6 A with
  the control-pilot PWM duty cycle, so a smaller limit means "pause".
* State of charge is bookkept in grid-side energy by default (``efficiency=1.0``), so
  that "energy needed" in a scenario or a real data set (which are meter readings) is
  exactly what has to flow through the meter. Pass ``efficiency`` below 1 to model
  charger losses; SoC then rises by ``energy * efficiency / battery``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from csms.errors import ConfigError

MIN_CURRENT_A = 6.0
"""IEC 61851-1: the lowest current the control-pilot PWM duty cycle can signal."""

TAPER_START_SOC = 0.8
"""State of charge above which the battery management system lowers the current."""

TAPER_END_A = 3.0
"""Current per phase the taper reaches just before 100 %."""

DEFAULT_VOLTAGE_V = 230.0
"""Nominal phase-to-neutral voltage in Europe (EN 50160)."""

MAX_BATTERY_KWH = 250.0
MAX_EV_CURRENT_A = 80.0
"""Sanity bounds for manual entry: IEC 62196-2 type 1 allows 80 A, type 2 63 A."""


@dataclass(frozen=True)
class EVSpec:
    """An EV model as far as AC charging is concerned.

    ``battery_kwh`` is the usable capacity; ``max_current_a`` the onboard charger's
    limit per phase; ``phases`` how many phases the onboard charger uses (1 or 3).
    """

    key: str
    name: str
    battery_kwh: float
    max_current_a: float
    phases: int

    def __post_init__(self) -> None:
        if not self.battery_kwh > 0:
            raise ValueError(f"battery_kwh must be > 0, got {self.battery_kwh}")
        if not self.max_current_a > 0:
            raise ValueError(f"max_current_a must be > 0, got {self.max_current_a}")
        if self.phases not in (1, 3):
            raise ValueError(f"phases must be 1 or 3, got {self.phases}")

    @property
    def max_power_w(self) -> float:
        """Onboard charger limit in W at the nominal 230 V."""
        return self.max_current_a * self.phases * DEFAULT_VOLTAGE_V


def _spec(key: str, name: str, battery_kwh: float, max_current_a: float, phases: int) -> EVSpec:
    return EVSpec(key, name, battery_kwh, max_current_a, phases)


# Nominal usable battery capacity (kWh) and onboard AC charger limit (A per phase x
# phases) of common models, from the manufacturers' data sheets as summarised by
# ev-database.org. A 3.7 kW one-phase charger is 1x16 A, 6.6 kW about 1x29 A, 7.2-7.4 kW
# 1x32 A, 11 kW 3x16 A and 22 kW 3x32 A at 230 V. Figures are nominal; individual cars,
# model years and options differ (e.g. optional 22 kW chargers are not listed).
CATALOGUE: Mapping[str, EVSpec] = MappingProxyType(
    {
        spec.key: spec
        for spec in (
            # The thesis's car: first-generation Zoe, 22 kWh, Chameleon charger.
            _spec("renault-zoe-22", "Renault Zoe R240 (22 kWh, 22 kW AC)", 22.0, 32.0, 3),
            _spec("renault-zoe-22-q210", "Renault Zoe Q210 (22 kWh, 43 kW AC)", 22.0, 63.0, 3),
            _spec("renault-zoe-52", "Renault Zoe ZE50 (52 kWh, 22 kW AC)", 52.0, 32.0, 3),
            _spec("nissan-leaf-24", "Nissan Leaf 24 kWh (3.6 kW AC)", 21.0, 16.0, 1),
            _spec("nissan-leaf-40", "Nissan Leaf 40 kWh (6.6 kW AC)", 39.0, 29.0, 1),
            _spec("nissan-leaf-62", "Nissan Leaf e+ 62 kWh (6.6 kW AC)", 59.0, 29.0, 1),
            _spec("tesla-model-3-lr", "Tesla Model 3 Long Range (11 kW AC)", 75.0, 16.0, 3),
            _spec("tesla-model-y-lr", "Tesla Model Y Long Range (11 kW AC)", 75.0, 16.0, 3),
            _spec("tesla-model-s-85", "Tesla Model S 85 (11 kW AC)", 77.0, 16.0, 3),
            _spec("vw-id3-58", "Volkswagen ID.3 Pro 58 kWh (11 kW AC)", 58.0, 16.0, 3),
            _spec("vw-id4-77", "Volkswagen ID.4 Pro 77 kWh (11 kW AC)", 77.0, 16.0, 3),
            _spec("skoda-enyaq-80", "Skoda Enyaq iV 80 (11 kW AC)", 77.0, 16.0, 3),
            _spec(
                "hyundai-kona-64", "Hyundai Kona Electric 64 kWh 2021- (11 kW AC)", 64.0, 16.0, 3
            ),
            _spec(
                "hyundai-kona-64-2019",
                "Hyundai Kona Electric 64 kWh 2019-2020 (7.2 kW AC)",
                64.0,
                32.0,
                1,
            ),
            _spec("kia-e-niro-64", "Kia e-Niro 64 kWh 2019 (7.2 kW AC)", 64.0, 32.0, 1),
            _spec("bmw-i3-42", "BMW i3 120 Ah (42 kWh gross, 11 kW AC)", 37.9, 16.0, 3),
            _spec("audi-e-tron-55", "Audi e-tron 55 quattro (11 kW AC)", 86.5, 16.0, 3),
            _spec("jaguar-i-pace", "Jaguar I-Pace EV400 2018-2020 (7.4 kW AC)", 84.7, 32.0, 1),
            _spec("peugeot-e-208", "Peugeot e-208 50 kWh (7.4 kW AC)", 46.0, 32.0, 1),
            _spec("polestar-2-lr", "Polestar 2 Long Range (11 kW AC)", 75.0, 16.0, 3),
            # Plug-in hybrid: small battery, slow one-phase charger.
            _spec(
                "mitsubishi-outlander-phev",
                "Mitsubishi Outlander PHEV 2014-2018 (12 kWh gross, 3.7 kW AC)",
                10.0,
                16.0,
                1,
            ),
        )
    }
)

_INLINE_FIELDS = ("key", "name", "battery_kwh", "max_current_a", "phases")


def ev_from_json(value: str | Mapping[str, object], *, path: str = "ev") -> EVSpec:
    """An EV from a catalogue key or a manual entry.

    ``"renault-zoe-22"`` looks the model up in `CATALOGUE`; an object
    ``{"battery_kwh": 64, "max_current_a": 16, "phases": 3}`` (optionally with ``key``
    and ``name``) describes a car that is not in the catalogue. ``path`` prefixes error
    messages (``sessions[3].ev``).

    Raises ConfigError naming the offending field and what was expected.
    """
    if isinstance(value, str):
        try:
            return CATALOGUE[value]
        except KeyError:
            raise ConfigError(
                f"{path}: unknown EV model {value!r}; expected one of "
                f"{', '.join(sorted(CATALOGUE))}, or an object with battery_kwh, "
                "max_current_a and phases"
            ) from None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{path}: expected a catalogue key (string) or an object with battery_kwh, "
            f"max_current_a and phases, got {type(value).__name__}"
        )
    unknown = sorted(str(k) for k in value if k not in _INLINE_FIELDS)
    if unknown:
        raise ConfigError(
            f"{path}.{unknown[0]}: unknown field; expected only {', '.join(_INLINE_FIELDS)}"
        )
    battery_kwh = _number(value, "battery_kwh", path, above=0.0, at_most=MAX_BATTERY_KWH)
    max_current_a = _number(
        value, "max_current_a", path, above=MIN_CURRENT_A, at_most=MAX_EV_CURRENT_A, inclusive=True
    )
    phases = value.get("phases")
    if phases not in (1, 3) or isinstance(phases, bool):
        raise ConfigError(f"{path}.phases: must be 1 or 3 (got {phases!r})")
    assert isinstance(phases, int)
    key = _text(value, "key", path, default="custom")
    name = _text(
        value,
        "name",
        path,
        default=f"Custom EV ({battery_kwh:g} kWh, {phases}x{max_current_a:g} A)",
    )
    return EVSpec(key, name, battery_kwh, max_current_a, phases)


def ev_to_json(spec: EVSpec) -> str | dict[str, object]:
    """The JSON form `ev_from_json` reads back: the catalogue key when the spec is one."""
    if CATALOGUE.get(spec.key) == spec:
        return spec.key
    return {
        "key": spec.key,
        "name": spec.name,
        "battery_kwh": spec.battery_kwh,
        "max_current_a": spec.max_current_a,
        "phases": spec.phases,
    }


def _number(
    data: Mapping[str, object],
    field: str,
    path: str,
    *,
    above: float,
    at_most: float,
    inclusive: bool = False,
) -> float:
    """A finite number in (above, at_most], or [above, at_most] when ``inclusive``."""
    expected = f"a number {'>=' if inclusive else '>'} {above:g} and <= {at_most:g}"
    raw = data.get(field)
    if raw is None:
        raise ConfigError(f"{path}.{field}: required, expected {expected}")
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ConfigError(f"{path}.{field}: expected {expected}, got {raw!r}")
    low_ok = raw >= above if inclusive else raw > above
    if not (low_ok and raw <= at_most):
        raise ConfigError(f"{path}.{field}: expected {expected} (got {raw!r})")
    return float(raw)


def _text(data: Mapping[str, object], field: str, path: str, *, default: str) -> str:
    raw = data.get(field, default)
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{path}.{field}: expected a non-empty string, got {raw!r}")
    return raw


def max_current_at_soc(spec: EVSpec, soc: float) -> float:
    """The most current per phase the car accepts at this state of charge.

    Flat at the onboard charger limit up to `TAPER_START_SOC`, then a linear decline
    to `TAPER_END_A` (or the charger limit, if lower) just before 100 %, and 0 when full.
    """
    if soc >= 1.0:
        return 0.0
    if soc <= TAPER_START_SOC:
        return spec.max_current_a
    end_a = min(TAPER_END_A, spec.max_current_a)
    fraction = (soc - TAPER_START_SOC) / (1.0 - TAPER_START_SOC)
    return spec.max_current_a - (spec.max_current_a - end_a) * fraction


def draw_current_a(spec: EVSpec, soc: float, offered_a: float) -> float:
    """Current per phase the car draws when the station offers ``offered_a``.

    0 below 6 A offered (IEC 61851-1 minimum PWM current) and when full; otherwise
    the smallest of the offer, the onboard charger limit and the taper.
    """
    if offered_a < MIN_CURRENT_A or soc >= 1.0:
        return 0.0
    return min(offered_a, max_current_at_soc(spec, soc))


def effective_phases(spec: EVSpec, station_phases: int) -> int:
    """How many phases the car draws on at a station: the smaller of both."""
    return min(spec.phases, station_phases)


@dataclass(frozen=True)
class _Rates:
    """SoC per ampere-second and the taper's geometry for one charge() call."""

    soc_per_as: float
    flat_a: float  # current while the taper is not yet limiting
    flat_until_soc: float  # SoC where taper(SoC) falls to flat_a
    taper_slope_a: float  # A lost per unit SoC inside the taper (0: no taper)


def _rates(
    spec: EVSpec, current_a: float, voltage_v: float, efficiency: float, phases: int | None
) -> _Rates:
    if voltage_v <= 0:
        raise ValueError(f"voltage_v must be > 0, got {voltage_v}")
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
    used_phases = spec.phases if phases is None else effective_phases(spec, phases)
    soc_per_as = voltage_v * used_phases * efficiency / (spec.battery_kwh * 3_600_000.0)
    flat_a = max(0.0, min(current_a, spec.max_current_a))
    end_a = min(TAPER_END_A, spec.max_current_a)
    slope = (spec.max_current_a - end_a) / (1.0 - TAPER_START_SOC)
    if flat_a <= end_a or slope == 0:
        flat_until = 1.0
    else:
        flat_until = TAPER_START_SOC + (spec.max_current_a - flat_a) / slope
    return _Rates(soc_per_as, flat_a, flat_until, slope)


def charge(
    spec: EVSpec,
    soc: float,
    current_a: float,
    seconds: float,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    efficiency: float = 1.0,
    *,
    phases: int | None = None,
) -> tuple[float, float]:
    """Charge for ``seconds`` with at most ``current_a`` per phase.

    Returns ``(new_soc, energy_wh)``: the state of charge afterwards (never above 1.0)
    and the energy drawn from the grid, ``current x voltage x phases x hours`` integrated
    exactly, including the taper inside the step (so long steps are not optimistic).

    ``current_a`` is the ceiling on what the car draws, normally `draw_current_a`'s
    result; the 6 A rule is not applied here because a tapering car legitimately draws
    less than 6 A. ``phases`` is the station's phase count when the car is on a station
    with fewer phases than its charger; by default the car's own.
    """
    if soc < 0:
        raise ValueError(f"soc must be >= 0, got {soc}")
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    rates = _rates(spec, current_a, voltage_v, efficiency, phases)
    if soc >= 1.0 or rates.flat_a <= 0 or seconds == 0:
        return min(soc, 1.0), 0.0
    new_soc = soc
    remaining_s = seconds
    if new_soc < rates.flat_until_soc:
        flat_s = (rates.flat_until_soc - new_soc) / (rates.soc_per_as * rates.flat_a)
        if remaining_s <= flat_s:
            new_soc += rates.soc_per_as * rates.flat_a * remaining_s
            remaining_s = 0.0
        else:
            new_soc = rates.flat_until_soc
            remaining_s -= flat_s
    if remaining_s > 0 and new_soc < 1.0:
        # Inside the taper dSoC/dt = k * (M - b (SoC - s0)): the current decays
        # exponentially, u(t) = u0 exp(-b k t), until it reaches the end current at 100 %.
        u0 = max_current_at_soc(spec, new_soc)
        end_a = min(TAPER_END_A, spec.max_current_a)
        decay = rates.taper_slope_a * rates.soc_per_as
        u = u0 * math.exp(-decay * remaining_s)
        new_soc = 1.0 if u <= end_a else new_soc + (u0 - u) / rates.taper_slope_a
    new_soc = min(new_soc, 1.0)
    energy_wh = (new_soc - soc) * spec.battery_kwh * 1000.0 / efficiency
    return new_soc, energy_wh


def time_to_full_s(
    spec: EVSpec,
    soc: float,
    target_soc: float,
    current_a: float,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    efficiency: float = 1.0,
    *,
    phases: int | None = None,
) -> float:
    """Seconds until ``target_soc`` at a steady offer of ``current_a`` (ETA displays).

    The exact inverse of `charge`: 0 when already there, ``math.inf`` when the car
    cannot charge (no current, or less than 6 A offered).
    """
    target = min(target_soc, 1.0)
    if soc >= target:
        return 0.0
    if current_a < MIN_CURRENT_A:
        return math.inf
    rates = _rates(spec, current_a, voltage_v, efficiency, phases)
    seconds = 0.0
    position = soc
    if position < rates.flat_until_soc:
        flat_end = min(target, rates.flat_until_soc)
        seconds += (flat_end - position) / (rates.soc_per_as * rates.flat_a)
        position = flat_end
    if position < target:
        u_start = max_current_at_soc(spec, position)
        end_a = min(TAPER_END_A, spec.max_current_a)
        u_target = end_a if target >= 1.0 else max_current_at_soc(spec, target)
        seconds += math.log(u_start / u_target) / (rates.taper_slope_a * rates.soc_per_as)
    return seconds
