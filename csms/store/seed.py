"""A deterministic garage with history: stations, residents, sessions and meter values.

Used by the monitor's tests, its benchmark and demos (``python -m csms.store.seed``). The
same ``seed`` gives the same rows. Cars arrive in the evening and leave in the morning
(site time zone), take what a small equal-share load manager under the main fuse gives
them (with the EV taper of `csms.ev`), and the charge points report what an OCPP 1.6
charger sends every ``sample_interval_s``: the energy register, the active power and the
current per phase (its own phase labels: a one-phase unit reports L1 whatever supply
phase it is wired to). While a car is plugged in but not drawing, a sample is written
every 15 minutes only, which keeps a month of 50 stations around a million rows.

Everything is written with bulk inserts into an already migrated database.

`ensure_demo_accounts` adds the monitor's demo accounts (a manager, a viewer and
residents bound to stations and tags) and gives them fresh passwords to print.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from csms.auth import Role, generate_password, hash_user_password
from csms.ev import CATALOGUE, EVSpec, charge, draw_current_a, effective_phases
from csms.store import models as m
from csms.store import rollups
from csms.store.repository import SITE_ROW_ID, Repository

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
SITE_TIMEZONE = "Europe/Oslo"
VOLTAGE_V = 230.0
MARGIN_A = 2.0
# IEC 61851-1: the control pilot cannot signal less than 6 A.
MIN_CURRENT_A = 6.0
# Idle (plugged in, not drawing) connectors report this rarely, see the module docstring.
IDLE_SAMPLE_EVERY_S = 900
# Standard main fuse ratings (A); the garage gets the smallest that gives ~8 A per station.
FUSE_RATINGS_A = (63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630)
BATCH_ROWS = 20_000

_FIRST_NAMES = (
    "Ingrid", "Ola", "Kari", "Lars", "Nora", "Emil", "Sofie", "Jonas", "Ida", "Magnus",
    "Sara", "Henrik", "Emma", "Aksel", "Thea", "Sindre", "Maja", "Tobias", "Hanna", "Eirik",
)  # fmt: skip
_LAST_NAMES = (
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
    "Jensen", "Karlsen", "Berg", "Haugen", "Hagen", "Bakke", "Solberg", "Strand",
)  # fmt: skip
_VENDORS = (
    ("Zaptec", "Go", "2.4.1"),
    ("Easee", "Home", "1.21.3"),
    ("ABB", "Terra AC W22-T", "1.6.9"),
    ("Wallbox", "Pulsar Plus", "5.17.0"),
    ("Schneider", "EVlink Pro AC", "3.4.0.12"),
)


@dataclass(frozen=True)
class SeedSummary:
    """What `seed_demo_data` wrote."""

    stations: int
    transactions: int
    open_transactions: int
    meter_samples: int
    allocations: int
    notifications: int
    start: datetime
    end: datetime
    elapsed_s: float


@dataclass(frozen=True)
class _Station:
    id: str
    name: str
    owner: str
    id_tag: str
    max_current_a: float
    phases: int
    wiring: str
    vendor: tuple[str, str, str]


@dataclass
class _Session:
    station: _Station
    arrival: datetime
    departure: datetime
    ev: EVSpec
    soc: float
    target_soc: float
    reports_soc: bool
    resident_input: bool
    meter_start_wh: int
    register_wh: float = 0.0
    limit_a: float = -1.0
    drawing: bool = False
    used_phases: int = 3
    phase_indexes: list[int] = field(default_factory=list)
    last_sample: datetime | None = None
    transaction_id: int = 0
    samples: list[tuple[datetime, float, float, float]] = field(default_factory=list)
    changes: list[tuple[datetime, float]] = field(default_factory=list)

    @property
    def energy_needed_wh(self) -> float:
        return max(0.0, (self.target_soc - self.soc) * self.ev.battery_kwh * 1000.0)


def _fuse_for(stations: int) -> float:
    wanted = max(63.0, 8.0 * stations)
    return float(next((r for r in FUSE_RATINGS_A if r >= wanted), FUSE_RATINGS_A[-1]))


def _stations(rng: random.Random, count: int) -> list[_Station]:
    out = []
    rotations = ("L1L2L3", "L2L3L1", "L3L1L2")
    for i in range(count):
        floor, door = divmod(i, 6)
        apartment = f"{chr(ord('A') + floor % 26)}{101 + door}"
        one_phase = i % 5 == 4
        phases = 1 if one_phase else 3
        wiring = ("L1", "L2", "L3")[i % 3] if one_phase else rotations[i % 3]
        out.append(
            _Station(
                id=f"CP{i + 1:03d}",
                name=f"Apartment {apartment}",
                owner=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)} ({apartment})",
                id_tag=f"TAG{i + 1:04d}",
                max_current_a=32.0 if i % 4 == 0 else 16.0,
                phases=phases,
                wiring=wiring,
                vendor=_VENDORS[i % len(_VENDORS)],
            )
        )
    return out


def _local(day: datetime, hours: float, zone: ZoneInfo) -> datetime:
    midnight = datetime.combine(day.date(), clock_time(0), zone)
    return (midnight + timedelta(hours=hours)).astimezone(UTC)


def _sessions(
    rng: random.Random, stations: Sequence[_Station], start: datetime, end: datetime
) -> list[_Session]:
    zone = ZoneInfo(SITE_TIMEZONE)
    models = sorted(CATALOGUE.values(), key=lambda e: e.key)
    out: list[_Session] = []
    first_day = start.astimezone(zone) - timedelta(days=1)
    n_days = (end - start).days + 2
    meter = {s.id: rng.randrange(1_000_000, 9_000_000) for s in stations}
    for station in stations:
        ev = rng.choice(models)
        free_from = start
        for d in range(n_days):
            day = first_day + timedelta(days=d)
            if rng.random() > 0.75:
                continue
            arrival = _local(day, rng.gauss(17.5, 1.6), zone)
            departure = _local(day + timedelta(days=1), rng.gauss(7.5, 0.7), zone)
            arrival = max(arrival, free_from, start)
            if departure - arrival < timedelta(hours=1) or arrival >= end:
                continue
            soc = rng.uniform(0.15, 0.7)
            target = min(1.0, soc + rng.uniform(0.15, 0.6))
            session = _Session(
                station=station,
                arrival=arrival.replace(second=0, microsecond=0),
                departure=departure.replace(second=0, microsecond=0),
                ev=ev,
                soc=soc,
                target_soc=round(target, 2),
                reports_soc=rng.random() < 0.5,
                resident_input=rng.random() < 0.6,
                meter_start_wh=meter[station.id],
            )
            out.append(session)
            free_from = session.departure + timedelta(minutes=30)
    return out


def _building_load_a(t: datetime, zone: ZoneInfo, fuse_a: float, phase: int) -> float:
    """Everything else behind the fuse: a base load with a morning and an evening peak."""
    local = t.astimezone(zone)
    hour = local.hour + local.minute / 60.0
    evening = math.exp(-(((hour - 19.0) / 2.0) ** 2))
    morning = 0.5 * math.exp(-(((hour - 7.5) / 1.2) ** 2))
    wobble = 0.05 * math.sin(t.timestamp() / 1700.0 + phase * 2.1)
    return round(fuse_a * (0.12 + 0.2 * evening + 0.1 * morning + wobble), 1)


def _phase_indexes(station: _Station, used: int) -> list[int]:
    parts = [station.wiring[i : i + 2] for i in range(0, len(station.wiring), 2)][:used]
    return [("L1", "L2", "L3").index(p) for p in parts]


def _simulate(
    sessions: list[_Session],
    start: datetime,
    end: datetime,
    step_s: int,
    fuse_a: float,
    building: dict[datetime, tuple[float, float, float]],
) -> None:
    """A small load manager, every ``step_s``: earliest departure first, each car gets an
    equal share of what is left of fuse - margin - building load on its phases, or 6 A
    (IEC 61851-1 minimum) while that fits, else it pauses."""
    by_arrival = sorted(sessions, key=lambda s: s.arrival)
    active: list[_Session] = []
    nxt = 0
    t = start
    step = timedelta(seconds=step_s)
    while t < end:
        while nxt < len(by_arrival) and by_arrival[nxt].arrival <= t:
            x = by_arrival[nxt]
            x.register_wh = x.meter_start_wh
            x.used_phases = effective_phases(x.ev, x.station.phases)
            x.phase_indexes = _phase_indexes(x.station, x.used_phases)
            active.append(x)
            nxt += 1
        active = [s for s in active if s.departure > t]
        wanting = sorted(
            (s for s in active if s.soc < s.target_soc - 1e-6), key=lambda s: s.departure
        )
        left = [max(0.0, fuse_a - MARGIN_A - b) for b in building[t]]
        count = [0, 0, 0]
        for s in wanting:
            for p in s.phase_indexes:
                count[p] += 1
        limits: dict[int, float] = {}
        for s in wanting:
            fair = min(left[p] / count[p] for p in s.phase_indexes)
            limit = float(math.floor(min(s.station.max_current_a, fair)))
            if limit < MIN_CURRENT_A:
                limit = MIN_CURRENT_A if min(left[p] for p in s.phase_indexes) >= 6 else 0.0
            for p in s.phase_indexes:
                left[p] -= limit
                count[p] -= 1
            limits[id(s)] = limit
        for s in active:
            limit = limits.get(id(s), 0.0)
            drawn = draw_current_a(s.ev, s.soc, limit) if limit else 0.0
            if limit != s.limit_a:
                s.changes.append((t, limit))
                s.limit_a = limit
            due = s.last_sample is None or (t - s.last_sample).total_seconds() >= (
                step_s if (drawn > 0 or s.drawing) else IDLE_SAMPLE_EVERY_S
            )
            if due:
                s.samples.append((t, s.register_wh, drawn * VOLTAGE_V * s.used_phases, drawn))
                s.last_sample = t
            s.drawing = drawn > 0
            if drawn > 0:
                s.soc, energy = charge(
                    s.ev, s.soc, drawn, step_s, VOLTAGE_V, phases=s.station.phases
                )
                s.register_wh += energy
        t += step


def _notification(limit: float, previous: float, owner: str) -> tuple[str, str] | None:
    first = owner.split()[0]
    if previous < 0:
        return None
    if limit == 0 and previous > 0:
        return "paused", f"{first}, charging paused: other cars must finish first"
    if previous == 0 and limit > 0:
        return "resumed", f"Charging resumed at {limit:g} A"
    if limit >= previous + 4:
        return "raised", f"Power raised to {limit:g} A: the garage is quieter"
    if limit <= previous - 4:
        return "lowered", f"Power lowered to {limit:g} A: more cars are charging"
    return None


async def _insert(session: AsyncSession, model: type[m.Base], rows: list[dict[str, Any]]) -> None:
    # Core executemany on the Table: the ORM's bulk insert splits batches wherever the
    # set of non-None keys changes (phase None / L1 alternate), which is 20x slower.
    table = model.__table__
    assert isinstance(table, Table)
    for i in range(0, len(rows), BATCH_ROWS):
        await session.execute(insert(table), rows[i : i + BATCH_ROWS])


async def seed_demo_data(
    target: Repository | async_sessionmaker[AsyncSession],
    *,
    stations: int = 8,
    days: float = 7,
    start: datetime = DEFAULT_START,
    seed: int = 0,
    sample_interval_s: int = 60,
    fuse_limit_a: float | None = None,
) -> SeedSummary:
    """Write ``days`` of garage life from ``start`` into an empty, migrated database.

    Sessions still plugged in at ``start + days`` stay open (no StopTransaction yet), so
    a seed that ends "now" gives the live page and the resident page something to show.
    """
    if start.tzinfo is None:
        raise ValueError("start must carry a time zone")
    if stations < 1 or days <= 0 or sample_interval_s < 1:
        raise ValueError("stations, days and sample_interval_s must be positive")
    began = time.perf_counter()
    # The repository keeps its session factory private; the seeder needs raw bulk inserts.
    sessionmaker = target.sessionmaker if isinstance(target, Repository) else target
    rng = random.Random(seed)
    start = start.astimezone(UTC).replace(second=0, microsecond=0)
    end = start + timedelta(seconds=round(days * 86400 / sample_interval_s) * sample_interval_s)
    zone = ZoneInfo(SITE_TIMEZONE)
    fuse_a = fuse_limit_a if fuse_limit_a is not None else _fuse_for(stations)
    garage = _stations(rng, stations)
    sessions = _sessions(rng, garage, start, end)

    step = timedelta(seconds=sample_interval_s)
    building: dict[datetime, tuple[float, float, float]] = {}
    t = start
    while t < end:
        building[t] = (
            _building_load_a(t, zone, fuse_a, 0),
            _building_load_a(t, zone, fuse_a, 1),
            _building_load_a(t, zone, fuse_a, 2),
        )
        t += step
    _simulate(sessions, start, end, sample_interval_s, fuse_a, building)

    async with sessionmaker() as s, s.begin():
        existing = await s.get(m.SiteSettings, SITE_ROW_ID)
        site_values = {
            "fuse_limit_a": fuse_a,
            "margin_a": MARGIN_A,
            "timezone": SITE_TIMEZONE,
            "strategy": "llf",
            "price_per_kwh": 2.5,
            "currency": "NOK",
            "default_departure": "07:30",
            "updated_at": start,
        }
        if existing is None:
            s.add(m.SiteSettings(id=SITE_ROW_ID, **site_values))
        else:
            for key, value in site_values.items():
                setattr(existing, key, value)
        await _insert(s, m.ChargePoint, _charge_point_rows(garage, sessions, start, end))
        await _insert(
            s,
            m.IdTag,
            [
                {"id_tag": st.id_tag, "owner": st.owner, "created_at": start - timedelta(days=30)}
                for st in garage
            ],
        )
        closed = [x for x in sessions if x.departure <= end]
        tx_rows = [_transaction_row(x, end) for x in sessions]
        ids = (
            await s.scalars(
                insert(m.Transaction).returning(m.Transaction.id, sort_by_parameter_order=True),
                tx_rows,
            )
        ).all()
        for x, tx_id in zip(sessions, ids, strict=True):
            x.transaction_id = tx_id
        n_samples = await _insert_samples(s, sessions)
        allocations, notifications = _allocation_rows(sessions)
        await _insert(s, m.Allocation, allocations)
        await _insert(s, m.Notification, notifications)
        await _insert(
            s,
            m.BuildingLoad,
            [
                {"measured_at": t, "l1_a": a, "l2_a": b, "l3_a": c, "source": "seed"}
                for t, (a, b, c) in building.items()
                if int(t.timestamp()) % 300 == 0
            ],
        )
        await _insert(s, m.Connector, _connector_rows(garage, sessions, end))
        await _insert(s, m.StatusEvent, _status_rows(sessions, end))
        await _insert(s, m.Command, _command_rows(garage, end))
        # The History reads hourly rollups (csms.store.rollups); bulk rows bypass the writer.
        await rollups.rebuild(s)
    return SeedSummary(
        stations=len(garage),
        transactions=len(sessions),
        open_transactions=len(sessions) - len(closed),
        meter_samples=n_samples,
        allocations=len(allocations),
        notifications=len(notifications),
        start=start,
        end=end,
        elapsed_s=time.perf_counter() - began,
    )


def _charge_point_rows(
    garage: Sequence[_Station], sessions: Sequence[_Session], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    rows = []
    for i, st in enumerate(garage):
        # One station lost its connection an hour before the end, to show an offline one.
        offline = i == len(garage) - 1 and len(garage) > 2
        vendor, model, firmware = st.vendor
        rows.append(
            {
                "id": st.id,
                "name": st.name,
                "max_current_a": st.max_current_a,
                "phases": st.phases,
                "wiring": st.wiring,
                "min_current_a": MIN_CURRENT_A,
                "vendor": vendor,
                "model": model,
                "serial_number": f"SN{i + 1:06d}",
                "firmware_version": firmware,
                "boot_status": "Accepted",
                "last_boot_at": start,
                "last_seen_at": end - timedelta(hours=1 if offline else 0, seconds=30),
                "connected": not offline,
                "only_stack_level_0": vendor in ("ABB", "Wallbox"),
                "created_at": start - timedelta(days=30),
            }
        )
    return rows


def _transaction_row(x: _Session, end: datetime) -> dict[str, Any]:
    done = x.departure <= end
    return {
        "charge_point_id": x.station.id,
        "connector_id": 1,
        "id_tag": x.station.id_tag,
        "auth_status": "Accepted",
        "meter_start_wh": x.meter_start_wh,
        "started_at": x.arrival,
        "meter_stop_wh": round(x.register_wh) if done else None,
        "stopped_at": x.departure if done else None,
        "stop_reason": "EVDisconnected" if done else None,
        "departure_at": x.departure if x.resident_input else None,
        "energy_needed_wh": None,
        "ev_model": x.ev.key if x.resident_input else None,
        "battery_kwh": None,
        "target_soc": x.target_soc if x.resident_input else None,
        "created_at": x.arrival,
    }


_SAMPLE_COLUMNS = (
    "charge_point_id",
    "connector_id",
    "transaction_id",
    "timestamp",
    "measurand",
    "phase",
    "unit",
    "context",
    "location",
    "raw_value",
    "value",
    "norm_unit",
    "received_at",
)


def _sample_tuples(x: _Session) -> list[tuple[Any, ...]]:
    """One session's meter values as rows in `_SAMPLE_COLUMNS` order."""
    cp, tx = x.station.id, x.transaction_id
    used = effective_phases(x.ev, x.station.phases)
    out: list[tuple[Any, ...]] = []
    add = out.append
    for t, register, power, current in x.samples:
        wh = round(register)
        w = round(power)
        add((cp, 1, tx, t, "Energy.Active.Import.Register", None, "Wh",
             "Sample.Periodic", "Outlet", str(wh), wh, "Wh", t))  # fmt: skip
        add((cp, 1, tx, t, "Power.Active.Import", None, "W",
             "Sample.Periodic", "Outlet", str(w), w, "W", t))  # fmt: skip
        amps = round(current, 1)
        for k in range(x.station.phases):
            a = amps if k < used else 0.0
            add((cp, 1, tx, t, "Current.Import", f"L{k + 1}", "A",
                 "Sample.Periodic", "Outlet", f"{a:.1f}", a, "A", t))  # fmt: skip
    if x.reports_soc and x.samples:
        # SoC every 15 minutes, reconstructed from the register and the battery size.
        final_register = x.samples[-1][1]
        last: datetime | None = None
        for t, register, _power, _current in x.samples:
            if last is not None and (t - last).total_seconds() < IDLE_SAMPLE_EVERY_S:
                continue
            last = t
            soc = x.soc - (final_register - register) / (x.ev.battery_kwh * 1000.0)
            pct = round(max(0.0, min(100.0, soc * 100.0)), 1)
            add((cp, 1, tx, t, "SoC", None, "Percent", "Sample.Periodic", "EV",
                 f"{pct:.1f}", pct, "%", t))  # fmt: skip
    return out


