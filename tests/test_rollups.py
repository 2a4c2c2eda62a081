"""Hourly rollups (csms.store.rollups) give the History exactly what the samples give.

A garage of three stations on two sites is written through the store's real write paths
(group-commit batches, single MeterValues, StopTransaction with transactionData, a start
that supersedes an open transaction and that transaction's late stop), with readings
that arrive out of order (a whole hour late, a reading between two stored ones, the
first readings of an hour after the later ones), resends, implausible register readings
(flagged, left out of totals), a register reset at a stop, phase-less currents and a
timestamp 0.3 s before the hour. Then the History's queries from the rollups equal the
same queries over the raw samples (windows of whole hours, and windows whose ends are
not on the hour, for a site whose offset is not whole hours), and so do the page's figures; the rollups kept by the
writer equal a rebuild from the samples; a populated database migrated to 0010 (rows
from before plausibility flags included) reads the same from its rollups. On SQLite and
on a real PostgreSQL 15.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from csms.domain import SampledValue
from csms.monitor import frames
from csms.store import migrate, queries, rollups
from csms.store import models as m
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import MeterBatchItem, Repository
from tests.conftest import fixed_clock
from tests.test_postgres import new_database
from tests.test_postgres import pg_url as pg_server  # noqa: F401  (the module's server)

T = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)
ENERGY = "Energy.Active.Import.Register"
CURRENT = "Current.Import"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'rollups.db'}"
        return
    server: str = request.getfixturevalue("pg_server")
    yield new_database(server, "rollups")


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_url)
    try:
        await migrate.upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


def _message(at: datetime, wh: float | None, amps: tuple[float, ...]) -> list[SampledValue]:
    out = []
    if wh is not None:
        out.append(SampledValue(at, f"{wh:g}", ENERGY, unit="Wh"))
    if len(amps) == 1:
        out.append(SampledValue(at, f"{amps[0]:g}", CURRENT, unit="A"))
    else:
        out += [
            SampledValue(at, f"{a:g}", CURRENT, phase=f"L{i + 1}", unit="A")
            for i, a in enumerate(amps)
        ]
    out.append(SampledValue(at, "7000", "Power.Active.Import", unit="W"))
    return out


async def _start(repo: Repository, cp_id: str, tag: str, wh: int, minute: int) -> int:
    started = await repo.start_transaction(cp_id, 1, tag, wh, T + timedelta(minutes=minute))
    return int(started.transaction_id)


async def _garage(repo: Repository) -> dict[str, int]:
    """Write the garage's month in miniature; returns the transaction ids by name."""
    berg = await repo.add_site("Berg")
    await repo.add_charge_point("CP1", max_current_a=32.0)
    await repo.add_charge_point("CP2", max_current_a=32.0, phases=1)
    await repo.add_charge_point("CP3", max_current_a=16.0, site_id=berg.site_id)
    await repo.add_id_tag("TAG1")
    await repo.add_id_tag("TAG2")
    await repo.add_id_tag("TAG3", site_id=berg.site_id)
    tx: dict[str, int] = {}
    tx["cp1"] = await _start(repo, "CP1", "TAG1", 1000, -30)
    tx["cp2a"] = await _start(repo, "CP2", "TAG2", 5000, 10)

    def cp1(minute: float, wh: float | None = None) -> MeterBatchItem:
        at = T + timedelta(minutes=minute)
        value = 1000 + 250 * (minute + 30) / 5 if wh is None else wh
        amps = (15 + minute % 7, 14.5, 16 + minute % 3)
        return MeterBatchItem("CP1", 1, tx["cp1"], _message(at, value, amps))

    def cp2(minute: float, wh: float, transaction: str = "cp2a") -> MeterBatchItem:
        at = T + timedelta(minutes=minute)
        return MeterBatchItem("CP2", 1, tx[transaction], _message(at, wh, (20 + minute % 5,)))

    late: list[MeterBatchItem] = []
    # CP1 every 5 min from 19:35 to 23:55; held back: 20:00 and 20:05 (the first of their
    # hour, sent after the rest of it), 21:20 (between stored readings), all of 22:xx.
    for minute in range(-25, 240, 5):
        item = cp1(minute)
        if minute in (0, 5, 80) or 120 <= minute < 180:
            late.append(item)
            continue
        batch = [item]
        if minute == 190:
            batch.append(cp1(192.5, 90_000.0))  # in order, implausible: flagged "jump"
        if 10 <= minute <= 90:
            batch.append(cp2(minute, 5000 + 100 * (minute - 10) / 5))
        await repo.add_meter_values_batch(batch)
    # 20:59:59.7, implausible ones (a jump, a backwards reading), a resend of 21:00.
    await repo.add_meter_values_batch([cp1(59.995)])
    flags = await repo.add_meter_values_batch(
        [cp1(102.5, 900_000.0), cp1(107.5, 500.0), cp1(60), cp2(60, 5000 + 100 * 10)]
    )
    assert flags[0][0] == "jump" and flags[1][0] == "backwards"
    # The late ones: one at a time (as a reconnecting charger replays them), then a hour.
    for item in late[:3]:
        await repo.add_meter_values_batch([item])
    await repo.add_meter_values_batch(late[3:])
    # CP2's register resets: its stop is below its start (a step down counts for nothing).
    await repo.stop_transaction(
        "CP2",
        tx["cp2a"],
        100,
        T + timedelta(minutes=95),
        transaction_data=[
            SampledValue(T + timedelta(minutes=92, seconds=30), "6700", ENERGY, unit="Wh")
        ],
    )
    tx["cp2b"] = await _start(repo, "CP2", "TAG2", 100, 100)
    for minute in range(105, 145, 5):
        await repo.add_meter_values_batch([cp2(minute, 100 + 80 * (minute - 100), "cp2b")])
    # A start on the same connector closes cp2b (its StopTransaction was lost) ...
    tx["cp2c"] = await _start(repo, "CP2", "TAG2", 3300, 150)
    for minute in range(155, 185, 5):
        await repo.add_meter_values_batch([cp2(minute, 3300 + 60 * (minute - 150), "cp2c")])
    # ... and that stop arrives late, earlier than the start that closed it.
    await repo.stop_transaction("CP2", tx["cp2b"], 3350, T + timedelta(minutes=147))
    await repo.stop_transaction("CP1", tx["cp1"], 23_000, T + timedelta(minutes=238))
    # CP3 on site Berg: single MeterValues, one outside any transaction.
    tx["cp3"] = await _start(repo, "CP3", "TAG3", 1200, 30)
    for minute in range(35, 200, 15):
        at = T + timedelta(minutes=minute)
        await repo.add_meter_values("CP3", 1, tx["cp3"], _message(at, 40.0 * minute, (9, 9, 8)))
    # A resend and a new message in one commit (a charger replaying after a reconnect).
    resend = _message(T + timedelta(minutes=185), 40.0 * 185, (9, 9, 8))
    new = _message(T + timedelta(minutes=190), None, (7, 7, 6))
    await repo.add_meter_values_batch(
        [MeterBatchItem("CP3", 1, tx["cp3"], resend), MeterBatchItem("CP3", 1, tx["cp3"], new)]
    )
    await repo.add_meter_values("CP3", 2, None, _message(T + timedelta(hours=1), 77.0, (1, 2, 3)))
    return tx


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("time", "charge_point_id", "measurand", "phase") if c in frame]
    out = frame.copy()
    if "phase" in out:
        # None where a sample had no phase, in both (the rollups keep it as '').
        assert "" not in set(out["phase"])
        out["phase"] = out["phase"].fillna("")
    return out.sort_values(keys).reset_index(drop=True)


