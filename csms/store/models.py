"""SQLAlchemy 2 ORM models: the single source of truth of GarageGrid.

Every table is created by an Alembic migration (``alembic/versions``); a test checks that
these models and the migrations agree. Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    types,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(types.TypeDecorator[datetime]):
    """A DateTime that always comes back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; attach a time zone")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}  # noqa: RUF012


class SiteSettings(Base):
    """One site (a garage) and its settings: one row per site. Site 1 ("default") is the
    site of a single-site install and of every caller that names none.

    Stations, id tags, monitor accounts and building load readings carry a ``site_id``
    (no foreign key: SQLite adds such a column in place only without one, and copying
    charge_points would cascade-delete its history, see migration 0005; the repository
    checks the site exists)."""

    __tablename__ = "site_settings"
    __table_args__ = (Index("uq_site_settings_name", "name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    fuse_limit_a: Mapped[float] = mapped_column(Float, default=63.0)
    margin_a: Mapped[float] = mapped_column(Float, default=2.0)
    phases: Mapped[int] = mapped_column(Integer, default=3)
    voltage_v: Mapped[float] = mapped_column(Float, default=230.0)
    strategy: Mapped[str] = mapped_column(String(32), default="llf")
    tick_s: Mapped[float] = mapped_column(Float, default=5.0)
    default_departure: Mapped[str] = mapped_column(String(5), default="07:30")
    default_energy_kwh: Mapped[float] = mapped_column(Float, default=20.0)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Oslo")
    price_per_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    currency: Mapped[str] = mapped_column(String(8), default="NOK")
    heartbeat_interval_s: Mapped[int] = mapped_column(Integer, default=300)
    building_load_max_age_s: Mapped[float] = mapped_column(Float, default=300.0)
    building_load_worst_case_a: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class ClockAnchor(Base):
    """The one row (id = 1) that publishes the CSMS's clock to the monitor.

    ``csms serve`` may run on a simulated clock (``--speed``); the monitor reads this
    anchor and shows the CSMS's "now" (``sim_at + (wall now - wall_at) x speed``), so a
    sped-up demo reads like a real garage. ``speed`` 0 is a clock that stands still.
    """

    __tablename__ = "clock_anchor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sim_at: Mapped[datetime] = mapped_column()
    wall_at: Mapped[datetime] = mapped_column()
    speed: Mapped[float] = mapped_column(Float, default=1.0)
    published_by: Mapped[str] = mapped_column(String(128), default="csms serve")


class BuildingLoad(Base):
    """Readings of the building's other consumption per phase (history kept)."""

    __tablename__ = "building_load"
    __table_args__ = (Index("ix_building_load_site_time", "site_id", "measured_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    measured_at: Mapped[datetime] = mapped_column(index=True)
    l1_a: Mapped[float] = mapped_column(Float)
    l2_a: Mapped[float] = mapped_column(Float)
    l3_a: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(64), default="cli")


class ChargePoint(Base):
    __tablename__ = "charge_points"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[int] = mapped_column(Integer, default=1, server_default="1", index=True)
    name: Mapped[str | None] = mapped_column(String(128), default=None)
    password_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    # OCPP 1.6 security profile: 0 = no authentication (lab use, set explicitly), 1 = HTTP
    # Basic with the password above (refused while there is none), 2 = the same over TLS
    # only. A rotated key whose fate is unknown (the charger did not answer, or answered
    # RebootRequired) is also accepted until the charger first logs in with it.
    security_profile: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    pending_password_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    max_current_a: Mapped[float] = mapped_column(Float, default=32.0)
    phases: Mapped[int] = mapped_column(Integer, default=3)
    wiring: Mapped[str] = mapped_column(String(8), default="L1L2L3")
    min_current_a: Mapped[float] = mapped_column(Float, default=6.0)
    # Quirks of real chargers (FIELD-NOTES): which stack level / rate unit they accept.
    only_stack_level_0: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_unit: Mapped[str] = mapped_column(String(1), default="A")
    current_steps_a: Mapped[str | None] = mapped_column(String(128), default=None)
    auto_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    vendor: Mapped[str | None] = mapped_column(String(64), default=None)
    model: Mapped[str | None] = mapped_column(String(64), default=None)
    serial_number: Mapped[str | None] = mapped_column(String(64), default=None)
    firmware_version: Mapped[str | None] = mapped_column(String(64), default=None)
    iccid: Mapped[str | None] = mapped_column(String(32), default=None)
    imsi: Mapped[str | None] = mapped_column(String(32), default=None)
    meter_type: Mapped[str | None] = mapped_column(String(64), default=None)
    meter_serial_number: Mapped[str | None] = mapped_column(String(64), default=None)
    boot_status: Mapped[str | None] = mapped_column(String(16), default=None)
    last_boot_at: Mapped[datetime | None] = mapped_column(default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    # The `csms serve` instance holding its connection (several on PostgreSQL, 0011).
    instance_id: Mapped[str | None] = mapped_column(String(64), default=None)
    firmware_status: Mapped[str | None] = mapped_column(String(32), default=None)
    diagnostics_status: Mapped[str | None] = mapped_column(String(32), default=None)
    # A charger that rejected or ignored its profile is counted at its maximum, with why
    # and when; a manager clears the mark (`csms station reset-managed`, the monitor).
    unmanaged: Mapped[bool] = mapped_column(Boolean, default=False)
    unmanaged_reason: Mapped[str | None] = mapped_column(Text, default=None)
    unmanaged_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    # What the charger reported with GetConfiguration (csms.controller.capabilities JSON).
    # (None is SQL NULL, not JSON null, so "not read yet" is a plain IS NULL.)
    capabilities: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    capabilities_read_at: Mapped[datetime | None] = mapped_column(default=None)
    # Who set `wiring`: "manager" (typed via CLI / monitor, or the default) or "charger"
    # (from ConnectorPhaseRotation). A non-default wiring a manager typed is never replaced.
    wiring_set_by: Mapped[str] = mapped_column(
        String(16), default="manager", server_default="manager"
    )
    # The CSMS's mirror of the charging profiles the charger accepted (opaque JSON here).
    installed_profiles: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    # Chargers that mishandle a Pending BootNotification (never boot again): answered
    # Accepted at once; the controller installs their defaults before raising anything.
    accept_boot_at_once: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Local Auth List Management (OCPP 1.6 section 3.4): whether the charger keeps a list
    # (None: not asked yet) and the version its list has as far as the CSMS knows.
    local_list_supported: Mapped[bool | None] = mapped_column(Boolean, default=None)
    local_list_version: Mapped[int | None] = mapped_column(Integer, default=None)
    # Whether local_list_entries is what the charger holds (else the next update is Full).
    local_list_in_sync: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Connector(Base):
    """Latest status per connector (connector 0 = the charge point itself)."""

    __tablename__ = "connectors"

    charge_point_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.id", ondelete="CASCADE"), primary_key=True
    )
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str] = mapped_column(String(32), default="NoError")
    info: Mapped[str | None] = mapped_column(String(64), default=None)
    vendor_error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime]


class StatusEvent(Base):
    """Every StatusNotification received (history)."""

    __tablename__ = "status_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.id", ondelete="CASCADE"), index=True
    )
    connector_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str] = mapped_column(String(32))
    info: Mapped[str | None] = mapped_column(String(64), default=None)
    vendor_id: Mapped[str | None] = mapped_column(String(255), default=None)
    vendor_error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    timestamp: Mapped[datetime | None] = mapped_column(default=None)
    received_at: Mapped[datetime]


