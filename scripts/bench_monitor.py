"""How fast is the monitor's History page on a month of a large garage?

    .venv/bin/python scripts/bench_monitor.py [--stations 50] [--days 30] [--db PATH]
                                              [--explain] [--no-page] [--browser]
                                              [--database-url postgresql+asyncpg://...]

Seeds ``--days`` x ``--stations`` into a SQLite file (kept with --db, reused when it
already has data; an older schema is migrated first, and the time that took printed) or
into the database --database-url names, then times the queries behind the History page
over the page's window (site-local midnights), from the hourly rollups and from the raw
samples, with --explain each query's plan (SQLite: EXPLAIN QUERY PLAN; PostgreSQL:
EXPLAIN ANALYZE, which runs it once more); then the whole page run (Streamlit AppTest:
queries, pandas, chart spec) over the full range, cold and cached, and with --browser
the time until headless Chromium has drawn the chart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csms.store import migrate, queries  # noqa: E402
from csms.store import models as m  # noqa: E402
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker  # noqa: E402
from csms.store.seed import seed_demo_data  # noqa: E402


async def prepare(url: str, stations: int, days: int) -> datetime:
    engine = create_engine(url)
    try:
        began = time.perf_counter()
        before = await migrate.current_revision(engine)
        await migrate.upgrade(engine)
        after = await migrate.current_revision(engine)
        if before is not None and before != after:
            # An existing database: the migrations ran on its rows (0010 builds the rollups).
            print(f"migrate {before} -> {after}: {time.perf_counter() - began:.1f} s")
        sm = create_sessionmaker(engine)
        n = await Repository_count(sm)
        if n == 0:
            end = datetime.now(UTC).replace(second=0, microsecond=0)
            began = time.perf_counter()
            summary = await seed_demo_data(
                sm, stations=stations, days=days, start=end - timedelta(days=days)
            )
            print(
                f"seed: {summary.stations} stations x {days} days, {summary.transactions} "
                f"sessions, {summary.meter_samples:,} meter samples in "
                f"{time.perf_counter() - began:.1f} s"
            )
        newest = await queries.newest_sample_at(sm)
        assert newest is not None
        return newest
    finally:
        await engine.dispose()


async def Repository_count(sm: queries.SessionMaker) -> int:  # noqa: N802 - one-off helper
    from sqlalchemy import func, select

    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(m.ChargePoint))).scalar_one())


async def page_window(url: str, newest: datetime, days: int) -> tuple[datetime, datetime]:
    """The History page's window for the last ``days`` days: site-local midnights."""
    engine = create_engine(url)
    try:
        zone = ZoneInfo((await queries.site_settings(create_sessionmaker(engine))).timezone)
    finally:
        await engine.dispose()
    last = newest.astimezone(zone).date()
    start = datetime.combine(last - timedelta(days=days - 1), dt_time(0), zone)
    return start, datetime.combine(last + timedelta(days=1), dt_time(0), zone)


async def time_queries(url: str, start: datetime, end: datetime, explain: bool) -> None:
    engine = create_engine(url)
    sm = create_sessionmaker(engine)
    bucket = min(3600, queries.choose_bucket_s(end - start))
    print(f"window {start.isoformat()} .. {end.isoformat()}, buckets of {bucket} s")
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        statements.append((statement, params))

    try:
        for name, make in (
            ("energy_buckets (rollups)", lambda: queries.energy_buckets(sm, start, end, bucket)),
            (
                "sample_buckets (currents, rollups)",
                lambda: queries.sample_buckets(
                    sm, start, end, bucket, measurands=(queries.CURRENT,)
                ),
            ),
            (
                "energy_buckets (samples)",
                lambda: queries.energy_buckets(sm, start, end, bucket, rollups=False),
            ),
            (
                "sample_buckets (currents, samples)",
                lambda: queries.sample_buckets(
                    sm, start, end, bucket, measurands=(queries.CURRENT,), rollups=False
                ),
            ),
            (
                "building_load_buckets",
                lambda: queries.building_load_buckets(sm, start, end, bucket),
            ),
            (
                "allocation_buckets (one station)",
                lambda: queries.allocation_buckets(sm, "CP001", start, end, bucket),
            ),
        ):
            statements.clear()
            began = time.perf_counter()
            frame = await make()
            print(f"  {name}: {time.perf_counter() - began:.2f} s, {len(frame):,} rows")
            if explain:
                await _explain(engine, statements)
    finally:
        await engine.dispose()


