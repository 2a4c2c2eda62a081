"""The Alembic migrations and the ORM models describe the same schema."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from csms.store import migrate
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.models import Base
from csms.store.repository import Repository


async def test_models_and_migrations_agree(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
        assert diff == []
    finally:
        await engine.dispose()


async def test_every_table_is_created_by_a_migration(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert set(Base.metadata.tables) <= tables
        assert await migrate.current_revision(engine) is not None
    finally:
        await engine.dispose()


async def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine)
        cfg = migrate.alembic_config(db_url)
        async with engine.begin() as conn:

            def _down(sync: object) -> None:
                cfg.attributes["connection"] = sync
                command.downgrade(cfg, "base")

            await conn.run_sync(_down)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert tables <= {"alembic_version"}
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) is not None
    finally:
        await engine.dispose()


async def test_0003_carries_existing_charge_points_over(db_url: str) -> None:
    """Rows written under 0002 keep their data; an old unmanaged mark gets a reason."""
    engine = create_engine(db_url)
    at = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
    try:
        await migrate.upgrade(engine, "0002")
        async with engine.begin() as conn:
            for cp_id, unmanaged in (("OLD1", True), ("OLD2", False)):
                await conn.execute(
                    text(
                        "INSERT INTO charge_points (id, max_current_a, phases, wiring, "
                        "min_current_a, only_stack_level_0, rate_unit, auto_registered, "
                        "connected, unmanaged, created_at) VALUES (:id, 16, 3, 'L2L3L1', 6, "
                        ":false, 'W', :false, :false, :unmanaged, :at)"
                    ),
                    {"id": cp_id, "unmanaged": unmanaged, "false": False, "at": at},
                )
        await migrate.upgrade(engine)
        repo = Repository(create_sessionmaker(engine))
        old1, old2 = await repo.get_charge_point("OLD1"), await repo.get_charge_point("OLD2")
        assert old1 is not None and old2 is not None
        assert old1.unmanaged and old1.unmanaged_reason == "marked before reasons were recorded"
        assert old1.unmanaged_at is None  # not known
        assert not old2.unmanaged and old2.unmanaged_reason is None
        assert (old1.wiring, old1.rate_unit, old1.wiring_set_by) == ("L2L3L1", "W", "manager")
        assert old1.max_stack_level is None and old1.capabilities_read_at is None
        assert await repo.installed_profiles() == {}
        assert await repo.charge_point_capabilities() == {}
    finally:
        await engine.dispose()


async def test_0003_downgrades_to_0002(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine)
        cfg = migrate.alembic_config(db_url)
        async with engine.begin() as conn:

            def _down(sync: object) -> None:
                cfg.attributes["connection"] = sync
                command.downgrade(cfg, "0002")

            await conn.run_sync(_down)
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("charge_points")}
            )
        assert "unmanaged" in columns
        assert not columns & {
            "unmanaged_reason",
            "unmanaged_at",
            "capabilities",
            "capabilities_read_at",
            "wiring_set_by",
            "installed_profiles",
        }
        assert await migrate.current_revision(engine) == "0002"
    finally:
        await engine.dispose()
