"""Read-only queries for the monitor: pandas frames and small dataclasses, nothing written.

Each function takes the async session factory and opens one short read. Times go in and
come out as timezone-aware UTC; converting to the site's zone is the caller's job.

Down-sampling happens in SQL: a sample's bucket is ``epoch // bucket_s * bucket_s`` in
integer seconds (`EpochSeconds` compiles to ``unixepoch``-style SQL on SQLite and
``EXTRACT(EPOCH ...)`` on PostgreSQL), so a month of a large garage comes back as a few
ten thousand rows. Energy comes from the energy register, as differences between
consecutive readings of a transaction (the StopTransaction reading included); that is
exact whatever the sample interval, where averaging sampled power is biased towards the
instants that were sampled more often.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from csms.auth import Account
from csms.clock import ClockAnchor
from csms.domain import SiteConfig
from csms.store import models as m
from csms.store.repository import SITE_ROW_ID
from csms.store.rollups import HOUR_S

SessionMaker = async_sessionmaker[AsyncSession]

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
SOC = "SoC"
# Up to this span a per-station index scan beats reading the whole table.
INDEX_SCAN_MAX_SPAN = timedelta(days=2)


class EpochSeconds(FunctionElement[int]):
    """Whole seconds since 1970-01-01 UTC of a timestamp column, as an integer."""

    type = BigInteger()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(EpochSeconds, "sqlite")
def _epoch_sqlite(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy stores SQLite timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text in UTC.
    (column,) = element.clauses
    return compiler.process(cast(func.strftime("%s", column), Integer), **kw)


@compiles(EpochSeconds)
def _epoch_default(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # floor, as SQLite's strftime('%s') truncates: 10:59:59.7 is in the 10:00 bucket (a
    # plain cast to BIGINT rounds on PostgreSQL).
    (column,) = element.clauses
    return compiler.process(cast(func.floor(extract("epoch", column)), BigInteger), **kw)


def bucket_of(column: Any, bucket_s: int) -> ColumnElement[int]:
    """The start of the ``bucket_s`` bucket holding ``column``, in epoch seconds."""
    size = literal(int(bucket_s), BigInteger)
    return (EpochSeconds(column) // size) * size


def _epoch_to_utc(series: pd.Series[Any]) -> pd.Series[Any]:
    return pd.to_datetime(series.astype("int64"), unit="s", utc=True)


# ---------------------------------------------------------------------------- site
@dataclass(frozen=True)
class BuildingLoadReading:
    measured_at: datetime
    l1_a: float
    l2_a: float
    l3_a: float

    @property
    def per_phase_a(self) -> tuple[float, float, float]:
        return (self.l1_a, self.l2_a, self.l3_a)


async def clock_anchor(sm: SessionMaker) -> ClockAnchor | None:
    """The clock the CSMS published (``None`` before any ``csms serve`` ran)."""
    async with sm() as s:
        row = await s.get(m.ClockAnchor, SITE_ROW_ID)
        if row is None:
            return None
        return ClockAnchor(row.sim_at, row.wall_at, row.speed)


async def sites(sm: SessionMaker) -> list[SiteConfig]:
    """Every site by id (one read); site 1 with the model defaults when nothing has written
    it yet (read only: the monitor does not make the row)."""
    async with sm() as s:
        rows = list((await s.execute(select(m.SiteSettings).order_by(m.SiteSettings.id))).scalars())
    return [_site_config(row, row.id) for row in rows] or [_site_config(None, SITE_ROW_ID)]


def _site_config(row: m.SiteSettings | None, site_id: int) -> SiteConfig:
    """A settings row as a SiteConfig; without a row, the model's defaults."""
    table = m.SiteSettings.__table__
    values: dict[str, Any] = {}
    for f in fields(SiteConfig):
        column = "id" if f.name == "site_id" else f.name
        if row is not None:
            values[f.name] = getattr(row, column)
        elif column == "id":
            values[f.name] = site_id
        else:
            default = table.c[column].default
            values[f.name] = getattr(default, "arg", None)
    return SiteConfig(**values)


def _on_site(site_id: int | None, cp_column: Any) -> list[Any]:
    """WHERE terms keeping rows of ``site_id``'s charge points (None: no terms)."""
    if site_id is None:
        return []
    return [cp_column.in_(select(m.ChargePoint.id).where(m.ChargePoint.site_id == site_id))]


async def site_settings(sm: SessionMaker, site_id: int = SITE_ROW_ID) -> SiteConfig:
    """A site's settings row, or the model defaults when the CSMS has not written it yet."""
    async with sm() as s:
        row = await s.get(m.SiteSettings, site_id)
    return _site_config(row, site_id)


async def latest_building_load(
    sm: SessionMaker, at: datetime | None = None, site_id: int = SITE_ROW_ID
) -> BuildingLoadReading | None:
    """The newest building-load reading of a site (at or before ``at`` when given)."""
    stmt = (
        select(m.BuildingLoad)
        .where(m.BuildingLoad.site_id == site_id)
        .order_by(m.BuildingLoad.measured_at.desc())
        .limit(1)
    )
    if at is not None:
        stmt = stmt.where(m.BuildingLoad.measured_at <= at)
    async with sm() as s:
        row = (await s.execute(stmt)).scalar_one_or_none()
    if row is None:
        return None
    return BuildingLoadReading(row.measured_at, row.l1_a, row.l2_a, row.l3_a)


