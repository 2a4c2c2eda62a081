"""Durability rules for transactions: idempotent start, orphan stop, restart mid-session."""

from __future__ import annotations

from sqlalchemy import select

from csms.app import CsmsApp
from csms.store import models as m
from csms.store.repository import Repository
from tests.conftest import T0, start_app, ws_url
from tests.ocpp_client import RawChargePoint

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
START = {"connectorId": 1, "idTag": "TAG1", "meterStart": 100, "timestamp": "2026-01-05T16:00:00Z"}


async def _booted(app: CsmsApp, repo: Repository, cp_id: str = "CP1") -> RawChargePoint:
    if await repo.get_charge_point(cp_id) is None:
        await repo.add_charge_point(cp_id)
    cp = await RawChargePoint.connect(ws_url(app, cp_id))
    await cp.ok("BootNotification", BOOT)
    return cp


async def test_resent_start_returns_the_same_transaction(app: CsmsApp, repo: Repository) -> None:
    await repo.add_id_tag("TAG1")
    cp = await _booted(app, repo)
    first = await cp.ok("StartTransaction", START, message_id="start-1")
    same_id = await cp.ok("StartTransaction", START, message_id="start-1")
    new_id = await cp.ok("StartTransaction", START, message_id="start-2")
    await cp.close()
    assert first["transactionId"] == same_id["transactionId"] == new_id["transactionId"]
    assert len(await repo.sessions_for_export()) == 1


async def test_transaction_ids_are_positive_and_increase(app: CsmsApp, repo: Repository) -> None:
    await repo.add_id_tag("TAG1")
    cp = await _booted(app, repo)
    ids = []
    for n in range(3):
        start = START | {"meterStart": 100 * n, "timestamp": f"2026-01-05T1{n}:00:00Z"}
        tx = (await cp.ok("StartTransaction", start))["transactionId"]
        await cp.ok(
            "StopTransaction",
            {
                "transactionId": tx,
                "meterStop": 100 * n + 50,
                "timestamp": f"2026-01-05T1{n}:30:00Z",
            },
        )
        ids.append(tx)
    await cp.close()
    assert ids == sorted(ids) and ids[0] > 0 and len(set(ids)) == 3


async def test_unknown_tags_and_blocked_tags_are_answered_from_the_table(
    app: CsmsApp, repo: Repository
) -> None:
    await repo.add_id_tag("GOOD", owner="Apt 1")
    await repo.add_id_tag("BLOCKED")
    await repo.set_id_tag_blocked("BLOCKED")
    from datetime import timedelta

    await repo.add_id_tag("OLD", expires_at=T0 - timedelta(days=1))
    await repo.add_id_tag("CHILD", parent="GOOD")
    cp = await _booted(app, repo)
    statuses = {
        tag: (await cp.ok("Authorize", {"idTag": tag}))["idTagInfo"]
        for tag in ("GOOD", "BLOCKED", "OLD", "NOBODY", "CHILD")
    }
    await cp.close()
    assert {t: i["status"] for t, i in statuses.items()} == {
        "GOOD": "Accepted",
        "BLOCKED": "Blocked",
        "OLD": "Expired",
        "NOBODY": "Invalid",
        "CHILD": "Accepted",
    }
    assert statuses["CHILD"]["parentIdTag"] == "GOOD"


async def test_start_with_unknown_tag_is_recorded_and_answered_invalid(
    app: CsmsApp, repo: Repository
) -> None:
    cp = await _booted(app, repo)
    answer = await cp.ok("StartTransaction", START | {"idTag": "STRANGER"})
    await cp.close()
    assert answer["idTagInfo"]["status"] == "Invalid"
    assert answer["transactionId"] > 0
    assert len(await repo.sessions_for_export()) == 1


