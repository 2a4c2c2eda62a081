"""Account: who is logged in, what they may see, until when; change one's own password."""

from __future__ import annotations

import streamlit as st

from csms.auth import (
    MIN_PASSWORD_LENGTH,
    SESSION_IDLE_TIMEOUT,
    SESSION_MAX_LIFETIME,
    Account,
    Role,
)
from csms.errors import ConfigError
from csms.monitor import access, ui, writes

ROLE_TEXT = {
    Role.manager: "Manager: every page; you change settings and stations and send commands.",
    Role.viewer: "Viewer: every page a manager sees, read-only.",
    Role.resident: "Resident: your own car, sessions and messages.",
}


def render() -> None:
    account = access.page_account("account")
    st.title("Account")
    with ui.error_box():
        _render(account)


def _render(account: Account) -> None:
    view = access.page_site(account)
    tz = view.site.timezone
    st.markdown(f"**{account.name}** · {ROLE_TEXT[account.role]}")
    if view.several:
        st.markdown(
            f"Site: **{view.site.name}** (your account's)"
            if account.site_id is not None
            else f"Sites: every site (you are looking at **{view.site.name}**)"
        )
    if account.role is Role.resident:
        st.markdown(
            f"Stations: {', '.join(sorted(account.stations)) or ui.EMPTY} · "
            f"Tags: {', '.join(sorted(account.tags)) or ui.EMPTY}"
        )
    session = access.session()
    if session is not None:
        idle = session.last_active_at + SESSION_IDLE_TIMEOUT
        latest = session.login_at + SESSION_MAX_LIFETIME
        st.caption(
            f"Logged in {ui.fmt_time(session.login_at, tz)}. Without a click this session "
            f"ends {ui.fmt_time(idle, tz)}, and {ui.fmt_time(latest, tz)} at the latest "
            f"(real time, {tz})."
        )
    st.subheader("Change your password")
    with st.form("change_password", clear_on_submit=True, width=access.LOGIN_WIDTH_PX):
        current = st.text_input(
            "Current password",
            type="password",
            key="password_current",
            autocomplete="current-password",
        )
        new = st.text_input(
            "New password",
            type="password",
            key="password_new",
            autocomplete="new-password",
            help=f"At least {MIN_PASSWORD_LENGTH} characters.",
        )
        repeated = st.text_input(
            "New password again",
            type="password",
            key="password_repeat",
            autocomplete="new-password",
        )
        submitted = st.form_submit_button("Change password", key="password_save")
    if submitted:
        try:
            changed = writes.change_own_password(account, current, new, repeated)
        except ConfigError as exc:
            st.error(str(exc), icon=":material/block:")
        else:
            access.renew_credentials(changed)
            st.success(
                "Password changed. Other browsers logged in as you are logged out.",
                icon=":material/check:",
            )


if __name__ == "__main__":
    render()
