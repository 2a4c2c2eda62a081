"""Load benchmark of one ``csms serve`` process against a bare websockets echo (issue 12).

    .venv/bin/python scripts/bench_load.py [--chargers 100] [--duration 10] [--rate 0]
        [--control] [--idle] [--database-url URL] [--no-echo] [--json FILE]
        [--profile FILE] [--stalls FILE]

Starts ``csms serve`` (a real process, a fresh SQLite file unless ``--database-url``
names a PostgreSQL database) and, as a SEPARATE process, a load generator of N light
charge points: raw ``websockets`` and JSON frames, not the ``ocpp`` package, so that the
generator costs little. Each one boots (again after the interval while Pending), sends
StatusNotification and StartTransaction, then MeterValues (energy register, power, three
phase currents) back to back (``--rate 0``) or at a total rate of ``--rate`` messages/s,
and answers every call of the central system (SetChargingProfile Accepted, the time and
limit recorded). Reported: connections held, MeterValues acknowledged per second, p50 /
p99 round trip, the CSMS's CPU seconds and resident memory (total and per connection),
errors. The same generator then runs against a bare ``websockets`` JSON echo server
(canned answers, another process) and the ratio of the two is printed.

``--control``: after the measured window, the site's fuse limit is changed the way an
operator does it (what ``csms site set --fuse-limit-a`` does: validate, update the
settings row, commit; the controller notices within its poll second) and the time is
measured until every charger holds its new TxProfile limit (each charger records when
its SetChargingProfile arrived; the clock is the shared ``CLOCK_MONOTONIC``; t0 = just
after the commit).

``--idle``: many idle connections: each charger boots, says Available, and then sends a
Heartbeat and a MeterValues once every ``--interval`` seconds (60), spread evenly; the
report is the memory per connection and the round trips. Raise the chargers to 2,000 -
10,000 (the soft open-files limit is raised in both processes up to the hard one).

Internal sub-commands: ``generate`` (the load generator) and ``echo`` (the echo server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_CURRENT_A = 16.0
# What a light charge point does not implement: it answers CALLERROR NotSupported, as many
# a cheap wallbox does for Local Auth List Management. (An empty CALLRESULT, what it sent
# before, is an invalid GetLocalListVersion answer: the CSMS asked every charger again
# every 2 s, work a real fleet does not cause.)
UNSUPPORTED_ACTIONS = frozenset({"GetLocalListVersion", "SendLocalList"})
VOLTAGE_V = 230.0


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# =====================================================================  generator
@dataclass
class Stats:
    rtts_ms: list[float] = field(default_factory=list)
    # The same round trips per action (Heartbeat, MeterValues, ...).
    by_action: dict[str, list[float]] = field(default_factory=dict)
    acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    measuring: bool = False

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class CallFailedError(Exception):
    pass


class LightChargePoint:
    """One charge point: one connection, one outstanding CALL, answers the CSMS's calls."""

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.id = f"LOAD{index:05d}"
        self.index = index
        self.ws: Any = None
        self.counter = 0
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.transaction_id: int | None = None
        self.limit_a = MAX_CURRENT_A
        # (monotonic time, limit) of every TxProfile received.
        self.limits: list[tuple[float, float]] = []
        self.energy_wh = 1000.0
        self.last_meter = time.monotonic()
        self.connected = False
        self.ready = False

    async def call(self, action: str, payload: dict[str, Any]) -> Any:
        self.counter += 1
        message_id = f"{self.counter}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Read even when nobody awaits it any more (a loop cancelled at the end).
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.pending[message_id] = future
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        try:
            return await asyncio.wait_for(future, self.gen.timeout_s)
        except TimeoutError:
            raise CallFailedError("Timeout") from None
        finally:
            self.pending.pop(message_id, None)

    async def reader(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                kind = frame[0]
                if kind == 3 or kind == 4:
                    future = self.pending.get(frame[1])
                    if future is not None and not future.done():
                        if kind == 3:
                            future.set_result(frame[2])
                        else:
                            future.set_exception(CallFailedError(f"CALLERROR {frame[2]}"))
                elif kind == 2:
                    if frame[2] in UNSUPPORTED_ACTIONS:
                        answer: list[Any] = [4, frame[1], "NotSupported", "", {}]
                    else:
                        answer = [3, frame[1], self.answer(frame[2], frame[3])]
                    await self.ws.send(json.dumps(answer))
        except Exception:
            pass
        finally:
            self.connected = False
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(CallFailedError("ConnectionClosed"))

    def answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "SetChargingProfile":
            profile = payload.get("csChargingProfiles", {})
            if profile.get("chargingProfilePurpose") == "TxProfile":
                periods = profile.get("chargingSchedule", {}).get("chargingSchedulePeriod", [])
                if periods:
                    limit = float(periods[0]["limit"])
                    if profile.get("chargingSchedule", {}).get("chargingRateUnit") == "W":
                        limit = limit / VOLTAGE_V / 3
                    self.limit_a = limit
                    self.limits.append((time.monotonic(), limit))
            return {"status": "Accepted"}
        if action == "GetConfiguration":
            return {
                "configurationKey": [
                    {
                        "key": "ChargingScheduleAllowedChargingRateUnit",
                        "readonly": True,
                        "value": "Current",
                    },
                    {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
                    {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "8"},
                    {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "24"},
                ]
            }
        if action in ("ClearChargingProfile",):
            return {"status": "Accepted"}
        if action in ("ChangeConfiguration", "RemoteStartTransaction", "RemoteStopTransaction"):
            return {"status": "Rejected"}
        if action == "GetCompositeSchedule":
            return {"status": "Rejected"}
        if action == "TriggerMessage":
            return {"status": "NotImplemented"}
        return {}

    def meter_payload(self) -> dict[str, Any]:
        now = time.monotonic()
        current = max(0.0, min(self.limit_a, MAX_CURRENT_A) - 0.3) if self.transaction_id else 0.0
        power = current * VOLTAGE_V * 3
        self.energy_wh += power * (now - self.last_meter) / 3600
        self.last_meter = now
        sampled = [
            {
                "value": f"{self.energy_wh:.2f}",
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
                "context": "Sample.Periodic",
            },
            {
                "value": f"{power:.0f}",
                "measurand": "Power.Active.Import",
                "unit": "W",
                "context": "Sample.Periodic",
            },
        ] + [
            {
                "value": f"{current:.1f}",
                "measurand": "Current.Import",
                "phase": phase,
                "unit": "A",
                "context": "Sample.Periodic",
            }
            for phase in ("L1", "L2", "L3")
        ]
        payload: dict[str, Any] = {
            "connectorId": 1,
            "meterValue": [{"timestamp": now_iso(), "sampledValue": sampled}],
        }
        if self.transaction_id is not None:
            payload["transactionId"] = self.transaction_id
        return payload

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            f"{self.gen.url}/{self.id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            compression=None,
            ping_interval=None,
            open_timeout=60,
            close_timeout=2,
        )
        self.connected = True
        self.gen.spawn(self.reader())

    async def boot(self) -> None:
        while True:
            answer = await self.call(
                "BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "Light"}
            )
            if answer.get("status") == "Accepted":
                return
            if answer.get("status") != "Pending":
                raise CallFailedError(f"boot {answer.get('status')}")
            await asyncio.sleep(float(answer.get("interval") or 5))

    async def setup(self, start_transaction: bool) -> None:
        async with self.gen.opening:
            await self.open()
        await self.boot()
        status = "Preparing" if start_transaction else "Available"
        await self.call(
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": status, "timestamp": now_iso()},
        )
        if start_transaction:
            answer = await self.call(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": f"TAG{self.index:05d}",
                    "meterStart": 1000,
                    "timestamp": now_iso(),
                },
            )
            self.transaction_id = int(answer["transactionId"])
            self.last_meter = time.monotonic()  # the register counts from meterStart
            await self.call(
                "StatusNotification",
                {
                    "connectorId": 1,
                    "errorCode": "NoError",
                    "status": "Charging",
                    "timestamp": now_iso(),
                },
            )
        self.ready = True

    async def timed(self, action: str, payload: dict[str, Any]) -> None:
        stats = self.gen.stats
        counted = stats.measuring
        began = time.monotonic()
        try:
            await self.call(action, payload)
        except CallFailedError as exc:
            if counted:
                stats.error(str(exc))
            return  # a lost link ends the charger's loop (`connected` is False then)
        if counted and stats.measuring:
            rtt_ms = (time.monotonic() - began) * 1000
            stats.rtts_ms.append(rtt_ms)
            stats.by_action.setdefault(action, []).append(rtt_ms)
            if action == "MeterValues":
                stats.acked += 1

    async def active_loop(self, period_s: float) -> None:
        """MeterValues back to back (period 0) or one every ``period_s`` seconds."""
        next_at = time.monotonic() + random.uniform(0, period_s)
        while self.connected:
            if period_s > 0:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at = max(next_at + period_s, time.monotonic() - period_s)
            await self.timed("MeterValues", self.meter_payload())

    async def idle_loop(self, interval_s: float) -> None:
        await asyncio.sleep(random.uniform(0, interval_s))
        beat = True
        while self.connected:
            if beat:
                await self.timed("Heartbeat", {})
            else:
                await self.timed("MeterValues", self.meter_payload())
            beat = not beat
            await asyncio.sleep(interval_s / 2)


