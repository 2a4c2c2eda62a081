"""The monitor per site (issue 12, "Many sites"): an operator picks a site in the sidebar
and every page shows that site alone; an account bound to a site sees its site, with
nothing to pick; a write aimed at another site's station is refused and audited; a
single-site install shows no picker. AppTest against a real SQLite file (and one read
on a real PostgreSQL 15)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from csms.auth import AccessDeniedError, Account, Role, hash_user_password
from csms.monitor import actions, writes
from csms.monitor.access import SITE_KEY
from csms.store import migrate
from csms.store import models as m
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.conftest import start_app
from tests.test_monitor_apptest import (
    APP,
    END,
    MANAGER,
    TIMEOUT_S,
    FakeWall,
    FixedClock,
    Garage,
    _ensure_manager,
    _seeded,
    install_wall,
    log_in,
    page_path,
    release_stores,
    texts,
)
from tests.test_postgres import new_database
from tests.test_postgres import pg_url as pg_server  # noqa: F401  (the module's server)

KARI_PASSWORD = "kari-secret-pw"
BERG_STATIONS = ("B-01", "B-02")
SEEDED_STATIONS = tuple(f"CP{i:03d}" for i in range(1, 7))


@functools.cache
def kari_hash() -> str:
    return hash_user_password(KARI_PASSWORD)


@pytest.fixture(autouse=True)
def wall(monkeypatch: pytest.MonkeyPatch) -> FakeWall:
    return install_wall(monkeypatch)


@pytest.fixture(autouse=True)
def _release_stores() -> Iterator[None]:
    yield
    release_stores()


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Garage:
    return _seeded(tmp_path, monkeypatch, END)


def _run(url: str, work: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(url)
        try:
            return await work(Repository(create_sessionmaker(engine), clock=FixedClock(END)))
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def _add_berg(repo: Repository, *, kari_site: str | None = "Berg") -> int:
    """A second site, Berg (its own fuse, two stations, a tag, a building load reading),
    and kari, a manager bound to ``kari_site`` (None: every site)."""
    berg = await repo.add_site("Berg", fuse_limit_a=50.0, margin_a=4.0, timezone="UTC")
    for cp_id in BERG_STATIONS:
        await repo.add_charge_point(cp_id, max_current_a=32, phases=3, site_id=berg.site_id)
    await repo.add_id_tag("BERGTAG", owner="Bjørn", site_id=berg.site_id)
    await repo.record_building_load(21.0, 22.0, 23.0, site_id=berg.site_id)
    kari_site_id = None if kari_site is None else berg.site_id if kari_site == "Berg" else 1
    await repo.add_user("kari", Role.manager, kari_hash(), site_id=kari_site_id)
    return berg.site_id


def _app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(page_path(page)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _table_cells(at: AppTest) -> set[str]:
    return {str(v) for frame in at.dataframe for v in frame.value.to_numpy().ravel()}


def _site_picker(at: AppTest) -> Any:
    found = [box for box in at.sidebar.selectbox if box.key == SITE_KEY]
    return found[0] if found else None


def _settings_fuse(at: AppTest) -> float:
    return float(at.number_input(key="set_fuse").value)


def _audit_rows(url: str) -> list[m.AuditEntry]:
    async def read(repo: Repository) -> list[m.AuditEntry]:
        async with repo.sessionmaker() as s:
            return list((await s.execute(select(m.AuditEntry).order_by(m.AuditEntry.id))).scalars())

    result: list[m.AuditEntry] = _run(url, read)
    return result


# ------------------------------------------------------------------------ operator
def test_an_operator_switches_site_and_sees_only_that_sites_stations_and_settings(
    seeded: Garage,
) -> None:
    berg_id = _run(seeded.url, _add_berg)
    at = _app()
    log_in(at, MANAGER)  # mia: an account of every site (no site of her own)
    picker = _site_picker(at)
    assert picker is not None and picker.options == ["default", "Berg"]
    assert picker.value == 1

    _open(at, "stations")
    cells = _table_cells(at)
    assert set(SEEDED_STATIONS) <= cells and not cells & set(BERG_STATIONS)
    _open(at, "settings")
    assert _settings_fuse(at) != 50.0

    _site_picker(at).set_value(berg_id).run()
    assert not at.exception, [e.value for e in at.exception]
    assert _settings_fuse(at) == 50.0
    assert "L1 21 A, L2 22 A, L3 23 A" in texts(at.caption)  # Berg's building load
    # A change on Berg's settings page is Berg's, audited with Berg's site.
    default_fuse = _run(seeded.url, lambda repo: repo.site_config(1)).fuse_limit_a
    at.number_input(key="set_fuse").set_value(80.0)
    at.button(key="settings_save").click().run()
    assert not at.error, texts(at.error)
    assert _run(seeded.url, lambda repo: repo.site_config(berg_id)).fuse_limit_a == 80.0
    assert _run(seeded.url, lambda repo: repo.site_config(1)).fuse_limit_a == default_fuse
    change = [r for r in _audit_rows(seeded.url) if r.action == "change settings"]
    assert [(r.actor, r.outcome, r.site_id) for r in change] == [(MANAGER, "ok", berg_id)]

    _open(at, "stations")
    cells = _table_cells(at)
    assert set(BERG_STATIONS) <= cells and not cells & set(SEEDED_STATIONS)
    assert at.selectbox(key="manage_station").options == list(BERG_STATIONS)
    _open(at, "sessions")  # Berg has had no session: the seeded garage's are not shown
    assert "No charging session yet" in texts(at.info)
    _open(at, "history")
    assert "No energy was metered" in texts(at.info)
    _open(at, "live")
    assert "No meter values yet" in texts(at.info)
    assert _metric(at, "Cars charging") == "0"

    # Back to the default site with a Berg station picked on History: the pages start
    # afresh (no Berg station stays picked) and show the default site's energy and cars.
    _open(at, "history")
    at.multiselect(key="history_stations").set_value(["B-01"]).run()
    _site_picker(at).set_value(1).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="history_stations").value == []
    assert "No energy was metered" not in texts(at.info)
    _open(at, "live")
    assert "No meter values yet" not in texts(at.info)
    assert int(_metric(at, "Cars charging")) > 0


def _metric(at: AppTest, label: str) -> str:
    return str(next(x.value for x in at.metric if x.label == label))


# ---------------------------------------------------------------------- site-bound
def test_a_site_bound_manager_logs_in_and_sees_only_its_site_without_a_picker(
    seeded: Garage,
) -> None:
    berg_id = _run(seeded.url, _add_berg)
    # The operator changes the default site first: Berg's manager must not see it.
    mia = _app()
    log_in(mia, MANAGER)
    _open(mia, "settings")
    mia.number_input(key="set_fuse").set_value(99.0)
    mia.button(key="settings_save").click().run()
    assert not mia.error, texts(mia.error)

    at = _app()
    log_in(at, "kari", KARI_PASSWORD)
    assert not at.exception and "kari" in texts(at.sidebar.markdown)
    assert not at.error, texts(at.error)
    assert _site_picker(at) is None
    assert "Berg" in texts(at.sidebar.caption)
    # A crafted choice of another site changes nothing: kari's site is Berg.
    at.session_state[SITE_KEY] = 1
    _open(at, "stations")
    cells = _table_cells(at)
    assert set(BERG_STATIONS) <= cells and not cells & set(SEEDED_STATIONS)
    _open(at, "settings")
    assert _settings_fuse(at) == 50.0
    _open(at, "resident")
    assert set(at.selectbox(key="resident_station").options) == set(BERG_STATIONS)
    _open(at, "audit")
    audit = _table_cells(at)
    assert "kari" in audit and MANAGER not in audit  # mia's change was the default site's
    logins = [r for r in _audit_rows(seeded.url) if r.actor == "kari" and r.action == "log in"]
    assert [(r.outcome, r.site_id) for r in logins] == [("ok", berg_id)]


# -------------------------------------------------------------------------- writes
def test_a_write_aimed_at_another_sites_station_is_refused_and_audited(seeded: Garage) -> None:
    berg_id = _run(seeded.url, _add_berg)
    kari = Account(id=0, name="kari", role=Role.manager, site_id=berg_id)
    operator = Account(id=0, name=MANAGER, role=Role.manager)
    before = _run(seeded.url, lambda repo: repo.get_charge_point("CP001"))
    queued = _run(seeded.url, lambda repo: repo.count(m.Command))
    attempts = (
        # kari's own site is Berg: a default-site station is not hers, named or not.
        lambda: writes.edit_station(kari, "CP001", name="taken over"),
        lambda: writes.edit_station(kari, "CP001", berg_id, name="taken over"),
        lambda: writes.remove_station(kari, "CP001", berg_id),
        lambda: writes.send_command(kari, "CP001", actions.soft_reset(), berg_id),
        lambda: writes.count_as_managed(kari, "CP001"),
        # ... nor the default site itself.
        lambda: writes.send_command(kari, "CP001", actions.soft_reset(), 1),
        lambda: writes.update_site(
            kari, _run(seeded.url, lambda repo: repo.site_config(1)), {"fuse_limit_a": 1.0}
        ),
        # An operator looking at Berg: a default-site station is not on the page's site.
        lambda: writes.send_command(operator, "CP001", actions.soft_reset(), berg_id),
        # Berg's station reserved for a default-site resident's tag.
        lambda: writes.reserve(kari, "B-01", 1, "TAG0001", END + timedelta(hours=1), now=END),
    )
    for attempt in attempts:
        with pytest.raises(AccessDeniedError):
            attempt()
    assert _run(seeded.url, lambda repo: repo.get_charge_point("CP001")) == before
    assert _run(seeded.url, lambda repo: repo.count(m.Command)) == queued
    denied = [r for r in _audit_rows(seeded.url) if r.outcome == "denied"]
    assert len(denied) == len(attempts)
    assert {r.site_id for r in denied} == {berg_id}
    # What the page's site holds is written: kari's command to Berg's station is queued.
    writes.send_command(kari, "B-01", actions.soft_reset(), berg_id)
    writes.reserve(kari, "B-01", 1, "BERGTAG", END + timedelta(hours=1), now=END)
    assert _run(seeded.url, lambda repo: repo.count(m.Command)) == queued + 2


# --------------------------------------------------------------------- single site
def test_a_single_site_install_shows_no_site_picker(seeded: Garage) -> None:
    _run(
        seeded.url,
        lambda repo: repo.add_user("kari", Role.manager, kari_hash(), site_id=1),
    )
    for who, password in ((MANAGER, None), ("kari", KARI_PASSWORD)):
        at = _app()
        log_in(at, who, password)
        assert not at.exception and who in texts(at.sidebar.markdown)
        assert _site_picker(at) is None
        assert "Site" not in texts(at.sidebar.caption)
        _open(at, "stations")
        assert set(SEEDED_STATIONS) <= _table_cells(at)
        _open(at, "account")
        assert "Site" not in texts(at.markdown)


# ---------------------------------------------------------------------- PostgreSQL
@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a new database on the module's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'msite.db'}"
        return
    server: str = request.getfixturevalue("pg_server")
    yield new_database(server, "msite")


def test_a_site_bound_manager_reads_its_site_on_either_database(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def build(repo: Repository) -> int:
        engine = create_engine(store_url)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        for cp_id in SEEDED_STATIONS[:2]:
            await repo.add_charge_point(cp_id, max_current_a=16, phases=3)
        return await _add_berg(repo)

    berg_id = _run(store_url, build)
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    at = _app()
    log_in(at, "kari", KARI_PASSWORD)
    assert not at.exception and _site_picker(at) is None
    _open(at, "stations")
    cells = _table_cells(at)
    assert set(BERG_STATIONS) <= cells and not cells & set(SEEDED_STATIONS)
    _open(at, "settings")
    assert _settings_fuse(at) == 50.0
    assert "L1 21 A, L2 22 A, L3 23 A" in texts(at.caption)
    assert berg_id > 1


def _settings_as_manager() -> AppTest:
    at = _app()
    log_in(at, MANAGER)
    return _open(at, "settings")


async def test_the_settings_page_says_which_instance_runs_the_sites_controller(
    pg_server: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL, Settings says which `csms serve` instance runs the site's controller,
    and an account of every site sees each instance with what it leads and holds; once no
    instance is left, it says so (a lone `--no-cluster` instance is not listed)."""
    url = new_database(pg_server, "control")
    app = await start_app(url, controller=True)
    try:
        assert app.cluster is not None
        instance = app.cluster.instance_id
        for _ in range(200):
            if app.cluster.leaders.get(1) == instance:
                break
            await asyncio.sleep(0.05)
        assert app.cluster.leaders.get(1) == instance
        await _ensure_manager(url)
        monkeypatch.setenv(DATABASE_URL_ENV, url)

        at = await asyncio.to_thread(_settings_as_manager)
        assert f"instance `{instance}` runs this site's controller (1 instance" in texts(at.caption)
        [table] = at.dataframe  # the only table on Settings
        instances = table.value
        assert instances.to_dict("records") == [
            {"Instance": instance, "Leads": "default", "Chargers held": 0}
        ]
    finally:
        await app.stop()
    release_stores()
    at = await asyncio.to_thread(_settings_as_manager)
    assert "no clustered `csms serve` instance is on this database" in texts(at.caption)
    assert not at.warning


async def test_the_settings_page_warns_when_no_instance_runs_the_sites_controller(
    pg_server: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An instance is on the database but leads nothing (here: started without load
    management): the site has no controller, and Settings says so."""
    url = new_database(pg_server, "nocontrol")
    app = await start_app(url)  # --no-controller
    try:
        await _ensure_manager(url)
        monkeypatch.setenv(DATABASE_URL_ENV, url)

        at = await asyncio.to_thread(_settings_as_manager)
        assert "No instance runs this site's controller right now" in texts(at.warning)
        [table] = at.dataframe
        assert table.value.to_dict("records")[0]["Leads"] == "-"
    finally:
        await app.stop()
