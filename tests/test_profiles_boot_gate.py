"""Issue 13 finding (a), the pure part: when the copy of a charger's profiles says that
its fail-safe defaults are certainly installed (csms.controller.mirror.ProfileMirror
.holds_defaults), so that its reconnect may be Accepted at once."""

from __future__ import annotations

from typing import Any

from csms.controller.mirror import ChargerIdentity, ProfileMirror
from csms.controller.planning import CHARGE_POINT_MAX_PROFILE_ID, TX_DEFAULT_PROFILE_ID
from csms.profiles import ChargingProfilePurpose, default_profile, profile_to_ocpp

UNIT = ChargerIdentity("GarageGrid", "Virtual AC Wallbox", None)
DEFAULTS = {
    ChargingProfilePurpose.ChargePointMaxProfile: CHARGE_POINT_MAX_PROFILE_ID,
    ChargingProfilePurpose.TxDefaultProfile: TX_DEFAULT_PROFILE_ID,
}
ACCEPTED = {"status": "Accepted"}


def set_default(purpose: ChargingProfilePurpose, profile_id: int, limit_a: float) -> dict[str, Any]:
    profile = default_profile(purpose, limit_a, profile_id=profile_id)
    return {"connectorId": 0, "csChargingProfiles": profile_to_ocpp(profile)}


def prepared(mirror: ProfileMirror, identity: ChargerIdentity = UNIT) -> None:
    """What the controller does at a first boot: the unit, a clear of everything, the two
    defaults, each answered Accepted."""
    mirror.charger_booted("CP1", vendor=identity.vendor, model=identity.model, serial_number=None)
    mirror.observe_call("CP1", "ClearChargingProfile", {}, ACCEPTED)
    for purpose, profile_id in DEFAULTS.items():
        mirror.observe_call(
            "CP1", "SetChargingProfile", set_default(purpose, profile_id, 16), ACCEPTED
        )


def test_a_prepared_unit_holds_its_defaults() -> None:
    mirror = ProfileMirror()
    assert not mirror.holds_defaults("CP1", UNIT, DEFAULTS)  # never seen: Pending
    prepared(mirror)
    assert mirror.holds_defaults("CP1", UNIT, DEFAULTS)
    # Persisted and read back (a restart of the CSMS): still known.
    assert ProfileMirror.from_json(mirror.to_json()).holds_defaults("CP1", UNIT, DEFAULTS)


def test_another_unit_under_the_same_id_does_not() -> None:
    mirror = ProfileMirror()
    prepared(mirror)
    other = ChargerIdentity("GarageGrid", "Another Wallbox", None)
    assert not mirror.holds_defaults("CP1", other, DEFAULTS)


def test_an_unanswered_profile_call_leaves_doubt() -> None:
    mirror = ProfileMirror()
    prepared(mirror)
    lower = set_default(ChargingProfilePurpose.TxDefaultProfile, TX_DEFAULT_PROFILE_ID, 6)
    mirror.observe_call("CP1", "SetChargingProfile", lower, None)  # no answer
    assert not mirror.holds_defaults("CP1", UNIT, DEFAULTS)


def test_a_cleared_default_is_not_held() -> None:
    mirror = ProfileMirror()
    prepared(mirror)
    mirror.observe_call("CP1", "ClearChargingProfile", {"id": TX_DEFAULT_PROFILE_ID}, ACCEPTED)
    assert not mirror.holds_defaults("CP1", UNIT, DEFAULTS)


def test_a_copy_saved_before_the_unit_was_known_adopts_the_next_boot() -> None:
    """A copy whose unit was recorded empty (before 0007: the store had not recorded the
    BootNotification yet) takes the next boot's unit instead of forgetting its profiles."""
    mirror = ProfileMirror()
    prepared(mirror, ChargerIdentity(None, None, None))
    mirror.charger_booted("CP1", vendor=UNIT.vendor, model=UNIT.model, serial_number=None)
    assert mirror.holds_defaults("CP1", UNIT, DEFAULTS)
