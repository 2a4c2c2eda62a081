"""Several ``csms serve`` instances on one PostgreSQL database (issue 12 item 4).

    .venv/bin/python scripts/bench_cluster.py [--instances 1 2 3] [--chargers 200]
        [--sites 4] [--duration 10] [--rate 0] [--takeovers 3] [--database-url URL]

Without ``--database-url`` a throwaway PostgreSQL 15 server is started (``initdb`` in a
temporary directory; as root it runs as the ``postgres`` user).

For each instance count: a fresh database with ``--chargers`` stations spread over
``--sites`` sites (``scripts/bench_load.py``'s provisioning), the instances, a TCP
balancer in front of them (``virtual_chargers.link.Balancer``, its own process) and
``bench_load.py``'s load generator against the balancer: MeterValues acknowledged per
second, p50 / p99 round trip, every instance's CPU, and what went over LISTEN/NOTIFY
(from each instance's ``/healthz``).

``--takeovers M`` (after the last instance count, with one site so that every charger
is the killed leader's site's): M times, SIGKILL the instance that leads site 1, lower
the fuse at the same moment (what ``csms site set`` does) and time (a) until another
instance holds the site's lease, (b) until every charger still connected holds its new
limit. The generator's light chargers do not reconnect, so those that were on the killed
instance are counted apart. The killed instance is started again before the next round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_load  # noqa: E402

from scripts.csms_process import start_csms  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")


# =====================================================================  PostgreSQL
def _as_postgres(*argv: str) -> None:
    command = list(argv)
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)


class Postgres:
    """A throwaway PostgreSQL 15 server on 127.0.0.1."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="bench-cluster-pg-"))
        self.data = self.base / "data"
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.data, "postgres")
        self.port = bench_load.free_port()
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "gg")
        _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.data / "log"),
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=200",
            "start",
        )
        self._n = 0

    def new_database(self) -> str:
        self._n += 1
        name = f"bench{self._n}"
        _as_postgres(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "gg", name
        )
        return f"postgresql+asyncpg://gg@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


async def _spread_over_sites(url: str, sites: int) -> None:
    from sqlalchemy import select, update

    from csms.store import models as m
    from csms.store.engine import create_engine, create_sessionmaker
    from csms.store.repository import Repository

    engine = create_engine(url)
    try:
        repo = Repository(create_sessionmaker(engine))
        site_one = await repo.site_config()
        for n in range(2, sites + 1):
            await repo.add_site(
                f"site{n}", fuse_limit_a=site_one.fuse_limit_a, margin_a=0.0, strategy="equal"
            )
        async with create_sessionmaker(engine)() as s, s.begin():
            ids = sorted((await s.execute(select(m.ChargePoint.id))).scalars().all())
            # Shuffled: not in step with the balancer's turns (every site's chargers on
            # every instance, as behind a real balancer).
            random.Random(1).shuffle(ids)
            for i, cp_id in enumerate(ids):
                site_id = i % sites + 1
                await s.execute(
                    update(m.ChargePoint).where(m.ChargePoint.id == cp_id).values(site_id=site_id)
                )
                await s.execute(
                    update(m.IdTag)
                    .where(m.IdTag.id_tag == cp_id.replace("LOAD", "TAG"))
                    .values(site_id=site_id)
                )
    finally:
        await engine.dispose()


async def _leases(url: str) -> tuple[set[str], dict[int, str]]:
    import asyncpg
    from sqlalchemy.engine import make_url

    from csms.cluster import asyncpg_dsn, read_leases

    connection = await asyncpg.connect(asyncpg_dsn(make_url(url)))
    try:
        return await read_leases(connection)
    finally:
        await connection.close()


def _postgres_cpu(data: Path | None) -> float:
    """CPU seconds of the benchmark's PostgreSQL server (the postmaster in ``data`` and its
    children); 0 for a server given by --database-url."""
    if data is None:
        return 0.0
    try:
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            ppid = int(status.split("PPid:")[1].split()[0])
            if int(entry.name) == postmaster or ppid == postmaster:
                total += bench_load.cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


