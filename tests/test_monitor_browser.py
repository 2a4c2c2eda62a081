"""The monitor in a real browser: `streamlit run` plus headless Chromium, role by role.

Starts ``streamlit run monitor_app.py`` on a free port over a seeded SQLite file (a
20-station garage with a manager, a viewer and two residents), logs in as each role at a
desktop width (1280 px) and a phone width (390 px), opens every page of that role's menu,
waits until it rendered (its chart, or its table or form), checks that no Streamlit
exception box or error is shown and that nothing is wider than the screen, and saves a
screenshot to ``test-artifacts/screenshots/<role>-<page>-<width>.png``. The browser runs
in another time zone than the site (Europe/Oslo) so that a chart drawn in the browser's
zone would show.
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

from csms.auth import Role
from csms.clock import ClockAnchor
from csms.monitor.pages import default_page, pages_for
from csms.store import migrate, queries
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker
from csms.store.repository import Repository
from csms.store.seed import seed_demo_data
from tests.test_monitor_apptest import (
    MANAGER,
    PASSWORDS,
    RITA,
    ROLES,
    ROLF,
    VIEWER,
    FixedClock,
    password_hash,
)

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

STATIONS = 20
CHART = ".vega-embed canvas, .vega-embed svg"
TABLE = '[data-testid="stDataFrame"]'
# page -> CSS selector that shows the page has rendered its main content.
PAGES = {
    "live": CHART,
    "history": CHART,
    "stations": TABLE,
    "sessions": CHART,
    "resident": '[data-testid="stSelectbox"]',
    "settings": '[data-testid="stForm"], [data-testid="stMarkdownContainer"] li',
    "audit": TABLE,
    "account": '[data-testid="stForm"]',
}
WIDTHS = {1280: 1600, 390: 2200}  # window width -> height (tall: the whole page in one shot)
PHONE_MAX_PX = 640
WHO = {Role.manager: MANAGER, Role.viewer: VIEWER, Role.resident: RITA}

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
        await seed_demo_data(sessionmaker, stations=STATIONS, days=3, start=END - timedelta(days=3))
        repo = Repository(sessionmaker, clock=FixedClock(END))
        running = await queries.sessions(sessionmaker, open_only=True)
        cars = [(str(r["charge_point_id"]), str(r["id_tag"])) for _, r in running.iterrows()]
        bindings = {RITA: cars[0], ROLF: cars[1]}
        for name in (MANAGER, VIEWER, RITA, ROLF):
            station, tag = bindings.get(name, (None, None))
            await repo.add_user(
                name,
                ROLES[name],
                password_hash(name),
                stations=[station] if station else [],
                tags=[tag] if tag else [],
            )
        # The garage's clock stands at END, whenever and wherever the test runs.
        await repo.publish_clock(ClockAnchor.frozen(END), "test")
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


def _screen(driver: WebDriver, width: int) -> None:
    """A desktop or a phone viewport of exactly ``width`` CSS px (a window cannot be made
    narrower than ~500 px; device emulation can, and reports a touch phone below 640)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": WIDTHS[width],
            "deviceScaleFactor": 1,
            "mobile": width < PHONE_MAX_PX,
        },
    )


def _settled(driver: WebDriver, selector: str) -> bool:
    """The page's content is there and Streamlit is no longer running the script."""
    if driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'):
        return True
    if not driver.find_elements(By.CSS_SELECTOR, selector):
        return False
    running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
    return not any("Running" in element.text for element in running)


def _wait(driver: WebDriver, selector: str, name: str) -> None:
    try:
        WebDriverWait(driver, RENDER_TIMEOUT_S, poll_frequency=0.5).until(
            lambda d: _settled(d, selector)
        )
    except TimeoutException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"{name}-timeout.png"))
        raise


def _shot(driver: WebDriver, name: str) -> None:
    time.sleep(1.0)  # let Vega finish its first paint before the screenshot
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def _no_error_shown(driver: WebDriver) -> None:
    boxes = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not boxes, boxes[0].text
    errors = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]')
    assert not errors, errors[0].text
    assert "Page not found" not in driver.page_source


def _fits_the_screen(driver: WebDriver) -> None:
    """Nothing makes the page scroll sideways (tables scroll inside their own frame)."""
    overflow = driver.execute_script(
        "const main = document.querySelector('[data-testid=\"stMain\"]');"
        "return [main.scrollWidth, main.clientWidth];"
    )
    assert overflow[0] <= overflow[1] + 1, overflow


