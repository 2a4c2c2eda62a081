"""Scenarios: a site, its stations and the cars that come and go.

One format, one loader, used by the virtual chargers (which cars plug in where and when)
and by the load-management simulation (`csms simulate`, `csms bench`). Pure: parsing
and generating only; reading a file is the one I/O, in `load_scenario`.

The JSON format::

    {"name": "garage-20",
     "description": "optional free text",
     "site": {"fuse_limit_a": 63, "margin_a": 2, "phases": 3, "voltage_v": 230},
     "start": "2026-01-05T16:00:00+02:00",
     "stations": [{"id": "CP01", "name": "Apt A1", "max_current_a": 32, "phases": 3,
                   "wiring": "L2L3L1"}],
     "sessions": [{"station": "CP01", "id_tag": "TAG01", "arrival_s": 0,
                   "departure_s": 50400, "ev": "renault-zoe-22",
                   "soc_start": 0.2, "soc_target": 0.9}]}

* ``site``: fuse limit per phase (A), safety margin (A, default 0), supply phases (1 or
  3, default 3), nominal phase voltage (V, default 230).
* ``start``: ISO 8601 with a UTC offset; optional (absent or null: the caller decides,
  usually "now"). ``arrival_s``/``departure_s`` count seconds from it.
* ``stations[].wiring``: which supply phase each station phase is connected to. A
  one-phase station names one phase (``"L2"``); a three-phase one a permutation such as
  ``"L2L3L1"`` (phase rotation, so that one-phase cars do not all load L1). Default
  ``"L1L2L3"`` or ``"L1"``. A one-phase car draws only on the first phase of its
  station's wiring. Default ``name`` is the id, default ``phases`` the site's.
* ``sessions[].ev``: a catalogue key (`csms.ev.CATALOGUE`) or a manual entry
  ``{"battery_kwh": 64, "max_current_a": 16, "phases": 3}``.
* Energy: ``soc_start`` and ``soc_target`` (fractions 0-1), or ``energy_kwh`` (energy
  to deliver, as a meter would count it). With ``energy_kwh`` alone the need is placed
  just below the taper: ``soc_target = max(0.8, energy/battery)`` and
  ``soc_start = soc_target - energy/battery``; with ``energy_kwh`` and one of the SoCs
  the other follows. Energy that does not fit the battery is an error.
* Sessions on one station must not overlap in time (touching is fine).
* Keys beginning with ``_`` are comments and ignored; any other unknown key is an error,
  so that typos do not go unnoticed.

Errors are `ConfigError` whose message names the source, the field path and what was
expected: ``garage.json: sessions[3].departure_s: must be greater than arrival_s (got
100 <= 200)``.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

from csms.errors import ConfigError
from csms.ev import (
    CATALOGUE,
    DEFAULT_VOLTAGE_V,
    MAX_EV_CURRENT_A,
    MIN_CURRENT_A,
    TAPER_START_SOC,
    EVSpec,
    effective_phases,
    ev_from_json,
    ev_to_json,
)

SUPPLY_PHASES = ("L1", "L2", "L3")
ENERGY_ONLY_TARGET_SOC = TAPER_START_SOC
"""Target SoC when a session gives only ``energy_kwh``: the need sits below the taper."""

MAX_ID_TAG_LENGTH = 20
"""OCPP 1.6 IdToken is a CiString20Type."""

MAX_STATION_ID_LENGTH = 48
"""OCPP 1.6 chargeBoxIdentity is a CiString48Type; it is also a URL path segment."""

BUILTIN_SCENARIOS: tuple[str, ...] = ("thesis", "garage-20", "garage-100")

STANDARD_FUSES_A = (16, 20, 25, 35, 50, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630)
"""IEC 60269 gG fuse ratings commonly used as main fuses of residential buildings."""


@dataclass(frozen=True)
class ScenarioSite:
    """The shared supply: fuse per phase, safety margin, phases, nominal voltage."""

    fuse_limit_a: float
    margin_a: float = 0.0
    phases: int = 3
    voltage_v: float = DEFAULT_VOLTAGE_V

    @property
    def available_a(self) -> float:
        """Current per phase the chargers may use together."""
        return self.fuse_limit_a - self.margin_a


@dataclass(frozen=True)
class ScenarioStation:
    """A charge point with one connector."""

    id: str
    name: str
    max_current_a: float
    phases: int
    wiring: tuple[str, ...]

    def supply_phases(self, ev: EVSpec) -> tuple[str, ...]:
        """The supply phases ``ev`` loads here: a one-phase car only the first one."""
        return self.wiring[: effective_phases(ev, self.phases)]


@dataclass(frozen=True)
class ScenarioSession:
    """One car's stay at one station."""

    station: str
    id_tag: str
    arrival_s: float
    departure_s: float
    ev: EVSpec
    soc_start: float
    soc_target: float

    @property
    def energy_needed_kwh(self) -> float:
        """Energy to deliver to reach ``soc_target`` (grid-side, see `csms.ev`)."""
        return max(0.0, self.soc_target - self.soc_start) * self.ev.battery_kwh

    @property
    def duration_s(self) -> float:
        return self.departure_s - self.arrival_s


