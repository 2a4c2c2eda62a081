"""Resident (the thesis's user client): when I leave, what I need, and how it is going.

The input goes to the running transaction through `Repository.set_session_input`; the
controller reads it on its next tick. What the resident needs can be given as energy, or
as an EV model (catalogue) or a battery size with a target charge: then the energy is
worked out here from the charge the car has now, so that the controller has a number
even when the charger does not report the car's state of charge (most AC ones don't).

A resident finds only their own car: the station and tag lists hold their own, a value
that is not theirs is refused before anything is read, the queries are limited to what
their account may see, and `csms.monitor.writes.save_session_input` checks the car again
before it writes. A manager may pick any car; a viewer sees any, without the form.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from csms.auth import AccessDeniedError, Account, Permission, Role
from csms.domain import SiteConfig
from csms.errors import ConfigError
from csms.ev import CATALOGUE, MAX_BATTERY_KWH
from csms.monitor import access, ui, writes
from csms.monitor.frames import records
from csms.monitor.outlook import Outlook, session_outlook
from csms.store import queries

BY_STATION = "My station"
BY_TAG = "My tag"
NEED_ENERGY = "Energy (kWh)"
NEED_MODEL = "EV model and target charge"
NEED_BATTERY = "Battery size and target charge"


def render() -> None:
    account = access.page_account("resident")
    st.title("My car" if account.role is Role.resident else "Resident")
    with ui.error_box():
        _render(account, access.page_site(account))


def _check_mine(account: Account, station: str | None, tag: str | None) -> None:
    """However a value reached the page (widget, session state), it must be the account's."""
    if station is not None and not account.sees_station(station):
        raise AccessDeniedError(f"station {station} is not {account.name}'s")
    if tag is not None and not (account.sees_everything or tag in account.tags):
        raise AccessDeniedError(f"tag {tag} is not {account.name}'s")


def _render(account: Account, view: ui.SiteView) -> None:
    store = ui.store()
    sm = store.sessionmaker
    site = view.site
    scope = view.scope
    everything = account.sees_everything
    stations = ui.run(queries.stations(sm, scope))
    tags = ui.run(queries.id_tags(sm, scope))
    if stations.empty:
        st.info(ui.NO_STATIONS, icon=":material/ev_station:")
        return
    names = {
        cp: label for cp, label in ui.station_names(stations).items() if account.sees_station(cp)
    }
    owners = {
        str(r["id_tag"]): str(r["owner"] or "")
        for r in records(tags)
        if everything or str(r["id_tag"]) in account.tags
    }
    ways = [way for way, known in ((BY_STATION, names), (BY_TAG, owners)) if known or everything]
    if not ways:
        st.info(
            "No station or tag is bound to your account yet. Ask the garage's manager.",
            icon=":material/ev_station:",
        )
        return
    if everything:
        st.caption("A resident's car as they see it on their phone.")
    how = (
        st.radio(
            "Find the car by" if everything else "Find my car by",
            ways,
            horizontal=True,
            key="resident_by",
        )
        if len(ways) > 1
        else ways[0]
    )
    tag: str | None = None
    station: str | None = None
    if how == BY_STATION:
        # A manager looking a car up starts at the first station with one plugged in.
        plugged = set(
            ui.run(queries.sessions(sm, open_only=True, visible_to=account, site_id=scope))[
                "charge_point_id"
            ]
        )
        first_car = next((i for i, cp in enumerate(names) if cp in plugged), 0)
        station = st.selectbox(
            "Station",
            list(names),
            index=first_car,
            format_func=lambda cp: names[cp],
            key="resident_station",
        )
    else:
        if not owners:
            st.info("No id tag is registered yet.")
            return
        tag = st.selectbox(
            "Tag",
            list(owners),
            format_func=lambda t: f"{t} · {owners[t]}" if owners[t] else t,
            key="resident_tag",
        )
    _check_mine(account, station, tag)
    # However a value reached the page, it must be of this site's stations and tags.
    if (station is not None and station not in names) or (tag is not None and tag not in owners):
        raise AccessDeniedError("that station or tag is not at this site")
    running = ui.run(
        queries.sessions(
            sm,
            station_id=station,
            id_tag=tag,
            open_only=True,
            limit=1,
            visible_to=account,
            site_id=scope,
        )
    )
    if running.empty:
        where = names.get(station or "", station) if station else f"tag {tag}"
        st.info(f"No car is charging at {where} right now.", icon=":material/ev_station:")
        last = ui.run(
            queries.sessions(
                sm, station_id=station, id_tag=tag, limit=1, visible_to=account, site_id=scope
            )
        )
        if len(last):
            row = last.iloc[0]
            st.caption(
                f"Last session: {ui.fmt_time(row['started_at'], site.timezone)} - "
                f"{ui.fmt_time(row['stopped_at'], site.timezone)}, "
                f"{(row['energy_wh'] or 0) / 1000:.1f} kWh."
            )
            tag = tag or str(row["id_tag"])
        _notifications(account, None, tag, site.timezone, scope)
        return
    session = records(running)[0]
    tx_id = int(session["transaction_id"])
    readings = ui.run(queries.open_session_readings(sm, scope))
    mine = readings[readings["transaction_id"] == tx_id]
    now = ui.now()
    outlook = session_outlook(records(mine)[0], site, now, CATALOGUE) if len(mine) else None
    st.markdown(
        f"**{names.get(session['charge_point_id'], session['charge_point_id'])}** · "
        f"{ui.text(session['owner'] or session['id_tag'])} · plugged in "
        f"{ui.fmt_time(session['started_at'], site.timezone)}"
    )
    details = ui.run(queries.session_readings(sm, tx_id))
    if outlook is not None:
        _status(outlook, details, site)
    if account.may(Permission.write_session):
        _input_form(account, session, details, outlook, site, now, view.site_id)
    else:
        st.caption("Read-only account: departure and need are set by the resident or a manager.")
    _notifications(account, tx_id, str(session["id_tag"]), site.timezone, scope)


