"""History's load query: an index that covers it (meter samples by measurand and time)

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-30 12:40:00

The monitor's History reads a month of currents (or power) of every station: without
this index SQLite scanned the whole meter_samples table (`SCAN meter_samples`); with it
the query reads only that measurand's rows in the time range, from the index alone
(`SEARCH meter_samples USING COVERING INDEX ix_meter_samples_measurand_time
(measurand=? AND timestamp>? AND timestamp<?)`). Building it on an existing store reads
the table once (about 20 s for 7 million samples on a 2-core machine).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_meter_samples_measurand_time",
        "meter_samples",
        ["measurand", "timestamp", "charge_point_id", "phase", "value"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_meter_samples_measurand_time", table_name="meter_samples")
