"""Hourly rollups of meter samples, kept in the same transaction as the samples.

The monitor's History over a month of a large garage read millions of samples per page
(energy from register differences, currents per phase). Two tables hold what it needs
per UTC hour instead (csms.store.models):

- ``meter_hourly_energy``, per transaction and hour: the first and last plausible
  register reading of the hour, the sum of the positive differences between consecutive
  readings within it, and how many there were. A transaction's StopTransaction reading
  is one of its readings. The energy of an hour is that sum plus the positive difference
  from the previous hour's last reading (meterStart before the first) to the hour's
  first reading: exactly the sum of the positive reading-to-reading differences that
  ``csms.store.queries.energy_buckets`` computes from the samples.
- ``meter_hourly_current``, per station, hour and phase: sum, maximum and count of the
  Current.Import values.

Readings arrive out of order (late, replayed after a reconnect), so a merge is by time:
readings after the stored hour's last are appended, readings before its first are
prepended (both in one upsert, on SQLite and PostgreSQL), and readings that fall
between (or on) stored ones mark the hour for a recount from its samples, done before
the commit. Flagged readings (csms.meter.register_flag) never enter, resent samples
(skipped by the insert) neither: on PostgreSQL only the rows the insert returned are
rolled up; on SQLite the insert's rowcount says whether every row was stored, and when
one was not, the hours the rows touch are recounted from the samples.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, case, delete, func, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from csms.errors import StoreError
from csms.meter import DEFAULT_MEASURAND
from csms.store import models as m

HOUR_S = 3600
CURRENT = "Current.Import"
ENERGY = DEFAULT_MEASURAND


def hour_of(at: datetime) -> int:
    """The start of the UTC hour holding ``at``, in whole seconds since 1970."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return math.floor(at.timestamp()) // HOUR_S * HOUR_S


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour, UTC)


@dataclass(frozen=True)
class Reading:
    at: datetime
    wh: float


@dataclass(frozen=True)
class Chain:
    """Readings of one transaction within one hour, in time order."""

    first: Reading
    last: Reading
    inner_wh: float | None  # None: two readings at the same instant, recount
    readings: int


def chain(readings: Iterable[Reading]) -> Chain | None:
    ordered = sorted(readings, key=lambda r: r.at)
    if not ordered:
        return None
    inner: float | None = 0.0
    for a, b in itertools.pairwise(ordered):
        if a.at == b.at:
            inner = None
        elif inner is not None and b.wh > a.wh:
            inner += b.wh - a.wh
    return Chain(ordered[0], ordered[-1], inner, len(ordered))


def is_energy_row(row: Mapping[Any, Any]) -> bool:
    """A sample row that counts for energy: a plausible register reading of a transaction."""
    return bool(
        row["measurand"] == ENERGY
        and row["phase"] is None
        and row["value"] is not None
        and row["flag"] is None
        and row["transaction_id"] is not None
    )


def is_current_row(row: Mapping[Any, Any]) -> bool:
    return bool(row["measurand"] == CURRENT and row["value"] is not None)


# Columns an insert of samples returns for the rollups (the rows actually inserted).
SAMPLE_COLUMNS = (
    "charge_point_id",
    "transaction_id",
    "timestamp",
    "measurand",
    "phase",
    "value",
    "flag",
)


def _insert(dialect: str, table: Any) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise StoreError(f"no upsert for the {dialect} dialect")


def _positive(expr: Any) -> Any:
    return case((expr > 0, expr), else_=0.0)