async def _insert_samples(s: AsyncSession, sessions: Sequence[_Session]) -> int:
    """Meter values, the bulk of the seed (a month of 50 stations is over a million rows).

    On SQLite a raw executemany without per-value type processing, which is 3x faster;
    elsewhere a Core insert.
    """
    connection = await s.connection()
    sqlite = connection.dialect.name == "sqlite"
    table = m.MeterSample.__table__
    assert isinstance(table, Table)
    compiled = (
        insert(table)
        .values({c: bindparam(c) for c in _SAMPLE_COLUMNS})
        .compile(dialect=connection.dialect)
    )
    assert list(compiled.positiontup or ()) == list(_SAMPLE_COLUMNS) or not sqlite
    sql = str(compiled)
    stamps: dict[datetime, str] = {}

    def stamp(t: datetime) -> str:
        # The text SQLAlchemy's SQLite DateTime writes (UTCDateTime stores UTC).
        text = stamps.get(t)
        if text is None:
            text = stamps[t] = t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return text

    total = 0
    batch: list[tuple[Any, ...]] = []
    for i, x in enumerate(sessions):
        batch.extend(_sample_tuples(x))
        if len(batch) < BATCH_ROWS and i < len(sessions) - 1:
            continue
        total += len(batch)
        if sqlite:
            rows = [(*r[:3], stamp(r[3]), *r[4:12], stamp(r[12])) for r in batch]
            await connection.exec_driver_sql(sql, rows)
        else:
            dicts = [dict(zip(_SAMPLE_COLUMNS, r, strict=True)) for r in batch]
            await _insert(s, m.MeterSample, dicts)
        batch = []
    return total


