"""Security profile 1: Basic auth, 404/401 before any WebSocket opens, replacement."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus

from csms.app import CsmsApp
from csms.store.repository import Repository
from tests.conftest import start_app, ws_url
from tests.ocpp_client import RawChargePoint

PASSWORD = "0123456789abcdef0123"


async def _status_of_refusal(url: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as info:
        await RawChargePoint.connect(url, **kwargs)  # type: ignore[arg-type]
    return info.value.response.status_code


async def test_unknown_charge_point_gets_404(app: CsmsApp) -> None:
    assert await _status_of_refusal(ws_url(app, "NOPE"), password=PASSWORD) == 404


async def test_wrong_or_missing_password_gets_401(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1", password=PASSWORD)
    assert await _status_of_refusal(ws_url(app, "CP1"), password="wrong-password-123") == 401
    assert await _status_of_refusal(ws_url(app, "CP1")) == 401


async def test_username_must_equal_the_id_in_the_url(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1", password=PASSWORD)
    await repo.add_charge_point("CP2", password=PASSWORD)
    assert await _status_of_refusal(ws_url(app, "CP1"), password=PASSWORD, user="CP2") == 401


async def test_raw_byte_password_is_compared_as_bytes(app: CsmsApp, repo: Repository) -> None:
    raw = bytes(range(0x90, 0xA0)).decode("utf-8", "surrogateescape")
    await repo.add_charge_point("CPBIN", password=raw)
    import base64

    from websockets.asyncio.client import connect

    token = base64.b64encode(b"CPBIN:" + bytes(range(0x90, 0xA0))).decode()
    ws = await connect(
        ws_url(app, "CPBIN"),
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Basic {token}"},
    )
    assert ws.subprotocol == "ocpp1.6"
    await ws.close()


async def test_no_subprotocol_is_refused(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1")
    with pytest.raises(InvalidStatus) as info:
        await RawChargePoint.connect(ws_url(app, "CP1"), subprotocols=[])
    assert info.value.response.status_code == 400
    with pytest.raises(InvalidStatus):
        await RawChargePoint.connect(ws_url(app, "CP1"), subprotocols=["ocpp2.0.1"])


async def test_correct_password_negotiates_ocpp16(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1", password=PASSWORD)
    cp = await RawChargePoint.connect(ws_url(app, "CP1"), password=PASSWORD)
    assert cp.ws.subprotocol == "ocpp1.6"
    assert (await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}))[
        "status"
    ] == "Accepted"
    await cp.close()


async def test_second_connection_replaces_the_first(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1", password=PASSWORD)
    first = await RawChargePoint.connect(ws_url(app, "CP1"), password=PASSWORD)
    await first.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    second = await RawChargePoint.connect(ws_url(app, "CP1"), password=PASSWORD)
    await asyncio.wait_for(first.ws.wait_closed(), 5)
    assert first.ws.close_code == 1000
    assert "replaced" in (first.ws.close_reason or "")
    # The new connection works and is the one the CSMS talks to.
    await second.ok("Heartbeat", {})
    assert app.central.connected_ids() == ["CP1"]
    station = await repo.get_charge_point("CP1")
    assert station is not None and station.connected
    await second.close()


async def test_auto_register_records_unknown_ids(db_url: str) -> None:
    app = await start_app(db_url, auto_register=True)
    try:
        cp = await RawChargePoint.connect(ws_url(app, "NEW1"), password="first-use-key-1234")
        boot = await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        assert boot["status"] == "Accepted"
        await cp.close()
        station = await app.repository.get_charge_point("NEW1")
        assert station is not None and station.password_hash is not None
        # Trust on first use: the key of the first connection is now required.
        with pytest.raises(InvalidStatus) as info:
            await RawChargePoint.connect(ws_url(app, "NEW1"), password="another-key-12345")
        assert info.value.response.status_code == 401
    finally:
        await app.stop()


async def test_healthz_answers_json(app: CsmsApp) -> None:
    def fetch() -> tuple[int, dict[str, object]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{app.port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())

    status, body = await asyncio.to_thread(fetch)
    assert status == 200
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["connected_charge_points"] == 0


async def test_repeated_failures_are_rate_limited(app: CsmsApp, repo: Repository) -> None:
    await repo.add_charge_point("CP1", password=PASSWORD)
    codes = [
        await _status_of_refusal(ws_url(app, "CP1"), password=f"bad-password-{n:04d}")
        for n in range(11)
    ]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429


def test_verified_keys_remember_a_match_until_it_expires_or_the_hash_changes() -> None:
    from csms.auth import VerifiedKeys, hash_password

    now = [1000.0]
    keys = VerifiedKeys(ttl_s=60.0, max_entries=2, monotonic=lambda: now[0])
    stored = hash_password("0123456789abcdef0123")
    assert not keys.known("0123456789abcdef0123", stored)
    keys.add("0123456789abcdef0123", stored)
    assert keys.known("0123456789abcdef0123", stored)
    assert not keys.known("0123456789abcdef0124", stored)  # another key
    assert not keys.known("0123456789abcdef0123", hash_password("0123456789abcdef0123"))
    now[0] += 61.0
    assert not keys.known("0123456789abcdef0123", stored)  # expired
    for n in range(3):  # bounded: the oldest goes first
        keys.add(f"key-{n}", stored)
    assert [keys.known(f"key-{n}", stored) for n in range(3)] == [False, True, True]
    # Neither the key nor its plain hash is kept.
    assert all(b"key-" not in entry for entry in keys._entries)
