"""The Stations page's "More" tab: the other OCPP 1.6 feature profiles of one station.

Boot (answer its boot Accepted at once), Local Auth List Management (what the CSMS
knows of its list; ask its version; send the whole list), Reservation (reserve its
connector for a tag, cancel), Firmware Management (update firmware, get diagnostics, the
status notifications it sent) and Remote Trigger (any requestedMessage). Every button
goes through `csms.monitor.writes` (checked against the account, audited) into the
command outbox; a viewer sees the state and no buttons.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from csms.auth import Account, Permission
from csms.cli_features import TRIGGER_MESSAGES
from csms.errors import GarageGridError
from csms.local_list import desired_entries, plan_update
from csms.monitor import ui, writes
from csms.monitor.actions import Command
from csms.store.features import FeatureStore

# An expiry the form offers by default, and the most it allows.
DEFAULT_RESERVATION_MIN = 30
MAX_RESERVATION_MIN = 24 * 60


def get_list_version() -> Command:
    return "GetLocalListVersion", {}


def trigger(message: str, connector_id: int | None) -> Command:
    payload: dict[str, Any] = {"requestedMessage": message}
    if connector_id is not None:
        payload["connectorId"] = connector_id
    return "TriggerMessage", payload


def update_firmware(location: str, retrieve_at: str) -> Command:
    return "UpdateFirmware", {"location": location, "retrieveDate": retrieve_at}


def get_diagnostics(location: str) -> Command:
    return "GetDiagnostics", {"location": location}


def _features() -> FeatureStore:
    return FeatureStore(ui.store().repo)


def _queued(cp_id: str, command: Command, command_id: int) -> None:
    st.toast(f"{command[0]} queued (command {command_id})", icon=":material/send:")


def render(account: Account, station: Any, tz: str, site_id: int | None = None) -> None:
    """``site_id``: the site the page shows; every write checks the station is on it."""
    writer = account.may(Permission.write_garage)
    cp_id = str(station.id)
    _boot(account, cp_id, writer, site_id)
    _local_list(account, cp_id, writer, site_id)
    _reservations(account, cp_id, tz, writer, site_id)
    _firmware(account, cp_id, tz, writer, site_id)
    _trigger(account, cp_id, writer, site_id)


def _boot(account: Account, cp_id: str, writer: bool, site_id: int | None) -> None:
    st.markdown("**Boot**")
    info = ui.run(ui.store().repo.get_charge_point(cp_id))
    if info is None:
        return
    at_once = st.checkbox(
        "Accept its boot at once",
        value=info.accept_boot_at_once,
        disabled=not writer,
        key="accept_boot_at_once",
        help="For chargers that never boot again after a Pending answer: Accepted at "
        "once, then its fail-safe profiles are installed (it counts at its maximum until "
        "they are). A charger that reconnects with them in place is Accepted at once anyway.",
    )
    if writer and at_once != info.accept_boot_at_once:
        writes.edit_station(account, cp_id, site_id, accept_boot_at_once=at_once)
        st.toast("Saved", icon=":material/check:")


def _local_list(account: Account, cp_id: str, writer: bool, site_id: int | None) -> None:
    st.markdown("**Local authorization list**")
    state = ui.run(_features().local_list(cp_id))
    kept = {None: "not asked yet", True: "kept", False: "not kept (or disabled)"}
    version = state.version if state.version is not None else "–"
    st.caption(
        f"List: {kept[state.supported]} · version {version} · "
        f"{len(state.entries)} tags · "
        + ("in sync with the id tags' copy" if state.in_sync else "next update is Full")
        + " · csms serve sends id tag changes within seconds."
    )
    if not writer:
        return
    c1, c2 = st.columns(2)
    if c1.button("Ask list version", key="ll_version"):
        command = get_list_version()
        _queued(cp_id, command, writes.send_command(account, cp_id, command, site_id))
    if c2.button("Send the whole list", key="ll_full"):
        features = _features()
        desired = desired_entries(ui.run(features.id_tags(cp_id)), ui.now())
        update = plan_update(desired, None, state.version, full=True)
        assert update is not None
        command = ("SendLocalList", update.to_ocpp())
        _queued(cp_id, command, writes.send_command(account, cp_id, command, site_id))


def _reservations(account: Account, cp_id: str, tz: str, writer: bool, site_id: int | None) -> None:
    st.markdown("**Reservations**")
    now = ui.now()
    rows = ui.run(_features().reservations(cp_id))[:10]
    if rows:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "#": r.id,
                        "Connector": r.connector_id,
                        "Id tag": r.id_tag,
                        "Until": ui.fmt_time(r.expires_at, tz),
                        "State": r.state(now),
                        "Transaction": r.transaction_id,
                    }
                    for r in rows
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption("No reservation yet.")
    if not writer:
        return
    with st.form(f"reserve_{cp_id}"):
        c1, c2, c3 = st.columns(3)
        id_tag = c1.text_input("Id tag", key="reserve_tag", max_chars=20)
        minutes = c2.number_input(
            "For (minutes)",
            min_value=1,
            max_value=MAX_RESERVATION_MIN,
            value=DEFAULT_RESERVATION_MIN,
            key="reserve_minutes",
        )
        connector = c3.number_input("Connector", min_value=1, value=1, key="reserve_connector")
        if st.form_submit_button("Reserve", key="reserve_submit"):
            if not id_tag.strip():
                st.error("Id tag: which tag may use the reservation?")
            else:
                try:
                    command_id = writes.reserve(
                        account,
                        cp_id,
                        int(connector),
                        id_tag.strip(),
                        now + timedelta(minutes=int(minutes)),
                        now=now,
                        site_id=site_id,
                    )
                    st.toast(f"ReserveNow queued (command {command_id})", icon=":material/send:")
                except GarageGridError as exc:
                    st.error(str(exc))
    active = [r for r in rows if r.state(now) in ("requested", "Accepted")]
    if active:
        chosen = st.selectbox("Reservation", [r.id for r in active], key="cancel_reservation_id")
        if st.button("Cancel reservation", key="cancel_reservation"):
            command = ("CancelReservation", {"reservationId": int(chosen)})
            _queued(cp_id, command, writes.send_command(account, cp_id, command, site_id))


def _firmware(account: Account, cp_id: str, tz: str, writer: bool, site_id: int | None) -> None:
    st.markdown("**Firmware and diagnostics**")
    info = ui.run(ui.store().repo.get_charge_point(cp_id))
    events = ui.run(_features().maintenance_events(cp_id, limit=10))
    st.caption(f"Firmware {info.firmware_version if info and info.firmware_version else 'unknown'}")
    if events:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Received": ui.fmt_time(e["received_at"], tz, seconds=True),
                        "Kind": e["kind"],
                        "Status": e["status"],
                    }
                    for e in events
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    if not writer:
        return
    c1, c2 = st.columns(2)
    location = c1.text_input(
        "Firmware URI", key="fw_location", help="e.g. http://csms:9001/firmware/fw-1.2.bin"
    )
    if c1.button("Update firmware", key="fw_update", disabled=not location.strip()):
        retrieve = ui.now().isoformat().replace("+00:00", "Z")
        command = update_firmware(location.strip(), retrieve)
        _queued(cp_id, command, writes.send_command(account, cp_id, command, site_id))
    upload = c2.text_input(
        "Diagnostics upload URI",
        key="diag_location",
        help=f"e.g. http://csms:9001/diagnostics/{cp_id}/",
    )
    if c2.button("Get diagnostics", key="diag_get", disabled=not upload.strip()):
        command = get_diagnostics(upload.strip())
        _queued(cp_id, command, writes.send_command(account, cp_id, command, site_id))


def _trigger(account: Account, cp_id: str, writer: bool, site_id: int | None) -> None:
    if not writer:
        return
    st.markdown("**Ask the charger to send a message**")
    c1, c2 = st.columns([3, 1])
    message = c1.selectbox("Message", TRIGGER_MESSAGES, key="trigger_message")
    if c2.button("Trigger", key="trigger_send"):
        command = trigger(str(message), None)
        _queued(cp_id, command, writes.send_command(account, cp_id, command, site_id))
