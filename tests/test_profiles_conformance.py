"""Issue 13 item 5: the conformance findings, CSMS side, over real sockets.

(a) A charger that reconnects as the same unit while the CSMS knows its fail-safe
    profiles are installed is Accepted at once; a first boot, or another unit under the
    same id, is Pending; a station marked `accept_boot_at_once` is Accepted at its first
    boot and gets its defaults all the same.
(b) RemoteStartTransaction / RemoteStopTransaction wait in the outbox while the boot is
    Pending (section 4.2) and go out once it is Accepted; other calls (configuration)
    are not held; a held command fails when the charger leaves.
(c) What the CSMS asked for with TriggerMessage while the charger is Pending is answered
    (section 4.2 allows it); anything else is still SecurityError.
(d) A call to a charger whose connection closed fails at once: tests/test_edge_silent_charger.py
    (test_a_call_in_flight_fails_at_once_when_the_connection_closes and the two after it).
(e) ChangeConfiguration(AuthorizationKey) through the outbox, Accepted, makes the new key
    the password at once: tests/test_edge_credentials.py
    (test_key_change_queued_by_hand_changes_the_password_too).
"""

from __future__ import annotations

import asyncio
from typing import Any

from csms.app import CsmsApp
from csms.controller.mirror import ChargerIdentity
from tests.conftest import start_app, ws_url
from tests.ocpp_client import RawChargePoint
from tests.profiles_support import PASSWORD, eventually, garage, wait_command

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


# ------------------------------------------------------------------ (a)
async def test_a_first_boot_is_pending_and_a_reconnect_of_the_same_unit_is_accepted_at_once(
    db_url: str,
) -> None:
    async with garage(db_url, controller=True) as g:
        station = g.station
        first = station.stats.sent["BootNotification"]
        assert first >= 2  # Pending until its fail-safe profiles were in place
        assert station.charging.profiles.entries  # they are
        station.request_reboot("Soft")
        await eventually(lambda: station.stats.connects == 2 and station.online, "reconnected")
        assert station.stats.sent["BootNotification"] == first + 1  # Accepted at once


async def test_the_csms_remembers_across_its_own_restart(db_url: str) -> None:
    """The copy of the profiles is persisted: a CSMS started again accepts at once too."""
    async with garage(db_url, controller=True) as g:
        await eventually(
            lambda: bool(g.app.controller and g.app.controller._mirror.store_for("CP1")),
            "profiles known",
        )
        await asyncio.sleep(0.3)  # the copy is saved after the defaults' answers
    app = await start_app(db_url, controller=True)
    try:
        cp = await RawChargePoint.connect(ws_url(app, "CP1"), password=PASSWORD)
        payload = {
            "chargePointVendor": "GarageGrid",
            "chargePointModel": "Virtual AC Wallbox",
            "chargePointSerialNumber": "VC-CP1",
        }
        answer = await cp.ok("BootNotification", payload)
        assert answer["status"] == "Accepted"
        await cp.close()
    finally:
        await app.stop()


async def test_another_unit_under_the_same_id_is_pending(db_url: str) -> None:
    async with garage(db_url, controller=True) as g:
        controller = g.app.controller
        assert controller is not None
        await eventually(lambda: bool(controller._mirror.store_for("CP1")), "profiles known")
        same = ChargerIdentity("GarageGrid", "Virtual AC Wallbox", None)
        other = ChargerIdentity("GarageGrid", "Another Wallbox", None)
        await g.station.shutdown(flush_timeout_real_s=0.5)
        await eventually(lambda: not g.app.central.is_connected("CP1"), "CP1 gone")
        # Whether a boot of either would be Accepted at once (the gate the handler asks).
        assert controller._mirror.holds_defaults("CP1", same, _default_ids())
        cp = await RawChargePoint.connect(ws_url(g.app, "CP1"), password=PASSWORD)
        answer = await cp.ok(
            "BootNotification",
            {"chargePointVendor": other.vendor, "chargePointModel": other.model},
        )
        assert answer["status"] == "Pending"
        await cp.close()


def _default_ids() -> dict[Any, int]:
    from csms.controller.planning import CHARGE_POINT_MAX_PROFILE_ID, TX_DEFAULT_PROFILE_ID
    from csms.profiles import ChargingProfilePurpose

    return {
        ChargingProfilePurpose.ChargePointMaxProfile: CHARGE_POINT_MAX_PROFILE_ID,
        ChargingProfilePurpose.TxDefaultProfile: TX_DEFAULT_PROFILE_ID,
    }


async def test_a_station_marked_accept_at_once_boots_once_and_gets_its_defaults(
    db_url: str,
) -> None:
    async with garage(db_url, controller=True, station_fields={"accept_boot_at_once": True}) as g:
        assert g.station.stats.sent["BootNotification"] == 1
        purposes = set()

        def defaults_installed() -> bool:
            purposes.clear()
            purposes.update(e.profile.purpose.value for e in g.station.charging.profiles.entries)
            return {"ChargePointMaxProfile", "TxDefaultProfile"} <= purposes

        await eventually(defaults_installed, "fail-safe profiles installed after the boot")


# ------------------------------------------------------------------ (b)
class Gate:
    """A boot gate the test opens by hand (load management's, without its calls)."""

    def __init__(self) -> None:
        self.open = False

    def __call__(self, cp_id: str, identity: ChargerIdentity | None = None) -> bool:
        return self.open


async def pending_charger(app: CsmsApp, gate: Gate) -> RawChargePoint:
    app.central.boot_gate = gate
    await app.repository.add_charge_point("CP1")
    cp = await RawChargePoint.connect(ws_url(app, "CP1"))
    assert (await cp.ok("BootNotification", BOOT))["status"] == "Pending"
    return cp


