"""Reconnect storm (issue 10, item 5): a fleet of virtual chargers, charging under the real
controller, loses its link at once (a TCP relay resets every connection), queues its
transaction messages, reconnects with jitter and replays them. Every queued message is
answered in order and stored once, the fuse holds on the profiles the chargers really
hold, and a charger connected directly keeps being answered meanwhile.

`scripts/bench_storm.py` runs the same with 500 chargers and prints the figures.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from csms.app import CsmsApp
from csms.controller.service import Controller
from csms.ev import CATALOGUE
from csms.events import EventBus
from csms.profiles import profile_from_ocpp
from csms.scenario import parse_scenario
from csms.store import models as m
from tests.conftest import fixed_clock, start_app
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions
from virtual_chargers.link import LinkCutter
from virtual_chargers.options import StationOptions
from virtual_chargers.queue import MessageQueue
from virtual_chargers.simulation import Car, plug_in, start_transaction
from virtual_chargers.storm import (
    Ledger,
    SampleKey,
    StormPlan,
    run_storm,
    storm_garage,
    storm_visits,
)

N = 30
SPEED = 5.0
PASSWORD = "storm-test-key-0123456789"
T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
TIME_FACTOR = float(os.environ.get("GARAGEGRID_TEST_TIME_FACTOR", "1"))


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.utcoffset() is None else at.astimezone(UTC)


async def stored_samples(app: CsmsApp) -> list[tuple[SampleKey, str | None, int]]:
    async with app.repository.sessionmaker() as s:
        rows = (
            await s.execute(
                select(
                    m.MeterSample.charge_point_id,
                    m.MeterSample.timestamp,
                    m.MeterSample.connector_id,
                    m.MeterSample.sample_key,
                    m.MeterSample.context,
                    m.MeterSample.id,
                ).order_by(m.MeterSample.id)
            )
        ).all()
    return [((r[0], _utc(r[1]), r[2], str(r[3])), r[4], r[5]) for r in rows]


async def test_reconnect_storm_loses_nothing_stores_nothing_twice_and_keeps_the_fuse(
    db_url: str,
) -> None:
    garage = storm_garage(N, seed=3, start=T0)
    probe_id = garage.stations[0].id
    leaving, arrivals = storm_visits(garage, 0.2, seed=3, skip=[probe_id])
    app = await start_app(db_url, controller=True, speed=SPEED, clock_start=T0)
    link = LinkCutter("127.0.0.1", app.port)
    ledger = Ledger()
    fleet_task: asyncio.Task[Any] | None = None
    try:
        repo = app.repository
        await repo.update_site(fuse_limit_a=garage.site.fuse_limit_a, margin_a=garage.site.margin_a)
        for station in garage.stations:
            await repo.add_charge_point(
                station.id,
                max_current_a=station.max_current_a,
                phases=station.phases,
                wiring="".join(station.wiring),
                password=PASSWORD,
            )
        for tag in [s.id_tag for s in garage.sessions] + [tag for _, tag in arrivals.values()]:
            await repo.add_id_tag(tag)
        await link.start()
        fleet = Fleet(
            garage,
            f"ws://127.0.0.1:{link.port}/ocpp",
            FleetClock(SPEED, T0),
            FleetOptions(
                station=StationOptions(
                    password=PASSWORD,
                    config={
                        "MeterValueSampleInterval": "5",
                        # A car that plugs in while the link is down may start (spec 3.5).
                        "AllowOfflineTxForUnknownId": "true",
                    },
                    # 1 real s, doubling up to 2 real s (x 0.5-1 jitter): all are back
                    # within ~2 s of the link's return.
                    reconnect_initial_s=1.0 * SPEED,
                    reconnect_max_s=2.0 * SPEED,
                    unplug_delay_s=1.0,
                    on_delivered=ledger,
                ),
                boot_wait_real_s=60 * TIME_FACTOR,
                shutdown_flush_real_s=20 * TIME_FACTOR,
            ),
        )
        probe = fleet.stations[probe_id]
        probe.uplink.url = f"ws://127.0.0.1:{app.port}/ocpp/{probe_id}"
        fleet_task = asyncio.create_task(fleet.run())
        report = await run_storm(
            fleet,
            link,
            StormPlan(
                outage_s=3.0,
                departures=leaving,
                arrivals=arrivals,
                ready_timeout_s=60 * TIME_FACTOR,
                recover_timeout_s=60 * TIME_FACTOR,
            ),
            probe=probe_id,
        )
        connected_during = len(app.central.connected_ids())
        fleet.stop()
        fleet_report = await asyncio.wait_for(fleet_task, 60 * TIME_FACTOR)
        fleet_task = None
        stored = await stored_samples(app)
        transactions = await repo.sessions_for_export()
        open_sessions = await repo.open_sessions()
    finally:
        if fleet_task is not None:
            fleet_task.cancel()
            await asyncio.gather(fleet_task, return_exceptions=True)
        await link.close()
        await app.stop()

    # The storm happened: every relayed connection was reset, messages were queued.
    assert report.cut_connections == N - 1
    assert report.recovered and connected_during == N
    assert report.queued >= N - 1  # at least one MeterValues per charger, plus stops
    assert report.replayed == report.queued
    assert report.out_of_order == 0 and report.dropped == 0
    assert fleet_report.call_errors == 0
    assert sum(len(s.queue) for s in fleet.stations.values()) == 0

    # The fuse held: on the profiles the chargers held offline (each running car on the
    # phases it uses, a next car on every phase at its start limits), and in what cars drew.
    assert max(report.worst_case_a) <= garage.site.fuse_limit_a + 1e-6, report.worst_case_a
    assert min(report.worst_case_a) > 0
    assert max(fleet_report.peak_supply_a) <= garage.site.fuse_limit_a + 1e-6

    # The directly connected charger was answered all through, never timed out.
    assert len(report.probe_round_trips_s) >= 3
    assert fleet.stations[probe_id].stats.timeouts == 0

    # Every sample a charger was answered for is stored; none twice, even apart from the
    # transaction it was attributed to; the meter samples arrived in the order taken.
    answered = ledger.samples()
    stored_keys = Counter(key for key, _, _ in stored)
    assert set(answered) <= set(stored_keys), set(answered) - set(stored_keys)
    assert max(stored_keys.values()) == 1
    without_tx = Counter((cp, at, conn, key.split("|", 1)[1]) for cp, at, conn, key in stored_keys)
    assert max(without_tx.values()) == 1
    periodic: dict[str, list[datetime]] = {}
    for (cp, at, _, key), context, _ in stored:
        if context == "Sample.Periodic" and key.split("|")[1] == "Energy.Active.Import.Register":
            periodic.setdefault(cp, []).append(at)
    assert periodic.keys() == {s.id for s in garage.stations}
    for times in periodic.values():
        assert times == sorted(times) and len(set(times)) == len(times)

    # Transactions: one row per visit, all closed, energy as the chargers metered it.
    records = {
        r.record.transaction_id: r.record for r in fleet_report.sessions if r.record.started_at
    }
    assert len(transactions) == len(records) == N + len(arrivals)
    assert open_sessions == []
    for row in transactions:
        record = records[row["transaction_id"]]
        assert row["meter_start_wh"] == record.meter_start_wh
        assert row["meter_stop_wh"] == record.meter_stop_wh
    offline_started = {r["charge_point_id"] for r in transactions if r["id_tag"].startswith("NEW")}
    assert offline_started == set(arrivals)


async def test_link_cutter_resets_connections_and_refuses_while_down() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    link = LinkCutter("127.0.0.1", server.sockets[0].getsockname()[1])
    await link.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        assert link.open_connections == 1
        assert link.cut() == 1
        assert await reader.read(100) == b""  # reset: the other side is gone
        writer.close()

        r2, w2 = await asyncio.open_connection("127.0.0.1", link.port)
        assert await r2.read(100) == b""  # while down: accepted and reset at once
        w2.close()
        assert link.refused == 1

        link.restore()
        r3, w3 = await asyncio.open_connection("127.0.0.1", link.port)
        w3.write(b"back")
        assert await r3.readexactly(4) == b"back"
        w3.close()
    finally:
        await link.close()
        server.close()
        await server.wait_closed()
    assert link.open_connections == 0


def _profile(purpose: str, limit_a: float, transaction_id: int | None = None) -> Any:
    body: dict[str, Any] = {
        "chargingProfileId": 2 if purpose == "TxDefaultProfile" else 3,
        "stackLevel": 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_a}],
        },
    }
    if transaction_id is not None:
        body["transactionId"] = transaction_id
    return profile_from_ocpp(body)


def test_worst_case_counts_a_running_car_on_its_phases_and_the_next_car_on_all() -> None:
    """A one-phase car on a three-phase station under a 16 A TxProfile, 6 A default: the
    fuse model says 16 A on every phase; the car can load only its one, the next car 6 A."""
    garage = parse_scenario(
        {
            "name": "one",
            "site": {"fuse_limit_a": 63, "phases": 3, "voltage_v": 230},
            "stations": [{"id": "CPX", "max_current_a": 32, "phases": 3, "wiring": "L2L3L1"}],
            "sessions": [],
        },
        source="test",
    )
    fleet = Fleet(garage, "ws://127.0.0.1:9/ocpp", FleetClock(1.0, T0))
    charging = fleet.stations["CPX"].charging
    idle = fleet.installed_worst_case_a(T0, car_phases=True)
    assert idle == fleet.installed_worst_case_a(T0) == (32.0, 32.0, 32.0)  # no profile

    one_phase = next(k for k, ev in CATALOGUE.items() if ev.phases == 1)
    charging.update(T0, lambda s: plug_in(s, Car(CATALOGUE[one_phase], 0.2, 0.8)))
    charging.update(T0, start_transaction)
    charging.transaction_id, charging.transaction_start = 7, T0
    store = charging.profiles.install(0, _profile("TxDefaultProfile", 6.0))
    charging.set_profiles(T0, store.install(1, _profile("TxProfile", 16.0, 7), transaction_id=7))

    assert fleet.installed_worst_case_a(T0) == (16.0, 16.0, 16.0)
    # The car draws from L2, the first phase of the wiring.
    assert fleet.installed_worst_case_a(T0, car_phases=True) == (6.0, 16.0, 6.0)


class _CountingRepository:
    """Only what `Controller._save_mirror` touches: counts the writes, yields on each."""

    def __init__(self) -> None:
        self.writes: Counter[str] = Counter()

    async def save_installed_profiles_many(self, profiles: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        self.writes.update(profiles.keys())


class _Central:
    def add_call_observer(self, observer: Any) -> None:
        pass


async def test_a_storm_of_preparations_writes_each_chargers_profiles_once() -> None:
    """Found by scripts/bench_storm.py: every booting charger's preparation ends in
    `_save_mirror`, and 500 of them at once each wrote every charger still marked
    (quadratic; 285 of 500 chargers stayed Pending for over ten minutes)."""
    repo = _CountingRepository()
    controller = Controller(repo, _Central(), EventBus(), fixed_clock())  # type: ignore[arg-type]
    ids = [f"CP{i:03d}" for i in range(200)]
    for cp_id in ids:
        controller._mirror.charger_booted(cp_id, vendor="V", model="M", serial_number=None)
        controller._mirror_dirty.add(cp_id)
    await asyncio.gather(*(controller._save_mirror() for _ in ids))
    assert repo.writes == Counter(dict.fromkeys(ids, 1))

    # A change while a save awaits the store is saved by the next one, not lost.
    controller._mirror_dirty.add("CP000")
    saving = asyncio.create_task(controller._save_mirror())
    await asyncio.sleep(0)
    controller._mirror_dirty.add("CP000")
    await saving
    await controller._save_mirror()
    assert repo.writes["CP000"] == 3


def test_a_queued_message_keeps_its_offline_mark_and_sends_across_a_reboot() -> None:
    queue = MessageQueue(new_message_id=lambda: "m1")
    local = queue.new_transaction()
    message = queue.enqueue("MeterValues", {"connectorId": 1}, tx_local_id=local, offline=True)
    message.sends = 2
    queue.enqueue("StatusNotification", {}, persistent=False)
    restored = MessageQueue.from_dict(queue.to_dict())
    [kept] = list(restored)
    assert (kept.message_id, kept.queued_offline, kept.sends) == ("m1", True, 2)
    assert not queue.enqueue("Heartbeat", {}).queued_offline
