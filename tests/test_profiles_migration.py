"""Migration 0007 (feature profiles) keeps every row that references a charge point.

Batch mode on SQLite copies a table; dropping the old copy of charge_points with foreign
keys on deletes its transactions, samples and statuses (ON DELETE CASCADE). 0007 adds
its columns with plain ALTER TABLE; this test fails if that ever changes."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.script import ScriptDirectory
from sqlalchemy import text

from csms.store import migrate
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository


def _before_0007() -> str:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    revision = script.get_revision("0007")
    assert revision is not None and isinstance(revision.down_revision, str)
    return revision.down_revision


async def test_0007_keeps_stations_and_what_references_them(db_url: str) -> None:
    engine = create_engine(db_url)
    at = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
    try:
        await migrate.upgrade(engine, _before_0007())
        # Rows as the schema before 0007 has them (the ORM knows only the newest one).
        inserts = (
            "INSERT INTO charge_points (id, password_hash, max_current_a, phases, wiring, "
            "min_current_a, only_stack_level_0, rate_unit, auto_registered, connected, "
            "unmanaged, created_at) VALUES ('CP1', 'scrypt$hash', 16, 3, 'L1L2L3', 6, :f, "
            "'A', :f, :f, :f, :at)",
            "INSERT INTO status_events (charge_point_id, connector_id, status, error_code, "
            "received_at) VALUES ('CP1', 1, 'Charging', 'NoError', :at)",
            "INSERT INTO connectors (charge_point_id, connector_id, status, error_code, "
            "updated_at) VALUES ('CP1', 1, 'Charging', 'NoError', :at)",
            "INSERT INTO transactions (id, charge_point_id, connector_id, id_tag, auth_status,"
            " meter_start_wh, started_at, created_at) VALUES (7, 'CP1', 1, 'TAG1', "
            "'Accepted', 1000, :at, :at)",
            "INSERT INTO meter_samples (charge_point_id, connector_id, transaction_id, "
            "timestamp, measurand, raw_value, value, received_at) VALUES ('CP1', 1, 7, :at, "
            "'Energy.Active.Import.Register', '1500', 1500, :at)",
        )
        async with engine.begin() as conn:
            for insert in inserts:
                await conn.execute(text(insert), {"f": False, "at": at})
        await migrate.upgrade(engine)
        repo = Repository(create_sessionmaker(engine))
        station = await repo.get_charge_point("CP1")
        assert station is not None and station.password_hash is not None
        assert station.accept_boot_at_once is False
        assert (station.local_list_supported, station.local_list_version) == (None, None)
        assert station.local_list_in_sync is False
        assert await repo.get_transaction(7) is not None
        async with engine.connect() as conn:
            for table in ("meter_samples", "status_events", "connectors", "transactions"):
                count = (await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one()
                assert count == 1, table
    finally:
        await engine.dispose()
