"""All reads and writes of the CSMS, one unit of work per call, returning domain types.

Every method opens its own session and commits before it returns, so that whatever a
CALLRESULT confirms is durable before the charge point gets it. Database failures are
mapped to :class:`csms.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections import OrderedDict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Insert,
    Integer,
    Select,
    Table,
    Update,
    and_,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from csms.auth import Account, LoginThrottle, Role, hash_password, redact_secrets
from csms.clock import Clock, ClockAnchor, WallClock
from csms.controller.capabilities import (
    Capabilities,
    capabilities_from_json,
    capabilities_to_json,
    charger_may_set_wiring,
    preferred_rate_unit,
    station_wiring,
)
from csms.domain import (
    AuthStatus,
    ChargePointId,
    ChargePointInfo,
    CommandRequest,
    CommandStatus,
    IdTagInfo,
    OpenSession,
    SampledValue,
    SiteConfig,
    StartResult,
    TransactionId,
)
from csms.errors import ConfigError, NotFoundError, StoreError
from csms.meter import (
    DEFAULT_MEASURAND,
    RegisterReading,
    normalise,
    register_flag,
    sample_key,
    station_max_power_w,
)
from csms.store import models as m
from csms.store import rollups

SITE_ROW_ID = 1  # site 1, "default": a single-site install's site


def _site_filter(site_id: int | None, cp_column: Any) -> tuple[Any, ...]:
    """WHERE terms keeping rows whose charge point is on ``site_id`` (None: no terms)."""
    if site_id is None:
        return ()
    on_site = select(m.ChargePoint.id).where(m.ChargePoint.site_id == site_id)
    return (cp_column.in_(on_site),)


def _in_site(stmt: Any, site_id: int | None, cp_column: Any = None) -> Any:
    """``stmt`` limited to the charge points of ``site_id`` (None: unchanged)."""
    if site_id is None:
        return stmt
    if cp_column is None:
        return stmt.where(m.ChargePoint.site_id == site_id)
    return stmt.where(*_site_filter(site_id, cp_column))


# OCPP 1.6 security profiles a charge point may have (3, client certificates, is not yet).
SECURITY_PROFILES = (0, 1, 2, 3)
# OCPP 1.6 integers are 32-bit in practice; anything beyond 64 bits breaks the database.
MAX_METER_WH = 2**63 - 1


def _site_config(row: m.SiteSettings) -> SiteConfig:
    return SiteConfig(
        fuse_limit_a=row.fuse_limit_a,
        margin_a=row.margin_a,
        phases=row.phases,
        voltage_v=row.voltage_v,
        strategy=row.strategy,
        tick_s=row.tick_s,
        default_departure=row.default_departure,
        default_energy_kwh=row.default_energy_kwh,
        timezone=row.timezone,
        price_per_kwh=row.price_per_kwh,
        currency=row.currency,
        heartbeat_interval_s=row.heartbeat_interval_s,
        building_load_max_age_s=row.building_load_max_age_s,
        building_load_worst_case_a=row.building_load_worst_case_a,
        site_id=row.id,
        name=row.name or "default",
    )


# SQLite: units of work that only read, at most this many at once (see Repository).
MAX_READERS = 3
# Rows of a read of the whole fleet are fetched and converted this many at a time, the
# event loop answering chargers in between (10,000 stations at once held it for a tenth
# of a second and more).
ROWS_PER_PART = 500


async def _rows(
    s: AsyncSession, stmt: Any, convert: Callable[[Any], Any] | None = None
) -> list[Any]:
    """Every row of ``stmt`` (converted), fetched in parts with the loop free between."""
    out: list[Any] = []
    result = await s.stream(stmt)
    async for part in result.partitions(ROWS_PER_PART):
        out.extend(part if convert is None else map(convert, part))
        await asyncio.sleep(0)
    return out


# The charge_points columns a ChargePointInfo is made of (all but the profile copies).
_STATION_COLUMNS = tuple(
    c for c in m.ChargePoint.__table__.columns if c.key != "installed_profiles"
)


def _charge_point_info(row: Any) -> ChargePointInfo:
    """From an ORM ChargePoint or a row of `_STATION_COLUMNS` (the same attributes)."""
    steps = (
        tuple(float(s) for s in row.current_steps_a.split(",") if s.strip())
        if row.current_steps_a
        else None
    )
    caps = capabilities_from_json(row.capabilities)
    return ChargePointInfo(
        id=ChargePointId(row.id),
        name=row.name,
        password_hash=row.password_hash,
        max_current_a=row.max_current_a,
        phases=row.phases,
        wiring=row.wiring,
        min_current_a=row.min_current_a,
        only_stack_level_0=row.only_stack_level_0,
        rate_unit=row.rate_unit,
        current_steps_a=steps,
        boot_status=row.boot_status,
        vendor=row.vendor,
        model=row.model,
        firmware_version=row.firmware_version,
        connected=row.connected,
        last_seen_at=row.last_seen_at,
        unmanaged=row.unmanaged,
        unmanaged_reason=row.unmanaged_reason if row.unmanaged else None,
        unmanaged_at=row.unmanaged_at if row.unmanaged else None,
        max_stack_level=caps.max_stack_level if caps else None,
        max_profiles=caps.max_profiles if caps else None,
        max_periods=caps.max_periods if caps else None,
        capabilities_read_at=row.capabilities_read_at,
        wiring_set_by=row.wiring_set_by or "manager",
        security_profile=row.security_profile,
        pending_password_hash=row.pending_password_hash,
        accept_boot_at_once=bool(row.accept_boot_at_once),
        local_list_supported=row.local_list_supported,
        local_list_version=row.local_list_version,
        local_list_in_sync=bool(row.local_list_in_sync),
        site_id=row.site_id,
    )


def _open_session(row: m.Transaction) -> OpenSession:
    return OpenSession(
        transaction_id=TransactionId(row.id),
        charge_point_id=ChargePointId(row.charge_point_id),
        connector_id=row.connector_id,
        id_tag=row.id_tag,
        started_at=row.started_at,
        meter_start_wh=row.meter_start_wh,
        departure_at=row.departure_at,
        energy_needed_wh=row.energy_needed_wh,
        ev_model=row.ev_model,
        battery_kwh=row.battery_kwh,
        target_soc=row.target_soc,
    )


def _sample_rows(
    charge_point_id: str,
    connector_id: int,
    transaction_id: int | None,
    samples: Iterable[SampledValue],
    received_at: datetime,
) -> list[dict[str, Any]]:
    rows = []
    for s in samples:
        norm = normalise(s.value, s.measurand, s.unit)
        measurand = s.measurand or DEFAULT_MEASURAND
        rows.append(
            {
                "charge_point_id": charge_point_id,
                "connector_id": connector_id,
                "transaction_id": transaction_id,
                "timestamp": s.timestamp,
                "measurand": measurand,
                "phase": s.phase,
                "unit": s.unit,
                "context": s.context,
                "location": s.location,
                "raw_value": s.value[:64],
                "value": norm.value,
                "norm_unit": norm.unit,
                "received_at": received_at,
                "sample_key": sample_key(transaction_id, measurand, s.phase, s.location),
                "flag": None,
            }
        )
    return rows


def _insert_ignoring_duplicates(dialect: str) -> Insert:
    """INSERT of meter samples that skips a row already stored (uq_meter_samples_sample).

    On the table, not the ORM class: an executemany without the ORM's bulk machinery
    (a third of the writer's time per batch went there)."""
    table = cast(Table, m.MeterSample.__table__)
    if dialect == "postgresql":
        # RETURNING names the rows stored (a resend returns nothing): those are rolled up.
        returning = [table.c[name] for name in rollups.SAMPLE_COLUMNS]
        return postgresql.insert(table).on_conflict_do_nothing().returning(*returning)
    if dialect == "sqlite":
        # A plain executemany (RETURNING made it ~0.06 ms a message dearer); its rowcount
        # says whether every row was stored (see _insert_samples).
        return sqlite.insert(table).on_conflict_do_nothing()
    raise StoreError(f"no duplicate-ignoring insert for the {dialect} dialect")


async def _insert_samples(
    s: AsyncSession, insert: Insert, rows: list[dict[str, Any]], hourly: rollups.Rollups
) -> None:
    """Insert sample rows (a resent one is skipped) and hand what was stored to the
    rollups: the rows RETURNING names, or on SQLite all of them when the rowcount says
    every one was stored; otherwise the hours they touch are recounted from the samples."""
    result = await s.execute(insert, rows)
    if cast(Any, result).returns_rows:
        hourly.add_samples(result.mappings())
    elif cast(Any, result).rowcount == len(rows):
        hourly.add_samples(rows)
    else:
        hourly.recount_samples(rows)


def _is_register(row: dict[str, Any]) -> bool:
    """The energy register totals are made of (csms.store.queries.energy_buckets)."""
    return bool(
        row["measurand"] == DEFAULT_MEASURAND and row["phase"] is None and row["value"] is not None
    )


@dataclass(frozen=True)
class MeterBatchItem:
    """One MeterValues to store (csms.store.meter_writer groups them)."""

    charge_point_id: str
    connector_id: int
    transaction_id: int | None
    samples: Sequence[SampledValue]


# An energy register's series within a station: (transaction id, connector id when
# outside a transaction, location).
_SeriesKey = tuple[int | None, int | None, str | None]
# Stations whose series tails are remembered, and series per station.
MAX_TAIL_STATIONS = 100_000
MAX_TAIL_SERIES = 16


def _series_key(connector_id: int, tx: Any, row: dict[str, Any]) -> _SeriesKey:
    if tx is not None:
        return (tx.id, None, row["location"])
    return (None, connector_id, row["location"])


def _register_series(cp_id: str, connector_id: int, tx: Any, location: str | None) -> list[Any]:
    """Filters of the plausible energy register readings of one series: the transaction's,
    or the connector's outside any transaction, at one measuring location."""
    ms = m.MeterSample
    where: list[Any] = [
        ms.charge_point_id == cp_id,
        ms.measurand == DEFAULT_MEASURAND,
        ms.phase.is_(None),
        ms.value.is_not(None),
        ms.flag.is_(None),
    ]
    if tx is not None:
        where.append(ms.transaction_id == tx.id)
    else:
        where += [ms.connector_id == connector_id, ms.transaction_id.is_(None)]
    where.append(ms.location.is_(None) if location is None else ms.location == location)
    return where


def _tx_bounds(tx: Any) -> tuple[RegisterReading | None, RegisterReading | None]:
    """A transaction's meterStart and meterStop as register readings."""
    if tx is None:
        return None, None
    start = RegisterReading(tx.started_at, float(tx.meter_start_wh))
    stop = (
        RegisterReading(tx.stopped_at, float(tx.meter_stop_wh))
        if tx.stopped_at is not None and tx.meter_stop_wh is not None
        else None
    )
    return start, stop


class _RegisterTails:
    """The newest plausible energy register reading of each series this process stored
    (committed), so that a reading in order needs no query to be judged. Only a hint:
    a reading not newer than it, or a series not known, is judged against the store."""

    def __init__(self) -> None:
        self._by_station: OrderedDict[str, OrderedDict[_SeriesKey, RegisterReading]] = OrderedDict()

    def get(self, cp_id: str, key: _SeriesKey) -> RegisterReading | None:
        series = self._by_station.get(cp_id)
        return None if series is None else series.get(key)

    def put(self, cp_id: str, key: _SeriesKey, reading: RegisterReading) -> None:
        series = self._by_station.get(cp_id)
        if series is None:
            series = self._by_station[cp_id] = OrderedDict()
            while len(self._by_station) > MAX_TAIL_STATIONS:
                self._by_station.popitem(last=False)
        known = series.get(key)
        if known is None or known.at < reading.at:
            series[key] = reading
            series.move_to_end(key)
            while len(series) > MAX_TAIL_SERIES:
                series.popitem(last=False)
        self._by_station.move_to_end(cp_id)

    def forget(self, cp_id: str) -> None:
        self._by_station.pop(cp_id, None)


class Repository:
    """The CSMS's gateway to the database."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock | None = None):
        self._sessionmaker = sessionmaker
        self._clock: Clock = clock or WallClock()
        # SQLite has one writer at a time. Units of work of this process take turns here
        # instead of in SQLite's busy loop, where many chargers' writes piled up past the
        # busy timeout ("database is locked") under load. Other processes (monitor, CLI)
        # still meet the busy timeout, briefly.
        bind = sessionmaker.kw.get("bind")
        self._serial: asyncio.Lock | None = (
            asyncio.Lock() if bind is not None and bind.dialect.name == "sqlite" else None
        )
        # Reads beside the writer, a few at a time: the connection pool keeps room for
        # the writer (a mass connect's station lookups would take every connection).
        self._readers: asyncio.Semaphore | None = (
            asyncio.Semaphore(MAX_READERS) if self._serial is not None else None
        )
        self._tails = _RegisterTails()
        # A view of one site (`for_site`): what names no site is that site's; None: site 1
        # for a site's settings, every site for a listing.
        self._site_id: int | None = None
        # This `csms serve` instance among several on one PostgreSQL database (set by
        # `csms.cluster`); None: the only one.
        self.instance_id: str | None = None

    def for_site(self, site_id: int) -> Repository:
        """The same store seen from one site (a site's controller): its settings, its
        stations, their connectors, sessions and profiles, its building load."""
        view = copy.copy(self)
        view._site_id = site_id
        return view

    @property
    def site_id(self) -> int | None:
        return self._site_id

    def _site(self, site_id: int | None) -> int:
        """The one site meant: the one named, else this view's, else site 1."""
        if site_id is not None:
            return site_id
        return self._site_id if self._site_id is not None else SITE_ROW_ID

    def _scope(self, site_id: int | None) -> int | None:
        """The site a listing is limited to: the one named, else this view's, else none."""
        return site_id if site_id is not None else self._site_id

    def forget_register_tails(self, cp_id: str) -> None:
        """A station (re)connects: its readings may have been stored elsewhere meanwhile
        (another instance), so its series are judged against the store again."""
        self._tails.forget(cp_id)

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back and map errors otherwise."""
        turn = self._serial if self._serial is not None else contextlib.nullcontext()
        async with turn, self._transaction() as session:
            yield session

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads: it does not take this process's writers' turn
        (SQLite in WAL mode reads beside its one writer). The controller's reads of every
        station held the turn for tens of milliseconds every second at 5,000 chargers, and
        every MeterValues commit waited behind them. Nothing in it may write."""
        readers = self._readers if self._readers is not None else contextlib.nullcontext()
        async with readers, self._transaction() as session:
            yield session

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessionmaker() as session, session.begin():
                yield session
        except (ConfigError, StoreError):
            raise
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"database unavailable: {exc}") from exc

    def now(self) -> datetime:
        return self._clock.now()

    def unit_of_work(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """One unit of work for a store module beside this one (csms.store.features)."""
        return self._unit()

    def reading(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A unit of work that only reads (see `_reading`), for a store module beside this."""
        return self._reading()

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """For bulk tools (the demo seeder) that write many rows in one unit of work."""
        return self._sessionmaker

    # ------------------------------------------------------------------ clock
    async def publish_clock(self, anchor: ClockAnchor, published_by: str) -> None:
        """Tell the monitor what time it is here (the CSMS's clock, maybe simulated)."""
        async with self._unit() as s:
            row = await s.get(m.ClockAnchor, SITE_ROW_ID)
            if row is None:
                row = m.ClockAnchor(id=SITE_ROW_ID)
                s.add(row)
            row.sim_at = anchor.sim_at
            row.wall_at = anchor.wall_at
            row.speed = anchor.speed
            row.published_by = published_by[:128]

    # ------------------------------------------------------------------ site
    async def _site_row(self, s: AsyncSession, site_id: int | None) -> m.SiteSettings:
        """A site's row; site 1 ("default") is made on first use, any other must exist."""
        wanted = self._site(site_id)
        row = await s.get(m.SiteSettings, wanted)
        if row is None:
            if wanted != SITE_ROW_ID:
                raise NotFoundError(f"no site {wanted}")
            row = m.SiteSettings(id=SITE_ROW_ID, name="default")
            s.add(row)
            await s.flush()
        return row

    async def site_config(self, site_id: int | None = None) -> SiteConfig:
        async with self._unit() as s:
            return _site_config(await self._site_row(s, site_id))

    async def add_site(self, name: str, **values: Any) -> SiteConfig:
        """A new site with these settings (validated by the caller), the others default."""
        name = name.strip()
        if not name or len(name) > 64:
            raise ConfigError("a site name is 1 to 64 characters")
        async with self._unit() as s:
            await self._site_row(s, SITE_ROW_ID)  # site 1 first: new ones number from 2
            if await s.scalar(select(m.SiteSettings.id).where(m.SiteSettings.name == name)):
                raise ConfigError(f"site {name!r} already exists")
            # Numbered here, not by the database: site 1 was written with its id, so a
            # PostgreSQL sequence would hand out 1 again.
            last = await s.scalar(select(func.max(m.SiteSettings.id)))
            row = m.SiteSettings(id=(last or 0) + 1, name=name)
            for key, value in values.items():
                if key in ("id", "name", "updated_at") or not hasattr(row, key):
                    raise ConfigError(f"unknown site setting {key!r}")
                setattr(row, key, value)
            row.updated_at = self.now()
            s.add(row)
            await s.flush()
            return _site_config(row)

    async def list_sites(self) -> list[SiteConfig]:
        """Every site, by id (site 1 made on first use)."""
        async with self._unit() as s:
            await self._site_row(s, SITE_ROW_ID)
            rows = (await s.execute(select(m.SiteSettings).order_by(m.SiteSettings.id))).scalars()
            return [_site_config(r) for r in rows]

    async def update_site(self, site_id: int | None = None, **values: Any) -> SiteConfig:
        """Write site settings (validated by the caller, see csms.settings)."""
        async with self._unit() as s:
            row = await self._site_row(s, site_id)
            for key, value in values.items():
                if key == "name" and value != row.name:
                    taken = await s.scalar(
                        select(m.SiteSettings.id).where(m.SiteSettings.name == value)
                    )
                    if taken is not None:
                        raise ConfigError(f"site {value!r} already exists")
                if key in ("id", "updated_at") or not hasattr(row, key):
                    raise ConfigError(f"unknown site setting {key!r}")
                setattr(row, key, value)
            row.updated_at = self.now()
            await s.flush()
            return _site_config(row)

    async def record_building_load(
        self,
        l1_a: float,
        l2_a: float,
        l3_a: float,
        *,
        source: str = "cli",
        site_id: int | None = None,
    ) -> None:
        async with self._unit() as s:
            site = (await self._site_row(s, site_id)).id
            s.add(
                m.BuildingLoad(
                    site_id=site,
                    measured_at=self.now(),
                    l1_a=l1_a,
                    l2_a=l2_a,
                    l3_a=l3_a,
                    source=source,
                )
            )

    async def latest_building_load(
        self, site_id: int | None = None
    ) -> tuple[datetime, tuple[float, float, float]] | None:
        async with self._reading() as s:
            row = (
                await s.execute(
                    select(m.BuildingLoad)
                    .where(m.BuildingLoad.site_id == self._site(site_id))
                    .order_by(m.BuildingLoad.measured_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if row is None:
                return None
            return row.measured_at, (row.l1_a, row.l2_a, row.l3_a)

    # --------------------------------------------------------- charge points
    async def get_charge_point(self, cp_id: str) -> ChargePointInfo | None:
        # In the writers' turn: a mass connect makes thousands of these at once, and
        # beside the writer they took the connection pool and the CPU from it.
        async with self._unit() as s:
            row = await s.get(m.ChargePoint, cp_id)
            return _charge_point_info(row) if row else None

    async def list_charge_points(self, site_id: int | None = None) -> list[ChargePointInfo]:
        scope = self._scope(site_id)
        async with self._reading() as s:
            # Plain rows, not ORM objects (a third of a controller snapshot's time at 1,000
            # chargers), and without the profile copies: big JSON documents no
            # ChargePointInfo needs.
            stmt = select(*_STATION_COLUMNS).order_by(m.ChargePoint.id)
            if scope is not None:
                stmt = stmt.where(m.ChargePoint.site_id == scope)
            return await _rows(s, stmt, _charge_point_info)

    async def charge_point_sites(self) -> dict[str, int]:
        """Every charge point's site (the controllers of `csms serve` share the chargers)."""
        async with self._reading() as s:
            rows = await _rows(s, select(m.ChargePoint.id, m.ChargePoint.site_id))
            return {str(r[0]): int(r[1]) for r in rows}

    async def controller_inputs(self) -> tuple[object, ...]:
        """What the controller plans with that other processes (the CLI, the monitor) may
        change: the settings, the newest building load, each station's size, wiring,
        connection and management, its connectors, and the open sessions' inputs. Plain
        rows, no ORM objects: read every second, it must stay cheap at 10,000 chargers."""
        cp, tx, conn = m.ChargePoint, m.Transaction, m.Connector
        scope = self._site_id
        async with self._reading() as s:
            site_row = await s.get(m.SiteSettings, self._site(None))
            site = _site_config(site_row) if site_row is not None else None
            building = (
                await s.execute(
                    select(
                        m.BuildingLoad.measured_at,
                        m.BuildingLoad.l1_a,
                        m.BuildingLoad.l2_a,
                        m.BuildingLoad.l3_a,
                    )
                    .where(m.BuildingLoad.site_id == self._site(None))
                    .order_by(m.BuildingLoad.measured_at.desc())
                    .limit(1)
                )
            ).first()
            stations = await _rows(
                s,
                _in_site(
                    select(
                        cp.id,
                        cp.max_current_a,
                        cp.phases,
                        cp.wiring,
                        cp.connected,
                        cp.unmanaged,
                    ).order_by(cp.id),
                    scope,
                ),
                tuple,
            )
            connectors = await _rows(
                s,
                _in_site(
                    select(conn.charge_point_id, conn.connector_id)
                    .where(conn.connector_id > 0)
                    .order_by(conn.charge_point_id, conn.connector_id),
                    scope,
                    conn.charge_point_id,
                ),
                tuple,
            )
            sessions = (
                await s.execute(
                    _in_site(
                        select(
                            tx.id,
                            tx.departure_at,
                            tx.energy_needed_wh,
                            tx.ev_model,
                            tx.battery_kwh,
                            tx.target_soc,
                        )
                        .where(tx.stopped_at.is_(None))
                        .order_by(tx.id),
                        scope,
                        tx.charge_point_id,
                    )
                )
            ).all()
        return (
            site,
            None if building is None else tuple(building),
            tuple(stations),
            tuple(connectors),
            tuple(tuple(r) for r in sessions),
        )

    async def add_charge_point(
        self,
        cp_id: str,
        *,
        max_current_a: float = 32.0,
        phases: int = 3,
        wiring: str | None = None,
        name: str | None = None,
        password: str | None = None,
        auto_registered: bool = False,
        only_stack_level_0: bool = False,
        rate_unit: str = "A",
        current_steps_a: Sequence[float] | None = None,
        security_profile: int | None = None,
        site_id: int | None = None,
    ) -> ChargePointInfo:
        """Register a charge point (on ``site_id``: else this view's site, else site 1).

        ``security_profile`` None: 1 with a password, 0 without. That default serves this
        in-process API (tests, tools); every path a person uses states it: ``csms station
        add`` (profile 1 unless ``--unsecured``), ``--auto-register`` (1 with the first
        password; 0 only under ``--auto-register-unsecured``).
        """
        if security_profile is None:
            security_profile = 1 if password else 0
        if security_profile not in SECURITY_PROFILES:
            raise ConfigError(f"security profile must be one of {SECURITY_PROFILES}")
        row = m.ChargePoint(
            id=cp_id,
            name=name,
            password_hash=hash_password(password) if password else None,
            security_profile=security_profile,
            max_current_a=max_current_a,
            phases=phases,
            wiring=wiring or ("L1L2L3" if phases == 3 else "L1"),
            min_current_a=6.0,
            only_stack_level_0=only_stack_level_0,
            rate_unit=rate_unit,
            current_steps_a=",".join(f"{x:g}" for x in current_steps_a)
            if current_steps_a
            else None,
            auto_registered=auto_registered,
            created_at=self.now(),
            wiring_set_by="manager",
        )
        try:
            async with self._unit() as s:
                row.site_id = (await self._site_row(s, site_id)).id
                s.add(row)
        except IntegrityError as exc:
            raise ConfigError(f"charge point {cp_id!r} already exists") from exc
        return _charge_point_info(row)

    async def update_charge_point(self, cp_id: str, **values: Any) -> ChargePointInfo:
        async with self._unit() as s:
            row = await s.get(m.ChargePoint, cp_id)
            if row is None:
                raise NotFoundError(f"no charge point {cp_id!r}")
            if values.get("site_id") is not None:
                values["site_id"] = (await self._site_row(s, values["site_id"])).id
            if "password" in values:
                password = values.pop("password")
                row.password_hash = hash_password(password) if password else None
                # A manager's password replaces any rotation still in doubt.
                row.pending_password_hash = None
            profile = values.get("security_profile", row.security_profile)
            if profile not in SECURITY_PROFILES:
                raise ConfigError(f"security profile must be one of {SECURITY_PROFILES}")
            if values.get("wiring") not in (None, row.wiring):
                # This is the manager's edit: a wiring that changes here was typed by a person.
                values.setdefault("wiring_set_by", "manager")
            for key, value in values.items():
                if not hasattr(row, key) or key in {
                    "id",
                    "password_hash",
                    "pending_password_hash",
                }:
                    raise ConfigError(f"unknown charge point field {key!r}")
                setattr(row, key, value)
            await s.flush()
            return _charge_point_info(row)

    async def set_authorization_key(self, cp_id: str, key: str, *, confirmed: bool) -> None:
        """Store a key sent with ChangeConfiguration(AuthorizationKey).

        ``confirmed`` (the charger answered Accepted): the key replaces the password at
        once and the old one stops working (OCPP 1.6 security whitepaper). Otherwise (no
        answer, RebootRequired) the old password stays and the new key is accepted besides
        it until the charger first logs in with it (`confirm_pending_password`).
        """
        digest = await asyncio.to_thread(hash_password, key)
        async with self._unit() as s:
            row = await s.get(m.ChargePoint, cp_id)
            if row is None:
                raise NotFoundError(f"no charge point {cp_id!r}")
            if confirmed:
                row.password_hash = digest
                row.pending_password_hash = None
            else:
                row.pending_password_hash = digest

    async def confirm_pending_password(self, cp_id: str, pending_hash: str) -> bool:
        """The charger logged in with its pending key: it becomes the only one."""
        async with self._unit() as s:
            result = await s.execute(
                update(m.ChargePoint)
                .where(
                    m.ChargePoint.id == cp_id,
                    m.ChargePoint.pending_password_hash == pending_hash,
                )
                .values(password_hash=pending_hash, pending_password_hash=None)
            )
            return bool(getattr(result, "rowcount", 0))

    async def remove_charge_point(self, cp_id: str) -> None:
        async with self._unit() as s:
            row = await s.get(m.ChargePoint, cp_id)
            if row is None:
                raise NotFoundError(f"no charge point {cp_id!r}")
            await s.delete(row)

    async def record_connection_event(
        self, cp_id: str, event: str, *, remote: str | None = None, detail: str | None = None
    ) -> None:
        async with self._unit() as s:
            s.add(
                m.ConnectionEvent(
                    at=self.now(),
                    charge_point_id=cp_id,
                    event=event,
                    remote=remote,
                    detail=(detail or "")[:255] or None,
                )
            )

    async def add_security_event(
        self, cp_id: str, event_type: str, occurred_at: datetime, *, tech_info: str | None
    ) -> None:
        """A SecurityEventNotification (OCPP 1.6 security extension), committed before the
        charger is answered."""
        async with self._unit() as s:
            s.add(
                m.SecurityEvent(
                    charge_point_id=cp_id,
                    type=event_type[:50],
                    tech_info=tech_info[:255] if tech_info is not None else None,
                    occurred_at=occurred_at,
                    received_at=self.now(),
                )
            )

    async def security_events(self, cp_id: str | None = None) -> list[dict[str, Any]]:
        """Security events, newest first (all stations, or one)."""
        query = select(m.SecurityEvent).order_by(
            m.SecurityEvent.received_at.desc(), m.SecurityEvent.id.desc()
        )
        if cp_id is not None:
            query = query.where(m.SecurityEvent.charge_point_id == cp_id)
        async with self._unit() as s:
            rows = (await s.scalars(query)).all()
        return [
            {
                "charge_point_id": r.charge_point_id,
                "type": r.type,
                "tech_info": r.tech_info,
                "occurred_at": r.occurred_at,
                "received_at": r.received_at,
            }
            for r in rows
        ]

    async def set_connected(self, cp_id: str, connected: bool) -> None:
        """Connected here, or no longer; a charger that has meanwhile reconnected to
        another instance is left as that instance marked it."""
        async with self._unit() as s:
            if connected:
                await s.execute(
                    _seen(cp_id, self.now(), connected=True, instance_id=self.instance_id)
                )
                return
            query = _seen(cp_id, self.now(), connected=False, instance_id=None)
            if self.instance_id is not None:
                query = query.where(
                    or_(
                        m.ChargePoint.instance_id == self.instance_id,
                        m.ChargePoint.instance_id.is_(None),
                    )
                )
            await s.execute(query)

    async def mark_all_disconnected(self, alive: Collection[str] | None = None) -> None:
        """At CSMS start nothing is connected, whatever an earlier crash left behind; with
        several instances (``alive``: the live ones' ids), only what this instance or a
        dead one held."""
        async with self._unit() as s:
            query = update(m.ChargePoint).values(connected=False, instance_id=None)
            if alive is not None:
                query = query.where(
                    or_(
                        m.ChargePoint.instance_id.is_(None),
                        m.ChargePoint.instance_id.not_in(list(alive)),
                    )
                )
            await s.execute(query)

    async def disconnect_instance(self, instance_id: str) -> list[str]:
        """The chargers a dead instance held are disconnected (those that have not
        reconnected elsewhere meanwhile); returns their ids."""
        async with self._unit() as s:
            ids = (
                (
                    await s.execute(
                        select(m.ChargePoint.id).where(
                            m.ChargePoint.connected.is_(True),
                            m.ChargePoint.instance_id == instance_id,
                        )
                    )
                )
                .scalars()
                .all()
            )
            if ids:
                await s.execute(
                    update(m.ChargePoint)
                    .where(m.ChargePoint.id.in_(ids), m.ChargePoint.instance_id == instance_id)
                    .values(connected=False, instance_id=None)
                )
            return sorted(ids)

    async def chargers_per_instance(self) -> dict[str, int]:
        """How many connected chargers each instance holds (several on PostgreSQL)."""
        async with self._unit() as s:
            rows = await s.execute(
                select(m.ChargePoint.instance_id, func.count())
                .where(m.ChargePoint.connected.is_(True), m.ChargePoint.instance_id.is_not(None))
                .group_by(m.ChargePoint.instance_id)
            )
            return {str(instance): int(count) for instance, count in rows}

    async def connected_elsewhere(self) -> dict[str, tuple[str, bool]]:
        """Chargers another instance holds: id -> (instance, boot Accepted)."""
        async with self._unit() as s:
            rows = await s.execute(
                select(
                    m.ChargePoint.id, m.ChargePoint.instance_id, m.ChargePoint.boot_status
                ).where(
                    m.ChargePoint.connected.is_(True),
                    m.ChargePoint.instance_id.is_not(None),
                    m.ChargePoint.instance_id != (self.instance_id or ""),
                )
            )
            return {str(r[0]): (str(r[1]), r[2] == "Accepted") for r in rows}

    async def touch(self, cp_id: str) -> None:
        async with self._unit() as s:
            await s.execute(_seen(cp_id, self.now()))

    async def record_boot(self, cp_id: str, status: str, **fields: str | None) -> None:
        async with self._unit() as s:
            row = await s.get(m.ChargePoint, cp_id)
            if row is None:
                raise NotFoundError(f"no charge point {cp_id!r}")
            for key, value in fields.items():
                setattr(row, key, value)
            row.boot_status = status
            row.last_boot_at = row.last_seen_at = self.now()

    async def set_charge_point_status_field(self, cp_id: str, field: str, value: str) -> None:
        if field not in {"firmware_status", "diagnostics_status"}:
            raise ConfigError(f"not a status field: {field}")
        async with self._unit() as s:
            await s.execute(_seen(cp_id, self.now(), **{field: value}))

    async def record_status(
        self,
        cp_id: str,
        connector_id: int,
        status: str,
        error_code: str,
        *,
        info: str | None = None,
        vendor_id: str | None = None,
        vendor_error_code: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        now = self.now()
        async with self._unit() as s:
            s.add(
                m.StatusEvent(
                    charge_point_id=cp_id,
                    connector_id=connector_id,
                    status=status,
                    error_code=error_code,
                    info=info,
                    vendor_id=vendor_id,
                    vendor_error_code=vendor_error_code,
                    timestamp=timestamp,
                    received_at=now,
                )
            )
            row = await s.get(m.Connector, (cp_id, connector_id))
            if row is None:
                row = m.Connector(charge_point_id=cp_id, connector_id=connector_id, status=status)
                s.add(row)
            row.status = status
            row.error_code = error_code
            row.info = info
            row.vendor_error_code = vendor_error_code
            row.updated_at = timestamp or now
            await s.execute(_seen(cp_id, now))

    # ---------------------------------------------------------------- id tags
    async def add_id_tag(
        self,
        tag: str,
        *,
        owner: str | None = None,
        expires_at: datetime | None = None,
        parent: str | None = None,
        site_id: int | None = None,
    ) -> None:
        try:
            async with self._unit() as s:
                site = (await self._site_row(s, site_id)).id
                s.add(
                    m.IdTag(
                        id_tag=tag,
                        site_id=site,
                        owner=owner,
                        expires_at=expires_at,
                        parent_id_tag=parent,
                        created_at=self.now(),
                    )
                )
        except IntegrityError as exc:
            raise ConfigError(f"id tag {tag!r} already exists") from exc

    async def list_id_tags(self, site_id: int | None = None) -> list[dict[str, Any]]:
        scope = self._scope(site_id)
        async with self._unit() as s:
            stmt = select(m.IdTag).order_by(m.IdTag.id_tag)
            if scope is not None:
                stmt = stmt.where(m.IdTag.site_id == scope)
            rows = (await s.execute(stmt)).scalars()
            return [
                {
                    "id_tag": r.id_tag,
                    "site_id": r.site_id,
                    "owner": r.owner,
                    "parent": r.parent_id_tag,
                    "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                    "blocked": r.blocked,
                }
                for r in rows
            ]

    async def set_id_tag_blocked(self, tag: str, blocked: bool = True) -> None:
        async with self._unit() as s:
            row = await s.get(m.IdTag, tag)
            if row is None:
                raise NotFoundError(f"no id tag {tag!r}")
            row.blocked = blocked

    async def authorize(self, tag: str, cp_id: str | None = None) -> IdTagInfo:
        """How a tag is answered (at ``cp_id``: a tag of another site is Invalid there)."""
        async with self._unit() as s:
            return await self._authorize(s, tag, cp_id)

    async def _authorize(self, s: AsyncSession, tag: str, cp_id: str | None = None) -> IdTagInfo:
        row = await s.get(m.IdTag, tag)
        if row is None:
            return IdTagInfo(AuthStatus.invalid)
        if cp_id is not None:
            site_id = await s.scalar(select(m.ChargePoint.site_id).where(m.ChargePoint.id == cp_id))
            if site_id is not None and site_id != row.site_id:
                return IdTagInfo(AuthStatus.invalid)
        if row.blocked:
            return IdTagInfo(AuthStatus.blocked, parent_id_tag=row.parent_id_tag)
        if row.expires_at is not None and row.expires_at <= self.now():
            return IdTagInfo(AuthStatus.expired, row.expires_at, row.parent_id_tag)
        return IdTagInfo(AuthStatus.accepted, row.expires_at, row.parent_id_tag)

    # ----------------------------------------------------------- transactions
    async def start_transaction(
        self,
        cp_id: str,
        connector_id: int,
        id_tag: str,
        meter_start_wh: int,
        timestamp: datetime,
        reservation_id: int | None = None,
    ) -> StartResult:
        """Record a StartTransaction; a resend of the same start returns the same id."""
        for _attempt in range(2):
            try:
                return await self._start_transaction(
                    cp_id, connector_id, id_tag, meter_start_wh, timestamp, reservation_id
                )
            except IntegrityError:
                # Two identical starts raced; the second attempt finds the first row.
                continue
        raise StoreError("could not record StartTransaction after a unique-constraint retry")

    async def _start_transaction(
        self,
        cp_id: str,
        connector_id: int,
        id_tag: str,
        meter_start_wh: int,
        timestamp: datetime,
        reservation_id: int | None,
    ) -> StartResult:
        async with self._unit() as s:
            info = await self._authorize(s, id_tag, cp_id)
            existing = (
                await s.execute(
                    select(m.Transaction).where(
                        m.Transaction.charge_point_id == cp_id,
                        m.Transaction.connector_id == connector_id,
                        m.Transaction.id_tag == id_tag,
                        m.Transaction.meter_start_wh == meter_start_wh,
                        m.Transaction.started_at == timestamp,
                    )
                )
            ).scalar_one_or_none()
            if existing is not None:
                return StartResult(
                    TransactionId(existing.id),
                    IdTagInfo(
                        AuthStatus(existing.auth_status), info.expiry_date, info.parent_id_tag
                    ),
                    duplicate=True,
                )
            if info.status is AuthStatus.accepted:
                concurrent = (
                    await s.execute(
                        select(m.Transaction.id).where(
                            m.Transaction.id_tag == id_tag,
                            m.Transaction.stopped_at.is_(None),
                            ~and_(
                                m.Transaction.charge_point_id == cp_id,
                                m.Transaction.connector_id == connector_id,
                            ),
                        )
                    )
                ).first()
                if concurrent is not None:
                    info = IdTagInfo(AuthStatus.concurrent_tx, info.expiry_date, info.parent_id_tag)
            # A connector has one transaction at a time: an older one still open here lost
            # its StopTransaction. Close it at this start so the books balance, and flag it.
            superseded = (
                (
                    await s.execute(
                        select(m.Transaction).where(
                            m.Transaction.charge_point_id == cp_id,
                            m.Transaction.connector_id == connector_id,
                            m.Transaction.stopped_at.is_(None),
                        )
                    )
                )
                .scalars()
                .all()
            )
            row = m.Transaction(
                charge_point_id=cp_id,
                connector_id=connector_id,
                id_tag=id_tag,
                auth_status=info.status.value,
                reservation_id=reservation_id,
                meter_start_wh=meter_start_wh,
                started_at=timestamp,
                created_at=self.now(),
            )
            s.add(row)
            await s.flush()
            hourly = rollups.Rollups(s)
            for old in superseded:
                old.stopped_at = timestamp
                old.meter_stop_wh = max(old.meter_start_wh, meter_start_wh)
                old.stop_reason = "Other"
                old.flags = f"superseded_by:{row.id}"
                hourly.add_stop(old.id, cp_id, timestamp, old.meter_stop_wh)
            await hourly.flush()
            return StartResult(TransactionId(row.id), info, duplicate=False)

    async def stop_transaction(
        self,
        cp_id: str,
        transaction_id: int,
        meter_stop_wh: int,
        timestamp: datetime,
        *,
        reason: str | None = None,
        id_tag: str | None = None,
        transaction_data: Sequence[SampledValue] = (),
        raw_transaction_data: Any = None,
    ) -> tuple[IdTagInfo | None, bool]:
        """Record a StopTransaction. Returns (idTagInfo to answer, whether it was an orphan).

        Exactly once: a resend (same transaction, meterStop and timestamp; any message id,
        any connection) is acknowledged with the same answer and stores nothing.
        """
        now = self.now()
        async with self._unit() as s:
            info = await self._authorize(s, id_tag) if id_tag else None
            row = await s.get(m.Transaction, transaction_id) if transaction_id > 0 else None
            if row is None or row.charge_point_id != cp_id:
                known = (
                    await s.execute(
                        select(m.OrphanStop.id).where(
                            m.OrphanStop.charge_point_id == cp_id,
                            m.OrphanStop.reported_transaction_id == transaction_id,
                            m.OrphanStop.meter_stop_wh == meter_stop_wh,
                            m.OrphanStop.stopped_at == timestamp,
                        )
                    )
                ).first()
                if known is None:
                    s.add(
                        m.OrphanStop(
                            charge_point_id=cp_id,
                            reported_transaction_id=transaction_id,
                            id_tag=id_tag,
                            meter_stop_wh=meter_stop_wh,
                            stopped_at=timestamp,
                            reason=reason,
                            transaction_data=raw_transaction_data,
                            received_at=now,
                        )
                    )
                    await self._store_samples(s, cp_id, 0, None, transaction_data, now)
                return info, True
            flags = [f for f in (row.flags or "").split(",") if f]
            superseded = any(f.startswith("superseded_by:") for f in flags)
            if row.stopped_at is not None and (row.stopped_at, row.meter_stop_wh) == (
                timestamp,
                meter_stop_wh,
            ):
                # A resend of the stop already recorded: acknowledge it, store nothing twice.
                return info, False
            if row.stopped_at is None or (superseded and LATE_STOP not in flags):
                hourly = rollups.Rollups(s)
                if row.stopped_at is None:
                    hourly.add_stop(row.id, cp_id, timestamp, meter_stop_wh)
                else:
                    # The stop its successor's start wrote is replaced by this one.
                    hourly.recount(row.id, cp_id, row.stopped_at)
                    hourly.recount(row.id, cp_id, timestamp)
                row.stopped_at = timestamp
                row.meter_stop_wh = meter_stop_wh
                row.stop_reason = reason or "Local"
                row.stop_id_tag = id_tag
                if superseded:
                    # Closed by the next start on its connector; this is its real stop.
                    row.flags = _add_flag(row.flags, LATE_STOP)
                if meter_stop_wh < row.meter_start_wh:
                    row.flags = _add_flag(row.flags, "meter_stop_below_start")
                await s.flush()
                await hourly.flush()
                await self._store_samples(s, cp_id, row.connector_id, row, transaction_data, now)
            else:
                # Another stop for a transaction that has one: keep the first, say so.
                row.flags = _add_flag(row.flags, CONFLICTING_STOP)
            return info, False

    async def add_meter_values(
        self,
        cp_id: str,
        connector_id: int,
        transaction_id: int | None,
        samples: Sequence[SampledValue],
    ) -> list[str | None]:
        """Store a MeterValues; returns each sample's flag (None: a plausible reading).

        A sample already stored (a resend, on this connection or another) is skipped.
        """
        item = MeterBatchItem(cp_id, connector_id, transaction_id, tuple(samples))
        return (await self.add_meter_values_batch([item]))[0]

    async def add_meter_values_batch(
        self,
        items: Sequence[MeterBatchItem],
        *,
        before_commit: Callable[[Sequence[MeterBatchItem]], Awaitable[None]] | None = None,
    ) -> list[list[str | None]]:
        """Store many MeterValues in ONE unit of work (group commit): every item's flags,
        in order, once the commit is done; if anything fails, nothing of the batch is
        stored and the error is raised (the caller acknowledges nothing of it).

        Per batch: one read of the transactions and one of the stations named, one read
        of the newest stored plausible register reading of every series this process
        knows no tail of (`_RegisterTails`), one INSERT of every sample, one last-seen
        UPDATE. A register reading newer than the newest plausible reading of its series
        (known, or just read) is judged against that one; any other reading (out of
        order, a resend) against the stored ones on both sides (two queries, as a
        StopTransaction's transactionData is). ``before_commit`` runs inside the unit,
        after the writes (tests hold or fail a commit there).
        """
        if not items:
            return []
        now = self.now()
        learned: dict[str, dict[_SeriesKey, RegisterReading]] = {}
        results: list[list[str | None]] = []
        async with self._unit() as s:
            dialect = s.get_bind().dialect.name
            tx_ids = {i.transaction_id for i in items if i.transaction_id is not None}
            txs: dict[int, Any] = {}
            if tx_ids:
                t = m.Transaction
                for tx_row in await s.execute(
                    select(
                        t.id,
                        t.charge_point_id,
                        t.started_at,
                        t.meter_start_wh,
                        t.stopped_at,
                        t.meter_stop_wh,
                    ).where(t.id.in_(tx_ids))
                ):
                    txs[tx_row.id] = tx_row
            cp_ids = {i.charge_point_id for i in items}
            cp = m.ChargePoint
            max_power = {
                row.id: station_max_power_w(row.max_current_a, row.phases)
                for row in await s.execute(
                    select(cp.id, cp.max_current_a, cp.phases).where(cp.id.in_(cp_ids))
                )
            }
            insert = _insert_ignoring_duplicates(dialect)
            hourly = rollups.Rollups(s)
            prepared: list[tuple[MeterBatchItem, Any, list[dict[str, Any]]]] = []
            # Series this process knows no tail of: their newest stored plausible reading
            # is read for all of them at once (a station's first readings after it
            # connected would otherwise cost two queries each, one after the other).
            unknown: dict[tuple[str, _SeriesKey], tuple[str, int, Any, str | None]] = {}
            for item in items:
                tx = txs.get(item.transaction_id) if item.transaction_id is not None else None
                if tx is not None and tx.charge_point_id != item.charge_point_id:
                    tx = None
                rows = _sample_rows(
                    item.charge_point_id,
                    item.connector_id,
                    tx.id if tx is not None else None,
                    item.samples,
                    now,
                )
                prepared.append((item, tx, rows))
                if item.charge_point_id not in max_power:
                    continue
                for r in rows:
                    if _is_register(r):
                        key = _series_key(item.connector_id, tx, r)
                        if self._tails.get(item.charge_point_id, key) is None:
                            unknown[(item.charge_point_id, key)] = (
                                item.charge_point_id,
                                item.connector_id,
                                tx,
                                r["location"],
                            )
            stored = dict(
                zip(unknown, await _newest_registers(s, list(unknown.values())), strict=True)
            )
            pending: list[dict[str, Any]] = []
            for item, tx, rows in prepared:
                power = max_power.get(item.charge_point_id)
                if power is not None and any(_is_register(r) for r in rows):
                    for sample in sorted(
                        (r for r in rows if _is_register(r)), key=lambda r: r["timestamp"]
                    ):
                        key = _series_key(item.connector_id, tx, sample)
                        tail = learned.get(item.charge_point_id, {}).get(key)
                        if tail is None:
                            tail = self._tails.get(item.charge_point_id, key)
                        # Nothing stored in the series (and nothing plausible in this
                        # batch before): judged against the transaction's bounds alone.
                        none_stored = False
                        if tail is None and (item.charge_point_id, key) in stored:
                            tail = stored[(item.charge_point_id, key)]
                            none_stored = tail is None
                        reading = RegisterReading(sample["timestamp"], float(sample["value"]))
                        if none_stored or (tail is not None and tail.at < reading.at):
                            start, stop = _tx_bounds(tx)
                            earlier = [
                                r for r in (start, tail) if r is not None and r.at < reading.at
                            ]
                            sample["flag"] = register_flag(
                                reading,
                                before=max(earlier, key=lambda r: r.at, default=None),
                                after=stop if stop is not None and stop.at > reading.at else None,
                                max_power_w=power,
                            )
                            # Flagged: the series' newest plausible reading stays the tail.
                            newest = reading if sample["flag"] is None else tail
                        else:
                            if pending:
                                await _insert_samples(s, insert, pending, hourly)
                                pending = []
                            newest = await self._judge_stored(
                                s, item.charge_point_id, item.connector_id, tx, sample, power
                            )
                        if newest is not None:
                            learned.setdefault(item.charge_point_id, {})[key] = newest
                pending += rows
                results.append([r["flag"] for r in rows])
            if pending:
                await _insert_samples(s, insert, pending, hourly)
            await hourly.flush()
            if self._serial is None:
                # PostgreSQL: the rows are locked in id order, as every other write of many
                # stations' rows does (profile copies), so that two instances' writers and a
                # site's leader never deadlock (an UPDATE ... IN locks in scan order).
                await s.execute(
                    select(cp.id)
                    .where(cp.id.in_(cp_ids))
                    .order_by(cp.id)
                    .with_for_update(key_share=True)  # FOR NO KEY UPDATE
                )
            await s.execute(update(cp).where(cp.id.in_(cp_ids)).values(last_seen_at=now))
            if before_commit is not None:
                await before_commit(items)
        for cp_id, series in learned.items():
            for key, reading in series.items():
                self._tails.put(cp_id, key, reading)
        return results

    async def _judge_stored(
        self,
        s: AsyncSession,
        cp_id: str,
        connector_id: int,
        tx: Any,
        row: dict[str, Any],
        max_power_w: float,
    ) -> RegisterReading | None:
        """Flag one register reading against the stored plausible readings nearest in
        time; returns the newest plausible reading of its series if nothing stored is
        later (None: unknown)."""
        ms = m.MeterSample
        where = _register_series(cp_id, connector_id, tx, row["location"])
        reading = RegisterReading(row["timestamp"], float(row["value"]))
        start, stop = _tx_bounds(tx)
        stored_before = await _readings(s, where, ms.timestamp < reading.at, ms.timestamp.desc())
        stored_after = await _readings(s, where, ms.timestamp > reading.at, ms.timestamp)
        earlier = [r for r in (start,) if r is not None and r.at < reading.at] + stored_before
        later = ([stop] if stop is not None and stop.at > reading.at else []) + stored_after
        row["flag"] = register_flag(
            reading,
            before=max(earlier, key=lambda r: r.at, default=None),
            after=min(later, key=lambda r: r.at, default=None),
            max_power_w=max_power_w,
        )
        if stored_after:
            return None
        if row["flag"] is None:
            return reading
        return stored_before[0] if stored_before else None

    async def _store_samples(
        self,
        s: AsyncSession,
        cp_id: str,
        connector_id: int,
        tx: m.Transaction | None,
        samples: Sequence[SampledValue],
        now: datetime,
    ) -> list[str | None]:
        rows = _sample_rows(cp_id, connector_id, tx.id if tx else None, samples, now)
        if not rows:
            return []
        # Readings stored outside add_meter_values_batch: what it knows of this station's
        # newest readings may be out of date now.
        self._tails.forget(cp_id)
        if any(_is_register(r) for r in rows):
            await self._flag_registers(s, cp_id, connector_id, tx, rows)
        hourly = rollups.Rollups(s)
        await _insert_samples(
            s, _insert_ignoring_duplicates(s.get_bind().dialect.name), rows, hourly
        )
        await hourly.flush()
        return [r["flag"] for r in rows]

    async def _flag_registers(
        self,
        s: AsyncSession,
        cp_id: str,
        connector_id: int,
        tx: m.Transaction | None,
        rows: list[dict[str, Any]],
    ) -> None:
        """Flag energy register readings that cannot be true (csms.meter.register_flag),
        judged against the plausible readings of the same register nearest in time."""
        station = await s.get(m.ChargePoint, cp_id)
        if station is None:
            return
        max_power_w = station_max_power_w(station.max_current_a, station.phases)
        ms = m.MeterSample
        start, stop = _tx_bounds(tx)
        accepted: list[RegisterReading] = []
        for row in sorted((r for r in rows if _is_register(r)), key=lambda r: r["timestamp"]):
            reading = RegisterReading(row["timestamp"], float(row["value"]))
            where = _register_series(cp_id, connector_id, tx, row["location"])
            earlier = [r for r in (start, *accepted) if r is not None and r.at < reading.at]
            earlier += await _readings(s, where, ms.timestamp < reading.at, ms.timestamp.desc())
            later = [stop] if stop is not None and stop.at > reading.at else []
            later += await _readings(s, where, ms.timestamp > reading.at, ms.timestamp)
            row["flag"] = register_flag(
                reading,
                before=max(earlier, key=lambda r: r.at, default=None),
                after=min(later, key=lambda r: r.at, default=None),
                max_power_w=max_power_w,
            )
            if row["flag"] is None:
                accepted.append(reading)

    async def get_transaction(self, transaction_id: int) -> dict[str, Any] | None:
        async with self._unit() as s:
            row = await s.get(m.Transaction, transaction_id)
            if row is None:
                return None
            return {c.key: getattr(row, c.key) for c in m.Transaction.__table__.columns}

    async def open_sessions(self, site_id: int | None = None) -> list[OpenSession]:
        async with self._reading() as s:
            rows = (
                await s.execute(
                    _in_site(
                        select(m.Transaction)
                        .where(m.Transaction.stopped_at.is_(None))
                        .order_by(m.Transaction.id),
                        self._scope(site_id),
                        m.Transaction.charge_point_id,
                    )
                )
            ).scalars()
            return [_open_session(r) for r in rows]

    async def set_session_input(
        self,
        transaction_id: int,
        *,
        departure_at: datetime | None = None,
        energy_needed_wh: float | None = None,
        ev_model: str | None = None,
        battery_kwh: float | None = None,
        target_soc: float | None = None,
    ) -> None:
        async with self._unit() as s:
            row = await s.get(m.Transaction, transaction_id)
            if row is None:
                raise NotFoundError(f"no transaction {transaction_id}")
            if departure_at is not None:
                row.departure_at = departure_at
            if energy_needed_wh is not None:
                row.energy_needed_wh = energy_needed_wh
            if ev_model is not None:
                row.ev_model = ev_model
            if battery_kwh is not None:
                row.battery_kwh = battery_kwh
            if target_soc is not None:
                row.target_soc = target_soc

    async def sessions_for_export(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        site_id: int | None = None,
    ) -> list[dict[str, Any]]:
        async with self._unit() as s:
            stmt = _in_site(
                select(m.Transaction, m.IdTag.owner)
                .outerjoin(m.IdTag, m.IdTag.id_tag == m.Transaction.id_tag)
                .order_by(m.Transaction.started_at, m.Transaction.id),
                self._scope(site_id),
                m.Transaction.charge_point_id,
            )
            if start is not None:
                stmt = stmt.where(m.Transaction.started_at >= start)
            if end is not None:
                stmt = stmt.where(m.Transaction.started_at < end)
            out = []
            for tx, owner in (await s.execute(stmt)).all():
                energy = (
                    tx.meter_stop_wh - tx.meter_start_wh if tx.meter_stop_wh is not None else None
                )
                out.append(
                    {
                        "transaction_id": tx.id,
                        "charge_point_id": tx.charge_point_id,
                        "connector_id": tx.connector_id,
                        "id_tag": tx.id_tag,
                        "owner": owner,
                        "started_at": tx.started_at.isoformat(),
                        "stopped_at": tx.stopped_at.isoformat() if tx.stopped_at else None,
                        "meter_start_wh": tx.meter_start_wh,
                        "meter_stop_wh": tx.meter_stop_wh,
                        "energy_wh": energy,
                        "stop_reason": tx.stop_reason,
                    }
                )
            return out

    # --------------------------------------------------------------- commands
    async def enqueue_command(
        self, cp_id: str, action: str, payload: dict[str, Any], *, requested_by: str = "cli"
    ) -> int:
        async with self._unit() as s:
            row = m.Command(
                charge_point_id=cp_id,
                action=action,
                payload=payload,
                status=CommandStatus.pending.value,
                requested_by=requested_by,
                created_at=self.now(),
            )
            s.add(row)
            await s.flush()
            return row.id

    async def claim_pending_commands(self, limit: int = 50) -> list[CommandRequest]:
        """Mark pending commands as being sent and return them, oldest first."""
        async with self._unit() as s:
            rows = (
                (
                    await s.execute(
                        select(m.Command)
                        .where(m.Command.status == CommandStatus.pending.value)
                        .order_by(m.Command.id)
                        .limit(limit)
                        # Several instances claim at once on PostgreSQL: each row goes to
                        # one of them (SQLite ignores this; one writer there anyway).
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            now = self.now()
            for row in rows:
                row.status = CommandStatus.sending.value
                row.sent_at = now
                row.claimed_by = self.instance_id
            return [
                CommandRequest(row.id, ChargePointId(row.charge_point_id), row.action, row.payload)
                for row in rows
            ]

    async def complete_command(
        self, command_id: int, *, response: Any = None, error: str | None = None
    ) -> None:
        async with self._unit() as s:
            row = await s.get(m.Command, command_id)
            if row is None:
                raise NotFoundError(f"no command {command_id}")
            row.status = (CommandStatus.failed if error else CommandStatus.done).value
            # Passwords leave the outbox with the call: neither the payload (a key sent with
            # ChangeConfiguration) nor the answer (a key a charger reports) stays stored.
            row.payload = redact_secrets(row.payload)
            row.response = redact_secrets(json.loads(json.dumps(response, default=str)))
            row.error = error
            row.completed_at = self.now()

    async def get_command(self, command_id: int) -> dict[str, Any] | None:
        async with self._unit() as s:
            row = await s.get(m.Command, command_id)
            if row is None:
                return None
            return {c.key: getattr(row, c.key) for c in m.Command.__table__.columns}

    async def requeue_interrupted_commands(self, alive: Collection[str] | None = None) -> int:
        """Commands left 'sending' by a crash are failed: resending a Reset twice is worse.
        With several instances (``alive``: the live ones' ids), only this instance's or a
        dead one's."""
        async with self._unit() as s:
            query = select(m.Command).where(m.Command.status == CommandStatus.sending.value)
            if alive is not None:
                query = query.where(
                    or_(
                        m.Command.claimed_by.is_(None),
                        m.Command.claimed_by.not_in([a for a in alive if a != self.instance_id]),
                    )
                )
            rows = (await s.execute(query)).scalars().all()
            for row in rows:
                row.status = CommandStatus.failed.value
                row.error = "CSMS stopped before the answer arrived"
                row.completed_at = self.now()
                row.payload = redact_secrets(row.payload)
            return len(rows)

    # ------------------------------------------------------------ controller
    async def connectors_by_charge_point(self) -> dict[str, tuple[int, ...]]:
        """Connector ids (> 0) each charge point (of this view's site) has reported a
        status for."""
        async with self._reading() as s:
            rows = await _rows(
                s,
                _in_site(
                    select(m.Connector.charge_point_id, m.Connector.connector_id).where(
                        m.Connector.connector_id > 0
                    ),
                    self._site_id,
                    m.Connector.charge_point_id,
                ),
            )
        out: dict[str, list[int]] = {}
        for cp_id, connector_id in rows:
            out.setdefault(cp_id, []).append(connector_id)
        return {k: tuple(sorted(v)) for k, v in out.items()}

    async def latest_readings(
        self, transaction_ids: Sequence[int]
    ) -> tuple[dict[int, float], dict[int, float]]:
        """(latest energy register in Wh, latest SoC as a fraction) per transaction."""
        if not transaction_ids:
            return {}, {}
        energy: dict[int, float] = {}
        soc: dict[int, float] = {}
        async with self._reading() as s:
            rows = await s.execute(
                select(
                    m.MeterSample.transaction_id,
                    m.MeterSample.measurand,
                    func.max(m.MeterSample.value),
                )
                .where(
                    m.MeterSample.transaction_id.in_(transaction_ids),
                    m.MeterSample.measurand == "Energy.Active.Import.Register",
                    m.MeterSample.phase.is_(None),
                    m.MeterSample.flag.is_(None),
                )
                .group_by(m.MeterSample.transaction_id, m.MeterSample.measurand)
            )
            for tx_id, _measurand, value in rows:
                if tx_id is not None and value is not None:
                    energy[tx_id] = float(value)
            latest_soc = (
                select(m.MeterSample.transaction_id, func.max(m.MeterSample.id).label("last_id"))
                .where(
                    m.MeterSample.transaction_id.in_(transaction_ids),
                    m.MeterSample.measurand == "SoC",
                )
                .group_by(m.MeterSample.transaction_id)
                .subquery()
            )
            soc_rows = await s.execute(
                select(m.MeterSample.transaction_id, m.MeterSample.value).join(
                    latest_soc, m.MeterSample.id == latest_soc.c.last_id
                )
            )
            for soc_tx, soc_value in soc_rows:
                if soc_tx is not None and soc_value is not None:
                    soc[soc_tx] = float(soc_value) / 100.0
        return energy, soc

    async def last_accepted_limits(self) -> dict[tuple[str, int], tuple[int, float]]:
        """(transaction id, last accepted limit) per connector of each open transaction."""
        async with self._unit() as s:
            last = (
                select(m.Allocation.transaction_id, func.max(m.Allocation.id).label("last_id"))
                .where(m.Allocation.sent.is_(True), m.Allocation.answer == "Accepted")
                .group_by(m.Allocation.transaction_id)
                .subquery()
            )
            rows = await s.execute(
                select(
                    m.Allocation.charge_point_id,
                    m.Allocation.connector_id,
                    m.Allocation.transaction_id,
                    m.Allocation.limit_a,
                )
                .join(last, m.Allocation.id == last.c.last_id)
                .join(m.Transaction, m.Transaction.id == m.Allocation.transaction_id)
                .where(m.Transaction.stopped_at.is_(None))
                .where(*_site_filter(self._site_id, m.Allocation.charge_point_id))
            )
            return {
                (cp, conn): (tx, float(limit)) for cp, conn, tx, limit in rows if tx is not None
            }

    async def set_unmanaged(self, cp_id: str, unmanaged: bool, reason: str | None = None) -> None:
        """Count a charger at its maximum (with why and when), or manage it again.

        Marking records the latest ``reason`` and the time; clearing removes both.
        """
        values: dict[str, Any] = {"unmanaged": unmanaged}
        if unmanaged:
            values["unmanaged_reason"] = reason or "no reason given"
            values["unmanaged_at"] = self.now()
        else:
            values["unmanaged_reason"] = values["unmanaged_at"] = None
        async with self._unit() as s:
            await s.execute(update(m.ChargePoint).where(m.ChargePoint.id == cp_id).values(**values))

    async def clear_unmanaged(self, cp_id: str) -> ChargePointInfo:
        """A manager counts the charger as managed again; returns it as it was before."""
        async with self._unit() as s:
            row = await s.get(m.ChargePoint, cp_id)
            if row is None:
                raise NotFoundError(f"no charge point {cp_id!r}")
            before = _charge_point_info(row)
            row.unmanaged = False
            row.unmanaged_reason = None
            row.unmanaged_at = None
            return before

    async def set_capabilities(
        self, cp_id: str, caps: Capabilities, at: datetime
    ) -> dict[str, tuple[Any, Any]]:
        """Store what the charger reported and apply it; returns {field: (old, new)}.

        * ``rate_unit``: W when it allows only Power, A when it allows Current, unchanged
          when it did not say (`preferred_rate_unit`).
        * ``only_stack_level_0``: set when ChargeProfileMaxStackLevel is 0; never cleared
          here (a charger may report more levels than it accepts).
        * ``wiring`` from ConnectorPhaseRotation (`station_wiring`), then ``wiring_set_by``
          = "charger", unless a manager typed a non-default wiring (`charger_may_set_wiring`).
        """
        async with self._unit() as s:
            row = await s.get(m.ChargePoint, cp_id)
            if row is None:
                raise NotFoundError(f"no charge point {cp_id!r}")
            row.capabilities = capabilities_to_json(caps)
            row.capabilities_read_at = at
            changes: dict[str, tuple[Any, Any]] = {}

            def change(field: str, value: Any) -> None:
                old = getattr(row, field)
                if old != value:
                    changes[field] = (old, value)
                    setattr(row, field, value)

            change("rate_unit", preferred_rate_unit(caps, row.rate_unit))
            if caps.max_stack_level == 0:
                change("only_stack_level_0", True)
            wiring = station_wiring(caps, row.phases)
            if wiring is not None and charger_may_set_wiring(
                row.wiring, row.wiring_set_by, row.phases
            ):
                change("wiring", wiring)
                change("wiring_set_by", "charger")
            return changes

    async def charge_point_capabilities(
        self,
    ) -> dict[str, tuple[Capabilities, datetime | None]]:
        """What each charger reported and when, for chargers that were read."""
        async with self._unit() as s:
            rows = await s.execute(
                select(
                    m.ChargePoint.id, m.ChargePoint.capabilities, m.ChargePoint.capabilities_read_at
                ).where(m.ChargePoint.capabilities.is_not(None))
            )
            out: dict[str, tuple[Capabilities, datetime | None]] = {}
            for cp_id, data, read_at in rows:
                caps = capabilities_from_json(data)
                if caps is not None:
                    out[cp_id] = (caps, read_at)
            return out

    async def save_installed_profiles(self, cp_id: str, data: dict[str, Any] | None) -> None:
        """Store the mirror of the profiles the charger accepted (None: forget it)."""
        async with self._unit() as s:
            result = await s.execute(
                update(m.ChargePoint)
                .where(m.ChargePoint.id == cp_id)
                .values(installed_profiles=data)
            )
            if not getattr(result, "rowcount", 1):
                raise NotFoundError(f"no charge point {cp_id!r}")

    async def save_installed_profiles_many(
        self, profiles: Mapping[str, dict[str, Any] | None]
    ) -> None:
        """`save_installed_profiles` for many chargers in one unit of work; a charger that
        is gone (removed meanwhile) is skipped."""
        if not profiles:
            return
        async with self._unit() as s:
            # In id order, as the group commit locks stations' rows (no deadlock between
            # instances on PostgreSQL).
            for cp_id, data in sorted(profiles.items()):
                await s.execute(
                    update(m.ChargePoint)
                    .where(m.ChargePoint.id == cp_id)
                    .values(installed_profiles=data)
                )

    async def installed_profiles(self) -> dict[str, dict[str, Any]]:
        """Charge point id -> its stored mirror, for chargers that have one."""
        async with self._unit() as s:
            rows = await s.execute(
                select(m.ChargePoint.id, m.ChargePoint.installed_profiles).where(
                    m.ChargePoint.installed_profiles.is_not(None),
                    *_site_filter(self._site_id, m.ChargePoint.id),
                )
            )
            return {cp_id: data for cp_id, data in rows if isinstance(data, dict)}

    # ---------------------------------------------- allocations, notifications
    async def record_allocations(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        async with self._unit() as s:
            s.add_all(m.Allocation(**r) for r in rows)

    async def add_notification(
        self,
        kind: str,
        message: str,
        *,
        charge_point_id: str | None = None,
        transaction_id: int | None = None,
        id_tag: str | None = None,
    ) -> None:
        async with self._unit() as s:
            s.add(
                m.Notification(
                    created_at=self.now(),
                    kind=kind,
                    message=message[:255],
                    charge_point_id=charge_point_id,
                    transaction_id=transaction_id,
                    id_tag=id_tag,
                )
            )

    # ------------------------------------------------------------ monitor accounts
    async def _account(self, s: AsyncSession, row: m.User) -> Account:
        stations = (
            await s.execute(
                select(m.UserStation.charge_point_id).where(m.UserStation.user_id == row.id)
            )
        ).scalars()
        tags = (
            await s.execute(select(m.UserTag.id_tag).where(m.UserTag.user_id == row.id))
        ).scalars()
        return Account(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            stations=frozenset(stations),
            tags=frozenset(tags),
            credentials_version=row.credentials_version,
            last_login_at=row.last_login_at,
            site_id=row.site_id,
        )

    async def add_user(
        self,
        name: str,
        role: Role,
        password_hash: str,
        *,
        stations: Iterable[str] = (),
        tags: Iterable[str] = (),
        site_id: int | None = None,
    ) -> Account:
        """A monitor account; the caller hashes the password (csms.auth.hash_user_password).

        ``site_id``: the site the account sees; None is every site (an operator's account).

        A resident needs at least one station or tag, and every one must be registered;
        the other roles see the whole garage and take none.
        """
        role = Role(role)
        stations, tags = sorted(set(stations)), sorted(set(tags))
        if role is Role.resident and not (stations or tags):
            raise ConfigError("a resident needs at least one --station or --tag")
        if role is not Role.resident and (stations or tags):
            raise ConfigError(f"a {role} sees every station; --station and --tag are for residents")
        async with self._unit() as s:
            known = set(
                (
                    await s.execute(select(m.ChargePoint.id).where(m.ChargePoint.id.in_(stations)))
                ).scalars()
            )
            if missing := [cp for cp in stations if cp not in known]:
                raise ConfigError(
                    f"no charge point {', '.join(missing)} (`csms station add` it first)"
                )
            known = set(
                (await s.execute(select(m.IdTag.id_tag).where(m.IdTag.id_tag.in_(tags)))).scalars()
            )
            if missing := [t for t in tags if t not in known]:
                raise ConfigError(f"no id tag {', '.join(missing)} (`csms idtag add` it first)")
            if await s.scalar(select(m.User.id).where(m.User.name == name)) is not None:
                raise ConfigError(f"user {name!r} already exists")
            if site_id is not None:
                site_id = (await self._site_row(s, site_id)).id
            row = m.User(
                name=name,
                role=role.value,
                site_id=site_id,
                password_hash=password_hash,
                created_at=self.now(),
            )
            s.add(row)
            await s.flush()
            s.add_all(m.UserStation(user_id=row.id, charge_point_id=cp) for cp in stations)
            s.add_all(m.UserTag(user_id=row.id, id_tag=t) for t in tags)
            await s.flush()
            return await self._account(s, row)

    async def get_user(self, name: str) -> Account | None:
        async with self._unit() as s:
            row = await s.scalar(select(m.User).where(m.User.name == name))
            return None if row is None else await self._account(s, row)

    async def user_by_id(self, user_id: int) -> Account | None:
        async with self._unit() as s:
            row = await s.get(m.User, user_id)
            return None if row is None else await self._account(s, row)

    async def user_credentials(self, name: str) -> tuple[Account, str] | None:
        """The account and its password hash, for a login check only."""
        async with self._unit() as s:
            row = await s.scalar(select(m.User).where(m.User.name == name))
            return None if row is None else (await self._account(s, row), row.password_hash)

    async def list_users(self, site_id: int | None = None) -> list[Account]:
        """Every account, or those who see ``site_id`` (its own and the operators')."""
        scope = self._scope(site_id)
        async with self._unit() as s:
            stmt = select(m.User).order_by(m.User.name)
            if scope is not None:
                stmt = stmt.where((m.User.site_id == scope) | m.User.site_id.is_(None))
            rows = (await s.execute(stmt)).scalars().all()
            return [await self._account(s, row) for row in rows]

    async def set_user_site(self, name: str, site_id: int | None) -> Account:
        """The site an account sees (None: every site); its monitor sessions end."""
        async with self._unit() as s:
            row = await s.scalar(select(m.User).where(m.User.name == name))
            if row is None:
                raise NotFoundError(f"no user {name!r}")
            if site_id is not None:
                site_id = (await self._site_row(s, site_id)).id
            if row.site_id != site_id:
                row.site_id = site_id
                row.credentials_version += 1
            await s.flush()
            return await self._account(s, row)

    async def set_user_password(self, name: str, password_hash: str) -> Account:
        """A new password; the account's open monitor sessions end (credentials_version)."""
        async with self._unit() as s:
            row = await s.scalar(select(m.User).where(m.User.name == name))
            if row is None:
                raise NotFoundError(f"no user {name!r}")
            row.password_hash = password_hash
            row.credentials_version += 1
            await s.flush()
            return await self._account(s, row)

    async def remove_user(self, name: str) -> None:
        async with self._unit() as s:
            row = await s.scalar(select(m.User).where(m.User.name == name))
            if row is None:
                raise NotFoundError(f"no user {name!r}")
            await s.delete(row)

    async def login_throttle(self, name: str) -> LoginThrottle:
        async with self._unit() as s:
            row = await s.get(m.LoginThrottle, name[: m.LoginThrottle.name.type.length])
            if row is None:
                return LoginThrottle()
            return LoginThrottle(row.failures, row.first_failure_at, row.locked_until)

    async def record_login_failure(self, name: str, now: datetime) -> LoginThrottle:
        """Count a wrong password for ``name`` (known or not); returns the new state."""
        key = name[: m.LoginThrottle.name.type.length]
        async with self._unit() as s:
            row = await s.get(m.LoginThrottle, key)
            if row is None:
                row = m.LoginThrottle(name=key, failures=0)
                s.add(row)
            state = LoginThrottle(row.failures, row.first_failure_at, row.locked_until)
            state = state.after_failure(now)
            row.failures = state.failures
            row.first_failure_at = state.first_failure_at
            row.locked_until = state.locked_until
            return state

    async def record_login_success(self, user_id: int, now: datetime) -> None:
        async with self._unit() as s:
            row = await s.get(m.User, user_id)
            if row is None:
                raise NotFoundError(f"no user {user_id}")
            row.last_login_at = now
            throttle = await s.get(m.LoginThrottle, row.name)
            if throttle is not None:
                await s.delete(throttle)

    async def record_audit(
        self,
        *,
        at: datetime,
        actor: str,
        role: str | None,
        action: str,
        target: str | None = None,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        site_id: int | None = None,
    ) -> None:
        """One audit row: who (``actor``, ``role``) did ``action`` to ``target``, when;
        ``site_id``: the site it concerns (else this view's site; None: the deployment)."""
        async with self._unit() as s:
            s.add(
                m.AuditEntry(
                    at=at,
                    actor=actor[:64],
                    role=role,
                    action=action[:64],
                    target=None if target is None else target[:128],
                    outcome=outcome,
                    detail=detail,
                    site_id=self._scope(site_id),
                )
            )

    async def count(self, model: type[m.Base]) -> int:
        async with self._unit() as s:
            return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


# Series whose newest register reading one statement reads (SQLite allows 500 SELECTs
# in a compound statement).
NEWEST_REGISTERS_PER_QUERY = 200


async def _newest_registers(
    s: AsyncSession, series: Sequence[tuple[str, int, Any, str | None]]
) -> list[RegisterReading | None]:
    """The newest stored plausible register reading of each series (station, connector,
    transaction, location), None where there is none: one statement for up to
    NEWEST_REGISTERS_PER_QUERY series, each an index-ordered read of one row."""
    ms = m.MeterSample
    found: list[RegisterReading | None] = [None] * len(series)
    for first in range(0, len(series), NEWEST_REGISTERS_PER_QUERY):
        parts: list[Select[Any]] = []
        chunk = series[first : first + NEWEST_REGISTERS_PER_QUERY]
        for i, (cp_id, connector_id, tx, location) in enumerate(chunk, first):
            where = _register_series(cp_id, connector_id, tx, location)
            newest = (
                select(literal(i, Integer).label("i"), ms.timestamp, ms.value)
                .where(*where)
                .order_by(ms.timestamp.desc())
                .limit(1)
                .subquery()
            )
            parts.append(select(newest.c.i, newest.c.timestamp, newest.c.value))
        statement = parts[0] if len(parts) == 1 else union_all(*parts)
        for row in await s.execute(statement):
            if row.value is not None:
                found[row.i] = RegisterReading(row.timestamp, float(row.value))
    return found


async def _readings(
    s: AsyncSession, where: Sequence[Any], side: Any, order: Any
) -> list[RegisterReading]:
    """The stored plausible register reading nearest in time on one side (0 or 1)."""
    ms = m.MeterSample
    row = (
        await s.execute(select(ms.timestamp, ms.value).where(*where, side).order_by(order).limit(1))
    ).first()
    if row is None or row[1] is None:
        return []
    return [RegisterReading(row[0], float(row[1]))]


def _seen(cp_id: str, now: datetime, **values: Any) -> Update:
    """UPDATE of a charge point that also records it was just heard from."""
    return update(m.ChargePoint).where(m.ChargePoint.id == cp_id).values(last_seen_at=now, **values)


# Transaction flags of StopTransaction: the real stop of a transaction the next start on
# its connector had closed; a second, different stop (the first one stays).
LATE_STOP = "late_stop"
CONFLICTING_STOP = "conflicting_stop"


def _add_flag(flags: str | None, flag: str) -> str:
    parts = [f for f in (flags or "").split(",") if f]
    if flag not in parts:
        parts.append(flag)
    return ",".join(parts)
