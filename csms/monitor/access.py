"""Who is using the monitor: the login page, the session, and the check every page makes.

Nothing renders without a session: `gate` (called by ``monitor_app.py`` before the
navigation) shows the login page, and only that page, until a name and password match
an account (`csms.monitor.writes.log_in`: scrypt, lockout after repeated failures).

A session lives in Streamlit's server-side session state, never in the browser: a new
tab or a reload logs in again. It ends

- after `csms.auth.SESSION_IDLE_TIMEOUT` without a click (a page refreshing itself, like
  Live, is not a click) and `csms.auth.SESSION_MAX_LIFETIME` after the login;
- when the account's password changes or the account is removed (checked on every run,
  since the account is read from the database each time, with its role and stations);
- on "Log out".

Then the whole session state is dropped (no widget keeps the last user's choices) and
the login page says why. Time is real time (`ui.wall_now`), not the garage's clock.

The navigation holds the role's pages; every other page's URL leads to a hidden page
that says "Not allowed" (and is audited), so a bookmark or a typed URL never shows a
"Page not found" box nor the page. Logged out, every page's URL shows the login, and the
page asked for opens after it. Every page script also starts with `page_account`, which
refuses to render a page the role may not open, however it was reached.

Sites: every page shows one site (`page_site`): an account bound to a site sees that
site, with nothing to pick; an account that sees every site (an operator, ``csms user
set-site NAME --all-sites``) picks one in the sidebar once the deployment has several.
The choice is checked against the account on every run (a value for a site the account
does not see falls back to its first site), and a single-site install shows no picker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from csms.auth import AccessDeniedError, Account, Role, session_end
from csms.domain import SiteConfig
from csms.errors import GarageGridError
from csms.monitor import ui, writes
from csms.monitor.pages import PAGES, default_page, may_open, pages_for
from csms.store import queries

SESSION_KEY = "garagegrid_session"
NOTICE_KEY = "garagegrid_notice"
# The site an all-sites account chose in the sidebar (a site id).
SITE_KEY = "garagegrid_site"
# The login page's own URL path (the root URL shows it too).
LOGIN_PATH = "login"
# The login form's width on a desktop (a phone narrower than this gets its full width).
LOGIN_WIDTH_PX = 440
# How often an open page checks whether its session has ended (then shows the login).
WATCH_EVERY_S = 30.0


@dataclass
class MonitorSession:
    """One browser session's login (server-side; the browser holds only Streamlit's id)."""

    user_id: int
    name: str
    credentials_version: int
    login_at: datetime
    last_active_at: datetime


def _drop(notice: str | None) -> None:
    """Forget everything of this browser session; the login page shows ``notice``."""
    st.session_state.clear()
    if notice:
        st.session_state[NOTICE_KEY] = notice


def start_session(account: Account) -> None:
    _drop(None)
    now = ui.wall_now()
    st.session_state[SESSION_KEY] = MonitorSession(
        account.id, account.name, account.credentials_version, now, now
    )


def renew_credentials(account: Account) -> None:
    """Keep this session open after its own password change."""
    session = st.session_state.get(SESSION_KEY)
    if isinstance(session, MonitorSession) and session.user_id == account.id:
        session.credentials_version = account.credentials_version


def session() -> MonitorSession | None:
    found = st.session_state.get(SESSION_KEY)
    return found if isinstance(found, MonitorSession) else None


def current_account(*, activity: bool) -> Account | None:
    """The logged-in account, read afresh from the database; None when there is none.

    A session that has ended is dropped (and the reason kept for the login page).
    ``activity``: this run is a person's click, which keeps the session alive.
    """
    open_session = session()
    if open_session is None:
        return None
    now = ui.wall_now()
    reason = session_end(open_session.login_at, open_session.last_active_at, now)
    account: Account | None = None
    if reason is None:
        account = ui.run(ui.store().repo.user_by_id(open_session.user_id))
        if (
            account is None
            or account.name != open_session.name
            or account.credentials_version != open_session.credentials_version
        ):
            reason = "Your password was changed or your account removed."
            account = None
    if reason is not None:
        writes.audit(account, "session ended", actor=open_session.name, detail={"why": reason})
        _drop(f"{reason} Log in again.")
        return None
    if activity:
        open_session.last_active_at = now
    return account


def gate() -> Account:
    """The logged-in account; otherwise the login page is the only page and the run stops."""
    try:
        account = current_account(activity=True)
    except GarageGridError as exc:
        st.error(f"**The monitor cannot read the database.** {exc}", icon=":material/database:")
        st.stop()
    if account is None:
        # Every page's URL shows the login (no "Page not found" for a bookmark); the page
        # asked for then opens, or says it is not allowed.
        logins = [st.Page(login_page, title="Log in", icon=":material/login:", url_path=LOGIN_PATH)]
        logins += [
            st.Page(login_page, title="Log in", icon=":material/login:", url_path=page.name)
            for page in PAGES
        ]
        st.navigation(logins, position="hidden").run()
        st.stop()
    return account


def _refusal(page: str, home: StreamlitPage) -> Callable[[], None]:
    """A page the role may not open, at that page's URL: says so, audits, links home."""

    def refuse() -> None:
        account = current_account(activity=False)
        role = account.role.value if account else "logged-out"
        if account is not None:
            writes.audit(account, "open page", page, outcome="denied")
        st.error(f"Not allowed: a {role} account cannot open this page.", icon=":material/block:")
        st.page_link(home, label=f"Go to {home.title}", icon=":material/arrow_forward:")

    refuse.__name__ = f"refuse_{page}"
    return refuse


