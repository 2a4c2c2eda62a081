"""Audit (managers only): who changed what and when, logins and refused requests included.

Rows come from ``audit_log`` (written by `csms.monitor.writes` and ``csms user``). Times
are real time in the site's zone, also while a demo runs the garage's clock faster.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from csms.auth import Account
from csms.monitor import access, ui
from csms.monitor.frames import records
from csms.store import queries

ALL = "Everyone"
LIMIT = 500
NOT_OK = "Only failed and refused"


def render() -> None:
    account = access.page_account("audit")
    st.title("Audit")
    with ui.error_box():
        _render(account, access.page_site(account))


def _detail(value: Any) -> str:
    if ui.is_empty(value) or value == {}:
        return ui.EMPTY
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _render(account: Account, view: ui.SiteView) -> None:
    sm = ui.store().sessionmaker
    tz = view.site.timezone
    # With several sites: the site's own rows; an operator also sees the deployment's
    # (operators' logins, `csms user`, rows from before rows had a site).
    scope = view.scope
    deployment = account.site_id is None
    c1, c2 = st.columns([2, 3])
    actors = ui.run(queries.audit_actors(sm, scope, deployment))
    actor = c1.selectbox("Who", [ALL, *actors], key="audit_actor")
    with c2:
        st.write("")
        not_ok = st.toggle(NOT_OK, key="audit_not_ok")
    log = ui.run(
        queries.audit_log(
            sm,
            actor=None if actor == ALL else actor,
            limit=LIMIT,
            site_id=scope,
            deployment=deployment,
        )
    )
    if not_ok:
        log = log[log["outcome"] != "ok"]
    if log.empty:
        st.info("Nothing recorded yet.", icon=":material/policy:")
        return
    rows = [
        {
            "When": ui.fmt_time(r["at"], tz, seconds=True),
            "Who": r["actor"],
            "Role": ui.text(r["role"]),
            "What": r["action"],
            "Target": ui.text(r["target"]),
            "Outcome": r["outcome"],
            "Detail": _detail(r["detail"]),
        }
        for r in records(log)
    ]
    ui.table(pd.DataFrame(rows))
    speed = ui.clock_speed()
    garage = (
        ""
        if speed == 1.0
        else " The garage's clock is paused, so its times differ."
        if speed == 0
        else f" The garage's clock runs {speed:g}x, so its times differ."
    )
    whose = (
        ""
        if scope is None
        else f" Site {view.site.name}'s entries"
        + (" and the whole deployment's (logins of operators, `csms user`)." if deployment else ".")
    )
    st.caption(
        f"The newest {LIMIT} entries, in real time, site time zone ({tz}).{whose}{garage} "
        "Outcomes: ok, denied (the role may not), failed (wrong password), locked."
    )
    st.download_button(
        "Audit log (CSV)",
        ui.localize_columns(log, ["at"], tz).to_csv(index=False).encode(),
        file_name="garagegrid-audit.csv",
        mime="text/csv",
        key="audit_csv",
    )


if __name__ == "__main__":
    render()