# =====================================================================  processes
class Instance:
    def __init__(self, url: str, workdir: Path, *, log_level: str) -> None:
        self.url = url
        self.port = bench_load.free_port()
        self.proc = start_csms(
            url,
            self.port,
            1.0,
            workdir / f"csms-{self.port}.log",
            clock_start=None,
            log_level=log_level,
        )

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10) as r:
            return dict(json.loads(r.read()))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_balancer(ports: list[int]) -> tuple[subprocess.Popen[str], int]:
    port = bench_load.free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "balance",
            "--port",
            str(port),
            "--targets",
            ",".join(str(p) for p in ports),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"
    return proc, port


async def balance(port: int, targets: list[int]) -> None:
    from virtual_chargers.link import Balancer

    balancer = Balancer([("127.0.0.1", p) for p in targets])
    balancer._server = await asyncio.start_server(balancer._accept, "127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.Event().wait()


def _generator(args: argparse.Namespace, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_load.py"),
            "generate",
            "--url",
            url,
            "--chargers",
            str(args.chargers),
            "--rate",
            str(args.rate),
            "--timeout",
            "30",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


# =====================================================================  runs
def run_instances(
    args: argparse.Namespace,
    url: str,
    count: int,
    workdir: Path,
    *,
    sites: int,
    takeover: bool = False,
) -> dict[str, Any]:
    fuse_a = args.chargers * bench_load.MAX_CURRENT_A
    asyncio.run(bench_load.provision(url, args.chargers, fuse_a, "equal"))
    asyncio.run(_spread_over_sites(url, sites))
    instances = [Instance(url, workdir, log_level=args.log_level) for _ in range(count)]
    balancer, port = start_balancer([i.port for i in instances])
    gen = _generator(args, f"ws://127.0.0.1:{port}/ocpp")
    try:
        # Wait until the sites are shared out (one instance hands one over every 5 s).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alive, leaders = asyncio.run(_leases(url))
            if len(alive) == count and len(leaders) == sites:
                share = -(-sites // count)
                if max(list(leaders.values()).count(i) for i in alive) <= share:
                    break
            time.sleep(0.5)
        ready = bench_load.read_event(gen, args.setup_timeout)
        time.sleep(args.warmup)
        health0 = [i.health().get("cluster", {}) for i in instances]
        bench_load.tell(gen, "measure")
        cpu0 = [bench_load.cpu_seconds(i.proc.pid) for i in instances]
        db_cpu0 = _postgres_cpu(args.pg_data)
        t0 = time.monotonic()
        time.sleep(args.duration)
        cpu1 = [bench_load.cpu_seconds(i.proc.pid) for i in instances]
        t1 = time.monotonic()
        bench_load.tell(gen, "report")
        report = bench_load.read_event(gen, 60)
        health1 = [i.health().get("cluster", {}) for i in instances]
        elapsed = t1 - t0
        db_cpu = _postgres_cpu(args.pg_data) - db_cpu0
        relayed = sum(
            h1.get("messages_sent", 0) - h0.get("messages_sent", 0)
            for h0, h1 in zip(health0, health1, strict=True)
        )
        sent = sum(
            h1.get("notifies_sent", 0) - h0.get("notifies_sent", 0)
            for h0, h1 in zip(health0, health1, strict=True)
        )
        result: dict[str, Any] = {
            "instances": count,
            "sites": sites,
            "chargers": args.chargers,
            "ready": ready["ready"],
            "connected": report["connected"],
            "meter_values_per_s": report["acked"] / report["elapsed_s"],
            "p50_ms": report["p50_ms"],
            "p99_ms": report["p99_ms"],
            "errors": report["errors"],
            "cpu_share_per_instance": [
                round((b - a) / elapsed, 2) for a, b in zip(cpu0, cpu1, strict=True)
            ],
            "cpu_ms_per_message": 1000 * (sum(cpu1) - sum(cpu0)) / max(1, report["answered"]),
            "notifies_per_s": sent / elapsed,
            "relayed_per_s": relayed / elapsed,
            "postgres_cpu_share": db_cpu / elapsed,
            "leads": [h.get("leads_sites") for h in health1],
        }
        if takeover:
            result["takeovers"] = takeovers(args, url, instances, gen, workdir)
        bench_load.tell(gen, "stop")
        gen.wait(60)
        return result
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
        balancer.kill()
        balancer.wait()
        for instance in instances:
            instance.stop()


def takeovers(
    args: argparse.Namespace,
    url: str,
    instances: list[Instance],
    gen: subprocess.Popen[str],
    workdir: Path,
) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    fuse_a = args.chargers * bench_load.MAX_CURRENT_A
    for n in range(args.takeovers):
        _, leaders = asyncio.run(_leases(url))
        victim_id = leaders[1]
        pid = int(victim_id.split(":")[-2])
        victim = next(i for i in instances if i.proc.pid == pid)
        on_victim = victim.health()["connected_charge_points"]
        # Lower each round: a change every remaining charger must make (the chargers of
        # killed instances never come back here and stay reserved at what they hold).
        fuse_a = args.chargers * (10.0 - n)
        killed = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        t0 = asyncio.run(bench_load.set_fuse(url, fuse_a))
        taken: float | None = None
        while time.monotonic() - killed < 30:
            _, now_leading = asyncio.run(_leases(url))
            if now_leading.get(1) not in (None, victim_id):
                taken = time.monotonic() - killed
                break
            time.sleep(0.05)
        time.sleep(args.control_wait)
        bench_load.tell(gen, f"limits {t0}")
        limits = bench_load.read_event(gen, 60)
        rounds.append(
            {
                "lease_taken_s": taken,
                "chargers_on_killed_instance": on_victim,
                "limits_changed": limits["changed"],
                "all_limits_s_after_kill": (
                    None if limits["last_s"] is None else limits["last_s"] + (t0 - killed)
                ),
            }
        )
        print(f"    takeover {n + 1}: {rounds[-1]}", flush=True)
        victim.stop()
        instances[instances.index(victim)] = Instance(url, workdir, log_level=args.log_level)
        time.sleep(6)  # the sites are shared out again
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    bal = sub.add_parser("balance")
    bal.add_argument("--port", type=int, required=True)
    bal.add_argument("--targets", required=True)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--chargers", type=int, default=200)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.0, help="total MeterValues/s (0: max)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--setup-timeout", type=float, default=300.0)
    parser.add_argument("--takeovers", type=int, default=0)
    parser.add_argument("--control-wait", type=float, default=10.0)
    parser.add_argument("--database-url", help="a PostgreSQL server's URL (any database)")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keep-logs", help="copy the instances' logs into this directory")
    args = parser.parse_args(argv)
    if args.command == "balance":
        asyncio.run(balance(args.port, [int(p) for p in args.targets.split(",")]))
        return 0
    bench_load.raise_open_files()
    print(
        f"bench_cluster: {args.chargers} chargers over {args.sites} sites, "
        + ("MeterValues back to back" if args.rate <= 0 else f"{args.rate:g} MeterValues/s")
        + f", {args.duration:g} s measured; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    postgres = None if args.database_url else Postgres()
    args.pg_data = postgres.data if postgres is not None else None
    results = []
    try:
        runs = [(count, args.sites, False) for count in args.instances]
        if args.takeovers:
            runs.append((max(2, args.instances[-1]), 1, True))
        for count, sites, takeover in runs:
            url = postgres.new_database() if postgres is not None else args.database_url
            result = run_instances(args, url, count, workdir, sites=sites, takeover=takeover)
            results.append(result)
            print(
                f"  {count} instance(s): {result['meter_values_per_s']:.0f} MeterValues/s, "
                f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
                f"errors {result['errors']}, CPU {result['cpu_share_per_instance']} "
                f"({result['cpu_ms_per_message']:.2f} ms/message), "
                f"PostgreSQL {result['postgres_cpu_share']:.2f} of a core, "
                f"{result['relayed_per_s']:.0f} messages/s relayed in "
                f"{result['notifies_per_s']:.0f} NOTIFY/s, leads {result['leads']}",
                flush=True,
            )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        if postgres is not None:
            postgres.stop()
        if args.keep_logs:
            shutil.copytree(workdir, args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
