"""Live: what each station draws now, against the fuse, refreshed every 2 s."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from csms.ev import CATALOGUE
from csms.monitor import access, charts, frames, ui
from csms.monitor.outlook import session_outlook
from csms.store import queries

REFRESH_S = 2.0
WINDOWS_MIN = {"15 min": 15, "60 min": 60}
# Buckets of about 120 points per window; chargers sample every 10-60 s.
BUCKET_S = {15: 15, 60: 30}


def _window(newest: datetime | None, now: datetime, minutes: int) -> tuple[datetime, bool]:
    """Where the window ends: now, or the newest sample when the data is elsewhere.

    A simulated clock (the thesis ran 100x) or a garage gone quiet puts the newest meter
    value outside "the last 15 minutes"; then the page follows the data and says so.
    """
    if newest is None:
        return now, False
    if newest > now + timedelta(minutes=1) or newest < now - timedelta(minutes=minutes):
        return newest + timedelta(seconds=1), True
    return now, False


def _kpis(
    site_tz: str,
    draw_now: dict[str, float],
    power_kw: float,
    headroom: frames.Headroom,
    outlooks: list[Any],
    open_count: int,
    energy_today_kwh: float,
) -> None:
    charging = sum(1 for o in outlooks if o.drawing)
    missing = [o for o in outlooks if o.will_miss]
    cols = st.columns(5)
    cols[0].metric(
        "Cars charging",
        f"{charging}",
        help=f"Cars drawing power now; {open_count} plugged in (some full or paused).",
    )
    cols[1].metric(
        "Total",
        f"{power_kw:.1f} kW",
        help="What all cars draw together now, from the chargers' latest readings.",
    )
    cols[2].metric(
        "Idle power",
        f"{headroom.idle_kw:.1f} kW",
        help=(
            "Power the cars could still draw without tripping the main fuse: fuse - "
            "safety margin - the building's own load - what the cars draw, summed over "
            "the phases (the green band in the chart). Busiest phase "
            f"{headroom.busiest_phase}: {headroom.free_on_busiest_a:.1f} A free."
        ),
    )
    cols[3].metric(
        "Energy today",
        f"{energy_today_kwh:.0f} kWh" if energy_today_kwh >= 100 else f"{energy_today_kwh:.1f} kWh",
        help="Charged by all stations since midnight, site time.",
    )
    cols[4].metric(
        "Will miss departure",
        f"{len(missing)}",
        help="Cars that will not get what they need before they leave at today's rate.",
    )
    phases = " · ".join(
        f"{p}: {headroom.load_a[p]:.0f} of {headroom.capacity_a[p]:.0f} A" for p in headroom.load_a
    )
    building = "" if headroom.building_known else " (no building-load reading)"
    st.caption(f"EVs per phase against fuse - margin - building load{building}: {phases}")


@st.fragment(run_every=REFRESH_S)
def live_panel(view: ui.SiteView, minutes: int, unit: charts.Unit, per_phase: bool) -> None:
    # The panel refreshes itself; it stops (and the login page shows) when the session ends.
    if not access.still_logged_in(view.site_id):
        return
    with ui.error_box():
        _live_panel(view, minutes, unit, per_phase)


def _live_panel(view: ui.SiteView, minutes: int, unit: charts.Unit, per_phase: bool) -> None:
    store = ui.store()
    sm = store.sessionmaker
    site = view.settings()
    scope = view.scope
    stations = ui.run(queries.stations(sm, scope))
    if stations.empty:
        st.info(ui.NO_STATIONS, icon=":material/ev_station:")
        return
    now = ui.now()
    newest = ui.run(queries.newest_sample_at(sm, scope))
    end, followed = _window(newest, now, minutes)
    start = end - timedelta(minutes=minutes)
    bucket_s = BUCKET_S[minutes]
    ids = [str(x) for x in stations["id"]]
    samples = ui.run(queries.sample_buckets(sm, start, end, bucket_s, station_ids=ids))
    draw = frames.draw_from_samples(
        samples, stations, start=start, end=end, bucket_s=bucket_s, voltage_v=site.voltage_v
    )
    index = frames.bucket_index(start, end, bucket_s)
    building = frames.building_per_bucket(
        ui.run(
            queries.building_load_buckets(
                sm, start - timedelta(hours=1), end, bucket_s, site_id=view.site_id
            )
        ),
        index,
        site.building_load_max_age_s,
    )
    totals = frames.total_by_phase(draw)
    last = totals.iloc[-1] if len(totals) else None
    draw_now = {p: float(last[p]) for p in ("L1", "L2", "L3")} if last is not None else {}
    building_last = building.dropna()
    building_now = (
        {p: float(building_last.iloc[-1][p]) for p in ("L1", "L2", "L3")}
        if len(building_last)
        else None
    )
    headroom = frames.headroom(site, draw_now, building_now)
    power_kw = float(last["power_w"]) / 1000.0 if last is not None else 0.0

    open_sessions = ui.run(queries.open_session_readings(sm, scope))
    outlooks = [session_outlook(row, site, end, CATALOGUE) for row in frames.records(open_sessions)]
    midnight = datetime.combine(end.astimezone(ui.zone(site.timezone)).date(), datetime.min.time())
    midnight_utc = midnight.replace(tzinfo=ui.zone(site.timezone))
    today = ui.run(queries.energy_buckets(sm, midnight_utc, end, 2 * 86400, site_id=scope))
    energy_today_kwh = float(today["energy_wh"].sum()) / 1000.0

    if followed:
        st.warning(
            f"No meter values in the last {minutes} min: showing the {minutes} min up to "
            f"the newest one ({ui.fmt_time(newest, site.timezone)}, site time). No car is "
            "charging, or the chargers have gone quiet.",
            icon=":material/schedule:",
        )
    _kpis(
        site.timezone,
        draw_now,
        power_kw,
        headroom,
        outlooks,
        len(open_sessions),
        energy_today_kwh,
    )
    names = ui.station_names(stations)
    if newest is None:
        st.info(
            "No meter values yet. Stations are registered; the chart fills as soon as a car "
            "charges and its charger sends MeterValues.",
            icon=":material/query_stats:",
        )
    panels = charts.load_chart_data(
        draw, building, site, unit=unit, per_phase=per_phase, names=names
    )
    for chart in charts.load_chart(
        panels, unit=unit, timezone=site.timezone, height=220 if per_phase else 360
    ):
        st.altair_chart(chart, width="stretch")
    st.caption(
        f"Updated {ui.fmt_time(now, site.timezone, date=False, seconds=True)} (site time, "
        f"{site.timezone}); {bucket_s} s buckets. {charts.LINES_CAPTION}"
    )
    _charging_table(open_sessions, outlooks, names, site.timezone)


def _charging_table(
    open_sessions: pd.DataFrame, outlooks: list[Any], names: dict[str, str], tz: str
) -> None:
    if open_sessions.empty:
        st.caption("No car is plugged in.")
        return
    rows = []
    for row, o in zip(frames.records(open_sessions), outlooks, strict=True):
        rows.append(
            {
                "Station": names.get(str(row["charge_point_id"]), row["charge_point_id"]),
                "Resident": ui.text(row["owner"] or row["id_tag"]),
                "kW": ui.number(o.rate_w / 1000.0 if o.drawing else 0.0),
                "Limit A": ui.number(row["limit_a"]),
                "SoC %": ui.number(row["soc_pct"], "{:.0f}"),
                "Charged kWh": ui.number(o.delivered_wh / 1000.0),
                "Needs kWh": ui.number(o.remaining_wh / 1000.0),
                "Leaves": ui.fmt_time(o.departure_at, tz)
                + (" (default)" if o.departure_is_default else ""),
                "Full at": ui.fmt_time(o.full_at, tz) if o.full_at else "not at this rate",
                "On time": "no" if o.will_miss else "yes",
            }
        )
    ui.table(pd.DataFrame(rows), right=("kW", "Limit A", "SoC %", "Charged kWh", "Needs kWh"))


def render() -> None:
    account = access.page_account("live")
    st.title("Live load")
    with ui.error_box():
        view = access.page_site(account)
        c1, c2, c3 = st.columns([2, 2, 2])
        window = c1.segmented_control(
            "Window", list(WINDOWS_MIN), default="15 min", key="live_window"
        )
        unit = c2.segmented_control("Unit", ["kW", "A"], default="kW", key="live_unit")
        per_phase = c3.toggle("Per phase", key="live_per_phase")
        live_panel(view, WINDOWS_MIN[window or "15 min"], "A" if unit == "A" else "kW", per_phase)


if __name__ == "__main__":
    render()
