"""API tokens bound to a site

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:00:00

- ``api_tokens.site_id``: the site a manager or viewer token acts within (made with
  ``csms token add NAME --role manager --site NAME``); NULL is an operator token (every
  site), which every existing token stays. A resident token acts within its account's
  site. No foreign key, as for the other ``site_id`` columns (see 0008).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, not batch mode (see 0007).
    op.add_column("api_tokens", sa.Column("site_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL), not batch mode: see 0005.
    op.execute("ALTER TABLE api_tokens DROP COLUMN site_id")
