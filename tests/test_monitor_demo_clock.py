"""The demo's clock: `csms serve --speed 60` with virtual chargers, and the monitor on it.

What ``make demo`` runs, at a small scale (the thesis's four stations): the CSMS on a
simulated clock that starts at a fixed instant and runs 60x, the virtual garage on the
same clock, and the monitor's Live page read with AppTest while the data flows. The Live
page must show current data (no "No meter values in the last 15 min" warning), its
"Updated" time must be the garage's (next to the newest meter value, not this computer's
time), and no station may be "last seen in the future".

The CSMS and the chargers map real seconds to simulated ones from a fixed start; the
monitor maps them through the clock the CSMS published. Nothing here depends on the hour.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from streamlit.testing.v1 import AppTest

from csms.store import migrate, queries
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.test_monitor_apptest import (
    APP,
    MANAGER,
    TIMEOUT_S,
    FakeWall,
    FixedClock,
    install_wall,
    log_in,
    page_path,
    password_hash,
    release_stores,
    texts,
)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SPEED = 60
CLOCK_START = datetime.fromisoformat("2026-01-05T16:00:00+02:00")
KEY = "demo-clock-test-key-0123"
# Real seconds: the CSMS answers /healthz, then the garage has charged for a while.
START_TIMEOUT_S = 30
# 10 simulated minutes of charging: several MeterValues per car (one a simulated minute).
CHARGED_SIM = timedelta(minutes=10)
FLOW_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def wall(monkeypatch: pytest.MonkeyPatch) -> FakeWall:
    """Sessions and the audit run on a fixed clock; the garage's time is the CSMS's."""
    return install_wall(monkeypatch)


@pytest.fixture(autouse=True)
def _release_stores() -> Iterator[None]:
    yield
    release_stores()


def _run(url: str, fn: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            return await fn(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A running 60x demo garage; yields its database URL."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    env = os.environ | {DATABASE_URL_ENV: url}
    subprocess.run(
        [BIN / "csms", "provision", "--scenario", "thesis", "--site", "--password", KEY],
        env=env,
        check=True,
        capture_output=True,
    )
    _run(
        url,
        lambda sm: Repository(sm, clock=FixedClock(CLOCK_START)).add_user(
            MANAGER, "manager", password_hash(MANAGER)
        ),
    )
    port = _free_port()
    clock = ["--speed", str(SPEED), "--clock-start", CLOCK_START.isoformat()]
    logs = (tmp_path / "csms.log").open("wb"), (tmp_path / "chargers.log").open("wb")
    csms = subprocess.Popen(
        [BIN / "csms", "serve", "--host", "127.0.0.1", "--port", str(port), *clock],
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    chargers: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if json.loads(r.read())["status"] == "ok":
                        break
            except OSError:
                pass
            assert csms.poll() is None and time.monotonic() < deadline, (
                tmp_path / "csms.log"
            ).read_text()
            time.sleep(0.2)
        chargers = subprocess.Popen(
            [
                BIN / "virtual-chargers",
                "run",
                "--csms-url",
                f"ws://127.0.0.1:{port}/ocpp",
                "--scenario",
                "thesis",
                "--password",
                KEY,
                "--quiet",
                "--log-level",
                "WARNING",
                *clock,
            ],
            env=env,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        )
        monkeypatch.setenv(DATABASE_URL_ENV, url)
        yield url
    finally:
        if chargers is not None:
            _stop(chargers)
        _stop(csms)
        for log in logs:
            log.close()


def _newest(url: str) -> tuple[datetime | None, int]:
    """The newest meter value and how many cars are plugged in."""

    async def read(sm: queries.SessionMaker) -> tuple[datetime | None, int]:
        return await queries.newest_sample_at(sm), len(await queries.sessions(sm, open_only=True))

    result: tuple[datetime | None, int] = _run(url, read)
    return result


def test_the_live_page_shows_the_demo_garage_as_it_charges(demo: str) -> None:
    deadline = time.monotonic() + FLOW_TIMEOUT_S
    while True:
        newest, plugged = _newest(demo)
        if newest is not None and plugged >= 2 and newest >= CLOCK_START + CHARGED_SIM:
            break
        assert time.monotonic() < deadline, f"no data flowing: newest {newest}, {plugged} cars"
        time.sleep(1.0)

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    before, _ = _newest(demo)
    log_in(at, MANAGER)
    after, _ = _newest(demo)
    assert not at.exception, [e.value for e in at.exception]
    assert "No meter values in the last" not in texts(at.warning)
    assert not at.error, texts(at.error)
    cars = at.dataframe[0].value
    assert len(cars) >= 2
    assert int(next(m for m in at.metric if m.label == "Cars charging").value) >= 1

    # "Updated HH:MM:SS" is the garage's time: between its newest meter values just
    # before and just after the page ran (one a simulated minute), not this computer's.
    assert before is not None and after is not None
    shown = re.search(r"Updated (\d\d):(\d\d):(\d\d)", texts(at.caption))
    assert shown is not None, texts(at.caption)
    zone = ZoneInfo("Europe/Oslo")
    updated = before.astimezone(zone).replace(
        hour=int(shown[1]), minute=int(shown[2]), second=int(shown[3]), microsecond=0
    )
    slack = timedelta(minutes=2)
    assert before - slack <= updated <= after + slack, (before, updated, after)

    at.switch_page(page_path("stations")).run()
    seen = at.dataframe[0].value
    assert not seen["Last seen"].str.contains("in the future").any()
    assert seen["State"].str.startswith("online").sum() == 4
