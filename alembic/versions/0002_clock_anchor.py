"""clock anchor: the CSMS publishes its (possibly simulated) clock for the monitor

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clock_anchor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sim_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wall_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("speed", sa.Float(), nullable=False),
        sa.Column("published_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clock_anchor")),
    )


def downgrade() -> None:
    op.drop_table("clock_anchor")
