"""Two instances in one test process on one PostgreSQL 15 database (issue 12 item 4): a
charger connected to the instance that does not lead its site is prepared, accepted and
driven by the leader through the other instance (LISTEN/NOTIFY), an outbox command
reaches it whichever instance claims it, a manager's override sent through the holding
instance is known to the leader, and when the leader stops the other takes the site."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from csms.app import CsmsApp
from csms.cli import main
from csms.cluster import asyncpg_dsn
from csms.profiles import limit_at
from tests.conftest import T0, start_app, wait_for, ws_url
from tests.ocpp_client import RawChargePoint
from tests.test_postgres import new_database
from tests.test_postgres import pg_url as pg_server  # noqa: F401  (the module's server)

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
PASSWORD = "relay-test-key-0123456789"


@pytest.fixture
def url(pg_server: str) -> str:  # noqa: F811
    return new_database(pg_server, "relay")


def _charger(cp: RawChargePoint) -> list[dict[str, Any]]:
    """Accepts every profile, knows no configuration key, does what it is told."""
    profiles: list[dict[str, Any]] = []

    def on_set(payload: dict[str, Any]) -> dict[str, Any]:
        profiles.append(payload["csChargingProfiles"])
        return {"status": "Accepted"}

    cp.handlers["SetChargingProfile"] = on_set
    cp.handlers["ClearChargingProfile"] = lambda payload: {"status": "Accepted"}
    cp.handlers["GetConfiguration"] = lambda payload: {
        "configurationKey": [],
        "unknownKey": list(payload.get("key") or []),
    }
    cp.handlers["Reset"] = lambda payload: {"status": "Accepted"}
    return profiles


async def test_a_charger_on_another_instance_is_prepared_driven_and_reached(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    leader: CsmsApp = await start_app(url, controller=True, speed=30.0)
    leader_stopped = False
    other: CsmsApp | None = None
    cp: RawChargePoint | None = None
    try:
        repo = leader.repository
        await repo.update_site(fuse_limit_a=20.0, margin_a=0.0, tick_s=2)
        await repo.add_charge_point("CP1", max_current_a=16, phases=3, password=PASSWORD)
        await repo.add_id_tag("TAG1")
        other = await start_app(url, controller=True, speed=30.0)
        assert leader.cluster is not None and other.cluster is not None
        assert leader.cluster.leaders == {1: leader.cluster.instance_id}
        assert other.sites is not None and other.sites.controllers == {}
        await other.sites._refresh()  # CP1 was added after it started

        cp = await RawChargePoint.connect(ws_url(other, "CP1"), password=PASSWORD)
        await wait_for(lambda: other.central.is_local("CP1"))
        # What an operator sees: who lives, who leads what, who holds which chargers.
        capsys.readouterr()
        assert (
            await asyncio.to_thread(main, ["cluster", "status", "--json", "--database-url", url])
            == 0
        )
        status = json.loads(capsys.readouterr().out)
        assert {i["instance"]: (i["leads"], i["chargers"]) for i in status["instances"]} == {
            leader.cluster.instance_id: (["default"], 0),
            other.cluster.instance_id: ([], 1),
        }
        assert status["sites_without_leader"] == []
        profiles = _charger(cp)
        # First boot: Pending while the leader (the other instance) installs its defaults.
        first = await cp.ok("BootNotification", BOOT)
        assert first["status"] == "Pending"
        await wait_for(
            lambda: any(p["chargingProfilePurpose"] == "TxDefaultProfile" for p in profiles)
        )
        await cp.boot(BOOT)
        assert other.central.is_local("CP1") and not leader.central.is_local("CP1")
        # The leader learns where CP1 is and that it was Accepted (a NOTIFY away).
        await wait_for(lambda: leader.central.is_accepted("CP1"))
        assert leader.central.is_connected("CP1") and leader.central.connected_ids() == []

        # A car starts: the leader hears of it and sends its TxProfile through `other`.
        tx = (
            await cp.ok(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": "TAG1",
                    "meterStart": 0,
                    "timestamp": "2026-01-05T16:00:00Z",
                },
            )
        )["transactionId"]
        await wait_for(lambda: any(p.get("transactionId") == tx for p in profiles), within_s=15)
        tx_limit = [p for p in profiles if p.get("transactionId") == tx][-1]
        assert tx_limit["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] <= 16

        # A command queued in the store reaches CP1, whichever instance claims it.
        command_id = await repo.enqueue_command("CP1", "Reset", {"type": "Soft"})
        await wait_for(lambda: any(a == "Reset" for a, _ in cp.server_calls))  # type: ignore[union-attr]
        for _ in range(100):
            row = await repo.get_command(command_id)
            if row is not None and row["status"] == "done":
                break
            await asyncio.sleep(0.05)
        assert row is not None and row["status"] == "done"
        assert row["response"] == {"status": "Accepted"}

        # A manager's override through the outbox: the leader's copy of CP1's profiles
        # counts it, whichever instance sent it.
        override = {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 99,
                "transactionId": tx,
                "stackLevel": 5,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7.0}],
                },
            },
        }
        await repo.enqueue_command("CP1", "SetChargingProfile", override)
        assert leader.sites is not None
        mirror = leader.sites.controllers[1]._mirror

        def counted() -> bool:
            store = mirror.store_for("CP1")
            limit = (
                limit_at(store, 1, T0, transaction_id=tx, transaction_start=None) if store else None
            )
            return limit is not None and limit.current_a == 7.0

        await wait_for(counted)
        # The override goes: the leader gives the car its 16 A again.
        await repo.enqueue_command("CP1", "ClearChargingProfile", {"id": 99})

        def ours() -> list[float]:
            return [
                p["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                for p in profiles
                if p.get("transactionId") == tx and p["chargingProfileId"] != 99
            ]

        await wait_for(lambda: not counted() and ours()[-1] == 16)

        # The leader stops: the other instance takes the site and drives CP1 itself.
        before = len(profiles)
        await leader.stop()
        leader_stopped = True
        await wait_for(lambda: other.sites is not None and 1 in other.sites.controllers, 15)
        await other.repository.update_site(fuse_limit_a=12.0)
        await wait_for(
            lambda: any(
                p.get("transactionId") == tx
                and p["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] <= 12
                for p in profiles[before:]
            ),
            within_s=15,
        )
    finally:
        if cp is not None:
            await cp.close()
        if other is not None:
            await other.stop()
        if not leader_stopped:
            await leader.stop()


async def test_csms_site_set_wakes_the_sites_leader_at_once(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL `csms site set` tells the leader over NOTIFY: it plans at once. Here
    the controller's own poll (1 s) and tick are made an hour long, so only the NOTIFY can
    bring the new limit."""
    monkeypatch.setattr("csms.controller.service.POLL_S", 3600.0)
    app: CsmsApp = await start_app(url, controller=True)
    cp: RawChargePoint | None = None
    try:
        await app.repository.update_site(fuse_limit_a=20.0, margin_a=0.0, tick_s=3600)
        await app.repository.add_charge_point("CP1", max_current_a=16, phases=3, password=PASSWORD)
        await app.repository.add_id_tag("TAG1")
        assert app.sites is not None
        await app.sites._refresh()
        cp = await RawChargePoint.connect(ws_url(app, "CP1"), password=PASSWORD)
        profiles = _charger(cp)
        await cp.boot(BOOT)
        start = {
            "connectorId": 1,
            "idTag": "TAG1",
            "meterStart": 0,
            "timestamp": "2026-01-05T16:00:00Z",
        }
        tx = (await cp.ok("StartTransaction", start))["transactionId"]

        def limits() -> list[float]:
            return [
                p["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                for p in profiles
                if p.get("transactionId") == tx
            ]

        await wait_for(lambda: bool(limits()) and limits()[-1] == 16)
        assert (
            await asyncio.to_thread(
                main, ["site", "set", "--fuse-limit-a", "10", "--database-url", url]
            )
            == 0
        )
        await wait_for(lambda: limits()[-1] <= 10, within_s=10)
    finally:
        if cp is not None:
            await cp.close()
        await app.stop()


async def test_an_instance_whose_control_connection_dies_stops_leading_then_leads_again(
    url: str,
) -> None:
    """PostgreSQL ends the control connection (a failover, a network cut,
    pg_terminate_backend): the instance lets its sites go at once (its leases died with
    the connection), opens a new one and takes the site again at the next election."""
    app: CsmsApp = await start_app(url, controller=True)
    try:
        assert app.cluster is not None and app.sites is not None
        assert set(app.sites.controllers) == {1}
        released: list[int] = []
        release = app.sites.release

        async def counting_release(site_id: int) -> None:
            released.append(site_id)
            await release(site_id)

        app.sites.release = counting_release  # type: ignore[method-assign]
        first = app.sites.controllers[1]
        admin = await asyncpg.connect(asyncpg_dsn(app.engine.url))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                "garagegrid/" + app.cluster.instance_id,
            )
        finally:
            await admin.close()
        assert killed == 2  # the control connection and the sender
        await wait_for(lambda: released == [1])
        await wait_for(lambda: 1 in app.sites.controllers and app.sites.controllers[1] is not first)
        assert app.cluster.leaders == {1: app.cluster.instance_id}
    finally:
        await app.stop()


