"""Pure pandas: from meter buckets to what each station draws, per supply phase.

No Streamlit, no database. The central frame is a *draw* frame, one row per bucket and
station: ``time, charge_point_id, L1, L2, L3`` (A on each supply phase of the fuse) and
``power_w``. A charger labels phases from its own point of view; its ``wiring`` (``L2``
for a one-phase unit on L2, ``L2L3L1`` for a rotated three-phase one) maps them onto the
supply phases the fuse sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from csms.domain import PHASES, SiteConfig
from csms.store.queries import CURRENT, POWER

DRAW_COLUMNS = ["time", "charge_point_id", "L1", "L2", "L3", "power_w"]


def wiring_phases(wiring: str | None, phases: int | None = None) -> list[str]:
    """Supply phases a station is wired to, in the station's own phase order."""
    text = (wiring or "L1L2L3").upper()
    parts = [text[i : i + 2] for i in range(0, len(text), 2) if text[i : i + 2] in PHASES]
    if not parts:
        parts = list(PHASES[: phases or 3])
    return parts


def supply_phase(wiring: str | None, charger_phase: str | None) -> str | None:
    """The supply phase behind a charger's phase label (``L2-N`` counts as ``L2``)."""
    if not charger_phase or not charger_phase.startswith("L") or len(charger_phase) < 2:
        return None
    index = ord(charger_phase[1]) - ord("1")
    parts = wiring_phases(wiring)
    return parts[index] if 0 <= index < len(parts) else None