class Generator:
    def __init__(self, url: str, count: int, timeout_s: float, connect_concurrency: int) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.points = [LightChargePoint(self, i) for i in range(count)]
        self.stats = Stats()
        self.opening = asyncio.Semaphore(connect_concurrency)
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_command() -> str:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


async def generate(args: argparse.Namespace) -> None:
    raise_open_files()
    gen = Generator(args.url, args.chargers, args.timeout, args.connect_concurrency)
    began = time.monotonic()
    results = await asyncio.gather(
        *(cp.setup(start_transaction=not args.idle) for cp in gen.points), return_exceptions=True
    )
    failures: dict[str, int] = {}
    for result in results:
        if isinstance(result, BaseException):
            key = f"{type(result).__name__}: {str(result)[:60]}"
            failures[key] = failures.get(key, 0) + 1
    ready = [cp for cp in gen.points if cp.ready]
    emit(
        {
            "event": "ready",
            "ready": len(ready),
            "setup_s": round(time.monotonic() - began, 1),
            "setup_failures": failures,
        }
    )
    if args.idle:
        loops = [gen.spawn(cp.idle_loop(args.interval)) for cp in ready]
    else:
        period = len(ready) / args.rate if args.rate > 0 else 0.0
        loops = [gen.spawn(cp.active_loop(period)) for cp in ready]
    while True:
        command = await read_command()
        if command == "measure":
            gen.stats = Stats(measuring=True)
            began = time.monotonic()
        elif command == "report":
            stats = gen.stats
            stats.measuring = False
            elapsed = time.monotonic() - began
            emit(
                {
                    "event": "report",
                    "elapsed_s": elapsed,
                    "acked": stats.acked,
                    "answered": len(stats.rtts_ms),
                    "p50_ms": percentile(stats.rtts_ms, 0.50),
                    "p99_ms": percentile(stats.rtts_ms, 0.99),
                    "max_ms": max(stats.rtts_ms, default=None),
                    "by_action": {
                        action: {
                            "count": len(rtts),
                            "p50_ms": percentile(rtts, 0.50),
                            "p99_ms": percentile(rtts, 0.99),
                        }
                        for action, rtts in sorted(stats.by_action.items())
                    },
                    "errors": stats.errors,
                    "connected": sum(1 for cp in gen.points if cp.connected),
                }
            )
        elif command.startswith("limits"):
            t0 = float(command.split()[1])
            emit({"event": "limits", **limit_report(ready, t0)})
        else:  # "stop" or EOF
            break
    for task in loops:
        task.cancel()
    await asyncio.gather(
        *(cp.ws.close() for cp in gen.points if cp.ws is not None), return_exceptions=True
    )


