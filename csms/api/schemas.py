"""Request and response bodies of /api/v1: the schemas of the OpenAPI document.

Units are in the names (``_a`` amperes, ``_wh`` watt-hours, ``_kwh``, ``_s`` seconds,
``_at`` an ISO 8601 time with its zone). Bodies that change something forbid unknown
fields, so that a typo is a 422, not a silent no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from csms.ev import MAX_BATTERY_KWH


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteRef(BaseModel):
    id: int
    name: str = Field(description="what ?site= takes")


class Me(BaseModel):
    name: str = Field(description="the account the token acts as (token:NAME without a user)")
    role: Literal["manager", "resident", "viewer"]
    stations: list[str] = Field(description="a resident's stations")
    tags: list[str] = Field(description="a resident's id tags")
    site: SiteRef | None = Field(
        description="the site the token acts within; null: every site (an operator token)"
    )


# ------------------------------------------------------------------------- site
class BuildingLoadOut(BaseModel):
    measured_at: datetime
    l1_a: float
    l2_a: float
    l3_a: float


class Site(BaseModel):
    name: str = Field(default="default", description="the site's name (what ?site= takes)")
    fuse_limit_a: float
    margin_a: float
    phases: int
    voltage_v: float
    strategy: str
    tick_s: float
    default_departure: str = Field(description="HH:MM, the site's time zone")
    default_energy_kwh: float
    timezone: str
    price_per_kwh: float
    currency: str
    heartbeat_interval_s: int
    building_load_max_age_s: float
    building_load_worst_case_a: float
    building_load: BuildingLoadOut | None = Field(description="the newest reading, if any")


class SiteUpdate(Strict):
    """Only the fields given change (the same checks as `csms site set`)."""

    fuse_limit_a: float | None = None
    margin_a: float | None = None
    phases: int | None = None
    voltage_v: float | None = None
    strategy: str | None = None
    tick_s: float | None = None
    default_departure: str | None = None
    default_energy_kwh: float | None = None
    timezone: str | None = None
    price_per_kwh: float | None = None
    currency: str | None = None
    heartbeat_interval_s: int | None = None
    building_load_max_age_s: float | None = None
    building_load_worst_case_a: float | None = None


class BuildingLoadIn(Strict):
    """One reading of the building's other consumption, per phase (a meter's reading)."""

    l1_a: float = Field(ge=0, le=4000)
    l2_a: float = Field(ge=0, le=4000)
    l3_a: float = Field(ge=0, le=4000)
    source: str = Field(default="api", max_length=32)


# --------------------------------------------------------------------- stations
class ConnectorOut(BaseModel):
    connector_id: int
    status: str
    error_code: str
    info: str | None
    updated_at: datetime


class Capabilities(BaseModel):
    """What the charger reported (GetConfiguration); null fields: not reported."""

    rate_units: list[str] | None = None
    max_stack_level: int | None = None
    max_profiles: int | None = None
    max_periods: int | None = None
    phase_rotation: str | None = None
    read_at: datetime | None = None
    model_config = ConfigDict(extra="allow")


class Station(BaseModel):
    id: str
    name: str | None
    max_current_a: float
    phases: int
    wiring: str
    rate_unit: str
    only_stack_level_0: bool
    security_profile: int
    password_set: bool
    connected: bool
    last_seen_at: datetime | None
    boot_status: str | None
    vendor: str | None
    model: str | None
    firmware_version: str | None
    unmanaged: bool
    unmanaged_reason: str | None
    connectors: list[ConnectorOut]
    capabilities: Capabilities | None


class StationIn(Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[^/\s]+$")
    name: str | None = Field(default=None, max_length=64)
    max_current_a: float = 32.0
    phases: Literal[1, 3] = 3
    wiring: str | None = Field(default=None, description="L1/L2/L3, or a rotation like L2L3L1")
    password: str | None = Field(
        default=None, description="AuthorizationKey (stored hashed; never returned)"
    )
    unsecured: bool = Field(default=False, description="security profile 0: lab use only")


class StationUpdate(Strict):
    name: str | None = Field(default=None, max_length=64)
    max_current_a: float | None = None
    phases: Literal[1, 3] | None = None
    wiring: str | None = None


# ----------------------------------------------------------------------- id tags
class IdTag(BaseModel):
    id_tag: str
    owner: str | None
    parent: str | None
    expires_at: datetime | None
    blocked: bool


class IdTagIn(Strict):
    id_tag: str = Field(min_length=1, max_length=20, description="OCPP 1.6 CiString20")
    owner: str | None = Field(default=None, max_length=64)
    parent: str | None = Field(default=None, max_length=20)
    expires_at: datetime | None = None


class IdTagUpdate(Strict):
    blocked: bool


# ---------------------------------------------------------------------- sessions
class Session(BaseModel):
    transaction_id: int
    charge_point_id: str
    station_name: str | None
    connector_id: int
    id_tag: str | None
    owner: str | None
    started_at: datetime
    stopped_at: datetime | None
    open: bool
    energy_wh: float | None
    meter_start_wh: float
    meter_stop_wh: float | None
    stop_reason: str | None
    departure_at: datetime | None
    energy_needed_wh: float | None
    ev_model: str | None
    battery_kwh: float | None
    target_soc: float | None


class SessionUpdate(Strict):
    """A resident's input for a running session: when they leave and what they need."""

    departure_at: datetime | None = Field(
        default=None, description="in the future, at most 14 days ahead; with a time zone"
    )
    energy_needed_kwh: float | None = Field(default=None, gt=0, le=MAX_BATTERY_KWH)
    ev_model: str | None = Field(default=None, max_length=64)
    battery_kwh: float | None = Field(default=None, ge=1, le=MAX_BATTERY_KWH)
    target_soc_pct: float | None = Field(default=None, ge=10, le=100)


