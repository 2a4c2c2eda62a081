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
    clock_start: datetime | None,
    extra: Sequence[str] = (),
    timeout_s: float = 60.0,
    log_level: str = "WARNING",
) -> subprocess.Popen[bytes]:
    """`csms serve` on 127.0.0.1:``port`` over the database ``url`` at ``speed`` from
    ``clock_start`` (None: now), its log in ``log``; killed and RuntimeError if /healthz
    does not answer within ``timeout_s`` (at once if it exits first)."""
    env = {**os.environ, "GARAGEGRID_DATABASE_URL": url}
    clock = ["--clock-start", clock_start.isoformat()] if clock_start is not None else []
    # The child keeps its own copy of the log's descriptor; ours is closed at once.
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                str(CSMS),
                "--log-level",
                log_level,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--speed",
                str(speed),
                *clock,
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"the CSMS did not start: {log.read_text(errors='replace')[-2000:]}")
