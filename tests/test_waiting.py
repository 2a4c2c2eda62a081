"""A loop that waits for a wake-up with a timeout still stops when cancelled, even when the
wake-up comes in the same instant (asyncio.wait_for before Python 3.12 swallows that
cancel: a controller test hung for 120 s when chargers disconnected as the CSMS stopped)."""

from __future__ import annotations

import asyncio

import pytest

from csms.waiting import wait_event
from tests.conftest import start_app


async def test_wait_event_returns_when_set_or_after_the_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_a_cancel_that_meets_the_wake_up_still_cancels() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(wait_event(event, 10))
    await asyncio.sleep(0)  # the task is waiting
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.timeout(30)
async def test_the_csms_stops_while_its_controller_and_outbox_are_being_woken(db_url: str) -> None:
    app = await start_app(db_url, controller=True)
    await asyncio.sleep(0.3)  # both loops are waiting for their next turn
    assert app.controller is not None
    app.controller.request_plan()
    app.outbox.wake()
    await asyncio.wait_for(app.stop(), 20)
