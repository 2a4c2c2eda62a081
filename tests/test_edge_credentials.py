"""Station credentials at the OCPP edge (issue 10, item 1): no station is open by default,
trust on first use, key rotation with the whitepaper's rules, and the failure limit."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from csms.app import CsmsApp
from csms.cli import main
from csms.ocpp16.server import AUTH_FAILURE_WINDOW_S, MAX_AUTH_FAILURES, FailureLimiter
from csms.store.repository import Repository
from tests.conftest import start_app, ws_url
from tests.ocpp_client import RawChargePoint, basic_auth_header
from tests.test_tls import certificate

__all__ = ["certificate"]  # a fixture

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
OLD_KEY = "0123456789abcdef0123"
HEX_KEY = re.compile(r"^[0-9a-f]{40}$")


async def open_ws(
    url: str,
    *,
    password: str | bytes | None = None,
    user: str | None = None,
    from_host: str = "127.0.0.1",
    **kwargs: Any,
) -> ClientConnection:
    """A charger's WebSocket from ``from_host`` (127.0.0.x: another source address)."""
    headers: dict[str, str] = {}
    if password is not None:
        cp_id = user or url.rstrip("/").rsplit("/", 1)[-1]
        if isinstance(password, bytes):
            import base64

            token = base64.b64encode(cp_id.encode() + b":" + password).decode()
            headers = {"Authorization": f"Basic {token}"}
        else:
            headers = basic_auth_header(cp_id, password)
    return await connect(
        url,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=headers,
        open_timeout=5,
        local_addr=(from_host, 0),
        **kwargs,
    )


async def status_of(url: str, **kwargs: Any) -> int:
    """101 when the WebSocket opens, else the HTTP status of the refusal."""
    try:
        ws = await open_ws(url, **kwargs)
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


async def cli(*args: str) -> int:
    """`csms ...` in a thread (it runs its own event loop), against the test's database."""
    return await asyncio.to_thread(main, list(args))


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)
    return db_url


# ------------------------------------------------------------- no open doors
async def test_station_without_password_is_refused_unless_marked_unsecured(
    app: CsmsApp, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("station", "add", "NOPW") == 0
    assert "refused until it has one" in capsys.readouterr().err
    assert await status_of(ws_url(app, "NOPW")) == 401
    assert await status_of(ws_url(app, "NOPW"), password="anything-at-all-123") == 401

    assert await cli("station", "add", "LAB", "--unsecured") == 0
    assert "unsecured" in capsys.readouterr().err
    assert await status_of(ws_url(app, "LAB")) == 101

    assert await cli("station", "set", "NOPW", "--unsecured") == 0
    assert await status_of(ws_url(app, "NOPW")) == 101
    assert await cli("station", "set", "NOPW", "--secured") == 0
    assert await status_of(ws_url(app, "NOPW")) == 401
    assert await cli("station", "set", "NOPW", "--password", OLD_KEY) == 0
    assert await status_of(ws_url(app, "NOPW"), password=OLD_KEY) == 101

    capsys.readouterr()
    assert await cli("station", "list", "--json") == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["LAB"]["security_profile"], rows["LAB"]["security"]) == (0, "0 unsecured")
    assert (rows["NOPW"]["security_profile"], rows["NOPW"]["security"]) == (1, "1 password")
    assert await cli("station", "list") == 0
    table = capsys.readouterr().out
    assert "security" in table.splitlines()[0] and "0 unsecured" in table


def test_unsecured_and_password_together_is_an_error(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["station", "add", "X", "--unsecured", "--password", OLD_KEY]) == 2
    assert "--unsecured" in capsys.readouterr().err


