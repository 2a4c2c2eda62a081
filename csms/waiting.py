"""Waiting for an event with a timeout, cancellably.

Not ``asyncio.wait_for(event.wait(), timeout)``: before Python 3.12 it swallows a
cancellation that arrives in the same loop iteration as the event is set (it returns the
event's result instead of raising), so a loop built on it keeps running after it was
cancelled and whoever awaits it (`csms serve`'s shutdown) hangs. Found by a controller
test that hung for its whole 120 s timeout when chargers disconnected (a wake) just as
the CSMS stopped (the cancel).
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Until ``event`` is set or ``timeout_s`` passes; True if it was set."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout_s)
    finally:
        waiter.cancel()
    return event.is_set()
