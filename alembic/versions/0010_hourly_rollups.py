"""hourly rollups of meter samples for the monitor's History

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 15:30:00

- ``meter_hourly_energy``: per transaction and UTC hour, the first and last plausible
  energy register reading (the StopTransaction reading counts as one), the sum of the
  positive differences between consecutive readings within the hour, and how many.
- ``meter_hourly_current``: per station, UTC hour and phase ('' for none), the sum,
  maximum and count of the Current.Import values.

Both are built here from the stored samples (csms.store.rollups keeps them from now on,
in the transaction that stores the samples). New tables only: nothing is copied, no
batch mode (see 0005: a batch copy of charge_points cascade-deletes its history).
Downgrade drops them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _epoch_sql(dialect: str, column: str) -> str:
    if dialect == "sqlite":
        return f"CAST(strftime('%s', {column}) AS INTEGER)"
    return f"CAST(floor(EXTRACT(EPOCH FROM {column})) AS BIGINT)"


def _build_sql(dialect: str) -> list[str]:
    # A frozen copy of csms.store.rollups.rebuild_sql as of this revision.
    sample_hour = f"({_epoch_sql(dialect, 'ms.timestamp')} / 3600) * 3600"
    stop_hour = f"({_epoch_sql(dialect, 't.stopped_at')} / 3600) * 3600"
    return [
        f"""
INSERT INTO meter_hourly_energy (transaction_id, hour, charge_point_id, first_at, first_wh,
    last_at, last_wh, inner_wh, readings)
SELECT tx_id, hr, MAX(cp), MIN(at), MAX(CASE WHEN rn_first = 1 THEN wh END),
    MAX(at), MAX(CASE WHEN rn_last = 1 THEN wh END),
    SUM(CASE WHEN prev_hr = hr AND wh > prev_wh THEN wh - prev_wh ELSE 0.0 END), COUNT(*)
FROM (
    SELECT tx_id, cp, at, wh, hr,
        LAG(wh) OVER (PARTITION BY tx_id ORDER BY at) AS prev_wh,
        LAG(hr) OVER (PARTITION BY tx_id ORDER BY at) AS prev_hr,
        ROW_NUMBER() OVER (PARTITION BY tx_id, hr ORDER BY at) AS rn_first,
        ROW_NUMBER() OVER (PARTITION BY tx_id, hr ORDER BY at DESC) AS rn_last
    FROM (
        SELECT ms.transaction_id AS tx_id, t.charge_point_id AS cp, ms.timestamp AS at,
            ms.value AS wh, {sample_hour} AS hr
        FROM meter_samples ms JOIN transactions t ON t.id = ms.transaction_id
        WHERE ms.measurand = 'Energy.Active.Import.Register' AND ms.phase IS NULL AND ms.value IS NOT NULL
            AND ms.flag IS NULL
        UNION ALL
        SELECT t.id, t.charge_point_id, t.stopped_at, CAST(t.meter_stop_wh AS FLOAT),
            {stop_hour}
        FROM transactions t
        WHERE t.stopped_at IS NOT NULL AND t.meter_stop_wh IS NOT NULL
    ) readings
) ordered
GROUP BY tx_id, hr
""",  # noqa: S608
        f"""
INSERT INTO meter_hourly_current (charge_point_id, hour, phase, total_a, max_a, samples)
SELECT ms.charge_point_id, {sample_hour}, COALESCE(ms.phase, ''), SUM(ms.value),
    MAX(ms.value), COUNT(*)
FROM meter_samples ms
WHERE ms.measurand = 'Current.Import' AND ms.value IS NOT NULL
GROUP BY ms.charge_point_id, {sample_hour}, COALESCE(ms.phase, '')
""",  # noqa: S608
    ]


def upgrade() -> None:
    op.create_table(
        "meter_hourly_energy",
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("charge_point_id", sa.String(length=64), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_wh", sa.Float(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_wh", sa.Float(), nullable=False),
        sa.Column("inner_wh", sa.Float(), nullable=True),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.id"],
            name="fk_meter_hourly_energy_charge_point_id_charge_points",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name="fk_meter_hourly_energy_transaction_id_transactions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("transaction_id", "hour", name="pk_meter_hourly_energy"),
    )
    op.create_index(
        "ix_meter_hourly_energy_charge_point_id",
        "meter_hourly_energy",
        ["charge_point_id"],
        unique=False,
    )
    op.create_table(
        "meter_hourly_current",
        sa.Column("charge_point_id", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("phase", sa.String(length=8), nullable=False),
        sa.Column("total_a", sa.Float(), nullable=False),
        sa.Column("max_a", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.id"],
            name="fk_meter_hourly_current_charge_point_id_charge_points",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "charge_point_id", "hour", "phase", name="pk_meter_hourly_current"
        ),
    )
    op.create_index(
        "ix_meter_hourly_current_hour", "meter_hourly_current", ["hour"], unique=False
    )
    for statement in _build_sql(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_meter_hourly_current_hour", table_name="meter_hourly_current")
    op.drop_table("meter_hourly_current")
    op.drop_index("ix_meter_hourly_energy_charge_point_id", table_name="meter_hourly_energy")
    op.drop_table("meter_hourly_energy")