def _go_to(target: StreamlitPage) -> Callable[[], None]:
    def go() -> None:
        st.switch_page(target)

    return go


def navigation(account: Account) -> list[StreamlitPage]:
    """The role's pages (its landing page first, the default), then hidden pages at every
    other URL: a refusal for each page the role may not open, and the landing page at the
    login's URL (where a login that started at the root URL reruns)."""
    landing = default_page(account.role)
    allowed = sorted(pages_for(account.role), key=lambda page: page.name != landing)
    visible = [
        st.Page(
            page.path,
            title=page.title_for(account.role),
            icon=page.icon,
            url_path=page.name,
            default=page.name == landing,
        )
        for page in allowed
    ]
    home = visible[0]
    hidden = [
        st.Page(
            _refusal(page.name, home), title=page.title, url_path=page.name, visibility="hidden"
        )
        for page in PAGES
        if not may_open(account.role, page.name)
    ]
    hidden.append(st.Page(_go_to(home), title="Log in", url_path=LOGIN_PATH, visibility="hidden"))
    return visible + hidden


def page_account(page: str) -> Account:
    """The first call of every page: the account, or a refusal and the end of this run."""
    try:
        account = current_account(activity=False)
    except GarageGridError as exc:
        st.error(f"**The monitor cannot read the database.** {exc}", icon=":material/database:")
        st.stop()
    if account is None:
        st.info("Log in first.", icon=":material/login:")
        st.stop()
    if not may_open(account.role, page):
        writes.audit(account, "open page", page, outcome="denied")
        st.error(
            f"Not allowed: a {account.role} account cannot open this page.",
            icon=":material/block:",
        )
        st.stop()
    return account


def still_logged_in(site_id: int | None = None) -> bool:
    """For a fragment that reruns itself: False (and a full rerun to the login page) once
    the session has ended, or (``site_id``) once the account no longer sees that site."""
    try:
        account = current_account(activity=False)
    except GarageGridError:
        return True  # the fragment's own error box says what is wrong
    if account is None or (
        site_id is not None and account.site_id is not None and account.site_id != site_id
    ):
        st.rerun(scope="app")
        return False
    return True


