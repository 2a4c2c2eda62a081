"""Pure parts of the virtual chargers: configuration keys, the offline queue, payloads."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ocpp
import pytest
from jsonschema import Draft4Validator

from csms.errors import ConfigError
from virtual_chargers import messages
from virtual_chargers.config import ChangeStatus, ChargerConfig, phase_rotation
from virtual_chargers.display import render
from virtual_chargers.options import Quirks, StationSnapshot
from virtual_chargers.queue import METER_VALUES, START, STOP, MessageQueue
from virtual_chargers.simulation import ConnectorStatus, MeterReading

SCHEMAS = Path(ocpp.__file__).resolve().parent / "v16" / "schemas"
T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)


def assert_valid(action: str, payload: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / f"{action}.json").read_text())
    errors = [e.message for e in Draft4Validator(schema).iter_errors(payload)]
    assert not errors, errors


# ---------------------------------------------------------------- configuration
def test_get_configuration_never_reveals_the_authorization_key() -> None:
    config = ChargerConfig({"AuthorizationKey": "0123456789abcdef0123"})
    entries, unknown = config.get()
    assert "AuthorizationKey" not in {e.key for e in entries}
    assert not unknown
    entries, unknown = config.get(["AuthorizationKey", "HeartbeatInterval"])
    assert [e.key for e in entries] == ["HeartbeatInterval"]
    assert unknown == ["AuthorizationKey"]
    assert config.value("AuthorizationKey") == "0123456789abcdef0123"


def test_every_standard_smart_charging_and_core_key_is_reported() -> None:
    keys = {e.key for e in ChargerConfig().get()[0]}
    assert {
        "HeartbeatInterval",
        "MeterValueSampleInterval",
        "MeterValuesSampledData",
        "ChargeProfileMaxStackLevel",
        "ChargingScheduleAllowedChargingRateUnit",
        "ChargingScheduleMaxPeriods",
        "MaxChargingProfilesInstalled",
        "NumberOfConnectors",
        "TransactionMessageAttempts",
        "TransactionMessageRetryInterval",
        "WebSocketPingInterval",
        "ConnectorPhaseRotation",
    } <= keys


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("HeartbeatInterval", "120", ChangeStatus.accepted),
        ("heartbeatinterval", "120", ChangeStatus.accepted),  # CiString: any case
        ("HeartbeatInterval", "-1", ChangeStatus.rejected),
        ("HeartbeatInterval", "soon", ChangeStatus.rejected),
        ("NumberOfConnectors", "2", ChangeStatus.rejected),  # read-only
        ("ChargeProfileMaxStackLevel", "3", ChangeStatus.rejected),
        ("NoSuchKey", "1", ChangeStatus.not_supported),
        ("StopTransactionOnInvalidId", "FALSE", ChangeStatus.accepted),
        ("StopTransactionOnInvalidId", "maybe", ChangeStatus.rejected),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Voltage", ChangeStatus.accepted),
        ("MeterValuesSampledData", "Temperature", ChangeStatus.rejected),  # not measured
        ("MeterValuesSampledData", ",".join(["SoC"] * 9), ChangeStatus.rejected),  # > 8 items
        ("ConnectorPhaseRotation", "1.RTS", ChangeStatus.accepted),
        ("ConnectorPhaseRotation", "1.XYZ", ChangeStatus.rejected),
        ("AuthorizationKey", "new-secret-0123", ChangeStatus.accepted),
        ("AuthorizationKey", "", ChangeStatus.rejected),
        ("AuthorizationKey", "x" * 41, ChangeStatus.rejected),
        ("TransactionMessageAttempts", "0", ChangeStatus.rejected),
    ],
)
def test_change_configuration(key: str, value: str, status: ChangeStatus) -> None:
    assert ChargerConfig().change(key, value) is status


def test_values_are_normalised_and_survive_persistence() -> None:
    config = ChargerConfig()
    config.change("StopTransactionOnInvalidId", "FALSE")
    config.change("MeterValuesSampledData", " SoC , Voltage ")
    config.change("AuthorizationKey", "k3y-k3y-k3y")
    again = ChargerConfig.from_dict(config.to_dict())
    assert again.boolean("StopTransactionOnInvalidId") is False
    assert again.csl("MeterValuesSampledData") == ("SoC", "Voltage")
    assert again.value("AuthorizationKey") == "k3y-k3y-k3y"


def test_initial_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="HeartbeatInterval"):
        ChargerConfig({"HeartbeatInterval": "never"})
    with pytest.raises(ConfigError, match="not known"):
        ChargerConfig({"Bogus": "1"})


@pytest.mark.parametrize(
    ("wiring", "rotation"),
    [(("L1", "L2", "L3"), "1.RST"), (("L2", "L3", "L1"), "1.STR"), (("L2",), "1.NotApplicable")],
)
def test_phase_rotation_from_wiring(wiring: tuple[str, ...], rotation: str) -> None:
    assert phase_rotation(wiring) == rotation
    assert ChargerConfig().change("ConnectorPhaseRotation", rotation) is ChangeStatus.accepted


# ---------------------------------------------------------------- quirks
def test_quirks_parse_and_describe() -> None:
    quirks = Quirks.parse("stack-level-0, w-only,reject-connector-0,steps=16/6/10")
    assert quirks.only_stack_level_0 and quirks.only_watts and quirks.reject_connector_0
    assert quirks.current_steps_a == (6.0, 10.0, 16.0)
    assert Quirks.parse(quirks.describe()) == quirks
    with pytest.raises(ValueError, match="unknown quirk"):
        Quirks.parse("fast")
    with pytest.raises(ValueError, match="steps"):
        Quirks.parse("steps=six")


# ---------------------------------------------------------------- the queue
def numbered_queue() -> MessageQueue:
    counter = itertools.count(1)
    return MessageQueue(new_message_id=lambda: f"m{next(counter)}")


def test_transaction_id_is_filled_in_when_the_start_is_answered() -> None:
    queue = numbered_queue()
    tx = queue.new_transaction()
    start = queue.enqueue(START, {"connectorId": 1}, tx_local_id=tx)
    meter = queue.enqueue(METER_VALUES, {"connectorId": 1, "meterValue": []}, tx_local_id=tx)
    stop = queue.enqueue(STOP, {"meterStop": 5}, tx_local_id=tx)
    assert [m.action for m in queue] == [START, METER_VALUES, STOP]
    assert queue.head() is start
    assert queue.prepare(start) == {"connectorId": 1}
    queue.acknowledge(start, {"transactionId": 42, "idTagInfo": {"status": "Accepted"}})
    assert queue.head() is meter
    assert queue.prepare(meter) == {"connectorId": 1, "meterValue": [], "transactionId": 42}
    queue.acknowledge(meter, {})
    assert queue.prepare(stop) == {"meterStop": 5, "transactionId": 42}
    queue.acknowledge(stop, {})
    assert len(queue) == 0


def test_a_start_that_never_got_an_id_stops_with_minus_one() -> None:
    queue = numbered_queue()
    tx = queue.new_transaction()
    start = queue.enqueue(START, {"connectorId": 1}, tx_local_id=tx)
    meter = queue.enqueue(METER_VALUES, {"meterValue": []}, tx_local_id=tx)
    stop = queue.enqueue(STOP, {"meterStop": 5}, tx_local_id=tx)
    first = queue.reject(start, now=T0, max_attempts=2, retry_interval_s=10)
    assert not first.dropped and first.retry_at == T0 + timedelta(seconds=10)
    assert start.not_before == first.retry_at
    assert queue.head() is start  # the retry keeps its place and its message id
    second = queue.reject(start, now=T0, max_attempts=2, retry_interval_s=10)
    assert second.dropped
    assert queue.head() is meter
    assert queue.prepare(meter) is None  # no id can attribute it
    queue.discard(meter)
    assert queue.prepare(stop) == {"meterStop": 5, "transactionId": -1}
    assert queue.dropped == 2


def test_retries_wait_interval_times_attempts() -> None:
    queue = numbered_queue()
    message = queue.enqueue(METER_VALUES, {})
    waits = [
        queue.reject(message, now=T0, max_attempts=4, retry_interval_s=60).retry_at
        for _ in range(3)
    ]
    assert waits == [T0 + timedelta(seconds=60 * n) for n in (1, 2, 3)]
    assert queue.reject(message, now=T0, max_attempts=4, retry_interval_s=60).dropped


def test_volatile_messages_are_dropped_with_the_connection() -> None:
    queue = numbered_queue()
    queue.enqueue("StatusNotification", {}, persistent=False)
    kept = queue.enqueue(METER_VALUES, {})
    queue.enqueue("StatusNotification", {}, persistent=False)
    assert queue.drop_volatile() == 2
    assert list(queue) == [kept]
    status = queue.enqueue("StatusNotification", {}, persistent=False)
    assert queue.reject(status, now=T0, max_attempts=3, retry_interval_s=1).dropped


def test_queue_survives_a_reboot_in_order() -> None:
    queue = numbered_queue()
    tx = queue.new_transaction()
    start = queue.enqueue(START, {"connectorId": 1}, tx_local_id=tx)
    queue.acknowledge(start, {"transactionId": 7})
    queue.enqueue(METER_VALUES, {"n": 1}, tx_local_id=tx)
    queue.enqueue("StatusNotification", {}, persistent=False)
    queue.enqueue(STOP, {"meterStop": 9}, tx_local_id=tx)
    again = MessageQueue.from_dict(json.loads(json.dumps(queue.to_dict())))
    messages_after = list(again)
    assert [m.action for m in messages_after] == [METER_VALUES, STOP]
    assert [m.message_id for m in messages_after] == ["m2", "m4"]
    assert again.prepare(messages_after[1]) == {"meterStop": 9, "transactionId": 7}


def test_full_storage_sheds_the_oldest_meter_values_never_a_start_or_stop() -> None:
    queue = MessageQueue(max_messages=3)
    tx = queue.new_transaction()
    queue.enqueue(START, {}, tx_local_id=tx)
    queue.enqueue(METER_VALUES, {"n": 1}, tx_local_id=tx)
    queue.enqueue(METER_VALUES, {"n": 2}, tx_local_id=tx)
    queue.enqueue(STOP, {}, tx_local_id=tx)
    assert [(m.action, m.payload.get("n")) for m in queue] == [
        (START, None),
        (METER_VALUES, 2),
        (STOP, None),
    ]


def test_finished_transactions_are_forgotten() -> None:
    queue = numbered_queue()
    tx = queue.new_transaction()
    start = queue.enqueue(START, {}, tx_local_id=tx)
    stop = queue.enqueue(STOP, {}, tx_local_id=tx)
    queue.acknowledge(start, {"transactionId": 1})
    queue.acknowledge(stop, {})
    assert queue.to_dict()["transactions"] == []


# ---------------------------------------------------------------- payloads
READING = MeterReading(
    energy_wh=12345,
    power_w=11040.0,
    current_a=(16.0, 16.0, 16.0),
    offered_a=16.0,
    offered_w=11040.0,
    voltage_v=230.0,
    soc_percent=55.5,
)
ALL_MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Power.Offered",
    "Current.Import",
    "Current.Offered",
    "Voltage",
    "SoC",
)


def test_payloads_follow_the_ocpp_schemas() -> None:
    value = messages.meter_value(READING, ALL_MEASURANDS, "Sample.Periodic", T0)
    assert_valid("MeterValues", messages.meter_values(1, [value], transaction_id=3))
    assert_valid("StatusNotification", messages.status_notification(1, "Charging", T0))
    assert_valid("BootNotification", messages.boot_notification("V", "M", "S1", "1.0"))
    assert_valid("StartTransaction", messages.start_transaction(1, "TAG01", 0, T0))
    stop = messages.stop_transaction(
        12345, T0, "Local", id_tag="TAG01", transaction_data=[value, value]
    )
    assert_valid("StopTransaction", {**stop, "transactionId": -1})


def test_meter_value_content() -> None:
    value = messages.meter_value(READING, ALL_MEASURANDS, "Sample.Periodic", T0)
    assert value["timestamp"] == "2026-01-05T16:00:00.000Z"
    by_key = {(s["measurand"], s.get("phase")): s for s in value["sampledValue"]}
    assert by_key[("Energy.Active.Import.Register", None)]["value"] == "12345"
    assert by_key[("Energy.Active.Import.Register", None)]["unit"] == "Wh"
    assert {p for m, p in by_key if m == "Current.Import"} == {"L1", "L2", "L3"}
    assert by_key[("SoC", None)] | {"value": "55.5"} == by_key[("SoC", None)]
    assert by_key[("SoC", None)]["location"] == "EV"
    assert by_key[("Voltage", "L1-N")]["unit"] == "V"
    no_car = messages.sampled_values(
        MeterReading(0, 0.0, (0.0,), 0.0, 0.0, 230.0, None), ("SoC",), "Sample.Periodic"
    )
    assert no_car == []


def test_timestamps_need_a_time_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        messages.timestamp(datetime(2026, 1, 5, 16, 0))


# ---------------------------------------------------------------- the live table
def _snapshot(station_id: str, **changes: Any) -> StationSnapshot:
    values: dict[str, Any] = {
        "station_id": station_id,
        "status": ConnectorStatus.charging,
        "online": True,
        "limit_a": 16.0,
        "offered_a": 16.0,
        "current_a": 15.5,
        "power_w": 10695.0,
        "soc": 0.42,
        "target_soc": 0.8,
        "session_energy_wh": 5300.0,
        "transaction_id": 7,
        "id_tag": "TAG01",
        "eta": T0 + timedelta(hours=3),
        "departure_at": T0 + timedelta(hours=2),
        "queued": 0,
    }
    values.update(changes)
    return StationSnapshot(**values)


def test_live_table_rows_show_limit_current_soc_and_a_late_eta() -> None:
    lines = render(
        "garage",
        T0,
        100,
        [
            _snapshot("CP01"),
            _snapshot(
                "CP02",
                status=ConnectorStatus.available,
                online=False,
                soc=None,
                limit_a=None,
                current_a=0.0,
                power_w=0.0,
                eta=None,
                departure_at=None,
            ),
        ],
        (31.0, 15.5, 15.5),
        61,
        notes=["a note"],
    )
    assert lines[0].startswith("garage  2026-01-05 16:00:00 (x100)  online 1/2  charging 1")
    assert "L1/L2/L3 31/16/16 A of 61 A" in lines[0]
    assert lines[2].split() == [
        "CP01", "Charging", "16.0", "15.5", "10.7", "42>80%", "5.3", "19:00!", "18:00", "0",
    ]  # fmt: skip
    assert lines[3].split()[:3] == ["CP02", "Available*", "-"]  # * = offline
    assert lines[-1] == "a note"


def test_live_table_fits_the_terminal() -> None:
    snapshots = [_snapshot(f"CP{n:03d}") for n in range(100)]
    lines = render("garage", T0, 100, snapshots, (0.0, 0.0, 0.0), 125, max_rows=10)
    assert len(lines) == 2 + 10
    assert lines[-1] == "... 91 more stations"
