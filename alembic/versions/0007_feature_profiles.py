"""the other OCPP 1.6 feature profiles: local auth lists, reservations, firmware events

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-30 12:00:00

- ``charge_points.accept_boot_at_once``: a charger that mishandles a Pending
  BootNotification is answered Accepted at once (existing rows: no, as before).
- ``charge_points.local_list_supported`` / ``local_list_version``: whether the charger
  keeps a Local Authorization List and the version it has as far as the CSMS knows
  (existing rows: not known yet; the CSMS asks with GetLocalListVersion), and
  ``local_list_in_sync``: whether the copy below is what the charger holds.
- ``local_list_entries``: the CSMS's copy of each charger's list.
- ``reservations``: ReserveNow requests; the id is the OCPP reservationId.
- ``maintenance_events``: FirmwareStatusNotifications and DiagnosticsStatusNotifications.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, not batch mode: batch mode may copy charge_points
    # on SQLite, and dropping the old copy with foreign keys on deletes every row that
    # references it (ON DELETE CASCADE): transactions, samples, statuses (see 0005).
    op.add_column(
        "charge_points",
        sa.Column("accept_boot_at_once", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("charge_points", sa.Column("local_list_supported", sa.Boolean(), nullable=True))
    op.add_column("charge_points", sa.Column("local_list_version", sa.Integer(), nullable=True))
    op.add_column(
        "charge_points",
        sa.Column("local_list_in_sync", sa.Boolean(), nullable=False, server_default=sa.false()),
    )

    op.create_table(
        "local_list_entries",
        sa.Column("charge_point_id", sa.String(length=64), nullable=False),
        sa.Column("id_tag", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expiry_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parent_id_tag", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.id"],
            name=op.f("fk_local_list_entries_charge_point_id_charge_points"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("charge_point_id", "id_tag", name=op.f("pk_local_list_entries")),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("charge_point_id", sa.String(length=64), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("id_tag", sa.String(length=20), nullable=False),
        sa.Column("parent_id_tag", sa.String(length=20), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.id"],
            name=op.f("fk_reservations_charge_point_id_charge_points"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reservations_cp_status", ["charge_point_id", "status"], unique=False
        )
    op.create_table(
        "maintenance_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("charge_point_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.id"],
            name=op.f("fk_maintenance_events_charge_point_id_charge_points"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_events")),
    )
    with op.batch_alter_table("maintenance_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_maintenance_events_cp_time", ["charge_point_id", "received_at"], unique=False
        )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL), not batch mode: see 0005.
    op.drop_index("ix_maintenance_events_cp_time", table_name="maintenance_events")
    op.drop_table("maintenance_events")
    op.drop_index("ix_reservations_cp_status", table_name="reservations")
    op.drop_table("reservations")
    op.drop_table("local_list_entries")
    for column in ("local_list_in_sync", "local_list_version", "local_list_supported", "accept_boot_at_once"):
        op.execute(f"ALTER TABLE charge_points DROP COLUMN {column}")
