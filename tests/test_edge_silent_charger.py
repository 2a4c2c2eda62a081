"""A charger that never answers a CALL (issue 10, item 6): its call times out, its next
call proceeds, no other charger waits, and a call fails at once when the connection
closes instead of waiting out the timeout (issue 13)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from csms.app import CsmsApp
from csms.errors import CallFailedError, NotConnectedError
from tests.conftest import start_app, ws_url
from tests.ocpp_client import RawChargePoint

TIMEOUT_S = 1.0
BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.fixture
async def short_app(db_url: str) -> AsyncIterator[CsmsApp]:
    app = await start_app(db_url, response_timeout_s=TIMEOUT_S)
    try:
        yield app
    finally:
        await app.stop()


async def booted(app: CsmsApp, cp_id: str) -> RawChargePoint:
    await app.repository.add_charge_point(cp_id)
    cp = await RawChargePoint.connect(ws_url(app, cp_id))
    await cp.ok("BootNotification", BOOT)
    return cp


def never(release: asyncio.Event, asked: asyncio.Event | None = None) -> Any:
    """A handler that answers only once ``release`` is set (``asked``: it was called)."""

    async def handler(payload: dict[str, Any]) -> dict[str, Any]:
        if asked is not None:
            asked.set()
        await release.wait()
        return {"status": "Accepted"}

    return handler


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never met")


async def wait_done(app: CsmsApp, command_id: int) -> dict[str, Any]:
    for _ in range(200):
        row = await app.repository.get_command(command_id)
        assert row is not None
        if row["status"] in ("done", "failed"):
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"command {command_id} never completed")


async def test_a_silent_charger_times_out_alone_and_then_takes_its_next_call(
    short_app: CsmsApp,
) -> None:
    app = short_app
    silent, other = await booted(app, "SILENT"), await booted(app, "OTHER")
    release = asyncio.Event()
    silent.handlers["Reset"] = never(release)
    other.handlers["Reset"] = lambda payload: {"status": "Accepted"}
    loop = asyncio.get_running_loop()

    started = loop.time()
    to_silent = await app.repository.enqueue_command("SILENT", "Reset", {"type": "Soft"})
    to_other = await app.repository.enqueue_command("OTHER", "Reset", {"type": "Soft"})
    answered = await wait_done(app, to_other)
    other_s = loop.time() - started
    assert answered["status"] == "done" and answered["response"] == {"status": "Accepted"}
    # Answered while the silent charger's call still waits (outbox polls every 0.1 s).
    assert other_s < TIMEOUT_S / 2
    assert (await app.repository.get_command(to_silent) or {})["status"] == "sending"

    timed_out = await wait_done(app, to_silent)
    silent_s = loop.time() - started
    assert timed_out["status"] == "failed" and "no answer within 1 s" in timed_out["error"]
    assert TIMEOUT_S <= silent_s < TIMEOUT_S + 1.0

    # The silent charger's next call goes out and is answered; its late answer to the
    # first one (released now) is dropped, not taken for the second.
    silent.handlers["GetConfiguration"] = lambda payload: {"configurationKey": []}
    release.set()
    answer = await app.central.call("SILENT", "GetConfiguration", {})
    assert answer == {"configurationKey": []}
    await silent.close()
    await other.close()


async def test_a_call_in_flight_fails_at_once_when_the_connection_closes(db_url: str) -> None:
    app = await start_app(db_url, response_timeout_s=30.0)
    try:
        cp = await booted(app, "GONE")
        asked = asyncio.Event()
        cp.handlers["Reset"] = never(asyncio.Event(), asked)
        loop = asyncio.get_running_loop()
        call = asyncio.create_task(app.central.call("GONE", "Reset", {"type": "Hard"}))
        await asyncio.wait_for(asked.wait(), 5)
        started = loop.time()
        await cp.ws.close()
        with pytest.raises(CallFailedError) as failed:
            await call
        assert loop.time() - started < 2.0  # not the 30 s timeout
        assert failed.value.code == "ConnectionClosed"
        # Once the CSMS has noticed, a call is refused before anything is sent.
        await until(lambda: not app.central.is_connected("GONE"))
        started = loop.time()
        with pytest.raises(NotConnectedError):
            await app.central.call("GONE", "Reset", {"type": "Hard"})
        assert loop.time() - started < 0.5
        await cp.close()
    finally:
        await app.stop()


async def test_calls_queued_behind_a_closed_connection_fail_at_once(db_url: str) -> None:
    """One CALL at a time per connection (OCPP-J 4.1.1): the ones waiting their turn do
    not wait out the timeout either when the connection goes."""
    app = await start_app(db_url, response_timeout_s=30.0)
    try:
        cp = await booted(app, "GONE")
        asked = asyncio.Event()
        cp.handlers["Reset"] = never(asyncio.Event(), asked)
        calls = [
            asyncio.create_task(app.central.call("GONE", "Reset", {"type": "Hard"}))
            for _ in range(3)
        ]
        await asyncio.wait_for(asked.wait(), 5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await cp.ws.close()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert loop.time() - started < 2.0
        assert all(isinstance(r, CallFailedError | NotConnectedError) for r in results), results
        assert len(cp.server_calls) == 1
        await cp.close()
    finally:
        await app.stop()


async def test_a_connection_replaced_mid_call_fails_that_call_at_once(db_url: str) -> None:
    app = await start_app(db_url, response_timeout_s=30.0)
    try:
        first = await booted(app, "CP1")
        asked = asyncio.Event()
        first.handlers["Reset"] = never(asyncio.Event(), asked)
        call = asyncio.create_task(app.central.call("CP1", "Reset", {"type": "Soft"}))
        await asyncio.wait_for(asked.wait(), 5)
        second = await RawChargePoint.connect(ws_url(app, "CP1"))
        with pytest.raises(CallFailedError):
            await asyncio.wait_for(call, 5)
        second.handlers["Reset"] = lambda payload: {"status": "Accepted"}
        assert await app.central.call("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        await first.close()
        await second.close()
    finally:
        await app.stop()