def _allocation_rows(
    sessions: Sequence[_Session],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    allocations: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    for x in sessions:
        previous = -1.0
        for t, limit in x.changes:
            allocations.append(
                {
                    "decided_at": t,
                    "charge_point_id": x.station.id,
                    "connector_id": 1,
                    "transaction_id": x.transaction_id,
                    "strategy": "equal",
                    "limit_a": limit,
                    "sent": True,
                    "answer": "Accepted",
                }
            )
            note = _notification(limit, previous, x.station.owner)
            if note is not None:
                notifications.append(
                    {
                        "created_at": t,
                        "charge_point_id": x.station.id,
                        "transaction_id": x.transaction_id,
                        "id_tag": x.station.id_tag,
                        "kind": note[0],
                        "message": note[1],
                    }
                )
            previous = limit
    return allocations, notifications


def _connector_rows(
    garage: Sequence[_Station], sessions: Sequence[_Session], end: datetime
) -> list[dict[str, Any]]:
    current = {x.station.id: x for x in sessions if x.departure > end}
    rows = []
    for i, st in enumerate(garage):
        x = current.get(st.id)
        status = "Available" if x is None else ("Charging" if x.drawing else "SuspendedEV")
        error = "NoError"
        if i == 2 and len(garage) > 3:
            status, error = "Faulted", "GroundFailure"
        rows.append(
            {
                "charge_point_id": st.id,
                "connector_id": 1,
                "status": status,
                "error_code": error,
                "updated_at": end - timedelta(minutes=5),
            }
        )
    return rows


def _status_rows(sessions: Sequence[_Session], end: datetime) -> list[dict[str, Any]]:
    rows = []
    for x in sessions:
        events = [(x.arrival, "Preparing"), (x.arrival + timedelta(seconds=5), "Charging")]
        if x.departure <= end:
            events += [
                (x.departure, "Finishing"),
                (x.departure + timedelta(seconds=20), "Available"),
            ]
        for t, status in events:
            if t < end:
                rows.append(
                    {
                        "charge_point_id": x.station.id,
                        "connector_id": 1,
                        "status": status,
                        "error_code": "NoError",
                        "timestamp": t,
                        "received_at": t,
                    }
                )
    return rows


def _command_rows(garage: Sequence[_Station], end: datetime) -> list[dict[str, Any]]:
    st = garage[0]
    return [
        {
            "charge_point_id": st.id,
            "action": "TriggerMessage",
            "payload": {"requestedMessage": "MeterValues", "connectorId": 1},
            "status": "done",
            "requested_by": "monitor",
            "created_at": end - timedelta(hours=2),
            "sent_at": end - timedelta(hours=2),
            "completed_at": end - timedelta(hours=2) + timedelta(seconds=1),
            "response": {"status": "Accepted"},
            "error": None,
        },
        {
            "charge_point_id": st.id,
            "action": "Reset",
            "payload": {"type": "Soft"},
            "status": "failed",
            "requested_by": "monitor",
            "created_at": end - timedelta(hours=1),
            "sent_at": end - timedelta(hours=1),
            "completed_at": end - timedelta(hours=1) + timedelta(seconds=30),
            "response": None,
            "error": "charge point 'CP001' did not answer Reset within 30 s",
        },
    ]


# ------------------------------------------------------------------ demo accounts
DEMO_MANAGER = "manager"
DEMO_VIEWER = "viewer"


@dataclass(frozen=True)
class DemoAccount:
    """An account `ensure_demo_accounts` made, with its password (for the demo's banner)."""

    name: str
    role: Role
    password: str
    stations: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


async def ensure_demo_accounts(
    repo: Repository,
    residents: Sequence[tuple[str, str]],
    *,
    new_password: Callable[[], str] = generate_password,
) -> list[DemoAccount]:
    """A manager, a viewer and a resident per (station, tag): ``resident1``, ...

    Each run gives every demo account a new generated password (creating the account
    when it is missing), so that the demo can print all of them; other accounts are
    left alone.
    """
    wanted = [
        DemoAccount(DEMO_MANAGER, Role.manager, ""),
        DemoAccount(DEMO_VIEWER, Role.viewer, ""),
        *(
            DemoAccount(f"resident{i}", Role.resident, "", (station,), (tag,))
            for i, (station, tag) in enumerate(residents, start=1)
        ),
    ]
    made = []
    for account in wanted:
        password = new_password()
        hashed = hash_user_password(password)
        if await repo.get_user(account.name) is None:
            await repo.add_user(
                account.name, account.role, hashed, stations=account.stations, tags=account.tags
            )
        else:
            await repo.set_user_password(account.name, hashed)
        made.append(replace(account, password=password))
    return made


def print_demo_accounts(accounts: Sequence[DemoAccount]) -> None:
    print("Monitor accounts (new passwords on every run):")
    for a in accounts:
        mine = ", ".join((*a.stations, *a.tags))
        print(f"  {a.role.value:<9} {a.name:<10} {a.password}" + (f"   ({mine})" if mine else ""))


def _resident(value: str) -> tuple[str, str]:
    station, _, tag = value.partition(":")
    if not station or not tag:
        raise argparse.ArgumentTypeError(f"expected STATION:TAG, e.g. CP01:TAG01, got {value!r}")
    return station, tag


async def _main(args: argparse.Namespace) -> None:
    from csms.store import migrate
    from csms.store.engine import create_engine, create_sessionmaker

    engine = create_engine(args.database_url)
    try:
        await migrate.upgrade(engine)
        sm = create_sessionmaker(engine)
        residents = list(args.resident)
        if not args.accounts_only:
            async with sm() as s:
                if (await s.execute(select(m.ChargePoint.id).limit(1))).first() is not None:
                    raise SystemExit("the database already has charge points; seed an empty one")
            start = args.start or (datetime.now(UTC) - timedelta(days=args.days))
            summary = await seed_demo_data(
                sm, stations=args.stations, days=args.days, start=start, seed=args.seed
            )
            print(summary)
            if not residents:
                garage = _stations(random.Random(args.seed), min(2, args.stations))
                residents = [(st.id, st.id_tag) for st in garage]
        print_demo_accounts(await ensure_demo_accounts(Repository(sm), residents))
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m csms.store.seed",
        description="Fill an empty GarageGrid database with a demo garage (ends now by "
        "default) and demo monitor accounts, whose passwords it prints.",
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--stations", type=int, default=8)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=datetime.fromisoformat, default=None)
    parser.add_argument(
        "--resident",
        type=_resident,
        action="append",
        default=[],
        metavar="STATION:TAG",
        help="a demo resident's station and tag (default: the first two seeded stations)",
    )
    parser.add_argument(
        "--accounts-only",
        action="store_true",
        help="only (re)create the demo accounts and print their passwords",
    )
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
