"""What a charger can do, read from it (GetConfiguration), stored, shown and acted on.

Issue 9 findings 9 and 11: a charger marked unmanaged can be counted as managed again
(CLI, monitor) and the reason is shown; the rate unit, stack level 0 quirk and wiring come
from the charger's own configuration keys instead of flags typed by a person.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from csms.clock import ClockAnchor
from csms.controller.capabilities import (
    CAPABILITY_KEYS,
    NOTHING_KNOWN,
    Capabilities,
    capabilities_from_json,
    capabilities_to_json,
    charger_may_set_wiring,
    parse_configuration,
    preferred_rate_unit,
    read_capabilities,
    station_wiring,
    wiring_from_rotation,
)
from csms.errors import CallFailedError, NotConnectedError, NotFoundError
from csms.monitor import actions
from csms.store import migrate
from csms.store import models as m
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.test_monitor_apptest import log_in_as_manager

T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
SECRET = "s3cr3t-authorization-key"  # a test value that must never leak


def conf(**values: Any) -> dict[str, Any]:
    """A GetConfiguration.conf payload with ``values`` as its configuration keys."""
    return {
        "configurationKey": [
            {"key": key, "readonly": True, "value": value} for key, value in values.items()
        ]
    }


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("value", "units"),
    [
        ("Power", frozenset({"Power"})),
        ("Current", frozenset({"Current"})),
        ("Current,Power", frozenset({"Current", "Power"})),
        ("power, current", frozenset({"Current", "Power"})),
        (" POWER ", frozenset({"Power"})),
        ("W", frozenset({"Power"})),
        ("Current,Watts", frozenset({"Current"})),
        ("", None),
        ("Volts", None),
        (None, None),
        (16, None),
    ],
)
def test_rate_units(value: Any, units: frozenset[str] | None) -> None:
    answer = conf(ChargingScheduleAllowedChargingRateUnit=value)
    assert parse_configuration(answer).rate_units == units


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("8", 8),
        (" 3 ", 3),
        ("0", 0),
        (10, 10),
        ("+4", 4),
        ("-1", None),
        ("eight", None),
        ("8.5", None),
        ("", None),
        (None, None),
        (True, None),
        ("99999999999999", None),
    ],
)
def test_numbers_junk_is_none(value: Any, number: int | None) -> None:
    caps = parse_configuration(
        conf(
            ChargeProfileMaxStackLevel=value,
            MaxChargingProfilesInstalled=value,
            MeterValueSampleInterval=value,
        )
    )
    assert caps.max_stack_level == number
    assert caps.max_profiles == number
    assert caps.meter_sample_interval_s == number


def test_max_periods_must_be_at_least_one() -> None:
    assert parse_configuration(conf(ChargingScheduleMaxPeriods="0")).max_periods is None
    assert parse_configuration(conf(ChargingScheduleMaxPeriods="48")).max_periods == 48


@pytest.mark.parametrize(
    ("value", "rotation"),
    [
        ("0.RST, 1.RST, 2.RTS", {0: "RST", 1: "RST", 2: "RTS"}),
        ("1.STR", {1: "STR"}),
        ("1.str", {1: "STR"}),
        (" 1 . TSR ,2.TRS", {1: "TSR", 2: "TRS"}),
        ("1.NotApplicable", {1: "NotApplicable"}),
        ("1.notapplicable,2.UNKNOWN", {1: "NotApplicable", 2: "Unknown"}),
        ("NotApplicable", {0: "NotApplicable"}),
        ("Unknown", {0: "Unknown"}),
        ("SRT", {0: "SRT"}),
        ("1.RST,1.TSR", {1: "RST"}),
        ("1.RSS, x.RST, 2.ABC, 3.RST", {3: "RST"}),
        ("1.RST;2.RST", None),
        ("", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_phase_rotation(value: Any, rotation: dict[int, str] | None) -> None:
    assert parse_configuration(conf(ConnectorPhaseRotation=value)).phase_rotation == rotation


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({}, NOTHING_KNOWN),
        ({"configurationKey": "junk"}, NOTHING_KNOWN),
        ({"configurationKey": [1, None, {"value": "8"}, {"key": 7}]}, NOTHING_KNOWN),
        ({"unknownKey": list(CAPABILITY_KEYS)}, NOTHING_KNOWN),
        (
            {"configurationKey": [{"key": "ChargeProfileMaxStackLevel", "readonly": True}]},
            NOTHING_KNOWN,
        ),
    ],
)
def test_junk_answers_give_nothing_known(answer: dict[str, Any], expected: Capabilities) -> None:
    assert parse_configuration(answer) == expected


def test_a_full_answer_and_key_spelling_tolerance() -> None:
    answer = {
        "configurationKey": [
            {"key": "chargingscheduleallowedchargingrateunit", "readonly": True, "value": "Power"},
            {"key": " ChargeProfileMaxStackLevel ", "readonly": True, "value": "0"},
            {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "9"},
            {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "20"},
            {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "24"},
            {"key": "ConnectorPhaseRotation", "readonly": False, "value": "0.RST,1.STR"},
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
            {
                "key": "MeterValuesSampledData",
                "readonly": False,
                "value": "Energy.Active.Import.Register, Current.Import,,SoC",
            },
            {"key": "AuthorizationKey", "readonly": False, "value": SECRET},
        ],
        "unknownKey": [],
    }
    caps = parse_configuration(answer)
    assert caps == Capabilities(
        rate_units=frozenset({"Power"}),
        max_stack_level=0,  # the first entry of a key wins
        max_profiles=20,
        max_periods=24,
        phase_rotation={0: "RST", 1: "STR"},
        meter_sample_interval_s=60,
        sampled_data=("Energy.Active.Import.Register", "Current.Import", "SoC"),
    )
    assert SECRET not in repr(caps) and SECRET not in json.dumps(capabilities_to_json(caps))
    assert capabilities_from_json(capabilities_to_json(caps)) == caps


def test_capabilities_json_round_trip_and_junk() -> None:
    assert capabilities_from_json(capabilities_to_json(NOTHING_KNOWN)) == NOTHING_KNOWN
    assert capabilities_from_json(None) is None
    assert capabilities_from_json("x") is None
    odd = capabilities_from_json(
        {"rate_units": ["Power", "Volt"], "max_stack_level": "3", "phase_rotation": {"a": "RST"}}
    )
    assert odd == Capabilities(frozenset({"Power"}), None, None, None, {}, None, None)


# ------------------------------------------------------------ derived values
@pytest.mark.parametrize(
    ("units", "quirk", "unit"),
    [
        ("Power", "A", "W"),
        ("Current", "W", "A"),
        ("Current,Power", "W", "A"),
        ("Current,Power", "A", "A"),
        (None, "W", "W"),
        ("junk", "A", "A"),
    ],
)
def test_preferred_rate_unit(units: str | None, quirk: str, unit: str) -> None:
    caps = parse_configuration(conf(ChargingScheduleAllowedChargingRateUnit=units))
    assert preferred_rate_unit(caps, quirk) == unit
    assert preferred_rate_unit(None, quirk) == quirk


@pytest.mark.parametrize(
    ("value", "connector", "phases", "wiring"),
    [
        ("1.RST", 1, 3, "L1L2L3"),
        ("1.STR", 1, 3, "L2L3L1"),  # station L1 on supply L2
        ("1.TRS", 1, 3, "L3L1L2"),
        ("1.RTS", 1, 3, "L1L3L2"),
        ("1.SRT", 1, 3, "L2L1L3"),
        ("1.TSR", 1, 3, "L3L2L1"),
        ("1.STR", 1, 1, "L2"),  # a one-phase station on the first phase of the rotation
        ("0.TRS", 1, 3, "L3L1L2"),  # no entry for the connector: the charge point's
        ("0.TRS, 1.RST", 1, 3, "L1L2L3"),
        ("1.NotApplicable", 1, 3, None),
        ("1.Unknown", 1, 3, None),
        ("2.STR", 1, 3, None),
        ("1.STR", 1, 2, None),
        (None, 1, 3, None),
    ],
)
def test_wiring_from_rotation(
    value: str | None, connector: int, phases: int, wiring: str | None
) -> None:
    caps = parse_configuration(conf(ConnectorPhaseRotation=value))
    assert wiring_from_rotation(caps, connector, phases) == wiring


@pytest.mark.parametrize(
    ("value", "wiring"),
    [
        ("1.STR, 2.STR", "L2L3L1"),
        ("1.STR, 2.NotApplicable", "L2L3L1"),
        ("1.STR, 2.TRS", None),  # connectors disagree: a person decides
        ("0.TRS, 1.Unknown", "L3L1L2"),
        ("0.TRS", "L3L1L2"),
        ("1.Unknown", None),
    ],
)
def test_station_wiring(value: str, wiring: str | None) -> None:
    caps = parse_configuration(conf(ConnectorPhaseRotation=value))
    assert station_wiring(caps, 3) == wiring


@pytest.mark.parametrize(
    ("wiring", "set_by", "phases", "may"),
    [
        ("L1L2L3", "manager", 3, True),  # the default says nothing
        ("L1", "manager", 1, True),
        ("L2L3L1", "manager", 3, False),  # typed by a person: it wins
        ("L3", "manager", 1, False),
        ("L2L3L1", "charger", 3, True),
    ],
)
def test_charger_may_set_wiring(wiring: str, set_by: str, phases: int, may: bool) -> None:
    assert charger_may_set_wiring(wiring, set_by, phases) is may


def test_override_respects_the_reported_stack_level() -> None:
    assert actions.override_stack_level(False) == actions.OVERRIDE_STACK_LEVEL
    assert actions.override_stack_level(False, 3) == 3
    assert actions.override_stack_level(False, 20) == actions.OVERRIDE_STACK_LEVEL
    assert actions.override_stack_level(True, 10) == 0
    assert not actions.override_prevails(1) and actions.override_prevails(2)
    _, payload = actions.set_limit(1, 7, 16.0, max_current_a=16.0, max_stack_level=4)
    assert payload["csChargingProfiles"]["stackLevel"] == 4
    _, payload = actions.pause(1, 7, rate_unit="W", phases=3, voltage_v=230.0)
    assert payload["csChargingProfiles"]["chargingSchedule"]["chargingRateUnit"] == "W"


# --------------------------------------------------------- read_capabilities
@dataclass
class FakeCall:
    """Stands in for CentralSystem.call: records what it was asked, answers or raises."""

    answer: Any = None
    error: Exception | None = None
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, cp_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((cp_id, action, payload))
        if self.error is not None:
            raise self.error
        result: dict[str, Any] = self.answer
        return result


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record: message, extra fields and formatted text."""
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records) + caplog.text


