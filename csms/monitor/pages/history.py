"""History: the load chart from stored meter values, daily energy and peaks, limits vs draw."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from csms.monitor import access, charts, frames, ui
from csms.store import queries

# Daily figures need whole hours, so buckets never exceed one hour (720 for 30 days).
MAX_BUCKET_S = 3600
CACHE_TTL_S = 30


@st.cache_data(ttl=CACHE_TTL_S, show_spinner="Reading meter values…", max_entries=16)
def _energy(
    url: str,
    start: datetime,
    end: datetime,
    bucket_s: int,
    stations: tuple[str, ...] | None,
    site_id: int | None,
) -> pd.DataFrame:
    store = ui.store()
    assert store.url == url
    return store.run(
        queries.energy_buckets(
            store.sessionmaker, start, end, bucket_s, station_ids=stations, site_id=site_id
        )
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner="Reading phase currents…", max_entries=8)
def _currents(
    url: str,
    start: datetime,
    end: datetime,
    bucket_s: int,
    stations: tuple[str, ...] | None,
    site_id: int | None,
) -> pd.DataFrame:
    store = ui.store()
    assert store.url == url
    return store.run(
        queries.sample_buckets(
            store.sessionmaker,
            start,
            end,
            bucket_s,
            station_ids=stations,
            measurands=(queries.CURRENT,),
            site_id=site_id,
        )
    )


def _range(tz: str) -> tuple[datetime, datetime] | None:
    today = ui.now().astimezone(ui.zone(tz)).date()
    picked = st.date_input(
        "Date or range",
        value=(today - timedelta(days=6), today),
        max_value=today + timedelta(days=1),
        key="history_range",
        help="Pick one day, or a first and a last day (site time).",
    )
    days: list[date] = list(picked) if isinstance(picked, tuple | list) else [picked]
    days = [d for d in days if isinstance(d, date)]
    if not days:
        return None
    first, last = min(days), max(days)
    zone = ui.zone(tz)
    start = datetime.combine(first, time(0), zone)
    end = datetime.combine(last + timedelta(days=1), time(0), zone)
    return start, end


def _hourly(energy: pd.DataFrame) -> pd.DataFrame:
    if energy.empty:
        return energy
    frame = energy.copy()
    frame["time"] = pd.to_datetime(frame["time"], utc=True).dt.floor("h")
    return frame.groupby(["time", "charge_point_id"])["energy_wh"].sum().reset_index()


def render() -> None:
    account = access.page_account("history")
    st.title("History")
    with ui.error_box():
        _render(access.page_site(account))


def _render(view: ui.SiteView) -> None:
    store = ui.store()
    sm = store.sessionmaker
    site = view.site
    tz = site.timezone
    scope = view.scope
    stations = ui.run(queries.stations(sm, scope))
    if stations.empty:
        st.info(ui.NO_STATIONS, icon=":material/ev_station:")
        return
    names = ui.station_names(stations)
    c1, c2, c3, c4 = st.columns([4, 3, 2, 2])
    with c1:
        picked = _range(tz)
    chosen = c2.multiselect(
        "Stations",
        list(names),
        format_func=lambda cp: names[cp],
        key="history_stations",
        placeholder="All stations",
    )
    unit = c3.segmented_control("Unit", ["kW", "A"], default="kW", key="history_unit")
    per_phase = c4.toggle("Per phase", key="history_per_phase")
    if picked is None:
        st.info("Pick a day or a range.")
        return
    start, end = picked
    bucket_s = min(MAX_BUCKET_S, queries.choose_bucket_s(end - start, max_points=400))
    selected = stations[stations["id"].isin(chosen)] if chosen else stations
    ids = tuple(str(x) for x in selected["id"]) if chosen else None
    energy = _energy(store.url, start, end, bucket_s, ids, scope)
    need_currents = unit == "A" or per_phase
    currents = _currents(store.url, start, end, bucket_s, ids, scope) if need_currents else None
    draw = frames.draw_from_energy(
        energy,
        selected,
        start=start,
        end=end,
        bucket_s=bucket_s,
        voltage_v=site.voltage_v,
        currents=currents,
    )
    index = frames.bucket_index(start, end, bucket_s)
    building = frames.building_per_bucket(
        ui.run(queries.building_load_buckets(sm, start, end, bucket_s, view.site_id)), index
    )
    total_kwh = float(energy["energy_wh"].sum()) / 1000.0 if len(energy) else 0.0
    peak_kw = float(frames.total_by_phase(draw)["power_w"].max() or 0.0) / 1000.0
    m1, m2, m3 = st.columns(3)
    m1.metric(
        "Energy",
        f"{total_kwh:,.1f} kWh",
        help="Metered by the chosen stations over the chosen days (energy registers).",
    )
    m2.metric(
        "Peak",
        f"{peak_kw:.1f} kW",
        help=f"The highest {bucket_s // 60}-minute average of all cars together.",
    )
    m3.metric(
        "Resolution",
        f"{bucket_s // 60} min" if bucket_s >= 60 else f"{bucket_s} s",
        help="Each point of the chart averages this long; a shorter range shows more detail.",
    )
    if total_kwh == 0:
        st.info(
            "No energy was metered in this range. Pick another range, or wait until cars "
            "have charged.",
            icon=":material/query_stats:",
        )
    panels = charts.load_chart_data(
        draw,
        building,
        site,
        unit="A" if unit == "A" else "kW",
        per_phase=per_phase,
        names=names,
    )
    for chart in charts.load_chart(
        panels, unit="A" if unit == "A" else "kW", timezone=tz, height=220 if per_phase else 340
    ):
        st.altair_chart(chart, width="stretch")
    st.caption(
        f"Average power per {bucket_s // 60} min from the energy registers, site time ({tz}). "
        + (
            "A: each station's current on the busiest phase of that moment. "
            if unit == "A" and not per_phase
            else ""
        )
        + charts.LINES_CAPTION
    )
    _daily(energy, names, tz)
    _allocations(sm, selected, names, draw, start, end, bucket_s, tz)
    _downloads(draw, names, tz, start, end, bucket_s)


def _daily(energy: pd.DataFrame, names: dict[str, str], tz: str) -> None:
    st.subheader("Daily energy and peak per station")
    daily = frames.daily_summary(_hourly(energy), tz)
    if daily.empty:
        st.caption("Nothing metered in this range.")
        return
    st.altair_chart(charts.daily_energy_chart(daily, names), width="stretch")
    per_station = (
        daily.groupby("charge_point_id", as_index=False)
        .agg(
            energy_kwh=("energy_kwh", "sum"),
            peak_kw=("peak_kw", "max"),
            days_charged=("energy_kwh", lambda s: int((s > 0.1).sum())),
        )
        .round({"energy_kwh": 1, "peak_kw": 1})
    )
    per_station.insert(1, "station", per_station["charge_point_id"].map(names))
    st.dataframe(
        per_station.drop(columns="charge_point_id"),
        hide_index=True,
        width="stretch",
        column_config={
            "station": "Station",
            "energy_kwh": st.column_config.NumberColumn("Energy kWh", format="%.1f"),
            "peak_kw": st.column_config.NumberColumn(
                "Peak hour kW", format="%.1f", help="Highest hourly energy (kWh/h) of a day"
            ),
            "days_charged": "Days charged",
        },
    )
    with st.expander("Per day"):
        table = daily.assign(station=daily["charge_point_id"].map(names)).round(
            {"energy_kwh": 2, "peak_kw": 2}
        )[["day", "station", "energy_kwh", "peak_kw"]]
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button(
            "Daily energy (CSV)",
            table.to_csv(index=False).encode(),
            file_name="garagegrid-daily-energy.csv",
            mime="text/csv",
            key="history_daily_csv",
        )


def _allocations(
    sm: queries.SessionMaker,
    selected: pd.DataFrame,
    names: dict[str, str],
    draw: pd.DataFrame,
    start: datetime,
    end: datetime,
    bucket_s: int,
    tz: str,
) -> None:
    st.subheader("Limits sent beside what the car drew")
    ids = [str(x) for x in selected["id"]]
    station = st.selectbox(
        "Station", ids, format_func=lambda cp: names.get(cp, cp), key="history_alloc_station"
    )
    if station is None or station not in ids:
        return
    limits = ui.run(queries.allocation_buckets(sm, station, start, end, bucket_s))
    mine = draw[draw["charge_point_id"] == station]
    drawn = pd.DataFrame(
        {"time": mine["time"], "drawn_a": mine[["L1", "L2", "L3"]].max(axis=1)}
    ).set_index("time")
    if len(limits):
        limit_series = limits.set_index("time")["limit_a"]
        limit_series = limit_series[~limit_series.index.duplicated(keep="last")]
        combined = drawn.join(
            limit_series.reindex(drawn.index.union(limit_series.index)).ffill().reindex(drawn.index)
        )
    else:
        combined = drawn.assign(limit_a=float("nan"))
    if combined["limit_a"].isna().all():
        st.caption("The controller sent this station no limit in this range.")
    st.altair_chart(charts.allocation_chart(combined.reset_index(), tz), width="stretch")
    st.caption(
        "Red: the highest limit the controller sent in each interval (A per phase); blue: "
        "the average current on the station's busiest phase."
    )


def _downloads(
    draw: pd.DataFrame,
    names: dict[str, str],
    tz: str,
    start: datetime,
    end: datetime,
    bucket_s: int,
) -> None:
    table = draw.assign(
        station=draw["charge_point_id"].map(names),
        kw=(draw["power_w"] / 1000.0).round(3),
        kwh=(draw["power_w"] * bucket_s / 3_600_000.0).round(4),
    )
    table = ui.localize_columns(table, ["time"], tz)
    table = table[["time", "charge_point_id", "station", "kw", "kwh", "L1", "L2", "L3"]].round(
        {"L1": 2, "L2": 2, "L3": 2}
    )
    label = f"{start.astimezone(ui.zone(tz)):%Y%m%d}-{end.astimezone(ui.zone(tz)):%Y%m%d}"
    st.download_button(
        "Load per station (CSV)",
        table.to_csv(index=False).encode(),
        file_name=f"garagegrid-load-{label}.csv",
        mime="text/csv",
        key="history_load_csv",
        help=f"Average kW, kWh and A per phase per {bucket_s // 60} min, site time ({tz}).",
    )


if __name__ == "__main__":
    render()
