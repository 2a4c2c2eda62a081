"""Scenarios from real charging data, converted at load time (the files stay untouched).

Two data sets ship with the package in ``csms/data`` (its README and LICENSE files give
the sources, formats and licences; the files are unmodified):

* ``risvollan_housing_coop_sessions.csv`` — residential sessions of a Norwegian housing
  cooperative (Sørensen et al., Mendeley Data jbks2rcwyj, CC BY 4.0): our users' setting.
* ``acn_caltech_2019-03_events.json.gz`` — Caltech ACN workplace sessions, March 2019, as
  an ACN-Sim event queue (caltech-netlab/acnportal-experiments, BSD-3-Clause), with
  published reference results to compare the scheduler against.

The data directory is, in order: the ``data_dir`` argument, the environment variable
``GARAGEGRID_DATA_DIR``, then the packaged ``csms/data``. Every loader has a ``load_*``
form that also returns a `DatasetReport` with what was kept and dropped.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from csms.errors import ConfigError
from csms.ev import CATALOGUE, EVSpec, time_to_full_s
from csms.scenario import (
    ENERGY_ONLY_TARGET_SOC,
    SUPPLY_PHASES,
    Scenario,
    ScenarioSession,
    ScenarioSite,
    ScenarioStation,
    validate_scenario,
)

DATA_DIR_ENV = "GARAGEGRID_DATA_DIR"
RISVOLLAN_FILE = "risvollan_housing_coop_sessions.csv"
ACN_FILE = "acn_caltech_2019-03_events.json.gz"

OSLO = ZoneInfo("Europe/Oslo")


@dataclass(frozen=True)
class DatasetReport:
    """What a loader did with the rows of a data file."""

    rows: int  # data rows in the file
    in_window: int  # rows whose plug-in falls into the requested window
    incomplete: int  # in the window but without plug-out time or energy ("NA")
    non_positive_duration: int  # plug-out not after plug-in
    overlaps_shifted: int  # arrival moved to the previous car's departure on that station
    overlaps_dropped: int  # overlapped a previous car for (nearly) its whole stay
    capped_energy: int  # more energy than the largest battery holds; capped to it
    infeasible: int  # kept, but not deliverable even at full power the whole stay
    sessions: int
    stations: int


PACKAGED_DATA_DIR = Path(__file__).resolve().parent / "data"
"""The data sets as shipped with the package, with their licence and attribution files."""


def default_data_dir() -> Path:
    """``$GARAGEGRID_DATA_DIR`` if set, else the packaged `PACKAGED_DATA_DIR`."""
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env)
    return PACKAGED_DATA_DIR


def _data_file(data_dir: Path | str | None, name: str) -> Path:
    directory = Path(data_dir) if data_dir is not None else default_data_dir()
    path = directory / name
    if not path.is_file():
        if data_dir is not None:
            origin = "the data_dir given"
        elif os.environ.get(DATA_DIR_ENV):
            origin = f"from {DATA_DIR_ENV}"
        else:
            origin = "the packaged data directory; is the installation complete?"
        raise ConfigError(
            f"data file {name} not found in {directory} ({origin}); set {DATA_DIR_ENV} to "
            f"a directory that holds it, or leave it unset to use the files in csms/data"
        )
    return path


# --- Risvollan -------------------------------------------------------------------------

RISVOLLAN_STATION_CURRENT_A = 32.0
"""Stations are one-phase 1x32 A (7.4 kW at 230 V): the highest average power of any
session in the file is about 7.5 kW, and 1x32 A wallboxes are the Norwegian norm.
One-phase stations are spread over L1, L2, L3 in the order of their ids."""

# Cars that draw the full 32 A on one phase (or 29 A, the 6.6 kW Leafs), smallest
# battery first. Each user gets the first one whose battery holds their largest session
# in the window below the taper (80 %) and whose charger is fast enough for their most
# demanding session; failing that, the first that holds it at all; else the largest.
_RISVOLLAN_CARS = (
    "renault-zoe-22",
    "nissan-leaf-40",
    "peugeot-e-208",
    "renault-zoe-52",
    "nissan-leaf-62",
    "kia-e-niro-64",
    "jaguar-i-pace",
)

_SHIFT_MIN_S = 15 * 60
"""An overlapping session is shifted to start when the previous car leaves if at least
this much of its stay is left; otherwise it is dropped."""


@dataclass(frozen=True)
class _Row:
    station: str
    garage: str
    user: str
    plugin: datetime  # UTC
    plugout: datetime  # UTC
    energy_kwh: float


def risvollan_scenario(
    start_date: date,
    days: int,
    fuse_limit_a: float,
    *,
    data_dir: Path | str | None = None,
    margin_a: float = 0.0,
) -> Scenario:
    """Sessions of the Risvollan housing cooperative plugged in during a window.

    See `load_risvollan` for the conversion rules and the counts.
    """
    return load_risvollan(start_date, days, fuse_limit_a, data_dir=data_dir, margin_a=margin_a)[0]


def load_risvollan(
    start_date: date,
    days: int,
    fuse_limit_a: float,
    *,
    data_dir: Path | str | None = None,
    margin_a: float = 0.0,
) -> tuple[Scenario, DatasetReport]:
    """Risvollan sessions plugged in from ``start_date`` 00:00 Europe/Oslo for ``days``.

    * One station per charger: private chargers are identified by ``User_ID`` (each
      private user has their own), shared chargers by ``Shared_ID``. ``Garage_ID`` names
      a garage with many chargers (Bl2 has thousands of overlapping sessions), so it is
      kept only in the station name. Stations are 1x32 A, see
      `RISVOLLAN_STATION_CURRENT_A`, on a three-phase site of ``fuse_limit_a`` per phase.
    * A session runs from ``Start_plugin`` to ``End_plugout`` (departures may fall after
      the window); ``El_kWh`` is the energy need, placed below the taper (`csms.scenario`
      ``energy_kwh`` rule). ``id_tag`` is the ``User_ID``.
    * Each user gets one car from `_RISVOLLAN_CARS` that can hold their largest session.
      Sessions that need more than the car can take at 1x32 A in the time plugged in are
      kept and counted as ``infeasible``.
    * Rows without plug-out or energy (``NA``) and rows whose plug-out is not after the
      plug-in are skipped; sessions overlapping a previous one on the same charger are
      shifted or dropped (`_SHIFT_MIN_S`). All are counted in the report.
    """
    if days < 1:
        raise ConfigError(f"days: expected at least 1 (got {days})")
    if not fuse_limit_a > margin_a >= 0:
        raise ConfigError(
            f"fuse_limit_a: expected a number above margin_a >= 0 (got {fuse_limit_a}, "
            f"margin_a {margin_a})"
        )
    path = _data_file(data_dir, RISVOLLAN_FILE)
    window_start = datetime.combine(start_date, time(0, 0), tzinfo=OSLO)
    window_end = datetime.combine(start_date + timedelta(days=days), time(0, 0), tzinfo=OSLO)
    rows, total, in_window, incomplete, non_positive = _read_risvollan(
        path, window_start, window_end
    )

    by_station: dict[str, list[_Row]] = {}
    for row in sorted(rows, key=lambda r: (r.plugin, r.station, r.user)):
        by_station.setdefault(row.station, []).append(row)
    kept: list[_Row] = []
    shifted = dropped = 0
    for station_rows in by_station.values():
        previous: _Row | None = None
        for row in station_rows:
            current = row
            if previous is not None and current.plugin < previous.plugout:
                if (current.plugout - previous.plugout).total_seconds() >= _SHIFT_MIN_S:
                    current = _Row(
                        row.station,
                        row.garage,
                        row.user,
                        previous.plugout,
                        row.plugout,
                        row.energy_kwh,
                    )
                    shifted += 1
                else:
                    dropped += 1
                    continue
            kept.append(current)
            previous = current

    station_ids = sorted(by_station)
    garages = {row.station: row.garage for row in rows}
    stations = tuple(
        ScenarioStation(
            station_id,
            f"{garages[station_id]} {station_id}",
            RISVOLLAN_STATION_CURRENT_A,
            1,
            (SUPPLY_PHASES[index % 3],),
        )
        for index, station_id in enumerate(station_ids)
    )
    cars = _choose_cars(kept)
    start_utc = window_start.astimezone(UTC)
    sessions: list[ScenarioSession] = []
    capped = infeasible = 0
    for row in sorted(kept, key=lambda r: (r.plugin, r.station)):
        ev = cars[row.user]
        energy_kwh = row.energy_kwh
        if energy_kwh > ev.battery_kwh:
            energy_kwh = ev.battery_kwh
            capped += 1
        fraction = energy_kwh / ev.battery_kwh
        soc_target = min(1.0, max(ENERGY_ONLY_TARGET_SOC, fraction))
        soc_start = max(0.0, soc_target - fraction)
        arrival_s = (row.plugin - start_utc).total_seconds()
        departure_s = (row.plugout - start_utc).total_seconds()
        needed_s = time_to_full_s(ev, soc_start, soc_target, RISVOLLAN_STATION_CURRENT_A, phases=1)
        if needed_s > departure_s - arrival_s:
            infeasible += 1
        sessions.append(
            ScenarioSession(
                row.station, row.user, arrival_s, departure_s, ev, soc_start, soc_target
            )
        )
    scenario = Scenario(
        name=f"risvollan-{start_date.isoformat()}-{days}d",
        site=ScenarioSite(float(fuse_limit_a), float(margin_a), 3, 230.0),
        start=window_start,
        stations=stations,
        sessions=tuple(sessions),
        description=(
            f"Risvollan housing cooperative (Trondheim), sessions plugged in "
            f"{start_date.isoformat()} + {days} d (Sørensen et al., Mendeley Data "
            f"jbks2rcwyj, CC BY 4.0): {len(sessions)} sessions on {len(stations)} chargers "
            f"(1x32 A), {shifted} shifted and {dropped} dropped for overlapping, "
            f"{infeasible} not deliverable even at full power."
        ),
    )
    report = DatasetReport(
        rows=total,
        in_window=in_window,
        incomplete=incomplete,
        non_positive_duration=non_positive,
        overlaps_shifted=shifted,
        overlaps_dropped=dropped,
        capped_energy=capped,
        infeasible=infeasible,
        sessions=len(sessions),
        stations=len(stations),
    )
    return validate_scenario(scenario, source=str(path)), report


def _read_risvollan(
    path: Path, window_start: datetime, window_end: datetime
) -> tuple[list[_Row], int, int, int, int]:
    """Rows plugged in during the window, and the counts of what was skipped."""
    records = _risvollan_records(path, path.stat().st_mtime_ns)
    start_utc, end_utc = window_start.astimezone(UTC), window_end.astimezone(UTC)
    rows: list[_Row] = []
    in_window = incomplete = non_positive = 0
    for row in records:
        if row.plugin is None or not start_utc <= row.plugin < end_utc:
            continue
        in_window += 1
        if row.plugout is None or row.energy_kwh is None:
            incomplete += 1
        elif row.plugout <= row.plugin:
            non_positive += 1
        else:
            rows.append(
                _Row(row.station, row.garage, row.user, row.plugin, row.plugout, row.energy_kwh)
            )
    return rows, len(records), in_window, incomplete, non_positive


@dataclass(frozen=True)
class _Record:
    """One CSV row as read, times in UTC; None where the file says NA."""

    station: str
    garage: str
    user: str
    plugin: datetime | None
    plugout: datetime | None
    energy_kwh: float | None


@functools.lru_cache(maxsize=2)
def _risvollan_records(path: Path, mtime_ns: int) -> tuple[_Record, ...]:
    """The whole file, parsed once per version (``mtime_ns`` is the cache key)."""
    del mtime_ns
    records: list[_Record] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=";")
        missing = {
            "Garage_ID",
            "User_ID",
            "User_type",
            "Shared_ID",
            "Start_plugin",
            "End_plugout",
            "El_kWh",
        } - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(
                f"{path}: not the Risvollan CSV, missing {', '.join(sorted(missing))}"
            )
        for line, record in enumerate(reader, start=2):
            # A private charger belongs to its user; a shared one has its own id.
            shared = record["User_type"] == "Shared" and record["Shared_ID"] not in ("", "NA")
            records.append(
                _Record(
                    station=record["Shared_ID"] if shared else record["User_ID"],
                    garage=record["Garage_ID"],
                    user=record["User_ID"],
                    plugin=_oslo_time(record["Start_plugin"], path, line),
                    plugout=_oslo_time(record["End_plugout"], path, line),
                    energy_kwh=_decimal_comma(record["El_kWh"], path, line),
                )
            )
    return tuple(records)


def _oslo_time(text: str | None, path: Path, line: int) -> datetime | None:
    """A local Europe/Oslo time of the file, in UTC so that differences are real time."""
    if text is None or text in ("", "NA"):
        return None
    try:
        naive = datetime.strptime(text, "%d.%m.%Y %H:%M")
    except ValueError:
        raise ConfigError(
            f"{path}:{line}: expected a time like 21.12.2018 10:20, got {text!r}"
        ) from None
    return naive.replace(tzinfo=OSLO).astimezone(UTC)


def _decimal_comma(text: str | None, path: Path, line: int) -> float | None:
    if text is None or text in ("", "NA"):
        return None
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise ConfigError(f"{path}:{line}: expected a number like 29,87, got {text!r}") from None
    return value if math.isfinite(value) and value >= 0 else None


def _choose_cars(rows: Iterable[_Row]) -> dict[str, EVSpec]:
    """One car per user, big and fast enough for the user's sessions where possible."""
    need_kwh: dict[str, float] = {}
    need_a: dict[str, float] = {}
    for row in rows:
        hours = (row.plugout - row.plugin).total_seconds() / 3600
        need_kwh[row.user] = max(need_kwh.get(row.user, 0.0), row.energy_kwh)
        current_a = row.energy_kwh * 1000 / (230.0 * hours)
        need_a[row.user] = max(need_a.get(row.user, 0.0), min(current_a, 32.0))
    candidates = [CATALOGUE[key] for key in _RISVOLLAN_CARS]
    cars: dict[str, EVSpec] = {}
    for user, kwh in need_kwh.items():
        fast = [c for c in candidates if c.max_current_a >= need_a[user]] or candidates
        cars[user] = next(
            (c for c in fast if c.battery_kwh * ENERGY_ONLY_TARGET_SOC >= kwh),
            next((c for c in fast if c.battery_kwh >= kwh), candidates[-1]),
        )
    return cars