async def test_read_capabilities_asks_the_seven_keys(caplog: pytest.LogCaptureFixture) -> None:
    call = FakeCall(
        answer=conf(ChargingScheduleAllowedChargingRateUnit="Power", ChargeProfileMaxStackLevel="3")
    )
    with caplog.at_level(logging.INFO):
        caps = await read_capabilities(call, "CP1")
    assert call.calls == [
        (
            "CP1",
            "GetConfiguration",
            {
                "key": [
                    "ChargingScheduleAllowedChargingRateUnit",
                    "ChargeProfileMaxStackLevel",
                    "MaxChargingProfilesInstalled",
                    "ChargingScheduleMaxPeriods",
                    "ConnectorPhaseRotation",
                    "MeterValueSampleInterval",
                    "MeterValuesSampledData",
                ]
            },
        )
    ]
    assert caps is not None
    assert caps.rate_units == frozenset({"Power"}) and caps.max_stack_level == 3
    assert "charger capabilities read" in caplog.text


@pytest.mark.parametrize(
    "error",
    [
        CallFailedError(
            "GetConfiguration: charge point answered NotSupported", code="NotSupported"
        ),
        CallFailedError("GetConfiguration: no answer within 30 s", code="Timeout"),
        NotConnectedError("charge point 'CP1' is not connected"),
    ],
)
async def test_read_capabilities_failure_is_none_and_logged(
    caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    with caplog.at_level(logging.INFO):
        assert await read_capabilities(FakeCall(error=error), "CP1") is None
    assert "charger capabilities not read" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


async def test_authorization_key_is_never_returned_nor_logged(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = conf(
        AuthorizationKey=SECRET,
        ChargingScheduleAllowedChargingRateUnit="Current,Power",
        ConnectorPhaseRotation="1.RST",
    )
    answer["unknownKey"] = [SECRET, "MeterValuesSampledData"]
    with caplog.at_level(logging.DEBUG):
        caps = await read_capabilities(FakeCall(answer=answer), "CP1")
    assert caps is not None and caps.phase_rotation == {1: "RST"}
    assert SECRET not in repr(caps)
    assert SECRET not in json.dumps(capabilities_to_json(caps))
    assert caplog.records, "the read is logged"
    assert SECRET not in _logged(caplog)
    assert "AuthorizationKey" not in _logged(caplog)
    assert SECRET not in capsys.readouterr().err


async def test_read_capabilities_of_an_empty_answer_is_nothing_known() -> None:
    assert await read_capabilities(FakeCall(answer={}), "CP1") == NOTHING_KNOWN


# ------------------------------------------------------------ repository
class FrozenClock:
    """A clock that says what the test sets (never the wall clock)."""

    speed = 0.0

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    async def sleep(self, simulated_s: float) -> None:
        self.at += timedelta(seconds=simulated_s)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[Repository, FrozenClock]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'caps.db'}")
    await migrate.upgrade(engine)
    clock = FrozenClock(T0)
    try:
        yield Repository(create_sessionmaker(engine), clock=clock), clock
    finally:
        await engine.dispose()


async def test_unmanaged_reason_and_time_round_trip(
    store: tuple[Repository, FrozenClock],
) -> None:
    repo, clock = store
    await repo.add_charge_point("CP1")
    await repo.set_unmanaged("CP1", True)  # the old two-argument call still works
    info = await repo.get_charge_point("CP1")
    assert info is not None and info.unmanaged
    assert info.unmanaged_reason == "no reason given" and info.unmanaged_at == T0
    clock.at = T0 + timedelta(minutes=5)
    await repo.set_unmanaged("CP1", True, "Charger CP1 rejected its 10 A limit (Rejected)")
    info = await repo.get_charge_point("CP1")
    assert info is not None
    assert info.unmanaged_reason == "Charger CP1 rejected its 10 A limit (Rejected)"
    assert info.unmanaged_at == T0 + timedelta(minutes=5)
    await repo.set_unmanaged("CP1", False)
    info = await repo.get_charge_point("CP1")
    assert info is not None and not info.unmanaged
    assert info.unmanaged_reason is None and info.unmanaged_at is None


async def test_clear_unmanaged_returns_what_it_was(store: tuple[Repository, FrozenClock]) -> None:
    repo, _ = store
    await repo.add_charge_point("CP1")
    await repo.set_unmanaged("CP1", True, "draws 20 A above its 10 A limit")
    before = await repo.clear_unmanaged("CP1")
    assert before.unmanaged and before.unmanaged_reason == "draws 20 A above its 10 A limit"
    after = await repo.get_charge_point("CP1")
    assert after is not None and not after.unmanaged and after.unmanaged_reason is None
    again = await repo.clear_unmanaged("CP1")
    assert not again.unmanaged
    with pytest.raises(NotFoundError):
        await repo.clear_unmanaged("NOPE")


async def test_set_capabilities_applies_what_the_charger_says(
    store: tuple[Repository, FrozenClock],
) -> None:
    repo, _ = store
    await repo.add_charge_point("CP1")
    caps = parse_configuration(
        conf(
            ChargingScheduleAllowedChargingRateUnit="Power",
            ChargeProfileMaxStackLevel="0",
            MaxChargingProfilesInstalled="20",
            ChargingScheduleMaxPeriods="24",
            ConnectorPhaseRotation="1.STR",
        )
    )
    at = T0 + timedelta(seconds=3)
    changes = await repo.set_capabilities("CP1", caps, at)
    assert changes == {
        "rate_unit": ("A", "W"),
        "only_stack_level_0": (False, True),
        "wiring": ("L1L2L3", "L2L3L1"),
        "wiring_set_by": ("manager", "charger"),
    }
    info = await repo.get_charge_point("CP1")
    assert info is not None
    assert (info.rate_unit, info.only_stack_level_0, info.wiring) == ("W", True, "L2L3L1")
    assert (info.max_stack_level, info.max_profiles, info.max_periods) == (0, 20, 24)
    assert info.capabilities_read_at == at and info.wiring_set_by == "charger"
    assert (await repo.charge_point_capabilities()) == {"CP1": (caps, at)}
    # Read again, unchanged: nothing to report.
    assert await repo.set_capabilities("CP1", caps, at) == {}
    # The charger's later report replaces its own earlier wiring.
    rotated = parse_configuration(conf(ConnectorPhaseRotation="1.TRS"))
    assert (await repo.set_capabilities("CP1", rotated, at))["wiring"] == ("L2L3L1", "L3L1L2")
    info = await repo.get_charge_point("CP1")
    assert info is not None
    # Nothing said about the rate unit or stack levels: what was known stays.
    assert (info.rate_unit, info.only_stack_level_0) == ("W", True)


async def test_a_wiring_the_manager_typed_wins(store: tuple[Repository, FrozenClock]) -> None:
    repo, _ = store
    await repo.add_charge_point("CP1", wiring="L3L1L2")
    await repo.add_charge_point("CP2")
    caps = parse_configuration(
        conf(ConnectorPhaseRotation="1.STR", ChargingScheduleAllowedChargingRateUnit="Current")
    )
    assert "wiring" not in await repo.set_capabilities("CP1", caps, T0)
    await repo.set_capabilities("CP2", caps, T0)
    cp1, cp2 = await repo.get_charge_point("CP1"), await repo.get_charge_point("CP2")
    assert cp1 is not None and cp2 is not None
    assert (cp1.wiring, cp1.wiring_set_by) == ("L3L1L2", "manager")
    assert (cp2.wiring, cp2.wiring_set_by) == ("L2L3L1", "charger")
    # A manager edits CP2's wiring: from now on it is theirs.
    await repo.update_charge_point("CP2", wiring="L3L2L1")
    cp2 = await repo.get_charge_point("CP2")
    assert cp2 is not None and cp2.wiring_set_by == "manager"
    assert "wiring" not in await repo.set_capabilities("CP2", caps, T0)
    # Renaming keeps whoever set the wiring.
    await repo.set_capabilities("CP1", caps, T0)
    await repo.update_charge_point("CP1", name="Apt B12", wiring="L3L1L2")
    cp1 = await repo.get_charge_point("CP1")
    assert cp1 is not None and cp1.wiring_set_by == "manager"
    with pytest.raises(NotFoundError):
        await repo.set_capabilities("NOPE", caps, T0)


async def test_installed_profiles_round_trip(store: tuple[Repository, FrozenClock]) -> None:
    repo, _ = store
    await repo.add_charge_point("CP1")
    await repo.add_charge_point("CP2")
    assert await repo.installed_profiles() == {}
    mirror = {"1": [{"chargingProfileId": 101, "stackLevel": 1, "limit": 16.0}], "0": []}
    await repo.save_installed_profiles("CP1", mirror)
    assert await repo.installed_profiles() == {"CP1": mirror}
    await repo.save_installed_profiles("CP1", None)
    assert await repo.installed_profiles() == {}
    with pytest.raises(NotFoundError):
        await repo.save_installed_profiles("NOPE", {})


# ----------------------------------------------------------------- monitor
def _seed(url: str, fn: Any) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            await fn(Repository(create_sessionmaker(engine), clock=FrozenClock(T0)))
        finally:
            await engine.dispose()

    asyncio.run(run())


APP = Path(__file__).resolve().parents[1] / "monitor_app.py"
MONITOR_NOW = T0 + timedelta(hours=1)


@pytest.fixture(autouse=True)
def _release_streamlit_stores() -> Iterator[None]:
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def garage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'garage.db'}"

    async def seed(repo: Repository) -> None:
        await repo.add_charge_point("CP1", name="Apt A1")
        await repo.add_charge_point("CP2", name="Apt A2")
        await repo.set_unmanaged("CP1", True, "Charger CP1 refused its fail-safe default profiles")
        caps = parse_configuration(
            conf(
                ChargingScheduleAllowedChargingRateUnit="Current,Power",
                ChargeProfileMaxStackLevel="3",
                ConnectorPhaseRotation="1.TRS",
            )
        )
        await repo.set_capabilities("CP1", caps, T0)
        await repo.publish_clock(ClockAnchor.frozen(MONITOR_NOW), "test")

    _seed(url, seed)
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    return url


