"""`csms token` and `csms api`: tokens made on the command line, hashed in the store, used
against a separate API process on the same SQLite file, and revoked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from csms.cli import main
from tests.test_serve_process import _free_port
from tests.test_tls import certificate

__all__ = ["certificate"]  # a fixture


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokens_are_shown_once_stored_hashed_and_served_by_csms_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "api.db"
    url = f"sqlite+aiosqlite:///{db}"
    code, out, err = run(capsys, "--database-url", url, "token", "add", "ops", "--role", "manager")
    assert code == 0, err
    manager = out.strip()
    assert manager.startswith("gg_") and len(manager) > 40
    assert "shown once" in err
    # A resident token acts for a resident account.
    code, _, err = run(capsys, "--database-url", url, "token", "add", "r1", "--role", "resident")
    assert code == 2 and "--user" in err
    code, _, err = run(
        capsys,
        "--database-url",
        url,
        "token",
        "add",
        "r1",
        "--role",
        "resident",
        "--user",
        "nobody",
    )
    assert code == 2 and "no user" in err
    code, out, _ = run(capsys, "--database-url", url, "token", "add", "wall", "--role", "viewer")
    viewer = out.strip()
    code, out, _ = run(capsys, "--database-url", url, "token", "list", "--json")
    listed = {t["name"]: t for t in json.loads(out)}
    assert set(listed) == {"ops", "wall"}
    assert listed["ops"]["token"] == manager[:8] + "..." and listed["ops"]["revoked_at"] is None
    assert manager not in out
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("api.db"))
    assert manager.encode() not in stored and viewer.encode() not in stored

    port = _free_port()
    exe = Path(sys.executable).with_name("csms")
    proc = subprocess.Popen(
        [str(exe), "--database-url", url, "api", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        answered = None
        while answered is None and time.monotonic() < deadline:
            try:
                answered = httpx.get(f"{base}/api/v1/openapi.json", timeout=2)
            except httpx.TransportError:
                time.sleep(0.2)
        assert answered is not None and answered.status_code == 200, "csms api did not answer"
        as_manager = {"Authorization": f"Bearer {manager}"}
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        r = httpx.patch(f"{base}/api/v1/site", json={"fuse_limit_a": 100}, headers=as_manager)
        assert r.status_code == 200, r.text
        r = httpx.patch(f"{base}/api/v1/site", json={"fuse_limit_a": 1}, headers=as_viewer)
        assert r.status_code == 403
        assert httpx.get(f"{base}/api/v1/site", headers=as_viewer).json()["fuse_limit_a"] == 100
        metrics = httpx.get(f"{base}/metrics").text
        assert "garagegrid_chargers_connected 0.0" in metrics

        code, out, _ = run(capsys, "--database-url", url, "site", "show")
        assert json.loads(out)["fuse_limit_a"] == 100
        code, out, _ = run(capsys, "--database-url", url, "token", "revoke", "wall")
        assert code == 0 and "revoked" in out
        r = httpx.get(f"{base}/api/v1/site", headers=as_viewer)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert httpx.get(f"{base}/api/v1/site", headers=as_manager).status_code == 200
        code, out, _ = run(capsys, "--database-url", url, "token", "list", "--json")
        tokens = {t["name"]: t for t in json.loads(out)}
        assert tokens["wall"]["revoked_at"] is not None and tokens["ops"]["last_used_at"]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "API listening" in stderr and "shutdown requested" in stderr
    assert manager not in stderr and viewer not in stderr


def test_serve_takes_the_api_port_and_keeps_it_on_loopback() -> None:
    from csms.cli import build_parser

    args = build_parser().parse_args(["serve", "--api-port", "8080"])
    assert (args.api_port, args.api_host) == (8080, "127.0.0.1")
    assert build_parser().parse_args(["serve"]).api_port is None  # off unless set
    args = build_parser().parse_args(["serve", "--api-port", "0", "--api-host", "0.0.0.0"])
    assert (args.api_port, args.api_host) == (0, "0.0.0.0")


async def test_the_api_speaks_tls_when_the_csms_has_a_certificate(
    db_url: str, certificate: tuple[Path, Path]
) -> None:
    import ssl

    from tests.api_support import make_token, start_api_app

    cert, key = certificate
    app = await start_api_app(db_url, certfile=str(cert), keyfile=str(key))
    try:
        assert app.api is not None and app.api.url.startswith("https://")
        token = await make_token(app, "ops", "manager")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=app.api.url, verify=trusted) as api:
            r = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.json()["role"] == "manager"
        # Plain HTTP to the same port gets no API answer.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.api.port}") as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    finally:
        await app.stop()