class IdTag(Base):
    __tablename__ = "id_tags"

    id_tag: Mapped[str] = mapped_column(String(20), primary_key=True)
    site_id: Mapped[int] = mapped_column(Integer, default=1, server_default="1", index=True)
    owner: Mapped[str | None] = mapped_column(String(128), default=None)
    parent_id_tag: Mapped[str | None] = mapped_column(String(20), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Transaction(Base):
    """One charging session. The primary key is the OCPP transactionId."""

    __tablename__ = "transactions"
    __table_args__ = (
        # A resent StartTransaction (same content, same or new message id) must map to
        # the same row: OCPP 1.6 section 4.8 plus FIELD-NOTES "Transactions and durability".
        UniqueConstraint(
            "charge_point_id",
            "connector_id",
            "id_tag",
            "meter_start_wh",
            "started_at",
            name="uq_transactions_start",
        ),
        Index("ix_transactions_open", "charge_point_id", "connector_id", "stopped_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.id", ondelete="CASCADE"), index=True
    )
    connector_id: Mapped[int] = mapped_column(Integer)
    id_tag: Mapped[str] = mapped_column(String(20))
    auth_status: Mapped[str] = mapped_column(String(16))
    reservation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    meter_start_wh: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(index=True)
    meter_stop_wh: Mapped[int | None] = mapped_column(BigInteger, default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    stop_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    stop_id_tag: Mapped[str | None] = mapped_column(String(20), default=None)
    # Residents' input for load management (defaults come from the site settings).
    departure_at: Mapped[datetime | None] = mapped_column(default=None)
    energy_needed_wh: Mapped[float | None] = mapped_column(Float, default=None)
    ev_model: Mapped[str | None] = mapped_column(String(64), default=None)
    battery_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    target_soc: Mapped[float | None] = mapped_column(Float, default=None)
    flags: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime]


class MeterHourlyEnergy(Base):
    """A transaction's plausible energy register readings in one UTC hour, rolled up
    (csms.store.rollups): the History reads these instead of millions of samples.

    The readings are the transaction's register samples without a flag plus its
    StopTransaction reading. ``inner_wh`` is the sum of the positive differences between
    consecutive readings within the hour; the energy of the hour is that plus the
    positive difference from the last reading of the transaction's previous hour (its
    meterStart before the first) to ``first_wh``, worked out when read. NULL
    ``inner_wh``: to be recounted from the samples (never left so after a commit).
    """

    __tablename__ = "meter_hourly_energy"

    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("transactions.id", ondelete="CASCADE"), primary_key=True
    )
    # Start of the hour, whole seconds since 1970-01-01 UTC (a multiple of 3600).
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    charge_point_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.id", ondelete="CASCADE"), index=True
    )
    first_at: Mapped[datetime]
    first_wh: Mapped[float] = mapped_column(Float)
    last_at: Mapped[datetime]
    last_wh: Mapped[float] = mapped_column(Float)
    inner_wh: Mapped[float | None] = mapped_column(Float, default=None)
    readings: Mapped[int] = mapped_column(Integer)


