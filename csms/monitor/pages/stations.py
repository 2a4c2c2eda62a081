"""Stations: every charge point, and what a manager can change or ask of each.

Adding, renaming, editing and removing write the ``charge_points`` table (validated by
`csms.settings.validate_station`); every action on a charger is a command-outbox row that
the CSMS sends within a second, and its answer shows up in the table below the buttons.
A station the controller counts at its maximum ("Unmanaged", with the reason) can be
counted as managed again here, also a direct write; the capabilities the charger reported
(GetConfiguration, `csms.controller.capabilities`) are shown with the station.

A viewer sees the same tables without a single form or button; every write goes through
`csms.monitor.writes`, which checks the account again and records it in the audit log.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pandas as pd
import streamlit as st

from csms.auth import Account, Permission
from csms.controller.capabilities import Capabilities, capabilities_from_json, describe
from csms.errors import ConfigError
from csms.monitor import access, actions, station_profiles, ui, writes
from csms.monitor.frames import records
from csms.settings import validate_station
from csms.store import queries

# The CSMS's own limit on the identity in the URL (csms.ocpp16.server.MAX_ID_LENGTH).
MAX_ID_LENGTH = 64
FLASH_KEY = "stations_flash"


def check_station_id(cp_id: str) -> str:
    """The charge point identity as it appears in ws://HOST:9000/ocpp/<id>."""
    cp_id = cp_id.strip()
    if not cp_id:
        raise ConfigError("id: enter the charge point identity (the last part of its URL)")
    if len(cp_id) > MAX_ID_LENGTH or "/" in cp_id or not cp_id.isprintable() or " " in cp_id:
        raise ConfigError(
            f"id: at most {MAX_ID_LENGTH} printable characters without '/' or spaces, got {cp_id!r}"
        )
    return cp_id


def _flash(message: str) -> None:
    """Show ``message`` after a rerun, so that the table already has the change."""
    st.session_state[FLASH_KEY] = message
    st.rerun()


def _rows(frame: pd.DataFrame) -> list[Any]:
    """Rows with attribute access (r.id, r.status), untyped like the frame's cells."""
    return [SimpleNamespace(**r) for r in records(frame)]


def _state(row: Any) -> str:
    online = "online" if row.connected else "offline"
    status = row.status or "no status yet"
    if row.error_code and row.error_code != "NoError":
        status = f"{status} ({row.error_code})"
    return f"{online} · {status}"


def _text(value: Any) -> str:
    """A cell as text; '' for None / NaN."""
    return "" if ui.is_empty(value) else str(value)


def _unmanaged(row: Any) -> str:
    """Why the controller counts this station at its maximum; '–' while it is managed."""
    if not row.unmanaged:
        return "–"
    return _text(row.unmanaged_reason) or "yes (no reason recorded)"


def _table(table: pd.DataFrame, tz: str) -> None:
    now = ui.now()
    rows = []
    for r in _rows(table):
        rows.append(
            {
                "Station": r.id,
                "Name / apartment": ui.text(r.name),
                "State": _state(r),
                "Last seen": ui.fmt_ago(r.last_seen_at, now),
                "Limit A": ui.number(r.limit_a, "{:g}"),
                "Draw kW": ui.number(
                    None if ui.is_empty(r.power_w) else r.power_w / 1000.0, "{:.2f}"
                ),
                "Resident": ui.text(r.owner or r.id_tag),
                "Max A": ui.number(r.max_current_a, "{:g}"),
                "Phases": r.phases,
                "Wiring": r.wiring,
                "Vendor": ui.text(r.vendor),
                "Model": ui.text(r.model),
                "Firmware": ui.text(r.firmware_version),
                "Last error": (
                    f"{r.last_error} ({ui.fmt_time(r.last_error_at, tz)})"
                    if r.last_error
                    else ui.EMPTY
                ),
                "Unmanaged": _unmanaged(r),
            }
        )
    ui.table(pd.DataFrame(rows), right=("Limit A", "Draw kW", "Max A"))