async def test_stop_of_unknown_transaction_is_acknowledged_as_orphan(
    app: CsmsApp, repo: Repository
) -> None:
    cp = await _booted(app, repo)
    for tx in (-1, 987654):
        frame = await cp.call(
            "StopTransaction",
            {
                "transactionId": tx,
                "meterStop": 5000,
                "timestamp": "2026-01-05T18:00:00Z",
                "transactionData": [
                    {"timestamp": "2026-01-05T18:00:00Z", "sampledValue": [{"value": "5000"}]}
                ],
            },
        )
        assert frame[0] == 3, frame
    await cp.close()
    async with repo._sessionmaker() as s:
        orphans = (await s.execute(select(m.OrphanStop))).scalars().all()
    assert sorted(o.reported_transaction_id for o in orphans) == [-1, 987654]
    assert all(o.meter_stop_wh == 5000 and o.transaction_data for o in orphans)


async def test_transaction_of_another_charge_point_is_an_orphan_here(
    app: CsmsApp, repo: Repository
) -> None:
    await repo.add_id_tag("TAG1")
    cp1 = await _booted(app, repo, "CP1")
    tx = (await cp1.ok("StartTransaction", START))["transactionId"]
    cp2 = await _booted(app, repo, "CP2")
    await cp2.ok(
        "StopTransaction",
        {"transactionId": tx, "meterStop": 1, "timestamp": "2026-01-05T17:00:00Z"},
    )
    await cp1.close()
    await cp2.close()
    row = await repo.get_transaction(tx)
    assert row is not None and row["stopped_at"] is None


async def test_csms_restart_mid_session_keeps_the_transaction(db_url: str) -> None:
    app = await start_app(db_url)
    await app.repository.add_charge_point("CP1")
    await app.repository.add_id_tag("TAG1")
    cp = await RawChargePoint.connect(ws_url(app, "CP1"))
    await cp.ok("BootNotification", BOOT)
    tx = (await cp.ok("StartTransaction", START))["transactionId"]
    await app.stop()
    await cp.close()

    app = await start_app(db_url)
    try:
        # The charger reconnects without rebooting: it was accepted before, so its
        # transaction messages are taken at once.
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        await cp.ok(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [
                    {"timestamp": "2026-01-05T16:30:00Z", "sampledValue": [{"value": "900"}]}
                ],
            },
        )
        await cp.ok(
            "StopTransaction",
            {"transactionId": tx, "meterStop": 1500, "timestamp": "2026-01-05T17:00:00Z"},
        )
        await cp.close()
        row = await app.repository.get_transaction(tx)
        assert row is not None and row["meter_stop_wh"] == 1500
        async with app.repository._sessionmaker() as s:
            samples = (await s.execute(select(m.MeterSample))).scalars().all()
        assert [(x.transaction_id, x.value) for x in samples] == [(tx, 900.0)]
    finally:
        await app.stop()


async def test_meter_values_in_kwh_are_normalised_to_wh(app: CsmsApp, repo: Repository) -> None:
    cp = await _booted(app, repo)
    await cp.ok(
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": "2026-01-05T16:30:00Z",
                    "sampledValue": [
                        {"value": "12.5", "unit": "kWh"},
                        {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                    ],
                }
            ],
        },
    )
    await cp.close()
    async with repo._sessionmaker() as s:
        samples = (
            (await s.execute(select(m.MeterSample).order_by(m.MeterSample.id))).scalars().all()
        )
    assert [(x.value, x.norm_unit, x.raw_value, x.unit) for x in samples] == [
        (12500.0, "Wh", "12.5", "kWh"),
        (7400.0, "W", "7.4", "kW"),
    ]


async def test_locked_database_gets_an_error_and_loses_nothing(db_url: str) -> None:
    """While another process holds the write lock, a start is refused (the charger resends);
    once the lock is gone, the resend is stored exactly once."""
    import sqlite3

    app = await start_app(db_url, sqlite_busy_timeout_ms=200)
    try:
        await app.repository.add_charge_point("CP1")
        await app.repository.add_id_tag("TAG1")
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        await cp.ok("BootNotification", BOOT)
        blocker = sqlite3.connect(db_url.removeprefix("sqlite+aiosqlite:///"))
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            frame = await cp.call("StartTransaction", START, message_id="s1")
            assert frame[0] == 4 and frame[2] == "InternalError"
        finally:
            blocker.rollback()
            blocker.close()
        answer = await cp.ok("StartTransaction", START, message_id="s1")
        assert answer["transactionId"] > 0
        await cp.close()
        assert len(await app.repository.sessions_for_export()) == 1
    finally:
        await app.stop()
