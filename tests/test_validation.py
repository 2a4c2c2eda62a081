"""Schema checks of our own outgoing payloads (and incoming ones) on OCPP 1.6 terms."""

from __future__ import annotations

import pytest
from ocpp.exceptions import OCPPError

from csms.ocpp16.validation import validate_request, validate_response


def _profile(limit: float) -> dict[str, object]:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 101,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "transactionId": 7,
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": 3}],
            },
        },
    }


@pytest.mark.parametrize("limit", [41.8, 6.1, 0.3, 28.9, 16.0, 0.0, 13.7])
def test_limits_on_the_tenth_grid_pass_the_multiple_of_check(limit: float) -> None:
    validate_request("SetChargingProfile", _profile(limit))


def test_limit_off_the_tenth_grid_is_refused() -> None:
    with pytest.raises(OCPPError) as info:
        validate_request("SetChargingProfile", _profile(6.05))
    assert info.value.code == "PropertyConstraintViolation"


def test_composite_schedule_answer_with_tenths_is_valid() -> None:
    validate_response(
        "GetCompositeSchedule",
        {
            "status": "Accepted",
            "connectorId": 1,
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 41.8}],
            },
        },
    )
