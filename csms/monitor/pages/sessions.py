"""Sessions & energy: every charging session, energy per resident and month, and its cost.

A resident sees only their own sessions (at their stations or with their tags, filtered in
the query), with the same filters and downloads.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import pandas as pd
import streamlit as st

from csms.auth import Account, Role
from csms.monitor import access, charts, frames, ui
from csms.store import queries

ALL = "All"


def _months(span: tuple[datetime, datetime] | None, tz: str) -> list[str]:
    if span is None:
        return []
    zone = ui.zone(tz)
    first = span[0].astimezone(zone).replace(day=1)
    last = span[1].astimezone(zone)
    months = pd.period_range(first.strftime("%Y-%m"), last.strftime("%Y-%m"), freq="M")
    return [str(p) for p in reversed(months)]


def _month_range(month: str, tz: str) -> tuple[datetime, datetime]:
    period = pd.Period(month, freq="M")
    zone = ui.zone(tz)
    start = datetime.combine(period.start_time.date(), time(0), zone)
    end = datetime.combine((period + 1).start_time.date(), time(0), zone)
    return start, end


def render() -> None:
    account = access.page_account("sessions")
    st.title("My sessions" if account.role is Role.resident else "Sessions & energy")
    with ui.error_box():
        _render(account, access.page_site(account))


def _stamp(value: Any) -> str:
    """A naive site-local time from `ui.localize_columns` as text; '–' for nothing."""
    return ui.EMPTY if ui.is_empty(value) else f"{value:%Y-%m-%d %H:%M}"


def _render(account: Account, view: ui.SiteView) -> None:
    store = ui.store()
    sm = store.sessionmaker
    site = view.site
    tz = site.timezone
    scope = view.scope
    everything = account.sees_everything
    stations = ui.run(queries.stations(sm, scope))
    tags = ui.run(queries.id_tags(sm, scope))
    if everything:
        months = _months(ui.run(queries.session_months(sm, scope)), tz)
    else:
        mine = ui.run(queries.sessions(sm, visible_to=account, site_id=scope))
        span = (
            (mine["started_at"].min().to_pydatetime(), mine["started_at"].max().to_pydatetime())
            if len(mine)
            else None
        )
        months = _months(span, tz)
    if not months:
        if everything:
            message = "No charging session yet. " + (
                ui.NO_STATIONS if stations.empty else "They appear here when cars plug in."
            )
        else:
            message = "You have no charging session yet. Your sessions appear here once you charge."
        st.info(message, icon=":material/receipt_long:")
        return
    names = ui.station_names(stations)
    if everything:
        c1, c2, c3 = st.columns(3)
        residents = sorted({str(o) for o in tags["owner"].dropna()})
        resident = c1.selectbox("Resident", [ALL, *residents], key="sessions_resident")
        choices = list(names)
    else:
        c2, c3 = st.columns(2)
        resident = ALL
        choices = sorted(cp for cp in names if cp in account.stations)
    station = c2.selectbox(
        "Station",
        [ALL, *choices],
        format_func=lambda cp: cp if cp == ALL else names.get(cp, cp),
        key="sessions_station",
    )
    month = c3.selectbox("Month", [ALL, *months], key="sessions_month")
    start, end = _month_range(month, tz) if month != ALL else (None, None)
    frame = ui.run(
        queries.sessions(
            sm,
            start=start,
            end=end,
            station_id=None if station == ALL else station,
            owner=None if resident == ALL else resident,
            visible_to=account,
            site_id=scope,
        )
    )
    price = site.price_per_kwh
    priced = price > 0
    energy_kwh = float(frame["energy_wh"].fillna(0).sum()) / 1000.0
    m1, m2, m3 = st.columns(3)
    m1.metric(
        "Sessions",
        f"{len(frame)}",
        help="Charging sessions started in the chosen month (all months: every one).",
    )
    m2.metric(
        "Energy",
        f"{energy_kwh:,.1f} kWh",
        help="Metered energy of these sessions; a running one counts what it has drawn so far.",
    )
    m3.metric(
        "Cost",
        f"{energy_kwh * price:,.2f} {site.currency}" if priced else "no price set",
        help=(
            f"Energy x {price:g} {site.currency}/kWh (the price on the Settings page)."
            if priced
            else "No price per kWh is set (Settings page), so no cost is worked out."
        ),
    )
    table = ui.localize_columns(frame, ["started_at", "stopped_at", "departure_at"], tz)
    table = table.assign(
        station=table["charge_point_id"].map(lambda cp: names.get(cp, cp)),
        energy_kwh=(table["energy_wh"] / 1000.0).round(3),
        cost=(table["energy_wh"].fillna(0) / 1000.0 * price).round(2),
    )
    columns = [
        "transaction_id",
        "station",
        "owner",
        "id_tag",
        "started_at",
        "stopped_at",
        "energy_kwh",
        *(["cost"] if priced else []),
        "stop_reason",
        "departure_at",
        "ev_model",
    ]
    shown = pd.DataFrame(
        {
            "Tx": table["transaction_id"],
            "Station": table["station"],
            "Resident": table["owner"].map(ui.text),
            "Tag": table["id_tag"].map(ui.text),
            "Started": table["started_at"].map(_stamp),
            "Stopped": [
                "charging" if running else _stamp(at)
                for running, at in zip(table["open"], table["stopped_at"], strict=True)
            ],
            "kWh": table["energy_kwh"].map(lambda v: ui.number(v, "{:.2f}")),
            **(
                {f"Cost {site.currency}": table["cost"].map(lambda v: ui.number(v, "{:.2f}"))}
                if priced
                else {}
            ),
            "Stop reason": table["stop_reason"].map(ui.text),
            "Departure": table["departure_at"].map(_stamp),
            "EV": table["ev_model"].map(ui.text),
        }
    )
    ui.table(shown, right=("kWh", f"Cost {site.currency}"))
    st.caption(f"Times in site time ({tz}); a running session counts what it has drawn so far.")
    st.download_button(
        "Sessions (CSV)",
        table[[*columns, "charge_point_id", "meter_start_wh", "meter_stop_wh"]]
        .to_csv(index=False)
        .encode(),
        file_name="garagegrid-sessions.csv",
        mime="text/csv",
        key="sessions_csv",
    )

    st.subheader("Energy per resident and month" if everything else "Energy per month")
    per_month = frames.energy_per_resident_month(frame, tz, price)
    if per_month.empty:
        st.caption("No session matches the filters.")
        return
    if not priced:
        per_month = per_month.drop(columns="cost")
    st.altair_chart(
        charts.monthly_energy_chart(per_month, by_month=not everything), width="stretch"
    )
    st.dataframe(
        per_month,
        hide_index=True,
        width="stretch",
        column_config={
            "month": "Month",
            "resident": "Resident",
            "sessions": "Sessions",
            "energy_kwh": st.column_config.NumberColumn("kWh", format="%.2f"),
            "cost": st.column_config.NumberColumn(f"Cost {site.currency}", format="%.2f"),
        },
    )
    if not priced:
        st.caption("No price per kWh is set (Settings page): energy only, no cost.")
    bookkeeping = (
        per_month.assign(price_per_kwh=price, currency=site.currency) if priced else per_month
    )
    st.download_button(
        "Energy per resident and month (CSV, for bookkeeping)"
        if everything
        else "Energy per month (CSV)",
        bookkeeping.to_csv(index=False).encode(),
        file_name="garagegrid-energy-per-resident.csv",
        mime="text/csv",
        key="resident_month_csv",
    )


if __name__ == "__main__":
    render()
