"""The Alembic migrations and the ORM models describe the same schema."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from csms.store import migrate
from csms.store.engine import create_engine
from csms.store.models import Base


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
