"""csms.gc_policy: what survives a full collection is frozen (later full collections do
not walk it); enough disconnections unfreeze everything, so that the cycles of closed
connections are collected after all. The interpreter's own collector, no sockets."""

from __future__ import annotations

import asyncio
import gc
import weakref

from csms.events import ChargePointDisconnected, EventBus
from csms.gc_policy import GcPolicy


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(b)


async def test_survivors_of_a_full_collection_are_frozen_until_enough_disconnections() -> None:
    events = EventBus()
    policy = GcPolicy(events, unfreeze_after_disconnects=3)
    policy.start()
    try:
        assert gc.get_freeze_count() > 0  # what start-up made
        kept, alive = cycle()
        before = gc.get_freeze_count()
        gc.collect()  # a full collection: its survivors are frozen from the loop
        await asyncio.sleep(0)
        assert gc.get_freeze_count() > before
        assert policy.freezes == 2
        # A frozen cycle let go of (a closed connection's objects) is not collected ...
        del kept
        gc.collect()
        await asyncio.sleep(0)
        assert alive() is not None
        # ... until enough chargers disconnected: all unfrozen, the next pass frees it.
        for cp_id in ("A", "B", "C"):
            events.publish(ChargePointDisconnected(cp_id))
        for _ in range(10):
            await asyncio.sleep(0)
        assert policy.unfreezes == 1
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert alive() is None
        await asyncio.sleep(0)
        assert gc.get_freeze_count() > 0  # and frozen again after that pass
    finally:
        await policy.stop()
    assert gc.get_freeze_count() == 0
    assert policy._on_gc not in gc.callbacks


async def test_everything_is_unfrozen_after_the_time_too() -> None:
    now = [0.0]
    policy = GcPolicy(None, unfreeze_every_s=60.0, monotonic=lambda: now[0])
    policy.start()
    try:
        gc.collect()
        await asyncio.sleep(0)
        assert (policy.freezes, policy.unfreezes) == (2, 0)
        now[0] = 61.0
        gc.collect()  # the first full collection after the time unfreezes
        await asyncio.sleep(0)
        assert policy.unfreezes == 1 and gc.get_freeze_count() == 0
    finally:
        await policy.stop()
