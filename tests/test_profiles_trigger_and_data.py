"""Remote Trigger, every requestedMessage, and the GarageGrid vendor DataTransfer
(issue 13 item 4), over real sockets against a virtual charger.

Each TriggerMessage goes from the CLI through the outbox; the charger answers Accepted
and sends the message, which the CSMS receives and answers. The ChargingNeeds
DataTransfer sets the running session's departure and need (the store write the
monitor's Resident page makes); bad data is Rejected, other message ids and vendors get
UnknownMessageId / UnknownVendorId (section 4.3).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from csms.charging_needs import charging_needs_data, parse_charging_needs
from csms.cli import main
from csms.cli_features import TRIGGER_MESSAGES
from csms.errors import ConfigError
from csms.ev import CATALOGUE
from tests.conftest import T0, ws_url
from tests.ocpp_client import RawChargePoint
from tests.profiles_support import PASSWORD, Garage, eventually, garage
from virtual_chargers.options import StationOptions
from virtual_chargers.simulation import Car


def received(caplog: pytest.LogCaptureFixture, action: str) -> list[logging.LogRecord]:
    """The CALLs of ``action`` the CSMS received (a hot-path action, handled past the
    ocpp package, logs its receipt at DEBUG and "CALL answered" at INFO)."""
    return [
        r
        for r in caplog.records
        if r.name == "csms.ocpp"
        and r.getMessage() in ("received CALL", "CALL answered")
        and getattr(r, "action", None) == action
    ]


async def test_every_requested_message_is_triggered_and_received(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="csms.ocpp")
    # The CLI sets up logging anew; here it keeps pytest's capture, which this test reads.
    monkeypatch.setattr("csms.cli.configure_logging", lambda level: None)
    async with garage(db_url) as g:
        monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)
        for message in TRIGGER_MESSAGES:
            before = len(received(caplog, message))
            argv = ["trigger", "CP1", message]
            if message in ("MeterValues", "StatusNotification"):
                argv += ["--connector", "1"]
            assert await asyncio.to_thread(main, argv) == 0, message
            assert '"status": "Accepted"' in capsys.readouterr().out
            await eventually(
                lambda m=message, b=before: len(received(caplog, m)) > b, f"{message} received"
            )
        # Recorded where the CSMS keeps them.
        events = await g.features.maintenance_events("CP1")
        assert {(e["kind"], e["status"]) for e in events} == {
            ("firmware", "Idle"),
            ("diagnostics", "Idle"),
        }
        errors = [
            r
            for r in caplog.records
            if r.getMessage() == "sending CALLERROR" and r.name == "csms.ocpp"
        ]
        assert errors == []


# ------------------------------------------------------------------ ChargingNeeds
NOW = T0


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (None, "missing"),
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"departure": "2026-01-06T07:30:00Z"}', "energyKwh"),
        ('{"energyKwh": 20}', "departure"),
        ('{"departure": "tomorrow", "energyKwh": 20}', "RFC 3339"),
        ('{"departure": "2026-01-05T15:00:00Z", "energyKwh": 20}', "passed"),
        ('{"departure": "2026-02-05T15:00:00Z", "energyKwh": 20}', "14 days"),
        ('{"departure": "2026-01-06T07:30:00Z", "energyKwh": 0}', "between"),
        ('{"departure": "2026-01-06T07:30:00Z", "energyKwh": 999}', "between"),
        ('{"departure": "2026-01-06T07:30:00Z", "energyKwh": true}', "number"),
        ('{"departure": "2026-01-06T07:30:00Z", "energyKwh": 20, "x": 1}', "unknown"),
        (
            '{"departure": "2026-01-06T07:30:00Z", "energyKwh": 20, "connectorId": -1}',
            "connectorId",
        ),
    ],
)
def test_charging_needs_that_cannot_be_planned_with_are_refused(data: str | None, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_charging_needs(data, NOW)


def test_charging_needs_read_back_from_what_a_charger_sends() -> None:
    departure = T0 + timedelta(hours=15, minutes=30)
    needs = parse_charging_needs(charging_needs_data(departure, 22.5, connector_id=1), NOW)
    assert (needs.departure_at, needs.energy_wh, needs.connector_id) == (departure, 22500.0, 1)
    # A departure without a zone is UTC (csms.ocpp16.validation.parse_timestamp).
    naive = parse_charging_needs('{"departure": "2026-01-06T07:30:00", "energyKwh": 5}', NOW)
    assert naive.departure_at == T0.replace(day=6, hour=7, minute=30)


async def charging(g: Garage, tag: str = "TAG1") -> int:
    await g.app.repository.add_id_tag(tag)
    g.station.arrive(Car(CATALOGUE["renault-zoe-52"], 0.3), tag)
    await eventually(lambda: g.station.transaction_id is not None, "transaction id known")
    assert g.station.transaction_id is not None
    return g.station.transaction_id


async def test_a_chargers_app_sets_the_sessions_departure_and_need(db_url: str) -> None:
    async with garage(db_url) as g:
        # No session yet: nothing to plan for.
        departure = g.clock.now() + timedelta(hours=14)
        assert await g.station.send_charging_needs(departure, 30.0) == "Rejected"
        transaction_id = await charging(g)
        departure = g.clock.now() + timedelta(hours=14)
        assert await g.station.send_charging_needs(departure, 30.0) == "Accepted"
        tx = await g.app.repository.get_transaction(transaction_id)
        assert tx is not None
        assert tx["departure_at"] == departure.replace(microsecond=tx["departure_at"].microsecond)
        assert abs((tx["departure_at"] - departure).total_seconds()) < 0.001
        assert tx["energy_needed_wh"] == pytest.approx(30_000)
        # A departure in the past is refused; the stored one stays.
        assert (
            await g.station.send_charging_needs(g.clock.now() - timedelta(hours=1), 5) == "Rejected"
        )
        again = await g.app.repository.get_transaction(transaction_id)
        assert again is not None and again["energy_needed_wh"] == pytest.approx(30_000)


async def test_a_virtual_charger_tells_each_sessions_needs_by_itself(db_url: str) -> None:
    """`StationOptions.needs_by_data_transfer`: once the transaction has its id, the
    charger sends the session's departure and need over OCPP (no database access)."""
    options = StationOptions(password=PASSWORD, needs_by_data_transfer=True)
    async with garage(db_url, options=options) as g:
        await g.app.repository.add_id_tag("TAG1")
        departure = g.clock.now() + timedelta(hours=10)
        g.station.arrive(
            Car(CATALOGUE["renault-zoe-52"], 0.3), "TAG1", departure_at=departure, needed_wh=18_000
        )
        await eventually(lambda: g.station.transaction_id is not None, "transaction id known")
        transaction_id = g.station.transaction_id
        assert transaction_id is not None

        async def told() -> bool:
            tx = await g.app.repository.get_transaction(transaction_id)
            return tx is not None and tx["energy_needed_wh"] is not None

        await eventually(told, "the need stored")
        tx = await g.app.repository.get_transaction(transaction_id)
        assert tx is not None and tx["energy_needed_wh"] == pytest.approx(18_000)
        assert abs((tx["departure_at"] - departure).total_seconds()) < 0.001


@pytest.mark.parametrize(
    ("vendor", "message_id", "status"),
    [
        ("GarageGrid", "SomethingElse", "UnknownMessageId"),
        ("GarageGrid", None, "UnknownMessageId"),
        ("AnotherVendor", "ChargingNeeds", "UnknownVendorId"),
    ],
)
async def test_other_data_transfers_are_unknown(
    app: object, vendor: str, message_id: str | None, status: str
) -> None:
    from csms.app import CsmsApp

    assert isinstance(app, CsmsApp)
    await app.repository.add_charge_point("CP1")
    cp = await RawChargePoint.connect(ws_url(app, "CP1"))
    await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    payload = {"vendorId": vendor} | ({"messageId": message_id} if message_id else {})
    assert (await cp.ok("DataTransfer", payload))["status"] == status
    await cp.close()
