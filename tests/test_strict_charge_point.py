"""The core works with an independent OCPP 1.6J implementation in strict schema mode.

The charge point is `ocpp-rpc` (Node.js, npm) with ``strictMode: true``: it validates every
answer of the CSMS, and every call the CSMS sends it, against the official 1.6 schemas.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from csms.app import CsmsApp
from csms.store.repository import Repository

STRICT_CP = Path(__file__).parent / "strict_cp"


async def test_whole_session_with_strict_independent_charge_point(
    app: CsmsApp, repo: Repository
) -> None:
    node = shutil.which("node")
    if node is None or not (STRICT_CP / "node_modules" / "ocpp-rpc").exists():
        pytest.fail("node and tests/strict_cp/node_modules are installed by `make test`")
    await repo.add_charge_point("STRICT", password="strict-auth-key-0001")
    await repo.add_id_tag("STRICT1", owner="Apt S1")
    await repo.enqueue_command("STRICT", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    proc = await asyncio.create_subprocess_exec(
        node,
        str(STRICT_CP / "strict_cp.js"),
        f"ws://127.0.0.1:{app.port}/ocpp",
        "STRICT",
        "strict-auth-key-0001",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"STRICT_CP_EXPECT": "ChangeConfiguration"},
    )
    # The command queued before the charger connected fails ("not connected"); queue one
    # more once it is connected so the CSMS's own CALL goes through strict validation too.
    for _ in range(100):
        if app.central.is_connected("STRICT"):
            break
        await asyncio.sleep(0.05)
    await repo.enqueue_command(
        "STRICT", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stdout.decode() + stderr.decode()
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    assert report["validationFailures"] == []
    calls = report["calls"]
    assert calls["boot"]["status"] == "Accepted"
    assert calls["authorize"]["idTagInfo"]["status"] == "Accepted"
    assert calls["start"]["transactionId"] > 0
    assert calls["stop"]["idTagInfo"]["status"] == "Accepted"
    assert calls["dataTransfer"]["status"] == "UnknownVendorId"
    assert any(c["method"] == "ChangeConfiguration" for c in report["inbound"])
    rows = await repo.sessions_for_export()
    assert rows[0]["energy_wh"] == 2000 and rows[0]["owner"] == "Apt S1"