class Rollups:
    """Applies stored samples and stop readings to the rollups inside one unit of work."""

    def __init__(self, s: AsyncSession) -> None:
        self._s = s
        self._dialect = s.get_bind().dialect.name
        self._energy: dict[tuple[int, int], list[Reading]] = defaultdict(list)
        self._energy_cp: dict[int, str] = {}
        self._currents: dict[tuple[str, int, str], list[float]] = defaultdict(list)
        self._recount: set[tuple[int, int]] = set()
        self._recount_currents: set[tuple[str, int]] = set()

    def add_samples(self, rows: Iterable[Mapping[Any, Any]]) -> None:
        """Rows as an insert of samples returned them (SAMPLE_COLUMNS)."""
        hours: dict[datetime, tuple[datetime, int]] = {}  # a message's samples share a time
        for row in rows:
            measurand = row["measurand"]
            if measurand != ENERGY and measurand != CURRENT:
                continue
            stamp = row["timestamp"]
            known = hours.get(stamp)
            if known is None:
                at = _aware(stamp)
                known = hours[stamp] = (at, hour_of(at))
            at, hour = known
            if is_energy_row(row):
                tx_id = int(row["transaction_id"])
                self._energy[(tx_id, hour)].append(Reading(at, float(row["value"])))
                self._energy_cp[tx_id] = str(row["charge_point_id"])
            elif is_current_row(row):
                key = (str(row["charge_point_id"]), hour, row["phase"] or "")
                self._currents[key].append(float(row["value"]))

    def recount_samples(self, rows: Iterable[Mapping[Any, Any]]) -> None:
        """Rows of which some were not stored (resends): recount the hours they touch
        from the stored samples instead of adding them."""
        for row in rows:
            if is_energy_row(row):
                tx_id = int(row["transaction_id"])
                self._recount.add((tx_id, hour_of(_aware(row["timestamp"]))))
                self._energy_cp[tx_id] = str(row["charge_point_id"])
            elif is_current_row(row):
                cp_id = str(row["charge_point_id"])
                self._recount_currents.add((cp_id, hour_of(_aware(row["timestamp"]))))

    def add_stop(self, tx_id: int, cp_id: str, at: datetime, wh: float) -> None:
        """A transaction's StopTransaction reading (recorded in this unit of work)."""
        at = _aware(at)
        self._energy[(tx_id, hour_of(at))].append(Reading(at, float(wh)))
        self._energy_cp[tx_id] = cp_id

    def recount(self, tx_id: int, cp_id: str, at: datetime) -> None:
        """Recount the transaction's hour holding ``at`` from what is stored (a stop
        reading replaced)."""
        self._recount.add((tx_id, hour_of(_aware(at))))
        self._energy_cp[tx_id] = cp_id

    async def flush(self) -> None:
        """Write what was added; call before the commit, after the samples' insert."""
        s = self._s
        if self._currents:
            table = cast(Table, m.MeterHourlyCurrent.__table__)
            stmt = _insert(self._dialect, table)
            ex = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.charge_point_id, table.c.hour, table.c.phase],
                set_={
                    "total_a": table.c.total_a + ex.total_a,
                    "max_a": case((ex.max_a > table.c.max_a, ex.max_a), else_=table.c.max_a),
                    "samples": table.c.samples + ex.samples,
                },
            )
            await s.execute(
                stmt,
                [
                    {
                        "charge_point_id": cp,
                        "hour": hour,
                        "phase": phase,
                        "total_a": math.fsum(values),
                        "max_a": max(values),
                        "samples": len(values),
                    }
                    for (cp, hour, phase), values in self._currents.items()
                ],
            )
            self._currents.clear()
        if self._energy:
            params = []
            for (tx_id, hour), readings in self._energy.items():
                c = chain(readings)
                assert c is not None
                params.append(
                    {
                        "transaction_id": tx_id,
                        "hour": hour,
                        "charge_point_id": self._energy_cp[tx_id],
                        "first_at": c.first.at,
                        "first_wh": c.first.wh,
                        "last_at": c.last.at,
                        "last_wh": c.last.wh,
                        "inner_wh": c.inner_wh,
                        "readings": c.readings,
                    }
                )
            self._energy.clear()
            table = cast(Table, m.MeterHourlyEnergy.__table__)
            stmt = _insert(self._dialect, table)
            ex = stmt.excluded
            after = ex.first_at > table.c.last_at
            before = ex.last_at < table.c.first_at
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.transaction_id, table.c.hour],
                set_={
                    "inner_wh": case(
                        (
                            after,
                            table.c.inner_wh
                            + ex.inner_wh
                            + _positive(ex.first_wh - table.c.last_wh),
                        ),
                        (
                            before,
                            table.c.inner_wh
                            + ex.inner_wh
                            + _positive(table.c.first_wh - ex.last_wh),
                        ),
                        else_=None,
                    ),
                    "first_at": case((before, ex.first_at), else_=table.c.first_at),
                    "first_wh": case((before, ex.first_wh), else_=table.c.first_wh),
                    "last_at": case((after, ex.last_at), else_=table.c.last_at),
                    "last_wh": case((after, ex.last_wh), else_=table.c.last_wh),
                    "readings": table.c.readings + ex.readings,
                },
            ).returning(table.c.transaction_id, table.c.hour, table.c.inner_wh)
            for tx_id, hour, inner in (await s.execute(stmt, params)).all():
                if inner is None:
                    self._recount.add((int(tx_id), int(hour)))
        if self._recount:
            await self._recount_hours(sorted(self._recount))
            self._recount.clear()
        if self._recount_currents:
            await self._recount_current_hours(sorted(self._recount_currents))
            self._recount_currents.clear()

    async def _recount_current_hours(self, keys: Sequence[tuple[str, int]]) -> None:
        """Rebuild a station's current rows of an hour from its stored samples (after the
        additions of this unit of work, which this overwrites)."""
        s = self._s
        ms = m.MeterSample
        table = cast(Table, m.MeterHourlyCurrent.__table__)
        rows: list[dict[str, Any]] = []
        for cp_id, hour in keys:
            stmt = (
                select(ms.phase, func.sum(ms.value), func.max(ms.value), func.count())
                .where(
                    ms.charge_point_id == cp_id,
                    ms.timestamp >= hour_start(hour),
                    ms.timestamp < hour_start(hour + HOUR_S),
                    ms.measurand == CURRENT,
                    ms.value.is_not(None),
                )
                .group_by(ms.phase)
            )
            for phase, total, top, count in await s.execute(stmt):
                rows.append(
                    {
                        "charge_point_id": cp_id,
                        "hour": hour,
                        "phase": phase or "",
                        "total_a": float(total or 0.0),
                        "max_a": float(top or 0.0),
                        "samples": int(count),
                    }
                )
        if rows:
            stmt = _insert(self._dialect, table)
            ex = stmt.excluded
            await s.execute(
                stmt.on_conflict_do_update(
                    index_elements=[table.c.charge_point_id, table.c.hour, table.c.phase],
                    set_={c: ex[c] for c in ("total_a", "max_a", "samples")},
                ),
                rows,
            )

    async def _recount_hours(self, keys: Sequence[tuple[int, int]]) -> None:
        """Rebuild (transaction, hour) rows from the stored samples and stop readings."""
        s = self._s
        ms, tx = m.MeterSample, m.Transaction
        table = cast(Table, m.MeterHourlyEnergy.__table__)
        tx_ids = sorted({k[0] for k in keys})
        stops = {
            row.id: row
            for row in await s.execute(
                select(tx.id, tx.charge_point_id, tx.stopped_at, tx.meter_stop_wh).where(
                    tx.id.in_(tx_ids)
                )
            )
        }
        rows: list[dict[str, Any]] = []
        gone: list[tuple[int, int]] = []
        for tx_id, hour in keys:
            info = stops.get(tx_id)
            if info is None:
                continue
            start, end = hour_start(hour), hour_start(hour + HOUR_S)
            readings = [
                Reading(_aware(at), float(wh))
                for at, wh in await s.execute(
                    select(ms.timestamp, ms.value).where(
                        ms.charge_point_id == info.charge_point_id,
                        ms.timestamp >= start,
                        ms.timestamp < end,
                        ms.transaction_id == tx_id,
                        ms.measurand == ENERGY,
                        ms.phase.is_(None),
                        ms.value.is_not(None),
                        ms.flag.is_(None),
                    )
                )
                if wh is not None
            ]
            if info.stopped_at is not None and info.meter_stop_wh is not None:
                stop_at = _aware(info.stopped_at)
                if start <= stop_at < end:
                    readings.append(Reading(stop_at, float(info.meter_stop_wh)))
            c = _recounted(readings)
            if c is None:
                gone.append((tx_id, hour))
                continue
            rows.append(
                {
                    "transaction_id": tx_id,
                    "hour": hour,
                    "charge_point_id": info.charge_point_id,
                    "first_at": c.first.at,
                    "first_wh": c.first.wh,
                    "last_at": c.last.at,
                    "last_wh": c.last.wh,
                    "inner_wh": c.inner_wh,
                    "readings": c.readings,
                }
            )
        if gone:
            await s.execute(
                delete(table).where(tuple_(table.c.transaction_id, table.c.hour).in_(gone))
            )
        if rows:
            stmt = _insert(self._dialect, table)
            ex = stmt.excluded
            await s.execute(
                stmt.on_conflict_do_update(
                    index_elements=[table.c.transaction_id, table.c.hour],
                    set_={
                        c: ex[c]
                        for c in (
                            "charge_point_id",
                            "first_at",
                            "first_wh",
                            "last_at",
                            "last_wh",
                            "inner_wh",
                            "readings",
                        )
                    },
                ),
                rows,
            )


