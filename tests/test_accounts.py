"""Monitor accounts: roles, the KDF, lockout, sessions, the audit log, ``csms user``, and
the monitor enforcing all of it on every page, widget and write path (AppTest)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from csms.auth import (
    FAILURE_WINDOW,
    LOCKOUT,
    MAX_FAILED_LOGINS,
    SESSION_IDLE_TIMEOUT,
    SESSION_MAX_LIFETIME,
    AccessDeniedError,
    Account,
    LoginThrottle,
    Permission,
    Role,
    hash_password,
    hash_user_password,
    session_end,
    verify_password,
    verify_user_password,
)
from csms.cli import main as csms_main
from csms.errors import ConfigError
from csms.monitor import actions, writes
from csms.monitor.access import SESSION_KEY, MonitorSession
from csms.monitor.pages import PAGES, default_page, may_open, pages_for
from csms.monitor.pages.resident import NEED_ENERGY
from csms.store import migrate, queries
from csms.store import models as m
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.test_monitor_apptest import (
    APP,
    END,
    MANAGER,
    PASSWORDS,
    RITA,
    ROLF,
    TIMEOUT_S,
    VIEWER,
    FakeWall,
    FixedClock,
    Garage,
    _seeded,
    button,
    install_wall,
    log_in,
    open_page,
    page_path,
    password_hash,
    query,
    release_stores,
    texts,
)

T0 = datetime(2026, 1, 14, 18, 0, tzinfo=UTC)


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


# ------------------------------------------------------------------ pure rules
def test_people_get_scrypt_with_owasp_parameters_and_stations_keep_theirs() -> None:
    stored = hash_user_password("correct horse battery")
    scheme, n, r, p, _salt, _digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**17), "8", "1")
    assert "correct horse" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert hash_user_password("correct horse battery") != stored  # a fresh salt each time
    station = hash_password("0123456789abcdef0123")
    assert station.startswith("scrypt$16384$8$1$")
    assert verify_password("0123456789abcdef0123", station)


def test_an_unknown_name_is_checked_against_a_decoy_and_fails() -> None:
    assert not verify_user_password("anything at all", None)
    assert not verify_user_password("", "not-a-hash")


@pytest.mark.parametrize(
    ("gaps_s", "locked"),
    [
        ((0, 1, 1, 1), False),  # four failures: not yet
        ((0, 1, 1, 1, 1), True),  # the fifth within the window locks
        ((0, 225, 225, 225, 225), True),  # the fifth exactly 15 min after the first
        ((0, 225, 225, 225, 226), False),  # ... one second later: the window moved on
    ],
    ids=["four", "five-quick", "five-in-15-min", "five-in-15-min-1s"],
)
def test_lockout_after_repeated_failures(gaps_s: tuple[int, ...], locked: bool) -> None:
    state, t = LoginThrottle(), T0
    for gap in gaps_s:
        t += timedelta(seconds=gap)
        state = state.after_failure(t)
    assert state.locked(t) is locked
    if locked:
        assert state.locked_until == t + LOCKOUT
        assert state.locked(t + LOCKOUT - timedelta(seconds=1))
        assert not state.locked(t + LOCKOUT)


def test_failures_older_than_the_window_start_counting_again() -> None:
    state, t = LoginThrottle(), T0
    for _ in range(MAX_FAILED_LOGINS - 1):
        state = state.after_failure(t)
    t += FAILURE_WINDOW + timedelta(seconds=1)
    state = state.after_failure(t)
    assert state.failures == 1
    assert not state.locked(t)


def test_after_a_lockout_the_count_starts_again() -> None:
    state, t = LoginThrottle(), T0
    for _ in range(MAX_FAILED_LOGINS):
        state = state.after_failure(t)
    assert state.locked(t)
    t += LOCKOUT
    state = state.after_failure(t)
    assert (state.failures, state.locked(t)) == (1, False)


def test_sessions_end_when_idle_and_at_their_lifetime() -> None:
    login = T0
    assert session_end(login, login, login + SESSION_IDLE_TIMEOUT - timedelta(seconds=1)) is None
    assert "without activity" in str(session_end(login, login, login + SESSION_IDLE_TIMEOUT))
    active = login + SESSION_MAX_LIFETIME - timedelta(minutes=1)
    assert session_end(login, active, active) is None
    assert "after you logged in" in str(session_end(login, active, login + SESSION_MAX_LIFETIME))


def test_roles_and_pages() -> None:
    manager = Account(1, "m", Role.manager)
    viewer = Account(2, "v", Role.viewer)
    resident = Account(3, "r", Role.resident, frozenset({"CP1"}), frozenset({"T9"}))
    assert all(manager.may(p) for p in Permission)
    assert [p for p in Permission if viewer.may(p)] == [Permission.read_garage]
    assert [p for p in Permission if resident.may(p)] == [Permission.write_session]
    assert resident.sees_session("CP1", "OTHER") and resident.sees_session("CP7", "T9")
    assert not resident.sees_session("CP7", "OTHER") and not resident.sees_station("CP7")
    assert viewer.sees_session("CP7", None)
    with pytest.raises(AccessDeniedError):
        viewer.require(Permission.write_garage)
    names = {role: [p.name for p in pages_for(role)] for role in Role}
    assert names[Role.manager] == [p.name for p in PAGES]
    assert names[Role.viewer] == [p.name for p in PAGES if p.name != "audit"]
    assert names[Role.resident] == ["sessions", "resident", "account"]
    assert all(may_open(role, default_page(role)) for role in Role)


# ------------------------------------------------------------------ repository
def _run(db_url: str, fn: Callable[[Repository], Any]) -> Any:
    async def go() -> Any:
        engine = create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            return await fn(Repository(create_sessionmaker(engine), clock=FixedClock(T0)))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _garage(db_url: str) -> None:
    async def make(repo: Repository) -> None:
        await repo.add_charge_point("CP1", max_current_a=16.0)
        await repo.add_charge_point("CP2", max_current_a=16.0)
        await repo.add_id_tag("T1", owner="Apt 1")
        await repo.add_id_tag("T2", owner="Apt 2")

    _run(db_url, make)


def test_accounts_are_stored_with_their_stations_tags_and_hash(db_url: str) -> None:
    _garage(db_url)

    async def go(repo: Repository) -> tuple[Any, ...]:
        added = await repo.add_user(
            "rita", Role.resident, password_hash("rita"), stations=["CP1"], tags=["T1", "T1"]
        )
        await repo.add_user("mia", Role.manager, password_hash("mia"))
        found = await repo.user_credentials("rita")
        listed = await repo.list_users()
        changed = await repo.set_user_password("rita", password_hash("mia"))
        await repo.remove_user("rita")
        async with repo.sessionmaker() as s:
            bindings = (await s.execute(select(m.UserStation))).all() + (
                await s.execute(select(m.UserTag))
            ).all()
        return added, found, listed, changed, bindings, await repo.get_user("rita")

    added, found, listed, changed, bindings, gone = _run(db_url, go)
    assert (added.role, added.stations, added.tags) == (Role.resident, {"CP1"}, {"T1"})
    assert found is not None and found[1] == password_hash("rita")
    assert [a.name for a in listed] == ["mia", "rita"]
    assert changed.credentials_version == added.credentials_version + 1
    assert bindings == [] and gone is None  # removing a user removes its bindings


@pytest.mark.parametrize(
    ("role", "stations", "tags", "message"),
    [
        (Role.resident, [], [], "at least one --station or --tag"),
        (Role.viewer, ["CP1"], [], "for residents"),
        (Role.resident, ["CP9"], [], "no charge point CP9"),
        (Role.resident, [], ["T9"], "no id tag T9"),
    ],
)
def test_bad_accounts_are_refused(
    db_url: str, role: Role, stations: list[str], tags: list[str], message: str
) -> None:
    _garage(db_url)
    with pytest.raises(ConfigError, match=message):
        _run(db_url, lambda r: r.add_user("x", role, "h", stations=stations, tags=tags))
    assert _run(db_url, lambda r: r.list_users()) == []


def test_a_lockout_is_stored_so_a_new_process_still_sees_it(db_url: str) -> None:
    async def fail(repo: Repository) -> None:
        for _ in range(MAX_FAILED_LOGINS):
            await repo.record_login_failure("nobody", T0)

    _run(db_url, fail)
    state = _run(db_url, lambda r: r.login_throttle("nobody"))
    assert state.locked(T0 + LOCKOUT - timedelta(seconds=1))


# ------------------------------------------------------------------------- CLI
def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = csms_main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_csms_user_add_list_set_password_remove(
    db_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _garage(db_url)
    db = ["--database-url", db_url]
    code, out, err = _cli(capsys, "user", "add", "anna", "--role", "manager", *db)
    assert code == 0, err
    generated = out.split("not stored in clear): ")[1].strip()
    assert len(generated) >= 16
    code, out, err = _cli(
        capsys,
        *("user", "add", "bob", "--role", "resident", "--station", "CP1", "--tag", "T2"),
        *("--password", "bobs-own-password", *db),
    )
    assert (code, out.strip()) == (0, "added resident bob (CP1, T2)")
    assert _cli(capsys, "user", "add", "eve", "--role", "resident", "--station", "CP9", *db)[0] == 2
    assert _cli(capsys, "user", "add", "pw", "--role", "viewer", "--password", "short", *db)[0] == 2
    code, out, _ = _cli(capsys, "user", "list", "--json", *db)
    rows = json.loads(out)
    assert [(r["name"], r["role"], r["stations"], r["tags"]) for r in rows] == [
        ("anna", "manager", [], []),
        ("bob", "resident", ["CP1"], ["T2"]),
    ]
    code, out, _ = _cli(capsys, "user", "list", *db)
    assert "bob   resident  CP1" in out
    code, out, _ = _cli(capsys, "user", "set-password", "bob", *db)
    assert code == 0 and "their monitor sessions have ended" in out
    new = out.split("not stored in clear): ")[1].strip()
    assert _cli(capsys, "user", "remove", "anna", *db)[0] == 0
    assert _cli(capsys, "user", "remove", "anna", *db)[0] == 1
    users = _run(db_url, lambda r: r.list_users())
    assert [a.name for a in users] == ["bob"]
    stored = _run(db_url, lambda r: r.user_credentials("bob"))[1]
    assert verify_password(new, stored)
    audit = query(db_url, lambda sm: queries.audit_log(sm))
    assert list(audit["action"])[::-1] == ["add user", "add user", "set password", "remove user"]
    everything = json.dumps(audit.astype(str).to_dict()) + caplog.text
    for secret in (generated, new, "bobs-own-password"):
        assert secret not in everything


# --------------------------------------------------------------- in the monitor
def _text(at: AppTest) -> str:
    """Everything a page shows as text, tables included."""
    parts: list[str] = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "metric",
        "info",
        "warning",
        "error",
        "success",
        "text",
    ):
        for element in at.get(kind):
            parts.append(str(getattr(element, "value", "")))
            parts.append(str(getattr(element, "label", "")))
    for frame in at.dataframe:
        parts.append(frame.value.to_csv())
    for kind in ("selectbox", "multiselect", "radio"):
        for widget in at.get(kind):
            parts.extend(str(o) for o in widget.options)
    return "\n".join(parts)


WIDGETS = (
    "button",
    "checkbox",
    "date_input",
    "multiselect",
    "number_input",
    "radio",
    "selectbox",
    "text_input",
    "time_input",
    "toggle",
    "button_group",
)


def widget_keys(at: AppTest) -> set[str]:
    return {
        str(w.key) for kind in WIDGETS for w in at.get(kind) if getattr(w, "key", None) is not None
    }


def _snapshot(url: str) -> dict[str, Any]:
    """Every row a monitor write could touch (audit and login bookkeeping aside)."""

    async def read(sm: queries.SessionMaker) -> dict[str, Any]:
        async with sm() as s:
            out: dict[str, Any] = {}
            for model in (
                m.SiteSettings,
                m.ChargePoint,
                m.Transaction,
                m.Command,
                m.IdTag,
                m.UserStation,
                m.UserTag,
            ):
                rows = (await s.execute(select(model))).scalars().all()
                out[model.__tablename__] = sorted(
                    repr({c.key: getattr(r, c.key) for c in model.__table__.columns}) for r in rows
                )
            users = (await s.execute(select(m.User))).scalars().all()
            out["users"] = sorted((u.name, u.role, u.password_hash) for u in users)
            return out

    result: dict[str, Any] = query(url, read)
    return result


def _audit(url: str) -> pd.DataFrame:
    frame: pd.DataFrame = query(url, lambda sm: queries.audit_log(sm))
    return frame


def _owner(url: str, tag: str) -> str:
    tags = query(url, queries.id_tags)
    return str(tags.set_index("id_tag").loc[tag, "owner"])


def _account(url: str, name: str) -> Account:
    found = _run(url, lambda r: r.get_user(name))
    assert found is not None
    return found


def _open_tx(url: str, station: str) -> int:
    frame = query(url, lambda sm: queries.sessions(sm, station_id=station, open_only=True))
    assert len(frame), f"no car plugged in at {station}"
    return int(frame.iloc[0]["transaction_id"])


def test_nothing_but_the_login_page_renders_without_a_session(seeded: Garage) -> None:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    assert {"login_name", "login_password", "login_submit"} == widget_keys(at)
    assert not at.dataframe and not at.metric and not at.get("vega_lite_chart")
    for page in PAGES:
        with pytest.raises(ValueError, match="navigation page"):
            at.switch_page(page_path(page.name))
    # A page script run on its own (not through monitor_app.py) renders nothing either.
    for page in PAGES:
        alone = AppTest.from_file(str(page.path), default_timeout=TIMEOUT_S).run()
        assert "Log in first" in texts(alone.info), page.name
        assert not alone.dataframe and not alone.metric and not widget_keys(alone)


@pytest.mark.parametrize("who", [MANAGER, VIEWER, RITA])
def test_each_role_logs_in_to_its_own_pages(seeded: Garage, who: str) -> None:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    log_in(at, who)
    assert not at.exception and not at.error, texts(at.error)
    role = _account(seeded.url, who).role
    assert who in texts(at.sidebar.markdown)
    for page in PAGES:
        if may_open(role, page.name):
            at.switch_page(page_path(page.name)).run()
            assert not at.exception, (page.name, [e.value for e in at.exception])
            assert "Not allowed" not in texts(at.error), page.name
        else:  # not in the navigation: neither a menu entry nor a switch_page target
            with pytest.raises(ValueError, match="navigation page"):
                at.switch_page(page_path(page.name))
    actions_seen = list(_audit(seeded.url)["action"])
    assert actions_seen[-1] == "log in"


@pytest.mark.parametrize("page", [p.name for p in PAGES if not may_open(Role.resident, p.name)])
def test_a_page_refuses_a_role_that_may_not_open_it(
    seeded: Garage, wall: FakeWall, page: str
) -> None:
    """Reached without the navigation (the page script itself, with a resident's session),
    a manager's page refuses and shows nothing of the garage."""
    rita = _account(seeded.url, RITA)
    at = AppTest.from_file(str(page_path_abs(page)), default_timeout=TIMEOUT_S)
    at.session_state[SESSION_KEY] = MonitorSession(
        rita.id, rita.name, rita.credentials_version, wall.at, wall.at
    )
    at.run()
    assert "Not allowed" in texts(at.error)
    assert not at.dataframe and not at.metric and not widget_keys(at)
    denied = _audit(seeded.url).iloc[0]
    assert (denied["actor"], denied["action"], denied["target"], denied["outcome"]) == (
        RITA,
        "open page",
        page,
        "denied",
    )


def page_path_abs(page: str) -> Path:
    return next(p.path for p in PAGES if p.name == page)


def test_a_resident_sees_only_their_own_car_sessions_and_messages(seeded: Garage) -> None:
    mine, my_tag = seeded.residents[RITA]
    theirs, their_tag = seeded.residents[ROLF]
    foreign = (theirs, their_tag, _owner(seeded.url, their_tag))
    at = open_page("resident", RITA)
    assert [t.value for t in at.title] == ["My car"]
    assert at.selectbox(key="resident_station").options == [
        o for o in at.selectbox(key="resident_station").options if o.startswith(mine)
    ]
    at.radio(key="resident_by").set_value("My tag").run()
    assert [o.split(" ")[0] for o in at.selectbox(key="resident_tag").options] == [my_tag]
    with pytest.raises(ValueError):  # the widget cannot even hold another resident's tag
        at.selectbox(key="resident_tag").set_value(their_tag).run()
    at = open_page("resident", RITA)
    for page in ("resident", "sessions", "account"):
        at.switch_page(page_path(page)).run()
        shown = _text(at)
        assert not [word for word in foreign if word in shown], (page, foreign)
    at.switch_page(page_path("sessions")).run()
    table = at.dataframe[0].value
    assert set(table["Station"].str.split(" ").str[0]) | set(table["Tag"]) <= {mine, my_tag}


def test_every_widget_key_of_the_app_gives_a_resident_nothing_of_anyone_else(
    seeded: Garage,
) -> None:
    """Every key of every page a manager has, set by a resident to another resident's
    station, tag or name, on every page a resident may open: nothing of theirs shows,
    nothing is written."""
    theirs, their_tag = seeded.residents[ROLF]
    owner = _owner(seeded.url, their_tag)
    manager = open_page("live")
    keys: set[str] = set()
    for page in PAGES:
        manager.switch_page(page_path(page.name)).run()
        keys |= widget_keys(manager)
    assert {"set_fuse", "settings_save", "act_reset", "edit_save", "resident_save"} <= keys
    before = _snapshot(seeded.url)

    def hostile(key: str) -> str:
        return their_tag if "tag" in key else owner if "resident" in key else theirs

    def nothing_of_theirs(at: AppTest, key: str) -> None:
        assert not at.exception, (key, [e.value for e in at.exception])
        shown = _text(at)
        assert theirs not in shown and their_tag not in shown and owner not in shown, key

    refused = tried = 0
    for page in ("resident", "sessions", "account"):
        at = open_page(page, RITA)
        rendered = widget_keys(at)
        buttons = {str(b.key) for b in at.button}
        # Keys of widgets this page does not draw: all at once (they must change nothing).
        for key in keys - rendered:
            at.session_state[key] = hostile(key)
        at.run()
        nothing_of_theirs(at, "keys the page does not draw")
        # Keys of widgets it draws, one by one: the widget refuses what is not an option;
        # buttons hold no value (Streamlit refuses to set them).
        for key in sorted((rendered & keys) - buttons):
            try:
                at.session_state[key] = hostile(key)
                at.run()
            except (ValueError, TypeError, AttributeError):  # AppTest refused the value
                refused += 1
                at = open_page(page, RITA)
                continue
            tried += 1
            nothing_of_theirs(at, key)
    assert tried and refused
    assert _snapshot(seeded.url) == before


def test_a_resident_cannot_change_another_residents_car_through_the_write_path(
    seeded: Garage,
) -> None:
    rita = _account(seeded.url, RITA)
    theirs, _ = seeded.residents[ROLF]
    tx = _open_tx(seeded.url, theirs)
    before = _snapshot(seeded.url)
    departure = {"departure_at": END + timedelta(hours=10), "energy_needed_wh": 1000.0}
    with pytest.raises(AccessDeniedError, match="another resident's car"):
        writes.save_session_input(rita, tx, departure)
    for attempt in (
        lambda: writes.update_site(rita, query(seeded.url, queries.site_settings), {}),
        lambda: writes.send_command(rita, theirs, actions.soft_reset()),
        lambda: writes.edit_station(rita, theirs, name="mine now"),
        lambda: writes.remove_station(rita, theirs),
        lambda: writes.count_as_managed(rita, theirs),
    ):
        with pytest.raises(AccessDeniedError):
            attempt()
    assert _snapshot(seeded.url) == before
    log = _audit(seeded.url)
    assert set(log["outcome"]) == {"denied"} and set(log["actor"]) == {RITA}
    assert len(log) == 6


def test_a_resident_sets_their_own_departure(seeded: Garage) -> None:
    mine, _ = seeded.residents[RITA]
    tx = _open_tx(seeded.url, mine)
    at = open_page("resident", RITA)
    at.radio(key="resident_need").set_value(NEED_ENERGY).run()
    at.number_input(key="resident_kwh").set_value(30.0)
    button(at, "resident_save").click().run()
    assert not at.error, texts(at.error)
    row = query(seeded.url, lambda sm: queries.sessions(sm, open_only=True))
    assert float(row.set_index("transaction_id").loc[tx, "energy_needed_wh"]) == 30_000.0
    entry = _audit(seeded.url).iloc[0]
    assert (entry["actor"], entry["action"], entry["target"]) == (
        RITA,
        "set departure and need",
        f"transaction {tx}",
    )


WRITE_BUTTONS = {
    "settings_save",
    "add_submit",
    "edit_save",
    "reset_managed",
    "act_limit",
    "act_pause",
    "act_resume",
    "act_stop",
    "act_reset",
    "act_unlock",
    "act_trigger",
    "resident_save",
}


def test_a_viewer_sees_every_garage_page_and_cannot_write(seeded: Garage) -> None:
    before = _snapshot(seeded.url)
    at = open_page("live", VIEWER)
    for page in (p.name for p in pages_for(Role.viewer)):
        at.switch_page(page_path(page)).run()
        assert not at.exception and "Not allowed" not in texts(at.error), page
        if page == "stations":
            for cp in at.selectbox(key="manage_station").options:
                at.selectbox(key="manage_station").set_value(cp.split(" ")[0]).run()
                assert not WRITE_BUTTONS & widget_keys(at)
        present = widget_keys(at)
        assert not WRITE_BUTTONS & present, page
        assert not {k for k in present if k.startswith(("remove_", "set_", "add_", "edit_"))}
        for key in present - {"logout"}:  # whatever buttons a viewer has write nothing
            if any(b.key == key for b in at.button):
                button(at, key).click().run()
        if page == "settings":
            assert "Read-only account" in texts(at.caption)
    assert _snapshot(seeded.url) == before
    viewer = _account(seeded.url, VIEWER)
    site = query(seeded.url, queries.site_settings)
    tx = _open_tx(seeded.url, seeded.residents[RITA][0])
    for attempt in (
        lambda: writes.update_site(viewer, site, {"fuse_limit_a": 80.0}),
        lambda: writes.send_command(viewer, "CP001", actions.soft_reset()),
        lambda: writes.add_station(
            viewer, "CP9", max_current_a=16, phases=3, wiring="L1L2L3", name=None, password=None
        ),
        lambda: writes.save_session_input(viewer, tx, {"energy_needed_wh": 1.0}),
    ):
        with pytest.raises(AccessDeniedError):
            attempt()
    assert _snapshot(seeded.url) == before


def test_a_managers_writes_are_audited_and_shown_on_the_audit_page(seeded: Garage) -> None:
    at = open_page("settings")
    at.number_input(key="set_fuse").set_value(125.0)
    button(at, "settings_save").click().run()
    at.switch_page(page_path("stations")).run()
    at.selectbox(key="manage_station").set_value("CP002").run()
    at.text_input(key="edit_name").set_value("Apartment Z9")
    button(at, "edit_save").click().run()
    button(at, "act_reset").click().run()
    log = _audit(seeded.url)
    mine = log[log["actor"] == MANAGER][["action", "target", "outcome"]].fillna("-")
    done = mine.values.tolist()
    assert done[:4] == [
        ["command Reset", "CP002", "ok"],
        ["edit station", "CP002", "ok"],
        ["change settings", "site", "ok"],
        ["log in", "-", "ok"],
    ]
    settings_row = log[log["action"] == "change settings"].iloc[0]
    assert settings_row["detail"]["fuse_limit_a"][1] == 125.0
    assert settings_row["at"] == pd.Timestamp(END)  # the monitor's (injected) real time
    at.switch_page(page_path("audit")).run()
    shown = at.dataframe[0].value
    assert {"command Reset", "edit station", "change settings", "log in"} <= set(shown["What"])
    assert set(shown["Who"]) == {MANAGER}
    at.selectbox(key="audit_actor").set_value(MANAGER).run()
    at.toggle(key="audit_not_ok").set_value(True).run()
    assert "Nothing recorded yet." in texts(at.info)


def test_wrong_passwords_lock_the_name_out_even_across_reloads(
    seeded: Garage, wall: FakeWall
) -> None:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    for attempt in range(MAX_FAILED_LOGINS):
        log_in(at, MANAGER, "not-the-password")
        message = texts(at.error)
        expected = "Too many failed attempts" if attempt == MAX_FAILED_LOGINS - 1 else "Wrong"
        assert expected in message, (attempt, message)
        wall.advance(seconds=10)
    log_in(at, MANAGER)  # the right password, during the lockout
    assert "Try again in 15 min" in texts(at.error)
    reloaded = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    log_in(reloaded, MANAGER)
    assert "Too many failed attempts" in texts(reloaded.error)
    assert "login_name" in widget_keys(reloaded)
    wall.advance(minutes=15)
    log_in(reloaded, MANAGER)
    assert not reloaded.error, texts(reloaded.error)
    assert "login_name" not in widget_keys(reloaded)
    outcomes = list(_audit(seeded.url)["outcome"])[::-1]
    assert outcomes == ["failed"] * 4 + ["locked out", "locked", "locked", "ok"]


def test_unknown_names_get_the_same_answer_and_the_same_lockout(seeded: Garage) -> None:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    log_in(at, "mallory", "guess-number-1")
    assert texts(at.error) == "Wrong name or password."
    for _ in range(MAX_FAILED_LOGINS - 1):
        log_in(at, "mallory", "guess-number-2")
    assert "Too many failed attempts" in texts(at.error)


def test_an_idle_session_asks_to_log_in_again(seeded: Garage, wall: FakeWall) -> None:
    at = open_page("stations")
    wall.advance(seconds=SESSION_IDLE_TIMEOUT.total_seconds() - 1)
    at.run()
    assert at.dataframe, "still logged in one second before the idle timeout"
    wall.advance(seconds=SESSION_IDLE_TIMEOUT.total_seconds())
    at.run()
    assert "login_name" in widget_keys(at)
    assert "without activity" in texts(at.info)
    assert not at.dataframe
    assert SESSION_KEY not in at.session_state and "manage_station" not in at.session_state


def test_a_busy_session_still_ends_at_its_lifetime(seeded: Garage, wall: FakeWall) -> None:
    at = open_page("history")
    step = SESSION_IDLE_TIMEOUT / 2
    for _ in range(int(SESSION_MAX_LIFETIME / step) - 1):
        wall.advance(seconds=step.total_seconds())
        at.run()
        assert "login_name" not in widget_keys(at)
    wall.advance(seconds=step.total_seconds())
    at.run()
    assert "login_name" in widget_keys(at)
    assert "after you logged in" in texts(at.info)


def test_logout_and_a_password_change_elsewhere_end_the_session(seeded: Garage) -> None:
    at = open_page("live", VIEWER)
    button(at, "logout").click().run()
    assert "login_name" in widget_keys(at) and "logged out" in texts(at.info)
    at = open_page("live", VIEWER)
    _run(seeded.url, lambda r: r.set_user_password(VIEWER, hash_user_password("brand-new-pw-1")))
    at.run()
    assert "login_name" in widget_keys(at)
    assert "password was changed" in texts(at.info)


def test_own_password_change_keeps_the_session_and_checks_the_current_one(
    seeded: Garage,
) -> None:
    at = open_page("account", RITA)
    at.text_input(key="password_current").set_value("wrong-current-pw")
    at.text_input(key="password_new").set_value("a-new-password-1")
    at.text_input(key="password_repeat").set_value("a-new-password-1")
    button(at, "password_save").click().run()
    assert "not your password" in texts(at.error)
    at.text_input(key="password_current").set_value(PASSWORDS[RITA])
    at.text_input(key="password_new").set_value("a-new-password-1")
    at.text_input(key="password_repeat").set_value("a-new-password-1")
    button(at, "password_save").click().run()
    assert "Password changed" in texts(at.success)
    at.switch_page(page_path("resident")).run()
    assert "login_name" not in widget_keys(at)
    stored = _run(seeded.url, lambda r: r.user_credentials(RITA))[1]
    assert verify_password("a-new-password-1", stored)


def test_the_login_page_says_how_to_make_the_first_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    _run(url, lambda r: r.list_users())
    monkeypatch.setenv("GARAGEGRID_DATABASE_URL", url)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    assert "csms user add NAME --role manager" in texts(at.warning)