def bucket_index(start: datetime, end: datetime, bucket_s: int) -> pd.DatetimeIndex:
    """Every bucket start in [start, end), aligned like the SQL buckets (epoch multiples)."""
    first = math.floor(start.timestamp() / bucket_s) * bucket_s
    last = math.ceil(end.timestamp() / bucket_s) * bucket_s
    epochs = np.arange(first, last, bucket_s, dtype="int64")
    return pd.DatetimeIndex(pd.to_datetime(epochs, unit="s", utc=True), name="time")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts keyed by column name."""
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _station_info(stations: pd.DataFrame) -> dict[str, tuple[str, int]]:
    return {
        str(r["id"]): (str(r["wiring"] or ""), int(r["phases"] or 3)) for r in records(stations)
    }


def _complete(
    draw: pd.DataFrame,
    index: pd.DatetimeIndex,
    station_ids: Sequence[str],
    hold_buckets: int,
) -> pd.DataFrame:
    """Every bucket x station; gaps carried forward ``hold_buckets``, then 0."""
    value_columns = ["L1", "L2", "L3", "power_w"]
    if not station_ids or len(index) == 0:
        return pd.DataFrame(columns=DRAW_COLUMNS)
    full = pd.MultiIndex.from_product([index, list(station_ids)], names=["time", "cp"])
    wide = draw.set_index(["time", "charge_point_id"])[value_columns]
    wide.index = wide.index.set_names(["time", "cp"])
    wide = wide[~wide.index.duplicated()].reindex(full)
    if hold_buckets > 0:
        wide = wide.groupby(level="cp", sort=False).ffill(limit=hold_buckets)
    wide = wide.fillna(0.0).astype("float64")
    out = wide.reset_index().rename(columns={"cp": "charge_point_id"})
    return out[DRAW_COLUMNS]


def draw_from_samples(
    samples: pd.DataFrame,
    stations: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    bucket_s: int,
    voltage_v: float,
    hold_s: float = 180.0,
) -> pd.DataFrame:
    """The draw frame from sampled power and current (the live page).

    Current per phase wins where it was sampled; a station that reports only power is
    taken to draw evenly on its phases, one that reports only current draws V x sum(A).
    A bucket without samples repeats the last one for up to ``hold_s`` (chargers sample
    every 10-60 s), then counts as 0.
    """
    info = _station_info(stations)
    index = bucket_index(start, end, bucket_s)
    hold = int(hold_s // bucket_s)
    rows: dict[tuple[Any, str], dict[str, float]] = {}
    for r in records(samples):
        cp = str(r["charge_point_id"])
        if cp not in info:
            continue
        wiring, n = info[cp]
        entry = rows.setdefault((r["time"], cp), {})
        if r["measurand"] == POWER:
            entry["power_w"] = float(r["avg"])
        elif r["measurand"] == CURRENT:
            if r["phase"] is None:
                # No phase: the same current on every phase of the station.
                for phase in wiring_phases(wiring, n):
                    entry.setdefault(phase, float(r["avg"]))
            else:
                supply = supply_phase(wiring, str(r["phase"]))
                if supply is not None:
                    entry[supply] = float(r["avg"])
    out: list[dict[str, Any]] = []
    for (time, cp), entry in rows.items():
        wiring, n = info[cp]
        phases = wiring_phases(wiring, n)
        has_current = any(p in entry for p in PHASES)
        power = entry.get("power_w")
        if not has_current and power is not None:
            for p in phases:
                entry[p] = power / (voltage_v * len(phases))
        if power is None:
            entry["power_w"] = voltage_v * sum(entry.get(p, 0.0) for p in PHASES)
        out.append(
            {
                "time": time,
                "charge_point_id": cp,
                "L1": entry.get("L1", 0.0),
                "L2": entry.get("L2", 0.0),
                "L3": entry.get("L3", 0.0),
                "power_w": entry["power_w"],
            }
        )
    draw = pd.DataFrame(out, columns=DRAW_COLUMNS)
    return _complete(draw, index, list(info), hold)


def draw_from_energy(
    energy: pd.DataFrame,
    stations: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    bucket_s: int,
    voltage_v: float,
    currents: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The draw frame from energy per bucket (history): average power = energy / time.

    The current per phase splits that power in the proportions the current samples of
    the bucket show (``currents``, from `sample_buckets`), which catches a one-phase car
    on a three-phase station; without them the power is spread evenly over the phases.
    Vectorised: a month of 50 stations is tens of thousands of buckets.
    """
    info = _station_info(stations)
    index = bucket_index(start, end, bucket_s)
    frame = energy[energy["charge_point_id"].astype(str).isin(list(info))].copy()
    frame["charge_point_id"] = frame["charge_point_id"].astype(str)
    frame["power_w"] = frame["energy_wh"].astype("float64") * 3600.0 / bucket_s
    # Even split over each station's wired phases ...
    even = pd.DataFrame(
        [
            {"charge_point_id": cp, **{p: (1.0 / len(ph) if p in ph else 0.0) for p in PHASES}}
            for cp, ph in ((cp, wiring_phases(*info[cp])) for cp in info)
        ],
        columns=["charge_point_id", *PHASES],
    )
    share = frame[["time", "charge_point_id"]].merge(even, on="charge_point_id", how="left")
    # ... unless the bucket's current samples show another one.
    if currents is not None and len(currents):
        measured = currents[
            (currents["measurand"] == CURRENT)
            & currents["phase"].notna()
            & currents["charge_point_id"].astype(str).isin(list(info))
        ].copy()
        measured["charge_point_id"] = measured["charge_point_id"].astype(str)
        lookup = {
            (cp, ph): supply_phase(info[cp][0], str(ph))
            for cp, ph in measured[["charge_point_id", "phase"]]
            .drop_duplicates()
            .itertuples(index=False, name=None)
        }
        measured["supply"] = [
            lookup[(cp, ph)]
            for cp, ph in zip(measured["charge_point_id"], measured["phase"], strict=True)
        ]
        measured = measured[measured["supply"].notna()]
        measured["avg"] = measured["avg"].astype("float64").clip(lower=0.0)
        wide = measured.pivot_table(
            index=["time", "charge_point_id"], columns="supply", values="avg", aggfunc="sum"
        ).reindex(columns=list(PHASES), fill_value=0.0)
        wide = wide.fillna(0.0)
        totals = wide.sum(axis=1)
        wide = wide[totals > 0].div(totals[totals > 0], axis=0).reset_index()
        share = share.merge(wide, on=["time", "charge_point_id"], how="left", suffixes=("", "_m"))
        for p in PHASES:
            share[p] = share[f"{p}_m"].where(share[f"{p}_m"].notna(), share[p])
        share = share[["time", "charge_point_id", *PHASES]]
    amps = frame["power_w"].to_numpy() / voltage_v
    draw = frame[["time", "charge_point_id", "power_w"]].reset_index(drop=True)
    for p in PHASES:
        draw[p] = share[p].to_numpy() * amps
    return _complete(draw[DRAW_COLUMNS], index, list(info), 0)


def building_per_bucket(
    building: pd.DataFrame, index: pd.DatetimeIndex, max_age_s: float | None = None
) -> pd.DataFrame:
    """Building load per phase on the chart's buckets (last reading carried forward).

    Columns: time, L1, L2, L3 (A). Buckets before the first reading, or further than
    ``max_age_s`` after the last one, are NaN: unknown, not zero.
    """
    out = pd.DataFrame(index=index, columns=list(PHASES), dtype="float64")
    if len(building) and len(index):
        frame = (
            building.rename(columns={"l1_a": "L1", "l2_a": "L2", "l3_a": "L3"})
            .drop_duplicates("time", keep="last")
            .set_index("time")
            .sort_index()[list(PHASES)]
        )
        frame.index = pd.DatetimeIndex(frame.index)
        combined = frame.reindex(frame.index.union(index)).ffill()
        if max_age_s is not None:
            reading_at = pd.Series(frame.index, index=frame.index).reindex(combined.index).ffill()
            age = (combined.index.to_series() - reading_at).dt.total_seconds()
            combined[age > max_age_s] = np.nan
        out = combined.reindex(index)
    out.index.name = "time"
    return out.reset_index()


