"""Sessions & energy: every charging session, energy per resident and month, and its cost."""

from __future__ import annotations

from datetime import datetime, time

import pandas as pd
import streamlit as st

from csms.monitor import charts, frames, ui
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
    st.title("Sessions & energy")
    with ui.error_box():
        _render()


def _render() -> None:
    store = ui.store()
    sm = store.sessionmaker
    site = ui.site()
    tz = site.timezone
    stations = ui.run(queries.stations(sm))
    tags = ui.run(queries.id_tags(sm))
    months = _months(ui.run(queries.session_months(sm)), tz)
    if not months:
        st.info(
            "No charging session yet. "
            + (ui.NO_STATIONS if stations.empty else "They appear here when cars plug in."),
            icon=":material/receipt_long:",
        )
        return
    names = ui.station_names(stations)
    residents = sorted({str(o) for o in tags["owner"].dropna()})
    c1, c2, c3 = st.columns(3)
    resident = c1.selectbox("Resident", [ALL, *residents], key="sessions_resident")
    station = c2.selectbox(
        "Station",
        [ALL, *names],
        format_func=lambda cp: cp if cp == ALL else names[cp],
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
        )
    )
    price = site.price_per_kwh
    energy_kwh = float(frame["energy_wh"].fillna(0).sum()) / 1000.0
    m1, m2, m3 = st.columns(3)
    m1.metric("Sessions", f"{len(frame)}")
    m2.metric("Energy", f"{energy_kwh:,.1f} kWh")
    m3.metric(
        "Cost",
        f"{energy_kwh * price:,.2f} {site.currency}",
        help=f"At {price:g} {site.currency}/kWh (Settings page)",
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
        "cost",
        "stop_reason",
        "departure_at",
        "ev_model",
    ]
    st.dataframe(
        table[columns],
        hide_index=True,
        width="stretch",
        column_config={
            "transaction_id": st.column_config.NumberColumn("Tx", format="%d"),
            "station": "Station",
            "owner": "Resident",
            "id_tag": "Tag",
            "started_at": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm"),
            "stopped_at": st.column_config.DatetimeColumn("Stopped", format="YYYY-MM-DD HH:mm"),
            "energy_kwh": st.column_config.NumberColumn("kWh", format="%.2f"),
            "cost": st.column_config.NumberColumn(f"Cost {site.currency}", format="%.2f"),
            "stop_reason": "Stop reason",
            "departure_at": st.column_config.DatetimeColumn("Departure", format="YYYY-MM-DD HH:mm"),
            "ev_model": "EV",
        },
    )
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

    st.subheader("Energy per resident and month")
    per_month = frames.energy_per_resident_month(frame, tz, price)
    if per_month.empty:
        st.caption("No session matches the filters.")
        return
    st.altair_chart(charts.monthly_energy_chart(per_month), width="stretch")
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
    st.download_button(
        "Energy per resident and month (CSV, for bookkeeping)",
        per_month.assign(price_per_kwh=price, currency=site.currency).to_csv(index=False).encode(),
        file_name="garagegrid-energy-per-resident.csv",
        mime="text/csv",
        key="resident_month_csv",
    )


if __name__ == "__main__":
    render()
