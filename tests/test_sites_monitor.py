"""The monitor on a deployment of several sites (issue 12 item 1; item 5, the monitor per
site, is not built yet): it shows every site's garage, so an account bound to one site
may use it only while there is one site; residents see their own stations anyway."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from csms.auth import Role, hash_user_password
from csms.monitor.writes import ONE_SITE_REFUSAL
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.test_monitor_apptest import (
    APP,
    END,
    RITA,
    TIMEOUT_S,
    FakeWall,
    Garage,
    _seeded,
    install_wall,
    log_in,
    release_stores,
    texts,
)

KARI_PASSWORD = "kari-secret-pw"


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


def _store(url: str, work: str) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            repo = Repository(create_sessionmaker(engine))
            if work == "kari":
                await repo.add_user(
                    "kari", Role.manager, hash_user_password(KARI_PASSWORD), site_id=1
                )
                await repo.set_user_site(RITA, 1)
            elif work == "berg":
                await repo.add_site("Berg")
            elif work == "all-sites":
                await repo.set_user_site("kari", None)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _logged_in(at: AppTest, name: str) -> bool:
    return name in texts(at.sidebar.markdown)


def test_a_site_bound_manager_is_refused_once_there_are_several_sites(seeded: Garage) -> None:
    _store(seeded.url, "kari")
    # One site: a manager bound to it uses the monitor as before.
    open_before = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    log_in(open_before, "kari", KARI_PASSWORD)
    assert not open_before.exception and _logged_in(open_before, "kari")

    _store(seeded.url, "berg")
    # Two sites: the monitor would show Berg's garage too. Refused at the login...
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    log_in(at, "kari", KARI_PASSWORD)
    assert not at.exception and not _logged_in(at, "kari")
    assert ONE_SITE_REFUSAL in texts(at.error)
    assert not at.dataframe and not at.metric
    # ... and a session opened before the second site ends at its next run.
    open_before.run()
    assert not _logged_in(open_before, "kari")
    assert not open_before.dataframe and not open_before.metric

    # A resident bound to the site still sees their own stations; an operator sees all.
    resident = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    log_in(resident, RITA)
    assert not resident.exception and _logged_in(resident, RITA)
    _store(seeded.url, "all-sites")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    log_in(at, "kari", KARI_PASSWORD)
    assert not at.exception and _logged_in(at, "kari")