# --- Caltech ACN -----------------------------------------------------------------------

ACN_START = datetime(2019, 3, 1, 0, 0, tzinfo=timezone(timedelta(hours=-8)))
"""Period 0 of the event queue: midnight Pacific Standard Time, 1 March 2019 (the
session ids carry UTC plug-in times that match ``_arrival`` x 5 min after it)."""

ACN_PERIOD_S = 300
ACN_STATION_CURRENT_A = 32.0
"""Caltech ACN EVSEs are 32 A at 208 V."""

ACN_BATTERY_KWH = 80.0
"""ACN-Sim's reference runs use an ideal battery (no taper) holding exactly the request.
Here every car gets an 80 kWh battery charged from 0 %, so that every request (at most
58 kWh) ends below the taper at 80 % and the model charges exactly like ACN-Sim's."""


def acn_scenario(
    limit_kw: float, *, data_dir: Path | str | None = None, voltage_v: float = 208.0
) -> Scenario:
    """Caltech ACN March 2019 under a single aggregate limit of ``limit_kw``.

    See `load_acn` for the conversion.
    """
    return load_acn(limit_kw, data_dir=data_dir, voltage_v=voltage_v)[0]


def load_acn(
    limit_kw: float, *, data_dir: Path | str | None = None, voltage_v: float = 208.0
) -> tuple[Scenario, DatasetReport]:
    """Caltech ACN sessions as a one-phase site whose fuse is the aggregate limit.

    ACN-Sim's reference results (``csms/data/README.md``) use one aggregate limit on the
    sum of all currents; the same constraint here is a one-phase site with every station
    on L1 and ``fuse_limit_a = limit_kw * 1000 / voltage_v`` (no margin). One station per
    ACN ``_station_id`` (32 A EVSEs); each car is limited by its battery's ``_max_power``
    (6.6 kW = 31.7 A at 208 V); its need is ``_requested_energy``. Times are multiples of
    the 5-minute period from `ACN_START`.
    """
    if not limit_kw > 0:
        raise ConfigError(f"limit_kw: expected a number > 0 (got {limit_kw})")
    path = _data_file(data_dir, ACN_FILE)
    context = _acn_context(path)
    # Decoded JSON of a known shape: Any at this boundary, checked field by field below.
    evs: list[Mapping[str, Any]] = [
        entry["attributes"]
        for entry in context.values()
        if isinstance(entry, dict)
        and str(entry.get("class", "")).endswith(".EV")
        and isinstance(entry.get("attributes"), dict)
    ]
    if not evs:
        raise ConfigError(f"{path}: no EV entries in context_dict")

    specs: dict[float, EVSpec] = {}
    records: list[tuple[int, int, str, float, EVSpec]] = []
    for attributes in evs:
        try:
            battery = context[str(attributes["_battery"])]["attributes"]
            max_power_kw = float(battery["_max_power"])
            arrival = int(attributes["_arrival"])
            departure = int(attributes["_departure"])
            station_id = str(attributes["_station_id"])
            requested = float(attributes["_requested_energy"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: unexpected EV entry {attributes!r}: {exc}") from exc
        if max_power_kw not in specs:
            specs[max_power_kw] = EVSpec(
                f"acn-{max_power_kw:g}kw",
                f"ACN-Data EV ({max_power_kw:g} kW onboard charger)",
                ACN_BATTERY_KWH,
                max_power_kw * 1000 / voltage_v,
                1,
            )
        records.append((arrival, departure, station_id, requested, specs[max_power_kw]))

    records.sort(key=lambda r: (r[0], r[2], r[1]))
    # Split a station id if two of its sessions overlap (none do in March 2019).
    busy_until: dict[str, int] = {}
    sessions: list[ScenarioSession] = []
    infeasible = capped = 0
    for index, (arrival, departure, station_id, requested, ev) in enumerate(records):
        station = station_id
        suffix = 1
        while busy_until.get(station, -1) > arrival:
            suffix += 1
            station = f"{station_id}-{suffix}"
        busy_until[station] = departure
        energy = min(requested, ev.battery_kwh * ENERGY_ONLY_TARGET_SOC)
        capped += energy < requested
        soc_target = energy / ev.battery_kwh
        needed_s = time_to_full_s(
            ev, 0.0, soc_target, min(ev.max_current_a, ACN_STATION_CURRENT_A), voltage_v
        )
        duration_s = (departure - arrival) * ACN_PERIOD_S
        infeasible += needed_s > duration_s
        sessions.append(
            ScenarioSession(
                station,
                f"ACN{index + 1:04d}",
                float(arrival * ACN_PERIOD_S),
                float(departure * ACN_PERIOD_S),
                ev,
                0.0,
                soc_target,
            )
        )
    stations = tuple(
        ScenarioStation(station_id, station_id, ACN_STATION_CURRENT_A, 1, ("L1",))
        for station_id in sorted(busy_until)
    )
    scenario = Scenario(
        name=f"acn-2019-03-{limit_kw:g}kw",
        site=ScenarioSite(limit_kw * 1000 / voltage_v, 0.0, 1, voltage_v),
        start=ACN_START,
        stations=stations,
        sessions=tuple(sessions),
        description=(
            f"Caltech ACN, March 2019 (ACN-Data, Lee, Li, Low, e-Energy 2019; event queue "
            f"from caltech-netlab/acnportal-experiments, BSD-3-Clause): {len(sessions)} "
            f"sessions on {len(stations)} EVSEs under a single {limit_kw:g} kW aggregate "
            f"limit at {voltage_v:g} V; {infeasible} requests exceed what the car can take "
            "while plugged in. ACN-Sim reference, energy delivered as % of requested: "
            "30 kW EDF 98.40, LLF 99.17, offline optimum 99.3; 20 kW LLF 88.21, offline 88.6."
        ),
    )
    report = DatasetReport(
        rows=len(evs),
        in_window=len(evs),
        incomplete=0,
        non_positive_duration=0,
        overlaps_shifted=0,
        overlaps_dropped=0,
        capped_energy=capped,
        infeasible=infeasible,
        sessions=len(sessions),
        stations=len(stations),
    )
    return validate_scenario(scenario, source=str(path)), report


def _acn_context(path: Path) -> Mapping[str, Any]:
    """The ``context_dict`` of the event queue: gzip, then JSON twice (a JSON string)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            outer: object = json.load(handle)
        inner: object = json.loads(outer) if isinstance(outer, str) else outer
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a gzipped ACN-Sim event queue: {exc}") from exc
    context = inner.get("context_dict") if isinstance(inner, dict) else None
    if not isinstance(context, dict):
        raise ConfigError(f"{path}: no context_dict in the ACN-Sim event queue")
    return context


# --- named real-data scenarios (`load_scenario` accepts these names) ------------------

DATASET_SCENARIOS: Mapping[str, Callable[[], Scenario]] = MappingProxyType(
    {
        "acn-30kw": lambda: acn_scenario(30.0),
        "acn-20kw": lambda: acn_scenario(20.0),
        "risvollan-2019-01": lambda: risvollan_scenario(date(2019, 1, 7), 7, 25.0),
        "risvollan-2020-01": lambda: risvollan_scenario(date(2020, 1, 13), 7, 63.0),
    }
)