async def test_remote_start_and_stop_wait_while_the_boot_is_pending(db_url: str) -> None:
    app = await start_app(db_url)
    try:
        gate = Gate()
        cp = await pending_charger(app, gate)
        cp.handlers["RemoteStartTransaction"] = lambda payload: {"status": "Accepted"}
        cp.handlers["RemoteStopTransaction"] = lambda payload: {"status": "Rejected"}
        cp.handlers["GetConfiguration"] = lambda payload: {"configurationKey": []}
        start = await app.repository.enqueue_command(
            "CP1", "RemoteStartTransaction", {"idTag": "TAG1"}
        )
        stop = await app.repository.enqueue_command(
            "CP1", "RemoteStopTransaction", {"transactionId": 1}
        )
        # Configuration is what a Pending charger is for: it goes out meanwhile.
        config = await app.repository.enqueue_command("CP1", "GetConfiguration", {})
        assert (await wait_command(app, config))["status"] == "done"
        await asyncio.sleep(0.5)  # five outbox polls
        assert [action for action, _ in cp.server_calls] == ["GetConfiguration"]
        for held in (start, stop):
            row = await app.repository.get_command(held)
            assert row is not None and row["status"] == "sending"
        gate.open = True
        assert (await cp.ok("BootNotification", BOOT))["status"] == "Accepted"
        assert (await wait_command(app, start))["response"] == {"status": "Accepted"}
        assert (await wait_command(app, stop))["response"] == {"status": "Rejected"}
        assert sorted(a for a, _ in cp.server_calls[1:]) == [
            "RemoteStartTransaction",
            "RemoteStopTransaction",
        ]
        await cp.close()
    finally:
        await app.stop()


async def test_a_held_command_fails_when_the_pending_charger_leaves(db_url: str) -> None:
    app = await start_app(db_url)
    try:
        cp = await pending_charger(app, Gate())
        held = await app.repository.enqueue_command(
            "CP1", "RemoteStartTransaction", {"idTag": "TAG1"}
        )
        await eventually(lambda: _status(app, held, "sending"), "the command is claimed and held")
        await cp.close()
        row = await wait_command(app, held)
        assert row["status"] == "failed"
        assert "disconnected while its boot was Pending" in row["error"]
        assert cp.server_calls == []
    finally:
        await app.stop()


async def _status(app: CsmsApp, command_id: int, status: str) -> bool:
    row = await app.repository.get_command(command_id)
    return row is not None and row["status"] == status


# ------------------------------------------------------------------ (c)
async def test_a_message_the_csms_triggered_while_pending_is_answered(db_url: str) -> None:
    app = await start_app(db_url)
    try:
        cp = await pending_charger(app, Gate())
        status = {"connectorId": 0, "errorCode": "NoError", "status": "Available"}
        # Not asked for: a Pending charger sends no requests of its own (section 4.2).
        refused = await cp.call("StatusNotification", status)
        assert refused[0] == 4 and refused[2] == "SecurityError"
        answers = {"StatusNotification": "Accepted", "Heartbeat": "Rejected"}
        cp.handlers["TriggerMessage"] = lambda p: {"status": answers[p["requestedMessage"]]}
        for message in answers:
            row = await wait_command(
                app,
                await app.repository.enqueue_command(
                    "CP1", "TriggerMessage", {"requestedMessage": message}
                ),
            )
            assert row["response"] == {"status": answers[message]}
        # Asked for and accepted: answered; asked for and refused, or never asked: not.
        assert (await cp.call("StatusNotification", status))[0] == 3
        assert (await cp.call("StatusNotification", status | {"connectorId": 1}))[0] == 3
        assert (await cp.call("Heartbeat", {}))[2] == "SecurityError"
        assert (await cp.call("Authorize", {"idTag": "TAG1"}))[2] == "SecurityError"
        # A new BootNotification starts afresh: what was triggered before is not allowed.
        assert (await cp.ok("BootNotification", BOOT))["status"] == "Pending"
        assert (await cp.call("StatusNotification", status))[2] == "SecurityError"
        await cp.close()
    finally:
        await app.stop()


async def test_a_virtual_charger_sends_what_was_triggered_while_pending(db_url: str) -> None:
    """The charger side of (c): the virtual charger answers a TriggerMessage during its
    Pending boot with the message, and the CSMS takes it (no SecurityError)."""
    app = await start_app(db_url)
    try:
        gate = Gate()
        app.central.boot_gate = gate
        from csms.clock import SimClock
        from tests.conftest import T0
        from tests.profiles_support import SPEED
        from virtual_chargers.options import StationOptions
        from virtual_chargers.simulation import Electrics
        from virtual_chargers.station import VirtualStation

        await app.repository.add_charge_point("CP1", password=PASSWORD)
        station = VirtualStation(
            "CP1",
            f"ws://127.0.0.1:{app.port}/ocpp",
            Electrics(32.0, 3),
            SimClock(speed=SPEED, start=T0),
            StationOptions(password=PASSWORD),
        )
        task = asyncio.create_task(station.run())
        await eventually(lambda: station.stats.sent["BootNotification"] >= 1, "a boot")
        row = await wait_command(
            app,
            await app.repository.enqueue_command(
                "CP1", "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}
            ),
        )
        assert row["response"] == {"status": "Accepted"}

        async def recorded() -> bool:
            return bool(await _events(app))

        await eventually(recorded, "the triggered FirmwareStatusNotification stored")
        assert not station.online  # still Pending
        await station.shutdown(flush_timeout_real_s=0.2)
        await task
    finally:
        await app.stop()


async def _events(app: CsmsApp) -> list[dict[str, Any]]:
    from csms.store.features import FeatureStore

    return await FeatureStore(app.repository).maintenance_events("CP1")
