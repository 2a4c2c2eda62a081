"""Apply Alembic migrations programmatically (used by `csms db upgrade` and `csms serve`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"
# PostgreSQL advisory locks of GarageGrid: (ADVISORY_LOCK_CLASS, site id) is a site's
# leadership (csms.cluster); (ADVISORY_LOCK_CLASS, 0), no site's, is held while migrating.
ADVISORY_LOCK_CLASS = 0x4747


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logging"] = False
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision``."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Instances that start at once: one migrates, the others wait for its commit
            # and find the database at head.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key, 0)"), {"key": ADVISORY_LOCK_CLASS}
            )
        cfg.attributes["connection"] = None

        def _run(sync_connection: object) -> None:
            cfg.attributes["connection"] = sync_connection
            command.upgrade(cfg, revision)

        await connection.run_sync(_run)


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:

        def _get(sync_connection: object) -> str | None:
            ctx = MigrationContext.configure(sync_connection)  # type: ignore[arg-type]
            return ctx.get_current_revision()

        return await connection.run_sync(_get)