@dataclass(frozen=True)
class Scenario:
    """A complete, validated scenario."""

    name: str
    site: ScenarioSite
    start: datetime | None
    stations: tuple[ScenarioStation, ...]
    sessions: tuple[ScenarioSession, ...]
    description: str = ""

    def station(self, station_id: str) -> ScenarioStation:
        for station in self.stations:
            if station.id == station_id:
                return station
        raise KeyError(station_id)

    @property
    def horizon_s(self) -> float:
        """Seconds from start until the last car leaves (0 without sessions)."""
        return max((s.departure_s for s in self.sessions), default=0.0)

    @property
    def energy_needed_kwh(self) -> float:
        return sum(s.energy_needed_kwh for s in self.sessions)


# --- parsing ---------------------------------------------------------------------------


class _FieldError(Exception):
    """A field is wrong; turned into ConfigError with the source by parse_scenario."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def parse_scenario(data: object, source: str = "<scenario>") -> Scenario:
    """Validate decoded JSON and build a Scenario; ConfigError names what is wrong."""
    try:
        return _parse(data)
    except _FieldError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except ConfigError as exc:  # from ev_from_json, already carries the field path
        raise ConfigError(f"{source}: {exc}") from None


def _parse(data: object) -> Scenario:
    top = _object(data, "scenario")
    _only(top, "", ("name", "description", "site", "start", "stations", "sessions"))
    name = _text(top, "name", "")
    description = _text(top, "description", "", default="", allow_empty=True)
    site = _parse_site(_object(top.get("site"), "site"))
    start = _parse_start(top.get("start"))
    stations = _parse_stations(top.get("stations"), site)
    sessions = _parse_sessions(top.get("sessions", []), {s.id: s for s in stations})
    return Scenario(name, site, start, stations, sessions, description)


def _parse_site(raw: Mapping[str, object]) -> ScenarioSite:
    _only(raw, "site", ("fuse_limit_a", "margin_a", "phases", "voltage_v"))
    fuse = _number(raw, "fuse_limit_a", "site", above=0, at_most=10_000)
    margin = _number(raw, "margin_a", "site", default=0.0, at_least=0, at_most=10_000)
    if margin >= fuse:
        raise _FieldError(
            "site.margin_a", f"must be smaller than fuse_limit_a (got {margin:g} >= {fuse:g})"
        )
    phases = _phases(raw, "site", default=3)
    voltage = _number(raw, "voltage_v", "site", default=DEFAULT_VOLTAGE_V, above=0, at_most=1000)
    return ScenarioSite(fuse, margin, phases, voltage)


def _parse_start(raw: object) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _FieldError("start", f"expected an ISO 8601 date-time string or null, got {raw!r}")
    try:
        start = datetime.fromisoformat(raw)
    except ValueError:
        raise _FieldError(
            "start", f"expected an ISO 8601 date-time like 2026-01-05T16:00:00+02:00 (got {raw!r})"
        ) from None
    if start.utcoffset() is None:
        raise _FieldError("start", f"must include a UTC offset, e.g. +02:00 or Z (got {raw!r})")
    return start


def _parse_stations(raw: object, site: ScenarioSite) -> tuple[ScenarioStation, ...]:
    items = _array(raw, "stations")
    if not items:
        raise _FieldError("stations", "expected at least one station")
    stations: list[ScenarioStation] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        path = f"stations[{index}]"
        obj = _object(item, path)
        _only(obj, path, ("id", "name", "max_current_a", "phases", "wiring"))
        station_id = _text(obj, "id", path)
        if len(station_id) > MAX_STATION_ID_LENGTH or re.search(r"[\s/?#%]", station_id):
            raise _FieldError(
                f"{path}.id",
                f"expected at most {MAX_STATION_ID_LENGTH} characters without spaces, '/', "
                f"'?', '#' or '%' (it is the charge point's URL path segment; got {station_id!r})",
            )
        if station_id in first_index:
            raise _FieldError(
                f"{path}.id",
                f"duplicate station id {station_id!r} (also stations[{first_index[station_id]}])",
            )
        first_index[station_id] = index
        name = _text(obj, "name", path, default=station_id)
        max_current_a = _number(
            obj, "max_current_a", path, at_least=MIN_CURRENT_A, at_most=MAX_EV_CURRENT_A
        )
        phases = _phases(obj, path, default=site.phases)
        if phases > site.phases:
            raise _FieldError(
                f"{path}.phases",
                f"a {phases}-phase station needs a {phases}-phase site (site.phases is "
                f"{site.phases})",
            )
        wiring = _parse_wiring(obj.get("wiring"), f"{path}.wiring", phases, site.phases)
        stations.append(ScenarioStation(station_id, name, max_current_a, phases, wiring))
    return tuple(stations)


def _parse_wiring(raw: object, path: str, phases: int, site_phases: int) -> tuple[str, ...]:
    if raw is None:
        return SUPPLY_PHASES[:phases]
    if isinstance(raw, str):
        parts = re.findall(r"L[123]", raw.upper())
        if "".join(parts) != raw.upper():
            parts = []
    elif isinstance(raw, list) and all(isinstance(p, str) for p in raw):
        parts = [str(p).upper() for p in raw]
    else:
        parts = []
    allowed = SUPPLY_PHASES[:site_phases]
    if phases == 1:
        if len(parts) != 1 or parts[0] not in allowed:
            raise _FieldError(
                path, f"expected one of {', '.join(allowed)} for a one-phase station (got {raw!r})"
            )
    elif sorted(parts) != list(SUPPLY_PHASES):
        raise _FieldError(
            path,
            "expected the three phases L1, L2, L3 each once, such as 'L1L2L3' or 'L2L3L1' "
            f"for a three-phase station (got {raw!r})",
        )
    return tuple(parts)


def _parse_sessions(
    raw: object, stations: Mapping[str, ScenarioStation]
) -> tuple[ScenarioSession, ...]:
    sessions = tuple(
        _parse_session(item, f"sessions[{index}]", stations)
        for index, item in enumerate(_array(raw, "sessions"))
    )
    _check_no_overlap(sessions)
    return sessions


_SESSION_FIELDS = (
    "station",
    "id_tag",
    "arrival_s",
    "departure_s",
    "ev",
    "soc_start",
    "soc_target",
    "energy_kwh",
)


def _parse_session(
    item: object, path: str, stations: Mapping[str, ScenarioStation]
) -> ScenarioSession:
    obj = _object(item, path)
    _only(obj, path, _SESSION_FIELDS)
    station = _text(obj, "station", path)
    if station not in stations:
        raise _FieldError(
            f"{path}.station", f"unknown station {station!r}; expected the id of one of stations"
        )
    id_tag = _text(obj, "id_tag", path)
    if len(id_tag) > MAX_ID_TAG_LENGTH:
        raise _FieldError(
            f"{path}.id_tag",
            f"expected at most {MAX_ID_TAG_LENGTH} characters (OCPP 1.6 IdToken; got {id_tag!r})",
        )
    arrival_s = _number(obj, "arrival_s", path, at_least=0)
    departure_s = _number(obj, "departure_s", path, at_least=0)
    if departure_s <= arrival_s:
        raise _FieldError(
            f"{path}.departure_s",
            f"must be greater than arrival_s (got {departure_s:g} <= {arrival_s:g})",
        )
    raw_ev = obj.get("ev")
    if raw_ev is None:
        raise _FieldError(f"{path}.ev", "required, expected a catalogue key or an object")
    if not isinstance(raw_ev, str | Mapping):
        raise _FieldError(
            f"{path}.ev", f"expected a catalogue key or an object, got {type(raw_ev).__name__}"
        )
    ev_value = raw_ev if isinstance(raw_ev, str) else _str_keys(raw_ev, f"{path}.ev")
    ev = ev_from_json(ev_value, path=f"{path}.ev")
    soc_start, soc_target = _parse_energy(obj, path, ev)
    return ScenarioSession(station, id_tag, arrival_s, departure_s, ev, soc_start, soc_target)


def _parse_energy(obj: Mapping[str, object], path: str, ev: EVSpec) -> tuple[float, float]:
    has_start = obj.get("soc_start") is not None
    has_target = obj.get("soc_target") is not None
    if obj.get("energy_kwh") is None:
        if not (has_start and has_target):
            missing = "soc_start" if not has_start else "soc_target"
            raise _FieldError(
                f"{path}.{missing}", "required unless energy_kwh is given, expected 0 to 1"
            )
        soc_start = _number(obj, "soc_start", path, at_least=0, at_most=1)
        soc_target = _number(obj, "soc_target", path, at_least=0, at_most=1)
        if soc_target < soc_start:
            raise _FieldError(
                f"{path}.soc_target",
                f"must be at least soc_start (got {soc_target:g} < {soc_start:g})",
            )
        return soc_start, soc_target
    if has_start and has_target:
        raise _FieldError(
            f"{path}.energy_kwh", "give energy_kwh or soc_start and soc_target, not all three"
        )
    energy = _number(obj, "energy_kwh", path, at_least=0, at_most=10_000)
    fraction = energy / ev.battery_kwh
    if fraction > 1 + 1e-9:
        raise _FieldError(
            f"{path}.energy_kwh",
            f"{energy:g} kWh does not fit the {ev.battery_kwh:g} kWh battery of {ev.name}",
        )
    if has_start:
        soc_start = _number(obj, "soc_start", path, at_least=0, at_most=1)
        if soc_start + fraction > 1 + 1e-9:
            raise _FieldError(
                f"{path}.energy_kwh",
                f"soc_start {soc_start:g} plus {energy:g} kWh exceeds a full battery "
                f"({ev.battery_kwh:g} kWh)",
            )
        return soc_start, min(1.0, soc_start + fraction)
    if has_target:
        soc_target = _number(obj, "soc_target", path, at_least=0, at_most=1)
        if soc_target - fraction < -1e-9:
            raise _FieldError(
                f"{path}.energy_kwh",
                f"{energy:g} kWh is more than soc_target {soc_target:g} of the "
                f"{ev.battery_kwh:g} kWh battery",
            )
        return max(0.0, soc_target - fraction), soc_target
    soc_target = min(1.0, max(ENERGY_ONLY_TARGET_SOC, fraction))
    return max(0.0, soc_target - fraction), soc_target


def _check_no_overlap(sessions: Sequence[ScenarioSession]) -> None:
    by_station: dict[str, list[tuple[int, ScenarioSession]]] = {}
    for index, session in enumerate(sessions):
        by_station.setdefault(session.station, []).append((index, session))
    for station, indexed in by_station.items():
        ordered = sorted(indexed, key=lambda pair: (pair[1].arrival_s, pair[0]))
        for (i_prev, prev), (i_next, nxt) in itertools.pairwise(ordered):
            if nxt.arrival_s < prev.departure_s:
                later = max(i_prev, i_next)
                earlier = min(i_prev, i_next)
                raise _FieldError(
                    f"sessions[{later}].arrival_s",
                    f"overlaps sessions[{earlier}] on station {station!r} "
                    f"({nxt.arrival_s:g} < {prev.departure_s:g}); sessions on one station "
                    "must not overlap",
                )


# --- small typed readers ---------------------------------------------------------------


def _object(raw: object, path: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        got = "nothing" if raw is None else type(raw).__name__
        raise _FieldError(path, f"expected an object, got {got}")
    return _str_keys(raw, path)


def _str_keys(raw: Mapping[object, object], path: str) -> Mapping[str, object]:
    out: dict[str, object] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise _FieldError(path, f"keys must be strings, got {key!r}")
        out[key] = value
    return out


def _array(raw: object, path: str) -> list[object]:
    if not isinstance(raw, list):
        got = "nothing" if raw is None else type(raw).__name__
        raise _FieldError(path, f"expected an array, got {got}")
    return list(raw)


def _only(obj: Mapping[str, object], path: str, allowed: Sequence[str]) -> None:
    for key in obj:
        if key not in allowed and not key.startswith("_"):
            where = f"{path}.{key}" if path else key
            raise _FieldError(where, f"unknown field; expected one of {', '.join(allowed)}")


def _field(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _text(
    obj: Mapping[str, object],
    key: str,
    path: str,
    *,
    default: str | None = None,
    allow_empty: bool = False,
) -> str:
    raw = obj.get(key)
    if raw is None:
        if default is None:
            raise _FieldError(_field(path, key), "required, expected a non-empty string")
        return default
    if not isinstance(raw, str) or not (allow_empty or raw.strip()):
        raise _FieldError(_field(path, key), f"expected a non-empty string, got {raw!r}")
    return raw


def _number(
    obj: Mapping[str, object],
    key: str,
    path: str,
    *,
    default: float | None = None,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> float:
    bounds = []
    if above is not None:
        bounds.append(f"> {above:g}")
    if at_least is not None:
        bounds.append(f">= {at_least:g}")
    if at_most is not None:
        bounds.append(f"<= {at_most:g}")
    expected = "a number" + (f" {' and '.join(bounds)}" if bounds else "")
    raw = obj.get(key)
    if raw is None:
        if default is None:
            raise _FieldError(_field(path, key), f"required, expected {expected}")
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise _FieldError(_field(path, key), f"expected {expected}, got {raw!r}")
    value = float(raw)
    if (
        (above is not None and not value > above)
        or (at_least is not None and value < at_least)
        or (at_most is not None and value > at_most)
    ):
        raise _FieldError(_field(path, key), f"expected {expected} (got {raw!r})")
    return value


def _phases(obj: Mapping[str, object], path: str, *, default: int) -> int:
    raw = obj.get("phases", default)
    if isinstance(raw, bool) or raw not in (1, 3):
        raise _FieldError(_field(path, "phases"), f"must be 1 or 3 (got {raw!r})")
    assert isinstance(raw, int)
    return raw


# --- writing ---------------------------------------------------------------------------


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def scenario_to_dict(scenario: Scenario) -> dict[str, object]:
    """The JSON form; ``parse_scenario(scenario_to_dict(s)) == s``."""
    out: dict[str, object] = {"name": scenario.name}
    if scenario.description:
        out["description"] = scenario.description
    site = scenario.site
    out["site"] = {
        "fuse_limit_a": _json_number(site.fuse_limit_a),
        "margin_a": _json_number(site.margin_a),
        "phases": site.phases,
        "voltage_v": _json_number(site.voltage_v),
    }
    if scenario.start is not None:
        out["start"] = scenario.start.isoformat()
    out["stations"] = [
        {
            "id": st.id,
            "name": st.name,
            "max_current_a": _json_number(st.max_current_a),
            "phases": st.phases,
            "wiring": "".join(st.wiring),
        }
        for st in scenario.stations
    ]
    out["sessions"] = [
        {
            "station": se.station,
            "id_tag": se.id_tag,
            "arrival_s": _json_number(se.arrival_s),
            "departure_s": _json_number(se.departure_s),
            "ev": ev_to_json(se.ev),
            "soc_start": _json_number(se.soc_start),
            "soc_target": _json_number(se.soc_target),
        }
        for se in scenario.sessions
    ]
    return out


def validate_scenario(scenario: Scenario, source: str = "<scenario>") -> Scenario:
    """``scenario`` itself if it obeys every rule of the JSON format; else ConfigError.

    For scenarios built in code (generator, real data), so that they are exactly as
    valid as a file would have to be.
    """
    parse_scenario(scenario_to_dict(scenario), source=source)
    return scenario


# --- loading ---------------------------------------------------------------------------


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, a real-data one (`csms.datasets`), or a JSON file."""
    if name_or_path in BUILTIN_SCENARIOS:
        return builtin_scenario(name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        from csms import datasets  # here, not at the top: datasets imports this module

        if name_or_path in datasets.DATASET_SCENARIOS:
            return datasets.DATASET_SCENARIOS[name_or_path]()
        raise ConfigError(
            f"scenario {name_or_path!r}: no such file, and not a built-in scenario (expected "
            f"a path to a .json file or one of "
            f"{', '.join((*BUILTIN_SCENARIOS, *datasets.DATASET_SCENARIOS))})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read scenario file: {exc}") from exc
    return parse_scenario(_decode_json(text, str(path)), source=str(path))


def _decode_json(text: str, source: str) -> object:
    try:
        decoded: object = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    return decoded


@functools.cache
def builtin_scenario(name: str) -> Scenario:
    """One of `BUILTIN_SCENARIOS`; ConfigError for any other name."""
    if name == "thesis":
        source = f"csms/scenarios/{name}.json"
        text = resources.files("csms").joinpath("scenarios", f"{name}.json").read_text("utf-8")
        return parse_scenario(_decode_json(text, source), source=source)
    if name == "garage-20":
        return make_garage_scenario(20, seed=2, fuse_limit_a=63, name="garage-20")
    if name == "garage-100":
        return make_garage_scenario(100, seed=100, fuse_limit_a=125, name="garage-100")
    raise ConfigError(
        f"scenario {name!r}: not a built-in scenario (expected one of "
        f"{', '.join(BUILTIN_SCENARIOS)})"
    )


# --- generating ------------------------------------------------------------------------

DEFAULT_GARAGE_START = datetime(2026, 1, 5, 16, 0, tzinfo=timezone(timedelta(hours=2)))
"""A Monday evening in January, Finnish winter time."""

# (max A per phase, phases, weight): mostly 11 kW and 22 kW wallboxes, some one-phase.
_STATION_TYPES = ((16.0, 3, 55), (32.0, 3, 20), (16.0, 1, 10), (32.0, 1, 15))
_THREE_PHASE_ROTATIONS = (("L1", "L2", "L3"), ("L2", "L3", "L1"), ("L3", "L1", "L2"))

# Residents' cars, roughly a Nordic fleet of the mid-2020s; about 30 % charge on one phase.
_FLEET_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("tesla-model-y-lr", 12),
    ("tesla-model-3-lr", 10),
    ("vw-id4-77", 8),
    ("vw-id3-58", 7),
    ("skoda-enyaq-80", 7),
    ("polestar-2-lr", 5),
    ("hyundai-kona-64", 5),
    ("renault-zoe-52", 5),
    ("audi-e-tron-55", 4),
    ("bmw-i3-42", 4),
    ("tesla-model-s-85", 2),
    ("renault-zoe-22", 2),
    ("nissan-leaf-40", 6),
    ("kia-e-niro-64", 5),
    ("peugeot-e-208", 4),
    ("mitsubishi-outlander-phev", 4),
    ("nissan-leaf-62", 3),
    ("hyundai-kona-64-2019", 3),
    ("jaguar-i-pace", 2),
    ("nissan-leaf-24", 2),
)