async def test_profile_2_station_needs_tls(
    db_url: str, certificate: tuple[Path, Path], repo: Repository, app: CsmsApp
) -> None:
    await repo.add_charge_point("TLS2", password=OLD_KEY, security_profile=2)
    # Over plain ws:// the right password is not enough (and a 403 counts as a failure:
    # it tells a prober the id exists).
    codes = [
        await status_of(ws_url(app, "TLS2"), password=OLD_KEY) for _ in range(MAX_AUTH_FAILURES + 1)
    ]
    assert codes == [403] * MAX_AUTH_FAILURES + [429]
    cert, key = certificate
    tls_app = await start_app(db_url, certfile=str(cert), keyfile=str(key))
    try:
        url = f"wss://127.0.0.1:{tls_app.port}/ocpp/TLS2"
        trust = ssl.create_default_context(cafile=str(cert))
        assert await status_of(url, password=OLD_KEY, ssl=trust) == 101
        assert await status_of(url, password="wrong-password-0000", ssl=trust) == 401
    finally:
        await tls_app.stop()


# ------------------------------------------------------- trust on first use
async def test_auto_register_pins_the_first_password_and_refuses_none(db_url: str) -> None:
    app = await start_app(db_url, auto_register=True)
    try:
        assert await status_of(ws_url(app, "NEW1")) == 401
        assert await app.repository.get_charge_point("NEW1") is None
        assert await status_of(ws_url(app, "NEW1"), password=OLD_KEY, user="OTHER") == 401
        assert await app.repository.get_charge_point("NEW1") is None

        assert await status_of(ws_url(app, "NEW1"), password=OLD_KEY) == 101
        station = await app.repository.get_charge_point("NEW1")
        assert station is not None and station.security_profile == 1
        assert await status_of(ws_url(app, "NEW1"), password="another-key-12345") == 401
        assert await status_of(ws_url(app, "NEW1")) == 401
        assert await status_of(ws_url(app, "NEW1"), password=OLD_KEY) == 101
    finally:
        await app.stop()


async def test_auto_register_unsecured_records_a_passwordless_station_as_profile_0(
    db_url: str,
) -> None:
    app = await start_app(db_url, auto_register_unsecured=True)
    try:
        assert await status_of(ws_url(app, "LAB1")) == 101
        lab = await app.repository.get_charge_point("LAB1")
        assert lab is not None and lab.security_profile == 0 and lab.password_hash is None
        # With a password it is still pinned as under --auto-register.
        assert await status_of(ws_url(app, "KEYED"), password=OLD_KEY) == 101
        assert await status_of(ws_url(app, "KEYED"), password="another-key-12345") == 401
    finally:
        await app.stop()


# ------------------------------------------------------------------ rotation
@pytest.fixture
async def keyed(app: CsmsApp, repo: Repository) -> AsyncIterator[RawChargePoint]:
    """CP1 with OLD_KEY, connected and accepted."""
    await repo.add_charge_point("CP1", password=OLD_KEY)
    cp = await RawChargePoint.connect(ws_url(app, "CP1"), password=OLD_KEY)
    await cp.ok("BootNotification", BOOT)
    try:
        yield cp
    finally:
        await cp.close()


def answer_change(cp: RawChargePoint, status: str) -> list[str]:
    """The charger answers ChangeConfiguration with ``status``; returns the keys it got."""
    received: list[str] = []

    def on_change(payload: dict[str, Any]) -> dict[str, Any]:
        received.append(payload["value"])
        return {"status": status}

    cp.handlers["ChangeConfiguration"] = on_change
    return received