def _stations_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    log_in_as_manager(at, "stations")
    assert not at.exception, [e.value for e in at.exception]
    return at


def _unmanaged(url: str, cp_id: str) -> tuple[bool, str | None]:
    async def get() -> tuple[bool, str | None]:
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as s:
                row = await s.get(m.ChargePoint, cp_id)
                assert row is not None
                return row.unmanaged, row.unmanaged_reason
        finally:
            await engine.dispose()

    return asyncio.run(get())


def test_monitor_shows_why_and_counts_a_station_as_managed_again(garage: str) -> None:
    at = _stations_page()
    table = at.dataframe[0].value
    unmanaged = dict(zip(table["Station"], table["Unmanaged"], strict=True))
    assert unmanaged == {"CP1": "Charger CP1 refused its fail-safe default profiles", "CP2": "–"}

    at.selectbox(key="manage_station").set_value("CP1").run()
    warning = "\n".join(str(w.value) for w in at.warning)
    assert "counted at its maximum" in warning and "refused its fail-safe" in warning
    captions = "\n".join(str(c.value) for c in at.caption)
    assert "rate units Current,Power" in captions and "max stack level 3" in captions
    assert "phase rotation 1.TRS" in captions and "set by charger" in captions

    at.button(key="reset_managed").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert _unmanaged(garage, "CP1") == (False, None)
    assert "CP1 is managed again" in "\n".join(str(s.value) for s in at.success)
    table = at.dataframe[0].value
    assert set(table["Unmanaged"]) == {"–"}


