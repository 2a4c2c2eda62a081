"""What a manager's button on the Stations page puts into the command outbox (pure).

Each function returns ``(action, payload)``: an OCPP 1.6 central-system operation and
its camelCase payload, exactly what `Repository.enqueue_command` stores and the CSMS's
outbox worker sends.

Override, pause and resume use one TxProfile per connector that only the monitor writes:
id ``OVERRIDE_PROFILE_ID_BASE + connector``, stack level ``OVERRIDE_STACK_LEVEL``. Within
the TxProfile purpose the highest stack level wins (OCPP 1.6 section 3.13.2), so it
prevails over the controller's profile for the running transaction and ends with it
(a TxProfile is deleted when its transaction stops, section 3.13.1); resume clears it by
id, and the controller's own profile applies again.
"""

from __future__ import annotations

from typing import Any

from csms.controller.planning import TX_STACK_LEVEL
from csms.errors import ConfigError
from csms.profiles import ChargingRateUnit, profile_to_ocpp, tx_profile

OVERRIDE_PROFILE_ID_BASE = 9000
# Above the controller's levels, within the usual ChargeProfileMaxStackLevel of 8-10.
OVERRIDE_STACK_LEVEL = 8
# The controller's TxProfile stack level: one constant for both, so an override always
# sits above it.
CONTROLLER_STACK_LEVEL = TX_STACK_LEVEL
# IEC 61851-1: the control pilot cannot signal less than 6 A; 0 pauses.
MIN_CURRENT_A = 6.0

Command = tuple[str, dict[str, Any]]


def override_profile_id(connector_id: int) -> int:
    return OVERRIDE_PROFILE_ID_BASE + connector_id


def override_stack_level(only_stack_level_0: bool, max_stack_level: int | None = None) -> int:
    """Chargers that accept only stack level 0 (FIELD-NOTES) get the override there; one
    that reported a lower ChargeProfileMaxStackLevel than ours, at its highest level."""
    if only_stack_level_0:
        return 0
    if max_stack_level is not None:
        return max(0, min(OVERRIDE_STACK_LEVEL, max_stack_level))
    return OVERRIDE_STACK_LEVEL


def override_prevails(max_stack_level: int | None) -> bool:
    """Whether an override sits above the controller's TxProfile on this charger (else the
    controller's next limit replaces it, OCPP 1.6 section 3.13.2)."""
    return max_stack_level is None or max_stack_level > CONTROLLER_STACK_LEVEL


def check_override_limit(limit_a: float, max_current_a: float) -> float:
    """0 (pause) or between 6 A and the station's maximum; ConfigError otherwise."""
    if limit_a != 0 and not MIN_CURRENT_A <= limit_a <= max_current_a:
        raise ConfigError(
            f"limit: 0 A (pause) or {MIN_CURRENT_A:g}-{max_current_a:g} A for this station "
            f"(IEC 61851-1 cannot signal less than {MIN_CURRENT_A:g} A), got {limit_a:g} A"
        )
    return float(limit_a)


def set_limit(
    connector_id: int,
    transaction_id: int,
    limit_a: float,
    *,
    max_current_a: float,
    rate_unit: str = "A",
    phases: int = 3,
    voltage_v: float = 230.0,
    only_stack_level_0: bool = False,
    max_stack_level: int | None = None,
) -> Command:
    """SetChargingProfile: an override TxProfile holding ``limit_a`` from now on."""
    limit = check_override_limit(limit_a, max_current_a)
    profile = tx_profile(
        override_profile_id(connector_id),
        override_stack_level(only_stack_level_0, max_stack_level),
        transaction_id,
        limit,
        number_phases=phases,
        rate_unit=ChargingRateUnit(rate_unit),
        voltage_v=voltage_v,
    )
    return "SetChargingProfile", {
        "connectorId": connector_id,
        "csChargingProfiles": profile_to_ocpp(profile),
    }


def pause(
    connector_id: int,
    transaction_id: int,
    *,
    rate_unit: str = "A",
    phases: int = 3,
    voltage_v: float = 230.0,
    only_stack_level_0: bool = False,
    max_stack_level: int | None = None,
) -> Command:
    """SetChargingProfile with a 0 A override: the car stops drawing, the session stays."""
    return set_limit(
        connector_id,
        transaction_id,
        0.0,
        max_current_a=0.0,
        rate_unit=rate_unit,
        phases=phases,
        voltage_v=voltage_v,
        only_stack_level_0=only_stack_level_0,
        max_stack_level=max_stack_level,
    )


def resume(connector_id: int) -> Command:
    """ClearChargingProfile of the override: the controller's limit applies again."""
    return "ClearChargingProfile", {"id": override_profile_id(connector_id)}


def remote_stop(transaction_id: int) -> Command:
    return "RemoteStopTransaction", {"transactionId": transaction_id}


def soft_reset() -> Command:
    return "Reset", {"type": "Soft"}


def unlock(connector_id: int) -> Command:
    return "UnlockConnector", {"connectorId": connector_id}


def trigger_meter_values(connector_id: int) -> Command:
    return "TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": connector_id}
