"""Garbage collection for a process holding thousands of connections (`csms serve`).

CPython's full (generation 2) collection walks every tracked object; with 5,000 chargers
connected that is close to a million objects, and each pass held the event loop for one to
two seconds, eight times in two minutes (scripts/loop_stalls.py): the p99 of every
charger's round trip. Almost all of those objects live as long as their connection.

So, as large Python services do (``gc.freeze``): after start-up and after every full
collection, the objects that survived it are moved to the permanent generation, which no
later collection walks. A full collection then looks only at what was made since the last
one. Reference counting still frees everything that is not in a cycle, frozen or not.

What a frozen object in a cycle holds is not collected while it stays frozen: a closed
connection's objects, say. So everything is unfrozen (and collected by the next full
collection, then frozen again) after ``unfreeze_after_disconnects`` disconnections or
``unfreeze_every_s`` seconds, whichever comes first: one long pass now and then instead
of one every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from csms.events import ChargePointDisconnected, EventBus

log = logging.getLogger("csms.gc")

UNFREEZE_AFTER_DISCONNECTS = 1_000
UNFREEZE_EVERY_S = 3_600.0


class GcPolicy:
    def __init__(
        self,
        events: EventBus | None = None,
        *,
        unfreeze_after_disconnects: int = UNFREEZE_AFTER_DISCONNECTS,
        unfreeze_every_s: float = UNFREEZE_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = events.subscribe(ChargePointDisconnected) if events is not None else None
        self._unfreeze_after = unfreeze_after_disconnects
        self._unfreeze_every_s = unfreeze_every_s
        self._monotonic = monotonic
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.disconnects = 0
        self.unfrozen_at = monotonic()
        # Counters for tests and /healthz.
        self.freezes = 0
        self.unfreezes = 0

    # ------------------------------------------------------------ running
    def start(self) -> None:
        """Freeze what start-up made; from now on, after every full collection too."""
        self._loop = asyncio.get_running_loop()
        gc.callbacks.append(self._on_gc)
        self.freeze()
        if self._queue is not None:
            self._task = asyncio.create_task(self._count_disconnects(), name="gc-policy")

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        gc.unfreeze()

    def freeze(self) -> None:
        gc.freeze()
        self.freezes += 1

    def unfreeze(self, why: str) -> None:
        """Everything back under collection: the next full collection walks it all once
        (and frees the cycles of closed connections), then it is frozen again."""
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        self.unfreezes += 1
        self.disconnects = 0
        self.unfrozen_at = self._monotonic()
        log.info("objects unfrozen for a full collection", extra={"objects": frozen, "why": why})

    def note_disconnect(self) -> None:
        self.disconnects += 1
        if self.disconnects >= self._unfreeze_after:
            self.unfreeze(f"{self.disconnects} disconnections")
        elif self._monotonic() - self.unfrozen_at >= self._unfreeze_every_s:
            self.unfreeze("time")

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Any thread may have run the collection: freeze from the event loop's.
        if phase == "stop" and info.get("generation") == 2 and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._after_full_collection)

    def _after_full_collection(self) -> None:
        if self._monotonic() - self.unfrozen_at >= self._unfreeze_every_s:
            self.unfreeze("time")
            return
        self.freeze()

    async def _count_disconnects(self) -> None:
        assert self._queue is not None
        while True:
            await self._queue.get()
            self.note_disconnect()
