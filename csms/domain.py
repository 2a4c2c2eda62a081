"""Plain domain types shared by the store, the OCPP handlers and the controller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NewType

ChargePointId = NewType("ChargePointId", str)
TransactionId = NewType("TransactionId", int)
IdToken = NewType("IdToken", str)

PHASES: tuple[str, str, str] = ("L1", "L2", "L3")


def split_wiring(wiring: str) -> tuple[str, ...]:
    """``"L2L3L1"`` -> ``("L2", "L3", "L1")``: the supply phase of each station phase."""
    return tuple(wiring[i : i + 2] for i in range(0, len(wiring), 2))


class AuthStatus(StrEnum):
    """OCPP 1.6 AuthorizationStatus values."""

    accepted = "Accepted"
    blocked = "Blocked"
    expired = "Expired"
    invalid = "Invalid"
    concurrent_tx = "ConcurrentTx"


class CommandStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    done = "done"
    failed = "failed"


@dataclass(frozen=True)
class IdTagInfo:
    status: AuthStatus
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None


@dataclass(frozen=True)
class ChargePointInfo:
    id: ChargePointId
    name: str | None
    password_hash: str | None
    max_current_a: float
    phases: int
    wiring: str
    min_current_a: float
    only_stack_level_0: bool
    rate_unit: str
    current_steps_a: tuple[float, ...] | None
    boot_status: str | None
    vendor: str | None
    model: str | None
    firmware_version: str | None
    connected: bool
    last_seen_at: datetime | None
    unmanaged: bool
    # Why and since when it is counted at its maximum (None while it is managed).
    unmanaged_reason: str | None = None
    unmanaged_at: datetime | None = None
    # What the charger reported (GetConfiguration, csms.controller.capabilities); None:
    # not read yet, or the charger did not say. Planning keeps within these.
    max_stack_level: int | None = None
    max_profiles: int | None = None
    max_periods: int | None = None
    capabilities_read_at: datetime | None = None
    # "manager" (typed, or the default) or "charger" (from ConnectorPhaseRotation).
    wiring_set_by: str = "manager"
    # OCPP 1.6 security profile: 0 = no authentication (lab use, explicitly set), 1 = HTTP
    # Basic (refused while no password is set), 2 = HTTP Basic over TLS only.
    security_profile: int = 1
    # A rotated key the charger may or may not have taken (no answer, RebootRequired):
    # accepted besides the current one until the charger first logs in with it.
    pending_password_hash: str | None = None
    # Answered Accepted at its first BootNotification (it mishandles Pending).
    accept_boot_at_once: bool = False
    # Local Auth List Management: kept by the charger (None: not known yet), its version.
    local_list_supported: bool | None = None
    local_list_version: int | None = None
    local_list_in_sync: bool = False
    site_id: int = 1


@dataclass(frozen=True)
class SiteConfig:
    fuse_limit_a: float
    margin_a: float
    phases: int
    voltage_v: float
    strategy: str
    tick_s: float
    default_departure: str
    default_energy_kwh: float
    timezone: str
    price_per_kwh: float
    currency: str
    heartbeat_interval_s: int
    building_load_max_age_s: float
    building_load_worst_case_a: float
    # Which site (csms.store.models.SiteSettings): 1 "default" on a single-site install.
    site_id: int = 1
    name: str = "default"


@dataclass(frozen=True)
class StartResult:
    transaction_id: TransactionId
    id_tag_info: IdTagInfo
    duplicate: bool


@dataclass(frozen=True)
class SampledValue:
    """One sampledValue of a meterValue, with its timestamp (already parsed)."""

    timestamp: datetime
    value: str
    measurand: str | None = None
    phase: str | None = None
    unit: str | None = None
    context: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class CommandRequest:
    id: int
    charge_point_id: ChargePointId
    action: str
    payload: dict[str, object]


@dataclass(frozen=True)
class OpenSession:
    """A running transaction as the controller sees it."""

    transaction_id: TransactionId
    charge_point_id: ChargePointId
    connector_id: int
    id_tag: str
    started_at: datetime
    meter_start_wh: int
    departure_at: datetime | None
    energy_needed_wh: float | None
    ev_model: str | None
    battery_kwh: float | None
    target_soc: float | None