class MeterValue(BaseModel):
    timestamp: datetime
    connector_id: int
    measurand: str
    phase: str | None
    location: str | None
    context: str | None
    unit: str | None
    value: float | None
    raw_value: str
    flag: str | None = Field(description="backwards, jump: left out of energy totals")


# --------------------------------------------------------------------- live load
class LiveSession(BaseModel):
    transaction_id: int
    charge_point_id: str
    connector_id: int
    id_tag: str | None
    power_w: float | None
    power_at: datetime | None
    register_wh: float | None
    soc_pct: float | None
    limit_a: float | None
    departure_at: datetime | None
    energy_needed_wh: float | None


class LiveLoad(BaseModel):
    now: datetime = Field(description="the garage's clock")
    fuse_limit_a: float
    margin_a: float
    building_load: BuildingLoadOut | None
    limits_a: list[float] = Field(description="sum of the current limits per phase L1-L3")
    power_w: float = Field(description="sum of the newest power readings")
    fuse_headroom_a: list[float] | None = Field(
        description="per phase, what is left in the worst case (in-process only, else null)"
    )
    sessions: list[LiveSession]


# ---------------------------------------------------------------------- commands
class CommandIn(Strict):
    action: str = Field(examples=["TriggerMessage"], description="an OCPP 1.6 operation")
    payload: dict[str, Any] = Field(
        default_factory=dict, examples=[{"requestedMessage": "Heartbeat"}]
    )
    wait_s: float = Field(
        default=30.0, ge=0, description="seconds to wait for the answer (0: queue only)"
    )


class Command(BaseModel):
    id: int
    charge_point_id: str
    action: str
    payload: Any
    status: Literal["pending", "sending", "done", "failed"]
    requested_by: str
    created_at: datetime
    completed_at: datetime | None
    response: Any | None
    error: str | None


# ------------------------------------------------------------------ notifications
class Notification(BaseModel):
    created_at: datetime
    kind: str
    message: str
    charge_point_id: str | None
    transaction_id: int | None
