"""Exactly once (issue 10, item 3): a transaction message a charger resends after a
reconnect (same content, new message id, new connection) is stored once; an energy
register reading that cannot be true is stored flagged and counts for nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from csms.app import CsmsApp
from csms.meter import BACKWARDS, JUMP, RegisterReading, register_flag, station_max_power_w
from csms.store import migrate, queries
from csms.store import models as m
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.conftest import T0, start_app, ws_url
from tests.ocpp_client import RawChargePoint
from tests.test_postgres import pg_url

__all__ = ["pg_url"]  # a fixture

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
START = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-01-05T16:00:00Z"}


def meter_values(tx: int | None, at: str, energy_wh: float, amps: float = 16.0) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": at,
                "sampledValue": [
                    {"value": f"{energy_wh:.0f}", "unit": "Wh"},
                    *(
                        {"value": f"{amps:g}", "measurand": "Current.Import", "phase": p}
                        for p in ("L1", "L2", "L3")
                    ),
                    {"value": "55", "measurand": "SoC", "location": "EV"},
                ],
            }
        ],
    }
    if tx is not None:
        payload["transactionId"] = tx
    return payload


class Charger:
    """One charge point that reconnects: every `connect()` is a new connection."""

    def __init__(self, app: CsmsApp, cp_id: str = "CP1") -> None:
        self.app, self.cp_id = app, cp_id
        self.cp: RawChargePoint | None = None
        self.n = 0

    async def connect(self) -> RawChargePoint:
        if self.cp is not None:
            await self.cp.close()
        self.cp = await RawChargePoint.connect(ws_url(self.app, self.cp_id))
        return self.cp

    async def resend(self, action: str, payload: dict[str, Any]) -> list[Any]:
        """Send on a fresh connection with a fresh message id; the whole answer frame."""
        cp = await self.connect()
        self.n += 1
        return await cp.call(action, payload, message_id=f"{self.cp_id}-{action}-{self.n}")

    async def close(self) -> None:
        if self.cp is not None:
            await self.cp.close()


async def count(repo: Repository, model: type[m.Base], *where: Any) -> int:
    async with repo.sessionmaker() as s:
        return int(
            (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()
        )


@pytest.fixture
async def charger(app: CsmsApp, repo: Repository) -> Any:
    await repo.add_charge_point("CP1", max_current_a=16, phases=3)
    await repo.add_id_tag("TAG1")
    charger = Charger(app)
    cp = await charger.connect()
    await cp.ok("BootNotification", BOOT)
    try:
        yield charger
    finally:
        await charger.close()


async def test_transaction_messages_resent_on_new_connections_are_stored_once(
    charger: Charger, repo: Repository
) -> None:
    starts = [await charger.resend("StartTransaction", START) for _ in range(3)]
    assert all(f[0] == 3 for f in starts)
    tx = starts[0][2]["transactionId"]
    assert {f[2]["transactionId"] for f in starts} == {tx}

    for _ in range(3):
        frame = await charger.resend(
            "MeterValues", meter_values(tx, "2026-01-05T16:10:00Z", 1000 + 1800)
        )
        assert frame == [3, frame[1], {}]
    assert await count(repo, m.MeterSample) == 5  # register, 3 currents, SoC: once

    stop = {
        "transactionId": tx,
        "meterStop": 9000,
        "timestamp": "2026-01-05T17:00:00Z",
        "idTag": "TAG1",
        "reason": "EVDisconnected",
        "transactionData": [
            {"timestamp": "2026-01-05T16:10:00Z", "sampledValue": [{"value": "2800"}]},
            {"timestamp": "2026-01-05T17:00:00Z", "sampledValue": [{"value": "9000"}]},
        ],
    }
    stops = [await charger.resend("StopTransaction", stop) for _ in range(3)]
    assert [f[0] for f in stops] == [3, 3, 3]
    assert stops[0][2] == stops[1][2] == stops[2][2] == {"idTagInfo": {"status": "Accepted"}}
    # The 16:10 register in transactionData is the one MeterValues brought: kept once.
    assert await count(repo, m.MeterSample) == 6
    row = await repo.get_transaction(tx)
    assert row is not None and (row["meter_stop_wh"], row["flags"]) == (9000, None)
    [export] = await repo.sessions_for_export()
    assert export["energy_wh"] == 8000


async def test_a_different_second_stop_keeps_the_first(charger: Charger, repo: Repository) -> None:
    tx = (await charger.resend("StartTransaction", START))[2]["transactionId"]
    first = {"transactionId": tx, "meterStop": 5000, "timestamp": "2026-01-05T17:00:00Z"}
    assert (await charger.resend("StopTransaction", first))[0] == 3
    other = first | {"meterStop": 7000, "timestamp": "2026-01-05T18:00:00Z"}
    assert (await charger.resend("StopTransaction", other))[0] == 3
    row = await repo.get_transaction(tx)
    assert row is not None
    assert (row["meter_stop_wh"], row["flags"]) == (5000, "conflicting_stop")


async def test_the_real_stop_of_a_superseded_transaction_is_taken_once(
    charger: Charger, repo: Repository
) -> None:
    """A start on a connector closes the transaction whose stop was lost; the late stop is
    still recorded, and its resend is not."""
    tx1 = (await charger.resend("StartTransaction", START))[2]["transactionId"]
    second = START | {"meterStart": 4000, "timestamp": "2026-01-05T18:00:00Z"}
    await charger.resend("StartTransaction", second)
    late = {"transactionId": tx1, "meterStop": 3500, "timestamp": "2026-01-05T17:00:00Z"}
    for _ in range(2):
        assert (await charger.resend("StopTransaction", late))[0] == 3
    row = await repo.get_transaction(tx1)
    assert row is not None and row["meter_stop_wh"] == 3500
    assert row["flags"] is not None and row["flags"].endswith(",late_stop")


async def test_orphan_stop_resent_is_recorded_once(charger: Charger, repo: Repository) -> None:
    orphan = {
        "transactionId": -1,
        "meterStop": 700,
        "timestamp": "2026-01-05T17:00:00Z",
        "transactionData": [
            {"timestamp": "2026-01-05T17:00:00Z", "sampledValue": [{"value": "700"}]}
        ],
    }
    for _ in range(3):
        assert (await charger.resend("StopTransaction", orphan))[0] == 3
    assert await count(repo, m.OrphanStop) == 1
    assert await count(repo, m.MeterSample) == 1


async def test_samples_without_a_transaction_are_unique_per_connector(
    charger: Charger, repo: Repository
) -> None:
    for connector in (1, 1, 2):
        payload = meter_values(None, "2026-01-05T16:05:00Z", 500) | {"connectorId": connector}
        assert (await charger.resend("MeterValues", payload))[0] == 3
    assert await count(repo, m.MeterSample) == 10
    assert await count(repo, m.MeterSample, m.MeterSample.connector_id == 2) == 5


# --------------------------------------------------------- implausible registers
@pytest.mark.parametrize(
    ("before", "value", "after", "flag"),
    [
        # 16 A x 3 phases x 230 V = 11.04 kW: 184 Wh a minute, 230 with the margin, +100.
        ((0, 1000), (60, 1000), None, None),
        ((0, 1000), (60, 1184), None, None),
        ((0, 1000), (60, 1330), None, None),
        ((0, 1000), (60, 1331), None, JUMP),
        ((0, 1000), (60, 999), None, BACKWARDS),
        ((0, 1000), (0, 1100), None, None),  # same second: only the slack
        ((0, 1000), (0, 1101), None, JUMP),
        (None, (60, 5000), (120, 4000), BACKWARDS),  # above a later reading
        (None, (60, 1000), (120, 5000), JUMP),  # the later one could not follow
        ((0, 1000), (60, 1100), (120, 1200), None),
        (None, (60, 1e12), None, None),  # nothing to judge against
    ],
)
def test_register_flag_table(
    before: tuple[int, float] | None,
    value: tuple[int, float],
    after: tuple[int, float] | None,
    flag: str | None,
) -> None:
    def reading(pair: tuple[int, float] | None) -> RegisterReading | None:
        return None if pair is None else RegisterReading(T0 + timedelta(seconds=pair[0]), pair[1])

    here = reading(value)
    assert here is not None
    assert (
        register_flag(
            here,
            before=reading(before),
            after=reading(after),
            max_power_w=station_max_power_w(16, 3),
        )
        == flag
    )


async def test_implausible_registers_are_acknowledged_flagged_and_left_out_of_totals(
    charger: Charger, repo: Repository
) -> None:
    tx = (await charger.resend("StartTransaction", START))[2]["transactionId"]
    readings = [
        ("2026-01-05T16:10:00Z", 2800),  # 1.8 kWh in 10 min: fine at 11 kW
        ("2026-01-05T16:20:00Z", 2000),  # backwards
        ("2026-01-05T16:30:00Z", 900_000),  # a jump no 16 A charger makes
        ("2026-01-05T16:40:00Z", 6400),  # fine again (against 16:10)
    ]
    for at, wh in readings:
        frame = await charger.resend("MeterValues", meter_values(tx, at, wh))
        assert frame[0] == 3, frame  # the charger always gets its answer
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
    assert flags == {2800: None, 2000: BACKWARDS, 900_000: JUMP, 6400: None}
    energy, _soc = await repo.latest_readings([tx])
    assert energy == {tx: 6400.0}
    sm = repo.sessionmaker
    sessions = await queries.sessions(sm, open_only=True)
    assert sessions["energy_wh"].tolist() == [5400.0]
    buckets = await queries.energy_buckets(sm, T0, T0 + timedelta(hours=1), 3600)
    assert buckets["energy_wh"].sum() == pytest.approx(5400.0)
    readings_now = await queries.session_readings(sm, tx)
    assert readings_now.register_wh == 6400.0


# ------------------------------------------------------------------ PostgreSQL
async def test_resent_meter_values_are_stored_once_on_postgres(pg_url: str) -> None:
    app = await start_app(pg_url)
    try:
        await app.repository.add_charge_point("PGX", max_current_a=16, phases=3)
        await app.repository.add_id_tag("TAG1")
        charger = Charger(app, "PGX")
        await (await charger.connect()).ok("BootNotification", BOOT)
        tx = (await charger.resend("StartTransaction", START | {"idTag": "TAG1"}))[2][
            "transactionId"
        ]
        for _ in range(3):
            await charger.resend("MeterValues", meter_values(tx, "2026-01-05T16:10:00Z", 2800))
        await charger.resend("MeterValues", meter_values(tx, "2026-01-05T16:20:00Z", 100))
        await charger.close()
        samples = m.MeterSample.transaction_id == tx
        assert await count(app.repository, m.MeterSample, samples) == 10
        assert (
            await count(app.repository, m.MeterSample, samples, m.MeterSample.flag == BACKWARDS)
            == 1
        )
    finally:
        await app.stop()


# ------------------------------------------------------------------- migration
def _previous_revision() -> str:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    revision = script.get_revision("0005")
    assert revision is not None and isinstance(revision.down_revision, str)
    return revision.down_revision


async def test_0005_carries_stations_and_samples_over(db_url: str) -> None:
    """Passwordless stations: the ones a manager registered stay open (now explicitly,
    profile 0), auto-registered ones are refused until given a password; duplicate
    samples go, the oldest of each stays."""
    engine = create_engine(db_url)
    at = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
    try:
        await migrate.upgrade(engine, _previous_revision())
        async with engine.begin() as conn:
            for cp_id, password, auto in (
                ("MANUAL", None, False),
                ("AUTO", None, True),
                ("KEYED", "scrypt$hash", False),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO charge_points (id, password_hash, max_current_a, phases, "
                        "wiring, min_current_a, only_stack_level_0, rate_unit, auto_registered,"
                        " connected, unmanaged, created_at) VALUES (:id, :pw, 16, 3, 'L1L2L3',"
                        " 6, :false, 'A', :auto, :false, :false, :at)"
                    ),
                    {"id": cp_id, "pw": password, "auto": auto, "false": False, "at": at},
                )
            for sample_id, phase, value in (
                (1, None, "100"),
                (2, None, "100"),  # a resend stored twice before 0005
                (3, "L1", "16"),
                (4, "L2", "16"),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO meter_samples (id, charge_point_id, connector_id, "
                        "transaction_id, timestamp, measurand, phase, raw_value, value, "
                        "received_at) VALUES (:id, 'MANUAL', 1, NULL, :at, :measurand, "
                        ":phase, :value, :value, :at)"
                    ),
                    {
                        "id": sample_id,
                        "at": at,
                        "phase": phase,
                        "value": value,
                        "measurand": "Current.Import" if phase else "Energy.Active.Import.Register",
                    },
                )
        await migrate.upgrade(engine)
        repo = Repository(create_sessionmaker(engine))
        profiles = {s.id: s.security_profile for s in await repo.list_charge_points()}
        assert profiles == {"MANUAL": 0, "AUTO": 1, "KEYED": 1}
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT id, sample_key, flag FROM meter_samples ORDER BY id")
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            (1, "|Energy.Active.Import.Register||", None),
            (3, "|Current.Import|L1|", None),
            (4, "|Current.Import|L2|", None),
        ]

        cfg = migrate.alembic_config(db_url)
        async with engine.begin() as conn:

            def _down(sync: object) -> None:
                cfg.attributes["connection"] = sync
                command.downgrade(cfg, _previous_revision())

            await conn.run_sync(_down)
        assert await migrate.current_revision(engine) == _previous_revision()
        await migrate.upgrade(engine)
        assert await count(repo, m.MeterSample) == 3
    finally:
        await engine.dispose()
