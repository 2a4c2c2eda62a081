"""What a charger says it can do, read with GetConfiguration instead of typed by a person.

OCPP 1.6 section 9.4 (Smart Charging) and 9.1 (Core) configuration keys:

* ``ChargingScheduleAllowedChargingRateUnit``: ``Current``, ``Power`` or both (CSL). A
  charger that allows only ``Power`` rejects every profile in A, so it gets W.
* ``ChargeProfileMaxStackLevel``: 0 means the charger accepts only stack level 0 (the
  quirk of ABB Terra AC, Wallbox, Zaptec, FIELD-NOTES).
* ``MaxChargingProfilesInstalled``, ``ChargingScheduleMaxPeriods``: limits of the charger.
* ``ConnectorPhaseRotation`` (section 9.1.7): a CSL like ``0.RST, 1.RST, 2.RTS``; per
  connector ``NotApplicable`` (single phase or DC), ``Unknown``, or the order of the grid
  phases R, S, T (= L1, L2, L3) on the connector's phases 1, 2, 3. ``1.STR``: the
  station's L1 is on supply L2, its L2 on L3, its L3 on L1, i.e. wiring ``L2L3L1``.
* ``MeterValueSampleInterval`` (s) and ``MeterValuesSampledData`` (CSL of measurands).

`parse_configuration` is pure and takes whatever a charger answers: unknown keys, missing
values, lowercase, spaces and junk all become ``None`` for that field, never an error.
`read_capabilities` asks a connected charger. ``AuthorizationKey`` is write-only (OCPP 1.6
security whitepaper) but some chargers still report it: it is never asked for, never
parsed, never returned and never logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from csms.errors import GarageGridError

log = logging.getLogger("csms.controller.capabilities")

RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"
MAX_STACK_LEVEL_KEY = "ChargeProfileMaxStackLevel"
MAX_PROFILES_KEY = "MaxChargingProfilesInstalled"
MAX_PERIODS_KEY = "ChargingScheduleMaxPeriods"
PHASE_ROTATION_KEY = "ConnectorPhaseRotation"
SAMPLE_INTERVAL_KEY = "MeterValueSampleInterval"
SAMPLED_DATA_KEY = "MeterValuesSampledData"

# Exactly what GetConfiguration.req asks for (OCPP 1.6 sections 9.1 and 9.4 spellings).
CAPABILITY_KEYS: tuple[str, ...] = (
    RATE_UNIT_KEY,
    MAX_STACK_LEVEL_KEY,
    MAX_PROFILES_KEY,
    MAX_PERIODS_KEY,
    PHASE_ROTATION_KEY,
    SAMPLE_INTERVAL_KEY,
    SAMPLED_DATA_KEY,
)

CURRENT = "Current"
POWER = "Power"
NOT_APPLICABLE = "NotApplicable"
UNKNOWN = "Unknown"

# Rate unit spellings seen in the field, lowercased -> the OCPP 1.6 name.
_RATE_UNITS: dict[str, str] = {"current": CURRENT, "a": CURRENT, "power": POWER, "w": POWER}
# Grid phase letters of spec 9.1.7: R = L1, S = L2, T = L3.
_SUPPLY_PHASE: dict[str, str] = {"R": "L1", "S": "L2", "T": "L3"}
# "1.STR"; a bare "STR" (no connector, seen in the field) is taken for connector 0.
_ROTATION_ITEM = re.compile(r"^\s*(?:(\d{1,3})\s*[.:]\s*)?([A-Za-z]+)\s*$")
_ROTATIONS = frozenset({"RST", "RTS", "SRT", "STR", "TRS", "TSR"})
_SPECIAL_ROTATIONS = {"notapplicable": NOT_APPLICABLE, "unknown": UNKNOWN}
# Far above any real charger; a number beyond this is junk, not a capability.
_MAX_SANE_INT = 1_000_000


@dataclass(frozen=True)
class Capabilities:
    """What a charger reported; ``None``: not reported, not supported or unreadable.

    ``rate_units``: subset of {"Current", "Power"}. ``phase_rotation``: connector id ->
    ``"RST"``-style order, ``"NotApplicable"`` or ``"Unknown"`` (connector 0: between the
    grid connection and the main meter).
    """

    rate_units: frozenset[str] | None
    max_stack_level: int | None
    max_profiles: int | None
    max_periods: int | None
    phase_rotation: dict[int, str] | None
    meter_sample_interval_s: int | None
    sampled_data: tuple[str, ...] | None


NOTHING_KNOWN = Capabilities(None, None, None, None, None, None, None)


# ------------------------------------------------------------------ parsing
def parse_configuration(answer: Mapping[str, Any]) -> Capabilities:
    """The capabilities in a GetConfiguration.conf payload (pure; junk -> ``None``).

    Keys are matched without regard to case or surrounding spaces; the first entry of a
    key wins. Keys other than `CAPABILITY_KEYS` (``AuthorizationKey`` among them) are
    ignored without being read.
    """
    values = _values(answer)
    return Capabilities(
        rate_units=_rate_units(values.get(RATE_UNIT_KEY.lower())),
        max_stack_level=_int(values.get(MAX_STACK_LEVEL_KEY.lower()), minimum=0),
        max_profiles=_int(values.get(MAX_PROFILES_KEY.lower()), minimum=0),
        max_periods=_int(values.get(MAX_PERIODS_KEY.lower()), minimum=1),
        phase_rotation=_phase_rotation(values.get(PHASE_ROTATION_KEY.lower())),
        meter_sample_interval_s=_int(values.get(SAMPLE_INTERVAL_KEY.lower()), minimum=0),
        sampled_data=_csl(values.get(SAMPLED_DATA_KEY.lower())),
    )


def _values(answer: Mapping[str, Any]) -> dict[str, Any]:
    """Lowercased capability key -> reported value (only the keys we asked for)."""
    wanted = {k.lower() for k in CAPABILITY_KEYS}
    entries = answer.get("configurationKey") if isinstance(answer, Mapping) else None
    out: dict[str, Any] = {}
    if not isinstance(entries, list):
        return out
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        key = entry.get("key")
        if not isinstance(key, str):
            continue
        name = key.strip().lower()
        if name in wanted and name not in out:
            out[name] = entry.get("value")
    return out


def _int(value: Any, *, minimum: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*\+?\d{1,9}\s*", value):
        number = int(value)
    else:
        return None
    return number if minimum <= number <= _MAX_SANE_INT else None


def _csl(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, str):
        return None
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _rate_units(value: Any) -> frozenset[str] | None:
    items = _csl(value)
    if items is None:
        return None
    units = frozenset(_RATE_UNITS[i.lower()] for i in items if i.lower() in _RATE_UNITS)
    return units or None


def _phase_rotation(value: Any) -> dict[int, str] | None:
    items = _csl(value)
    if items is None:
        return None
    out: dict[int, str] = {}
    for item in items:
        match = _ROTATION_ITEM.match(item)
        if match is None:
            continue
        connector, rotation = int(match.group(1) or 0), match.group(2)
        canonical = _SPECIAL_ROTATIONS.get(rotation.lower()) or (
            rotation.upper() if rotation.upper() in _ROTATIONS else None
        )
        if canonical is not None and connector not in out:
            out[connector] = canonical
    return out or None


# ------------------------------------------------------------ derived values
def preferred_rate_unit(caps: Capabilities | None, current_quirk: str) -> str:
    """The unit to send profiles in: ``"W"`` when the charger allows only Power, ``"A"``
    when it allows Current, else (nothing usable reported) ``current_quirk``, the unit
    stored for the charger so far."""
    units = caps.rate_units if caps is not None else None
    if not units:
        return current_quirk
    if CURRENT in units:
        return "A"
    return "W"


def wiring_from_rotation(caps: Capabilities | None, connector_id: int, phases: int) -> str | None:
    """Wiring (``"L2L3L1"``; one phase: ``"L2"``) of ``connector_id`` from its reported
    ConnectorPhaseRotation; connector 0's entry when the connector has none. ``None`` when
    nothing usable was reported (missing, ``NotApplicable``, ``Unknown``)."""
    rotation = caps.phase_rotation if caps is not None else None
    if not rotation or phases not in (1, 3):
        return None
    order = rotation.get(connector_id, rotation.get(0))
    if order is None or order not in _ROTATIONS:
        return None
    return "".join(_SUPPLY_PHASE[letter] for letter in order[:phases])


def default_wiring(phases: int) -> str:
    """The wiring a station gets when nobody says otherwise."""
    return "L1L2L3" if phases == 3 else "L1"


def charger_may_set_wiring(wiring: str, wiring_set_by: str, phases: int) -> bool:
    """Whether a wiring read from ConnectorPhaseRotation may replace ``wiring``.

    The rule: a wiring a manager typed wins. Yes when the charger set the current one
    (``wiring_set_by == "charger"``), or when it is still the default for its phase count
    (``L1L2L3`` / ``L1``, which says nothing); no for any other wiring a manager set.
    """
    return wiring_set_by == "charger" or wiring.upper() == default_wiring(phases)


def station_wiring(caps: Capabilities | None, phases: int) -> str | None:
    """One wiring for the whole station: the connectors' (> 0) rotations when the known
    ones all agree (``NotApplicable`` / ``Unknown`` say nothing), connector 0's when no
    connector reported a known one; ``None`` when they disagree (a station has one wiring
    in GarageGrid, so a person has to decide) or nothing is known."""
    rotation = caps.phase_rotation if caps is not None else None
    if not rotation:
        return None
    connectors = sorted(c for c in rotation if c > 0)
    if not connectors:
        return wiring_from_rotation(caps, 0, phases)
    found = {wiring_from_rotation(caps, c, phases) for c in connectors} - {None}
    if not found:
        return wiring_from_rotation(caps, 0, phases)
    return found.pop() if len(found) == 1 else None


# -------------------------------------------------------------- JSON (store)
def capabilities_to_json(caps: Capabilities) -> dict[str, Any]:
    """A JSON object for the ``charge_points.capabilities`` column."""
    return {
        "rate_units": sorted(caps.rate_units) if caps.rate_units is not None else None,
        "max_stack_level": caps.max_stack_level,
        "max_profiles": caps.max_profiles,
        "max_periods": caps.max_periods,
        "phase_rotation": (
            {str(k): v for k, v in sorted(caps.phase_rotation.items())}
            if caps.phase_rotation is not None
            else None
        ),
        "meter_sample_interval_s": caps.meter_sample_interval_s,
        "sampled_data": list(caps.sampled_data) if caps.sampled_data is not None else None,
    }


def capabilities_from_json(data: Any) -> Capabilities | None:
    """The inverse of `capabilities_to_json`; ``None`` for ``None``; junk fields -> ``None``."""
    if not isinstance(data, Mapping):
        return None
    units = data.get("rate_units")
    rotation = data.get("phase_rotation")
    sampled = data.get("sampled_data")

    def number(name: str) -> int | None:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return Capabilities(
        rate_units=(
            frozenset(u for u in units if u in (CURRENT, POWER))
            if isinstance(units, list)
            else None
        ),
        max_stack_level=number("max_stack_level"),
        max_profiles=number("max_profiles"),
        max_periods=number("max_periods"),
        phase_rotation=(
            {int(k): str(v) for k, v in rotation.items() if str(k).isdigit()}
            if isinstance(rotation, Mapping)
            else None
        ),
        meter_sample_interval_s=number("meter_sample_interval_s"),
        sampled_data=(tuple(str(x) for x in sampled) if isinstance(sampled, list) else None),
    )


def describe(caps: Capabilities | None) -> dict[str, str]:
    """Short human texts (rate unit, stack level, phase rotation...) for the CLI and monitor."""
    if caps is None:
        return {}

    def text(value: int | None) -> str:
        return "?" if value is None else str(value)

    return {
        "rate_units": ",".join(sorted(caps.rate_units)) if caps.rate_units else "?",
        "max_stack_level": text(caps.max_stack_level),
        "max_profiles": text(caps.max_profiles),
        "max_periods": text(caps.max_periods),
        "phase_rotation": (
            ", ".join(f"{c}.{r}" for c, r in sorted(caps.phase_rotation.items()))
            if caps.phase_rotation
            else "?"
        ),
        "meter_sample_interval_s": text(caps.meter_sample_interval_s),
        "sampled_data": ",".join(caps.sampled_data) if caps.sampled_data is not None else "?",
    }


# ------------------------------------------------------------------ reading
CallFn = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def read_capabilities(call: CallFn, cp_id: str) -> Capabilities | None:
    """Ask ``cp_id`` for `CAPABILITY_KEYS` with GetConfiguration; ``None`` if it failed.

    ``call`` is ``CentralSystem.call`` (or anything with its signature). A CALLERROR, a
    timeout or a charger that is gone is logged and gives ``None``: the caller keeps what
    it knew. Only the parsed capabilities are logged, never the raw answer (it may carry
    ``AuthorizationKey``).
    """
    try:
        answer = await call(cp_id, "GetConfiguration", {"key": list(CAPABILITY_KEYS)})
    except GarageGridError as exc:
        log.warning(
            "charger capabilities not read",
            extra={"cp_id": cp_id, "error": f"{type(exc).__name__}: {exc}"},
        )
        return None
    if not isinstance(answer, Mapping):
        log.warning("charger capabilities not read", extra={"cp_id": cp_id, "error": "no answer"})
        return None
    caps = parse_configuration(answer)
    unknown = answer.get("unknownKey")
    log.info(
        "charger capabilities read",
        extra={
            "cp_id": cp_id,
            **{f"cap_{k}": v for k, v in describe(caps).items()},
            "unknown_keys": ",".join(
                k for k in (unknown if isinstance(unknown, list) else []) if k in CAPABILITY_KEYS
            ),
        },
    )
    return caps
