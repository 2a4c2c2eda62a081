"""Reconnect storm (issue 10, item 5): N virtual chargers lose their link at once.

A fresh SQLite store, the real CSMS as a subprocess (``csms serve`` with load management,
every station registered with a password, security profile 1), and N virtual chargers in
this process that reach it through a TCP relay (`virtual_chargers.link.LinkCutter`). One
more charger (the probe) connects directly. Every charger charges a car under the
controller's profiles; then the relay resets every connection at once and refuses new
ones for ``--outage`` seconds. Meanwhile the chargers keep charging under the profiles
they hold and queue MeterValues; ``--leave`` of the cars leave (StopTransaction queued)
and on half of those stations a new car starts offline (StartTransaction queued). The
link comes back; each charger reconnects after its jittered back-off (1-2 real s, at most
--reconnect-max), boots (Pending until the controller has set its fail-safe profiles,
then Accepted) and replays its queue.

Printed: chargers, messages queued, replayed and stored, duplicates, lost, seconds from
the link's return until every charger was connected, Accepted, and had its queue
delivered, the fuse model over the profiles the chargers held offline, and the probe's
round trips during the storm.

    .venv/bin/python scripts/bench_storm.py --chargers 500
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from csms.logs import configure_logging  # noqa: E402
from csms.store import migrate  # noqa: E402
from csms.store import models as m  # noqa: E402
from csms.store.engine import create_engine, create_sessionmaker  # noqa: E402
from csms.store.repository import Repository  # noqa: E402
from scripts.csms_process import start_csms  # noqa: E402
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions, percentile  # noqa: E402
from virtual_chargers.link import LinkCutter  # noqa: E402
from virtual_chargers.options import StationOptions  # noqa: E402
from virtual_chargers.storm import (  # noqa: E402
    Ledger,
    StormPlan,
    run_storm,
    storm_garage,
    storm_visits,
    wait_charging,
)

T0 = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
PASSWORD = "bench-storm-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def run(args: argparse.Namespace, workdir: Path) -> int:
    garage = storm_garage(args.chargers + 1, seed=args.seed, start=T0)
    probe_id = garage.stations[0].id
    leaving, arrivals = storm_visits(garage, args.leave, seed=args.seed, skip=[probe_id])
    # A fresh SQLite file, or an empty PostgreSQL database (--database-url).
    url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'storm.db'}"
    engine = create_engine(url)
    repo = Repository(create_sessionmaker(engine))
    await migrate.upgrade(engine)
    await repo.update_site(fuse_limit_a=garage.site.fuse_limit_a, margin_a=garage.site.margin_a)
    print(f"registering {len(garage.stations)} stations (scrypt password hashes)...", flush=True)
    for station in garage.stations:
        await repo.add_charge_point(
            station.id,
            max_current_a=station.max_current_a,
            phases=station.phases,
            wiring="".join(station.wiring),
            password=PASSWORD,
        )
    for tag in [s.id_tag for s in garage.sessions] + [t for _, t in arrivals.values()]:
        await repo.add_id_tag(tag)

    port = free_port()
    csms = start_csms(url, port, args.speed, workdir / "csms.log", clock_start=T0)
    link = LinkCutter("127.0.0.1", port)
    await link.start()
    ledger = Ledger()
    speed = args.speed
    fleet = Fleet(
        garage,
        f"ws://127.0.0.1:{link.port}/ocpp",
        FleetClock(speed, T0),
        FleetOptions(
            station=StationOptions(
                password=PASSWORD,
                config={
                    "MeterValueSampleInterval": str(args.meter_interval),
                    "AllowOfflineTxForUnknownId": "true",
                },
                reconnect_initial_s=1.0 * speed,
                reconnect_max_s=args.reconnect_max * speed,
                unplug_delay_s=1.0,
                response_timeout_real_s=60.0,
                on_delivered=ledger,
            ),
            boot_wait_real_s=args.timeout,
            shutdown_flush_real_s=min(60.0, args.timeout),
        ),
    )
    probe = fleet.stations[probe_id]
    probe.uplink.url = f"ws://127.0.0.1:{port}/ocpp/{probe_id}"
    started = time.monotonic()
    fleet_task = asyncio.create_task(fleet.run())
    try:
        print(f"{args.chargers} chargers + 1 probe booting and starting to charge...", flush=True)
        if not await wait_charging(fleet, args.timeout):
            raise TimeoutError("the chargers did not all start charging")
        ready_s = time.monotonic() - started
        print(f"all charging after {ready_s:.1f} s; cutting the link", flush=True)
        report = await run_storm(
            fleet,
            link,
            StormPlan(
                outage_s=args.outage,
                departures=leaving,
                arrivals=arrivals,
                settle_s=args.settle,
                ready_timeout_s=args.timeout,
                recover_timeout_s=args.timeout,
            ),
            probe=probe_id,
        )
        fleet.stop()
        fleet_report = await fleet_task
    finally:
        if not fleet_task.done():
            fleet_task.cancel()
            await asyncio.gather(fleet_task, return_exceptions=True)
        await link.close()
        stop(csms)

    answered = ledger.samples()
    async with repo.sessionmaker() as s:
        rows = (
            await s.execute(
                select(
                    m.MeterSample.charge_point_id,
                    m.MeterSample.timestamp,
                    m.MeterSample.connector_id,
                    m.MeterSample.sample_key,
                )
            )
        ).all()
        open_tx = (
            await s.execute(
                select(func.count())
                .select_from(m.Transaction)
                .where(m.Transaction.stopped_at.is_(None))
            )
        ).scalar_one()
        transactions = (
            await s.execute(select(func.count()).select_from(m.Transaction))
        ).scalar_one()
    await engine.dispose()
    stored = Counter(
        (r[0], r[1].replace(tzinfo=UTC) if r[1].tzinfo is None else r[1], r[2], str(r[3]))
        for r in rows
    )
    same_sample = Counter((cp, at, conn, key.split("|", 1)[1]) for cp, at, conn, key in stored)
    duplicates = sum(n - 1 for n in stored.values()) + sum(n - 1 for n in same_sample.values())
    lost = len(set(answered) - set(stored))
    queued_left = sum(len(s.queue) for s in fleet.stations.values())
    delivered = Counter(action for _, action, _ in ledger.delivered)
    rtts = report.probe_round_trips_s

    print()
    print(f"chargers                      {report.chargers} (+1 probe connected directly)")
    print(f"setup until all charging      {ready_s:.1f} s")
    print(f"connections reset by the cut  {report.cut_connections}")
    print(f"outage                        {args.outage:g} s ({args.outage * speed:g} s simulated)")
    print(f"cars leaving / starting offline {report.departures} / {report.offline_starts}")
    print(f"messages queued offline       {report.queued}")
    print(f"  replayed (answered)         {report.replayed}")
    print(f"  resent (answer lost in cut) {report.resent}")
    print(f"  out of order                {report.out_of_order}")
    print(f"  dropped by the queues       {report.dropped}")
    print(f"transaction messages answered {sum(delivered.values())} {dict(delivered)}")
    print(f"samples answered / stored     {len(set(answered))} / {len(stored)}")
    print(f"duplicates in the store       {duplicates}")
    print(f"lost (answered, not stored)   {lost}; left in queues at the end {queued_left}")
    print(f"transactions stored / open    {transactions} / {open_tx}")
    print(
        f"back after the link returned  connected {report.connected_s:.2f} s, "
        f"Accepted {report.accepted_s:.2f} s, queues delivered {report.delivered_s:.2f} s"
    )
    print(
        f"fuse {garage.site.fuse_limit_a:g} A (margin {garage.site.margin_a:g} A): most the "
        f"installed profiles allow offline {fmt(report.worst_case_a)} (by csms.fuse, a "
        f"running car on every phase of its station: {fmt(report.model_worst_case_a)})"
    )
    print(
        f"drawn                         {fmt(report.peak_draw_a)} from the cut to delivery; "
        f"whole run {fmt(fleet_report.peak_supply_a)}"
    )
    print(
        f"probe round trips in storm    n={len(rtts)} p50 {1000 * percentile(rtts, 50):.0f} ms"
        f" p99 {1000 * percentile(rtts, 99):.0f} ms max {1000 * max(rtts, default=0):.0f} ms;"
        f" timeouts {probe.stats.timeouts}"
    )
    print(f"fleet: call errors {fleet_report.call_errors}, timeouts {fleet_report.timeouts}")
    ok = (
        report.recovered
        and duplicates == 0
        and lost == 0
        and queued_left == 0
        and report.out_of_order == 0
        and report.dropped == 0
        and open_tx == 0
        and report.fuse_held()
    )
    print("verdict                       " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def fmt(amps: tuple[float, float, float]) -> str:
    return "/".join(f"{a:.0f}" for a in amps) + " A"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=500)
    parser.add_argument("--speed", type=float, default=3.0, help="simulated clock speed")
    parser.add_argument("--outage", type=float, default=40.0, help="real seconds offline")
    parser.add_argument("--meter-interval", type=int, default=60, help="simulated s")
    parser.add_argument("--leave", type=float, default=0.1, help="share of cars leaving")
    parser.add_argument("--reconnect-max", type=float, default=4.0, help="back-off cap, real s")
    parser.add_argument("--settle", type=float, default=5.0, help="real s charging before the cut")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the store and the CSMS log")
    args = parser.parse_args()
    configure_logging("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    try:
        return asyncio.run(run(args, workdir))
    finally:
        if args.keep:
            print(f"store and log kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
