"""Group commit of MeterValues: many chargers' messages, one transaction.

Each MeterValues handler hands its samples to :meth:`MeterWriter.add` and waits; one
writer task takes whatever has queued (after at most ``max_delay_s`` for more to come,
up to ``max_batch`` messages) and stores it with
:meth:`csms.store.repository.Repository.add_meter_values_batch`: one commit, one disk
flush for all of them. Every waiting handler gets its flags only after that commit, so
nothing is acknowledged before it is durable. When a batch fails, each of its messages is
tried again on its own: a message the store refuses fails alone (its charger gets a
CALLERROR and sends it again), and when the store fails for all, all of them fail.
Nothing of a failed batch was stored (one transaction), nothing of it was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from csms.domain import SampledValue
from csms.errors import StoreError
from csms.store.repository import MeterBatchItem, Repository

log = logging.getLogger("csms.store.meter_writer")

#: How long the writer waits for more messages after the first one of a batch (seconds).
#: Under load a batch fills while the previous one commits; this only matters when idle.
MAX_DELAY_S = 0.002
#: The most messages in one commit.
MAX_BATCH = 500

BeforeCommit = Callable[[Sequence[MeterBatchItem]], Awaitable[None]]


class MeterWriter:
    """One writer task; :meth:`add` may be called from any number of sessions."""

    def __init__(
        self,
        repository: Repository,
        *,
        max_batch: int = MAX_BATCH,
        max_delay_s: float = MAX_DELAY_S,
        before_commit: BeforeCommit | None = None,
    ) -> None:
        self._repo = repository
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        # Runs inside each batch's unit of work, before its commit (tests hold or fail it).
        self.before_commit = before_commit
        # A future per MeterValues; None for a last-seen touch nobody waits for.
        self._queue: deque[tuple[MeterBatchItem, asyncio.Future[list[str | None]] | None]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Counters for tests and benchmarks.
        self.batches = 0
        self.messages = 0
        self.largest_batch = 0
        # How long the last commits took (ms, from the batch taken to its commit done):
        # what a MeterValues waits for beyond its batch's filling.
        self.commit_ms: deque[float] = deque(maxlen=10_000)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="meter-writer")

    async def close(self) -> None:
        """Store what is queued, then stop; later messages are refused (StoreError)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def add(
        self,
        cp_id: str,
        connector_id: int,
        transaction_id: int | None,
        samples: Sequence[SampledValue],
    ) -> list[str | None]:
        """Queue one MeterValues; return each sample's flag once it is committed.

        Raises StoreError (or the store's error) if it was not stored.
        """
        if self._closed or self._task is None:
            raise StoreError("the meter writer is not running")
        item = MeterBatchItem(cp_id, connector_id, transaction_id, tuple(samples))
        future: asyncio.Future[list[str | None]] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wake.set()
        # A handler cancelled while waiting (its connection closed) leaves the write going.
        return await asyncio.shield(future)

    def commit_times_ms(self) -> dict[str, float | None]:
        """p50 / p99 / max of the last commits' durations (ms)."""
        ordered = sorted(self.commit_ms)
        if not ordered:
            return {"p50": None, "p99": None, "max": None}

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

        return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 1)}

    def touch(self, cp_id: str) -> None:
        """The charger was heard from: its last_seen_at goes with the next commit. Nobody
        waits for it (a Heartbeat's answer acknowledges no data; waiting for a commit
        and its disk flush was most of every Heartbeat's round trip)."""
        if self._closed or self._task is None:
            return
        self._queue.append((MeterBatchItem(cp_id, 0, None, ()), None))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._queue:
                self._wake.clear()
                if self._closed:
                    return
                continue
            if len(self._queue) < self._max_batch and self._max_delay_s > 0 and not self._closed:
                await asyncio.sleep(self._max_delay_s)
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            await self._write(batch)

    async def _write(
        self, batch: list[tuple[MeterBatchItem, asyncio.Future[list[str | None]] | None]]
    ) -> None:
        items = [item for item, _ in batch]
        began = time.perf_counter()
        try:
            results = await self._repo.add_meter_values_batch(
                items, before_commit=self.before_commit
            )
        except Exception as exc:
            if len(batch) == 1:
                future = batch[0][1]
                if future is None:
                    log.warning(
                        "last seen not stored",
                        extra={"cp_id": items[0].charge_point_id, "error": str(exc)},
                    )
                else:
                    _fail(future, exc)
                return
            log.warning(
                "meter values batch failed; storing its messages one by one",
                extra={"messages": len(batch), "error": f"{type(exc).__name__}: {exc}"},
            )
            for one in batch:
                await self._write([one])
            return
        self.commit_ms.append((time.perf_counter() - began) * 1000)
        self.batches += 1
        self.messages += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        for (_, future), flags in zip(batch, results, strict=True):
            if future is not None and not future.done():
                future.set_result(flags)


def _fail(future: asyncio.Future[list[str | None]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        # Retrieved even when its handler is gone (closed connection).
        future.add_done_callback(lambda f: f.exception())
