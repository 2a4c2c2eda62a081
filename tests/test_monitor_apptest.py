"""The Streamlit monitor, page by page, with streamlit.testing's AppTest.

Every page runs on a seeded garage and on an empty database, logged in as a manager
(role enforcement, lockout and sessions: tests/test_accounts.py); the writes a manager or
a resident can make land in the store (or are refused with nothing written). The read
queries behind the pages are checked against the seed's own bookkeeping.

Helpers here (garages with accounts, `open_page`, `log_in`, the fake wall clock) are
shared with tests/test_accounts.py.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from csms.auth import Account, Role, hash_user_password
from csms.clock import ClockAnchor
from csms.errors import ConfigError
from csms.monitor import actions, frames, ui
from csms.monitor import charts as charts_module
from csms.monitor.pages import PAGES as PAGE_SPECS
from csms.monitor.pages.resident import NEED_ENERGY, NEED_MODEL
from csms.monitor.pages.settings import apply_site_changes
from csms.store import migrate, queries
from csms.store import models as m
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker
from csms.store.repository import Repository
from csms.store.seed import seed_demo_data

APP = Path(__file__).resolve().parents[1] / "monitor_app.py"
# The garage's "now": a fixed instant (a Wednesday evening with cars plugged in), published
# as the CSMS's clock so the monitor reads the same time whenever the test runs.
END = datetime(2026, 1, 14, 18, 35, tzinfo=UTC)
# Other hours (UTC) the pages must handle: night, morning rush, day, evening, and the two
# Europe/Oslo DST changes of 2026 (clocks jump at 01:00 UTC on 29 March and 25 October).
CLOCKS = (
    datetime(2026, 1, 14, 0, 30, tzinfo=UTC),
    datetime(2026, 1, 14, 6, 35, tzinfo=UTC),
    datetime(2026, 1, 14, 9, 35, tzinfo=UTC),
    END,
    datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    datetime(2026, 10, 25, 0, 45, tzinfo=UTC),
)
PAGES = tuple(page.name for page in PAGE_SPECS)
# A page run reads SQLite, pandas and Altair on a shared 2-core machine.
TIMEOUT_S = 60


# The monitor's accounts in every test database. A resident is bound to a station and
# a tag of a car that is plugged in (when there is one), see `_create`.
MANAGER, VIEWER, RITA, ROLF = "mia", "vera", "rita", "rolf"
RESIDENTS = (RITA, ROLF)
ROLES = {MANAGER: Role.manager, VIEWER: Role.viewer, RITA: Role.resident, ROLF: Role.resident}
PASSWORDS = {name: f"{name}-secret-pw" for name in ROLES}


@functools.cache
def password_hash(name: str) -> str:
    """Hashed once per test run: each scrypt hash costs ~0.4 s."""
    return hash_user_password(PASSWORDS[name])


@dataclass
class FakeWall:
    """The monitor's real-time clock in tests (sessions, lockouts, audit): moved by hand."""

    at: datetime

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **span: float) -> None:
        self.at += timedelta(**span)


@dataclass(frozen=True)
class FixedClock:
    """A repository clock that never moves (created_at of test rows)."""

    at: datetime
    speed: float = 1.0

    def now(self) -> datetime:
        return self.at

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(0)


