"""Altair charts of the monitor (pure: frames in, chart specs out).

Times are drawn as the site's wall clock whatever the browser's zone: the x field holds
the site-local wall time as epoch milliseconds *as if it were UTC*, and the x scale and
its labels are UTC. (A datetime column would reach Vega-Lite through Arrow and be shifted
into the browser's zone.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import altair as alt
import pandas as pd

from csms.domain import SiteConfig
from csms.monitor.frames import local_naive, site_phases, total_by_phase

Unit = Literal["kW", "A"]

FUSE_COLOUR = "#d62728"
MARGIN_COLOUR = "#ff7f0e"
BUILDING_COLOUR = "#6b6b6b"
IDLE_COLOUR = "#2ca02c"
LINE_SERIES = ("Fuse", "Fuse - margin", "Building load")
# A 20-station legend runs off the chart (and off a phone): the stations that drew most in
# the window get a colour each, the rest share one grey band.
TOP_STATIONS = 8
STATION_COLOURS = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
OTHERS_COLOUR = "#9d9d9d"


@dataclass(frozen=True)
class LoadChartData:
    """Long frames behind the load chart of one panel (all phases, or one)."""

    panel: str
    stack: pd.DataFrame  # time, at, station, value
    lines: pd.DataFrame  # time, at, series, value
    idle: pd.DataFrame  # time, at, used, budget
    legend: tuple[str, ...] = ()  # station labels in legend order, "Others (n)" last


def others_label(count: int) -> str:
    return f"Others ({count} stations)"


def legend_groups(
    energy: pd.Series[Any], top_n: int = TOP_STATIONS
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Which legend entry each station label falls under, and the legend's order.

    ``energy``: what each station (by label) drew in the window. Stations that drew
    nothing stay out of the legend (while any drew); the ``top_n`` that drew most are
    listed by name, the rest share "Others (n stations)" (only when n >= 2).
    """
    drew = energy[energy > 0] if (energy > 0).any() else energy
    ranked = drew.sort_values(ascending=False, kind="stable")
    if len(ranked) <= top_n + 1:
        top = sorted(str(s) for s in ranked.index)
        return {s: s for s in top}, tuple(top)
    top = sorted(str(s) for s in ranked.index[:top_n])
    others = others_label(len(ranked) - top_n)
    groups = {str(s): (str(s) if str(s) in top else others) for s in ranked.index}
    return groups, (*top, others)


def _time_axis(span_s: float) -> alt.X:
    # labelExpr: Streamlit's embed ignores axis.format for temporal fields (12-hour
    # default labels); utcFormat because the field holds wall time as if it were UTC.
    fmt = "%H:%M" if span_s <= 86400 else "%a %H:%M" if span_s <= 7 * 86400 else "%d %b"
    return alt.X(
        "time:T",
        title=None,
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(labelExpr=f"utcFormat(datum.value, '{fmt}')", labelOverlap=True),
    )