def _log_in(driver: WebDriver, base: str, name: str) -> None:
    driver.get(base)
    _wait(driver, 'input[aria-label="Name"]', "login")
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Name"]').send_keys(name)
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Password"]').send_keys(PASSWORDS[name])
    driver.find_element(By.CSS_SELECTOR, '[data-testid="stBaseButton-primaryFormSubmit"]').click()
    WebDriverWait(driver, RENDER_TIMEOUT_S, poll_frequency=0.5).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
            or d.find_elements(By.CSS_SELECTOR, '[data-testid="stExpandSidebarButton"]')
        )
    )


def _menu(driver: WebDriver, base: str) -> list[str]:
    """The pages in the navigation by URL path ('' for the landing page), opening the
    sidebar first on a phone."""
    links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
    if not any(link.is_displayed() for link in links):
        driver.find_element(By.CSS_SELECTOR, '[data-testid="stExpandSidebarButton"]').click()
        WebDriverWait(driver, 10).until(
            lambda d: any(
                link.is_displayed()
                for link in d.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
            )
        )
        links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
    return [str(link.get_attribute("href")).removeprefix(base).strip("/") for link in links]


def _open(driver: WebDriver, base: str, page: str, landing: str) -> None:
    menu = _menu(driver, base)
    links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
    path = "" if page == landing else page
    links[menu.index(path)].click()
    WebDriverWait(driver, RENDER_TIMEOUT_S).until(
        lambda d: d.current_url.rstrip("/") == f"{base}/{path}".rstrip("/")
    )
    time.sleep(0.5)  # the rerun for the new page starts
    # On a phone the menu covers the page: close it, as a person would.
    close = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarCollapseButton"] button')
    phone = driver.execute_script("return window.innerWidth") < PHONE_MAX_PX
    if phone and close and close[0].is_displayed():
        close[0].click()


def test_the_login_page_is_all_there_is_without_an_account(
    monitor_url: str, browser: WebDriver
) -> None:
    for width in WIDTHS:
        _screen(browser, width)
        browser.get(f"{monitor_url}/settings")
        _wait(browser, 'input[aria-label="Name"]', f"login-{width}")
        _shot(browser, f"login-{width}")
        _no_error_shown(browser)
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
        assert not browser.find_elements(By.CSS_SELECTOR, TABLE)
        # The toolbar is minimal: no Deploy button.
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAppDeployButton"]')


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("role", list(WHO), ids=lambda r: r.value)
def test_every_page_of_each_role_renders_in_chromium(
    monitor_url: str, browser: WebDriver, role: Role, width: int
) -> None:
    """Each page of the role's menu shows its chart (or table, or form), no exception or
    error box, nothing wider than the screen; the menu holds that role's pages only."""
    _screen(browser, width)
    _log_in(browser, monitor_url, WHO[role])
    landing = default_page(role)
    _wait(browser, PAGES[landing], f"{role.value}-landing-{width}")
    expected = sorted((p.name for p in pages_for(role)), key=lambda name: name != landing)
    assert _menu(browser, monitor_url) == ["" if p == landing else p for p in expected]
    for page in expected:
        _open(browser, monitor_url, page, landing)
        name = f"{role.value}-{page}-{width}"
        _wait(browser, PAGES[page], name)
        _shot(browser, name)
        _no_error_shown(browser)
        _fits_the_screen(browser)


def test_a_bookmarked_page_opens_after_the_login_or_says_not_allowed(
    monitor_url: str, browser: WebDriver
) -> None:
    """A URL opened without a session shows the login, then that page: the Stations page
    for a manager; for a resident a refusal (audited), never the page."""
    _screen(browser, 1280)
    for who, allowed in ((MANAGER, True), (RITA, False)):
        browser.get(f"{monitor_url}/stations")
        _wait(browser, 'input[aria-label="Name"]', "bookmark-login")
        browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Name"]').send_keys(who)
        browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Password"]').send_keys(
            PASSWORDS[who]
        )
        browser.find_element(
            By.CSS_SELECTOR, '[data-testid="stBaseButton-primaryFormSubmit"]'
        ).click()
        expected = TABLE if allowed else '[data-testid="stAlertContentError"]'
        _wait(browser, expected, f"bookmark-{who}")
        _shot(browser, f"bookmark-stations-{ROLES[who].value}-1280")
        assert "Page not found" not in browser.page_source
        if not allowed:
            assert (
                "Not allowed"
                in browser.find_element(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]').text
            )
            assert not browser.find_elements(By.CSS_SELECTOR, TABLE)
