"""The CSMS's copy of every charger's profiles (csms.controller.mirror) and what the fuse
model makes of it. Payloads are built the way the controller and the monitor build them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from csms.controller.mirror import MAX_POSSIBLE_STORES, ProfileMirror
from csms.fuse import ChargerView, RunningTx, connector_worst_case_a
from csms.monitor import actions
from csms.profiles import (
    ChargingProfilePurpose,
    ProfileError,
    default_profile,
    profile_to_ocpp,
    tx_profile,
)

NOW = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
CP = "CP1"
TX_ID = 41
ACCEPTED = {"status": "Accepted"}
REJECTED = {"status": "Rejected"}
UNKNOWN = {"status": "Unknown"}
LOST = None  # timeout, CALLERROR or connection lost: no answer to go by
RUNNING = {1: RunningTx(TX_ID, NOW - timedelta(minutes=10))}
# The controller's profile ids (csms/controller/service.py).
CP_MAX_ID, TX_DEFAULT_ID, TX_ID_BASE = 1, 2, 100


def set_default(
    limit_a: float, *, connector_id: int = 0, profile_id: int = TX_DEFAULT_ID
) -> dict[str, Any]:
    profile = default_profile(
        ChargingProfilePurpose.TxDefaultProfile, limit_a, profile_id=profile_id, number_phases=3
    )
    return {"connectorId": connector_id, "csChargingProfiles": profile_to_ocpp(profile)}


def set_cp_max(limit_a: float, *, connector_id: int = 0) -> dict[str, Any]:
    profile = default_profile(
        ChargingProfilePurpose.ChargePointMaxProfile, limit_a, profile_id=CP_MAX_ID, number_phases=3
    )
    return {"connectorId": connector_id, "csChargingProfiles": profile_to_ocpp(profile)}


def set_tx(
    limit_a: float, *, transaction_id: int | None = TX_ID, connector_id: int = 1
) -> dict[str, Any]:
    profile = tx_profile(TX_ID_BASE + connector_id, 1, transaction_id, limit_a, number_phases=3)
    return {"connectorId": connector_id, "csChargingProfiles": profile_to_ocpp(profile)}


def worst(
    mirror: ProfileMirror, running: dict[int, RunningTx] | None = None, connector_id: int = 1
) -> float:
    view = ChargerView(
        CP,
        ("L1", "L2", "L3"),
        32.0,
        (1, 2),
        mirror.store_for(CP),
        running or {},
        alternatives=mirror.alternatives_for(CP),
    )
    return connector_worst_case_a(view, connector_id, NOW)


def configured(default_a: float = 6.0, cp_max_a: float = 32.0) -> ProfileMirror:
    """The boot sequence that makes a charger's profiles known: clear everything, then the
    fail-safe ChargePointMaxProfile and TxDefaultProfile."""
    mirror = ProfileMirror()
    mirror.charger_booted(CP, vendor="Acme", model="Box", serial_number="S1")
    mirror.observe_call(CP, "ClearChargingProfile", {}, UNKNOWN)
    mirror.observe_call(CP, "SetChargingProfile", set_cp_max(cp_max_a), ACCEPTED)
    mirror.observe_call(CP, "SetChargingProfile", set_default(default_a), ACCEPTED)
    return mirror


# --------------------------------------------------------------------------------------
# What is known
# --------------------------------------------------------------------------------------


def test_a_charger_never_seen_is_unknown() -> None:
    mirror = ProfileMirror()
    assert mirror.store_for(CP) is None
    assert mirror.alternatives_for(CP) == ()
    assert worst(mirror) == 32


def test_profiles_set_without_a_clear_are_not_enough() -> None:
    """A charger may carry older profiles at higher stack levels (another central system):
    ours alone do not bound it."""
    mirror = ProfileMirror()
    mirror.observe_call(CP, "SetChargingProfile", set_cp_max(16), ACCEPTED)
    mirror.observe_call(CP, "SetChargingProfile", set_default(6), ACCEPTED)
    assert mirror.store_for(CP) is None
    assert worst(mirror) == 32


def test_clear_everything_then_configure() -> None:
    mirror = configured(default_a=6)
    store = mirror.store_for(CP)
    assert store is not None
    assert sorted(p.profile_id for p in store.profiles_on(0)) == [CP_MAX_ID, TX_DEFAULT_ID]
    assert worst(mirror) == 6


def test_known_purpose_by_purpose() -> None:
    """Clearing one purpose at a time: a known ChargePointMaxProfile already caps the
    charger while the other purposes are still unknown (they count as no limit)."""
    mirror = ProfileMirror()
    mirror.observe_call(CP, "SetChargingProfile", set_default(6), ACCEPTED)
    purpose = {"chargingProfilePurpose": "ChargePointMaxProfile"}
    mirror.observe_call(CP, "ClearChargingProfile", purpose, ACCEPTED)
    mirror.observe_call(CP, "SetChargingProfile", set_cp_max(16), ACCEPTED)
    assert worst(mirror) == 16  # the 6 A default may sit under an older one of 32 A
    mirror.observe_call(
        CP, "ClearChargingProfile", {"chargingProfilePurpose": "TxDefaultProfile"}, UNKNOWN
    )
    mirror.observe_call(CP, "SetChargingProfile", set_default(6), ACCEPTED)
    assert worst(mirror) == 16  # a TxProfile may still wait for the next car
    mirror.observe_call(
        CP, "ClearChargingProfile", {"chargingProfilePurpose": "TxProfile"}, UNKNOWN
    )
    assert worst(mirror) == 6


@pytest.mark.parametrize(
    "criteria",
    [
        {"chargingProfilePurpose": "TxDefaultProfile", "connectorId": 1},
        {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0},
        {"id": 77},
    ],
)
def test_a_partial_clear_does_not_make_a_purpose_known(criteria: dict[str, Any]) -> None:
    mirror = ProfileMirror()
    mirror.observe_call(
        CP, "ClearChargingProfile", {"chargingProfilePurpose": "ChargePointMaxProfile"}, UNKNOWN
    )
    mirror.observe_call(CP, "SetChargingProfile", set_cp_max(20), ACCEPTED)
    mirror.observe_call(CP, "ClearChargingProfile", criteria, ACCEPTED)
    mirror.observe_call(
        CP, "ClearChargingProfile", {"chargingProfilePurpose": "TxProfile"}, UNKNOWN
    )
    mirror.observe_call(CP, "SetChargingProfile", set_default(6), ACCEPTED)
    assert worst(mirror) == 20


def test_same_unit_rebooting_keeps_its_profiles_another_unit_does_not() -> None:
    mirror = configured(default_a=6)
    mirror.charger_booted(CP, vendor="Acme", model="Box", serial_number="S1")
    assert worst(mirror) == 6
    mirror.charger_booted(CP, vendor="Acme", model="Box", serial_number="S2")
    assert mirror.store_for(CP) is None
    assert worst(mirror) == 32


def test_forget() -> None:
    mirror = configured()
    mirror.forget(CP)
    assert mirror.store_for(CP) is None
    assert mirror.charger_ids() == ()


# --------------------------------------------------------------------------------------
# Calls and their answers
# --------------------------------------------------------------------------------------


def test_tx_profile_accepted_counts_and_ends_with_its_transaction() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_tx(16), ACCEPTED, running_tx=TX_ID)
    assert worst(mirror, RUNNING) == 16
    mirror.transaction_stopped(CP, 1)
    store = mirror.store_for(CP)
    assert store is not None and store.profiles_on(1) == ()
    assert worst(mirror) == 6


def test_stop_without_a_connector_drops_that_transactions_profiles() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_tx(16), ACCEPTED, running_tx=TX_ID)
    mirror.transaction_stopped(CP, None, transaction_id=TX_ID + 1)
    assert worst(mirror, RUNNING) == 16
    mirror.transaction_stopped(CP, None, transaction_id=TX_ID)
    assert worst(mirror, RUNNING) == 6


@pytest.mark.parametrize("answer", [REJECTED, {"status": "NotSupported"}])
def test_a_refused_profile_changes_nothing(answer: dict[str, str]) -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_default(16), answer)
    assert worst(mirror) == 6
    assert not mirror.is_uncertain(CP)


def test_snake_case_payloads_are_read() -> None:
    mirror = configured(default_a=6)
    payload = set_default(10)
    snake = {
        "connector_id": payload["connectorId"],
        "cs_charging_profiles": payload["csChargingProfiles"],
    }
    mirror.observe_call(CP, "SetChargingProfile", snake, ACCEPTED)
    assert worst(mirror) == 10


def test_accepted_although_our_copy_would_refuse(caplog: pytest.LogCaptureFixture) -> None:
    """A charger that started a transaction offline accepts its TxProfile before the CSMS
    knows of the transaction (section 3.7): the charger is the truth."""
    mirror = configured(default_a=6)
    with caplog.at_level(logging.WARNING, logger="csms.controller.mirror"):
        mirror.observe_call(CP, "SetChargingProfile", set_tx(20), ACCEPTED, running_tx=None)
    assert "installed anyway" in caplog.text
    assert worst(mirror, RUNNING) == 20


def test_a_profile_we_cannot_place_makes_its_purpose_unknown() -> None:
    """A ChargePointMaxProfile accepted on connector 1 (section 3.13.1 allows connector 0
    only): we cannot tell what the charger does with it."""
    mirror = configured(default_a=6, cp_max_a=16)
    mirror.observe_call(CP, "SetChargingProfile", set_cp_max(32, connector_id=1), ACCEPTED)
    assert mirror.store_for(CP) is None


def test_an_unreadable_profile_that_was_accepted_makes_the_charger_unknown() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(
        CP, "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": {"x": 1}}, ACCEPTED
    )
    assert mirror.store_for(CP) is None


def test_remote_start_profile_waits_for_the_next_car() -> None:
    """RemoteStartTransaction with a TxProfile (spec 5.11): the car it starts may draw it."""
    mirror = configured(default_a=6)
    profile = tx_profile(TX_ID_BASE + 1, 1, None, 16, number_phases=3)
    payload = {"connectorId": 1, "idTag": "RES1", "chargingProfile": profile_to_ocpp(profile)}
    mirror.observe_call(CP, "RemoteStartTransaction", payload, ACCEPTED)
    assert worst(mirror) == 16
    assert worst(mirror, connector_id=2) == 6
    mirror.transaction_stopped(CP, 1)
    assert worst(mirror) == 6


def test_remote_start_profile_without_connector_makes_tx_profiles_unknown() -> None:
    mirror = configured(default_a=6, cp_max_a=20)
    profile = tx_profile(TX_ID_BASE, 1, None, 16, number_phases=3)
    mirror.observe_call(
        CP,
        "RemoteStartTransaction",
        {"idTag": "RES1", "chargingProfile": profile_to_ocpp(profile)},
        ACCEPTED,
    )
    assert worst(mirror) == 20  # only the ChargePointMaxProfile is known to bound it


def test_other_actions_change_nothing() -> None:
    mirror = configured(default_a=6)
    before = mirror.to_json()
    mirror.observe_call(CP, "Reset", {"type": "Soft"}, ACCEPTED)
    mirror.observe_call(CP, "RemoteStartTransaction", {"idTag": "RES1"}, ACCEPTED)
    assert mirror.to_json() == before


# --------------------------------------------------------------------------------------
# The monitor's override through the outbox (csms/monitor/actions.py)
# --------------------------------------------------------------------------------------


def test_override_from_the_outbox_is_seen_by_the_fuse_model() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_tx(20), ACCEPTED, running_tx=TX_ID)
    assert worst(mirror, RUNNING) == 20
    action, payload = actions.set_limit(1, TX_ID, 10, max_current_a=32)
    mirror.observe_call(CP, action, payload, ACCEPTED, running_tx=TX_ID)
    # Stack level 8 over the controller's level 1 (section 3.13.2).
    assert worst(mirror, RUNNING) == 10
    action, payload = actions.pause(1, TX_ID)
    mirror.observe_call(CP, action, payload, ACCEPTED, running_tx=TX_ID)
    assert worst(mirror, RUNNING) == 6  # paused; the next car would start at 6 A
    action, payload = actions.resume(1)
    mirror.observe_call(CP, action, payload, ACCEPTED)
    assert worst(mirror, RUNNING) == 20


def test_override_whose_answer_was_lost_counts_at_the_larger() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_tx(10), ACCEPTED, running_tx=TX_ID)
    action, payload = actions.set_limit(1, TX_ID, 25, max_current_a=32)
    mirror.observe_call(CP, action, payload, LOST, running_tx=TX_ID)
    assert mirror.is_uncertain(CP)
    assert worst(mirror, RUNNING) == 25
    # The manager presses resume; the charger answers: whatever it had, the override is gone.
    action, payload = actions.resume(1)
    mirror.observe_call(CP, action, payload, UNKNOWN)
    assert not mirror.is_uncertain(CP)
    assert worst(mirror, RUNNING) == 10


# --------------------------------------------------------------------------------------
# Uncertain answers
# --------------------------------------------------------------------------------------


def test_lost_raise_counts_the_new_limit_until_settled() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_default(16), LOST)
    assert mirror.is_uncertain(CP)
    assert worst(mirror) == 16
    store = mirror.store_for(CP)  # as if the call took effect
    assert store is not None
    assert [
        p.schedule.periods[0].limit for p in store.profiles_on(0) if p.profile_id == TX_DEFAULT_ID
    ] == [16]
    # The same profile id sent again and accepted replaces either one: settled.
    mirror.observe_call(CP, "SetChargingProfile", set_default(10), ACCEPTED)
    assert not mirror.is_uncertain(CP)
    assert mirror.alternatives_for(CP) == ()
    assert worst(mirror) == 10


def test_lost_lowering_keeps_counting_the_old_limit() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_default(0), LOST)
    assert worst(mirror) == 6
    mirror.observe_call(CP, "SetChargingProfile", set_default(0), ACCEPTED)
    assert worst(mirror) == 0


def test_lost_clear_may_have_raised_a_limit() -> None:
    """Clearing the 6 A default leaves no limit but the 32 A cap: a lost clear counts 32."""
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "ClearChargingProfile", {"id": TX_DEFAULT_ID}, LOST)
    assert worst(mirror) == 32
    mirror.observe_call(CP, "SetChargingProfile", set_default(6), ACCEPTED)
    assert not mirror.is_uncertain(CP)
    assert worst(mirror) == 6


def test_a_clear_answer_drops_the_possible_stores_it_contradicts() -> None:
    """A lost TxDefault (id 5, level 0) may have replaced ours (id 2, level 0: same purpose
    and stack level, spec 5.16.3). Clearing id 2 answered Unknown: it was replaced."""
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_default(10, profile_id=5), LOST)
    assert mirror.is_uncertain(CP)
    mirror.observe_call(CP, "ClearChargingProfile", {"id": TX_DEFAULT_ID}, UNKNOWN)
    assert not mirror.is_uncertain(CP)
    assert worst(mirror) == 10


def test_a_transaction_stop_applies_to_every_possible_store() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_tx(20), LOST, running_tx=TX_ID)
    assert worst(mirror, RUNNING) == 20
    mirror.transaction_stopped(CP, 1)
    assert not mirror.is_uncertain(CP)
    assert worst(mirror) == 6


def test_too_many_lost_answers_make_the_charger_unknown() -> None:
    mirror = configured(default_a=6)
    for index in range(MAX_POSSIBLE_STORES.bit_length() - 1):
        mirror.observe_call(
            CP,
            "SetChargingProfile",
            set_default(6 + index, profile_id=10 + index, connector_id=index + 1),
            LOST,
        )
        assert mirror.store_for(CP) is not None
    mirror.observe_call(
        CP, "SetChargingProfile", set_default(20, profile_id=30, connector_id=9), LOST
    )
    assert mirror.store_for(CP) is None


# --------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------


def test_json_round_trip_keeps_everything_including_doubt() -> None:
    mirror = configured(default_a=6)
    mirror.observe_call(CP, "SetChargingProfile", set_tx(20), ACCEPTED, running_tx=TX_ID)
    mirror.observe_call(CP, "SetChargingProfile", set_default(16), LOST)
    mirror.observe_call("CP2", "SetChargingProfile", set_default(6), ACCEPTED)
    text = mirror.to_json()
    again = ProfileMirror.from_json(text)
    assert again.to_json() == text
    for cp_id in ("CP1", "CP2", "CP3"):
        assert again.store_for(cp_id) == mirror.store_for(cp_id)
        assert again.alternatives_for(cp_id) == mirror.alternatives_for(cp_id)
    assert again.is_uncertain(CP)
    # Identity survives: another unit is still noticed after a restart.
    again.charger_booted(CP, vendor="Acme", model="Box", serial_number="S9")
    assert again.store_for(CP) is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"format": "other"}',
        '{"format": "garagegrid.profile-mirror/1", "chargers": []}',
        '{"format": "garagegrid.profile-mirror/1", "chargers": {"CP1": {"identity": null, "possible": []}}}',
        '{"format": "garagegrid.profile-mirror/1", "chargers": {"CP1": {"identity": null}}}',
    ],
)
def test_from_json_refuses_what_it_did_not_write(text: str) -> None:
    with pytest.raises(ProfileError):
        ProfileMirror.from_json(text)
