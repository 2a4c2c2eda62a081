"""The site an audit row belongs to

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 15:00:00

- ``audit_log.site_id``: the site a monitor write, login or refusal concerns (the site
  the monitor showed, the site of the account that logged in), so that the monitor's
  Audit page shows a site-bound manager their own site's rows only. NULL: the whole
  deployment (an operator's login, ``csms user``, and every row written before). No
  foreign key, as for the other ``site_id`` columns (see 0008).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, not batch mode (see 0007).
    op.add_column("audit_log", sa.Column("site_id", sa.Integer(), nullable=True))
    op.create_index("ix_audit_log_site_id", "audit_log", ["site_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_site_id", table_name="audit_log")
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL), not batch mode: see 0005.
    op.execute("ALTER TABLE audit_log DROP COLUMN site_id")
