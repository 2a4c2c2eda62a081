"""Many sites in the store (issue 12 item 1): migration 0008 carries a single-site
database over as site 1 "default", and the repository keeps each site's settings,
stations, tags, sessions and building load apart. On SQLite and on a real PostgreSQL 15."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from csms.auth import Role
from csms.domain import AuthStatus
from csms.errors import ConfigError, NotFoundError
from csms.store import migrate
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.features import FeatureStore
from csms.store.repository import Repository
from tests.conftest import fixed_clock
from tests.test_postgres import new_database
from tests.test_postgres import pg_url as pg_server  # noqa: F401  (the module's server)

AT = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a new database on the module's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'sites.db'}"
        return
    server: str = request.getfixturevalue("pg_server")
    yield new_database(server, "sites")


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _repo(engine: AsyncEngine) -> Repository:
    return Repository(create_sessionmaker(engine), fixed_clock(AT))


# Rows as a single-site garage has them at 0007 (the ORM knows only the newest schema).
_ROWS_AT_0007 = (
    "INSERT INTO site_settings (id, fuse_limit_a, margin_a, phases, voltage_v, strategy, "
    "tick_s, default_departure, default_energy_kwh, timezone, price_per_kwh, currency, "
    "heartbeat_interval_s, building_load_max_age_s, building_load_worst_case_a) VALUES "
    "(1, 40, 3, 3, 230, 'fill', 5, '06:45', 15, 'Europe/Oslo', 1.5, 'NOK', 300, 300, 10)",
    "INSERT INTO charge_points (id, password_hash, max_current_a, phases, wiring, "
    "min_current_a, only_stack_level_0, rate_unit, auto_registered, connected, "
    "unmanaged, created_at) VALUES ('CP1', 'scrypt$hash', 16, 3, 'L1L2L3', 6, :f, "
    "'A', :f, :f, :f, :at)",
    "INSERT INTO id_tags (id_tag, owner, blocked, created_at) VALUES ('TAG1', 'Ann', :f, :at)",
    "INSERT INTO transactions (id, charge_point_id, connector_id, id_tag, auth_status,"
    " meter_start_wh, started_at, meter_stop_wh, stopped_at, created_at) VALUES (7, 'CP1', 1,"
    " 'TAG1', 'Accepted', 1000, :at, 3500, :at, :at)",
    "INSERT INTO building_load (measured_at, l1_a, l2_a, l3_a, source) VALUES "
    "(:at, 11, 12, 13, 'meter')",
    "INSERT INTO users (name, role, password_hash, created_at, credentials_version) VALUES "
    "('boss', 'manager', 'scrypt$x', :at, 1)",
)


async def test_0008_carries_a_single_site_over_as_site_default(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine, "0007")
    async with engine.begin() as conn:
        for insert in _ROWS_AT_0007:
            await conn.execute(text(insert), {"f": False, "at": AT})
    await migrate.upgrade(engine)
    repo = _repo(engine)

    sites = await repo.list_sites()
    assert [(s.site_id, s.name) for s in sites] == [(1, "default")]
    site = await repo.site_config()
    assert (site.fuse_limit_a, site.margin_a, site.strategy, site.default_departure) == (
        40.0,
        3.0,
        "fill",
        "06:45",
    )
    station = await repo.get_charge_point("CP1")
    assert station is not None and station.site_id == 1 and station.password_hash
    assert [t["site_id"] for t in await repo.list_id_tags()] == [1]
    assert await repo.latest_building_load() == (AT, (11.0, 12.0, 13.0))
    user = await repo.get_user("boss")
    assert user is not None and user.site_id == 1
    rows = await repo.sessions_for_export(site_id=1)
    assert [(r["transaction_id"], r["energy_wh"], r["owner"]) for r in rows] == [(7, 2500, "Ann")]

    # A second garage after the migration: numbered after the first, nothing moves.
    b = await repo.add_site("Berg", fuse_limit_a=25.0)
    assert b.site_id == 2 and b.fuse_limit_a == 25.0
    assert [cp.id for cp in await repo.list_charge_points(site_id=2)] == []
    assert [cp.id for cp in await repo.list_charge_points(site_id=1)] == ["CP1"]


async def test_0008_downgrades_to_0007_keeping_site_1(engine: AsyncEngine, store_url: str) -> None:
    await migrate.upgrade(engine)
    repo = _repo(engine)
    await repo.update_site(fuse_limit_a=50.0)
    b = await repo.add_site("Berg")
    await repo.add_charge_point("A1")
    await repo.add_charge_point("B1", site_id=b.site_id)
    cfg = migrate.alembic_config(store_url)
    async with engine.begin() as conn:

        def _down(sync: object) -> None:
            cfg.attributes["connection"] = sync
            command.downgrade(cfg, "0007")

        await conn.run_sync(_down)
    async with engine.connect() as conn:
        columns = await conn.run_sync(
            lambda sync: {c["name"] for c in inspect(sync).get_columns("charge_points")}
        )
        sites = (await conn.execute(text("SELECT id, fuse_limit_a FROM site_settings"))).all()
        stations = (await conn.execute(text("SELECT id FROM charge_points ORDER BY id"))).all()
    assert "site_id" not in columns
    assert [tuple(r) for r in sites] == [(1, 50.0)]
    assert [r[0] for r in stations] == ["A1", "B1"]
    await migrate.upgrade(engine)
    assert [s.name for s in await repo.list_sites()] == ["default"]


async def test_each_site_keeps_its_settings_stations_tags_and_sessions(
    engine: AsyncEngine,
) -> None:
    await migrate.upgrade(engine)
    repo = _repo(engine)
    a = await repo.site_config()
    b = await repo.add_site("Berg", fuse_limit_a=25.0, strategy="fill")
    assert (a.site_id, a.name, b.site_id, b.name) == (1, "default", 2, "Berg")
    with pytest.raises(ConfigError, match="already exists"):
        await repo.add_site("Berg")
    with pytest.raises(ConfigError, match="unknown site setting"):
        await repo.add_site("Dal", fuse_a=3.0)
    with pytest.raises(NotFoundError, match="no site 9"):
        await repo.add_charge_point("X", site_id=9)

    # Settings: a change on one site leaves the other as it was.
    await repo.update_site(site_id=2, fuse_limit_a=20.0)
    await repo.update_site(margin_a=4.0)  # no site named: site 1
    assert (await repo.site_config(site_id=2)).fuse_limit_a == 20.0
    assert (await repo.site_config(site_id=2)).margin_a == 2.0
    assert (await repo.site_config()).fuse_limit_a == 63.0
    assert (await repo.site_config()).margin_a == 4.0
    with pytest.raises(ConfigError, match="already exists"):
        await repo.update_site(site_id=2, name="default")

    await repo.add_charge_point("A1")
    await repo.add_charge_point("B1", site_id=2)
    await repo.add_charge_point("B2", site_id=2)
    await repo.add_id_tag("TAG-A")
    await repo.add_id_tag("TAG-B", site_id=2)
    assert [cp.id for cp in await repo.list_charge_points()] == ["A1", "B1", "B2"]
    assert [cp.id for cp in await repo.list_charge_points(site_id=2)] == ["B1", "B2"]
    assert [t["id_tag"] for t in await repo.list_id_tags(site_id=1)] == ["TAG-A"]
    assert await repo.charge_point_sites() == {"A1": 1, "B1": 2, "B2": 2}
    # A tag is a resident's of one site: Invalid at another site's charger.
    assert (await repo.authorize("TAG-A", "A1")).status is AuthStatus.accepted
    assert (await repo.authorize("TAG-A", "B1")).status is AuthStatus.invalid
    assert (await repo.authorize("TAG-A")).status is AuthStatus.accepted
    assert [t["id_tag"] for t in await FeatureStore(repo).id_tags("B1")] == ["TAG-B"]

    tx_a = (await repo.start_transaction("A1", 1, "TAG-A", 0, AT)).transaction_id
    tx_b = (await repo.start_transaction("B1", 1, "TAG-B", 0, AT)).transaction_id
    assert [s.transaction_id for s in await repo.open_sessions(site_id=2)] == [tx_b]
    assert [s.transaction_id for s in await repo.open_sessions()] == [tx_a, tx_b]
    assert [r["transaction_id"] for r in await repo.sessions_for_export(site_id=1)] == [tx_a]

    await repo.record_building_load(5, 5, 5, site_id=2)
    assert await repo.latest_building_load() is None
    latest = await repo.latest_building_load(site_id=2)
    assert latest is not None and latest[1] == (5.0, 5.0, 5.0)

    # A site's view (what a site's controller reads): only its own.
    view = repo.for_site(2)
    assert (await view.site_config()).name == "Berg"
    assert [cp.id for cp in await view.list_charge_points()] == ["B1", "B2"]
    assert [s.transaction_id for s in await view.open_sessions()] == [tx_b]
    site, building, stations, _connectors, sessions = await view.controller_inputs()
    assert getattr(site, "fuse_limit_a", None) == 20.0
    assert building is not None and building[1:] == (5.0, 5.0, 5.0)
    assert [row[0] for row in stations] == ["B1", "B2"]  # type: ignore[attr-defined]
    assert [row[0] for row in sessions] == [tx_b]  # type: ignore[attr-defined]
    await view.add_charge_point("B3")  # a view adds to its site
    assert (await repo.charge_point_sites())["B3"] == 2

    # Accounts: one per site, or every site (None).
    await repo.add_user("boss-b", Role.manager, "h", site_id=2)
    await repo.add_user("operator", Role.manager, "h")
    await repo.add_user("boss-a", Role.manager, "h", site_id=1)
    assert [u.name for u in await repo.list_users(site_id=2)] == ["boss-b", "operator"]
    operator = await repo.get_user("operator")
    assert operator is not None and operator.site_id is None