def _status(o: Outlook, details: queries.SessionReadings, site: SiteConfig) -> None:
    tz = site.timezone
    c1, c2, c3, c4 = st.columns(4)
    limit = details.limit_a
    c1.metric(
        "Your limit",
        ui.EMPTY if limit is None else ("paused" if limit == 0 else f"{limit:g} A"),
        help="The latest current the load manager allows your charger, per phase"
        + (f" (since {ui.fmt_time(details.limit_at, tz)})." if details.limit_at else "."),
    )
    amps = max(details.current_a.values()) if details.current_a else None
    c2.metric(
        "Drawing",
        f"{(details.power_w or 0) / 1000:.1f} kW" if o.drawing else "0 kW",
        help="What your car draws now"
        + ("." if amps is None else f": {amps:.1f} A on its busiest phase."),
    )
    c3.metric(
        "Battery",
        ui.EMPTY if details.soc_pct is None else f"{details.soc_pct:.0f} %",
        help="The car's charge, when the charger reports it (most AC chargers do not).",
    )
    c4.metric(
        "Charged so far",
        f"{o.delivered_wh / 1000:.1f} kWh",
        help="Energy metered since you plugged in.",
    )
    leaves = ui.fmt_time(o.departure_at, tz) + (
        " (the garage's default)" if o.departure_is_default else ""
    )
    if o.remaining_wh <= 0:
        st.success(
            f"You have what you asked for. You leave {leaves}.", icon=":material/battery_full:"
        )
    elif o.full_at is None:
        st.warning(
            f"Charging is paused now; {o.remaining_wh / 1000:.1f} kWh to go before you leave "
            f"{leaves}. The load manager resumes you when the garage has room.",
            icon=":material/pause_circle:",
        )
    elif o.will_miss:
        st.warning(
            f"At today's rate you'd be full {ui.fmt_time(o.full_at, tz)}, after you leave "
            f"({leaves}): {o.remaining_wh / 1000:.1f} kWh to go. The load manager raises your "
            "power as the garage frees up.",
            icon=":material/schedule:",
        )
    else:
        st.success(
            f"Expected full {ui.fmt_time(o.full_at, tz)}, before you leave ({leaves}); "
            f"{o.remaining_wh / 1000:.1f} kWh to go.",
            icon=":material/check_circle:",
        )