def _add_form(account: Account, site_id: int) -> None:
    with (
        st.expander("Add a new station", icon=":material/add:"),
        st.form("add_station", clear_on_submit=False),
    ):
        c1, c2 = st.columns(2)
        cp_id = c1.text_input(
            "Charge point id", key="add_id", help="As in ws://HOST:9000/ocpp/<id>"
        )
        name = c2.text_input("Name or apartment", key="add_name")
        c3, c4, c5 = st.columns(3)
        max_a = c3.number_input("Max current (A)", value=16.0, step=1.0, key="add_max")
        phases = c4.selectbox("Phases", [3, 1], key="add_phases")
        wiring = c5.text_input(
            "Wiring", value="", key="add_wiring", help="L1/L2/L3, or a rotation like L2L3L1"
        )
        password = st.text_input(
            "Password (Basic auth)",
            type="password",
            key="add_password",
            help="The AuthorizationKey the charger sends; empty: no authentication.",
        )
        if st.form_submit_button("Add station", type="primary", key="add_submit"):
            try:
                cp = check_station_id(cp_id)
                current, n, wiring_ok = validate_station(
                    max_current_a=max_a, phases=phases, wiring=wiring or None
                )
                writes.add_station(
                    account,
                    cp,
                    max_current_a=current,
                    phases=n,
                    wiring=wiring_ok,
                    name=name.strip() or None,
                    password=password or None,
                    site_id=site_id,
                )
            except ConfigError as exc:
                st.error(str(exc))
            else:
                _flash(f"Added {cp}. Point the charger at ws://HOST:9000/ocpp/{cp}.")


def _edit(account: Account, station: Any, site_id: int) -> None:
    with st.form(f"edit_{station.id}"):
        c1, c2, c3, c4 = st.columns([3, 2, 1, 2])
        name = c1.text_input("Name or apartment", value=station.name or "", key="edit_name")
        max_a = c2.number_input(
            "Max current (A)", value=float(station.max_current_a), step=1.0, key="edit_max"
        )
        phases = c3.selectbox(
            "Phases", [3, 1], index=0 if station.phases == 3 else 1, key="edit_phases"
        )
        wiring = c4.text_input("Wiring", value=station.wiring, key="edit_wiring")
        if st.form_submit_button("Save", type="primary", key="edit_save"):
            try:
                current, n, wiring_ok = validate_station(
                    max_current_a=max_a,
                    phases=phases,
                    wiring=wiring if n_matches(wiring, phases) else None,
                )
                changes: dict[str, Any] = {}
                if wiring_ok != station.wiring:
                    # Typed here by a person: the charger's ConnectorPhaseRotation no longer
                    # replaces it (an unchanged wiring keeps whoever set it).
                    changes["wiring_set_by"] = "manager"
                writes.edit_station(
                    account,
                    station.id,
                    site_id,
                    name=name.strip() or None,
                    max_current_a=current,
                    phases=n,
                    wiring=wiring_ok,
                    **changes,
                )
            except ConfigError as exc:
                st.error(str(exc))
            else:
                _flash(f"Saved {station.id}: {n} x {current:g} A, wiring {wiring_ok}.")
    with st.popover("Remove station", icon=":material/delete:"):
        st.write(
            f"Remove **{station.id}** and all its history (sessions, meter values)? Its "
            "charger can no longer connect."
        )
        sure = st.checkbox("Yes, remove it", key=f"remove_sure_{station.id}")
        if st.button("Remove", disabled=not sure, key=f"remove_{station.id}", type="primary"):
            writes.remove_station(account, station.id, site_id)
            _flash(f"Removed {station.id}.")


def n_matches(wiring: str, phases: int) -> bool:
    """Keep the typed wiring unless the phase count changed under it (then the default)."""
    return bool(wiring) and len(wiring.strip()) == 2 * int(phases)


def _enqueue(account: Account, cp_id: str, command: actions.Command, site_id: int) -> None:
    action = command[0]
    command_id = writes.send_command(account, cp_id, command, site_id)
    st.toast(f"{action} queued (command {command_id})", icon=":material/send:")


def _capabilities(station: Any) -> Capabilities | None:
    return capabilities_from_json(
        station.capabilities if isinstance(station.capabilities, dict) else None
    )