def _assert_same(rolled: pd.DataFrame, raw: pd.DataFrame) -> None:
    rolled, raw = _sorted(rolled), _sorted(raw)
    assert list(rolled.columns) == list(raw.columns)
    assert len(rolled) == len(raw), (rolled, raw)
    for column in rolled.columns:
        if column in ("energy_wh", "avg", "max"):
            assert rolled[column].to_numpy() == pytest.approx(raw[column].to_numpy(), rel=1e-9)
        else:
            assert rolled[column].tolist() == raw[column].tolist(), column


WINDOWS = [
    (T - timedelta(hours=2), T + timedelta(hours=6), 3600),
    (T + timedelta(hours=1), T + timedelta(hours=4), 3600),  # starts inside sessions
    (T - timedelta(hours=2), T + timedelta(hours=6), 7200),
    (T + timedelta(hours=2), T + timedelta(hours=3), 3600),  # the late hour alone
    # Site-local midnights off the UTC hour (+05:30, +05:45): part hours from the samples.
    (T - timedelta(minutes=30), T + timedelta(hours=3, minutes=30), 3600),
    (T + timedelta(minutes=45), T + timedelta(hours=5, minutes=45), 7200),
    (T + timedelta(minutes=15), T + timedelta(minutes=45), 3600),
]


