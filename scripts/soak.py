"""Soak (issue 10, item 7): a virtual garage through a simulated week against `csms serve`.

A fresh SQLite store, the real CSMS as a subprocess (``csms serve`` with load management,
every station registered with a password) on an accelerated clock, and a generated garage
(`csms.scenario.make_garage_scenario`, ``--chargers`` stations, ``--days`` evenings,
nights and days of residents' cars) played by the virtual chargers in this process at the
same ``--speed``. MeterValues every ``--meter-interval`` simulated seconds, heartbeats
every ``--heartbeat`` simulated seconds.

Printed at the start (every charger connected), once per simulated day, and at the end
(every charger gone): the CSMS process's resident memory (VmRSS), its open file
descriptors and threads, the charge points its /healthz counts as connected, and this
process's asyncio tasks. Then the store is audited against the chargers' own meters
(`csms.store.audit.audit_store`): every session closed, meterStop - meterStart the
energy each charger metered, registers never backwards, samples inside their
transaction's readings, none flagged.

    .venv/bin/python scripts/soak.py                    # 100 chargers, 7 days, 720x
    .venv/bin/python scripts/soak.py --chargers 20 --days 1 --speed 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from csms.logs import configure_logging  # noqa: E402
from csms.scenario import make_garage_scenario  # noqa: E402
from csms.store import migrate  # noqa: E402
from csms.store.audit import audit_store  # noqa: E402
from csms.store.engine import create_engine, create_sessionmaker  # noqa: E402
from csms.store.repository import Repository  # noqa: E402
from scripts.csms_process import start_csms  # noqa: E402
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions  # noqa: E402
from virtual_chargers.options import StationOptions  # noqa: E402

T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
PASSWORD = "soak-key-0123456789abcdef"


@dataclass
class Probe:
    label: str
    rss_mib: float
    fds: int
    sockets: int
    threads: int
    connected: int
    fleet_tasks: int

    def line(self) -> str:
        return (
            f"{self.label:<16} CSMS RSS {self.rss_mib:7.1f} MiB  fds {self.fds:4d} (sockets "
            f"{self.sockets:4d})  threads "
            f"{self.threads:3d}  connected {self.connected:4d}  fleet tasks {self.fleet_tasks:5d}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def healthz(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        return dict(json.loads(answer.read()))


def probe(label: str, pid: int, port: int) -> Probe:
    status = proc_status(pid)
    connected = healthz(port).get("connected_charge_points", -1)
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue  # closed meanwhile
    return Probe(
        label,
        int(status["VmRSS"].split()[0]) / 1024,
        len(fds),
        sum(1 for target in fds if target.startswith("socket:")),
        int(status["Threads"]),
        int(connected) if isinstance(connected, int) else -1,
        len(asyncio.all_tasks()),
    )


async def run(args: argparse.Namespace, workdir: Path) -> int:
    garage = make_garage_scenario(args.chargers, seed=args.seed, days=args.days, start=T0)
    url = f"sqlite+aiosqlite:///{workdir / 'soak.db'}"
    engine = create_engine(url)
    repo = Repository(create_sessionmaker(engine))
    await migrate.upgrade(engine)
    await repo.update_site(
        fuse_limit_a=garage.site.fuse_limit_a,
        margin_a=garage.site.margin_a,
        heartbeat_interval_s=args.heartbeat,
    )
    for station in garage.stations:
        await repo.add_charge_point(
            station.id,
            max_current_a=station.max_current_a,
            phases=station.phases,
            wiring="".join(station.wiring),
            password=PASSWORD,
        )
    for tag in sorted({s.id_tag for s in garage.sessions}):
        await repo.add_id_tag(tag)

    port = free_port()
    csms = start_csms(url, port, args.speed, workdir / "csms.log", clock_start=T0)
    pid = csms.pid
    print(
        f"{args.chargers} chargers, {len(garage.sessions)} sessions over {args.days} "
        f"simulated days at {args.speed:g}x (~{garage.horizon_s / args.speed:.0f} s), "
        f"fuse 3x{garage.site.fuse_limit_a:g} A",
        flush=True,
    )
    probes = [probe("CSMS idle", pid, port)]
    print(probes[-1].line(), flush=True)
    fleet = Fleet(
        garage,
        f"ws://127.0.0.1:{port}/ocpp",
        FleetClock(args.speed, T0),
        FleetOptions(
            station=StationOptions(
                password=PASSWORD,
                config={"MeterValueSampleInterval": str(args.meter_interval)},
                response_timeout_real_s=60.0,
            ),
            boot_wait_real_s=120.0,
            shutdown_flush_real_s=120.0,
        ),
    )
    started = time.monotonic()
    fleet_task = asyncio.create_task(fleet.run())
    try:
        await fleet.wait_sessions_started()
        probes.append(probe("start (all in)", pid, port))
        print(probes[-1].line(), flush=True)
        day = 1
        while not fleet_task.done():
            done, _ = await asyncio.wait({fleet_task}, timeout=5.0)
            if done:
                break
            if fleet.sim_elapsed_s() >= day * 86_400:
                probes.append(probe(f"day {day}", pid, port))
                print(probes[-1].line(), flush=True)
                day += 1
        report = fleet_task.result()
        elapsed = time.monotonic() - started
        for _ in range(150):  # up to 30 s for the CSMS to see every connection close
            if not healthz(port).get("connected_charge_points"):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # the CSMS ends its sessions' tasks
        probes.append(probe("end (all gone)", pid, port))
        print(probes[-1].line(), flush=True)
        audit = await audit_store(repo.sessionmaker, report.sessions)
    finally:
        if not fleet_task.done():
            fleet_task.cancel()
            await asyncio.gather(fleet_task, return_exceptions=True)
        csms.send_signal(signal.SIGTERM)
        try:
            csms.wait(30)
        except subprocess.TimeoutExpired:
            csms.kill()
        await engine.dispose()

    start, end = probes[1], probes[-1]
    sent = report.messages_sent
    print()
    print(f"real time                 {elapsed:.0f} s for {report.elapsed_sim_s / 86_400:.2f} days")
    print(
        f"messages                  {sent} sent, {report.messages_answered} answered, "
        f"{report.call_errors} CALLERRORs, {report.timeouts} timeouts, "
        f"{report.reconnects} reconnects"
    )
    print(
        f"sessions                  {len(report.sessions)} ({report.stopped} stopped, "
        f"{report.refused} refused), {report.energy_wh / 1000:.1f} kWh"
    )
    print(
        f"peak site draw            {'/'.join(f'{a:.0f}' for a in report.peak_supply_a)} A "
        f"(fuse {garage.site.fuse_limit_a:g} A); above a charger's limit "
        f"{report.max_over_limit_a:.2f} A"
    )
    print(
        f"CSMS RSS start -> end     {start.rss_mib:.1f} -> {end.rss_mib:.1f} MiB "
        f"({end.rss_mib - start.rss_mib:+.1f}); idle before chargers {probes[0].rss_mib:.1f}"
    )
    print(
        f"CSMS fds start -> end     {start.fds} -> {end.fds} (idle {probes[0].fds}), sockets "
        f"{start.sockets} -> {end.sockets} (idle {probes[0].sockets}); "
        f"threads {start.threads} -> {end.threads}"
    )
    print(f"connected start -> end    {start.connected} -> {end.connected}")
    print(
        f"fleet tasks start -> end  {start.fleet_tasks} -> {end.fleet_tasks} "
        f"(idle {probes[0].fleet_tasks})"
    )
    print(
        f"store                     {audit.transactions} transactions ({audit.open} open, "
        f"{audit.missing} missing, {audit.unknown} unknown, {audit.meter_mismatch} meter "
        f"mismatches); {audit.energy_store_wh / 1000:.3f} kWh stored vs "
        f"{audit.energy_fleet_wh / 1000:.3f} kWh metered"
    )
    print(
        f"register samples          {audit.samples} ({audit.samples_outside} outside their "
        f"transaction, {audit.samples_backwards} backwards, {audit.samples_flagged} flagged;"
        f" span {audit.sample_span_wh / 1000:.3f} kWh); registers backwards between "
        f"transactions {audit.register_backwards}"
    )
    for problem in audit.problems:
        print(f"  ! {problem}")
    idle = probes[0]
    leaks = end.connected != 0 or end.sockets > idle.sockets or end.fleet_tasks > idle.fleet_tasks
    ok = audit.consistent and not leaks and report.call_errors == 0
    print("verdict                   " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--speed", type=float, default=720.0)
    parser.add_argument("--meter-interval", type=int, default=900, help="simulated s")
    parser.add_argument("--heartbeat", type=int, default=3600, help="simulated s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the store and the CSMS log")
    args = parser.parse_args()
    configure_logging("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        return asyncio.run(run(args, workdir))
    finally:
        if args.keep:
            print(f"store and log kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