class MeterHourlyCurrent(Base):
    """A station's Current.Import samples of one UTC hour and phase, rolled up: their sum,
    maximum and count (every sample with a value, as the History's currents count them)."""

    __tablename__ = "meter_hourly_current"
    __table_args__ = (Index("ix_meter_hourly_current_hour", "hour"),)

    charge_point_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The sample's phase, '' for none.
    phase: Mapped[str] = mapped_column(String(8), primary_key=True)
    total_a: Mapped[float] = mapped_column(Float)
    max_a: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)


class OrphanStop(Base):
    """A StopTransaction for a transaction id the CSMS does not know (kept for reconciliation)."""

    __tablename__ = "orphan_stops"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.id", ondelete="CASCADE"), index=True
    )
    reported_transaction_id: Mapped[int] = mapped_column(BigInteger)
    id_tag: Mapped[str | None] = mapped_column(String(20), default=None)
    meter_stop_wh: Mapped[int] = mapped_column(BigInteger)
    stopped_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    transaction_data: Mapped[Any | None] = mapped_column(JSON, default=None)
    received_at: Mapped[datetime]


class MeterSample(Base):
    """One sampled value of a MeterValues / transactionData entry, raw and normalised."""

    __tablename__ = "meter_samples"
    __table_args__ = (
        Index("ix_meter_samples_cp_time", "charge_point_id", "timestamp"),
        Index("ix_meter_samples_tx", "transaction_id"),
        # Exactly once: a sample a charger resends (OCPP 1.6 section 3.7, maybe on a new
        # connection with a new message id) is the same row. Inserts ignore a conflict.
        Index(
            "uq_meter_samples_sample",
            "charge_point_id",
            "timestamp",
            "connector_id",
            "sample_key",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    connector_id: Mapped[int] = mapped_column(Integer)
    transaction_id: Mapped[int | None] = mapped_column(Integer, default=None)
    timestamp: Mapped[datetime]
    measurand: Mapped[str] = mapped_column(String(48))
    phase: Mapped[str | None] = mapped_column(String(8), default=None)
    unit: Mapped[str | None] = mapped_column(String(16), default=None)
    context: Mapped[str | None] = mapped_column(String(32), default=None)
    location: Mapped[str | None] = mapped_column(String(16), default=None)
    raw_value: Mapped[str] = mapped_column(String(64))
    # Normalised: Wh for energy, W for power, A for current, % for SoC, V, Hz, degC.
    value: Mapped[float | None] = mapped_column(Float, default=None)
    norm_unit: Mapped[str | None] = mapped_column(String(8), default=None)
    received_at: Mapped[datetime]
    # What identifies the sample besides station, time and connector, without NULLs (see
    # csms.meter.sample_key): transaction, measurand, phase, location. NULL for
    # rows a bulk tool wrote without it (the demo seeder): those are not deduplicated.
    sample_key: Mapped[str | None] = mapped_column(String(100), default=None)
    # Why an energy register reading is left out of energy totals (csms.meter:
    # "backwards", "jump"); None for a plausible one.
    flag: Mapped[str | None] = mapped_column(String(16), default=None)


class Command(Base):
    """Outbox of central-system-initiated operations (written by the monitor or the CLI)."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_status", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(48))
    payload: Mapped[Any] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_by: Mapped[str] = mapped_column(String(64), default="cli")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # The instance sending it (several on PostgreSQL, 0011).
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    response: Mapped[Any | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class Allocation(Base):
    """Every limit the controller decided, and what the charge point answered."""

    __tablename__ = "allocations"
    __table_args__ = (Index("ix_allocations_cp_time", "charge_point_id", "decided_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decided_at: Mapped[datetime] = mapped_column(index=True)
    charge_point_id: Mapped[str] = mapped_column(String(64))
    connector_id: Mapped[int] = mapped_column(Integer)
    transaction_id: Mapped[int | None] = mapped_column(Integer, default=None)
    strategy: Mapped[str] = mapped_column(String(32))
    limit_a: Mapped[float] = mapped_column(Float)
    sent: Mapped[bool] = mapped_column(Boolean, default=False)
    answer: Mapped[str | None] = mapped_column(String(32), default=None)


class Notification(Base):
    """A short human message to a resident (limit raised, lowered, paused, resumed...)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    charge_point_id: Mapped[str | None] = mapped_column(String(64), default=None)
    transaction_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    id_tag: Mapped[str | None] = mapped_column(String(20), default=None)
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(String(255))


class ConnectionEvent(Base):
    """Connects, disconnects, replaced connections and refused logins (audit trail)."""

    __tablename__ = "connection_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    charge_point_id: Mapped[str] = mapped_column(String(64), index=True)
    event: Mapped[str] = mapped_column(String(24))
    remote: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[str | None] = mapped_column(String(255), default=None)


# ------------------------------------------------------------- monitor accounts
class User(Base):
    """A person who logs in to the monitor (csms.auth.Role: manager, resident, viewer).

    ``password_hash``: scrypt, csms.auth.hash_user_password. ``credentials_version``
    grows when the password changes; a monitor session opened under an older one ends.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # The site whose garage the account sees; None: every site (an operator's account).
    site_id: Mapped[int | None] = mapped_column(Integer, default=None)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    credentials_version: Mapped[int] = mapped_column(Integer, default=1)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class UserStation(Base):
    """A resident's station (no foreign key: the binding outlives a charger swapped
    under the same id)."""

    __tablename__ = "user_stations"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    charge_point_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class UserTag(Base):
    """A resident's id tag (their RFID card; the sessions charged with it are theirs)."""

    __tablename__ = "user_tags"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    id_tag: Mapped[str] = mapped_column(String(20), primary_key=True)


class LoginThrottle(Base):
    """Failed logins per name tried, known or not (csms.auth.LoginThrottle)."""

    __tablename__ = "login_throttle"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime | None] = mapped_column(default=None)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)


