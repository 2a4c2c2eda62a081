"""Command outbox: a row written outside the CSMS is sent within a second and answered."""

from __future__ import annotations

import asyncio
from typing import Any

from csms.app import CsmsApp
from csms.store.repository import Repository
from tests.conftest import ws_url
from tests.ocpp_client import RawChargePoint


async def _wait_done(repo: Repository, command_id: int, within_s: float = 5.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        row = await repo.get_command(command_id)
        assert row is not None
        if row["status"] in ("done", "failed"):
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"command {command_id} not completed: {row}")


async def test_command_round_trip(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1")
    cp = await RawChargePoint.connect(ws_url(app, "CP1"))
    await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    cp.handlers["Reset"] = lambda payload: {"status": "Accepted"}
    cp.handlers["GetConfiguration"] = lambda payload: {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
    }
    reset = await repo.enqueue_command("CP1", "Reset", {"type": "Soft"}, requested_by="test")
    config = await repo.enqueue_command("CP1", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    done = await _wait_done(repo, reset)
    assert done["status"] == "done" and done["response"] == {"status": "Accepted"}
    done = await _wait_done(repo, config)
    assert done["response"]["configurationKey"][0]["value"] == "300"
    assert ("Reset", {"type": "Soft"}) in cp.server_calls
    await cp.close()


async def test_charger_callerror_is_stored_as_failure(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1")
    cp = await RawChargePoint.connect(ws_url(app, "CP1"))
    await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    command = await repo.enqueue_command("CP1", "UnlockConnector", {"connectorId": 1})
    done = await _wait_done(repo, command)
    assert done["status"] == "failed"
    assert "NotImplemented" in done["error"]
    await cp.close()


async def test_command_to_absent_charger_fails_clearly(app: CsmsApp, repo: Repository) -> None:
    command = await repo.enqueue_command("GHOST", "Reset", {"type": "Hard"})
    done = await _wait_done(repo, command)
    assert done["status"] == "failed" and "not connected" in done["error"]


async def test_invalid_payload_is_refused_before_sending(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1")
    cp = await RawChargePoint.connect(ws_url(app, "CP1"))
    await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    command = await repo.enqueue_command("CP1", "Reset", {"type": "Sideways"})
    done = await _wait_done(repo, command)
    assert done["status"] == "failed" and "invalid" in done["error"]
    assert cp.server_calls == []
    await cp.close()


async def test_all_central_system_operations_reach_the_charger(
    app: CsmsApp, repo: Repository
) -> None:
    await repo.add_charge_point("CP1")
    cp = await RawChargePoint.connect(ws_url(app, "CP1"))
    await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    answers: dict[str, dict[str, Any]] = {
        "RemoteStartTransaction": {"status": "Accepted"},
        "RemoteStopTransaction": {"status": "Accepted"},
        "UnlockConnector": {"status": "Unlocked"},
        "ChangeAvailability": {"status": "Scheduled"},
        "ChangeConfiguration": {"status": "Accepted"},
        "TriggerMessage": {"status": "Accepted"},
        "SetChargingProfile": {"status": "Accepted"},
        "ClearChargingProfile": {"status": "Unknown"},
        "GetCompositeSchedule": {"status": "Rejected"},
    }
    for action, answer in answers.items():
        cp.handlers[action] = lambda payload, a=answer: a
    payloads: dict[str, dict[str, Any]] = {
        "RemoteStartTransaction": {"idTag": "TAG1", "connectorId": 1},
        "RemoteStopTransaction": {"transactionId": 5},
        "UnlockConnector": {"connectorId": 1},
        "ChangeAvailability": {"connectorId": 0, "type": "Inoperative"},
        "ChangeConfiguration": {"key": "MeterValueSampleInterval", "value": "60"},
        "TriggerMessage": {"requestedMessage": "MeterValues", "connectorId": 1},
        "SetChargingProfile": {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                },
            },
        },
        "ClearChargingProfile": {"id": 1},
        "GetCompositeSchedule": {"connectorId": 1, "duration": 3600},
    }
    ids = {a: await repo.enqueue_command("CP1", a, p) for a, p in payloads.items()}
    for action, command_id in ids.items():
        done = await _wait_done(repo, command_id)
        assert done["status"] == "done", (action, done)
        assert done["response"] == answers[action]
    assert [a for a, _ in cp.server_calls] == list(payloads)
    await cp.close()
