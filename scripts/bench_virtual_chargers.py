"""How many virtual chargers one process drives before it falls behind.

For each fleet size: a fresh SQLite file, the real CSMS as a subprocess
(``csms serve --auto-register --speed 100``, load management on) on a free port, and N
virtual chargers in this process, every one charging a car, sending MeterValues every
60 simulated seconds (0.6 s real at 100x). Measured over a steady window after warm-up:

- msgs/s       CALLs answered per real second (all kinds), and MeterValues per second
               against the schedule's N x speed / interval;
- sample lag   how late each MeterValues sample was taken vs its schedule (real ms);
- delivery     from taking the sample to the CSMS's CALLRESULT (real ms);
- loop lag     how late a 50 ms timer in this process fires (real ms);
- CPU          of this process and of the CSMS process (% of one core).

The fleet is "behind" when it delivers under 95 % of the scheduled MeterValues, or the
p95 of sample lag + delivery exceeds 10 % of the sample interval.

    .venv/bin/python scripts/bench_virtual_chargers.py --sizes 10,50,100,200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from csms.ev import CATALOGUE  # noqa: E402
from csms.logs import configure_logging  # noqa: E402
from csms.scenario import Scenario, ScenarioSession, make_garage_scenario  # noqa: E402
from csms.store import migrate  # noqa: E402
from csms.store.engine import create_engine, create_sessionmaker  # noqa: E402
from csms.store.repository import Repository  # noqa: E402
from scripts.csms_process import start_csms  # noqa: E402
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions  # noqa: E402
from virtual_chargers.options import StationOptions  # noqa: E402

T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)


@dataclass
class Result:
    chargers: int
    msgs_per_s: float
    meter_per_s: float
    meter_expected_per_s: float
    sample_lag_p95_ms: float
    delivery_p50_ms: float
    delivery_p95_ms: float
    loop_lag_p95_ms: float
    loop_lag_max_ms: float
    cpu_fleet_pct: float
    cpu_csms_pct: float
    timeouts: int

    interval_real_ms: float = 600.0

    @property
    def verdict(self) -> str:
        """The fleet is behind when its samples are taken late; the system (fleet and
        CSMS) when MeterValues are delivered slower than they are due."""
        if self.sample_lag_p95_ms > 0.1 * self.interval_real_ms:
            return "fleet behind"
        if (
            self.meter_per_s < 0.95 * self.meter_expected_per_s
            or self.delivery_p95_ms > self.interval_real_ms
        ):
            return "CSMS behind"
        return "keeps up"


def p(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def garage(n: int, seed: int) -> Scenario:
    """The stations of a generated garage, every one with a car charging all along."""
    base = make_garage_scenario(n, seed=seed, start=T0)
    rng = random.Random(seed)
    cars = [k for k in CATALOGUE if CATALOGUE[k].battery_kwh >= 40]
    sessions = tuple(
        ScenarioSession(
            station.id,
            f"TAG{i:04d}",
            arrival_s=rng.uniform(0, 60),
            departure_s=10 * 86_400,
            ev=CATALOGUE[rng.choice(cars)],
            soc_start=0.1,
            soc_target=0.9,
        )
        for i, station in enumerate(base.stations)
    )
    return replace(base, sessions=sessions)


async def prepare_database(url: str, scenario: Scenario) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        repo = Repository(create_sessionmaker(engine))
        await repo.update_site(
            fuse_limit_a=scenario.site.fuse_limit_a, margin_a=scenario.site.margin_a
        )
        for station in scenario.stations:
            await repo.add_charge_point(
                station.id,
                max_current_a=station.max_current_a,
                phases=station.phases,
                wiring="".join(station.wiring),
            )
        for session in scenario.sessions:
            await repo.add_id_tag(session.id_tag)
    finally:
        await engine.dispose()


async def serve_null(port: int, speed: float) -> None:
    """A central system that answers every CALL at once: no schema check, no database.

    Isolates the virtual chargers' own cost from the CSMS's (``--csms null``)."""
    import itertools
    import json

    from websockets.asyncio.server import ServerConnection, serve

    from csms.clock import SimClock

    clock = SimClock(speed=speed, start=T0)
    ids = itertools.count(1)
    accepted = {"status": "Accepted"}

    async def handle(connection: ServerConnection) -> None:
        async for raw in connection:
            frame = json.loads(raw)
            if frame[0] != 2:
                continue
            _, message_id, action, _ = frame
            now = clock.now().isoformat().replace("+00:00", "Z")
            result: dict[str, object] = {}
            if action == "BootNotification":
                result = {"currentTime": now, "interval": 300, "status": "Accepted"}
            elif action == "Heartbeat":
                result = {"currentTime": now}
            elif action in ("Authorize", "StopTransaction"):
                result = {"idTagInfo": accepted}
            elif action == "StartTransaction":
                result = {"transactionId": next(ids), "idTagInfo": accepted}
            await connection.send(json.dumps([3, message_id, result]))

    async with serve(handle, "127.0.0.1", port, subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
        await asyncio.Future()


def start_null(port: int, speed: float, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-null", str(port), "--speed", str(speed)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the null central system did not start, see {log}")


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.05)
        samples.append((time.monotonic() - t - 0.05) * 1000)


async def measure(n: int, args: argparse.Namespace, workdir: Path) -> Result:
    scenario = garage(n, args.seed)
    port = free_port()
    if args.csms == "null":
        csms = start_null(port, args.speed, workdir / f"null-{n}.log")
    else:
        url = f"sqlite+aiosqlite:///{workdir / f'bench-{n}.db'}"
        await prepare_database(url, scenario)
        extra = [] if args.controller else ["--no-controller"]
        csms = start_csms(
            url,
            port,
            args.speed,
            workdir / f"csms-{n}.log",
            clock_start=T0,
            extra=["--auto-register", *extra],
            timeout_s=30.0,
        )
    try:
        clock = FleetClock(args.speed, T0)
        options = FleetOptions(
            station=StationOptions(
                config={"MeterValueSampleInterval": str(args.meter_interval)},
                validate_messages=args.validate,
                response_timeout_real_s=30.0,
            ),
            boot_wait_real_s=60.0,
        )
        fleet = Fleet(scenario, f"ws://127.0.0.1:{port}/ocpp", clock, options)
        run = asyncio.create_task(fleet.run())
        await fleet.wait_sessions_started()
        await asyncio.sleep(args.warmup)
        stations = list(fleet.stations.values())
        lag: list[float] = []
        stop = asyncio.Event()
        lag_task = asyncio.create_task(loop_lag(lag, stop))
        answered0 = sum(s.stats.answered for s in stations)
        meter0 = sum(s.stats.sent["MeterValues"] for s in stations)
        lags0 = [len(s.stats.meter_lag_s) for s in stations]
        deliveries0 = [len(s.stats.delivery_real_s) for s in stations]
        cpu0, csms_cpu0, t0 = time.process_time(), cpu_seconds(csms.pid), time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        cpu1, csms_cpu1 = time.process_time(), cpu_seconds(csms.pid)
        answered = sum(s.stats.answered for s in stations) - answered0
        meter = sum(s.stats.sent["MeterValues"] for s in stations) - meter0
        sample_lags = [
            x * 1000 / args.speed
            for s, k in zip(stations, lags0, strict=True)
            for x in list(s.stats.meter_lag_s)[k:]
        ]
        deliveries = [
            x * 1000
            for s, k in zip(stations, deliveries0, strict=True)
            for x in list(s.stats.delivery_real_s)[k:]
        ]
        stop.set()
        await lag_task
        fleet.stop()
        report = await run
        return Result(
            chargers=n,
            msgs_per_s=answered / elapsed,
            meter_per_s=meter / elapsed,
            meter_expected_per_s=n * args.speed / args.meter_interval,
            sample_lag_p95_ms=p(sample_lags, 95),
            delivery_p50_ms=p(deliveries, 50),
            delivery_p95_ms=p(deliveries, 95),
            loop_lag_p95_ms=p(lag, 95),
            loop_lag_max_ms=max(lag, default=float("nan")),
            cpu_fleet_pct=100 * (cpu1 - cpu0) / elapsed,
            cpu_csms_pct=100 * (csms_cpu1 - csms_cpu0) / elapsed,
            timeouts=report.timeouts,
            interval_real_ms=1000 * args.meter_interval / args.speed,
        )
    finally:
        csms.send_signal(signal.SIGTERM)
        try:
            csms.wait(timeout=30)
        except subprocess.TimeoutExpired:
            csms.kill()


def print_table(results: list[Result], *, header: bool = True) -> None:
    titles = (
        f"{'chargers':>8} {'msgs/s':>7} {'MV/s':>6} {'MV due':>6} {'lag p95':>8} "
        f"{'dlv p50':>8} {'dlv p95':>8} {'loop p95':>8} {'loop max':>8} "
        f"{'cpu VC':>6} {'cpu CSMS':>8}  verdict"
    )
    if header:
        print(titles)
    for r in results:
        print(
            f"{r.chargers:>8} {r.msgs_per_s:>7.0f} {r.meter_per_s:>6.0f} "
            f"{r.meter_expected_per_s:>6.0f} {r.sample_lag_p95_ms:>6.1f}ms "
            f"{r.delivery_p50_ms:>6.1f}ms {r.delivery_p95_ms:>6.1f}ms "
            f"{r.loop_lag_p95_ms:>6.1f}ms {r.loop_lag_max_ms:>6.0f}ms "
            f"{r.cpu_fleet_pct:>5.0f}% {r.cpu_csms_pct:>7.0f}%  "
            f"{r.verdict}" + (f" ({r.timeouts} timeouts)" if r.timeouts else ""),
            flush=True,
        )


async def main_async(args: argparse.Namespace) -> None:
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-vc-"))
    try:
        for n in args.sizes:
            result = await measure(n, args, tmp)
            results.append(result)
            print_table([result], header=len(results) == 1)
            if result.verdict != "keeps up" and args.stop_when_behind:
                break
    finally:
        if args.keep:
            print(f"logs and databases kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(
        f"speed {args.speed:g}x, MeterValueSampleInterval {args.meter_interval} s simulated "
        f"({1000 * args.meter_interval / args.speed:.0f} ms real), schema validation "
        f"{'on' if args.validate else 'off'}, central system: "
        + (
            "null (answers at once)"
            if args.csms == "null"
            else f"csms serve, load management {'on' if args.controller else 'off'}"
        )
        + f", {os.cpu_count()} CPUs, window {args.seconds} s"
    )
    print_table(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 25, 50, 100, 200, 400],
    )
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--meter-interval", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window (real)")
    parser.add_argument("--warmup", type=float, default=5.0, help="real seconds before it")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--validate", action="store_true", help="schema-check outgoing messages (slower)"
    )
    parser.add_argument("--stop-when-behind", action="store_true")
    parser.add_argument(
        "--csms",
        choices=("real", "null"),
        default="real",
        help="the real CSMS (default) or a null one that answers at once (fleet cost only)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    parser.add_argument("--serve-null", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-controller",
        dest="controller",
        action="store_false",
        help="run the CSMS without load management (isolates its cost)",
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    if args.serve_null is not None:
        asyncio.run(serve_null(args.serve_null, args.speed))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
