"""Charging-profile arithmetic (csms.profiles) against OCPP 1.6 section 3.13.

Section numbers refer to OCPP 1.6 edition 2 and its errata sheet v4.0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ocpp
import pytest
from jsonschema import Draft4Validator

from csms.profiles import (
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    ProfileError,
    ProfileRejectedError,
    ProfileStore,
    RecurrencyKind,
    composite_from_ocpp,
    composite_schedule,
    composite_to_ocpp,
    default_profile,
    format_ocpp_datetime,
    limit_at,
    limit_timeline,
    profile_from_ocpp,
    profile_to_ocpp,
    tx_profile,
)

MAX = ChargingProfilePurpose.ChargePointMaxProfile
DEFAULT = ChargingProfilePurpose.TxDefaultProfile
TX = ChargingProfilePurpose.TxProfile
ABSOLUTE = ChargingProfileKind.Absolute
RECURRING = ChargingProfileKind.Recurring
RELATIVE = ChargingProfileKind.Relative
A = ChargingRateUnit.A
W = ChargingRateUnit.W

SCHEMAS = Path(ocpp.__file__).parent / "v16" / "schemas"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def make(
    profile_id: int,
    stack_level: int,
    purpose: ChargingProfilePurpose,
    kind: ChargingProfileKind,
    periods: Sequence[tuple[int, float] | tuple[int, float, int | None]],
    *,
    unit: ChargingRateUnit = A,
    duration_s: int | None = None,
    start: str | None = None,
    recurrency: RecurrencyKind | None = None,
    transaction_id: int | None = None,
    valid_from: str | None = None,
    valid_to: str | None = None,
    min_rate: float | None = None,
) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=kind,
        schedule=ChargingSchedule(
            rate_unit=unit,
            periods=[ChargingSchedulePeriod(*p) for p in periods],
            duration_s=duration_s,
            start_schedule=utc(start) if start else None,
            min_charging_rate=min_rate,
        ),
        transaction_id=transaction_id,
        recurrency_kind=recurrency,
        valid_from=utc(valid_from) if valid_from else None,
        valid_to=utc(valid_to) if valid_to else None,
    )


def store_with(*installs: tuple[int, ChargingProfile], tx: int | None = None) -> ProfileStore:
    store = ProfileStore()
    for connector_id, profile in installs:
        store = store.install(connector_id, profile, transaction_id=tx)
    return store


def amps_at(
    store: ProfileStore,
    when: str,
    connector_id: int = 1,
    *,
    tx: int | None = None,
    tx_start: str | None = None,
) -> float | None:
    limit = limit_at(
        store,
        connector_id,
        utc(when),
        transaction_id=tx,
        transaction_start=utc(tx_start) if tx_start else None,
    )
    return None if limit is None else round(limit.current_a, 2)


def periods_of(schedule: ChargingSchedule) -> list[tuple[int, float]]:
    return [(p.start_period_s, p.limit) for p in schedule.periods]


def composite(
    store: ProfileStore,
    start: str,
    duration_s: int,
    unit: ChargingRateUnit = A,
    connector_id: int = 1,
    *,
    tx: int | None = None,
    tx_start: str | None = None,
) -> ChargingSchedule:
    return composite_schedule(
        store,
        connector_id,
        utc(start),
        duration_s,
        unit,
        transaction_id=tx,
        transaction_start=utc(tx_start) if tx_start else None,
        voltage_v=230,
        default_phases=3,
    )


def schema_errors(schema_name: str, payload: dict[str, Any]) -> list[str]:
    """Validate like the `ocpp` library does for these messages (numbers as Decimal)."""
    schema = json.loads((SCHEMAS / schema_name).read_text(), parse_float=Decimal)
    instance = json.loads(json.dumps(payload), parse_float=Decimal)
    return [e.message for e in Draft4Validator(schema).iter_errors(instance)]


# --- Spec 3.13.7: the example data structure -------------------------------------------

SPEC_DAILY_DEFAULT: dict[str, Any] = {
    "chargingProfileId": 100,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "chargingSchedule": {
        "duration": 86400,
        "startSchedule": "2013-01-01T00:00Z",
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 11000, "numberPhases": 3},
            {"startPeriod": 28800, "limit": 6000, "numberPhases": 3},
            {"startPeriod": 72000, "limit": 11000, "numberPhases": 3},
        ],
    },
}


@pytest.mark.parametrize(
    ("when", "power_w"),
    [
        ("2026-01-05T07:59:59Z", 11000),
        ("2026-01-05T08:00:00Z", 6000),
        ("2026-01-05T19:59:59Z", 6000),
        ("2026-01-05T20:00:00Z", 11000),
        ("2026-01-06T00:00:00Z", 11000),
        ("2013-01-01T12:00:00Z", 6000),
    ],
)
def test_spec_example_daily_default_limits_power_to_6kw_between_8_and_20(
    when: str, power_w: float
) -> None:
    store = store_with((0, profile_from_ocpp(SPEC_DAILY_DEFAULT)))
    limit = limit_at(store, 1, utc(when), transaction_id=None, transaction_start=None)
    assert limit is not None
    assert limit.power_w == power_w
    assert limit.number_phases == 3
    assert limit.current_a == pytest.approx(power_w / (230 * 3))


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        (W, [(0, 11000.0), (7200, 6000.0), (50400, 11000.0)]),
        # 11000 / 690 = 15.94 and 6000 / 690 = 8.69: rounded down, never above the limit.
        (A, [(0, 15.9), (7200, 8.6), (50400, 15.9)]),
    ],
)
def test_spec_example_composite_for_a_day_has_a_period_only_where_the_limit_changes(
    unit: ChargingRateUnit, expected: list[tuple[int, float]]
) -> None:
    store = store_with((0, profile_from_ocpp(SPEC_DAILY_DEFAULT)))
    schedule = composite(store, "2026-01-05T06:00:00Z", 86400, unit)
    assert periods_of(schedule) == expected
    assert schedule.duration_s == 86400
    assert schedule.start_schedule == utc("2026-01-05T06:00:00Z")


# --- Spec 3.13.2: stacking --------------------------------------------------------------

HOUR = 3600
# Weekly TxDefaultProfile from Monday 2024-01-01: full power (32 A) on weekdays 23:00-06:00
# and all weekend, reduced (10 A) otherwise.
WEEKLY_CALENDAR = make(
    1,
    0,
    DEFAULT,
    RECURRING,
    [(0, 32)]
    + [p for day in range(5) for p in [((day * 24 + 6) * HOUR, 10), ((day * 24 + 23) * HOUR, 32)]],
    duration_s=7 * 24 * HOUR,
    start="2024-01-01T00:00:00Z",
    recurrency=RecurrencyKind.Weekly,
)
# On top of it, an exception for New Year's Day (a Monday): full power all day.
HOLIDAY = make(
    2, 1, DEFAULT, ABSOLUTE, [(0, 32)], duration_s=24 * HOUR, start="2024-01-01T00:00:00Z"
)


@pytest.mark.parametrize(
    ("when", "expected_a"),
    [
        ("2024-01-01T12:00:00Z", 32),  # holiday exception, stack level 1
        ("2024-01-02T12:00:00Z", 10),  # exception elapsed: back to the weekly calendar
        ("2024-01-02T23:00:00Z", 32),  # weekday night
        ("2024-01-03T05:59:59Z", 32),
        ("2024-01-03T06:00:00Z", 10),
        ("2024-01-05T22:59:59Z", 10),  # Friday evening
        ("2024-01-06T12:00:00Z", 32),  # weekend
        ("2024-01-07T23:59:59Z", 32),  # across the week boundary ...
        ("2024-01-08T05:59:59Z", 32),
        ("2024-01-08T12:00:00Z", 10),  # ... a normal Monday: no exception this week
    ],
)
def test_spec_stacking_weekly_calendar_with_holiday_exception(when: str, expected_a: float) -> None:
    store = store_with((1, WEEKLY_CALENDAR), (1, HOLIDAY))
    assert amps_at(store, when) == expected_a


# The brief's variant: a base default, a higher weekend profile and a still higher evening
# profile; each falls back to the level below when its duration is over (errata 3.43).
BASE = make(10, 0, DEFAULT, ABSOLUTE, [(0, 10)], start="2024-01-01T00:00:00Z")
WEEKEND = make(
    11,
    1,
    DEFAULT,
    RECURRING,
    [(0, 32)],
    duration_s=48 * HOUR,
    start="2024-01-06T00:00:00Z",
    recurrency=RecurrencyKind.Weekly,
)
EVENING = make(
    12,
    2,
    DEFAULT,
    RECURRING,
    [(0, 6)],
    duration_s=4 * HOUR,
    start="2024-01-01T17:00:00Z",
    recurrency=RecurrencyKind.Daily,
)


@pytest.mark.parametrize(
    ("when", "expected_a"),
    [
        ("2024-01-03T12:00:00Z", 10),  # weekday: base
        ("2024-01-03T18:00:00Z", 6),  # weekday evening
        ("2024-01-03T21:00:00Z", 10),  # evening over: base again
        ("2024-01-06T12:00:00Z", 32),  # Saturday: weekend
        ("2024-01-06T18:00:00Z", 6),  # evening outranks weekend
        ("2024-01-07T23:30:00Z", 32),  # Sunday night: weekend again
        ("2024-01-08T00:00:00Z", 10),  # Monday: weekend over
        ("2024-01-13T12:00:00Z", 32),  # next weekend
    ],
)
def test_spec_stacking_highest_applicable_stack_level_wins(when: str, expected_a: float) -> None:
    store = store_with((0, BASE), (0, WEEKEND), (0, EVENING))
    assert amps_at(store, when) == expected_a


def test_stacked_composite_for_a_saturday_shows_evening_dip() -> None:
    store = store_with((0, BASE), (0, WEEKEND), (0, EVENING))
    schedule = composite(store, "2024-01-06T00:00:00Z", 24 * HOUR)
    assert periods_of(schedule) == [(0, 32), (17 * HOUR, 6), (21 * HOUR, 32)]


# --- Spec 3.13.3: combining purposes ----------------------------------------------------

CHARGE_POINT_MAX = make(
    1, 0, MAX, ABSOLUTE, [(0, 32), (3600, 16), (7200, 32)], start="2024-01-01T18:00:00Z"
)
TRANSACTION = make(2, 0, TX, RELATIVE, [(0, 25), (5400, 10)], transaction_id=7)
TX_START = "2024-01-01T18:00:00Z"


def test_spec_composite_of_charge_point_max_and_tx_profile_is_the_minimum_per_interval() -> None:
    store = ProfileStore().install(0, CHARGE_POINT_MAX).install(1, TRANSACTION, transaction_id=7)
    schedule = composite(store, "2024-01-01T18:00:00Z", 3 * HOUR, tx=7, tx_start=TX_START)
    # 0-1 h min(32, 25); 1-1.5 h min(16, 25); then 10 A, also when the max rises again at 2 h.
    assert periods_of(schedule) == [(0, 25), (3600, 16), (5400, 10)]


@pytest.mark.parametrize(
    ("when", "expected_a", "binding_ids"),
    [
        ("2024-01-01T18:30:00Z", 25, (1, 2)),
        ("2024-01-01T19:10:00Z", 16, (1, 2)),
        ("2024-01-01T20:30:00Z", 10, (1, 2)),
    ],
)
def test_limit_at_agrees_with_composite_and_names_the_combined_profiles(
    when: str, expected_a: float, binding_ids: tuple[int, ...]
) -> None:
    store = ProfileStore().install(0, CHARGE_POINT_MAX).install(1, TRANSACTION, transaction_id=7)
    limit = limit_at(store, 1, utc(when), transaction_id=7, transaction_start=utc(TX_START))
    assert limit is not None
    assert limit.current_a == expected_a
    assert limit.profile_ids == binding_ids


@pytest.mark.parametrize(
    ("tx", "expected_a"),
    [(7, 20), (None, 10), (8, 10)],  # running tx 7; no transaction; another transaction
)
def test_tx_profile_overrules_tx_default_only_for_its_transaction(
    tx: int | None, expected_a: float
) -> None:
    store = (
        ProfileStore()
        .install(1, make(1, 0, DEFAULT, RELATIVE, [(0, 10)]))
        .install(1, make(2, 0, TX, RELATIVE, [(0, 20)], transaction_id=7), transaction_id=7)
    )
    assert amps_at(store, "2024-01-01T12:00:00Z", tx=tx) == expected_a


def test_no_profile_means_no_limit() -> None:
    assert amps_at(ProfileStore(), "2024-01-01T12:00:00Z") is None


@pytest.mark.parametrize(
    ("installs", "connector_id", "expected_a"),
    [
        ([(0, make(1, 0, DEFAULT, RELATIVE, [(0, 10)]))], 2, 10),  # connector 0: every connector
        (
            [
                (0, make(1, 0, DEFAULT, RELATIVE, [(0, 10)])),
                (1, make(2, 0, DEFAULT, RELATIVE, [(0, 16)])),
            ],
            1,
            16,  # same stack level: the connector's own replaces connector 0's (3.13.1)
        ),
        (
            [
                (0, make(1, 0, DEFAULT, RELATIVE, [(0, 10)])),
                (1, make(2, 0, DEFAULT, RELATIVE, [(0, 16)])),
            ],
            2,
            10,  # ... only for that connector
        ),
        (
            [
                (0, make(1, 1, DEFAULT, RELATIVE, [(0, 10)])),
                (1, make(2, 0, DEFAULT, RELATIVE, [(0, 16)])),
            ],
            1,
            10,  # a higher stack level on connector 0 still wins
        ),
    ],
)
def test_tx_default_on_connector_0_applies_to_all_connectors(
    installs: list[tuple[int, ChargingProfile]], connector_id: int, expected_a: float
) -> None:
    assert amps_at(store_with(*installs), "2024-01-01T12:00:00Z", connector_id) == expected_a


def test_connector_0_composite_is_the_charge_point_max_only() -> None:
    store = store_with(
        (0, make(1, 0, MAX, ABSOLUTE, [(0, 40)], start="2024-01-01T00:00:00Z")),
        (0, make(2, 0, DEFAULT, RELATIVE, [(0, 10)])),
    )
    schedule = composite(store, "2024-01-01T12:00:00Z", HOUR, connector_id=0)
    assert periods_of(schedule) == [(0, 40)]


# --- Installing and replacing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # same id, other stack level and connector: replaced
        (
            (1, make(5, 0, DEFAULT, RELATIVE, [(0, 10)])),
            (2, make(5, 3, DEFAULT, RELATIVE, [(0, 16)])),
            [(2, 5, 3)],
        ),
        # same stack level and purpose on the same connector, other id: replaced
        (
            (1, make(5, 2, DEFAULT, RELATIVE, [(0, 10)])),
            (1, make(6, 2, DEFAULT, RELATIVE, [(0, 16)])),
            [(1, 6, 2)],
        ),
        # same stack level and purpose on another connector: both kept
        (
            (1, make(5, 2, DEFAULT, RELATIVE, [(0, 10)])),
            (2, make(6, 2, DEFAULT, RELATIVE, [(0, 16)])),
            [(1, 5, 2), (2, 6, 2)],
        ),
        # same stack level, other purpose: both kept
        (
            (0, make(5, 2, DEFAULT, RELATIVE, [(0, 10)])),
            (0, make(6, 2, MAX, RELATIVE, [(0, 16)])),
            [(0, 5, 2), (0, 6, 2)],
        ),
    ],
)
def test_new_profile_replaces_same_id_or_same_stack_level_and_purpose(
    first: tuple[int, ChargingProfile],
    second: tuple[int, ChargingProfile],
    expected: list[tuple[int, int, int]],
) -> None:
    store = store_with(first, second)
    assert [
        (e.connector_id, e.profile.profile_id, e.profile.stack_level) for e in store.entries
    ] == (expected)


@pytest.mark.parametrize(
    ("store", "connector_id", "profile", "tx", "message"),
    [
        (ProfileStore(), 1, make(1, 0, TX, RELATIVE, [(0, 16)]), None, "no transaction is active"),
        (
            ProfileStore(),
            1,
            make(1, 0, TX, RELATIVE, [(0, 16)], transaction_id=8),
            7,
            "does not match",
        ),
        (ProfileStore(), 0, make(1, 0, TX, RELATIVE, [(0, 16)]), 7, "connector > 0"),
        (
            ProfileStore(),
            1,
            make(1, 0, MAX, RELATIVE, [(0, 16)]),
            None,
            "only be set on connector 0",
        ),
        (
            ProfileStore(max_stack_level=0),
            0,
            make(1, 1, DEFAULT, RELATIVE, [(0, 16)]),
            None,
            "ChargeProfileMaxStackLevel",
        ),
        (
            ProfileStore(allowed_rate_units=frozenset({A})),
            0,
            make(1, 0, DEFAULT, RELATIVE, [(0, 11000)], unit=W),
            None,
            "ChargingScheduleAllowedChargingRateUnit",
        ),
        (
            ProfileStore(max_periods=1),
            0,
            make(1, 0, DEFAULT, RELATIVE, [(0, 16), (60, 8)]),
            None,
            "ChargingScheduleMaxPeriods",
        ),
        (
            ProfileStore(connector_count=2),
            3,
            make(1, 0, DEFAULT, RELATIVE, [(0, 16)]),
            None,
            "unknown connector 3",
        ),
        (
            ProfileStore(max_profiles=1).install(0, make(9, 0, MAX, RELATIVE, [(0, 40)])),
            0,
            make(1, 0, DEFAULT, RELATIVE, [(0, 16)]),
            None,
            "MaxChargingProfilesInstalled",
        ),
    ],
)
def test_install_rejects_what_the_spec_and_the_charger_configuration_forbid(
    store: ProfileStore, connector_id: int, profile: ChargingProfile, tx: int | None, message: str
) -> None:
    with pytest.raises(ProfileRejectedError, match=message):
        store.install(connector_id, profile, transaction_id=tx)


@pytest.mark.parametrize("profile_tx", [7, None])
def test_tx_profile_accepted_for_the_running_transaction(profile_tx: int | None) -> None:
    profile = make(1, 0, TX, RELATIVE, [(0, 16)], transaction_id=profile_tx)
    store = ProfileStore().install(1, profile, transaction_id=7)
    assert store.profiles_on(1) == (profile,)


def test_replacing_a_profile_does_not_count_against_max_profiles() -> None:
    store = ProfileStore(max_profiles=1).install(0, make(1, 0, MAX, RELATIVE, [(0, 40)]))
    store = store.install(0, make(1, 0, MAX, RELATIVE, [(0, 30)]))
    assert [p.schedule.periods[0].limit for p in store.profiles_on(0)] == [30]


def test_remote_start_profile_applies_before_the_transaction_id_is_known() -> None:
    profile = make(1, 0, TX, RELATIVE, [(0, 8)])
    store = ProfileStore().install_remote_start_profile(1, profile)
    limit = limit_at(
        store, 1, utc("2024-01-01T19:00:00Z"), transaction_id=None, transaction_start=utc(TX_START)
    )
    assert limit is not None
    assert limit.current_a == 8
    with pytest.raises(ProfileRejectedError, match="must not be set"):
        ProfileStore().install_remote_start_profile(1, replace_tx(profile, 7))


def replace_tx(profile: ChargingProfile, transaction_id: int) -> ChargingProfile:
    return make(
        profile.profile_id,
        profile.stack_level,
        TX,
        RELATIVE,
        [(0, 8)],
        transaction_id=transaction_id,
    )


def test_end_of_transaction_removes_only_that_connectors_tx_profiles() -> None:
    store = (
        ProfileStore()
        .install(1, make(1, 0, DEFAULT, RELATIVE, [(0, 10)]))
        .install(1, make(2, 0, TX, RELATIVE, [(0, 16)]), transaction_id=7)
        .install(2, make(3, 0, TX, RELATIVE, [(0, 16)]), transaction_id=8)
    )
    after = store.end_transaction(1)
    assert [e.profile.profile_id for e in after.entries] == [1, 3]
    assert after.end_transaction(1) is after


# --- Validity and duration --------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected_a"),
    [
        ("2024-01-01T09:59:59Z", 10),
        ("2024-01-01T10:00:00Z", 20),  # validFrom reached
        ("2024-01-01T11:59:59Z", 20),
        ("2024-01-01T12:00:00Z", 10),  # validTo reached: falls back to the lower level
    ],
)
def test_valid_from_and_valid_to_bound_a_profile(when: str, expected_a: float) -> None:
    store = store_with(
        (1, make(1, 0, DEFAULT, RELATIVE, [(0, 10)])),
        (
            1,
            make(
                2,
                1,
                DEFAULT,
                RELATIVE,
                [(0, 20)],
                valid_from="2024-01-01T10:00:00Z",
                valid_to="2024-01-01T12:00:00Z",
            ),
        ),
    )
    assert amps_at(store, when) == expected_a


@pytest.mark.parametrize(
    ("when", "expected_a"),
    [
        ("2024-01-01T09:59:59Z", None),  # not started yet
        ("2024-01-01T10:00:00Z", 16),
        ("2024-01-01T10:59:59Z", 16),
        ("2024-01-01T11:00:00Z", None),  # duration elapsed
    ],
)
def test_absolute_profile_applies_from_start_schedule_until_its_duration_elapses(
    when: str, expected_a: float | None
) -> None:
    store = store_with(
        (1, make(1, 0, DEFAULT, ABSOLUTE, [(0, 16)], duration_s=HOUR, start="2024-01-01T10:00:00Z"))
    )
    assert amps_at(store, when) == expected_a


def test_elapsed_duration_falls_back_to_lower_stack_level_then_to_no_limit() -> None:
    start = "2024-01-01T10:00:00Z"
    store = store_with(
        (
            1,
            make(
                1, 0, DEFAULT, ABSOLUTE, [(0, 6), (100, 8), (200, 10)], duration_s=400, start=start
            ),
        ),
        (1, make(2, 1, DEFAULT, ABSOLUTE, [(0, 16), (100, 12)], duration_s=150, start=start)),
    )
    schedule = composite(store, start, 500)
    # After 400 s no profile applies: the composite reports the unlimited value (32 A).
    assert periods_of(schedule) == [(0, 16), (100, 12), (150, 8), (200, 10), (400, 32)]
    changes = limit_timeline(store, 1, utc(start), 500, transaction_id=None, transaction_start=None)
    assert changes[-1].at == utc(start) + timedelta(seconds=400)
    assert changes[-1].limit is None


# --- Recurring --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected_a"),
    [
        ("2024-01-01T21:59:59Z", None),  # before the first startSchedule
        ("2024-01-01T22:00:00Z", 10),
        ("2024-01-02T01:59:59Z", 10),  # across midnight
        ("2024-01-02T02:00:00Z", 20),
        ("2024-01-02T21:59:59Z", 20),
        ("2024-01-02T22:00:00Z", 10),  # restarts the next day
        ("2024-03-15T23:00:00Z", 10),
    ],
)
def test_recurring_daily_restarts_every_day_across_midnight(
    when: str, expected_a: float | None
) -> None:
    store = store_with(
        (
            1,
            make(
                1,
                0,
                DEFAULT,
                RECURRING,
                [(0, 10), (4 * HOUR, 20)],
                start="2024-01-01T22:00:00Z",
                recurrency=RecurrencyKind.Daily,
            ),
        )
    )
    assert amps_at(store, when) == expected_a


def test_recurring_daily_composite_across_midnight() -> None:
    store = store_with(
        (
            1,
            make(
                1,
                0,
                DEFAULT,
                RECURRING,
                [(0, 10), (4 * HOUR, 20)],
                start="2024-01-01T22:00:00Z",
                recurrency=RecurrencyKind.Daily,
            ),
        )
    )
    schedule = composite(store, "2024-01-05T20:00:00Z", 8 * HOUR)
    assert periods_of(schedule) == [(0, 20), (2 * HOUR, 10), (6 * HOUR, 20)]


@pytest.mark.parametrize(
    ("when", "expected_a"),
    [
        ("2024-01-06T00:00:00Z", 8),  # Saturday: the week starts
        ("2024-01-07T23:59:59Z", 8),  # Sunday night
        ("2024-01-08T00:00:00Z", 16),  # Monday
        ("2024-01-12T23:59:59Z", 16),  # Friday night
        ("2024-01-13T00:00:00Z", 8),  # across the week boundary: restarts
        ("2024-06-01T12:00:00Z", 8),  # a Saturday months later
    ],
)
def test_recurring_weekly_restarts_every_week(when: str, expected_a: float) -> None:
    store = store_with(
        (
            0,
            make(
                1,
                0,
                MAX,
                RECURRING,
                [(0, 8), (2 * 24 * HOUR, 16)],
                start="2024-01-06T00:00:00Z",
                recurrency=RecurrencyKind.Weekly,
            ),
        )
    )
    assert amps_at(store, when) == expected_a


def test_recurring_period_beyond_the_recurrence_is_never_executed() -> None:
    # Errata 3.44: a period starting after 24 h of a Daily schedule is ignored.
    store = store_with(
        (
            1,
            make(
                1,
                0,
                DEFAULT,
                RECURRING,
                [(0, 10), (25 * HOUR, 20)],
                start="2024-01-01T00:00:00Z",
                recurrency=RecurrencyKind.Daily,
            ),
        )
    )
    assert amps_at(store, "2024-01-02T02:00:00Z") == 10


# --- Relative ---------------------------------------------------------------------------

RELATIVE_DEFAULT = make(1, 0, DEFAULT, RELATIVE, [(0, 16), (HOUR, 8)])


@pytest.mark.parametrize(
    ("when", "tx_start", "expected_a"),
    [
        ("2024-01-01T10:30:00Z", "2024-01-01T10:00:00Z", 16),
        ("2024-01-01T11:00:00Z", "2024-01-01T10:00:00Z", 8),
        ("2024-01-01T11:00:00Z", None, 16),  # no transaction: what a car plugging in now gets
        ("2024-01-01T09:00:00Z", "2024-01-01T10:00:00Z", None),  # before its start
    ],
)
def test_relative_schedule_runs_from_the_transaction_start(
    when: str, tx_start: str | None, expected_a: float | None
) -> None:
    store = store_with((1, RELATIVE_DEFAULT))
    tx = 7 if tx_start else None
    assert amps_at(store, when, tx=tx, tx_start=tx_start) == expected_a


@pytest.mark.parametrize(
    ("tx_start", "expected"),
    [
        ("2024-01-01T09:00:00Z", [(0, 8)]),  # started an hour ago
        (None, [(0, 16), (HOUR, 8)]),  # a car plugging in at the window start
    ],
)
def test_relative_composite_follows_the_transaction_start(
    tx_start: str | None, expected: list[tuple[int, float]]
) -> None:
    store = store_with((1, RELATIVE_DEFAULT))
    tx = 7 if tx_start else None
    schedule = composite(store, "2024-01-01T10:00:00Z", 2 * HOUR, tx=tx, tx_start=tx_start)
    assert periods_of(schedule) == expected


def test_absolute_without_start_schedule_runs_from_the_start_of_charging() -> None:
    # Spec 7.13: "If absent the schedule will be relative to start of charging."
    store = store_with((1, make(1, 0, DEFAULT, ABSOLUTE, [(0, 16), (HOUR, 8)])))
    assert amps_at(store, "2024-01-01T11:00:00Z", tx=7, tx_start="2024-01-01T10:00:00Z") == 8


# --- Units ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "limit", "phases", "default_phases", "current_a", "power_w", "used_phases"),
    [
        (W, 7360, 1, 3, 32.0, 7360, 1),
        (W, 7360, 3, 3, 10.67, 7360, 3),
        (W, 11000, None, 3, 15.94, 11000, 3),  # numberPhases omitted means 3 (7.12)
        (A, 16, 1, 3, 16.0, 3680, 1),
        (A, 16, 3, 3, 16.0, 11040, 3),
        (A, 16, None, 3, 16.0, 11040, 3),
        (A, 16, None, 1, 16.0, 3680, 1),  # a charger configured single-phase
    ],
)
def test_amperes_and_watts_convert_with_phases_and_voltage(
    unit: ChargingRateUnit,
    limit: float,
    phases: int | None,
    default_phases: int,
    current_a: float,
    power_w: float,
    used_phases: int,
) -> None:
    store = store_with((1, make(1, 0, DEFAULT, RELATIVE, [(0, limit, phases)], unit=unit)))
    result = limit_at(
        store,
        1,
        utc("2024-01-01T12:00:00Z"),
        transaction_id=None,
        transaction_start=None,
        voltage_v=230,
        default_phases=default_phases,
    )
    assert result is not None
    assert round(result.current_a, 2) == current_a
    assert result.power_w == pytest.approx(power_w)
    assert result.number_phases == used_phases


@pytest.mark.parametrize(
    ("unit", "limit", "phases", "composite_unit", "expected"),
    [
        (W, 7360, 1, A, 32.0),
        (W, 11000, 3, A, 15.9),  # 15.94 rounded down
        (A, 16, 1, W, 3680.0),
        (A, 16, 3, W, 11040.0),
        (A, 15.9, 3, W, 10971.0),
    ],
)
def test_composite_converts_to_the_requested_unit(
    unit: ChargingRateUnit,
    limit: float,
    phases: int,
    composite_unit: ChargingRateUnit,
    expected: float,
) -> None:
    store = store_with((1, make(1, 0, DEFAULT, RELATIVE, [(0, limit, phases)], unit=unit)))
    schedule = composite(store, "2024-01-01T12:00:00Z", HOUR, composite_unit)
    assert schedule.rate_unit is composite_unit
    assert schedule.periods == (ChargingSchedulePeriod(0, expected, phases),)


def test_one_phase_tx_profile_under_a_three_phase_power_cap_compares_at_one_phase() -> None:
    # 11 kW for the charge point allows 47.8 A on one phase, so the 16 A TxProfile binds.
    store = (
        ProfileStore()
        .install(0, make(1, 0, MAX, RELATIVE, [(0, 11000, 3)], unit=W))
        .install(1, make(2, 0, TX, RELATIVE, [(0, 16, 1)]), transaction_id=7)
    )
    limit = limit_at(
        store, 1, utc("2024-01-01T19:00:00Z"), transaction_id=7, transaction_start=utc(TX_START)
    )
    assert limit is not None
    assert (limit.current_a, limit.power_w, limit.number_phases) == (16, 3680, 1)


def test_min_charging_rate_is_kept_in_the_composite() -> None:
    store = store_with((1, make(1, 0, DEFAULT, RELATIVE, [(0, 16)], min_rate=6.5)))
    assert composite(store, "2024-01-01T12:00:00Z", HOUR).min_charging_rate == 6.5
    assert composite(store, "2024-01-01T12:00:00Z", HOUR, W).min_charging_rate == 4485.0


# --- ClearChargingProfile ---------------------------------------------------------------

CLEAR_STORE = (
    ProfileStore()
    .install(0, make(1, 0, MAX, RELATIVE, [(0, 40)]))
    .install(0, make(2, 0, DEFAULT, RELATIVE, [(0, 16)]))
    .install(1, make(3, 1, DEFAULT, RELATIVE, [(0, 16)]))
    .install(2, make(4, 1, DEFAULT, RELATIVE, [(0, 16)]))
    .install(1, make(5, 2, TX, RELATIVE, [(0, 16)]), transaction_id=7)
)


@pytest.mark.parametrize(
    ("criteria", "remaining", "cleared"),
    [
        ({"id": 3}, [1, 2, 4, 5], True),
        ({"id": 99}, [1, 2, 3, 4, 5], False),
        ({"id": 3, "connector_id": 2}, [1, 2, 4, 5], True),  # an id selects on its own
        ({"purpose": DEFAULT}, [1, 5], True),
        ({"stack_level": 1}, [1, 2, 5], True),
        ({"connector_id": 1}, [1, 2, 4], True),
        ({"connector_id": 0}, [3, 4, 5], True),  # 0 = the charge point's own profiles
        ({"connector_id": 1, "purpose": DEFAULT}, [1, 2, 4, 5], True),
        ({"purpose": MAX, "stack_level": 3}, [1, 2, 3, 4, 5], False),
        ({}, [], True),  # no criteria: everything
    ],
)
def test_clear_charging_profile_matches_by_id_or_by_all_given_criteria(
    criteria: dict[str, Any], remaining: list[int], cleared: bool
) -> None:
    store, result = CLEAR_STORE.clear(**criteria)
    assert [e.profile.profile_id for e in store.entries] == remaining
    assert result is cleared


# --- Serialisation ----------------------------------------------------------------------


def test_store_survives_a_json_round_trip() -> None:
    store = ProfileStore(
        max_stack_level=3, max_profiles=5, allowed_rate_units=frozenset({W}), connector_count=2
    ).install(0, make(1, 0, MAX, RELATIVE, [(0, 11000, 3)], unit=W))
    store = store.install(
        1, make(2, 1, TX, RELATIVE, [(0, 7360, 1)], unit=W, min_rate=1380), transaction_id=7
    )
    restored = ProfileStore.from_dict(json.loads(json.dumps(store.to_dict())))
    assert restored == store


def test_store_from_unknown_format_is_refused() -> None:
    with pytest.raises(ProfileError, match="format"):
        ProfileStore.from_dict({"format": "something-else", "profiles": []})


def test_store_from_dict_names_the_broken_stored_profile() -> None:
    saved = store_with((0, make(1, 0, MAX, RELATIVE, [(0, 40)]))).to_dict()
    saved["profiles"][0]["csChargingProfiles"]["stackLevel"] = -1
    with pytest.raises(ProfileError, match=r"profiles\[0\]: .*stackLevel must be >= 0"):
        ProfileStore.from_dict(saved)


OCPP_PROFILES: list[dict[str, Any]] = [
    {
        **SPEC_DAILY_DEFAULT,
        "chargingSchedule": {
            **SPEC_DAILY_DEFAULT["chargingSchedule"],
            "startSchedule": "2013-01-01T00:00:00Z",
        },
    },
    {
        "chargingProfileId": 7,
        "transactionId": 42,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "validFrom": "2024-01-01T10:00:00Z",
        "validTo": "2024-01-02T10:00:00.500000Z",
        "chargingSchedule": {
            "duration": 7200,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16.5},
                {"startPeriod": 900, "limit": 6.0, "numberPhases": 1},
            ],
            "minChargingRate": 6.1,
        },
    },
    {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": "2024-01-01T00:00:00Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 63.0}],
        },
    },
]


@pytest.mark.parametrize("payload", OCPP_PROFILES)
def test_ocpp_profile_round_trips_and_matches_the_official_schema(payload: dict[str, Any]) -> None:
    profile = profile_from_ocpp(payload)
    assert profile_to_ocpp(profile) == payload
    assert profile_from_ocpp(profile_to_ocpp(profile)) == profile
    request = {"connectorId": 1, "csChargingProfiles": profile_to_ocpp(profile)}
    assert schema_errors("SetChargingProfile.json", request) == []


def test_ocpp_profile_accepts_the_librarys_snake_case_and_decimals() -> None:
    # What an @on(SetChargingProfile) handler of the `ocpp` library receives.
    snake = {
        "charging_profile_id": 7,
        "stack_level": 1,
        "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": Decimal("16.1")}],
            "min_charging_rate": Decimal("6.0"),
        },
    }
    assert profile_from_ocpp(snake) == make(7, 1, DEFAULT, RELATIVE, [(0, 16.1)], min_rate=6)


def ocpp_with(
    change: dict[str, Any], schedule_change: dict[str, Any] | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": "2024-01-01T00:00:00Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
        },
    }
    payload.update(change)
    payload["chargingSchedule"] = {**payload["chargingSchedule"], **(schedule_change or {})}
    return {k: v for k, v in payload.items() if v is not None}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            ocpp_with({"chargingProfileId": None}),
            r"csChargingProfiles\.chargingProfileId is required",
        ),
        (ocpp_with({"chargingProfilePurpose": "Max"}), r"chargingProfilePurpose must be one of"),
        (ocpp_with({"stackLevel": True}), r"stackLevel must be an integer"),
        (ocpp_with({"stackLevel": -1}), r"stackLevel must be >= 0"),
        (ocpp_with({"foo": 1}), r"csChargingProfiles\.foo is not an allowed field"),
        (ocpp_with({"validFrom": "2024-01-01T00:00:00"}), r"validFrom must carry a time zone"),
        (ocpp_with({"validFrom": "yesterday"}), r"validFrom is not an ISO 8601"),
        (
            ocpp_with({"validFrom": "2024-01-02T00:00:00Z", "validTo": "2024-01-01T00:00:00Z"}),
            r"validTo .* must be after validFrom",
        ),
        (ocpp_with({"recurrencyKind": "Daily"}), r"recurrencyKind must be absent"),
        (ocpp_with({"chargingProfileKind": "Recurring"}), r"recurrencyKind is required"),
        (
            ocpp_with(
                {"chargingProfileKind": "Recurring", "recurrencyKind": "Daily"},
                {"startSchedule": None},
            ),
            r"startSchedule is required",
        ),
        (ocpp_with({"chargingProfileKind": "Relative"}), r"startSchedule must be absent"),
        (ocpp_with({"transactionId": 5}), r"transactionId is only allowed for a TxProfile"),
        (
            ocpp_with({}, {"chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.05}]}),
            r"chargingSchedulePeriod\[0\]: limit must be a multiple of 0\.1",
        ),
        (
            ocpp_with({}, {"chargingSchedulePeriod": [{"startPeriod": 0, "limit": "16"}]}),
            r"chargingSchedulePeriod\[0\]\.limit must be a number",
        ),
        (
            ocpp_with({}, {"chargingSchedulePeriod": [{"startPeriod": 60, "limit": 16}]}),
            r"chargingSchedulePeriod\[0\]\.startPeriod must be 0",
        ),
        (
            ocpp_with(
                {},
                {
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 16},
                        {"startPeriod": 0, "limit": 8},
                    ]
                },
            ),
            r"chargingSchedulePeriod\[1\]\.startPeriod must be greater",
        ),
        (
            ocpp_with(
                {}, {"chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16, "numberPhases": 4}]}
            ),
            r"numberPhases must be 1, 2 or 3",
        ),
        (ocpp_with({}, {"chargingSchedulePeriod": []}), r"at least one period"),
        (ocpp_with({}, {"duration": 0}), r"duration must be > 0"),
        (
            ocpp_with({}, {"chargingRateUnit": "kW"}),
            r"chargingSchedule\.chargingRateUnit must be one of",
        ),
    ],
)
def test_invalid_ocpp_profile_raises_profile_error_naming_the_field(
    payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProfileError, match=message):
        profile_from_ocpp(payload)


def test_composite_message_omits_start_schedule_and_matches_the_official_schema() -> None:
    store = ProfileStore().install(0, CHARGE_POINT_MAX).install(1, TRANSACTION, transaction_id=7)
    schedule = composite(store, TX_START, 3 * HOUR, W, tx=7, tx_start=TX_START)
    body = composite_to_ocpp(schedule)
    assert "startSchedule" not in body  # errata 3.57: scheduleStart carries it
    schedule_start = format_ocpp_datetime(schedule.start_schedule or utc(TX_START))
    conf = {
        "status": "Accepted",
        "connectorId": 1,
        "scheduleStart": schedule_start,
        "chargingSchedule": body,
    }
    assert schema_errors("GetCompositeScheduleResponse.json", conf) == []
    assert composite_from_ocpp(body, schedule_start) == schedule


# --- Profiles the CSMS sends ------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit_a", "phases", "unit", "expected_limit"),
    [
        (16, None, A, 16.0),
        (16.06, 3, A, 16.0),  # rounded down to the schema's 0.1
        (16, 1, W, 3680.0),
        (16, 3, W, 11040.0),
        (16, None, W, 11040.0),
        (0, 3, A, 0.0),  # 0 A pauses charging
    ],
)
def test_tx_profile_helper_builds_a_single_period_profile(
    limit_a: float, phases: int | None, unit: ChargingRateUnit, expected_limit: float
) -> None:
    profile = tx_profile(9, 0, 7, limit_a, phases, unit, 230)
    assert profile.purpose is TX
    assert profile.kind is RELATIVE
    assert profile.transaction_id == 7
    assert profile.schedule.periods == (ChargingSchedulePeriod(0, expected_limit, phases),)
    assert ProfileStore().install(1, profile, transaction_id=7).profiles_on(1) == (profile,)


def test_tx_profile_with_start_is_absolute() -> None:
    profile = tx_profile(9, 0, 7, 16, start=utc(TX_START))
    assert profile.kind is ABSOLUTE
    assert profile.schedule.start_schedule == utc(TX_START)


@pytest.mark.parametrize("limit_a", [0.1, 5.9, -1.0])
def test_tx_profile_refuses_currents_a_car_cannot_be_offered(limit_a: float) -> None:
    with pytest.raises(ProfileError, match="limit_a"):
        tx_profile(9, 0, 7, limit_a)


@pytest.mark.parametrize("purpose", [MAX, DEFAULT])
def test_default_profile_holds_until_replaced(purpose: ChargingProfilePurpose) -> None:
    profile = default_profile(purpose, 10, profile_id=1)
    assert profile.purpose is purpose
    assert profile.schedule.duration_s is None
    assert profile.valid_to is None
    store = ProfileStore().install(0, profile)
    assert amps_at(store, "2030-01-01T00:00:00Z", 1) == 10


def test_default_profile_refuses_tx_profile_purpose() -> None:
    with pytest.raises(ProfileError, match="tx_profile"):
        default_profile(TX, 10, profile_id=1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"at": datetime(2024, 1, 1)}, "at must carry a time zone"),
        ({"voltage_v": 0}, "voltage_v"),
        ({"default_phases": 4}, "default_phases"),
        ({"connector_id": -1}, "connectorId"),
    ],
)
def test_limit_at_refuses_ambiguous_input(arguments: dict[str, Any], message: str) -> None:
    call: dict[str, Any] = {
        "store": ProfileStore(),
        "connector_id": 1,
        "at": utc("2024-01-01T00:00:00Z"),
        "transaction_id": None,
        "transaction_start": None,
        **arguments,
    }
    with pytest.raises(ProfileError, match=message):
        limit_at(**call)


def test_composite_refuses_non_positive_duration() -> None:
    with pytest.raises(ProfileError, match="duration"):
        composite(ProfileStore(), "2024-01-01T00:00:00Z", 0)


def test_naive_datetimes_never_enter_a_schedule() -> None:
    with pytest.raises(ProfileError, match="startSchedule must carry a time zone"):
        ChargingSchedule(A, [ChargingSchedulePeriod(0, 16)], start_schedule=datetime(2024, 1, 1))


def test_utc_is_used_in_the_ocpp_form() -> None:
    tz_plus_two = utc("2024-06-15T02:00:00+02:00")
    assert format_ocpp_datetime(tz_plus_two) == "2024-06-15T00:00:00Z"