def limit_report(points: list[LightChargePoint], t0: float) -> dict[str, Any]:
    """When each charger got the TxProfile limit it holds now (the first of its final run
    of equal limits after t0); None for one that got no new limit after t0."""
    latencies: list[float] = []
    unchanged = 0
    finals: list[float] = []
    for cp in points:
        after = [(t, limit) for t, limit in cp.limits if t >= t0]
        if not after:
            unchanged += 1
            continue
        final = after[-1][1]
        before = [limit for t, limit in cp.limits if t < t0]
        if before and before[-1] == final:
            unchanged += 1
            continue
        first = next(t for t, limit in reversed_run(after, final))
        latencies.append(first - t0)
        finals.append(final)
    return {
        "changed": len(latencies),
        "unchanged": unchanged,
        "last_s": max(latencies, default=None),
        "p50_s": percentile(latencies, 0.5),
        "final_limits_a": sorted(set(finals))[:5],
    }


def reversed_run(after: list[tuple[float, float]], final: float) -> list[tuple[float, float]]:
    """The trailing run of ``after`` whose limit is ``final``, oldest first."""
    run: list[tuple[float, float]] = []
    for t, limit in reversed(after):
        if limit != final:
            break
        run.append((t, limit))
    return list(reversed(run))


# =====================================================================  echo server
async def echo_server(args: argparse.Namespace) -> None:
    """A bare websockets server: parse the JSON, answer the CALL from a canned table."""
    from websockets.asyncio.server import serve

    raise_open_files()
    transaction = 0

    async def handler(ws: Any) -> None:
        nonlocal transaction
        async for raw in ws:
            frame = json.loads(raw)
            if frame[0] != 2:
                continue
            action = frame[2]
            if action == "BootNotification":
                payload: dict[str, Any] = {
                    "status": "Accepted",
                    "currentTime": now_iso(),
                    "interval": 60,
                }
            elif action == "StartTransaction":
                transaction += 1
                payload = {"transactionId": transaction, "idTagInfo": {"status": "Accepted"}}
            elif action == "Heartbeat":
                payload = {"currentTime": now_iso()}
            else:
                payload = {}
            await ws.send(json.dumps([3, frame[1], payload]))

    async with serve(handler, "127.0.0.1", args.port, subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
        print("ready", flush=True)
        await asyncio.Future()


# =====================================================================  orchestrator
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)


