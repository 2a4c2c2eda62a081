"""A group commit judges the first register readings of many series with one read.

After a restart or a reconnect the store knows no tail of a station's register series;
each first reading is judged against the newest stored plausible reading of its series.
A batch of many such readings reads those for all series in one statement (it made two
queries per reading, one after the other, which was the commit tail at 10,000 chargers),
and judges them as the stored readings say: backwards, a jump, fine, and fine where
nothing is stored. On SQLite and on a real PostgreSQL 15.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from csms.domain import SampledValue
from csms.meter import BACKWARDS, JUMP
from csms.store import models as m
from csms.store import repository as repository_module
from csms.store.engine import create_sessionmaker
from csms.store.repository import MeterBatchItem, Repository
from tests.conftest import fixed_clock
from tests.test_rollups import engine, pg_server, store_url  # noqa: F401  (fixtures)

T = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)
ENERGY = "Energy.Active.Import.Register"


def _reading(cp_id: str, minute: int, wh: float, tx: int | None = None) -> MeterBatchItem:
    at = T + timedelta(minutes=minute)
    samples = [
        SampledValue(at, f"{wh:g}", ENERGY, unit="Wh"),
        SampledValue(at, "7000", "Power.Active.Import", unit="W"),
    ]
    return MeterBatchItem(cp_id, 1, tx, samples)


class _MeterReads:
    """Counts the SELECTs that read meter_samples on an engine."""

    def __init__(self, on: AsyncEngine) -> None:
        self.count = 0
        self._engine = on.sync_engine

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "meter_samples" in statement:
            self.count += 1

    def __enter__(self) -> _MeterReads:
        event.listen(self._engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


async def _flags(repo: Repository) -> dict[tuple[str, datetime], str | None]:
    ms = m.MeterSample
    async with repo.sessionmaker() as s:
        rows = await s.execute(
            select(ms.charge_point_id, ms.timestamp, ms.flag).where(ms.measurand == ENERGY)
        )
        return {(cp, at): flag for cp, at, flag in rows}


async def test_first_readings_of_many_series_are_judged_with_one_read(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    sessionmaker = create_sessionmaker(engine)
    before = Repository(sessionmaker, fixed_clock(T + timedelta(hours=1)))
    stations = [f"CP{i}" for i in range(12)]
    for cp_id in stations:
        # 11 kW: at most ~183 Wh a minute.
        await before.add_charge_point(cp_id, max_current_a=16.0)
    await before.add_id_tag("TAG")
    started = await before.start_transaction("CP11", 1, "TAG", 4000, T - timedelta(minutes=5))
    tx = int(started.transaction_id)
    # What an earlier process stored: CP0-CP9 at 20:00 (CP11 inside its transaction).
    await before.add_meter_values_batch(
        [_reading(cp_id, 0, 1000) for cp_id in stations[:10]] + [_reading("CP11", 0, 4100, tx)]
    )

    after = Repository(sessionmaker, fixed_clock(T + timedelta(hours=1)))  # knows no tails
    batch = [_reading(cp_id, 1, 1100) for cp_id in stations[2:10]] + [
        _reading("CP0", 1, 900),  # below the stored 1000
        _reading("CP1", 1, 2000),  # 1,000 Wh in a minute from 1000
        _reading("CP10", 1, 50_000),  # nothing stored: nothing to judge against
        _reading("CP11", 1, 4000, tx),  # below the stored 4100 (and at meterStart)
        _reading("CP2", 2, 1200),  # the same series again, after 1100 in this batch
        _reading("CP3", 2, 1000),  # below 1100 of this batch
    ]
    with _MeterReads(engine) as reads:
        flags = await after.add_meter_values_batch(batch)

    assert reads.count == 1
    assert [f[0] for f in flags] == [None] * 8 + [BACKWARDS, JUMP, None, BACKWARDS, None, BACKWARDS]
    stored = await _flags(after)
    assert stored[("CP0", T + timedelta(minutes=1))] == BACKWARDS
    assert stored[("CP10", T + timedelta(minutes=1))] is None
    assert stored[("CP2", T + timedelta(minutes=2))] is None


async def test_unknown_series_are_read_in_parts_and_late_readings_still_look_both_ways(
    engine: AsyncEngine,  # noqa: F811
    monkeypatch: Any,
) -> None:
    """More series than one statement takes are read in parts; a reading older than the
    newest stored one is judged against the readings on both sides of it."""
    monkeypatch.setattr(repository_module, "NEWEST_REGISTERS_PER_QUERY", 4)
    sessionmaker = create_sessionmaker(engine)
    before = Repository(sessionmaker, fixed_clock(T + timedelta(hours=1)))
    stations = [f"CP{i}" for i in range(10)]
    for cp_id in stations:
        await before.add_charge_point(cp_id, max_current_a=16.0)
    await before.add_meter_values_batch(
        [_reading(cp_id, 0, 1000) for cp_id in stations]
        + [_reading(cp_id, 10, 1500) for cp_id in stations]
    )

    after = Repository(sessionmaker, fixed_clock(T + timedelta(hours=1)))
    batch = [_reading(cp_id, 11, 1600) for cp_id in stations[1:]] + [
        _reading("CP0", 5, 1600),  # between 1000 at :00 and 1500 at :10, above the later
    ]
    with _MeterReads(engine) as reads:
        flags = await after.add_meter_values_batch(batch)

    # 10 series in parts of 4: 3 reads, and the late reading's two.
    assert reads.count == 3 + 2
    assert [f[0] for f in flags] == [None] * 9 + [BACKWARDS]