async def _check_history_equal(engine: AsyncEngine) -> None:
    sm = create_sessionmaker(engine)
    for start, end, bucket in WINDOWS:
        for scope in ({}, {"station_ids": ["CP1"]}, {"site_id": 1}, {"site_id": 2}):
            rolled = await queries.energy_buckets(sm, start, end, bucket, **scope)  # type: ignore[arg-type]
            raw = await queries.energy_buckets(sm, start, end, bucket, rollups=False, **scope)  # type: ignore[arg-type]
            _assert_same(rolled, raw)
            rolled_a = await queries.sample_buckets(
                sm,
                start,
                end,
                bucket,
                measurands=(CURRENT,),
                **scope,  # type: ignore[arg-type]
            )
            raw_a = await queries.sample_buckets(
                sm,
                start,
                end,
                bucket,
                measurands=(CURRENT,),
                rollups=False,
                **scope,  # type: ignore[arg-type]
            )
            _assert_same(rolled_a, raw_a)


async def _page_figures(sm: Any, start: datetime, end: datetime, rolled: bool) -> dict[str, Any]:
    """What the History page shows: energy, peak, the draw per station and bucket, daily."""
    stations = await queries.stations(sm)
    energy = await queries.energy_buckets(sm, start, end, 3600, rollups=rolled)
    currents = await queries.sample_buckets(
        sm, start, end, 3600, measurands=(CURRENT,), rollups=rolled
    )
    draw = frames.draw_from_energy(
        energy, stations, start=start, end=end, bucket_s=3600, voltage_v=230.0, currents=currents
    )
    hourly = energy.assign(time=pd.to_datetime(energy["time"], utc=True).dt.floor("h"))
    daily = frames.daily_summary(
        hourly.groupby(["time", "charge_point_id"])["energy_wh"].sum().reset_index(), "UTC"
    )
    return {
        "total_kwh": float(energy["energy_wh"].sum()) / 1000.0,
        "peak_kw": float(frames.total_by_phase(draw)["power_w"].max()) / 1000.0,
        "draw": draw.sort_values(["time", "charge_point_id"]).reset_index(drop=True),
        "daily": daily.sort_values(["day", "charge_point_id"]).reset_index(drop=True),
    }


async def _energy_rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    e = m.MeterHourlyEnergy
    async with create_sessionmaker(engine)() as s:
        rows = await s.execute(
            select(e.transaction_id, e.hour, e.first_at, e.first_wh, e.last_at, e.last_wh,
                   e.inner_wh, e.readings).order_by(e.transaction_id, e.hour)
        )  # fmt: skip
        return [tuple(r) for r in rows]


async def _current_rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    c = m.MeterHourlyCurrent
    async with create_sessionmaker(engine)() as s:
        rows = await s.execute(
            select(c.charge_point_id, c.hour, c.phase, c.total_a, c.max_a, c.samples).order_by(
                c.charge_point_id, c.hour, c.phase
            )
        )
        return [tuple(r) for r in rows]


def _approx_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        tuple(pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for v in r) for r in rows
    ]