async def building_load_buckets(
    sm: SessionMaker, start: datetime, end: datetime, bucket_s: int, site_id: int = SITE_ROW_ID
) -> pd.DataFrame:
    """Average building load per phase and bucket; the reading in force at ``start`` first.

    Columns: time (UTC), l1_a, l2_a, l3_a.
    """
    bucket = bucket_of(m.BuildingLoad.measured_at, bucket_s).label("bucket")
    inner = (
        select(bucket, m.BuildingLoad.l1_a, m.BuildingLoad.l2_a, m.BuildingLoad.l3_a)
        .where(
            m.BuildingLoad.site_id == site_id,
            m.BuildingLoad.measured_at >= start,
            m.BuildingLoad.measured_at < end,
        )
        .subquery()
    )
    stmt = (
        select(
            inner.c.bucket,
            func.avg(inner.c.l1_a),
            func.avg(inner.c.l2_a),
            func.avg(inner.c.l3_a),
        )
        .group_by(inner.c.bucket)
        .order_by(inner.c.bucket)
    )
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    before = await latest_building_load(sm, start, site_id)
    frame = pd.DataFrame(
        [tuple(r) for r in rows], columns=["bucket", "l1_a", "l2_a", "l3_a"], dtype="float64"
    )
    frame["time"] = _epoch_to_utc(frame["bucket"]) if len(frame) else pd.Series(dtype="object")
    frame = frame.drop(columns="bucket")
    if before is not None:
        first = pd.DataFrame(
            [
                {
                    "time": pd.Timestamp(start),
                    "l1_a": before.l1_a,
                    "l2_a": before.l2_a,
                    "l3_a": before.l3_a,
                }
            ]
        )
        frame = pd.concat([first, frame], ignore_index=True) if len(frame) else first
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame[["time", "l1_a", "l2_a", "l3_a"]].reset_index(drop=True)


# ------------------------------------------------------------------------ stations
async def stations(sm: SessionMaker, site_id: int | None = None) -> pd.DataFrame:
    """Every charge point (of ``site_id``): id, name, max_current_a, phases, wiring,
    connected."""
    stmt = select(
        m.ChargePoint.id,
        m.ChargePoint.name,
        m.ChargePoint.max_current_a,
        m.ChargePoint.phases,
        m.ChargePoint.wiring,
        m.ChargePoint.connected,
        m.ChargePoint.only_stack_level_0,
    ).order_by(m.ChargePoint.id)
    if site_id is not None:
        stmt = stmt.where(m.ChargePoint.site_id == site_id)
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    return pd.DataFrame(
        [tuple(r) for r in rows],
        columns=[
            "id",
            "name",
            "max_current_a",
            "phases",
            "wiring",
            "connected",
            "only_stack_level_0",
        ],
    )


def _latest_value(cp_id: Any, measurand: str) -> Any:
    """Correlated subquery: the newest value of ``measurand`` for a charge point.

    Walks the (charge_point_id, timestamp) index backwards, so it stays cheap on a table
    of millions of samples.
    """
    return (
        select(m.MeterSample.value)
        .where(
            m.MeterSample.charge_point_id == cp_id,
            m.MeterSample.measurand == measurand,
            m.MeterSample.phase.is_(None),
        )
        .order_by(m.MeterSample.timestamp.desc())
        .limit(1)
        .scalar_subquery()
    )


def _latest_sample_time(cp_id: Any) -> Any:
    return (
        select(m.MeterSample.timestamp)
        .where(m.MeterSample.charge_point_id == cp_id)
        .order_by(m.MeterSample.timestamp.desc())
        .limit(1)
        .scalar_subquery()
    )


STATION_COLUMNS = [
    "id",
    "name",
    "connected",
    "status",
    "error_code",
    "last_seen_at",
    "vendor",
    "model",
    "firmware_version",
    "max_current_a",
    "phases",
    "wiring",
    "limit_a",
    "limit_at",
    "power_w",
    "power_at",
    "last_error",
    "last_error_at",
    "transaction_id",
    "id_tag",
    "owner",
    "unmanaged",
    "only_stack_level_0",
    "boot_status",
    "unmanaged_reason",
    "unmanaged_at",
    "rate_unit",
    "wiring_set_by",
    "capabilities",
    "capabilities_read_at",
]


