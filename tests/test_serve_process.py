"""`csms serve` as a real process: migrates, serves /healthz, stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_migrates_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    port = _free_port()
    db = tmp_path / "serve.db"
    exe = Path(sys.executable).with_name("csms")
    proc = subprocess.Popen(
        [
            str(exe),
            "--database-url",
            f"sqlite+aiosqlite:///{db}",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        body = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = json.loads(r.read())
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert body is not None, "CSMS did not answer /healthz"
        assert body["status"] == "ok"
        assert db.exists()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "CSMS listening" in stderr
    assert "shutdown requested" in stderr and "CSMS stopped" in stderr
