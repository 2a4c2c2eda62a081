"""Several instances on one PostgreSQL database

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 15:00:00

- ``charge_points.instance_id``: which `csms serve` instance holds the charger's
  connection (``connected`` true). An instance that dies leaves its chargers marked
  connected; the others mark them disconnected by this column (``csms.cluster``), and an
  old connection that closes after its charger reconnected elsewhere no longer marks it
  disconnected.
- ``commands.claimed_by``: the instance sending an outbox command, so that an instance
  that starts fails only its own interrupted commands (or a dead instance's), never one
  another live instance is sending.
Both NULL on a single instance (SQLite) and for every existing row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, never batch mode on charge_points: the copy that
    # batch mode makes on SQLite cascades deletes to every transaction (see 0007).
    op.add_column("charge_points", sa.Column("instance_id", sa.String(64), nullable=True))
    op.add_column("commands", sa.Column("claimed_by", sa.String(64), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL), not batch mode: see 0005.
    op.execute("ALTER TABLE commands DROP COLUMN claimed_by")
    op.execute("ALTER TABLE charge_points DROP COLUMN instance_id")
