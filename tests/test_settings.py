"""Site settings validation (csms.settings) and the monitor's Settings page: only strategies
that obey the fuse may control real chargers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from csms.clock import ClockAnchor
from csms.domain import SiteConfig
from csms.errors import ConfigError
from csms.scheduler import LIVE_STRATEGIES
from csms.settings import STRATEGY_NAMES, validate_site_update
from csms.store import migrate
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.test_monitor_apptest import log_in_as_manager

SITE = SiteConfig(
    fuse_limit_a=63.0,
    margin_a=2.0,
    phases=3,
    voltage_v=230.0,
    strategy="llf",
    tick_s=5.0,
    default_departure="07:30",
    default_energy_kwh=20.0,
    timezone="Europe/Oslo",
    price_per_kwh=1.5,
    currency="NOK",
    heartbeat_interval_s=300,
    building_load_max_age_s=60.0,
    building_load_worst_case_a=0.0,
)
APP = Path(__file__).resolve().parents[1] / "monitor_app.py"


@pytest.mark.parametrize("strategy", LIVE_STRATEGIES)
def test_every_live_strategy_may_be_chosen(strategy: str) -> None:
    assert validate_site_update(SITE, {"strategy": strategy}) == {"strategy": strategy}


def test_thesis_is_refused_with_the_live_strategies_listed() -> None:
    with pytest.raises(ConfigError) as refused:
        validate_site_update(SITE, {"strategy": "thesis"})
    message = str(refused.value)
    assert message.startswith("strategy: thesis is a benchmark baseline")
    assert "ignores the fuse" in message
    assert message.endswith("choose one of equal, edf, llf, optimal")


def test_one_refused_strategy_refuses_the_whole_update() -> None:
    with pytest.raises(ConfigError, match="strategy: thesis"):
        validate_site_update(SITE, {"fuse_limit_a": 80, "strategy": "thesis"})


def test_an_unknown_strategy_is_still_named_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'yolo'; choose one of equal, edf"):
        validate_site_update(SITE, {"strategy": "yolo"})


def test_the_settings_offer_exactly_the_live_strategies() -> None:
    assert STRATEGY_NAMES == LIVE_STRATEGIES


# --- the monitor's Settings page ------------------------------------------------------------


def _database(tmp_path: Path, strategy: str | None) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'garage.db'}"

    async def create() -> None:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            repo = Repository(create_sessionmaker(engine))
            await repo.publish_clock(ClockAnchor.frozen(datetime(2026, 1, 14, tzinfo=UTC)), "t")
            if strategy is not None:
                # As a site could hold it from before thesis was refused (written directly).
                await repo.update_site(strategy=strategy)
        finally:
            await engine.dispose()

    asyncio.run(create())
    return url


def _settings_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str | None
) -> AppTest:
    monkeypatch.setenv(DATABASE_URL_ENV, _database(tmp_path, strategy))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    log_in_as_manager(at, "settings")
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_settings_page_offers_only_live_strategies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _settings_page(tmp_path, monkeypatch, None)
    box = at.selectbox(key="set_strategy")
    assert tuple(box.options) == tuple(
        f"{s} — {h}" for s, h in zip(LIVE_STRATEGIES, _help(), strict=True)
    )
    assert box.value == "llf"
    assert not at.warning


def test_a_site_left_on_thesis_is_shown_llf_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _settings_page(tmp_path, monkeypatch, "thesis")
    assert at.selectbox(key="set_strategy").value == "llf"
    assert "'thesis' may not control real chargers" in at.warning[0].value


def _help() -> list[str]:
    from csms.monitor.pages.settings import STRATEGY_HELP

    return [STRATEGY_HELP[s] for s in LIVE_STRATEGIES]