class AuditEntry(Base):
    """Who did what, when: every write made in the monitor or with `csms user`, every
    login, logout, lockout and refused request."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str | None] = mapped_column(String(16), default=None)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(128), default=None)
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The site the row concerns (what the monitor showed, the account's site at a login);
    # None: the whole deployment (an operator's login, `csms user`, rows before 0012).
    site_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)


class SecurityEvent(Base):
    """A SecurityEventNotification a charger sent (OCPP 1.6 security extension)."""

    __tablename__ = "security_events"
    __table_args__ = (Index("ix_security_events_cp_time", "charge_point_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    # SecurityEventNotification.req: type (CiString50), techInfo (CiString255), timestamp.
    type: Mapped[str] = mapped_column(String(50))
    tech_info: Mapped[str | None] = mapped_column(String(255), default=None)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(index=True)


class ApiToken(Base):
    """A bearer token of the operator HTTP API (csms.api). Only a SHA-256 of the token is
    kept: a token is 256 random bits, so a fast hash cannot be brute-forced, and every
    request is checked in microseconds. ``user_id``: a resident token acts as that resident
    (their stations and tags); removing the user removes the token. Revoked tokens stay
    listed (``revoked_at``) and are refused."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, to recognise it in `csms token list`.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # The site a manager or viewer token acts within; None: every site (an operator).
    site_id: Mapped[int | None] = mapped_column(Integer, default=None)


