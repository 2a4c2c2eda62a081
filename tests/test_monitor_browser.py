"""The monitor in a real browser: `streamlit run` plus headless Chromium, page by page.

Starts ``streamlit run monitor_app.py`` on a free port over a seeded SQLite file, opens
each page, waits until it rendered (its chart, or its table or form), checks that no
Streamlit exception box is shown, and saves a screenshot to
``test-artifacts/screenshots/<page>.png``. The browser runs in another time zone than the
site (Europe/Oslo) so that a chart drawn in the browser's zone would show.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from csms.clock import ClockAnchor
from csms.store import migrate
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker
from csms.store.repository import Repository
from csms.store.seed import seed_demo_data

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_TZ = "America/New_York"
# A Wednesday evening with cars plugged in (the resident page shows one of them).
END = datetime(2026, 1, 14, 18, 35, tzinfo=UTC)
START_TIMEOUT_S = 60
RENDER_TIMEOUT_S = 60

# page URL path -> CSS selector that shows the page has rendered its main content.
PAGES = {
    "live": ".vega-embed canvas, .vega-embed svg",
    "history": ".vega-embed canvas, .vega-embed svg",
    "stations": '[data-testid="stDataFrame"]',
    "sessions": ".vega-embed canvas, .vega-embed svg",
    "resident": '[data-testid="stMetric"]',
    "settings": '[data-testid="stForm"]',
}

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "needs Debian chromium and chromium-driver (make test-deps)", allow_module_level=True
    )

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _seed(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        await seed_demo_data(sessionmaker, stations=8, days=3, start=END - timedelta(days=3))
        # The garage's clock stands at END, whenever and wherever the test runs.
        await Repository(sessionmaker).publish_clock(ClockAnchor.frozen(END), "test")
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def monitor_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("monitor")
    db_url = f"sqlite+aiosqlite:///{directory / 'garagegrid.db'}"
    asyncio.run(_seed(db_url))
    port = _free_port()
    log = (directory / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "monitor_app.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=os.environ | {DATABASE_URL_ENV: db_url},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(
                    "streamlit did not start:\n" + (directory / "streamlit.log").read_text()
                )
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1500,1400",
    ):
        options.add_argument(argument)
    service = Service(str(CHROMEDRIVER), env=os.environ | {"TZ": BROWSER_TZ})
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _settled(driver: WebDriver, selector: str) -> bool:
    """The page's content is there and Streamlit is no longer running the script."""
    if driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'):
        return True
    if not driver.find_elements(By.CSS_SELECTOR, selector):
        return False
    running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
    return not any("Running" in element.text for element in running)


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_in_chromium(monitor_url: str, browser: WebDriver, page: str) -> None:
    """Each page shows its chart (or table, or form) and no exception box."""
    path = "" if page == "live" else page  # the default page lives at /
    browser.get(f"{monitor_url}/{path}")
    try:
        WebDriverWait(browser, RENDER_TIMEOUT_S, poll_frequency=0.5).until(
            lambda d: _settled(d, PAGES[page])
        )
    except TimeoutException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"{page}-timeout.png"))
        raise
    time.sleep(1.0)  # let Vega finish its first paint before the screenshot
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{page}.png"))
    boxes = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not boxes, boxes[0].text
    errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]')
    assert not errors, errors[0].text
    assert "Page not found" not in browser.page_source
