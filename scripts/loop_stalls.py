"""Where the event loop stalls: run ``csms`` with a stall probe (a diagnostic, issue 12).

    .venv/bin/python scripts/loop_stalls.py OUT.json -- --log-level WARNING serve ...

Runs ``csms`` (the arguments after ``--``) in this process with three probes, and writes
OUT.json when it ends (SIGTERM, as ``csms serve`` is stopped):

- lag: a thread asks the event loop every 10 ms to run a no-op
  (``call_soon_threadsafe``) and records how late it ran: what a charger's message waits
  before the loop looks at it (p50 / p99 / max, and a histogram);
- slow callbacks: every loop callback (a task's step, a protocol's data_received, ...)
  that held the loop longer than ``--slow-ms`` (20), counted and summed per task name
  and coroutine;
- garbage collections: count, total and longest pause per generation;
- stacks: while a callback has held the loop longer than ``--sample-after-ms`` (20),
  the thread samples the loop thread's stack every 5 ms; OUT.json gets the folded stacks
  (``frame;frame;frame count``, the input of flamegraph tools) of those samples only:
  a profile of the stalls, not of the whole run.

SIGUSR1 forgets what was seen so far: ``scripts/bench_load.py --stalls OUT.json`` starts
the server this way and sends it SIGUSR1 when the measured window begins.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import atexit
import collections
import contextlib
import gc
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any


class Probe:
    def __init__(self, slow_ms: float, sample_after_ms: float) -> None:
        self.slow_s = slow_ms / 1000
        self.sample_after_s = sample_after_ms / 1000
        self.loop_thread = threading.get_ident()
        self.loop: asyncio.AbstractEventLoop | None = None
        # The callback running now: (start, description) or None.
        self.current: tuple[float, Any] | None = None
        self.lags_ms: list[float] = []
        self.slow: dict[str, list[float]] = collections.defaultdict(list)
        self.stacks: collections.Counter[str] = collections.Counter()
        # Garbage collections per generation: their pauses (ms).
        self.gcs: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_began = 0.0
        self.began = time.monotonic()
        self._stop = threading.Event()

    # ------------------------------------------------------------ loop side
    def install(self) -> None:
        probe = self
        original = asyncio.events.Handle._run

        def _run(handle: asyncio.events.Handle) -> None:
            if probe.loop is None:
                probe.loop = handle._loop  # type: ignore[attr-defined]
            if threading.get_ident() != probe.loop_thread:
                original(handle)
                return
            start = time.perf_counter()
            probe.current = (start, handle)
            try:
                original(handle)
            finally:
                probe.current = None
                took = time.perf_counter() - start
                if took >= probe.slow_s:
                    probe.slow[describe(handle)].append(took * 1000)

        gc.callbacks.append(self._gc)
        asyncio.events.Handle._run = _run  # type: ignore[method-assign,assignment]
        threading.Thread(target=self._watch, name="loop-stall-probe", daemon=True).start()

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
            return
        took_ms = (time.perf_counter() - self._gc_began) * 1000
        self.gcs[int(info["generation"])].append(took_ms)

    # ---------------------------------------------------------- thread side
    def _watch(self) -> None:
        next_ping = time.perf_counter()
        pending: list[float] = []
        while not self._stop.is_set():
            now = time.perf_counter()
            loop = self.loop
            if loop is not None and not loop.is_closed() and now >= next_ping and not pending:
                sent = now
                pending.append(sent)

                def pong(sent: float = sent) -> None:
                    self.lags_ms.append((time.perf_counter() - sent) * 1000)
                    pending.clear()

                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(pong)
                next_ping = now + 0.010
            current = self.current
            if current is not None and now - current[0] >= self.sample_after_s:
                frame = sys._current_frames().get(self.loop_thread)
                if frame is not None:
                    # The callback's task first: SQLAlchemy's greenlets cut the stack there.
                    self.stacks[describe(current[1]) + ";" + fold(frame)] += 1
            time.sleep(0.005)

    def reset(self) -> None:
        """Forget what was seen so far (SIGUSR1: the benchmark's measured window begins)."""
        self.lags_ms = []
        self.slow = collections.defaultdict(list)
        self.stacks = collections.Counter()
        self.gcs = {0: [], 1: [], 2: []}
        self.began = time.monotonic()

    def report(self) -> dict[str, Any]:
        self._stop.set()
        lags = sorted(self.lags_ms)
        slow: list[dict[str, Any]] = sorted(
            (
                {
                    "callback": name,
                    "count": len(times),
                    "total_ms": round(sum(times), 1),
                    "max_ms": round(max(times), 1),
                }
                for name, times in self.slow.items()
            ),
            key=lambda r: -float(r["total_ms"]),
        )
        buckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, math.inf]
        histogram: dict[str, int] = {}
        for lag in lags:
            edge = next(b for b in buckets if lag <= b)
            label = f"<={edge:g}ms" if edge != math.inf else ">2000ms"
            histogram[label] = histogram.get(label, 0) + 1
        return {
            "seconds": round(time.monotonic() - self.began, 1),
            "lag": {
                "samples": len(lags),
                "p50_ms": percentile(lags, 0.5),
                "p99_ms": percentile(lags, 0.99),
                "p999_ms": percentile(lags, 0.999),
                "max_ms": lags[-1] if lags else None,
                "histogram": histogram,
            },
            "gc": {
                f"gen{g}": {
                    "count": len(times),
                    "total_ms": round(sum(times), 1),
                    "max_ms": round(max(times, default=0.0), 1),
                }
                for g, times in self.gcs.items()
            },
            "gc_tracked_objects": len(gc.get_objects()),
            "gc_frozen_objects": gc.get_freeze_count(),
            "slow_callbacks": slow[:60],
            "stall_stacks": [
                {"stack": stack, "samples": count} for stack, count in self.stacks.most_common(200)
            ],
        }


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 2)


def describe(handle: asyncio.events.Handle) -> str:
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        task_name = owner.get_name()
        if task_name.startswith("Task-"):
            task_name = "Task"
        return f"{task_name}:{name}"
    name = getattr(callback, "__qualname__", None) or repr(callback)
    return str(name)


def fold(frame: FrameType | None) -> str:
    names: list[str] = []
    while frame is not None:
        code = frame.f_code
        module = Path(code.co_filename).stem
        names.append(f"{module}.{code.co_qualname}:{frame.f_lineno}")
        frame = frame.f_back
    return ";".join(reversed(names))


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print(__doc__)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--slow-ms", type=float, default=20.0)
    parser.add_argument("--sample-after-ms", type=float, default=20.0)
    args = parser.parse_args(argv[:split])
    probe = Probe(args.slow_ms, args.sample_after_ms)
    probe.install()

    def write() -> None:
        Path(args.out).write_text(json.dumps(probe.report(), indent=1))

    atexit.register(write)
    signal.signal(signal.SIGUSR1, lambda *_: probe.reset())
    from csms.cli import main as csms_main

    return csms_main(argv[split + 1 :])


if __name__ == "__main__":
    raise SystemExit(main())
