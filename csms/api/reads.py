"""Read queries only the API needs (the monitor's are in csms.store.queries)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from csms.store import models as m

SessionMaker = async_sessionmaker[AsyncSession]


async def connectors(sm: SessionMaker, cp_ids: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """Each station's connectors with their latest StatusNotification."""
    c = m.Connector
    stmt = select(c).order_by(c.charge_point_id, c.connector_id)
    if cp_ids is not None:
        stmt = stmt.where(c.charge_point_id.in_(list(cp_ids)))
    async with sm() as s:
        rows = (await s.execute(stmt)).scalars().all()
    out: dict[str, list[Any]] = {}
    for row in rows:
        out.setdefault(row.charge_point_id, []).append(
            {
                "connector_id": row.connector_id,
                "status": row.status,
                "error_code": row.error_code,
                "info": row.info,
                "updated_at": row.updated_at,
            }
        )
    return out


METER_COLUMNS = [
    "timestamp",
    "connector_id",
    "measurand",
    "phase",
    "location",
    "context",
    "unit",
    "value",
    "raw_value",
    "flag",
]


async def meter_values(sm: SessionMaker, transaction_id: int) -> list[dict[str, Any]]:
    """Every sampled value of a transaction, oldest first (as stored, flags included)."""
    ms = m.MeterSample
    stmt = (
        select(ms)
        .where(ms.transaction_id == transaction_id)
        .order_by(ms.timestamp, ms.measurand, ms.phase, ms.id)
    )
    async with sm() as s:
        rows = (await s.execute(stmt)).scalars().all()
    return [{k: getattr(r, k) for k in METER_COLUMNS} for r in rows]


async def command_rows(
    sm: SessionMaker, *, station_id: str | None = None, limit: int = 50, site_id: int | None = None
) -> list[dict[str, Any]]:
    c = m.Command
    stmt = select(c).order_by(c.id.desc()).limit(limit)
    if station_id is not None:
        stmt = stmt.where(c.charge_point_id == station_id)
    if site_id is not None:
        on_site = select(m.ChargePoint.id).where(m.ChargePoint.site_id == site_id)
        stmt = stmt.where(c.charge_point_id.in_(on_site))
    async with sm() as s:
        rows = (await s.execute(stmt)).scalars().all()
    return [{col.key: getattr(r, col.key) for col in c.__table__.columns} for r in rows]


async def unmanaged_count(sm: SessionMaker) -> int:
    async with sm() as s:
        found = await s.scalar(
            select(func.count()).select_from(m.ChargePoint).where(m.ChargePoint.unmanaged)
        )
    return int(found or 0)


async def connected_count(sm: SessionMaker) -> int:
    async with sm() as s:
        found = await s.scalar(
            select(func.count()).select_from(m.ChargePoint).where(m.ChargePoint.connected)
        )
    return int(found or 0)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as plain values: timestamps as datetimes, NaN and NaT as None."""
    out = []
    for row in frame.to_dict("records"):
        out.append({str(k): _plain(v) for k, v in row.items()})
    return out


def _plain(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    if isinstance(value, datetime):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value