def _recounted(readings: Sequence[Reading]) -> Chain | None:
    """A chain over every reading of an hour; readings at the same instant in the order
    they came (as a window over the samples would take them: either order sums alike
    unless a register went backwards at that very instant)."""
    if not readings:
        return None
    ordered = sorted(readings, key=lambda r: r.at)
    inner = 0.0
    for a, b in itertools.pairwise(ordered):
        if b.wh > a.wh:
            inner += b.wh - a.wh
    return Chain(ordered[0], ordered[-1], inner, len(ordered))


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# ------------------------------------------------------------------ full rebuild
def _epoch_sql(dialect: str, column: str) -> str:
    if dialect == "sqlite":
        return f"CAST(strftime('%s', {column}) AS INTEGER)"
    return f"CAST(floor(EXTRACT(EPOCH FROM {column})) AS BIGINT)"


def rebuild_sql(dialect: str) -> list[str]:
    """SQL that rebuilds both rollups from every stored sample (migration 0010 runs a
    frozen copy of it; the demo seeder runs it after its bulk inserts)."""
    sample_hour = f"({_epoch_sql(dialect, 'ms.timestamp')} / 3600) * 3600"
    stop_hour = f"({_epoch_sql(dialect, 't.stopped_at')} / 3600) * 3600"
    return [
        "DELETE FROM meter_hourly_energy",
        "DELETE FROM meter_hourly_current",
        # Only constants of this module go into the text.
        f"""
INSERT INTO meter_hourly_energy (transaction_id, hour, charge_point_id, first_at, first_wh,
    last_at, last_wh, inner_wh, readings)
SELECT tx_id, hr, MAX(cp), MIN(at), MAX(CASE WHEN rn_first = 1 THEN wh END),
    MAX(at), MAX(CASE WHEN rn_last = 1 THEN wh END),
    SUM(CASE WHEN prev_hr = hr AND wh > prev_wh THEN wh - prev_wh ELSE 0.0 END), COUNT(*)
FROM (
    SELECT tx_id, cp, at, wh, hr,
        LAG(wh) OVER (PARTITION BY tx_id ORDER BY at) AS prev_wh,
        LAG(hr) OVER (PARTITION BY tx_id ORDER BY at) AS prev_hr,
        ROW_NUMBER() OVER (PARTITION BY tx_id, hr ORDER BY at) AS rn_first,
        ROW_NUMBER() OVER (PARTITION BY tx_id, hr ORDER BY at DESC) AS rn_last
    FROM (
        SELECT ms.transaction_id AS tx_id, t.charge_point_id AS cp, ms.timestamp AS at,
            ms.value AS wh, {sample_hour} AS hr
        FROM meter_samples ms JOIN transactions t ON t.id = ms.transaction_id
        WHERE ms.measurand = '{ENERGY}' AND ms.phase IS NULL AND ms.value IS NOT NULL
            AND ms.flag IS NULL
        UNION ALL
        SELECT t.id, t.charge_point_id, t.stopped_at, CAST(t.meter_stop_wh AS FLOAT),
            {stop_hour}
        FROM transactions t
        WHERE t.stopped_at IS NOT NULL AND t.meter_stop_wh IS NOT NULL
    ) readings
) ordered
GROUP BY tx_id, hr
""",  # noqa: S608
        f"""
INSERT INTO meter_hourly_current (charge_point_id, hour, phase, total_a, max_a, samples)
SELECT ms.charge_point_id, {sample_hour}, COALESCE(ms.phase, ''), SUM(ms.value),
    MAX(ms.value), COUNT(*)
FROM meter_samples ms
WHERE ms.measurand = '{CURRENT}' AND ms.value IS NOT NULL
GROUP BY ms.charge_point_id, {sample_hour}, COALESCE(ms.phase, '')
""",  # noqa: S608
    ]


async def rebuild(s: AsyncSession) -> None:
    """Rebuild both rollups from the stored samples (after a bulk insert)."""
    for statement in rebuild_sql(s.get_bind().dialect.name):
        await s.execute(text(statement))


__all__ = [
    "SAMPLE_COLUMNS",
    "Chain",
    "Reading",
    "Rollups",
    "chain",
    "hour_of",
    "rebuild",
    "rebuild_sql",
]