def _with_labels(frame: pd.DataFrame, timezone: str) -> pd.DataFrame:
    out = frame.copy()
    local = local_naive(out["time"], timezone)
    out["at"] = local.dt.strftime("%Y-%m-%d %H:%M")
    out["time"] = (local - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
    return out


def _span_s(frame: pd.DataFrame) -> float:
    """Span of a `_with_labels` frame's time field (epoch ms) in seconds."""
    if frame.empty:
        return 0.0
    return float(frame["time"].max() - frame["time"].min()) / 1000.0


def load_chart_data(
    draw: pd.DataFrame,
    building: pd.DataFrame,
    site: SiteConfig,
    *,
    unit: Unit,
    per_phase: bool,
    names: Mapping[str, str],
    top_stations: int = TOP_STATIONS,
) -> list[LoadChartData]:
    """The stacked station draw with the fuse, fuse - margin and building-load lines.

    kW: each station's power, against the fuse in kW (A x V x phases). A, not per phase:
    each station's current on the busiest supply phase of that instant, so the stack is
    that phase's load and the lines its limits. Per phase: one panel per supply phase.
    """
    phases = site_phases(site)
    v = site.voltage_v
    frame = draw.copy()
    frame["station"] = frame["charge_point_id"].map(lambda cp: names.get(cp, cp))
    groups, legend = legend_groups(frame.groupby("station")["power_w"].sum(), top_stations)
    frame["station"] = frame["station"].map(groups)
    frame = frame.dropna(subset=["station"])

    def stacked(values: pd.Series[Any]) -> pd.DataFrame:
        """One band per legend entry (the others summed)."""
        out = frame[["time", "station"]].assign(value=values)
        return out.groupby(["time", "station"], sort=False)["value"].sum().reset_index()

    totals = total_by_phase(draw).set_index("time")
    build = building.set_index("time")
    times = totals.index
    build = build.reindex(times)
    capacity = {p: site.fuse_limit_a - site.margin_a - build[p] for p in phases}

    def lines(fuse: float, margin: float, building_line: pd.Series[Any]) -> pd.DataFrame:
        parts = [
            pd.DataFrame({"time": times, "series": "Fuse", "value": fuse}),
            pd.DataFrame({"time": times, "series": "Fuse - margin", "value": fuse - margin}),
            pd.DataFrame(
                {"time": times, "series": "Building load", "value": building_line.to_numpy()}
            ).dropna(),
        ]
        return pd.concat([p for p in parts if len(p)], ignore_index=True)

    def idle(used: pd.Series[Any], budget: pd.Series[Any]) -> pd.DataFrame:
        out = pd.DataFrame({"time": times, "used": used.to_numpy(), "budget": budget.to_numpy()})
        out = out.dropna()
        out["budget"] = out[["used", "budget"]].max(axis=1)
        return out

    panels: list[LoadChartData] = []
    if per_phase:
        for p in phases:
            factor = v / 1000.0 if unit == "kW" else 1.0
            panels.append(
                LoadChartData(
                    panel=p,
                    stack=stacked(frame[p] * factor),
                    lines=lines(
                        site.fuse_limit_a * factor, site.margin_a * factor, build[p] * factor
                    ),
                    idle=idle(totals[p] * factor, capacity[p] * factor),
                    legend=legend,
                )
            )
        return panels
    if unit == "kW":
        n = len(phases)
        building_kw = build[list(phases)].sum(axis=1, min_count=len(phases)) * v / 1000.0
        used = totals["power_w"] / 1000.0
        budget = sum((capacity[p] for p in phases), pd.Series(0.0, index=times)) * v / 1000.0
        panels.append(
            LoadChartData(
                panel="all phases",
                stack=stacked(frame["power_w"] / 1000.0),
                lines=lines(
                    site.fuse_limit_a * v * n / 1000.0, site.margin_a * v * n / 1000.0, building_kw
                ),
                idle=idle(used, budget),
                legend=legend,
            )
        )
        return panels
    # A: the busiest supply phase at each instant (least capacity left).
    free = pd.DataFrame(
        {p: capacity[p].fillna(site.fuse_limit_a - site.margin_a) - totals[p] for p in phases}
    )
    busiest = free.idxmin(axis=1) if len(free) else pd.Series(dtype="object")
    pick = frame["time"].map(busiest)
    values = pd.Series(0.0, index=frame.index)
    for p in phases:
        values = values.where(pick != p, frame[p])
    lookup = pd.Series(busiest.to_numpy(), index=times)
    building_busiest = pd.Series(
        [build.at[t, lookup[t]] if len(lookup) else None for t in times], index=times
    ).astype("float64")
    used = pd.Series([totals.at[t, lookup[t]] for t in times], index=times).astype("float64")
    panels.append(
        LoadChartData(
            panel="busiest phase",
            stack=stacked(values),
            lines=lines(site.fuse_limit_a, site.margin_a, building_busiest),
            idle=idle(used, site.fuse_limit_a - site.margin_a - building_busiest),
            legend=legend,
        )
    )
    return panels


# The station legend goes under the chart, in as many columns as the width holds: beside
# it, it squeezes a phone's chart to a sliver. The three lines have no legend (a second one
# would not fit a phone); LINES_CAPTION says what they are, and their tooltips too.
LEGEND_COLUMN_PX = 190
LINES_CAPTION = (
    "Red line: the main fuse; orange dashes: fuse - safety margin; grey dots: the "
    "building's own load; green band: the idle power."
)


def _legend(entries: int) -> alt.Legend:
    return alt.Legend(
        orient="bottom",
        direction="vertical",
        columns=alt.ExprRef(f"clamp(floor(width / {LEGEND_COLUMN_PX}), 1, {entries})"),
        symbolLimit=entries,
        labelLimit=LEGEND_COLUMN_PX - 30,
    )


def _station_scale(legend: tuple[str, ...]) -> alt.Scale:
    if not legend:
        return alt.Scale(range=list(STATION_COLOURS))
    colours = [
        OTHERS_COLOUR if label.startswith("Others (") else STATION_COLOURS[i % len(STATION_COLOURS)]
        for i, label in enumerate(legend)
    ]
    return alt.Scale(domain=list(legend), range=colours)


def load_chart(
    panels: list[LoadChartData],
    *,
    unit: Unit,
    timezone: str,
    height: int = 320,
) -> list[alt.LayerChart]:
    """Per panel: stacked areas per station, the idle band up to the EV budget, and the
    site lines. One chart per panel, so that each stretches to the page and has a legend.
    """
    charts: list[alt.LayerChart] = []
    for data in panels:
        stack = _with_labels(data.stack, timezone)
        lines = _with_labels(data.lines, timezone)
        idle = _with_labels(data.idle, timezone)
        x = _time_axis(_span_s(stack))
        y_title = f"{unit} ({data.panel})"
        area = (
            alt.Chart(stack)
            .mark_area(interpolate="step-after", opacity=0.85)
            .encode(
                x=x,
                y=alt.Y("value:Q", stack="zero", title=y_title),
                color=alt.Color(
                    "station:N",
                    title="Station",
                    scale=_station_scale(data.legend),
                    legend=_legend(TOP_STATIONS + 1),
                ),
                order=alt.Order("station:N"),
                tooltip=[
                    alt.Tooltip("station:N", title="Station"),
                    alt.Tooltip("at:N", title="Time"),
                    alt.Tooltip("value:Q", title=unit, format=".1f"),
                ],
            )
        )
        band = (
            alt.Chart(idle)
            .mark_area(interpolate="step-after", color=IDLE_COLOUR, opacity=0.12)
            .encode(
                x=x,
                y=alt.Y("used:Q"),
                y2=alt.Y2("budget:Q"),
                tooltip=[
                    alt.Tooltip("at:N", title="Time"),
                    alt.Tooltip("used:Q", title=f"EVs ({unit})", format=".1f"),
                    alt.Tooltip("budget:Q", title=f"EV budget ({unit})", format=".1f"),
                ],
            )
        )
        rule = (
            alt.Chart(lines)
            .mark_line(interpolate="step-after", strokeWidth=2)
            .encode(
                x=x,
                y=alt.Y("value:Q"),
                color=alt.Color(
                    "series:N",
                    title="Limits",
                    scale=alt.Scale(
                        domain=list(LINE_SERIES),
                        range=[FUSE_COLOUR, MARGIN_COLOUR, BUILDING_COLOUR],
                    ),
                    legend=None,
                ),
                strokeDash=alt.StrokeDash(
                    "series:N",
                    scale=alt.Scale(domain=list(LINE_SERIES), range=[[1, 0], [6, 3], [2, 2]]),
                    legend=None,
                ),
                tooltip=[
                    alt.Tooltip("series:N", title="Line"),
                    alt.Tooltip("at:N", title="Time"),
                    alt.Tooltip("value:Q", title=unit, format=".1f"),
                ],
            )
        )
        layered: alt.LayerChart = (
            alt.layer(band, area, rule)
            .resolve_scale(color="independent")
            .properties(
                height=height,
                title=data.panel if len(panels) > 1 else "",
                # Only the width follows the page: the legend under the chart adds to the
                # height instead of squeezing the plot (a phone's legend is one column).
                autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
            )
        )
        charts.append(layered)
    return charts


def allocation_chart(frame: pd.DataFrame, timezone: str, *, height: int = 260) -> alt.LayerChart:
    """The controller's limit (step line) beside the current the car drew (area).

    ``frame``: time, limit_a, drawn_a.
    """
    data = _with_labels(frame, timezone)
    long = data.melt(id_vars=["time", "at"], value_vars=["limit_a", "drawn_a"], var_name="series")
    long["series"] = long["series"].map({"limit_a": "Limit sent", "drawn_a": "Drawn"})
    x = _time_axis(_span_s(data))
    drawn = (
        alt.Chart(long[long["series"] == "Drawn"])
        .mark_area(interpolate="step-after", opacity=0.5, color="#1f77b4")
        .encode(
            x=x,
            y=alt.Y("value:Q", title="A per phase"),
            tooltip=[alt.Tooltip("at:N", title="Time"), alt.Tooltip("value:Q", format=".1f")],
        )
    )
    limit = (
        alt.Chart(long[long["series"] == "Limit sent"].dropna())
        .mark_line(interpolate="step-after", color=FUSE_COLOUR, strokeWidth=2)
        .encode(
            x=x,
            y=alt.Y("value:Q"),
            tooltip=[alt.Tooltip("at:N", title="Time"), alt.Tooltip("value:Q", format=".1f")],
        )
    )
    return alt.LayerChart(layer=[drawn, limit], height=height)


def daily_energy_chart(
    daily: pd.DataFrame,
    names: Mapping[str, str],
    *,
    height: int = 260,
    top_stations: int = TOP_STATIONS,
) -> alt.Chart:
    """Energy per day, stacked by station. ``daily``: day, charge_point_id, energy_kwh.

    The same legend as the load chart: the stations that charged most, then the others.
    """
    data = daily.copy()
    data["station"] = data["charge_point_id"].map(lambda cp: names.get(cp, cp))
    groups, legend = legend_groups(data.groupby("station")["energy_kwh"].sum(), top_stations)
    data["station"] = data["station"].map(groups)
    data = data.dropna(subset=["station"])
    data = data.groupby(["day", "station"])["energy_kwh"].sum().reset_index()
    data["day"] = data["day"].astype("string")
    chart: alt.Chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("day:O", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("energy_kwh:Q", title="kWh", stack="zero"),
            color=alt.Color(
                "station:N",
                title="Station",
                scale=_station_scale(legend),
                legend=_legend(len(legend)),
            ),
            order=alt.Order("station:N"),
            tooltip=[
                alt.Tooltip("day:O", title="Day"),
                alt.Tooltip("station:N", title="Station"),
                alt.Tooltip("energy_kwh:Q", title="kWh", format=".1f"),
            ],
        )
        .properties(height=height, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
    )
    return chart


def monthly_energy_chart(per_month: pd.DataFrame, *, by_month: bool = False) -> alt.Chart:
    """Energy per resident as horizontal bars (names stay readable, 20 residents or 200),
    stacked by month; ``by_month``: one bar per month instead (a resident's own page).

    ``per_month``: month, resident, energy_kwh.
    """
    bars = "month" if by_month else "resident"
    count = int(per_month[bars].nunique())
    tooltip = [
        alt.Tooltip("month:O", title="Month"),
        alt.Tooltip("resident:N", title="Resident"),
        alt.Tooltip("energy_kwh:Q", title="kWh", format=".1f"),
    ]
    chart: alt.Chart = (
        alt.Chart(per_month)
        .mark_bar()
        .encode(
            y=alt.Y(f"{bars}:N", title=None, sort="ascending", axis=alt.Axis(labelLimit=180)),
            x=alt.X("energy_kwh:Q", title="kWh", stack="zero"),
            color=(
                alt.value(STATION_COLOURS[0])
                if by_month
                else alt.Color(
                    "month:O",
                    title="Month",
                    scale=alt.Scale(scheme="blues"),
                    legend=alt.Legend(orient="bottom"),
                )
            ),
            tooltip=tooltip,
        )
        .properties(
            height=max(60, 22 * count),
            autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
        )
    )
    return chart