@dataclass(frozen=True)
class Garage:
    url: str
    end: datetime
    # resident name -> (station, tag) they are bound to
    residents: dict[str, tuple[str, str]]


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def _create(url: str, *, seed: bool, end: datetime) -> dict[str, tuple[str, str]]:
    """A migrated database (seeded or empty) on the garage clock ``end``, with a manager,
    and on a seeded one also a viewer and two residents (plugged-in cars first)."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sm = create_sessionmaker(engine)
        repo = Repository(sm, clock=FixedClock(end))
        residents: dict[str, tuple[str, str]] = {}
        if seed:
            await seed_demo_data(sm, stations=6, days=2, start=end - timedelta(days=2))
            running = await queries.sessions(sm, open_only=True)
            cars = [(str(r["charge_point_id"]), str(r["id_tag"])) for _, r in running.iterrows()]
            spare = [(f"CP{i:03d}", f"TAG{i:04d}") for i in range(1, 7)]
            bound = [*cars, *(p for p in spare if p[0] not in {c[0] for c in cars})]
            residents = dict(zip(RESIDENTS, bound, strict=False))
        for name in (MANAGER, VIEWER, *residents) if seed else (MANAGER,):
            station, tag = residents.get(name, (None, None))
            await repo.add_user(
                name,
                ROLES[name],
                password_hash(name),
                stations=[station] if station else [],
                tags=[tag] if tag else [],
            )
        await repo.publish_clock(ClockAnchor.frozen(end), "test")
        return residents
    finally:
        await engine.dispose()


async def _query(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        return await fn(create_sessionmaker(engine))
    finally:
        await engine.dispose()


def query(url: str, fn: Any) -> Any:
    """Run ``fn(sessionmaker)`` against the database on a fresh engine."""
    return asyncio.run(_query(url, fn))


def install_wall(monkeypatch: pytest.MonkeyPatch) -> FakeWall:
    """Real time as the monitor reads it, fixed (never the hour the test runs at)."""
    clock = FakeWall(END)
    monkeypatch.setattr(ui, "wall_clock", clock)
    return clock


def release_stores() -> None:
    """Each test has its own database; close the cached stores (and their loops)."""
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture(autouse=True)
def wall(monkeypatch: pytest.MonkeyPatch) -> FakeWall:
    return install_wall(monkeypatch)


@pytest.fixture(autouse=True)
def _release_stores() -> Iterator[None]:
    yield
    release_stores()


def _seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: datetime) -> Garage:
    url = _url(tmp_path / "seeded.db")
    residents = asyncio.run(_create(url, seed=True, end=end))
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    return Garage(url, end, residents)


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Garage:
    return _seeded(tmp_path, monkeypatch, END)


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Garage:
    url = _url(tmp_path / "empty.db")
    asyncio.run(_create(url, seed=False, end=END))
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    return Garage(url, END, {})


def log_in(at: AppTest, name: str, password: str | None = None) -> AppTest:
    """Fill in the login form and submit it (the app must show the login page)."""
    at.text_input(key="login_name").set_value(name)
    at.text_input(key="login_password").set_value(PASSWORDS[name] if password is None else password)
    return at.button(key="login_submit").click().run()


async def _ensure_manager(url: str) -> None:
    engine = create_engine(url)
    try:
        repo = Repository(create_sessionmaker(engine), clock=FixedClock(END))
        if await repo.get_user(MANAGER) is None:
            await repo.add_user(MANAGER, Role.manager, password_hash(MANAGER))
    finally:
        await engine.dispose()


def log_in_as_manager(at: AppTest, page: str | None = None) -> AppTest:
    """For tests of a page rather than of the login: make the manager account in the
    database of ``GARAGEGRID_DATABASE_URL`` if it is missing, log ``at`` (the app, run once)
    in with it, and open ``page`` (a name, e.g. "settings")."""
    asyncio.run(_ensure_manager(os.environ[DATABASE_URL_ENV]))
    log_in(at, MANAGER)
    assert not at.exception, [e.value for e in at.exception]
    if page is not None:
        at.switch_page(page_path(page)).run()
    return at


def page_path(page: str) -> str:
    return f"csms/monitor/pages/{page}.py"


def open_page(page: str, who: str = MANAGER) -> AppTest:
    """The app, logged in as ``who``, on ``page``."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.run()
    log_in(at, who)
    assert not at.exception, [e.value for e in at.exception]
    assert not any(getattr(t, "key", None) == "login_name" for t in at.text_input), texts(at.error)
    at.switch_page(page_path(page))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def manager_account() -> Account:
    return Account(id=0, name=MANAGER, role=Role.manager)


def charts(at: AppTest) -> list[Any]:
    return list(at.get("vega_lite_chart"))


def texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def button(at: AppTest, key: str) -> Any:
    return at.button(key=key)