# --------------------------------------------------------------------------- sites
def visible_sites(account: Account) -> tuple[list[SiteConfig], int]:
    """The sites ``account`` sees, and how many the deployment has."""
    every = ui.run(queries.sites(ui.store().sessionmaker))
    mine = [s for s in every if account.site_id is None or s.site_id == account.site_id]
    if not mine:
        raise AccessDeniedError(f"the site of {account.name}'s account does not exist")
    return mine, len(every)


def _chosen(sites: list[SiteConfig]) -> SiteConfig:
    wanted = st.session_state.get(SITE_KEY)
    return next((s for s in sites if s.site_id == wanted), sites[0])


def page_site(account: Account) -> ui.SiteView:
    """The site this page shows: the account's own, or the one an all-sites account chose
    (checked again here: a chosen site the account does not see is never shown)."""
    sites, count = visible_sites(account)
    return ui.SiteView(_chosen(sites), several=count > 1)


def _site_changed() -> None:
    """Another site: the pages start afresh (no station or filter of the last site stays)."""
    for key in list(st.session_state):
        if key not in (SESSION_KEY, SITE_KEY, NOTICE_KEY):
            del st.session_state[key]


def _site_picker(account: Account) -> None:
    """The site selector, for an account that sees several sites; else the site's name
    once the deployment has several (a single-site install shows nothing)."""
    sites, count = visible_sites(account)
    if count <= 1:
        return
    if len(sites) == 1:
        st.caption(f"Site: **{sites[0].name}**")
        return
    names = {s.site_id: s.name for s in sites}
    # Set before the widget exists: a stale or crafted value becomes the first site.
    st.session_state[SITE_KEY] = _chosen(sites).site_id
    st.selectbox(
        "Site",
        list(names),
        format_func=lambda site_id: names[site_id],
        key=SITE_KEY,
        on_change=_site_changed,
        help="Every page shows this site: its fuse and settings, stations, sessions, "
        "residents and building load.",
    )


@st.fragment(run_every=WATCH_EVERY_S)
def _watch() -> None:
    still_logged_in()


def sidebar(account: Account) -> None:
    """Who is logged in, until when, and the way out."""
    with st.sidebar:
        st.markdown(f"**{account.name}** · {account.role}")
        try:
            _site_picker(account)
        except (GarageGridError, AccessDeniedError) as exc:
            st.error(str(exc), icon=":material/error:")
        if account.role is Role.resident:
            mine = ", ".join(sorted(account.stations | account.tags)) or ui.EMPTY
            st.caption(f"Your stations and tags: {mine}")
        if st.button("Log out", key="logout", icon=":material/logout:"):
            writes.audit(account, "log out")
            _drop("You have logged out.")
            st.rerun()
        _watch()


def login_page() -> None:
    st.title("GarageGrid")
    st.caption("Charging garage monitor. Log in with the account your housing company gave you.")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.info(notice, icon=":material/info:")
    try:
        accounts = ui.run(queries.user_count(ui.store().sessionmaker))
    except GarageGridError as exc:
        st.error(f"**The monitor cannot read the database.** {exc}", icon=":material/database:")
        return
    if accounts == 0:
        st.warning(
            "No account exists yet. On the CSMS's computer, create one with "
            "`csms user add NAME --role manager`.",
            icon=":material/person_add:",
        )
    with st.form("login", clear_on_submit=True, width=LOGIN_WIDTH_PX):
        name = st.text_input("Name", key="login_name", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Log in", type="primary", key="login_submit")
    if not submitted:
        return
    try:
        result = writes.log_in(name, password)
    except GarageGridError as exc:
        st.error(f"**The monitor cannot read the database.** {exc}", icon=":material/database:")
        return
    if result.account is None:
        st.error(result.message or "Wrong name or password.", icon=":material/lock:")
        return
    start_session(result.account)
    st.rerun()