# ---------------------------------------------------- the other 1.6 feature profiles
class LocalListEntry(Base):
    """The CSMS's copy of one entry of a charger's Local Authorization List (section 3.4):
    what the charger holds after the SendLocalList calls it accepted."""

    __tablename__ = "local_list_entries"

    charge_point_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.id", ondelete="CASCADE"), primary_key=True
    )
    id_tag: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    expiry_date: Mapped[datetime | None] = mapped_column(default=None)
    parent_id_tag: Mapped[str | None] = mapped_column(String(20), default=None)


class Reservation(Base):
    """A ReserveNow (section 5.13); the primary key is the OCPP reservationId."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_cp_status", "charge_point_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    connector_id: Mapped[int] = mapped_column(Integer)
    id_tag: Mapped[str] = mapped_column(String(20))
    parent_id_tag: Mapped[str | None] = mapped_column(String(20), default=None)
    expires_at: Mapped[datetime]
    # requested (queued), Accepted, Faulted, Occupied, Rejected, Unavailable (the
    # charger's answer), failed (no answer), cancelled, used (a transaction took it).
    status: Mapped[str] = mapped_column(String(16), default="requested")
    created_at: Mapped[datetime]
    requested_by: Mapped[str] = mapped_column(String(64), default="cli")
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    transaction_id: Mapped[int | None] = mapped_column(Integer, default=None)


class MaintenanceEvent(Base):
    """A FirmwareStatusNotification or DiagnosticsStatusNotification (sections 4.4, 4.5)."""

    __tablename__ = "maintenance_events"
    __table_args__ = (Index("ix_maintenance_events_cp_time", "charge_point_id", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # firmware | diagnostics
    status: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime]