# ------------------------------------------------------------------ every page
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_seeded_garage(seeded: Garage, page: str) -> None:
    at = open_page(page)
    assert not at.error, texts(at.error)
    if page in ("live", "history", "sessions"):
        assert charts(at), f"{page} shows no chart"
    if page == "live":
        labels = {mt.label for mt in at.metric}
        assert {"Cars charging", "Total", "Idle power", "Energy today"} <= labels
        assert "Will miss departure" in labels
    if page in ("stations", "sessions", "history"):
        assert at.dataframe, f"{page} shows no table"
    if page == "history":
        assert len(charts(at)) >= 3  # load, daily energy, limits vs draw
        assert len(at.get("download_button")) >= 2
    if page == "resident":
        assert {mt.label for mt in at.metric} >= {"Your limit", "Drawing", "Charged so far"}
    if page == "audit":
        assert "log in" in set(at.dataframe[0].value["What"])
    if page == "account":
        assert MANAGER in texts(at.markdown)
    for metric in at.metric:  # every KPI says in one line what it is
        assert metric.proto.help, f"{page}: {metric.label} has no help"


def _cells(at: AppTest) -> list[str]:
    """What the tables, metrics and captions show, cell by cell."""
    out = [str(mt.value) for mt in at.metric]
    for frame in at.dataframe:
        value = frame.value
        assert not value.isna().any().any(), value[value.isna().any(axis=1)]
        out.extend(str(v) for v in value.to_numpy().ravel())
    return out


def test_no_page_shows_none_or_nan(seeded: Garage) -> None:
    """Empty values read '–' (an idle station's limit, a car without SoC, a running
    session's stop reason...), never None, nan or NaT."""
    at = open_page("live")
    for page in PAGES:
        at.switch_page(page_path(page)).run()
        cells = (
            _cells(at) + [str(c.value) for c in at.caption] + [str(m.value) for m in at.markdown]
        )
        bad = [c for c in cells if c.strip() in {"None", "nan", "NaN", "NaT", "<NA>"}]
        assert not bad, (page, bad)
        assert not [c for c in cells if "None" in c.split() or "nan" in c.split()], page


def test_costs_say_no_price_set_when_the_price_is_zero(seeded: Garage) -> None:
    at = open_page("settings")
    at.number_input(key="set_price").set_value(0.0)
    button(at, "settings_save").click().run()
    at.switch_page(page_path("sessions")).run()
    cost = next(mt for mt in at.metric if mt.label == "Cost")
    assert cost.value == "no price set"
    assert not [c for c in at.dataframe[0].value.columns if c.startswith("Cost")]
    assert "cost" not in at.dataframe[1].value.columns


def _open_transactions(url: str) -> int:
    async def count(sm: queries.SessionMaker) -> int:
        async with sm() as s:
            rows = await s.execute(
                select(m.Transaction.id).where(m.Transaction.stopped_at.is_(None))
            )
            return len(rows.all())

    result: int = query(url, count)
    return result


@pytest.mark.parametrize("end", CLOCKS, ids=lambda t: t.strftime("%m-%dT%H:%MZ"))
def test_every_page_reads_the_garage_clock_at_any_hour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: datetime
) -> None:
    """Night, rush hour, midday, evening and both DST changes: every page renders, the Live
    page follows the garage's clock (no stale-data warning, its cars are the open ones) and
    no station was last seen "in the future"."""
    garage = _seeded(tmp_path, monkeypatch, end)
    at = open_page("live")
    for page in PAGES:
        at.switch_page(page_path(page)).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, texts(at.error))
        if page == "live":
            plugged = _open_transactions(garage.url)
            if plugged:
                assert "No meter values in the last" not in texts(at.warning)
                assert len(at.dataframe[0].value) == plugged
            else:
                assert "No car is plugged in." in texts(at.caption)
            local = end.astimezone(ZoneInfo("Europe/Oslo"))
            assert f"Updated {local:%H:%M:%S}" in texts(at.caption)
        if page == "stations":
            assert "in the future" not in str(at.dataframe[0].value.to_dict())


@pytest.mark.parametrize("page", PAGES)
def test_every_page_has_an_empty_state_on_an_empty_database(empty: Garage, page: str) -> None:
    at = open_page(page)
    assert not at.error, texts(at.error)
    if page == "settings":
        assert at.number_input(key="set_fuse").value == 63.0
        return
    if page in ("audit", "account"):  # the login itself is the first audit row
        assert at.dataframe or MANAGER in texts(at.markdown)
        return
    message = texts(at.info)
    if page == "sessions":
        assert "No charging session yet" in message
    assert "point a charger at `ws://HOST:9000/ocpp/<id>`" in message