async def _explain(engine: Any, statements: list[tuple[str, Any]]) -> None:
    """Each SELECT the query ran, explained (SQLite: EXPLAIN QUERY PLAN; PostgreSQL:
    EXPLAIN ANALYZE, which runs it again)."""
    sqlite = engine.dialect.name == "sqlite"
    for statement, params in list(statements):
        if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
            continue
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ANALYZE "
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if sqlite:
                cursor = await driver.execute(prefix + statement, params)
                rows = await cursor.fetchall()
                for row in rows:
                    print(f"      {'  ' * _depth(rows, row)}{row[-1]}")
            else:
                for row in await driver.fetch(prefix + statement, *params):
                    print(f"      {row[0]}")


def _depth(rows: list[Any], row: Any) -> int:
    parents = {r[0]: r[1] for r in rows}
    depth, parent = 0, row[1]
    while parent in parents:
        depth, parent = depth + 1, parents[parent]
    return depth


def time_page(url: str, start: datetime, end: datetime) -> None:
    os.environ[DATABASE_URL_ENV] = url
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.test_monitor_apptest import log_in_as_manager

    at = AppTest.from_file(str(ROOT / "monitor_app.py"), default_timeout=300)
    at.run()
    # The monitor asks for a login first (a manager account is made if missing).
    log_in_as_manager(at, "history")
    first = start.date()
    last = (end - timedelta(days=1)).date()
    days = (last - first).days + 1
    for label, per_phase in (("kW", False), ("per phase", True)):
        st.cache_data.clear()
        at.toggle(key="history_per_phase").set_value(per_phase)
        began = time.perf_counter()
        at.date_input(key="history_range").set_value((first, last)).run()
        cold = time.perf_counter() - began
        assert not at.exception, [e.value for e in at.exception]
        began = time.perf_counter()
        at.run()
        warm = time.perf_counter() - began
        charts = len(at.get("vega_lite_chart"))
        print(
            f"  History page, {days} days, {label}: {cold:.2f} s cold, {warm:.2f} s cached "
            f"({charts} charts)"
        )


def time_browser(url: str) -> None:
    import socket
    import urllib.request

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "monitor_app.py"),
         "--server.headless", "true", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        env=os.environ | {DATABASE_URL_ENV: url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp()}",
                     "--window-size=1500,1400"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        began = time.perf_counter()
        driver.get(f"http://127.0.0.1:{port}/history")
        WebDriverWait(driver, 120).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, .vega-embed svg")
        )
        print(f"  browser, History default range (7 days): {time.perf_counter() - began:.2f} s")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument(
        "--database-url", help="instead of a SQLite file, e.g. postgresql+asyncpg://u@h/db"
    )
    parser.add_argument("--browser", action="store_true")
    parser.add_argument(
        "--explain", action="store_true", help="print each query's plan (SQLite EXPLAIN QUERY PLAN)"
    )
    parser.add_argument("--no-page", action="store_true", help="time the queries only")
    args = parser.parse_args()
    path = args.db or Path(tempfile.mkdtemp()) / "bench.db"
    url = args.database_url or f"sqlite+aiosqlite:///{path}"
    newest = asyncio.run(prepare(url, args.stations, args.days))
    start, end = asyncio.run(page_window(url, newest, args.days))
    print(f"queries over {args.days} days (the page's window, site time):")
    asyncio.run(time_queries(url, start, end, args.explain))
    if not args.no_page:
        time_page(url, start, end)
    if args.browser:
        time_browser(url)


if __name__ == "__main__":
    main()
