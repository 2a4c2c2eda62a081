"""Helpers every page shares: the cached store, error boxes, time zone and formatting."""

from __future__ import annotations

import math
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from csms.clock import ClockAnchor, utcnow
from csms.domain import SiteConfig
from csms.errors import ConfigError, GarageGridError
from csms.monitor.frames import records
from csms.monitor.store import MonitorStore
from csms.store import queries
from csms.store.engine import database_url

T = TypeVar("T")

NO_STATIONS = (
    "No station has connected yet — point a charger at `ws://HOST:9000/ocpp/<id>` "
    "(or add one on the **Stations** page first, with a password)."
)


@st.cache_resource(show_spinner=False, on_release=MonitorStore.close)
def _store_for(url: str) -> MonitorStore:
    return MonitorStore(url)


def store() -> MonitorStore:
    """The store of ``GARAGEGRID_DATABASE_URL`` (else the SQLite default), one per URL."""
    return _store_for(database_url())


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one store coroutine for this script run."""
    return store().run(coro)


def site() -> SiteConfig:
    return run(queries.site_settings(store().sessionmaker))


@contextmanager
def error_box() -> Iterator[None]:
    """Show GarageGrid errors (database gone, locked, bad input) as a red box."""
    try:
        yield
    except ConfigError as exc:
        st.error(str(exc), icon=":material/error:")
    except GarageGridError as exc:
        st.error(f"**The monitor cannot read the database.** {exc}", icon=":material/database:")


@st.cache_data(ttl=5, show_spinner=False)
def _clock_anchor(url: str) -> ClockAnchor | None:
    return _store_for(url).run(queries.clock_anchor(_store_for(url).sessionmaker))


def now() -> datetime:
    """The CSMS's time: the clock `csms serve` published (simulated when it runs with
    ``--speed``), else this computer's. One clock for the garage and the monitor."""
    try:
        anchor = _clock_anchor(database_url())
    except GarageGridError:
        anchor = None
    wall = utcnow()
    return anchor.at(wall) if anchor is not None else wall


def zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def fmt_time(value: Any, timezone: str, *, date: bool = True, seconds: bool = False) -> str:
    """A UTC time as the site's wall clock; '—' for nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "—"
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone(timezone))
    fmt = ("%Y-%m-%d " if date else "") + ("%H:%M:%S" if seconds else "%H:%M")
    return str(local.strftime(fmt))


def fmt_ago(value: Any, at: datetime) -> str:
    """'42 s ago', '5 min ago', '3 h ago', '2 d ago'."""
    if value is None or value is pd.NaT:
        return "never"
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    seconds = (at - value).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def localize_columns(frame: pd.DataFrame, columns: list[str], timezone: str) -> pd.DataFrame:
    """Copy with the given UTC columns as naive site-local times (for tables and CSV)."""
    out = frame.copy()
    for column in columns:
        if column in out:
            converted = pd.to_datetime(out[column], utc=True).dt.tz_convert(zone(timezone))
            out[column] = converted.dt.tz_localize(None)
    return out


def station_names(stations: pd.DataFrame) -> dict[str, str]:
    """'CP003 · Apartment A103' labels by station id."""
    return {
        str(r["id"]): (f"{r['id']} · {r['name']}" if r["name"] else str(r["id"]))
        for r in records(stations)
    }
