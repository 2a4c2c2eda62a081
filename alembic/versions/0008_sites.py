"""many sites: a site per garage, and the site of stations, id tags, accounts, building load

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:00:00

- ``site_settings`` holds one row per site (it held the one row id 1): a ``name``
  (unique). The existing row becomes site 1 named "default", its settings kept.
- ``charge_points.site_id``, ``id_tags.site_id``, ``building_load.site_id``: the site
  they belong to; every existing row is on site 1 (server default 1, so a bulk tool that
  names no site writes to site 1 as before).
- ``users.site_id``: the site an account sees; NULL is every site (an operator). Existing
  accounts are on site 1: an account made for the one garage does not see garages added
  later until an operator says so (``csms user set-site NAME --all-sites``).

Transactions, meter samples, commands, allocations and the rest belong to their
charge point's site. No foreign keys on ``site_id``: SQLite adds a column in place only
without one, and a batch copy of charge_points would cascade-delete its history (see
0005); the repository checks that a site exists.

Downgrade keeps site 1 only: the other sites' rows are deleted, their stations, tags and
readings stay (without a site, as before this revision).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SITE_TABLES = ("charge_points", "id_tags", "building_load")


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, not batch mode (see 0007).
    op.add_column(
        "site_settings",
        sa.Column("name", sa.String(length=64), nullable=False, server_default="default"),
    )
    op.create_index("uq_site_settings_name", "site_settings", ["name"], unique=True)
    for table in _SITE_TABLES:
        op.add_column(
            table, sa.Column("site_id", sa.Integer(), nullable=False, server_default="1")
        )
    op.create_index("ix_charge_points_site_id", "charge_points", ["site_id"], unique=False)
    op.create_index("ix_id_tags_site_id", "id_tags", ["site_id"], unique=False)
    op.create_index(
        "ix_building_load_site_time", "building_load", ["site_id", "measured_at"], unique=False
    )
    op.add_column("users", sa.Column("site_id", sa.Integer(), nullable=True))
    op.execute("UPDATE users SET site_id = 1")


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL), not batch mode: see 0005.
    op.execute("DELETE FROM site_settings WHERE id <> 1")
    op.drop_index("ix_building_load_site_time", table_name="building_load")
    op.drop_index("ix_id_tags_site_id", table_name="id_tags")
    op.drop_index("ix_charge_points_site_id", table_name="charge_points")
    op.drop_index("uq_site_settings_name", table_name="site_settings")
    op.execute("ALTER TABLE users DROP COLUMN site_id")
    for table in _SITE_TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN site_id")
    op.execute("ALTER TABLE site_settings DROP COLUMN name")
