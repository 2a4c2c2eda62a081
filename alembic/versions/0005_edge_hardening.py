"""edge hardening: security profiles, key rotation, exactly-once meter samples, security events

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00

- ``charge_points.security_profile`` (0 no authentication, 1 HTTP Basic, 2 Basic over
  TLS only) and ``pending_password_hash`` (a rotated key whose fate is not known yet).
  Existing rows: a station with a password gets profile 1. One without a password was
  open to any client. A manager who registered it so was warned ("any client using this
  id will be accepted"): it becomes profile 0, explicitly unsecured, and is shown so. One
  that ``--auto-register`` recorded without a password was nobody's choice: it gets
  profile 1 and is refused until a manager gives it a password or marks it unsecured.
- ``meter_samples.sample_key`` and the unique index ``uq_meter_samples_sample``
  (charge point, timestamp, connector, sample_key): a sample a charger resends is stored
  once. Filled for every existing row; existing duplicates are deleted first (the oldest
  row of each stays). A row written later without a key (NULL: a bulk tool such as the
  demo seeder) is not deduplicated.
- ``meter_samples.flag``: an energy register reading left out of energy totals
  ("backwards", "jump"). Existing samples are not judged after the fact (no flag).
- ``security_events``: SecurityEventNotifications (filled by the security extension).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same text as csms.store.repository.sample_key builds for new rows.
FILL_SAMPLE_KEY = (
    "UPDATE meter_samples SET sample_key = "
    "COALESCE(CAST(transaction_id AS VARCHAR(20)), '') || '|' || measurand || '|' || "
    "COALESCE(phase, '') || '|' || COALESCE(location, '')"
)
DELETE_DUPLICATE_SAMPLES = (
    "DELETE FROM meter_samples WHERE id NOT IN (SELECT MIN(id) FROM meter_samples "
    "GROUP BY charge_point_id, timestamp, connector_id, sample_key)"
)


def upgrade() -> None:
    with op.batch_alter_table("charge_points", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("security_profile", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(
            sa.Column("pending_password_hash", sa.String(length=256), nullable=True)
        )
    charge_points = sa.table(
        "charge_points",
        sa.column("password_hash", sa.String()),
        sa.column("auto_registered", sa.Boolean()),
        sa.column("security_profile", sa.Integer()),
    )
    op.execute(
        charge_points.update()
        .where(
            charge_points.c.password_hash.is_(None),
            charge_points.c.auto_registered == sa.false(),
        )
        .values(security_profile=0)
    )

    with op.batch_alter_table("meter_samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sample_key", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("flag", sa.String(length=16), nullable=True))
    op.execute(FILL_SAMPLE_KEY)
    op.execute(DELETE_DUPLICATE_SAMPLES)
    with op.batch_alter_table("meter_samples", schema=None) as batch_op:
        batch_op.create_index(
            "uq_meter_samples_sample",
            ["charge_point_id", "timestamp", "connector_id", "sample_key"],
            unique=True,
        )

    op.create_table(
        "security_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("charge_point_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("tech_info", sa.String(length=255), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.id"],
            name=op.f("fk_security_events_charge_point_id_charge_points"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_events")),
    )
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_security_events_cp_time", ["charge_point_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_security_events_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+, PostgreSQL): batch mode would copy
    # charge_points, and dropping the old copy with foreign keys on deletes every row that
    # references it (ON DELETE CASCADE): transactions, samples, statuses.
    op.drop_index("ix_security_events_received_at", table_name="security_events")
    op.drop_index("ix_security_events_cp_time", table_name="security_events")
    op.drop_table("security_events")
    op.drop_index("uq_meter_samples_sample", table_name="meter_samples")
    for table, column in (
        ("meter_samples", "flag"),
        ("meter_samples", "sample_key"),
        ("charge_points", "pending_password_hash"),
        ("charge_points", "security_profile"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