def test_live_page_toggles_units_and_phases(seeded: Garage) -> None:
    at = open_page("live")
    at.button_group(key="live_unit").set_value("A").run()
    assert not at.exception
    at.toggle(key="live_per_phase").set_value(True).run()
    assert not at.exception
    assert charts(at)


def test_history_page_per_phase_and_range(seeded: Garage) -> None:
    at = open_page("history")
    day = seeded.end.date()
    at.date_input(key="history_range").set_value((day - timedelta(days=1), day)).run()
    at.toggle(key="history_per_phase").set_value(True).run()
    assert not at.exception
    assert not at.error, texts(at.error)
    assert charts(at)


# ------------------------------------------------------------------- failures
def _app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    return at.run()


def test_missing_database_is_an_error_box_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone.db"
    monkeypatch.setenv(DATABASE_URL_ENV, _url(gone))
    at = _app()
    assert not at.exception
    assert "does not exist" in texts(at.error)
    assert not gone.exists(), "the monitor must not create an empty database"


def test_database_gone_while_logged_in_is_an_error_box(seeded: Garage) -> None:
    at = open_page("stations")
    Path(seeded.url.removeprefix("sqlite+aiosqlite:///")).unlink()
    at.run()
    assert not at.exception
    assert "does not exist" in texts(at.error)


def test_database_without_schema_is_an_error_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bare.db"
    bare.write_bytes(b"")
    monkeypatch.setenv(DATABASE_URL_ENV, _url(bare))
    at = _app()
    assert not at.exception
    assert "no GarageGrid tables" in texts(at.error)


# -------------------------------------------------------------------- stations
def _station(url: str, cp_id: str) -> m.ChargePoint | None:
    async def get(sm: queries.SessionMaker) -> m.ChargePoint | None:
        async with sm() as s:
            return await s.get(m.ChargePoint, cp_id)

    result: m.ChargePoint | None = query(url, get)
    return result


def test_editing_a_station_writes_it(seeded: Garage) -> None:
    at = open_page("stations")
    at.selectbox(key="manage_station").set_value("CP002").run()
    at.text_input(key="edit_name").set_value("Apartment Z9")
    at.number_input(key="edit_max").set_value(20.0)
    button(at, "edit_save").click().run()
    assert not at.error, texts(at.error)
    row = _station(seeded.url, "CP002")
    assert row is not None
    assert (row.name, row.max_current_a) == ("Apartment Z9", 20.0)


def test_a_bad_max_current_is_refused_and_not_written(seeded: Garage) -> None:
    before = _station(seeded.url, "CP002")
    at = open_page("stations")
    at.selectbox(key="manage_station").set_value("CP002").run()
    at.number_input(key="edit_max").set_value(500.0)
    button(at, "edit_save").click().run()
    assert "max_current_a" in texts(at.error)
    after = _station(seeded.url, "CP002")
    assert before is not None
    assert after is not None
    assert after.max_current_a == before.max_current_a


def test_adding_and_removing_a_station(seeded: Garage) -> None:
    at = open_page("stations")
    at.text_input(key="add_id").set_value("GARAGE-B7")
    at.text_input(key="add_name").set_value("Apartment B7")
    at.number_input(key="add_max").set_value(32.0)
    at.selectbox(key="add_phases").set_value(1)
    at.text_input(key="add_wiring").set_value("L3")
    button(at, "add_submit").click().run()
    assert not at.error, texts(at.error)
    row = _station(seeded.url, "GARAGE-B7")
    assert row is not None
    assert (row.name, row.max_current_a, row.phases, row.wiring) == ("Apartment B7", 32.0, 1, "L3")

    at.selectbox(key="manage_station").set_value("GARAGE-B7").run()
    at.checkbox(key="remove_sure_GARAGE-B7").check().run()
    button(at, "remove_GARAGE-B7").click().run()
    assert _station(seeded.url, "GARAGE-B7") is None