def _input_form(
    account: Account,
    session: dict[str, Any],
    details: queries.SessionReadings,
    outlook: Outlook | None,
    site: SiteConfig,
    now: datetime,
    site_id: int,
) -> None:
    tz = site.timezone
    zone = ui.zone(tz)
    departure = outlook.departure_at if outlook else now + timedelta(hours=10)
    local_departure = departure.astimezone(zone)
    delivered_kwh = (outlook.delivered_wh if outlook else 0.0) / 1000.0
    st.subheader("When do you leave, and what do you need?")
    mode = st.radio(
        "I know",
        [NEED_ENERGY, NEED_MODEL, NEED_BATTERY],
        horizontal=True,
        key="resident_need",
        index=1 if session.get("ev_model") else 0,
    )
    with st.form("resident_input"):
        c1, c2 = st.columns(2)
        day = c1.date_input("Leaving on", value=local_departure.date(), key="resident_day")
        at = c2.time_input(
            "at", value=local_departure.time().replace(second=0, microsecond=0), key="resident_time"
        )
        model_key: str | None = None
        battery: float | None = None
        target_pct = 80.0
        soc_now: float | None = details.soc_pct
        energy_kwh: float | None = None
        if mode == NEED_ENERGY:
            current = session.get("energy_needed_wh")
            default_kwh = (
                float(current) / 1000.0
                if current is not None and not pd.isna(current)
                else site.default_energy_kwh
            )
            energy_kwh = st.number_input(
                "Energy for this session (kWh)",
                value=round(default_kwh, 1),
                step=1.0,
                format="%.1f",
                key="resident_kwh",
                help=f"In total, including the {delivered_kwh:.1f} kWh charged so far.",
            )
        else:
            if mode == NEED_MODEL:
                keys = sorted(CATALOGUE, key=lambda k: CATALOGUE[k].name)
                chosen = session.get("ev_model")
                model_key = st.selectbox(
                    "EV model",
                    keys,
                    index=keys.index(chosen) if chosen in keys else 0,
                    format_func=lambda k: CATALOGUE[k].name,
                    key="resident_model",
                )
            else:
                known = session.get("battery_kwh")
                battery = st.number_input(
                    "Usable battery (kWh)",
                    value=float(known) if known is not None and not pd.isna(known) else 60.0,
                    step=1.0,
                    format="%.1f",
                    key="resident_battery",
                )
            t = session.get("target_soc")
            target_pct = st.number_input(
                "Charge me to (%)",
                value=float(round(float(t) * 100)) if t is not None and not pd.isna(t) else 80.0,
                step=5.0,
                format="%.0f",
                key="resident_target",
            )
            if soc_now is None:
                soc_now = st.number_input(
                    "My battery is now at (%)",
                    value=40.0,
                    step=5.0,
                    format="%.0f",
                    key="resident_soc_now",
                    help="Your charger does not report the car's charge; read it in the car.",
                )
        if st.form_submit_button("Save", type="primary", key="resident_save"):
            try:
                values = _session_input(
                    mode,
                    departure=datetime.combine(day, at, zone),
                    now=now,
                    energy_kwh=energy_kwh,
                    model_key=model_key,
                    battery_kwh=battery,
                    target_pct=target_pct,
                    soc_now_pct=soc_now,
                    delivered_kwh=delivered_kwh,
                )
                writes.save_session_input(account, int(session["transaction_id"]), values, site_id)
            except ConfigError as exc:
                st.error(str(exc))
            else:
                need = values.get("energy_needed_wh")
                st.success(
                    "Saved: you leave "
                    f"{ui.fmt_time(values['departure_at'], tz)}"
                    + (f" and need {need / 1000:.1f} kWh in total." if need is not None else ".")
                )


def _session_input(
    mode: str,
    *,
    departure: datetime,
    now: datetime,
    energy_kwh: float | None,
    model_key: str | None,
    battery_kwh: float | None,
    target_pct: float,
    soc_now_pct: float | None,
    delivered_kwh: float,
) -> dict[str, Any]:
    """Check the form and turn it into `set_session_input` arguments."""
    if departure <= now:
        raise ConfigError("departure: that time has passed; pick when you will leave")
    if departure > now + timedelta(days=14):
        raise ConfigError("departure: at most 14 days ahead")
    values: dict[str, Any] = {"departure_at": departure}
    if mode == NEED_ENERGY:
        if energy_kwh is None or not 0 < energy_kwh <= MAX_BATTERY_KWH:
            raise ConfigError(f"energy: between 0 and {MAX_BATTERY_KWH:g} kWh, got {energy_kwh}")
        values["energy_needed_wh"] = energy_kwh * 1000.0
        return values
    if not 10 <= target_pct <= 100:
        raise ConfigError(f"target charge: 10-100 %, got {target_pct:g} %")
    if mode == NEED_MODEL:
        if model_key is None or model_key not in CATALOGUE:
            raise ConfigError(f"EV model: unknown model {model_key!r}")
        battery = CATALOGUE[model_key].battery_kwh
        values["ev_model"] = model_key
    else:
        if battery_kwh is None or not 1 <= battery_kwh <= MAX_BATTERY_KWH:
            raise ConfigError(f"battery: 1-{MAX_BATTERY_KWH:g} kWh, got {battery_kwh}")
        battery = battery_kwh
        values["battery_kwh"] = battery_kwh
    values["target_soc"] = target_pct / 100.0
    if soc_now_pct is not None:
        if not 0 <= soc_now_pct <= 100:
            raise ConfigError(f"battery now: 0-100 %, got {soc_now_pct:g} %")
        more = max(0.0, target_pct - soc_now_pct) / 100.0 * battery
        values["energy_needed_wh"] = (delivered_kwh + more) * 1000.0
    return values


def _notifications(
    account: Account, tx_id: int | None, tag: str | None, tz: str, scope: int | None
) -> None:
    st.subheader("Messages")
    if tx_id is None and tag is None:
        st.caption("No messages.")
        return
    notes = ui.run(
        queries.notifications(
            ui.store().sessionmaker,
            transaction_id=tx_id,
            id_tag=tag,
            limit=20,
            visible_to=account,
            site_id=scope,
        )
    )
    if notes.empty:
        st.caption("No messages yet: you hear from the load manager when your power changes.")
        return
    for r in records(notes):
        st.markdown(f"`{ui.fmt_time(r['created_at'], tz)}` {r['message']}")


if __name__ == "__main__":
    render()