async def station_table(sm: SessionMaker, site_id: int | None = None) -> pd.DataFrame:
    """One row per charge point (of ``site_id``) with its state, latest limit, latest draw
    and last error.

    ``status`` is connector 1's (or the first connector's) latest StatusNotification;
    ``limit_a`` the newest allocation; ``power_w`` the newest Power.Active.Import sample
    (``power_at`` when it was taken); ``last_error`` the newest status with an error code.
    """
    cp = m.ChargePoint
    limit_q = (
        select(m.Allocation.limit_a)
        .where(m.Allocation.charge_point_id == cp.id)
        .order_by(m.Allocation.decided_at.desc(), m.Allocation.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    limit_at_q = (
        select(m.Allocation.decided_at)
        .where(m.Allocation.charge_point_id == cp.id)
        .order_by(m.Allocation.decided_at.desc(), m.Allocation.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = select(
        cp.id,
        cp.name,
        cp.connected,
        cp.last_seen_at,
        cp.vendor,
        cp.model,
        cp.firmware_version,
        cp.max_current_a,
        cp.phases,
        cp.wiring,
        limit_q.label("limit_a"),
        limit_at_q.label("limit_at"),
        _latest_value(cp.id, POWER).label("power_w"),
        _latest_sample_time(cp.id).label("power_at"),
        cp.unmanaged,
        cp.only_stack_level_0,
        cp.boot_status,
        cp.unmanaged_reason,
        cp.unmanaged_at,
        cp.rate_unit,
        cp.wiring_set_by,
        cp.capabilities,
        cp.capabilities_read_at,
    ).order_by(cp.id)
    if site_id is not None:
        stmt = stmt.where(cp.site_id == site_id)
    connectors = select(
        m.Connector.charge_point_id,
        m.Connector.connector_id,
        m.Connector.status,
        m.Connector.error_code,
    ).where(*_on_site(site_id, m.Connector.charge_point_id))
    connectors = connectors.order_by(m.Connector.charge_point_id, m.Connector.connector_id)
    errors = (
        select(
            m.StatusEvent.charge_point_id,
            m.StatusEvent.error_code,
            m.StatusEvent.info,
            m.StatusEvent.vendor_error_code,
            m.StatusEvent.received_at,
        )
        .where(
            m.StatusEvent.error_code != "NoError",
            *_on_site(site_id, m.StatusEvent.charge_point_id),
        )
        .order_by(m.StatusEvent.received_at)
    )
    open_tx = (
        select(m.Transaction.charge_point_id, m.Transaction.id, m.Transaction.id_tag, m.IdTag.owner)
        .outerjoin(m.IdTag, m.IdTag.id_tag == m.Transaction.id_tag)
        .where(
            m.Transaction.stopped_at.is_(None),
            *_on_site(site_id, m.Transaction.charge_point_id),
        )
        .order_by(m.Transaction.id)
    )
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
        connector_rows = (await s.execute(connectors)).all()
        error_rows = (await s.execute(errors)).all()
        tx_rows = (await s.execute(open_tx)).all()
    chosen: dict[str, tuple[int, str | None, str | None]] = {}
    for cp_id, connector_id, connector_status, code in connector_rows:
        # A faulted connector first, then the first real one (0 is the charge point).
        old = chosen.get(cp_id)
        rank = (code != "NoError", connector_id > 0)
        if old is None or rank > (old[2] != "NoError", old[0] > 0):
            chosen[cp_id] = (connector_id, connector_status, code)
    last_error: dict[str, tuple[str | None, datetime | None]] = {}
    for cp_id, error_code, info, vendor_code, at in error_rows:
        detail = " ".join(x for x in (error_code, info, vendor_code) if x)
        last_error[cp_id] = (detail, at)
    tx: dict[str, tuple[int, str, str | None]] = {}
    for cp_id, tx_id, tag, owner in tx_rows:
        tx[cp_id] = (tx_id, tag, owner)
    out = []
    for r in rows:
        _connector, state, status_code = chosen.get(r.id, (0, None, None))
        error, error_at = last_error.get(r.id, (None, None))
        t = tx.get(r.id, (None, None, None))
        out.append(
            {
                "id": r.id,
                "name": r.name,
                "connected": bool(r.connected),
                "status": state,
                "error_code": status_code,
                "last_seen_at": _utc(r.last_seen_at),
                "vendor": r.vendor,
                "model": r.model,
                "firmware_version": r.firmware_version,
                "max_current_a": r.max_current_a,
                "phases": r.phases,
                "wiring": r.wiring,
                "limit_a": r.limit_a,
                "limit_at": _utc(r.limit_at),
                "power_w": r.power_w,
                "power_at": _utc(r.power_at),
                "last_error": error,
                "last_error_at": error_at,
                "transaction_id": t[0],
                "id_tag": t[1],
                "owner": t[2],
                "unmanaged": bool(r.unmanaged),
                "only_stack_level_0": bool(r.only_stack_level_0),
                "boot_status": r.boot_status,
                "unmanaged_reason": r.unmanaged_reason if r.unmanaged else None,
                "unmanaged_at": _utc(r.unmanaged_at) if r.unmanaged else None,
                "rate_unit": r.rate_unit,
                "wiring_set_by": r.wiring_set_by,
                # The JSON of csms.controller.capabilities (None: not read yet).
                "capabilities": r.capabilities,
                "capabilities_read_at": _utc(r.capabilities_read_at),
            }
        )
    return pd.DataFrame(out, columns=STATION_COLUMNS)


def _utc(value: Any) -> datetime | None:
    """Scalar subqueries skip the column type: SQLite hands back text or naive values."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise TypeError(f"not a timestamp: {value!r}")


async def newest_sample_at(sm: SessionMaker, site_id: int | None = None) -> datetime | None:
    """The newest meter-value timestamp of any charge point (of ``site_id``; index lookups
    per station)."""
    stmt = select(func.max(_latest_sample_time(m.ChargePoint.id)))
    if site_id is not None:
        stmt = stmt.where(m.ChargePoint.site_id == site_id)
    async with sm() as s:
        value = (await s.execute(stmt)).scalar_one_or_none()
    return _utc(value)


# --------------------------------------------------------------------------- load
async def sample_buckets(
    sm: SessionMaker,
    start: datetime,
    end: datetime,
    bucket_s: int,
    *,
    station_ids: Sequence[str] | None = None,
    measurands: Sequence[str] = (POWER, CURRENT),
    site_id: int | None = None,
    rollups: bool = True,
) -> pd.DataFrame:
    """Average and maximum of sampled values per bucket, station, measurand and phase.

    Columns: time (UTC bucket start), charge_point_id, measurand, phase, avg, max, n.
    Without ``station_ids`` every station is included (of ``site_id`` when given). Currents
    alone in buckets of whole hours come from the hourly rollups for the window's whole
    UTC hours (csms.store.rollups; ``rollups=False`` reads only the samples). Samples:
    short spans become index range scans on (charge_point_id, timestamp) per station;
    long ones read the table in order, which beats a million random lookups.
    """
    ms = m.MeterSample
    columns = ["time", "charge_point_id", "measurand", "phase", "avg", "max", "n"]
    if site_id is not None:
        of_site = select(m.ChargePoint.id).where(m.ChargePoint.site_id == site_id)
        async with sm() as s:
            on_site = list((await s.execute(of_site)).scalars())
        station_ids = on_site if station_ids is None else [x for x in station_ids if x in on_site]
    hours = _whole_hours(start, end, bucket_s) if set(measurands) == {CURRENT} else None
    if rollups and hours is not None:
        first, last = hours
        parts = [await _current_rollups(sm, first, last, bucket_s, station_ids)]
        for a, b in ((start, first), (last, end)):
            if a < b:
                parts.append(
                    await sample_buckets(
                        sm, a, b, bucket_s, station_ids=station_ids, measurands=measurands,
                        rollups=False,
                    )
                )  # fmt: skip
        return _merge_sample_buckets(parts)
    if station_ids is None and end - start <= INDEX_SCAN_MAX_SPAN:
        ids = select(m.ChargePoint.id)
        if site_id is not None:
            ids = ids.where(m.ChargePoint.site_id == site_id)
        async with sm() as s:
            station_ids = list((await s.execute(ids)).scalars())
    if station_ids is not None and not station_ids:
        return pd.DataFrame(columns=columns)
    station_filter = (
        _on_site(site_id, ms.charge_point_id)
        if station_ids is None
        else [ms.charge_point_id.in_(list(station_ids))]
    )
    inner = (
        select(
            bucket_of(ms.timestamp, bucket_s).label("bucket"),
            ms.charge_point_id,
            ms.measurand,
            ms.phase,
            ms.value,
        )
        .where(
            *station_filter,
            ms.timestamp >= start,
            ms.timestamp < end,
            ms.measurand.in_(list(measurands)),
            ms.value.is_not(None),
        )
        .subquery()
    )
    stmt = select(
        inner.c.bucket,
        inner.c.charge_point_id,
        inner.c.measurand,
        inner.c.phase,
        func.avg(inner.c.value),
        func.max(inner.c.value),
        func.count(),
    ).group_by(inner.c.bucket, inner.c.charge_point_id, inner.c.measurand, inner.c.phase)
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["bucket", *columns[1:]])
    frame["time"] = _epoch_to_utc(frame["bucket"]) if len(frame) else pd.Series(dtype="object")
    frame["avg"] = frame["avg"].astype("float64")
    frame["max"] = frame["max"].astype("float64")
    frame["n"] = frame["n"].astype("int64")
    return frame[columns]


def _whole_hours(start: datetime, end: datetime, bucket_s: int) -> tuple[datetime, datetime] | None:
    """The whole UTC hours within a window whose buckets are whole hours (the rollups'
    grain): (first, last) with first < last, or None (read the samples)."""
    if bucket_s % HOUR_S != 0:
        return None
    first = math.ceil(start.timestamp() / HOUR_S) * HOUR_S
    last = math.floor(end.timestamp() / HOUR_S) * HOUR_S
    if first >= last:
        return None
    return datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)


def _merge_sample_buckets(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """sample_buckets frames of adjacent windows as one: a bucket two of them share
    averages over all its samples."""
    filled = [p for p in parts if len(p)]
    if len(filled) <= 1:
        return filled[0] if filled else parts[0]
    frame = pd.concat(filled, ignore_index=True)
    frame["phase"] = frame["phase"].fillna("")
    frame["total"] = frame["avg"] * frame["n"]
    keys = ["time", "charge_point_id", "measurand", "phase"]
    out = frame.groupby(keys, as_index=False).agg(
        total=("total", "sum"), max=("max", "max"), n=("n", "sum")
    )
    out["avg"] = out["total"] / out["n"]
    out["phase"] = pd.Series([p or None for p in out["phase"]], dtype="object")
    out["n"] = out["n"].astype("int64")
    return out[["time", "charge_point_id", "measurand", "phase", "avg", "max", "n"]]


async def _current_rollups(
    sm: SessionMaker,
    start: datetime,
    end: datetime,
    bucket_s: int,
    station_ids: Sequence[str] | None,
) -> pd.DataFrame:
    """sample_buckets of Current.Import from meter_hourly_current (same columns)."""
    c = m.MeterHourlyCurrent
    columns = ["time", "charge_point_id", "measurand", "phase", "avg", "max", "n"]
    if station_ids is not None and not station_ids:
        return pd.DataFrame(columns=columns)
    where: list[Any] = [c.hour >= int(start.timestamp()), c.hour < int(end.timestamp())]
    if station_ids is not None:
        where.append(c.charge_point_id.in_(list(station_ids)))
    stmt: Any
    if bucket_s == HOUR_S:
        # A row is a bucket: no grouping (a temporary B-tree over every row).
        stmt = select(
            c.hour, c.charge_point_id, c.phase, c.total_a / c.samples, c.max_a, c.samples
        ).where(*where)
    else:
        size = literal(int(bucket_s), BigInteger)
        bucket = ((c.hour // size) * size).label("bucket")
        stmt = (
            select(
                bucket,
                c.charge_point_id,
                c.phase,
                cast(func.sum(c.total_a), Float) / cast(func.sum(c.samples), Float),
                func.max(c.max_a),
                func.sum(c.samples),
            )
            .where(*where)
            .group_by(bucket, c.charge_point_id, c.phase)
        )
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    frame = pd.DataFrame(
        [tuple(r) for r in rows], columns=["bucket", "charge_point_id", "phase", "avg", "max", "n"]
    )
    frame["measurand"] = CURRENT
    frame["phase"] = pd.Series([p or None for p in frame["phase"]], dtype="object")
    frame["time"] = _epoch_to_utc(frame["bucket"]) if len(frame) else pd.Series(dtype="object")
    frame["avg"] = frame["avg"].astype("float64")
    frame["max"] = frame["max"].astype("float64")
    frame["n"] = frame["n"].astype("int64")
    return frame[columns]


def _overlapping_transactions(start: datetime, end: datetime) -> Any:
    tx = m.Transaction
    return and_(tx.started_at < end, or_(tx.stopped_at.is_(None), tx.stopped_at >= start))


async def energy_buckets(
    sm: SessionMaker,
    start: datetime,
    end: datetime,
    bucket_s: int,
    *,
    station_ids: Sequence[str] | None = None,
    site_id: int | None = None,
    rollups: bool = True,
) -> pd.DataFrame:
    """Energy delivered per bucket and station (of ``station_ids``, else of ``site_id``'s
    stations, else every station), from energy-register differences.

    Every plausible reading of a transaction overlapping the window (a flagged one,
    ``meter_samples.flag``, is left out), plus its StopTransaction reading, minus the
    previous one (meterStart before the first) is the energy of the
    interval ending at that reading; negative differences (a register reset) count as 0.
    Columns: time (UTC bucket start), charge_point_id, energy_wh. ``site_id``: only
    that site's stations. In buckets of whole hours, the window's whole UTC hours are
    read from the hourly rollups (csms.store.rollups: the same sums from a row per
    transaction and hour), a part hour at either end from the samples; ``rollups=False``
    reads only the samples.
    """
    tx = m.Transaction
    overlapping = _overlapping_transactions(start, end)
    station_filter: list[Any] = _on_site(site_id, tx.charge_point_id)
    if station_ids is not None:
        if not station_ids:
            return pd.DataFrame(columns=["time", "charge_point_id", "energy_wh"])
        # Those stations, and of them only the site's.
        station_filter += [tx.charge_point_id.in_(list(station_ids))]
    where = [overlapping, *station_filter]
    hours = _whole_hours(start, end, bucket_s) if rollups else None
    if hours is None:
        return await _energy_samples(sm, start, end, bucket_s, where)
    first, last = hours
    parts = [await _energy_rollups(sm, first, last, bucket_s, where)]
    # The part hours at either end (a site whose offset is not whole hours) from samples.
    for a, b in ((start, first), (last, end)):
        if a < b:
            parts.append(await _energy_samples(sm, a, b, bucket_s, where))
    filled = [p for p in parts if len(p)]
    if len(filled) <= 1:
        return filled[0] if filled else parts[0]
    summed: pd.DataFrame = (
        pd.concat(filled, ignore_index=True)
        .groupby(["time", "charge_point_id"], as_index=False)
        .agg(energy_wh=("energy_wh", "sum"))
    )
    return summed


async def _energy_samples(
    sm: SessionMaker, start: datetime, end: datetime, bucket_s: int, where: list[Any]
) -> pd.DataFrame:
    """energy_buckets from the samples: readings in [start, end) of the transactions
    ``where`` names (those overlapping the whole window asked for)."""
    ms, tx = m.MeterSample, m.Transaction
    readings = union_all(
        select(
            ms.transaction_id.label("tx_id"),
            ms.timestamp.label("at"),
            ms.value.label("wh"),
        )
        .join(tx, tx.id == ms.transaction_id)
        .where(
            *where,
            ms.measurand == ENERGY,
            ms.phase.is_(None),
            ms.value.is_not(None),
            ms.flag.is_(None),  # a register reading that cannot be true counts for nothing
            ms.timestamp < end,
        ),
        select(
            tx.id.label("tx_id"),
            tx.stopped_at.label("at"),
            cast(tx.meter_stop_wh, m.MeterSample.value.type).label("wh"),
        ).where(
            *where,
            tx.stopped_at.is_not(None),
            tx.meter_stop_wh.is_not(None),
            tx.stopped_at < end,
        ),
    ).subquery()
    previous = func.lag(readings.c.wh).over(partition_by=readings.c.tx_id, order_by=readings.c.at)
    deltas = (
        select(
            tx.charge_point_id.label("cp"),
            readings.c.at,
            (readings.c.wh - func.coalesce(previous, tx.meter_start_wh)).label("delta"),
        )
        .join(tx, tx.id == readings.c.tx_id)
        .subquery()
    )
    inner = (
        select(
            bucket_of(deltas.c.at, bucket_s).label("bucket"),
            deltas.c.cp,
            case((deltas.c.delta > 0, deltas.c.delta), else_=0).label("delta"),
        )
        .where(deltas.c.at >= start)
        .subquery()
    )
    stmt = select(inner.c.bucket, inner.c.cp, func.sum(inner.c.delta)).group_by(
        inner.c.bucket, inner.c.cp
    )
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    frame = pd.DataFrame(
        [tuple(r) for r in rows], columns=["bucket", "charge_point_id", "energy_wh"]
    )
    frame["time"] = _epoch_to_utc(frame["bucket"]) if len(frame) else pd.Series(dtype="object")
    frame["energy_wh"] = frame["energy_wh"].astype("float64")
    return frame[["time", "charge_point_id", "energy_wh"]]


async def _energy_rollups(
    sm: SessionMaker, start: datetime, end: datetime, bucket_s: int, where: list[Any]
) -> pd.DataFrame:
    """energy_buckets from meter_hourly_energy: an hour's energy is the sum of the positive
    differences within it plus the positive step from the transaction's previous hour's
    last reading (meterStart before its first hour) to its first."""
    e, tx = m.MeterHourlyEnergy, m.Transaction
    previous = func.lag(e.last_wh).over(partition_by=e.transaction_id, order_by=e.hour)
    step = e.first_wh - func.coalesce(previous, tx.meter_start_wh)
    hours = (
        select(
            e.hour,
            tx.charge_point_id.label("cp"),
            (e.inner_wh + case((step > 0, step), else_=0)).label("wh"),
        )
        .join(tx, tx.id == e.transaction_id)
        .where(*where, e.hour < int(end.timestamp()))
        .subquery()
    )
    size = literal(int(bucket_s), BigInteger)
    bucket = ((hours.c.hour // size) * size).label("bucket")
    stmt = (
        select(bucket, hours.c.cp, func.sum(hours.c.wh))
        .where(hours.c.hour >= int(start.timestamp()))
        .group_by(bucket, hours.c.cp)
    )
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    frame = pd.DataFrame(
        [tuple(r) for r in rows], columns=["bucket", "charge_point_id", "energy_wh"]
    )
    frame["time"] = _epoch_to_utc(frame["bucket"]) if len(frame) else pd.Series(dtype="object")
    frame["energy_wh"] = frame["energy_wh"].astype("float64")
    return frame[["time", "charge_point_id", "energy_wh"]]


async def allocation_buckets(
    sm: SessionMaker, station_id: str, start: datetime, end: datetime, bucket_s: int
) -> pd.DataFrame:
    """The controller's limits for one station: highest per bucket, the one in force first.

    Columns: time (UTC), limit_a.
    """
    a = m.Allocation
    inner = (
        select(bucket_of(a.decided_at, bucket_s).label("bucket"), a.limit_a)
        .where(a.charge_point_id == station_id, a.decided_at >= start, a.decided_at < end)
        .subquery()
    )
    stmt = (
        select(inner.c.bucket, func.max(inner.c.limit_a))
        .group_by(inner.c.bucket)
        .order_by(inner.c.bucket)
    )
    before = (
        select(a.limit_a)
        .where(a.charge_point_id == station_id, a.decided_at < start)
        .order_by(a.decided_at.desc(), a.id.desc())
        .limit(1)
    )
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
        in_force = (await s.execute(before)).scalar_one_or_none()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["bucket", "limit_a"])
    frame["time"] = _epoch_to_utc(frame["bucket"]) if len(frame) else pd.Series(dtype="object")
    frame = frame[["time", "limit_a"]]
    if in_force is not None:
        first = pd.DataFrame([{"time": pd.Timestamp(start), "limit_a": float(in_force)}])
        frame = pd.concat([first, frame], ignore_index=True) if len(frame) else first
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["limit_a"] = frame["limit_a"].astype("float64")
    return frame.reset_index(drop=True)


# ----------------------------------------------------------------------- sessions
SESSION_COLUMNS = [
    "transaction_id",
    "charge_point_id",
    "station_name",
    "connector_id",
    "id_tag",
    "owner",
    "started_at",
    "stopped_at",
    "energy_wh",
    "meter_start_wh",
    "meter_stop_wh",
    "stop_reason",
    "departure_at",
    "energy_needed_wh",
    "ev_model",
    "battery_kwh",
    "target_soc",
    "open",
]


async def sessions(
    sm: SessionMaker,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    station_id: str | None = None,
    id_tag: str | None = None,
    owner: str | None = None,
    open_only: bool = False,
    limit: int | None = None,
    visible_to: Account | None = None,
    site_id: int | None = None,
) -> pd.DataFrame:
    """Charging sessions started in [start, end), newest first, with their energy.

    A finished session's energy is meterStop - meterStart; a running one's is the newest
    energy-register reading minus meterStart. ``visible_to``: only the sessions that
    account may see (a resident's: at their stations or with their tags). ``site_id``:
    only those at that site's stations.
    """
    tx = m.Transaction
    stmt = (
        select(tx, m.IdTag.owner, m.ChargePoint.name)
        .outerjoin(m.IdTag, m.IdTag.id_tag == tx.id_tag)
        .outerjoin(m.ChargePoint, m.ChargePoint.id == tx.charge_point_id)
        .order_by(tx.started_at.desc(), tx.id.desc())
    )
    if start is not None:
        stmt = stmt.where(tx.started_at >= start)
    if end is not None:
        stmt = stmt.where(tx.started_at < end)
    if station_id is not None:
        stmt = stmt.where(tx.charge_point_id == station_id)
    if id_tag is not None:
        stmt = stmt.where(tx.id_tag == id_tag)
    if owner is not None:
        stmt = stmt.where(m.IdTag.owner == owner)
    if open_only:
        stmt = stmt.where(tx.stopped_at.is_(None))
    if visible_to is not None and not visible_to.sees_everything:
        stmt = stmt.where(
            or_(tx.charge_point_id.in_(visible_to.stations), tx.id_tag.in_(visible_to.tags))
        )
    if site_id is not None:
        on_site = select(m.ChargePoint.id).where(m.ChargePoint.site_id == site_id)
        stmt = stmt.where(tx.charge_point_id.in_(on_site))
    if limit is not None:
        stmt = stmt.limit(limit)
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
        open_ids = [row[0].id for row in rows if row[0].stopped_at is None]
        latest = await _latest_register(s, open_ids)
    out = []
    for t, tag_owner, station_name in rows:
        if t.stopped_at is not None and t.meter_stop_wh is not None:
            energy: float | None = float(max(0, t.meter_stop_wh - t.meter_start_wh))
        elif t.id in latest:
            energy = max(0.0, latest[t.id] - t.meter_start_wh)
        else:
            energy = 0.0 if t.stopped_at is None else None
        out.append(
            {
                "transaction_id": t.id,
                "charge_point_id": t.charge_point_id,
                "station_name": station_name,
                "connector_id": t.connector_id,
                "id_tag": t.id_tag,
                "owner": tag_owner,
                "started_at": t.started_at,
                "stopped_at": t.stopped_at,
                "energy_wh": energy,
                "meter_start_wh": t.meter_start_wh,
                "meter_stop_wh": t.meter_stop_wh,
                "stop_reason": t.stop_reason,
                "departure_at": t.departure_at,
                "energy_needed_wh": t.energy_needed_wh,
                "ev_model": t.ev_model,
                "battery_kwh": t.battery_kwh,
                "target_soc": t.target_soc,
                "open": t.stopped_at is None,
            }
        )
    frame = pd.DataFrame(out, columns=SESSION_COLUMNS)
    for column in ("started_at", "stopped_at", "departure_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["energy_wh"] = frame["energy_wh"].astype("float64")
    return frame


async def _latest_register(s: AsyncSession, transaction_ids: Sequence[int]) -> dict[int, float]:
    """Newest energy-register reading per transaction (registers only grow: the maximum)."""
    if not transaction_ids:
        return {}
    ms = m.MeterSample
    rows = await s.execute(
        select(ms.transaction_id, func.max(ms.value))
        .where(
            ms.transaction_id.in_(list(transaction_ids)),
            ms.measurand == ENERGY,
            ms.phase.is_(None),
            ms.flag.is_(None),
        )
        .group_by(ms.transaction_id)
    )
    return {int(tx_id): float(v) for tx_id, v in rows if tx_id is not None and v is not None}


async def session_months(
    sm: SessionMaker, site_id: int | None = None
) -> tuple[datetime, datetime] | None:
    """The first and last session start (at ``site_id``'s stations), for the month filter."""
    tx = m.Transaction
    stmt = select(func.min(tx.started_at), func.max(tx.started_at)).where(
        *_on_site(site_id, tx.charge_point_id)
    )
    async with sm() as s:
        first, last = (await s.execute(stmt)).one()
    if first is None or last is None:
        return None
    first_at, last_at = _utc(first), _utc(last)
    assert first_at is not None
    assert last_at is not None
    return first_at, last_at


async def id_tags(sm: SessionMaker, site_id: int | None = None) -> pd.DataFrame:
    """Every id tag (of ``site_id``) with its owner: id_tag, owner, blocked."""
    stmt = select(m.IdTag.id_tag, m.IdTag.owner, m.IdTag.blocked).order_by(m.IdTag.id_tag)
    if site_id is not None:
        stmt = stmt.where(m.IdTag.site_id == site_id)
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["id_tag", "owner", "blocked"])


async def id_tag_site(sm: SessionMaker, id_tag: str) -> int | None:
    """The site an id tag belongs to; None for a tag nobody registered."""
    async with sm() as s:
        site_id = await s.scalar(select(m.IdTag.site_id).where(m.IdTag.id_tag == id_tag))
    return None if site_id is None else int(site_id)


# ------------------------------------------------------------------ live sessions
@dataclass(frozen=True)
class SessionReadings:
    """What the meter and the controller say about one running transaction."""

    transaction_id: int
    register_wh: float | None
    power_w: float | None
    power_at: datetime | None
    current_a: dict[str, float]
    soc_pct: float | None
    soc_at: datetime | None
    limit_a: float | None
    limit_at: datetime | None


async def session_readings(sm: SessionMaker, transaction_id: int) -> SessionReadings:
    """The newest register, power, current per phase, SoC and allocation of a transaction."""
    ms, a = m.MeterSample, m.Allocation

    def newest(measurand: str) -> Any:
        return (
            select(ms.value, ms.timestamp, ms.phase)
            .where(
                ms.transaction_id == transaction_id, ms.measurand == measurand, ms.flag.is_(None)
            )
            .order_by(ms.timestamp.desc(), ms.id.desc())
        )

    async with sm() as s:
        register = (await s.execute(newest(ENERGY).where(ms.phase.is_(None)).limit(1))).first()
        power = (await s.execute(newest(POWER).where(ms.phase.is_(None)).limit(1))).first()
        soc = (await s.execute(newest(SOC).limit(1))).first()
        currents = (await s.execute(newest(CURRENT).limit(6))).all()
        allocation = (
            await s.execute(
                select(a.limit_a, a.decided_at)
                .where(a.transaction_id == transaction_id)
                .order_by(a.decided_at.desc(), a.id.desc())
                .limit(1)
            )
        ).first()
    current_a: dict[str, float] = {}
    if currents:
        newest_at = currents[0][1]
        for value, at, phase in currents:
            if at == newest_at and value is not None:
                current_a.setdefault(phase or "L1", float(value))
    return SessionReadings(
        transaction_id=transaction_id,
        register_wh=float(register[0]) if register and register[0] is not None else None,
        power_w=float(power[0]) if power and power[0] is not None else None,
        power_at=power[1] if power else None,
        current_a=current_a,
        soc_pct=float(soc[0]) if soc and soc[0] is not None else None,
        soc_at=soc[1] if soc else None,
        limit_a=float(allocation[0]) if allocation else None,
        limit_at=allocation[1] if allocation else None,
    )


async def open_session_readings(sm: SessionMaker, site_id: int | None = None) -> pd.DataFrame:
    """Every running transaction (at ``site_id``'s stations) with its newest power,
    register, SoC and limit.

    Columns: transaction_id, charge_point_id, connector_id, id_tag, owner, started_at,
    departure_at, energy_needed_wh, ev_model, battery_kwh, target_soc, meter_start_wh,
    phases, register_wh, power_w, power_at, soc_pct, limit_a.
    """
    tx, ms, a = m.Transaction, m.MeterSample, m.Allocation

    def newest(measurand: str, column: Any) -> Any:
        return (
            select(column)
            .where(
                ms.transaction_id == tx.id,
                ms.measurand == measurand,
                ms.phase.is_(None),
                ms.flag.is_(None),
            )
            .order_by(ms.timestamp.desc(), ms.id.desc())
            .limit(1)
            .scalar_subquery()
        )

    limit_q = (
        select(a.limit_a)
        .where(a.transaction_id == tx.id)
        .order_by(a.decided_at.desc(), a.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        select(
            tx.id,
            tx.charge_point_id,
            tx.connector_id,
            tx.id_tag,
            m.IdTag.owner,
            tx.started_at,
            tx.departure_at,
            tx.energy_needed_wh,
            tx.ev_model,
            tx.battery_kwh,
            tx.target_soc,
            tx.meter_start_wh,
            m.ChargePoint.phases,
            newest(ENERGY, ms.value).label("register_wh"),
            newest(POWER, ms.value).label("power_w"),
            newest(POWER, ms.timestamp).label("power_at"),
            newest(SOC, ms.value).label("soc_pct"),
            limit_q.label("limit_a"),
        )
        .outerjoin(m.IdTag, m.IdTag.id_tag == tx.id_tag)
        .outerjoin(m.ChargePoint, m.ChargePoint.id == tx.charge_point_id)
        .where(tx.stopped_at.is_(None), *_on_site(site_id, tx.charge_point_id))
        .order_by(tx.charge_point_id, tx.connector_id)
    )
    columns = [
        "transaction_id",
        "charge_point_id",
        "connector_id",
        "id_tag",
        "owner",
        "started_at",
        "departure_at",
        "energy_needed_wh",
        "ev_model",
        "battery_kwh",
        "target_soc",
        "meter_start_wh",
        "phases",
        "register_wh",
        "power_w",
        "power_at",
        "soc_pct",
        "limit_a",
    ]
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    frame["power_at"] = [_utc(v) for v in frame["power_at"]]
    for column in ("started_at", "departure_at", "power_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("register_wh", "power_w", "soc_pct", "limit_a", "energy_needed_wh"):
        frame[column] = frame[column].astype("float64")
    return frame


# -------------------------------------------------------------- commands, notices
COMMAND_COLUMNS = [
    "id",
    "charge_point_id",
    "action",
    "payload",
    "status",
    "requested_by",
    "created_at",
    "completed_at",
    "response",
    "error",
]


async def command_results(
    sm: SessionMaker, station_id: str | None = None, *, limit: int = 50
) -> pd.DataFrame:
    """The newest outbox commands (of one station), with their answer or error."""
    c = m.Command
    stmt = select(c).order_by(c.id.desc()).limit(limit)
    if station_id is not None:
        stmt = stmt.where(c.charge_point_id == station_id)
    async with sm() as s:
        rows = (await s.execute(stmt)).scalars().all()
    frame = pd.DataFrame(
        [{k: getattr(r, k) for k in COMMAND_COLUMNS} for r in rows], columns=COMMAND_COLUMNS
    )
    for column in ("created_at", "completed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


SECURITY_EVENT_COLUMNS = [
    "id",
    "charge_point_id",
    "type",
    "tech_info",
    "occurred_at",
    "received_at",
]


async def security_events(
    sm: SessionMaker, station_id: str | None = None, *, limit: int = 50
) -> pd.DataFrame:
    """The newest SecurityEventNotifications (of one station), newest first."""
    e = m.SecurityEvent
    stmt = select(e).order_by(e.received_at.desc(), e.id.desc()).limit(limit)
    if station_id is not None:
        stmt = stmt.where(e.charge_point_id == station_id)
    async with sm() as s:
        rows = (await s.execute(stmt)).scalars().all()
    frame = pd.DataFrame(
        [{k: getattr(r, k) for k in SECURITY_EVENT_COLUMNS} for r in rows],
        columns=SECURITY_EVENT_COLUMNS,
    )
    for column in ("occurred_at", "received_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


FLAGGED_SAMPLE_COLUMNS = ["timestamp", "connector_id", "transaction_id", "value", "flag"]


async def flagged_samples(sm: SessionMaker, station_id: str, *, limit: int = 50) -> pd.DataFrame:
    """A station's energy register readings left out of energy totals (``flag``:
    backwards or jump, csms.meter.register_flag), newest first."""
    ms = m.MeterSample
    stmt = (
        select(ms.timestamp, ms.connector_id, ms.transaction_id, ms.value, ms.flag)
        .where(ms.charge_point_id == station_id, ms.flag.is_not(None))
        .order_by(ms.timestamp.desc(), ms.id.desc())
        .limit(limit)
    )
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=FLAGGED_SAMPLE_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


async def notifications(
    sm: SessionMaker,
    *,
    transaction_id: int | None = None,
    id_tag: str | None = None,
    limit: int = 50,
    visible_to: Account | None = None,
    site_id: int | None = None,
) -> pd.DataFrame:
    """Messages to a resident: of a transaction, or of a tag (either matches when both);
    ``visible_to``: only those at the account's stations or for its tags; ``site_id``:
    only those at that site's stations."""
    n = m.Notification
    stmt = select(n.created_at, n.kind, n.message, n.charge_point_id, n.transaction_id).order_by(
        n.created_at.desc(), n.id.desc()
    )
    conditions = []
    if transaction_id is not None:
        conditions.append(n.transaction_id == transaction_id)
    if id_tag is not None:
        conditions.append(n.id_tag == id_tag)
    if conditions:
        stmt = stmt.where(or_(*conditions))
    if visible_to is not None and not visible_to.sees_everything:
        stmt = stmt.where(
            or_(n.charge_point_id.in_(visible_to.stations), n.id_tag.in_(visible_to.tags))
        )
    if site_id is not None:
        on_site = select(m.ChargePoint.id).where(m.ChargePoint.site_id == site_id)
        stmt = stmt.where(n.charge_point_id.in_(on_site))
    stmt = stmt.limit(limit)
    async with sm() as s:
        rows = (await s.execute(stmt)).all()
    frame = pd.DataFrame(
        [tuple(r) for r in rows],
        columns=["created_at", "kind", "message", "charge_point_id", "transaction_id"],
    )
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


# ----------------------------------------------------------------------- audit log
AUDIT_COLUMNS = ["id", "at", "actor", "role", "action", "target", "outcome", "detail"]


def _audit_site(site_id: int, deployment: bool) -> ColumnElement[bool]:
    own = m.AuditEntry.site_id == site_id
    return or_(own, m.AuditEntry.site_id.is_(None)) if deployment else own


async def audit_log(
    sm: SessionMaker,
    *,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 500,
    site_id: int | None = None,
    deployment: bool = True,
) -> pd.DataFrame:
    """The newest audit rows (of one actor, since a time), newest first. ``site_id``: only
    that site's rows, and with ``deployment`` also those of no site (an operator's login,
    `csms user`, rows written before audit rows had a site)."""
    a = m.AuditEntry
    stmt = select(a).order_by(a.at.desc(), a.id.desc()).limit(limit)
    if site_id is not None:
        stmt = stmt.where(_audit_site(site_id, deployment))
    if actor is not None:
        stmt = stmt.where(a.actor == actor)
    if since is not None:
        stmt = stmt.where(a.at >= since)
    async with sm() as s:
        rows = (await s.execute(stmt)).scalars().all()
    frame = pd.DataFrame(
        [{k: getattr(r, k) for k in AUDIT_COLUMNS} for r in rows], columns=AUDIT_COLUMNS
    )
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


async def user_count(sm: SessionMaker) -> int:
    """How many monitor accounts exist (the login page says how to make the first)."""
    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(m.User))).scalar_one())


async def audit_actors(
    sm: SessionMaker, site_id: int | None = None, deployment: bool = True
) -> list[str]:
    """Everyone who appears in the audit log (of ``site_id``, as `audit_log`), for its
    filter."""
    stmt = select(m.AuditEntry.actor).distinct().order_by(m.AuditEntry.actor)
    if site_id is not None:
        stmt = stmt.where(_audit_site(site_id, deployment))
    async with sm() as s:
        rows = await s.execute(stmt)
    return [str(r) for r in rows.scalars()]


def choose_bucket_s(span: timedelta, *, max_points: int = 400, minimum_s: int = 15) -> int:
    """The smallest 'round' bucket that keeps a span under ``max_points`` buckets."""
    nice = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
    wanted = max(minimum_s, math.ceil(span.total_seconds() / max_points))
    return next((b for b in nice if b >= wanted), nice[-1])