async def test_a_charger_back_at_another_instance_takes_its_calls_from_the_old_connection(
    url: str,
) -> None:
    """CP1's link to one instance goes half-open (a network fault: nothing is read or
    answered, nothing is closed) and CP1 connects again through the balancer to the other
    instance. The newer connection replaces the old one at once, as a second connection
    to one instance does: calls from the first instance go to CP1's new connection (not
    to the dead one, until its ping timeout), and CP1 stays marked connected there."""
    first: CsmsApp = await start_app(url)
    second: CsmsApp | None = None
    old: RawChargePoint | None = None
    new: RawChargePoint | None = None
    try:
        await first.repository.add_charge_point("CP1", max_current_a=16, password=PASSWORD)
        second = await start_app(url)
        assert first.cluster is not None and second.cluster is not None
        old = await RawChargePoint.connect(ws_url(first, "CP1"), password=PASSWORD)
        _charger(old)
        await old.boot(BOOT)
        await wait_for(lambda: second.central.is_accepted("CP1"))  # type: ignore[union-attr]
        transport = old.ws.transport
        transport.pause_reading()  # half-open: the instance's frames are never read

        new = await RawChargePoint.connect(ws_url(second, "CP1"), password=PASSWORD)
        _charger(new)
        await new.boot(BOOT)
        await wait_for(lambda: not first.central.is_local("CP1"), within_s=5)
        assert first.central.is_connected("CP1")  # through the second instance
        answer = await first.central.call("CP1", "GetConfiguration", {"key": ["X"]})
        assert answer == {"configurationKey": [], "unknownKey": ["X"]}
        assert ("GetConfiguration", {"key": ["X"]}) in new.server_calls
        # The old connection's end marks nothing: CP1 is connected, at the second.
        await asyncio.sleep(0.5)
        station = await first.repository.get_charge_point("CP1")
        assert station is not None and station.connected
        admin = await asyncpg.connect(asyncpg_dsn(first.engine.url))
        try:
            row = await admin.fetchrow("SELECT instance_id FROM charge_points WHERE id = 'CP1'")
            replaced = await admin.fetchval(
                "SELECT count(*) FROM connection_events"
                " WHERE charge_point_id = 'CP1' AND event = 'replaced'"
            )
        finally:
            await admin.close()
        assert row["instance_id"] == second.cluster.instance_id
        assert replaced == 1
    finally:
        if old is not None:
            old.ws.transport.resume_reading()
        for cp in (old, new):
            if cp is not None:
                await cp.close()
        for app in (second, first):
            if app is not None:
                await app.stop()