_KWH_PER_KM = (0.17, 0.20)
"""Winter consumption of compact to mid-size EVs at the plug."""


def default_fuse_limit_a(n_stations: int) -> int:
    """The smallest standard fuse of at least 12.5 A x sqrt(n).

    Residential charging diversity grows with the number of cars: 20 stations get
    3x63 A, 100 get 3x125 A: busy at the evening peak but enough for the night's energy.
    """
    wanted = 12.5 * math.sqrt(max(1, n_stations))
    return next((f for f in STANDARD_FUSES_A if f >= wanted), STANDARD_FUSES_A[-1])


def _apartment_name(index: int) -> str:
    staircase, flat = divmod(index, 10)
    letters = ""
    staircase += 1
    while staircase:
        staircase, rest = divmod(staircase - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"Apt {letters}{flat + 1}"


def make_garage_scenario(
    n_stations: int,
    seed: int,
    *,
    days: int = 1,
    fuse_limit_a: float | None = None,
    margin_a: float = 2.0,
    start: datetime | None = DEFAULT_GARAGE_START,
    name: str | None = None,
) -> Scenario:
    """A reproducible housing-company garage with ``n_stations`` stations.

    ``start`` is an evening at 16:00; the scenario covers ``days`` evenings, nights and
    the following days (24 h each). Each station belongs to a resident with one car
    (weighted `_FLEET_WEIGHTS`) who drives 20-120 km a day at 0.17-0.20 kWh/km and plugs
    in every night, every second or every third night (the need accumulates). Arrivals
    16:00-21:00 (mostly around 17:45), departures 06:30-09:00; about 15 % of stations also
    see a daytime visitor or home-office session between 09:30 and 15:45. Stations are
    mostly 3x16 A and 3x32 A, with one-phase ones spread over L1/L2/L3 and three-phase
    ones rotated, so that one-phase cars load all phases.

    Same arguments, same scenario: everything comes from ``random.Random(seed)``.
    """
    if n_stations < 1:
        raise ConfigError(f"n_stations: expected at least 1 (got {n_stations})")
    if days < 1:
        raise ConfigError(f"days: expected at least 1 (got {days})")
    rng = random.Random(seed)
    width = max(2, len(str(n_stations)))
    stations = _generate_stations(rng, n_stations, width)
    fleet_keys = [key for key, _ in _FLEET_WEIGHTS]
    fleet_weights = [weight for _, weight in _FLEET_WEIGHTS]

    sessions: list[ScenarioSession] = []
    visitor = 0
    for index, station in enumerate(stations):
        ev = CATALOGUE[rng.choices(fleet_keys, fleet_weights)[0]]
        has_car = rng.random() < 0.9
        daily_km = rng.triangular(20, 120, 45)
        kwh_per_km = rng.uniform(*_KWH_PER_KM)
        every_days = rng.choices((1, 2, 3), (60, 25, 15))[0]
        phase = rng.randrange(every_days)
        target = rng.choice((0.8, 0.8, 0.9, 0.9, 1.0))
        tag = f"TAG{index + 1:0{width}d}"
        last_departure_s = 0.0
        for day in range(days):
            day_s = day * 86_400.0
            evening_arrival_s = day_s + _clock_s(rng.gauss(17.75, 1.1), 16.0, 21.0) - 16 * 3600
            if has_car and (day + phase) % every_days == 0:
                departure_s = day_s + _clock_s(rng.gauss(7.6, 0.6), 6.5, 9.0) + 8 * 3600
                need_kwh = daily_km * kwh_per_km * every_days * rng.uniform(0.8, 1.2)
                soc_start = round(max(0.05, target - need_kwh / ev.battery_kwh), 3)
                sessions.append(
                    ScenarioSession(
                        station.id,
                        tag,
                        round(evening_arrival_s),
                        round(departure_s),
                        ev,
                        min(soc_start, target),
                        target,
                    )
                )
                last_departure_s = departure_s
            # A daytime session the next day, before this station's next evening.
            if rng.random() < 0.15:
                arrival_s = day_s + _clock_s(rng.uniform(9.5, 12.0), 0, 24) + 8 * 3600
                departure_s = day_s + _clock_s(rng.uniform(13.5, 15.75), 0, 24) + 8 * 3600
                if arrival_s >= last_departure_s:
                    visitor += 1
                    day_ev = CATALOGUE[rng.choices(fleet_keys, fleet_weights)[0]]
                    need_kwh = rng.uniform(5.0, 25.0)
                    day_target = 0.8
                    day_start = round(max(0.05, day_target - need_kwh / day_ev.battery_kwh), 3)
                    sessions.append(
                        ScenarioSession(
                            station.id,
                            f"VIS{visitor:0{width}d}",
                            round(arrival_s),
                            round(departure_s),
                            day_ev,
                            day_start,
                            day_target,
                        )
                    )
                    last_departure_s = departure_s
    sessions.sort(key=lambda s: (s.arrival_s, s.station))
    fuse = float(default_fuse_limit_a(n_stations) if fuse_limit_a is None else fuse_limit_a)
    scenario_name = name or f"garage-{n_stations}-seed{seed}"
    scenario = Scenario(
        name=scenario_name,
        site=ScenarioSite(fuse, margin_a, 3, DEFAULT_VOLTAGE_V),
        start=start,
        stations=tuple(stations),
        sessions=tuple(sessions),
        description=(
            f"Generated by make_garage_scenario({n_stations}, seed={seed}, days={days}): "
            f"residents' evening arrivals and morning departures behind a 3x{fuse:g} A fuse."
        ),
    )
    return validate_scenario(scenario, source="make_garage_scenario")


def _clock_s(hour: float, low: float, high: float) -> float:
    """Seconds after midnight of a clock hour clipped to [low, high], to the minute."""
    return round(min(high, max(low, hour)) * 60) * 60.0


def _generate_stations(rng: random.Random, n: int, width: int) -> list[ScenarioStation]:
    weights = [w for _, _, w in _STATION_TYPES]
    stations = []
    one_phase = three_phase = 0
    for index in range(n):
        current_a, phases, _ = rng.choices(_STATION_TYPES, weights)[0]
        if phases == 1:
            wiring: tuple[str, ...] = (SUPPLY_PHASES[one_phase % 3],)
            one_phase += 1
        else:
            wiring = _THREE_PHASE_ROTATIONS[three_phase % 3]
            three_phase += 1
        stations.append(
            ScenarioStation(
                f"CP{index + 1:0{width}d}", _apartment_name(index), current_a, phases, wiring
            )
        )
    return stations