@dataclass(frozen=True)
class Headroom:
    """What the EVs may still take now (the thesis's 'idle power')."""

    capacity_a: dict[str, float]  # fuse - margin - building, per supply phase
    load_a: dict[str, float]  # EV draw per supply phase
    free_a: dict[str, float]  # capacity - load, per phase (negative = over)
    idle_kw: float  # sum of free power over the phases, never below 0 per phase
    busiest_phase: str
    building_known: bool

    @property
    def free_on_busiest_a(self) -> float:
        return self.free_a[self.busiest_phase]


def site_phases(site: SiteConfig) -> tuple[str, ...]:
    return PHASES[: max(1, min(3, site.phases))]


def headroom(
    site: SiteConfig, draw_now: dict[str, float], building_now: dict[str, float] | None
) -> Headroom:
    """Capacity, load and idle power at one instant."""
    phases = site_phases(site)
    building = building_now or {}
    capacity = {
        p: site.fuse_limit_a - site.margin_a - float(building.get(p, 0.0) or 0.0) for p in phases
    }
    load = {p: float(draw_now.get(p, 0.0)) for p in phases}
    free = {p: capacity[p] - load[p] for p in phases}
    busiest = min(phases, key=lambda p: free[p])
    idle_kw = sum(max(0.0, free[p]) for p in phases) * site.voltage_v / 1000.0
    return Headroom(capacity, load, free, idle_kw, busiest, building_now is not None)


def total_by_phase(draw: pd.DataFrame) -> pd.DataFrame:
    """EV draw summed over stations per bucket: time, L1, L2, L3, power_w."""
    if draw.empty:
        return pd.DataFrame(columns=["time", "L1", "L2", "L3", "power_w"])
    return draw.groupby("time", as_index=False)[["L1", "L2", "L3", "power_w"]].sum()


def local_naive(series: pd.Series[Any], timezone: str) -> pd.Series[Any]:
    """Site wall-clock time without a zone, for charts that must not use the browser's."""
    converted = pd.to_datetime(series, utc=True).dt.tz_convert(timezone)
    return converted.dt.tz_localize(None)


def daily_summary(energy_hourly: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """Energy and peak-hour power per station and local day from hourly energy.

    Peak = the highest hourly energy of the day in kWh/h, i.e. the average kW of the
    busiest hour (how Norwegian capacity tariffs measure it). Columns: day,
    charge_point_id, energy_kwh, peak_kw.
    """
    columns = ["day", "charge_point_id", "energy_kwh", "peak_kw"]
    if energy_hourly.empty:
        return pd.DataFrame(columns=columns)
    frame = energy_hourly.copy()
    frame["day"] = pd.to_datetime(frame["time"], utc=True).dt.tz_convert(timezone).dt.date
    frame["kwh"] = frame["energy_wh"] / 1000.0
    grouped = frame.groupby(["day", "charge_point_id"], as_index=False).agg(
        energy_kwh=("kwh", "sum"), peak_kw=("kwh", "max")
    )
    return grouped[columns]


def energy_per_resident_month(
    sessions: pd.DataFrame, timezone: str, price_per_kwh: float
) -> pd.DataFrame:
    """Energy and cost per resident and local month (by session start).

    Columns: month (YYYY-MM), resident, sessions, energy_kwh, cost.
    """
    columns = ["month", "resident", "sessions", "energy_kwh", "cost"]
    if sessions.empty:
        return pd.DataFrame(columns=columns)
    frame = sessions.copy()
    local = pd.to_datetime(frame["started_at"], utc=True).dt.tz_convert(timezone)
    frame["month"] = local.dt.strftime("%Y-%m")
    frame["resident"] = frame["owner"].fillna(frame["id_tag"])
    frame["kwh"] = frame["energy_wh"].fillna(0.0) / 1000.0
    grouped = frame.groupby(["month", "resident"], as_index=False).agg(
        sessions=("transaction_id", "count"), energy_kwh=("kwh", "sum")
    )
    grouped["energy_kwh"] = grouped["energy_kwh"].round(3)
    grouped["cost"] = (grouped["energy_kwh"] * price_per_kwh).round(2)
    return grouped.sort_values(["month", "resident"], ascending=[False, True])[columns]
