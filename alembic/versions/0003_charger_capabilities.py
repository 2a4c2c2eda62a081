"""charger capabilities: why a charger is unmanaged, what it reported, who set its wiring

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00

Existing rows: a charger already marked unmanaged gets the reason "marked before reasons
were recorded" (and no time: it is not known); every wiring counts as set by a manager.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY_REASON = "marked before reasons were recorded"


def upgrade() -> None:
    with op.batch_alter_table("charge_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unmanaged_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("unmanaged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("capabilities", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("capabilities_read_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "wiring_set_by",
                sa.String(length=16),
                nullable=False,
                server_default="manager",
            )
        )
        batch_op.add_column(sa.Column("installed_profiles", sa.JSON(), nullable=True))
    charge_points = sa.table(
        "charge_points",
        sa.column("unmanaged", sa.Boolean()),
        sa.column("unmanaged_reason", sa.Text()),
    )
    op.execute(
        charge_points.update()
        .where(charge_points.c.unmanaged == sa.true())
        .values(unmanaged_reason=LEGACY_REASON)
    )


def downgrade() -> None:
    with op.batch_alter_table("charge_points", schema=None) as batch_op:
        batch_op.drop_column("installed_profiles")
        batch_op.drop_column("wiring_set_by")
        batch_op.drop_column("capabilities_read_at")
        batch_op.drop_column("capabilities")
        batch_op.drop_column("unmanaged_at")
        batch_op.drop_column("unmanaged_reason")