def _managed(account: Account, station: Any, tz: str, site_id: int) -> None:
    """Why a station is counted at its maximum, the way back, and what the charger reported."""
    if station.unmanaged:
        at = station.unmanaged_at
        since = "" if at is None or at is pd.NaT else f" since {ui.fmt_time(at, tz)}"
        st.warning(
            f"**{station.id} is counted at its maximum** ({float(station.max_current_a):g} A)"
            f"{since}: {_unmanaged(station)}",
            icon=":material/report:",
        )
        if account.may(Permission.write_garage) and st.button(
            "Count as managed again",
            key="reset_managed",
            help="Clears the mark: the controller plans this station again from its next "
            "tick. Do it once the cause is fixed (or was a one-off race).",
        ):
            writes.count_as_managed(account, station.id, site_id)
            _flash(f"{station.id} is managed again.")
    caps = _capabilities(station)
    if caps is None:
        st.caption("Capabilities: not read from the charger yet (GetConfiguration after its boot).")
        return
    reported = describe(caps)
    st.caption(
        f"Capabilities read {ui.fmt_time(station.capabilities_read_at, tz)}: "
        f"rate units {reported['rate_units']} (limits sent in {station.rate_unit}) · "
        f"max stack level {reported['max_stack_level']} · "
        f"max profiles {reported['max_profiles']} · max periods {reported['max_periods']} · "
        f"phase rotation {reported['phase_rotation']} "
        f"(wiring {station.wiring}, set by {station.wiring_set_by}) · "
        f"meter values every {reported['meter_sample_interval_s']} s: "
        f"{reported['sampled_data']}"
    )


def _actions(account: Account, station: Any, site_voltage_v: float, site_id: int) -> None:
    connector = 1
    tx_id = None if pd.isna(station.transaction_id) else int(station.transaction_id)
    caps = _capabilities(station)
    profile_kw: dict[str, Any] = {
        # The unit and stack levels this charger accepts (read from it, else as registered).
        "rate_unit": _text(station.rate_unit) or "A",
        "phases": int(station.phases),
        "voltage_v": site_voltage_v,
        "only_stack_level_0": bool(station.only_stack_level_0),
        "max_stack_level": caps.max_stack_level if caps is not None else None,
    }
    if not station.connected:
        st.warning(
            f"{station.id} is offline: commands fail until it reconnects.",
            icon=":material/wifi_off:",
        )
    if tx_id is None:
        st.caption("No car is charging here: limit, pause, resume and stop need a transaction.")
    elif station.only_stack_level_0:
        st.caption(
            "This charger accepts only stack level 0: the controller's next limit replaces "
            "an override."
        )
    elif not actions.override_prevails(profile_kw["max_stack_level"]):
        st.caption(
            f"This charger accepts stack levels up to {profile_kw['max_stack_level']} only: "
            "the controller's next limit replaces an override."
        )
    c1, c2 = st.columns([2, 3])
    limit = c1.number_input(
        "Override limit (A)",
        min_value=0.0,
        max_value=float(station.max_current_a),
        value=min(16.0, float(station.max_current_a)),
        step=1.0,
        key="override_limit",
        help="0 pauses; otherwise 6 A up to the station's maximum. Holds until Resume.",
    )
    with c2:
        st.write("")
        b1, b2, b3 = st.columns(3)
        if b1.button("Set limit", disabled=tx_id is None, key="act_limit"):
            try:
                assert tx_id is not None
                _enqueue(
                    account,
                    station.id,
                    actions.set_limit(
                        connector,
                        tx_id,
                        limit,
                        max_current_a=float(station.max_current_a),
                        **profile_kw,
                    ),
                    site_id,
                )
            except ConfigError as exc:
                st.error(str(exc))
        if b2.button("Pause", disabled=tx_id is None, key="act_pause"):
            assert tx_id is not None
            _enqueue(account, station.id, actions.pause(connector, tx_id, **profile_kw), site_id)
        if b3.button("Resume", disabled=tx_id is None, key="act_resume"):
            _enqueue(account, station.id, actions.resume(connector), site_id)
    st.caption(
        "An override above the controller's share can exceed the fuse: the controller "
        "does not plan around it."
    )
    d1, d2, d3, d4 = st.columns(4)
    if d1.button("Remote stop", disabled=tx_id is None, key="act_stop"):
        assert tx_id is not None
        _enqueue(account, station.id, actions.remote_stop(tx_id), site_id)
    if d2.button("Reset (soft)", key="act_reset"):
        _enqueue(account, station.id, actions.soft_reset(), site_id)
    if d3.button("Unlock connector", key="act_unlock"):
        _enqueue(account, station.id, actions.unlock(connector), site_id)
    if d4.button("Trigger meter values", key="act_trigger"):
        _enqueue(account, station.id, actions.trigger_meter_values(connector), site_id)


