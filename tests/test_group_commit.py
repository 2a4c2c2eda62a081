"""Group commit of MeterValues (csms.store.meter_writer) through a live csms serve.

Real chargers' connections on 127.0.0.1, a real SQLite file; the writer's before-commit
hook holds or fails a batch at its commit. No answer before its commit; a failing batch
answers every message with an error and stores none of it; a message the store refuses
fails alone; many chargers' messages go in one commit, each sample stored once; a
reading older than the newest one is judged against the stored ones. Runs in ~6 s.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from csms.app import CsmsApp
from csms.errors import StoreError
from csms.meter import BACKWARDS
from csms.store import models as m
from csms.store.repository import MeterBatchItem, Repository
from tests.conftest import start_app, ws_url
from tests.ocpp_client import RawChargePoint

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
SAMPLES_PER_MESSAGE = 5


def meter_values(
    second: int, energy_wh: float, transaction_id: int | None = None
) -> dict[str, Any]:
    at = f"2026-01-05T16:{second // 60:02d}:{second % 60:02d}Z"
    sampled: list[dict[str, Any]] = [
        {"value": f"{energy_wh:g}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "7000", "measurand": "Power.Active.Import", "unit": "W"},
    ] + [
        {"value": "10", "measurand": "Current.Import", "phase": phase, "unit": "A"}
        for phase in ("L1", "L2", "L3")
    ]
    payload: dict[str, Any] = {
        "connectorId": 1,
        "meterValue": [{"timestamp": at, "sampledValue": sampled}],
    }
    if transaction_id is not None:
        payload["transactionId"] = transaction_id
    return payload


async def chargers(app: CsmsApp, count: int, prefix: str = "CP") -> list[RawChargePoint]:
    out = []
    for i in range(count):
        await app.repository.add_charge_point(f"{prefix}{i}", security_profile=0)
        cp = await RawChargePoint.connect(ws_url(app, f"{prefix}{i}"))
        await cp.ok("BootNotification", BOOT)
        out.append(cp)
    return out


async def stored_samples(db_url: str) -> int:
    """Counted on a connection of its own (what another process sees: committed rows)."""
    path = db_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM meter_samples").fetchone()[0])


async def wait_until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_no_answer_before_the_commit_and_many_messages_in_one_commit(
    db_url: str,
) -> None:
    app = await start_app(db_url)
    points: list[RawChargePoint] = []
    try:
        points = await chargers(app, 8)
        writer = app.meter_writer
        held = asyncio.Event()
        release = asyncio.Event()
        batches: list[list[str]] = []

        async def hold_first(items: Sequence[MeterBatchItem]) -> None:
            batches.append([i.charge_point_id for i in items])
            if len(batches) == 1:
                held.set()
                await release.wait()

        writer.before_commit = hold_first
        first = asyncio.create_task(points[0].call("MeterValues", meter_values(1, 1000)))
        await held.wait()
        rest = [
            asyncio.create_task(cp.call("MeterValues", meter_values(1, 1000))) for cp in points[1:]
        ]
        # The others queue behind the batch at its commit.
        await wait_until(lambda: writer.queued == len(points) - 1, "all queued")
        await asyncio.sleep(0.1)  # room for a wrong early answer to arrive
        assert not first.done(), "answered before its commit"
        assert not any(t.done() for t in rest)
        assert await stored_samples(db_url) == 0  # inside the unit, not committed yet

        release.set()
        answers = [await first] + [await t for t in rest]
        assert all(a[0] == 3 and a[2] == {} for a in answers), answers
        assert batches[0] == ["CP0"]
        assert sorted(batches[1]) == [f"CP{i}" for i in range(1, 8)]  # one commit for 7
        assert writer.largest_batch == 7
        assert await stored_samples(db_url) == 8 * SAMPLES_PER_MESSAGE

        # A resend with a new message id (a new connection, say) is stored once.
        again = await points[3].call("MeterValues", meter_values(1, 1000), message_id="new-id")
        assert again[0] == 3
        assert await stored_samples(db_url) == 8 * SAMPLES_PER_MESSAGE
    finally:
        for cp in points:
            await cp.close()
        await app.stop()


async def test_a_failing_batch_answers_every_message_with_an_error_and_stores_none(
    db_url: str,
) -> None:
    """Another process holds the write lock: the batch, and each message alone, fail;
    every charger gets InternalError, nothing is stored; their resends are stored once."""
    app = await start_app(db_url, sqlite_busy_timeout_ms=200)
    points: list[RawChargePoint] = []
    try:
        points = await chargers(app, 4)
        blocker = sqlite3.connect(db_url.removeprefix("sqlite+aiosqlite:///"))
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            answers = await asyncio.gather(
                *(cp.call("MeterValues", meter_values(2, 1000), message_id="mv") for cp in points)
            )
        finally:
            blocker.rollback()
            blocker.close()
        assert [a[0] for a in answers] == [4, 4, 4, 4], answers
        assert {a[2] for a in answers} == {"InternalError"}
        assert await stored_samples(db_url) == 0
        resent = await asyncio.gather(
            *(cp.call("MeterValues", meter_values(2, 1000), message_id="mv") for cp in points)
        )
        assert [a[0] for a in resent] == [3, 3, 3, 3]
        assert await stored_samples(db_url) == 4 * SAMPLES_PER_MESSAGE
    finally:
        for cp in points:
            await cp.close()
        await app.stop()


async def test_a_message_the_store_refuses_fails_alone(db_url: str) -> None:
    app = await start_app(db_url)
    points: list[RawChargePoint] = []
    try:
        points = await chargers(app, 4)
        writer = app.meter_writer
        held = asyncio.Event()
        release = asyncio.Event()

        async def refuse_cp2(items: Sequence[MeterBatchItem]) -> None:
            if not held.is_set():
                held.set()
                await release.wait()
            if any(i.charge_point_id == "CP2" for i in items):
                raise StoreError("refused for the test")

        writer.before_commit = refuse_cp2
        first = asyncio.create_task(points[0].call("MeterValues", meter_values(3, 1000)))
        await held.wait()
        rest = [
            asyncio.create_task(cp.call("MeterValues", meter_values(3, 1000))) for cp in points[1:]
        ]
        await wait_until(lambda: writer.queued == 3, "all queued")
        release.set()
        answers = {
            cp_id: await task
            for cp_id, task in zip(["CP0", "CP1", "CP2", "CP3"], [first, *rest], strict=True)
        }
        assert answers["CP2"][0] == 4 and answers["CP2"][2] == "InternalError"
        assert all(answers[c][0] == 3 for c in ("CP0", "CP1", "CP3"))
        path = db_url.removeprefix("sqlite+aiosqlite:///")
        with sqlite3.connect(path) as conn:
            stored = dict(
                conn.execute(
                    "SELECT charge_point_id, count(*) FROM meter_samples GROUP BY charge_point_id"
                ).fetchall()
            )
        assert stored == {"CP0": 5, "CP1": 5, "CP3": 5}
    finally:
        for cp in points:
            await cp.close()
        await app.stop()


async def test_a_reading_older_than_the_newest_is_judged_against_the_stored_ones(
    db_url: str,
) -> None:
    """In order, a reading is judged against the newest one known; one that comes late
    (older than the newest) against the stored readings on both sides of it."""
    app = await start_app(db_url)
    points: list[RawChargePoint] = []
    try:
        points = await chargers(app, 1)
        cp = points[0]
        for second, wh in ((0, 1000), (60, 1100), (30, 1200), (120, 1150)):
            assert (await cp.call("MeterValues", meter_values(second, wh)))[0] == 3
        repo = Repository(app.repository.sessionmaker)
        async with repo.sessionmaker() as s:
            flags = dict(
                (
                    await s.execute(
                        select(m.MeterSample.value, m.MeterSample.flag).where(
                            m.MeterSample.measurand == "Energy.Active.Import.Register"
                        )
                    )
                ).all()
            )
            count = (await s.execute(select(func.count()).select_from(m.MeterSample))).scalar_one()
        # 1200 at :30 is above the later 1100 at :60; 1150 at 2:00 is fine against 1100.
        assert flags == {1000.0: None, 1100.0: None, 1200.0: BACKWARDS, 1150.0: None}
        assert count == 4 * SAMPLES_PER_MESSAGE
    finally:
        for cp in points:
            await cp.close()
        await app.stop()


async def test_reads_of_the_whole_fleet_do_not_wait_for_a_commit(db_url: str) -> None:
    """The controller's and the local list sync's reads of every station do not take the
    writers' turn: they go on while a batch sits at its commit (they held that turn for
    tens of milliseconds every second at 5,000 chargers, and every commit waited)."""
    app = await start_app(db_url)
    points: list[RawChargePoint] = []
    try:
        points = await chargers(app, 2)
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold(items: Sequence[MeterBatchItem]) -> None:
            held.set()
            await release.wait()

        app.meter_writer.before_commit = hold
        meter = asyncio.create_task(points[0].call("MeterValues", meter_values(1, 1000)))
        await held.wait()
        repo = app.repository
        reads = asyncio.gather(
            repo.list_charge_points(),
            repo.controller_inputs(),
            repo.connectors_by_charge_point(),
            repo.open_sessions(),
            repo.charge_point_sites(),
        )
        done, _ = await asyncio.wait([reads], timeout=10)
        assert done, "the reads waited for the held commit"
        stations, inputs, _, sessions, sites = reads.result()
        assert [s.id for s in stations] == ["CP0", "CP1"] and sessions == []
        assert sites == {"CP0": 1, "CP1": 1} and inputs[0] is not None
        assert not meter.done()  # still held at its commit
        release.set()
        assert (await meter)[0] == 3
    finally:
        release.set()
        for cp in points:
            await cp.close()
        await app.stop()


async def test_a_heartbeat_is_answered_without_waiting_for_a_commit(db_url: str) -> None:
    """Its last_seen_at goes with the next commit; the answer does not wait for it (it
    acknowledges no data). A MeterValues still waits for its commit."""
    app = await start_app(db_url)
    points: list[RawChargePoint] = []
    try:
        points = await chargers(app, 2)
        before = await app.repository.get_charge_point("CP1")
        assert before is not None
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold(items: Sequence[MeterBatchItem]) -> None:
            held.set()
            await release.wait()

        app.meter_writer.before_commit = hold
        meter = asyncio.create_task(points[0].call("MeterValues", meter_values(1, 1000)))
        await held.wait()
        beat = await points[1].call("Heartbeat", {})  # while the commit is held
        assert beat[0] == 3 and "currentTime" in beat[2]
        assert not meter.done()
        app.meter_writer.before_commit = None
        release.set()
        assert (await meter)[0] == 3

        async def seen() -> bool:
            after = await app.repository.get_charge_point("CP1")
            return after is not None and after.last_seen_at != before.last_seen_at

        for _ in range(200):
            if await seen():
                break
            await asyncio.sleep(0.02)
        assert await seen(), "last_seen_at not stored with a later commit"
    finally:
        release.set()
        for cp in points:
            await cp.close()
        await app.stop()