async def test_rotation_accepted_stops_the_old_key_at_once(
    app: CsmsApp, keyed: RawChargePoint, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    received = answer_change(keyed, "Accepted")
    assert await cli("station", "rotate-password", "CP1", "--wait", "10") == 0
    out = capsys.readouterr().out
    assert "the old key no longer works" in out
    [new_key] = received
    assert HEX_KEY.match(new_key), new_key  # 20 random bytes as 40 hex digits
    assert new_key not in out
    assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 401
    assert await status_of(ws_url(app, "CP1"), password=new_key) == 101
    # A charger that sends the 20 bytes those digits stand for gets in as well.
    assert await status_of(ws_url(app, "CP1"), password=bytes.fromhex(new_key)) == 101


@pytest.mark.parametrize("status", ["Rejected", "NotSupported"])
async def test_rotation_refused_keeps_the_old_key(
    app: CsmsApp,
    keyed: RawChargePoint,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    status: str,
) -> None:
    received = answer_change(keyed, status)
    assert await cli("station", "rotate-password", "CP1", "--wait", "10") == 1
    assert f"answered {status}; nothing changed, the old key stays" in capsys.readouterr().out
    [new_key] = received
    assert await status_of(ws_url(app, "CP1"), password=new_key) == 401
    assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 101


async def test_rotation_to_a_charger_that_answers_callerror_keeps_the_old_key(
    app: CsmsApp, keyed: RawChargePoint, repo: Repository, cli_env: str
) -> None:
    # No handler: the charger answers CALLERROR NotImplemented.
    assert await cli("station", "rotate-password", "CP1", "--wait", "10") == 1
    station = await repo.get_charge_point("CP1")
    assert station is not None and station.pending_password_hash is None
    assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 101


@pytest.mark.parametrize("outcome", ["silent", "RebootRequired"])
async def test_rotation_in_doubt_keeps_the_old_key_until_the_new_one_is_used(
    db_url: str, cli_env: str, capsys: pytest.CaptureFixture[str], outcome: str
) -> None:
    """No answer (the charger may have taken it) or RebootRequired (it will, later): the
    old key stays and the new one works too; the first login with the new one ends the
    old one."""
    app = await start_app(db_url, response_timeout_s=0.5)
    try:
        await app.repository.add_charge_point("CP1", password=OLD_KEY)
        cp = await RawChargePoint.connect(ws_url(app, "CP1"), password=OLD_KEY)
        await cp.ok("BootNotification", BOOT)
        received: list[str] = []

        async def on_change(payload: dict[str, Any]) -> dict[str, Any]:
            received.append(payload["value"])
            if outcome == "silent":
                await asyncio.Event().wait()
            return {"status": outcome}

        cp.handlers["ChangeConfiguration"] = on_change
        code = await cli("station", "rotate-password", "CP1", "--wait", "10")
        assert code == (0 if outcome == "RebootRequired" else 1)
        assert "its old key stays, and the new key is accepted too" in capsys.readouterr().out
        await cp.close()
        [new_key] = received
        assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 101
        assert await status_of(ws_url(app, "CP1"), password=new_key) == 101
        assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 401
        assert await status_of(ws_url(app, "CP1"), password=new_key) == 101
    finally:
        await app.stop()


async def test_key_change_queued_by_hand_changes_the_password_too(
    app: CsmsApp, keyed: RawChargePoint, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13: an Accepted ChangeConfiguration(AuthorizationKey) sent through the outbox
    used to leave the old password in force and lock the charger out."""
    answer_change(keyed, "Accepted")
    new_key = "fedcba9876543210fedcba9876543210fedcba98"
    payload = json.dumps({"key": "authorizationKEY", "value": new_key})
    code = await cli("command", "CP1", "ChangeConfiguration", "--payload", payload, "--wait", "10")
    assert code == 0
    assert new_key not in capsys.readouterr().out
    assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 401
    assert await status_of(ws_url(app, "CP1"), password=new_key) == 101


async def test_rotation_of_an_absent_charger_changes_nothing(
    app: CsmsApp, repo: Repository, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await repo.add_charge_point("AWAY", password=OLD_KEY)
    assert await cli("station", "rotate-password", "AWAY", "--wait", "10") == 1
    assert "not connected; nothing changed, the old key stays" in capsys.readouterr().out
    assert await status_of(ws_url(app, "AWAY"), password=OLD_KEY) == 101


# ----------------------------------------------------------- failure limit
def test_failure_limiter_window_and_retry_after() -> None:
    now = [1000.0]
    limiter = FailureLimiter(3, 60.0, monotonic=lambda: now[0])
    assert [limiter.record("a") for _ in range(3)] == [False, False, True]
    assert limiter.retry_after("a") == 60.0 and limiter.retry_after("b") is None
    now[0] += 59.5
    assert limiter.retry_after("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.retry_after("a") is None
    # Failures spread out: refused only while three fall within one window.
    for step in (0.0, 30.0, 30.0):
        now[0] += step
        limiter.record("c")
    assert limiter.retry_after("c") is None
    limiter.record("c")
    assert limiter.retry_after("c") == pytest.approx(30.0)


def test_failure_limiter_forgets_the_oldest_address_beyond_its_bound() -> None:
    limiter = FailureLimiter(1, 60.0, monotonic=lambda: 0.0, max_addresses=2)
    for remote in ("a", "b", "c"):
        limiter.record(remote)
    assert limiter.retry_after("a") is None
    assert limiter.retry_after("b") == limiter.retry_after("c") == 60.0


async def test_unknown_ids_count_and_the_limit_answers_429_with_retry_after(
    app: CsmsApp, repo: Repository
) -> None:
    now = [0.0]
    app.central.limiter = FailureLimiter(monotonic=lambda: now[0])
    await repo.add_charge_point("CP1", password=OLD_KEY)
    codes = [await status_of(ws_url(app, f"GUESS{n}")) for n in range(MAX_AUTH_FAILURES)]
    assert codes == [404] * MAX_AUTH_FAILURES
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(ws_url(app, "CP1"), password=OLD_KEY)
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == str(int(AUTH_FAILURE_WINDOW_S))
    now[0] += 45.2
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(ws_url(app, "CP1"), password=OLD_KEY)
    assert refused.value.response.headers["Retry-After"] == "15"
    now[0] += 15
    assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 101


async def test_a_charger_from_another_address_connects_during_an_attack(
    app: CsmsApp, repo: Repository
) -> None:
    await repo.add_charge_point("CP1", password=OLD_KEY)
    await repo.add_charge_point("CP2", password="cp2-key-0123456789")
    attacker = "127.0.0.2"
    guesses = [
        await status_of(ws_url(app, "CP1"), password=f"guess-{n:04d}", from_host=attacker)
        for n in range(MAX_AUTH_FAILURES + 5)
    ]
    assert guesses == [401] * MAX_AUTH_FAILURES + [429] * 5
    # The right key from the attacking address is refused too: no oracle for guesses.
    assert await status_of(ws_url(app, "CP1"), password=OLD_KEY, from_host=attacker) == 429
    # The garage's chargers on their own addresses are not affected.
    assert await status_of(ws_url(app, "CP2"), password="cp2-key-0123456789") == 101
    ws = await open_ws(ws_url(app, "CP1"), password=OLD_KEY, from_host="127.0.0.1")
    await ws.send(json.dumps([2, "b1", "BootNotification", BOOT]))
    assert json.loads(await ws.recv())[2]["status"] == "Accepted"
    await ws.close()


# ------------------------------------------------------- verified keys remembered
async def test_a_reconnecting_charger_costs_no_second_scrypt_and_a_new_key_ends_it(
    app: CsmsApp, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by scripts/bench_storm.py: 500 chargers coming back at once queued behind one
    scrypt each. A key that matched is remembered (keyed by the stored hash too), a wrong
    key is checked every time, and a changed password leaves nothing to remember."""
    import csms.ocpp16.server as server

    checks: list[str] = []
    real = server.verify_charger_password

    def counting(password: str, stored: str) -> bool:
        checks.append(password)
        return real(password, stored)

    monkeypatch.setattr(server, "verify_charger_password", counting)
    await repo.add_charge_point("CP1", password=OLD_KEY)
    for _ in range(3):
        assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 101
    assert checks == [OLD_KEY]
    for _ in range(2):
        assert await status_of(ws_url(app, "CP1"), password="wrong-key-wrong-key") == 401
    assert checks == [OLD_KEY, "wrong-key-wrong-key", "wrong-key-wrong-key"]
    await repo.update_charge_point("CP1", password="fedcba9876543210fedc")
    assert await status_of(ws_url(app, "CP1"), password=OLD_KEY) == 401
    assert await status_of(ws_url(app, "CP1"), password="fedcba9876543210fedc") == 101