async def test_history_from_rollups_equals_history_from_samples(engine: AsyncEngine) -> None:
    repo = Repository(create_sessionmaker(engine), fixed_clock(T + timedelta(hours=5)))
    await _garage(repo)
    sm = create_sessionmaker(engine)
    async with sm() as s:
        flagged = await s.scalar(
            select(func.count()).select_from(m.MeterSample).where(m.MeterSample.flag.is_not(None))
        )
        stale = await s.scalar(
            select(func.count())
            .select_from(m.MeterHourlyEnergy)
            .where(m.MeterHourlyEnergy.inner_wh.is_(None))
        )
    assert flagged == 4 and stale == 0
    kept = await _energy_rows(engine)
    assert len(kept) >= 15

    await _check_history_equal(engine)

    start, end = T - timedelta(hours=2), T + timedelta(hours=6)
    rolled, raw = (
        await _page_figures(sm, start, end, True),
        await _page_figures(sm, start, end, False),
    )
    # CP1 23,000 - 1,000 Wh; CP2 1,600 (its transactionData reading is above its stop:
    # flagged) then 3,250 and 1,800; CP3 7,400 - 1,200.
    assert raw["total_kwh"] == pytest.approx((22_000 + 1_600 + 3_250 + 1_800 + 6_200) / 1000)
    assert rolled["total_kwh"] == pytest.approx(raw["total_kwh"], rel=1e-12)
    assert rolled["peak_kw"] == pytest.approx(raw["peak_kw"], rel=1e-12)
    pd.testing.assert_frame_equal(rolled["draw"], raw["draw"], rtol=1e-9)
    pd.testing.assert_frame_equal(rolled["daily"], raw["daily"], rtol=1e-9)

    # What the writer kept equals a rebuild from the samples (migration 0010's way).
    currents = await _current_rows(engine)
    async with sm() as s:
        await rollups.rebuild(s)
        await s.commit()
    assert await _energy_rows(engine) == _approx_rows(kept)
    assert await _current_rows(engine) == _approx_rows(currents)


async def test_a_populated_database_migrates_to_rollups(
    engine: AsyncEngine, store_url: str
) -> None:
    repo = Repository(create_sessionmaker(engine), fixed_clock(T + timedelta(hours=5)))
    tx = await _garage(repo)
    cfg = migrate.alembic_config(store_url)
    async with engine.begin() as conn:

        def _down(sync: object) -> None:
            cfg.attributes["connection"] = sync
            command.downgrade(cfg, "0009")

        await conn.run_sync(_down)
    # Rows from before plausibility flags (migration 0005 left them unflagged): CP3's
    # register resets to 0 in the middle of its session and climbs again.
    async with engine.begin() as conn:
        for minute, wh in ((201, 0.0), (206, 150.0), (211, 300.0)):
            at = T + timedelta(minutes=minute)
            await conn.execute(
                text(
                    "INSERT INTO meter_samples (charge_point_id, connector_id, transaction_id, "
                    "timestamp, measurand, raw_value, value, received_at) VALUES "
                    "('CP3', 1, :tx, :at, :measurand, :raw, :wh, :at)"
                ),
                {"tx": tx["cp3"], "at": at, "measurand": ENERGY, "raw": f"{wh:g}", "wh": wh},
            )
    await migrate.upgrade(engine)
    async with create_sessionmaker(engine)() as s:
        rows = await s.scalar(select(func.count()).select_from(m.MeterHourlyEnergy))
        current_rows = await s.scalar(select(func.count()).select_from(m.MeterHourlyCurrent))
    assert rows and rows >= 15 and current_rows and current_rows >= 15
    await _check_history_equal(engine)
    energy = await queries.energy_buckets(
        create_sessionmaker(engine), T, T + timedelta(hours=4), 3600, station_ids=["CP3"]
    )
    # 1,200 to 7,400 Wh, the reset counts for nothing, then 300 Wh more.
    assert float(energy["energy_wh"].sum()) == pytest.approx(6_200 + 300)