def test_monitor_has_no_reset_button_for_a_managed_station(garage: str) -> None:
    at = _stations_page()
    at.selectbox(key="manage_station").set_value("CP2").run()
    assert not [b for b in at.button if b.key == "reset_managed"]
    assert "not read from the charger yet" in "\n".join(str(c.value) for c in at.caption)
    assert _unmanaged(garage, "CP1")[0] is True


def test_monitor_wiring_edit_is_the_managers(garage: str) -> None:
    at = _stations_page()
    at.selectbox(key="manage_station").set_value("CP1").run()
    at.text_input(key="edit_name").set_value("Apartment A1")
    at.button(key="edit_save").click().run()

    async def wiring() -> tuple[str, str]:
        engine = create_engine(garage)
        try:
            async with create_sessionmaker(engine)() as s:
                row = await s.get(m.ChargePoint, "CP1")
                assert row is not None
                return row.wiring, row.wiring_set_by
        finally:
            await engine.dispose()

    assert asyncio.run(wiring()) == ("L3L1L2", "charger")  # a rename keeps who set it
    at.text_input(key="edit_wiring").set_value("L2L3L1")
    at.button(key="edit_save").click().run()
    assert not at.error, [e.value for e in at.error]
    assert asyncio.run(wiring()) == ("L2L3L1", "manager")