def test_a_bad_station_id_is_refused(seeded: Garage) -> None:
    at = open_page("stations")
    at.text_input(key="add_id").set_value("bad/id")
    button(at, "add_submit").click().run()
    assert "id:" in texts(at.error)
    assert _station(seeded.url, "bad/id") is None


def _commands(url: str) -> list[m.Command]:
    async def get(sm: queries.SessionMaker) -> list[m.Command]:
        async with sm() as s:
            return list((await s.execute(select(m.Command).order_by(m.Command.id))).scalars())

    result: list[m.Command] = query(url, get)
    return result


def _charging_station(url: str) -> tuple[str, int]:
    frame = query(url, lambda sm: queries.sessions(sm, open_only=True))
    row = frame.iloc[0]
    return str(row["charge_point_id"]), int(row["transaction_id"])


def test_a_stations_security_events_and_flagged_readings_are_shown(seeded: Garage) -> None:
    """Issue 10: SecurityEventNotifications are recorded and shown (newest first), and
    so are the register readings left out of energy totals, to managers and viewers."""

    async def add(sm: queries.SessionMaker) -> None:
        async with sm() as s, s.begin():
            for minutes, kind in (
                (5, "InvalidFirmwareSignature"),
                (9, "ReconfigurationOfSecurityParameters"),
            ):
                at = seeded.end - timedelta(minutes=minutes)
                s.add(
                    m.SecurityEvent(
                        charge_point_id="CP002",
                        type=kind,
                        tech_info=f"seen {minutes} min ago",
                        occurred_at=at,
                        received_at=at,
                    )
                )
            s.add(
                m.MeterSample(
                    charge_point_id="CP002",
                    connector_id=1,
                    transaction_id=None,
                    timestamp=seeded.end - timedelta(minutes=3),
                    measurand="Energy.Active.Import.Register",
                    raw_value="12",
                    value=12.0,
                    norm_unit="Wh",
                    received_at=seeded.end,
                    flag="backwards",
                )
            )

    query(seeded.url, add)
    for who in (MANAGER, VIEWER):
        at = open_page("stations", who)
        at.selectbox(key="manage_station").set_value("CP002").run()
        assert not at.exception
        shown = [df.value for df in at.dataframe if "Type" in df.value.columns]
        assert len(shown) == 1, who
        assert list(shown[0]["Type"]) == [
            "InvalidFirmwareSignature",
            "ReconfigurationOfSecurityParameters",
        ]
        assert list(shown[0]["Details"]) == ["seen 5 min ago", "seen 9 min ago"]
        flagged = [df.value for df in at.dataframe if "Why" in df.value.columns]
        assert len(flagged) == 1, who
        assert list(flagged[0]["Why"]) == ["ran backwards"]
        assert list(flagged[0]["Register (Wh)"]) == ["12"]
    at.selectbox(key="manage_station").set_value("CP001").run()
    captions = " ".join(c.value for c in at.caption)
    assert "reported no security event" in captions
    assert "No implausible energy register reading" in captions


def test_command_buttons_write_outbox_rows(seeded: Garage) -> None:
    cp_id, tx_id = _charging_station(seeded.url)
    before = len(_commands(seeded.url))
    at = open_page("stations")
    at.selectbox(key="manage_station").set_value(cp_id).run()
    at.number_input(key="override_limit").set_value(10.0)
    for key in ("act_limit", "act_pause", "act_resume", "act_stop", "act_reset", "act_unlock"):
        button(at, key).click().run()
        assert not at.exception
    button(at, "act_trigger").click().run()
    new = _commands(seeded.url)[before:]
    assert [c.action for c in new] == [
        "SetChargingProfile",
        "SetChargingProfile",
        "ClearChargingProfile",
        "RemoteStopTransaction",
        "Reset",
        "UnlockConnector",
        "TriggerMessage",
    ]
    assert all(c.charge_point_id == cp_id and c.status == "pending" for c in new)
    assert all(c.requested_by == f"monitor:{MANAGER}" for c in new)
    override, pause = new[0].payload, new[1].payload
    profile = override["csChargingProfiles"]
    assert profile["transactionId"] == tx_id
    assert profile["chargingProfilePurpose"] == "TxProfile"
    assert profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 10.0
    assert pause["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
        "limit"
    ] == (0.0)
    assert new[2].payload == {"id": profile["chargingProfileId"]}
    assert new[3].payload == {"transactionId": tx_id}
    assert new[4].payload == {"type": "Soft"}
    assert new[6].payload == {"requestedMessage": "MeterValues", "connectorId": 1}


