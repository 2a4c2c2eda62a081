"""Start `csms serve` as a child process for the scripts that drive it (bench_storm, soak,
bench_virtual_chargers) and wait until its /healthz answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

CSMS = Path(sys.executable).with_name("csms")


def start_csms(
    url: str,
    port: int,
    speed: float,
    log: Path,
    *,
    clock_start: datetime,
    extra: Sequence[str] = (),
    timeout_s: float = 60.0,
) -> subprocess.Popen[bytes]:
    """`csms serve` on 127.0.0.1:``port`` over the database ``url`` at ``speed`` from
    ``clock_start``, its log in ``log``; killed and RuntimeError if /healthz does not
    answer within ``timeout_s``."""
    env = {**os.environ, "GARAGEGRID_DATABASE_URL": url}
    process = subprocess.Popen(
        [
            str(CSMS),
            "--log-level",
            "WARNING",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--speed",
            str(speed),
            "--clock-start",
            clock_start.isoformat(),
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the CSMS did not start, see {log}")
