"""CALLERRORs as OCPP-J 1.6 defines them, and a connection that stays usable afterwards."""

from __future__ import annotations

import pytest

from csms.app import CsmsApp
from csms.store.repository import Repository
from tests.conftest import ws_url
from tests.ocpp_client import RawChargePoint

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.fixture
async def cp(app: CsmsApp, repo: Repository) -> RawChargePoint:
    await repo.add_charge_point("CP1")
    client = await RawChargePoint.connect(ws_url(app, "CP1"))
    await client.ok("BootNotification", BOOT)
    yield client  # type: ignore[misc]
    await client.close()


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("FlyToTheMoon", {}, "NotImplemented"),
        ("GetConfiguration", {}, "NotSupported"),  # a 1.6 action the central system never takes
        ("Heartbeat", {"extra": 1}, "FormationViolation"),
        ("Authorize", {}, "OccurenceConstraintViolation"),
        ("Authorize", {"idTag": 42}, "TypeConstraintViolation"),
        ("Authorize", {"idTag": "X" * 21}, "TypeConstraintViolation"),
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"},
            "PropertyConstraintViolation",
        ),
        (
            "StatusNotification",
            {"connectorId": -1, "errorCode": "NoError", "status": "Available"},
            "PropertyConstraintViolation",
        ),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 1, "timestamp": "yesterday"},
            "PropertyConstraintViolation",
        ),
        (
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "T",
                "meterStart": 2**70,
                "timestamp": "2026-01-05T16:00:00Z",
            },
            "PropertyConstraintViolation",
        ),
    ],
)
async def test_bad_call_gets_the_16_error_code(
    cp: RawChargePoint, action: str, payload: dict[str, object], code: str
) -> None:
    frame = await cp.call(action, payload)
    assert frame[0] == 4
    assert frame[2] == code
    assert frame[2] != "FormatViolation"
    # The connection stays usable.
    assert "currentTime" in await cp.ok("Heartbeat", {})


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("this is not json", "FormationViolation"),
        ('{"an": "object"}', "ProtocolError"),
        ("[]", "ProtocolError"),
        ('[9, "x"]', "ProtocolError"),
        ('[2, 17, "Heartbeat", {}]', "ProtocolError"),
    ],
)
async def test_unreadable_frames_get_a_callerror_with_id_minus_one(
    cp: RawChargePoint, raw: str, code: str
) -> None:
    frame = await cp.send_frame(raw, expect_id="-1" if "[9" not in raw else "x")
    assert frame[0] == 4 and frame[2] == code
    assert "currentTime" in await cp.ok("Heartbeat", {})


async def test_call_with_wrong_shape_keeps_its_message_id(cp: RawChargePoint) -> None:
    frame = await cp.send_frame('[2, "abc", "Heartbeat"]', expect_id="abc")
    assert frame[:3] == [4, "abc", "ProtocolError"]


async def test_requests_before_boot_accepted_get_security_error(
    app: CsmsApp, repo: Repository
) -> None:
    await repo.add_charge_point("FRESH")
    client = await RawChargePoint.connect(ws_url(app, "FRESH"))
    frame = await client.call("Heartbeat", {})
    assert frame[0] == 4 and frame[2] == "SecurityError"
    await client.ok("BootNotification", BOOT)
    await client.ok("Heartbeat", {})
    await client.close()


async def test_unknown_data_transfer_vendor(cp: RawChargePoint) -> None:
    answer = await cp.ok(
        "DataTransfer", {"vendorId": "com.acme", "messageId": "hello", "data": "x"}
    )
    assert answer["status"] == "UnknownVendorId"


async def test_firmware_and_diagnostics_status_are_stored(
    cp: RawChargePoint, repo: Repository
) -> None:
    await cp.ok("FirmwareStatusNotification", {"status": "Downloading"})
    await cp.ok("DiagnosticsStatusNotification", {"status": "Uploaded"})
    async with repo._sessionmaker() as s:
        from csms.store import models as m

        row = await s.get(m.ChargePoint, "CP1")
    assert row is not None
    assert (row.firmware_status, row.diagnostics_status) == ("Downloading", "Uploaded")