def test_override_limit_outside_iec_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="IEC 61851-1"):
        actions.set_limit(1, 7, 4.0, max_current_a=16.0)
    with pytest.raises(ConfigError):
        actions.set_limit(1, 7, 20.0, max_current_a=16.0)
    _, payload = actions.set_limit(1, 7, 16.0, max_current_a=16.0, only_stack_level_0=True)
    assert payload["csChargingProfiles"]["stackLevel"] == 0


# -------------------------------------------------------------------- settings
def _site(url: str) -> Any:
    return query(url, queries.site_settings)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("set_fuse", -10.0, "fuse_limit_a"),
        ("set_margin", 500.0, "margin_a"),
        ("set_tick", 0.1, "tick_s"),
        ("set_price", -1.0, "price_per_kwh"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_written(
    seeded: Garage, field: str, value: float, message: str
) -> None:
    before = _site(seeded.url)
    at = open_page("settings")
    at.number_input(key="set_price").set_value(9.99)  # a good value in the same form
    at.number_input(key=field).set_value(value)
    button(at, "settings_save").click().run()
    assert message in texts(at.error)
    assert _site(seeded.url) == before


def test_bad_departure_and_time_zone_are_refused(seeded: Garage) -> None:
    before = _site(seeded.url)
    at = open_page("settings")
    at.text_input(key="set_departure").set_value("25:99")
    button(at, "settings_save").click().run()
    assert "default_departure" in texts(at.error)
    at.text_input(key="set_departure").set_value("07:00")
    at.text_input(key="set_timezone").set_value("Mars/Olympus")
    button(at, "settings_save").click().run()
    assert "timezone" in texts(at.error)
    assert _site(seeded.url) == before


def test_unknown_strategy_is_refused_before_any_write(seeded: Garage) -> None:
    before = _site(seeded.url)
    with pytest.raises(ConfigError, match="unknown strategy"):
        apply_site_changes(manager_account(), before, {"strategy": "fastest-first"})
    assert _site(seeded.url) == before


def test_good_settings_are_written(seeded: Garage) -> None:
    at = open_page("settings")
    at.number_input(key="set_fuse").set_value(125.0)
    at.number_input(key="set_margin").set_value(5.0)
    at.selectbox(key="set_strategy").set_value("edf")
    at.text_input(key="set_departure").set_value("06:45")
    at.number_input(key="set_price").set_value(1.75)
    button(at, "settings_save").click().run()
    assert not at.error, texts(at.error)
    site = _site(seeded.url)
    assert (site.fuse_limit_a, site.margin_a, site.strategy) == (125.0, 5.0, "edf")
    assert (site.default_departure, site.price_per_kwh) == ("06:45", 1.75)


# -------------------------------------------------------------------- resident
def _transaction(url: str, tx_id: int) -> m.Transaction:
    async def get(sm: queries.SessionMaker) -> m.Transaction | None:
        async with sm() as s:
            return await s.get(m.Transaction, tx_id)

    row: m.Transaction | None = query(url, get)
    assert row is not None
    return row


def _leave_tomorrow(at: AppTest, seeded: Garage) -> datetime:
    tomorrow = (seeded.end + timedelta(days=1)).astimezone(ZoneInfo("Europe/Oslo"))
    at.date_input(key="resident_day").set_value(tomorrow.date())
    at.time_input(key="resident_time").set_value(datetime.strptime("06:30", "%H:%M").time())
    return tomorrow


def test_resident_energy_input_writes_the_session(seeded: Garage) -> None:
    cp_id, tx_id = _charging_station(seeded.url)
    at = open_page("resident")
    at.selectbox(key="resident_station").set_value(cp_id).run()
    at.radio(key="resident_need").set_value(NEED_ENERGY).run()
    day = _leave_tomorrow(at, seeded)
    at.number_input(key="resident_kwh").set_value(25.0)
    button(at, "resident_save").click().run()
    assert not at.error, texts(at.error)
    tx = _transaction(seeded.url, tx_id)
    assert tx.energy_needed_wh == 25_000.0
    assert tx.departure_at is not None
    local = pd.Timestamp(tx.departure_at).tz_convert("Europe/Oslo")
    assert (local.date(), local.hour, local.minute) == (day.date(), 6, 30)


def test_resident_ev_model_input_writes_model_target_and_energy(seeded: Garage) -> None:
    cp_id, tx_id = _charging_station(seeded.url)
    at = open_page("resident")
    at.selectbox(key="resident_station").set_value(cp_id).run()
    at.radio(key="resident_need").set_value(NEED_MODEL).run()
    _leave_tomorrow(at, seeded)
    at.selectbox(key="resident_model").set_value("vw-id3-58")
    at.number_input(key="resident_target").set_value(90.0)
    soc_now = at.number_input(key="resident_soc_now") if _asks_soc(at) else None
    if soc_now is not None:
        soc_now.set_value(50.0)
    button(at, "resident_save").click().run()
    assert not at.error, texts(at.error)
    tx = _transaction(seeded.url, tx_id)
    assert (tx.ev_model, tx.target_soc) == ("vw-id3-58", 0.9)
    assert tx.energy_needed_wh is not None
    assert tx.energy_needed_wh > 0


def _asks_soc(at: AppTest) -> bool:
    return any(getattr(n, "key", None) == "resident_soc_now" for n in at.number_input)


def test_resident_departure_in_the_past_is_refused(seeded: Garage) -> None:
    cp_id, tx_id = _charging_station(seeded.url)
    before = _transaction(seeded.url, tx_id).departure_at
    at = open_page("resident")
    at.selectbox(key="resident_station").set_value(cp_id).run()
    at.radio(key="resident_need").set_value(NEED_ENERGY).run()
    at.date_input(key="resident_day").set_value((seeded.end - timedelta(days=2)).date())
    button(at, "resident_save").click().run()
    assert "departure" in texts(at.error)
    assert _transaction(seeded.url, tx_id).departure_at == before


def test_resident_sees_notifications(seeded: Garage) -> None:
    at = open_page("resident")
    at.radio(key="resident_by").set_value("My tag").run()
    assert not at.exception
    assert "Messages" in texts(at.subheader)


# ---------------------------------------------------------------- query layer
def test_energy_buckets_add_up_to_the_sessions_energy(seeded: Garage) -> None:
    """Register differences per bucket sum to meterStop - meterStart of every session."""
    start, end = seeded.end - timedelta(days=3), seeded.end + timedelta(hours=1)
    energy = query(seeded.url, lambda sm: queries.energy_buckets(sm, start, end, 3600))
    sessions = query(seeded.url, queries.sessions)
    assert len(sessions) > 5
    assert energy["energy_wh"].sum() == pytest.approx(sessions["energy_wh"].sum(), abs=1.0)
    times = pd.to_datetime(energy["time"], utc=True)
    assert (times.dt.minute == 0).all()
    assert (times.dt.second == 0).all()


def test_sample_buckets_are_aligned_and_averaged(seeded: Garage) -> None:
    end = seeded.end
    frame = query(
        seeded.url,
        lambda sm: queries.sample_buckets(sm, end - timedelta(hours=6), end, 900),
    )
    assert len(frame)
    times = pd.to_datetime(frame["time"], utc=True)
    assert all(int(t.timestamp()) % 900 == 0 for t in times)
    assert (frame["avg"] <= frame["max"] + 1e-9).all()


def test_station_table_lists_every_station(seeded: Garage) -> None:
    table = query(seeded.url, queries.station_table)
    assert list(table["id"]) == [f"CP{i:03d}" for i in range(1, 7)]
    assert table["vendor"].notna().all()
    assert (table["status"] == "Faulted").sum() == 1


def test_one_phase_station_draws_on_its_wired_phase() -> None:
    t = pd.Timestamp("2026-01-05 18:00", tz="UTC")
    samples = pd.DataFrame(
        [
            (t, "CP1", queries.CURRENT, "L1", 16.0, 16.0, 1),
            (t, "CP1", queries.POWER, None, 3680.0, 3680.0, 1),
        ],
        columns=["time", "charge_point_id", "measurand", "phase", "avg", "max", "n"],
    )
    stations = pd.DataFrame([{"id": "CP1", "phases": 1, "wiring": "L2"}])
    draw = frames.draw_from_samples(
        samples,
        stations,
        start=t.to_pydatetime(),
        end=(t + pd.Timedelta(minutes=1)).to_pydatetime(),
        bucket_s=60,
        voltage_v=230.0,
    )
    row = draw.iloc[0]
    assert (row["L1"], row["L2"], row["L3"], row["power_w"]) == (0.0, 16.0, 0.0, 3680.0)


def test_seed_is_deterministic(tmp_path: Path) -> None:
    start = datetime(2026, 1, 5, tzinfo=UTC)

    async def seed(path: Path) -> tuple[int, int, float]:
        engine = create_engine(_url(path))
        try:
            await migrate.upgrade(engine)
            sm = create_sessionmaker(engine)
            summary = await seed_demo_data(Repository(sm), stations=4, days=1, start=start, seed=3)
            sessions = await queries.sessions(sm)
            return summary.meter_samples, summary.transactions, float(sessions["energy_wh"].sum())
        finally:
            await engine.dispose()

    assert asyncio.run(seed(tmp_path / "a.db")) == asyncio.run(seed(tmp_path / "b.db"))


@pytest.mark.parametrize(
    ("energy", "legend"),
    [
        ({"A": 5.0, "B": 0.0, "C": 1.0}, ("A", "C")),  # a station that drew nothing: no entry
        (
            {f"S{i:02d}": float(i) for i in range(10)},
            ("S01", "S02", "S03", "S04", "S05", "S06", "S07", "S08", "S09"),
        ),
        (
            {f"S{i:02d}": float(i) for i in range(1, 21)},
            ("S13", "S14", "S15", "S16", "S17", "S18", "S19", "S20", "Others (12 stations)"),
        ),
        ({"A": 0.0, "B": 0.0}, ("A", "B")),  # nobody drew: every station, no "others"
    ],
    ids=["idle-left-out", "nine-fit", "twenty", "all-idle"],
)
def test_the_legend_holds_the_top_stations_and_the_others(
    energy: dict[str, float], legend: tuple[str, ...]
) -> None:
    groups, order = charts_module.legend_groups(pd.Series(energy), top_n=8)
    assert order == legend
    assert set(groups.values()) == set(legend)
    if "Others (12 stations)" in legend:
        assert [s for s, g in groups.items() if g.startswith("Others")] == [
            f"S{i:02d}" for i in range(12, 0, -1)
        ]


def test_history_power_splits_over_phases_as_the_currents_show() -> None:
    """Energy gives the power; the current samples say which supply phases carry it."""
    t = pd.Timestamp("2026-01-05 18:00", tz="UTC")
    energy = pd.DataFrame([(t, "CP1", 3680.0)], columns=["time", "charge_point_id", "energy_wh"])
    stations = pd.DataFrame([{"id": "CP1", "phases": 3, "wiring": "L2L3L1"}])
    currents = pd.DataFrame(
        [
            (t, "CP1", queries.CURRENT, f"L{k}", a, a, 60)
            for k, a in ((1, 16.0), (2, 0.0), (3, 0.0))
        ],
        columns=["time", "charge_point_id", "measurand", "phase", "avg", "max", "n"],
    )
    window = {"start": t.to_pydatetime(), "end": (t + pd.Timedelta(hours=1)).to_pydatetime()}
    one_phase = frames.draw_from_energy(
        energy, stations, bucket_s=3600, voltage_v=230.0, currents=currents, **window
    ).iloc[0]
    assert (one_phase["L1"], one_phase["L2"], one_phase["L3"]) == (0.0, 16.0, 0.0)
    assert one_phase["power_w"] == 3680.0
    even = frames.draw_from_energy(energy, stations, bucket_s=3600, voltage_v=230.0, **window)
    assert list(even.iloc[0][["L1", "L2", "L3"]]) == pytest.approx([16 / 3] * 3)
