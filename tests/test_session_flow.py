"""A whole charging session over a real socket against the real CSMS and a real SQLite file."""

from __future__ import annotations

from sqlalchemy import select

from csms.app import CsmsApp
from csms.store import models as m
from csms.store.repository import Repository
from tests.conftest import ws_url
from tests.ocpp_client import RawChargePoint

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Wall-22", "firmwareVersion": "1.2.3"}


def meter_value(ts: str, energy_wh: float, amps: float) -> dict[str, object]:
    return {
        "timestamp": ts,
        "sampledValue": [
            {
                "value": f"{energy_wh:.0f}",
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
            },
            {"value": f"{amps * 230 * 3:.0f}", "measurand": "Power.Active.Import", "unit": "W"},
            *(
                {"value": f"{amps:.1f}", "measurand": "Current.Import", "phase": p, "unit": "A"}
                for p in ("L1", "L2", "L3")
            ),
            {"value": "16", "measurand": "Current.Offered", "unit": "A"},
            {"value": "0.75", "measurand": "SoC", "unit": "Percent", "location": "EV"},
        ],
    }


async def test_whole_session_is_stored_boot_to_stop(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1", max_current_a=16, phases=3, password="s3cret-key-123456")
    await repo.add_id_tag("TAG1", owner="Apt B12")
    cp = await RawChargePoint.connect(ws_url(app, "CP1"), password="s3cret-key-123456")
    try:
        boot = await cp.ok("BootNotification", BOOT)
        assert boot["status"] == "Accepted"
        assert boot["interval"] > 0
        await cp.ok(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}
        )
        auth = await cp.ok("Authorize", {"idTag": "TAG1"})
        assert auth["idTagInfo"]["status"] == "Accepted"
        start = await cp.ok(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "TAG1",
                "meterStart": 1000,
                "timestamp": "2026-01-05T16:00:00Z",
            },
        )
        tx = start["transactionId"]
        assert isinstance(tx, int) and tx > 0
        assert start["idTagInfo"]["status"] == "Accepted"
        await cp.ok(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [meter_value("2026-01-05T16:01:00Z", 1180, 16)],
            },
        )
        stop = await cp.ok(
            "StopTransaction",
            {
                "transactionId": tx,
                "meterStop": 4000,
                "timestamp": "2026-01-05T17:00:00Z",
                "reason": "EVDisconnected",
                "idTag": "TAG1",
                "transactionData": [meter_value("2026-01-05T17:00:00Z", 4000, 0)],
            },
        )
        assert stop["idTagInfo"]["status"] == "Accepted"
        await cp.ok("Heartbeat", {})
    finally:
        await cp.close()

    station = await repo.get_charge_point("CP1")
    assert station is not None
    assert (station.vendor, station.model, station.firmware_version) == ("Acme", "Wall-22", "1.2.3")
    rows = await repo.sessions_for_export()
    assert len(rows) == 1
    assert rows[0]["energy_wh"] == 3000
    assert rows[0]["owner"] == "Apt B12"
    assert rows[0]["stop_reason"] == "EVDisconnected"
    async with repo._sessionmaker() as s:
        samples = (
            (await s.execute(select(m.MeterSample).where(m.MeterSample.transaction_id == tx)))
            .scalars()
            .all()
        )
        statuses = (await s.execute(select(m.StatusEvent))).scalars().all()
    assert len(samples) == 14  # 7 sampled values in MeterValues + 7 in transactionData
    power = [x for x in samples if x.measurand == "Power.Active.Import"]
    assert {x.norm_unit for x in power} == {"W"}
    currents = sorted(
        (x.phase, x.value) for x in samples if x.measurand == "Current.Import" and x.value
    )
    assert currents == [("L1", 16.0), ("L2", 16.0), ("L3", 16.0)]
    soc = [x for x in samples if x.measurand == "SoC"]
    assert soc[0].location == "EV" and soc[0].norm_unit == "%"
    assert [s.status for s in statuses] == ["Preparing"]
