"""Helpers every page shares: the cached store, error boxes, clocks, time zone and formatting.

Two clocks: `now` is the garage's (the CSMS's, simulated in a sped-up demo) and dates
everything about charging; `wall_now` is real time and dates what people do (sessions,
lockouts, the audit log), so that a 60x demo does not end a login after 30 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from csms.auth import AccessDeniedError
from csms.clock import ClockAnchor, utcnow
from csms.domain import SiteConfig
from csms.errors import ConfigError, GarageGridError
from csms.monitor.frames import records
from csms.monitor.store import MonitorStore
from csms.store import queries
from csms.store.engine import database_url
from csms.store.repository import Repository

T = TypeVar("T")

# What an empty cell, metric or time shows (never "None" or "nan").
EMPTY = "–"

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


@dataclass(frozen=True)
class SiteView:
    """The site a page shows (`csms.monitor.access.page_site`): its settings, and how the
    page's reads and writes keep to it."""

    site: SiteConfig
    # The deployment has more than one site.
    several: bool = False

    @property
    def site_id(self) -> int:
        return self.site.site_id

    @property
    def scope(self) -> int | None:
        """The site filter of a read. None on a single-site install: the whole store is
        the site, so its reads stay as they were before sites (no filter)."""
        return self.site_id if self.several else None

    @property
    def repo(self) -> Repository:
        """The store seen from this site (`Repository.for_site`)."""
        return store().repo.for_site(self.site_id)

    def settings(self) -> SiteConfig:
        """The site's settings read afresh (a page that refreshes itself)."""
        return run(queries.site_settings(store().sessionmaker, self.site_id))


@contextmanager
def error_box() -> Iterator[None]:
    """Show GarageGrid errors (database gone, locked, bad input) as a red box."""
    try:
        yield
    except AccessDeniedError as exc:
        st.error(f"Not allowed: {exc}.", icon=":material/block:")
    except ConfigError as exc:
        st.error(str(exc), icon=":material/error:")
    except GarageGridError as exc:
        st.error(f"**The monitor cannot read the database.** {exc}", icon=":material/database:")


@st.cache_data(ttl=5, show_spinner=False)
def _clock_anchor(url: str) -> ClockAnchor | None:
    return _store_for(url).run(queries.clock_anchor(_store_for(url).sessionmaker))


# Real time for sessions, lockouts and the audit log; tests replace it (never the hour).
wall_clock: Callable[[], datetime] = utcnow


def wall_now() -> datetime:
    """Real time, for what people do (see the module docstring)."""
    return wall_clock()


def clock_speed() -> float:
    """How fast the garage's clock runs against real time (1 without a published clock)."""
    try:
        anchor = _clock_anchor(database_url())
    except GarageGridError:
        return 1.0
    return 1.0 if anchor is None else anchor.speed


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
    """A UTC time as the site's wall clock; '–' for nothing."""
    if is_empty(value):
        return EMPTY
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone(timezone))
    fmt = ("%Y-%m-%d " if date else "") + ("%H:%M:%S" if seconds else "%H:%M")
    return str(local.strftime(fmt))


def is_empty(value: Any) -> bool:
    """None, NaN, NaT or pandas' NA."""
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def text(value: Any) -> str:
    """A cell as text; '–' for nothing."""
    return EMPTY if is_empty(value) or value == "" else str(value)


def number(value: Any, fmt: str = "{:.1f}") -> str:
    """A number for a table or metric; '–' for nothing."""
    return EMPTY if is_empty(value) else fmt.format(float(value))


def table(
    frame: pd.DataFrame,
    *,
    right: tuple[str, ...] = (),
    column_config: dict[str, Any] | None = None,
) -> None:
    """A read-only table whose numbers were formatted as text ('–' for nothing): the
    ``right`` columns aligned like numbers."""
    config: dict[str, Any] = {
        c: st.column_config.TextColumn(c, alignment="right") for c in right if c in frame
    }
    st.dataframe(
        frame, hide_index=True, width="stretch", column_config=config | (column_config or {})
    )


def fmt_ago(value: Any, at: datetime) -> str:
    """'42 s ago', '5 min ago', '3 h ago', '2 d ago'."""
    if is_empty(value):
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