@st.fragment(run_every=3.0)
def _results(cp_id: str, tz: str, site_id: int) -> None:
    if not access.still_logged_in(site_id):
        return
    with ui.error_box():
        results = ui.run(queries.command_results(ui.store().sessionmaker, cp_id, limit=20))
        if results.empty:
            st.caption("No command sent to this station yet.")
            return
        rows = []
        for r in _rows(results):
            outcome = r.error if r.status == "failed" else r.response
            rows.append(
                {
                    "#": r.id,
                    "Sent": ui.fmt_time(r.created_at, tz, seconds=True),
                    "Action": r.action,
                    "Status": r.status,
                    "Result": (
                        ui.text(outcome)
                        if isinstance(outcome, str) or outcome is None
                        else json.dumps(outcome)
                    ),
                    "By": r.requested_by,
                }
            )
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


@st.fragment(run_every=10.0)
def _security_events(cp_id: str, tz: str, site_id: int) -> None:
    """What the charger reported with SecurityEventNotification (OCPP 1.6 security
    extension): firmware or certificate trouble, a reset, an attack on its link."""
    if not access.still_logged_in(site_id):
        return
    with ui.error_box():
        events = ui.run(queries.security_events(ui.store().sessionmaker, cp_id, limit=50))
        if events.empty:
            st.caption("This station has reported no security event.")
            return
        rows = [
            {
                "Occurred": ui.fmt_time(r.occurred_at, tz, seconds=True),
                "Received": ui.fmt_time(r.received_at, tz, seconds=True),
                "Type": r.type,
                "Details": ui.text(r.tech_info),
            }
            for r in _rows(events)
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _flagged_readings(cp_id: str, tz: str) -> None:
    """Energy register readings the store keeps but leaves out of energy totals."""
    with ui.error_box():
        flagged = ui.run(queries.flagged_samples(ui.store().sessionmaker, cp_id, limit=50))
        if flagged.empty:
            st.caption("No implausible energy register reading from this station.")
            return
        st.caption(
            "Kept as received, left out of energy totals: a register that ran backwards, "
            "or gained more than the station's maximum allows."
        )
        rows = [
            {
                "Taken": ui.fmt_time(r.timestamp, tz, seconds=True),
                "Connector": int(r.connector_id),
                "Transaction": ui.text(r.transaction_id),
                "Register (Wh)": ui.number(r.value, "{:.0f}"),
                "Why": "ran backwards" if r.flag == "backwards" else "jumped",
            }
            for r in _rows(flagged)
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def render() -> None:
    account = access.page_account("stations")
    st.title("Stations")
    with ui.error_box():
        _render(account)


def _render(account: Account) -> None:
    writer = account.may(Permission.write_garage)
    store = ui.store()
    view = access.page_site(account)
    site, site_id = view.site, view.site_id
    table = ui.run(queries.station_table(store.sessionmaker, view.scope))
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        st.success(flash, icon=":material/check:")
    if table.empty:
        st.info(ui.NO_STATIONS, icon=":material/ev_station:")
    else:
        _table(table, site.timezone)
    if writer:
        _add_form(account, site_id)
    else:
        where = f" of site {site.name}" if view.several else ""
        st.caption(f"Read-only account: you see every station{where}; changes are for managers.")
    if table.empty:
        return
    st.subheader("Manage a station" if writer else "A station in detail")
    names = ui.station_names(table)
    cp_id = st.selectbox(
        "Station", list(names), format_func=lambda cp: names[cp], key="manage_station"
    )
    if cp_id is None:
        return
    # Only a station of the table (this site's): a value from anywhere else shows nothing.
    station = next((r for r in _rows(table) if r.id == cp_id), None)
    if station is None:
        return
    _managed(account, station, site.timezone, site_id)
    if not writer:
        station_profiles.render(account, station, site.timezone, site_id)
        st.markdown("**Command results**")
        _results(cp_id, site.timezone, site_id)
        st.markdown("**Security events**")
        _security_events(cp_id, site.timezone, site_id)
        st.markdown("**Implausible meter readings**")
        _flagged_readings(cp_id, site.timezone)
        return
    edit, act, more, security = st.tabs(
        ["Edit", "Commands", "Lists, reservations, firmware", "Security and data"]
    )
    with edit:
        _edit(account, station, site_id)
    with act:
        _actions(account, station, site.voltage_v, site_id)
        st.markdown("**Command results**")
        _results(cp_id, site.timezone, site_id)
    with more:
        station_profiles.render(account, station, site.timezone, site_id)
    with security:
        st.markdown("**Security events**")
        _security_events(cp_id, site.timezone, site_id)
        st.markdown("**Implausible meter readings**")
        _flagged_readings(cp_id, site.timezone)


if __name__ == "__main__":
    render()