async def provision(url: str, chargers: int, fuse_a: float, strategy: str) -> None:
    """Stations (unsecured: no scrypt per login in the figures) and one tag each, in bulk."""
    from sqlalchemy import update

    from csms.store import migrate
    from csms.store import models as m
    from csms.store.engine import create_engine, create_sessionmaker
    from csms.store.repository import Repository

    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        repo = Repository(create_sessionmaker(engine))
        await repo.site_config()
        now = repo.now()
        async with create_sessionmaker(engine)() as s, s.begin():
            await s.execute(
                update(m.SiteSettings).values(fuse_limit_a=fuse_a, margin_a=0.0, strategy=strategy)
            )
            for i in range(chargers):
                s.add(
                    m.ChargePoint(
                        id=f"LOAD{i:05d}",
                        security_profile=0,
                        max_current_a=MAX_CURRENT_A,
                        phases=3,
                        wiring="L1L2L3",
                        min_current_a=6.0,
                        only_stack_level_0=False,
                        rate_unit="A",
                        auto_registered=False,
                        created_at=now,
                        wiring_set_by="manager",
                    )
                )
                s.add(m.IdTag(id_tag=f"TAG{i:05d}", created_at=now))
    finally:
        await engine.dispose()


class Target:
    """The server under test: ``csms serve`` or the echo server, a child process."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        health_url: str | None = None,
    ) -> None:
        self.name = name
        self.health_url = health_url
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def health(self) -> dict[str, Any]:
        assert self.health_url is not None
        with urllib.request.urlopen(self.health_url, timeout=10) as response:
            return dict(json.loads(response.read()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def read_event(gen: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    import select

    assert gen.stdout is not None
    ready, _, _ = select.select([gen.stdout], [], [], timeout_s)
    if not ready:
        raise RuntimeError(f"the generator said nothing within {timeout_s:.0f} s")
    line = gen.stdout.readline()
    if not line:
        raise RuntimeError("the generator ended early (see its stderr)")
    return dict(json.loads(line))


def tell(gen: subprocess.Popen[str], command: str) -> None:
    assert gen.stdin is not None
    gen.stdin.write(command + "\n")
    gen.stdin.flush()


def run_against(
    args: argparse.Namespace, target: Target, ws_url: str, *, control: Any = None
) -> dict[str, Any]:
    pid = target.proc.pid
    rss_before = rss_bytes(pid)
    argv = [
        sys.executable,
        __file__,
        "generate",
        "--url",
        ws_url,
        "--chargers",
        str(args.chargers),
        "--rate",
        str(args.rate),
        "--interval",
        str(args.interval),
        "--connect-concurrency",
        str(args.connect_concurrency),
        "--timeout",
        str(args.timeout),
    ] + (["--idle"] if args.idle else [])
    gen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    gen_pid = gen.pid
    try:
        ready = read_event(gen, args.setup_timeout)
        time.sleep(args.warmup)
        tell(gen, "measure")
        if args.stalls and target.name == "csms":
            target.proc.send_signal(signal.SIGUSR1)  # scripts/loop_stalls.py: start afresh
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        gen_cpu0 = cpu_seconds(gen_pid)
        profiler = None
        if args.profile and target.name == "csms" and args.profile_phase == "measure":
            # py-spy (pip install py-spy) samples the server during the measured window.
            profiler = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(int(args.duration)),
                    "-r",
                    "200",
                    "-f",
                    "raw",
                    "-o",
                    args.profile,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        time.sleep(args.duration)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        gen_cpu1 = cpu_seconds(gen_pid)
        tell(gen, "report")
        report = read_event(gen, 60)
        if profiler is not None:
            profiler.wait(60)
        rss_after = rss_bytes(pid)
        health = target.health() if target.health_url else {}
        result: dict[str, Any] = {
            "target": target.name,
            "chargers": args.chargers,
            "ready": ready["ready"],
            "setup_s": ready["setup_s"],
            "setup_failures": ready["setup_failures"],
            "connected": report["connected"],
            "meter_values_per_s": report["acked"] / report["elapsed_s"],
            "answers_per_s": report["answered"] / report["elapsed_s"],
            "p50_ms": report["p50_ms"],
            "p99_ms": report["p99_ms"],
            "max_ms": report["max_ms"],
            "by_action": report.get("by_action", {}),
            "errors": report["errors"],
            "cpu_s": cpu1 - cpu0,
            "cpu_share": (cpu1 - cpu0) / (t1 - t0),
            "generator_cpu_share": (gen_cpu1 - gen_cpu0) / (t1 - t0),
            "cpu_ms_per_message": (
                1000 * (cpu1 - cpu0) / report["answered"] if report["answered"] else None
            ),
            "meter_writer": health.get("meter_writer"),
            "rss_mb": rss_after / 2**20,
            "rss_kb_per_connection": (
                (rss_after - rss_before) / 1024 / report["connected"]
                if report["connected"]
                else None
            ),
        }
        if control is not None:
            if args.profile and args.profile_phase == "control":
                profiler = subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "-p",
                        str(pid),
                        "-d",
                        str(int(args.control_wait)),
                        "-r",
                        "200",
                        "-f",
                        "raw",
                        "-o",
                        args.profile,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            result["control"] = control(gen)
            if profiler is not None:
                profiler.wait(60)
        tell(gen, "stop")
        gen.wait(60)
        return result
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()


async def set_fuse(url: str, fuse_a: float) -> float:
    """What ``csms site set --fuse-limit-a`` does (validate, update, commit); returns the
    monotonic time just after the commit."""
    from csms.settings import validate_site_update
    from csms.store.engine import create_engine, create_sessionmaker
    from csms.store.repository import Repository

    engine = create_engine(url)
    try:
        repo = Repository(create_sessionmaker(engine))
        clean = validate_site_update(await repo.site_config(), {"fuse_limit_a": fuse_a})
        await repo.update_site(**clean)
        return time.monotonic()
    finally:
        await engine.dispose()


def change_fuse(args: argparse.Namespace, url: str, fuse_a: float) -> Any:
    def measure(gen: subprocess.Popen[str]) -> dict[str, Any]:
        t0 = asyncio.run(set_fuse(url, fuse_a))
        time.sleep(args.control_wait)
        tell(gen, f"limits {t0}")
        report = read_event(gen, 60)
        report["new_fuse_a"] = fuse_a
        return report

    return measure


def print_result(result: dict[str, Any]) -> None:
    def f(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    print(
        f"  {result['target']:<6} connections held {result['connected']}/{result['chargers']}"
        f" (setup {result['setup_s']} s), MeterValues acked {result['meter_values_per_s']:.0f}/s,"
        f" answers {result['answers_per_s']:.0f}/s, p50 {f(result['p50_ms'], '.1f')} ms,"
        f" p99 {f(result['p99_ms'], '.1f')} ms, max {f(result['max_ms'], '.0f')} ms"
    )
    print(
        f"         server CPU {result['cpu_s']:.1f} s ({100 * result['cpu_share']:.0f}% of a core,"
        f" {f(result['cpu_ms_per_message'], '.2f')} ms/message), generator"
        f" {100 * result['generator_cpu_share']:.0f}% of a core, RSS {result['rss_mb']:.0f} MB"
        f" ({f(result['rss_kb_per_connection'], '.1f')} KB/connection), errors"
        f" {result['errors'] or 0} setup failures {result['setup_failures'] or 0}"
    )
    if len(result.get("by_action") or {}) > 1:
        print(
            "         round trips: "
            + ", ".join(
                f"{action} p50 {f(a['p50_ms'], '.1f')} / p99 {f(a['p99_ms'], '.1f')} ms"
                for action, a in result["by_action"].items()
            )
        )
    if result.get("meter_writer"):
        w = result["meter_writer"]
        print(
            f"         group commit: {w['messages']} MeterValues in {w['batches']} commits"
            f" ({w['messages'] / max(1, w['batches']):.1f} a commit, at most {w['largest_batch']})"
            + (
                f"; a commit took p50 {w['commit_ms']['p50']} / p99 {w['commit_ms']['p99']}"
                f" / max {w['commit_ms']['max']} ms"
                if w.get("commit_ms")
                else ""
            )
        )
    if "control" in result:
        c = result["control"]
        print(
            f"         control: fuse -> {c['new_fuse_a']:g} A, {c['changed']} chargers got a new"
            f" limit ({c['unchanged']} not) {c['final_limits_a']}, the last after"
            f" {f(c['last_s'], '.2f')} s (p50 {f(c['p50_s'], '.2f')} s)"
        )


def orchestrate(args: argparse.Namespace) -> int:
    soft = raise_open_files()
    print(
        f"bench_load: {args.chargers} chargers, "
        + (
            f"idle, a Heartbeat and a MeterValues every {args.interval:g} s each"
            if args.idle
            else ("MeterValues back to back" if args.rate <= 0 else f"{args.rate:g} MeterValues/s")
        )
        + f", {args.duration:g} s measured; {os.cpu_count()} cores, open files {soft},"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench_load_"))
    results: list[dict[str, Any]] = []
    try:
        url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        env = dict(os.environ, GARAGEGRID_DATABASE_URL=url)
        fuse_a = args.chargers * MAX_CURRENT_A
        asyncio.run(provision(url, args.chargers, fuse_a, args.strategy))
        if not args.no_echo:
            port = free_port()
            echo = Target(
                "echo",
                [sys.executable, __file__, "echo", "--port", str(port)],
                env,
                workdir / "echo.log",
            )
            try:
                time.sleep(1.0)
                results.append(run_against(args, echo, f"ws://127.0.0.1:{port}/ocpp"))
            finally:
                echo.stop()
            print_result(results[-1])
        port = free_port()
        csms = Path(sys.executable).with_name("csms")
        argv = [
            str(csms),
            "--log-level",
            args.log_level,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ] + (["--no-controller"] if args.no_controller else [])
        if args.stalls:
            # The same server under scripts/loop_stalls.py: event-loop lag and stall stacks.
            argv = [
                sys.executable,
                str(ROOT / "scripts" / "loop_stalls.py"),
                str(Path(args.stalls).resolve()),
                "--",
                *argv[1:],
            ]
        server = Target("csms", argv, env, workdir / "csms.log", f"http://127.0.0.1:{port}/healthz")
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            control = (
                change_fuse(args, url, min(args.chargers * 10.0, 4000.0)) if args.control else None
            )
            results.append(
                run_against(args, server, f"ws://127.0.0.1:{port}/ocpp", control=control)
            )
        finally:
            server.stop()
            if args.keep_log:
                shutil.copy(workdir / "csms.log", args.keep_log)
        print_result(results[-1])
        if len(results) == 2 and results[0]["answers_per_s"]:
            ratio = results[1]["answers_per_s"] / results[0]["answers_per_s"]
            print(f"  ratio csms/echo (answers per second): {ratio:.2f}")
            for r in results:
                r["ratio"] = ratio
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    gen = sub.add_parser("generate")
    gen.add_argument("--url", required=True)
    echo = sub.add_parser("echo")
    echo.add_argument("--port", type=int, required=True)
    for p in (parser, gen):
        p.add_argument("--chargers", type=int, default=100)
        p.add_argument("--rate", type=float, default=0.0, help="total MeterValues/s (0: max)")
        p.add_argument("--idle", action="store_true")
        p.add_argument("--interval", type=float, default=60.0, help="idle: s per message pair")
        p.add_argument("--connect-concurrency", type=int, default=50)
        p.add_argument("--timeout", type=float, default=30.0, help="a call's answer timeout")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--setup-timeout", type=float, default=900.0)
    parser.add_argument("--database-url", help="e.g. postgresql+asyncpg://user@host/db")
    parser.add_argument("--no-echo", action="store_true", help="skip the echo baseline")
    parser.add_argument("--no-controller", action="store_true", help="csms serve --no-controller")
    parser.add_argument("--strategy", default="equal", help="the site's strategy (default equal)")
    parser.add_argument("--control", action="store_true", help="measure control latency")
    parser.add_argument("--control-wait", type=float, default=10.0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--keep-log", help="copy csms serve's log here")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--profile", help="py-spy's collapsed stacks of csms serve go here")
    parser.add_argument(
        "--stalls", help="run csms serve under scripts/loop_stalls.py; its report goes here"
    )
    parser.add_argument(
        "--profile-phase",
        choices=("measure", "control"),
        default="measure",
        help="profile the measured window or the fuse change",
    )
    args = parser.parse_args(argv)
    if args.command == "generate":
        asyncio.run(generate(args))
        return 0
    if args.command == "echo":
        asyncio.run(echo_server(args))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
