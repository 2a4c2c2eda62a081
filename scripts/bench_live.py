"""Live equals simulated? A scenario replayed through the real CSMS and the virtual fleet.

Issue 9, finding 10. For one scenario and strategy:

1. a fresh SQLite file in a temp dir; ``csms provision --scenario NAME`` (stations and id
   tags) and ``csms site set`` (the scenario's fuse, margin, phases and voltage, the
   strategy, the tick);
2. ``csms serve --speed S --clock-start <scenario start> --api-port P`` (controller on) on
   free ports, and ``virtual-chargers run --scenario NAME --speed S --clock-start <same>
   --residents --api-url http://127.0.0.1:P/api/v1 --quiet`` against it (a manager token
   from ``csms token add`` in $GARAGEGRID_API_TOKEN) until the scenario's last departure;
   then SIGINT to both;
3. reads the store (SQLAlchemy over the same file) and reports energy delivered
   (meterStop - meterStart per transaction), energy requested, sessions met (>= 99 % of
   their need), the highest site current per phase from the meter samples (each
   station's Current.Import mapped through its wiring and summed over stations at every
   sample time, a station's reading holding until its next one, its transaction's end, or
   a limit accepted after it, whichever is lowest), fuse violations (sample times where a
   phase sum is above fuse - margin), and limit changes per car-hour (a TxProfile limit in
   ``allocations`` differing from the previous one for the same transaction; the first is
   no change; over the hours transactions ran);
4. runs ``csms simulate --scenario NAME --strategy S --step-s TICK --json --per-session``
   and prints both side by side, with live/simulated ratios; then the sessions side by
   side and, for the sessions that lost most against the simulation, the limits the
   controller sent and what the chargers metered; also where time goes at speed: the
   fleet's MeterValues lag, transactions shorter than the stay, full-rate seconds lost
   before a car's first TxProfile, TxDefaultProfile changes (from csms.log), the CSMS's
   clock against the chargers'.

It prints figures and asserts nothing. It takes the simulated span / speed of wall time
(Risvollan Jan 2019 at 600x: about 18 minutes) and two busy processes: run one at a time.

    .venv/bin/python scripts/bench_live.py                     # risvollan-2019-01, llf, 600x
    .venv/bin/python scripts/bench_live.py --speed 300 --keep-dir
    .venv/bin/python scripts/bench_live.py --analyse-only /tmp/bench_live_xxx  # a kept run again
                                                   # (same --scenario, --strategy, --tick-s)
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select  # noqa: E402

from csms.scenario import Scenario, ScenarioSession, load_scenario  # noqa: E402
from csms.store import models as m  # noqa: E402

BIN = Path(sys.executable).parent
CSMS = BIN / "csms"
FLEET = BIN / "virtual-chargers"
MET_SHARE = 0.99
FUSE_TOL_A = 0.05  # meter values are rounded: a sum this close to the limit is no violation
PHASES = ("L1", "L2", "L3")
ENERGY = "Energy.Active.Import.Register"


# ------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a running process from /proc (Linux); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.rstrip()
    except OSError:
        return ""


def machine() -> list[str]:
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = [line[3:] for line in status.splitlines()]
    diff_id = ""
    if dirty:
        diff = subprocess.run(["git", "diff", "HEAD"], cwd=ROOT, capture_output=True, check=False)
        import hashlib

        diff_id = hashlib.sha1(diff.stdout).hexdigest()[:12]
    load = os.getloadavg()
    return [
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load average {load[0]:.2f} {load[1]:.2f}",
        f"code: commit {git('rev-parse', 'HEAD') or '?'}"
        + (
            f", tree DIRTY ({len(dirty)} modified tracked files, diff sha1 {diff_id}): "
            + ", ".join(dirty)
            if dirty
            else ", tree clean"
        ),
    ]


def run_cli(cmd: list[str], log: Path) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def stop_process(proc: subprocess.Popen[bytes], name: str, timeout_s: float = 60.0) -> str:
    """SIGINT, then SIGTERM, then SIGKILL, by pid; returns how it ended."""
    if proc.poll() is not None:
        return f"{name} had exited ({proc.returncode})"
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
            return f"{name} stopped by {sig.name} ({proc.returncode})"
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait()
    return f"{name} KILLED after SIGINT and SIGTERM"


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def ratio(live: float | None, sim: float | None) -> str:
    if live is None or sim is None or sim == 0:
        return "n/a"
    return f"{live / sim:.3f}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


# ------------------------------------------------------------------ the live run
@dataclass
class LiveRun:
    workdir: Path
    database_url: str
    wall_s: float = 0.0
    csms_cpu_s: float | None = None
    fleet_cpu_s: float | None = None
    fleet_report: str = ""
    stopped: list[str] = field(default_factory=list)


def live_run(args: argparse.Namespace, scenario: Scenario, workdir: Path) -> LiveRun:
    db = workdir / "garagegrid.db"
    url = f"sqlite+aiosqlite:///{db}"
    run = LiveRun(workdir, url)
    cli_log = workdir / "cli.log"
    site = scenario.site
    run_cli([str(CSMS), "provision", "--database-url", url, "--scenario", args.scenario], cli_log)
    run_cli(
        [
            str(CSMS), "site", "set", "--database-url", url,
            "--fuse-limit-a", f"{site.fuse_limit_a:g}", "--margin-a", f"{site.margin_a:g}",
            "--phases", str(site.phases), "--voltage-v", f"{site.voltage_v:g}",
            "--strategy", args.strategy, "--tick-s", f"{args.tick_s:g}",
        ],
        cli_log,
    )  # fmt: skip
    # The residents' departures and needs go through the operator API with this token
    # (not through cli.log: a token is a secret).
    token = subprocess.run(
        [str(CSMS), "token", "add", "bench-residents", "--role", "manager", "--database-url", url],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    start = (scenario.start or datetime.fromisoformat("2026-01-05T00:00:00+00:00")).isoformat()
    port = free_port()
    api_port = free_port()
    csms = subprocess.Popen(
        [
            str(CSMS), "serve", "--database-url", url, "--host", "127.0.0.1",
            "--port", str(port), "--speed", f"{args.speed:g}", "--clock-start", start,
            "--api-port", str(api_port),
        ],
        stdout=(workdir / "csms.out").open("wb"),
        stderr=(workdir / "csms.log").open("wb"),
        start_new_session=True,  # a Ctrl-C here reaches it only through stop_process
    )  # fmt: skip
    fleet: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if csms.poll() is not None or time.monotonic() > deadline:
                    log = workdir / "csms.log"
                    raise RuntimeError(f"csms serve did not start; see {log}") from None
                time.sleep(0.1)
        duration_s = scenario.horizon_s + 60.0  # the last departure, and a minute to unplug
        fleet = subprocess.Popen(
            [
                str(FLEET), "run", "--csms-url", f"ws://127.0.0.1:{port}/ocpp",
                "--scenario", args.scenario, "--speed", f"{args.speed:g}",
                "--clock-start", start, "--residents", "--quiet",
                "--api-url", f"http://127.0.0.1:{api_port}/api/v1",
                "--meter-interval", str(args.meter_interval), "--duration", f"{duration_s:g}",
            ],
            stdout=(workdir / "fleet.out").open("wb"),
            stderr=(workdir / "fleet.log").open("wb"),
            env=os.environ | {"GARAGEGRID_API_TOKEN": token},
            start_new_session=True,
        )  # fmt: skip
        expected_real_s = duration_s / args.speed
        print(
            f"live: csms serve pid {csms.pid} on port {port}, virtual-chargers pid {fleet.pid}; "
            f"{duration_s / 3600:.1f} simulated h at {args.speed:g}x = "
            f"{expected_real_s / 60:.1f} min",
            flush=True,
        )
        last_print = time.monotonic()
        timeout = expected_real_s * 1.5 + 120
        while fleet.poll() is None:
            time.sleep(0.5)
            run.csms_cpu_s = cpu_seconds(csms.pid) or run.csms_cpu_s
            run.fleet_cpu_s = cpu_seconds(fleet.pid) or run.fleet_cpu_s
            elapsed = time.monotonic() - t0
            if time.monotonic() - last_print > 120:
                last_print = time.monotonic()
                print(
                    f"  {elapsed:5.0f} s: ~{elapsed * args.speed / 3600:.0f} simulated h; "
                    f"CPU csms {fmt(run.csms_cpu_s, 0)} s, fleet {fmt(run.fleet_cpu_s, 0)} s",
                    flush=True,
                )
            if elapsed > timeout:
                print("  the fleet overran its time; stopping it", flush=True)
                break
        run.stopped.append(stop_process(fleet, "virtual-chargers"))
        run.wall_s = time.monotonic() - t0
        run.csms_cpu_s = cpu_seconds(csms.pid) or run.csms_cpu_s
    finally:
        if fleet is not None and fleet.poll() is None:
            run.stopped.append(stop_process(fleet, "virtual-chargers"))
        run.stopped.append(stop_process(csms, "csms serve"))
    run.fleet_report = (workdir / "fleet.out").read_text(errors="replace")
    return run


# ------------------------------------------------------------------ reading the store
@dataclass
class Tx:
    id: int
    station: str
    started_at: datetime
    stopped_at: datetime | None
    meter_start_wh: int
    meter_stop_wh: int | None
    departure_at: datetime | None
    needed_wh: float | None
    stop_reason: str | None
    session: ScenarioSession | None = None
    sim_kwh: float | None = None

    @property
    def delivered_kwh(self) -> float:
        if self.meter_stop_wh is None:
            return math.nan
        return (self.meter_stop_wh - self.meter_start_wh) / 1000.0

    @property
    def need_kwh(self) -> float:
        if self.session is not None:
            return self.session.energy_needed_kwh
        return (self.needed_wh or 0.0) / 1000.0


@dataclass
class Sample:
    station: str
    tx: int | None
    at: datetime
    received_at: datetime
    measurand: str
    phase: str | None
    value: float


@dataclass
class LiveFigures:
    transactions: list[Tx]
    origin: datetime  # scenario time 0 as the live run played it (first start - first arrival)
    energy_kwh: float
    requested_kwh: float
    met: int
    max_phase_a: dict[str, float]
    violations: int
    evaluated_times: int
    over_s: float
    changes: int
    changes_accepted: int
    plugged_h: float
    allocations: dict[int, list[tuple[datetime, float, str | None]]]
    samples: dict[int, list[Sample]]
    decided_gaps_s: list[float]
    clock_skew_s: list[tuple[datetime, float]]
    untracked_allocs: int


def read_store(database_url: str, scenario: Scenario, meter_interval: float) -> LiveFigures:
    path = database_url.split("///", 1)[1]
    engine = create_engine(f"sqlite:///{path}")
    # Only the columns read here, so that a database of another schema version reads too.
    tx_cols = (
        m.Transaction.id, m.Transaction.charge_point_id, m.Transaction.started_at,
        m.Transaction.stopped_at, m.Transaction.meter_start_wh, m.Transaction.meter_stop_wh,
        m.Transaction.departure_at, m.Transaction.energy_needed_wh, m.Transaction.stop_reason,
    )  # fmt: skip
    alloc_cols = (
        m.Allocation.decided_at, m.Allocation.charge_point_id, m.Allocation.transaction_id,
        m.Allocation.limit_a, m.Allocation.answer,
    )  # fmt: skip
    sample_cols = (
        m.MeterSample.charge_point_id, m.MeterSample.transaction_id, m.MeterSample.timestamp,
        m.MeterSample.received_at, m.MeterSample.measurand, m.MeterSample.phase,
        m.MeterSample.value,
    )  # fmt: skip
    with engine.connect() as conn:
        stations = {r.id: r for r in conn.execute(select(m.ChargePoint.id, m.ChargePoint.wiring))}
        txs = [
            Tx(
                r.id,
                r.charge_point_id,
                r.started_at,
                r.stopped_at,
                r.meter_start_wh,
                r.meter_stop_wh,
                r.departure_at,
                r.energy_needed_wh,
                r.stop_reason,
            )
            for r in conn.execute(select(*tx_cols).order_by(m.Transaction.started_at))
        ]
        alloc_rows = list(
            conn.execute(select(*alloc_cols).order_by(m.Allocation.decided_at, m.Allocation.id))
        )
        sample_rows = list(
            conn.execute(
                select(*sample_cols)
                .where(
                    m.MeterSample.measurand.in_(
                        ("Current.Import", "Current.Offered", "SoC", ENERGY)
                    )
                )
                .order_by(m.MeterSample.timestamp, m.MeterSample.id)
            )
        )
    engine.dispose()

    # Match transactions to scenario sessions: per station, in order of arrival.
    by_station: dict[str, list[ScenarioSession]] = defaultdict(list)
    for se in sorted(scenario.sessions, key=lambda s: s.arrival_s):
        by_station[se.station].append(se)
    seen: dict[str, int] = defaultdict(int)
    for tx in txs:
        queue = by_station.get(tx.station, [])
        if seen[tx.station] < len(queue):
            tx.session = queue[seen[tx.station]]
        seen[tx.station] += 1
    first = next((t for t in txs if t.session is not None), None)
    origin = (
        first.started_at - timedelta(seconds=first.session.arrival_s)  # type: ignore[union-attr]
        if first is not None
        else (scenario.start or datetime.now().astimezone())
    )

    energy = sum(t.delivered_kwh for t in txs if not math.isnan(t.delivered_kwh))
    requested = scenario.energy_needed_kwh
    met = sum(
        1
        for t in txs
        if t.session is not None
        and not math.isnan(t.delivered_kwh)
        and t.delivered_kwh * 1000 >= MET_SHARE * t.session.energy_needed_kwh * 1000 - 1.0
    )

    # Limits per transaction; changes.
    allocations: dict[int, list[tuple[datetime, float, str | None]]] = defaultdict(list)
    untracked = 0
    for a in alloc_rows:
        if a.transaction_id is None:
            untracked += 1
            continue
        allocations[a.transaction_id].append((a.decided_at, a.limit_a, a.answer))
    changes = changes_accepted = 0
    for rows in allocations.values():
        prev = prev_acc = None
        for _at, limit, answer in rows:
            if prev is not None and limit != prev:
                changes += 1
            prev = limit
            if answer == "Accepted":
                if prev_acc is not None and limit != prev_acc:
                    changes_accepted += 1
                prev_acc = limit
    plugged_h = (
        sum(((t.stopped_at or t.started_at) - t.started_at).total_seconds() for t in txs) / 3600.0
    )
    decided = sorted({a.decided_at for a in alloc_rows})
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(decided)]

    # Samples.
    samples: dict[int, list[Sample]] = defaultdict(list)
    current_by_station: dict[str, dict[datetime, list[float]]] = defaultdict(dict)
    skew: list[tuple[datetime, float]] = []
    for r in sample_rows:
        s = Sample(
            r.charge_point_id, r.transaction_id, r.timestamp, r.received_at, r.measurand,
            r.phase, r.value if r.value is not None else math.nan,
        )  # fmt: skip
        if r.transaction_id is not None:
            samples[r.transaction_id].append(s)
        if r.measurand == "Current.Import" and r.value is not None:
            info = stations.get(r.charge_point_id)
            wiring = _split(info.wiring if info else "L1L2L3")
            station_phase = (r.phase or "L1")[:2]
            if station_phase not in PHASES:
                continue
            index = PHASES.index(station_phase)
            if index >= len(wiring):
                continue
            vec = current_by_station[r.charge_point_id].setdefault(r.timestamp, [0.0, 0.0, 0.0])
            vec[PHASES.index(wiring[index])] += r.value
            if station_phase == "L1":
                skew.append((r.timestamp, (r.received_at - r.timestamp).total_seconds()))

    # Site current per phase: at every sample time, each station's latest reading holds
    # until its next one, its transaction's stop, or 1.5 intervals, whichever is first.
    stops = {t.station: [] for t in txs}  # type: dict[str, list[datetime]]
    for t in txs:
        if t.stopped_at is not None:
            stops[t.station].append(t.stopped_at)
    for v in stops.values():
        v.sort()
    timelines: dict[str, list[tuple[datetime, datetime, list[float]]]] = {}
    hold = timedelta(seconds=1.5 * meter_interval)
    for sid, by_time in current_by_station.items():
        times = sorted(by_time)
        spans = []
        for i, at in enumerate(times):
            end = at + hold
            if i + 1 < len(times):
                end = min(end, times[i + 1])
            st = stops.get(sid, [])
            j = bisect.bisect_right(st, at)
            if j < len(st):
                end = min(end, st[j])
            spans.append((at, end, by_time[at]))
        timelines[sid] = spans
    points = sorted({at for spans in timelines.values() for at, _e, _v in spans})
    max_phase = [0.0, 0.0, 0.0]
    violations = 0
    over_s = 0.0
    allowed = scenario.site.fuse_limit_a - scenario.site.margin_a
    starts = {sid: [s[0] for s in spans] for sid, spans in timelines.items()}
    # A limit accepted after a reading caps what that reading says until the next one: the
    # controller lowers one car before it raises another, and a held reading of the
    # lowered car must not be added to the raised car's next reading.
    accepted: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for a in alloc_rows:
        if a.answer == "Accepted":
            accepted[a.charge_point_id].append((a.decided_at, a.limit_a))
    accepted_at = {sid: [x[0] for x in rows] for sid, rows in accepted.items()}
    for k, at in enumerate(points):
        total = [0.0, 0.0, 0.0]
        for sid, spans in timelines.items():
            i = bisect.bisect_right(starts[sid], at) - 1
            if i >= 0 and spans[i][0] <= at < spans[i][1]:
                cap = math.inf
                j = bisect.bisect_right(accepted_at.get(sid, []), at) - 1
                if j >= 0 and accepted[sid][j][0] > spans[i][0]:
                    cap = accepted[sid][j][1]
                for p in range(3):
                    total[p] += min(spans[i][2][p], cap)
        for p in range(3):
            max_phase[p] = max(max_phase[p], total[p])
        if max(total) > allowed + FUSE_TOL_A:
            violations += 1
            if k + 1 < len(points):
                over_s += (points[k + 1] - at).total_seconds()
    return LiveFigures(
        transactions=txs,
        origin=origin,
        energy_kwh=energy,
        requested_kwh=requested,
        met=met,
        max_phase_a=dict(zip(PHASES, max_phase, strict=True)),
        violations=violations,
        evaluated_times=len(points),
        over_s=over_s,
        changes=changes,
        changes_accepted=changes_accepted,
        plugged_h=plugged_h,
        allocations=allocations,
        samples=samples,
        decided_gaps_s=gaps,
        clock_skew_s=skew,
        untracked_allocs=untracked,
    )


def _split(wiring: str) -> list[str]:
    return [wiring[i : i + 2] for i in range(0, len(wiring), 2)]


# ------------------------------------------------------------------ simulate
def run_simulate(args: argparse.Namespace) -> dict[str, Any]:
    base = [
        str(CSMS), "simulate", "--scenario", args.scenario, "--strategy", args.strategy,
        "--step-s", f"{args.tick_s:g}", "--json",
    ]  # fmt: skip
    result = subprocess.run([*base, "--per-session"], capture_output=True, text=True, check=False)
    if result.returncode != 0:  # an older csms without --per-session
        result = subprocess.run(base, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"csms simulate failed: {result.stderr}")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# ------------------------------------------------------------------ report
def report(
    args: argparse.Namespace,
    scenario: Scenario,
    live: LiveFigures,
    sim: dict[str, Any],
    run: LiveRun | None,
    workdir: Path,
) -> None:
    per_session = sim.get("session_delivered_kwh")
    if per_session is not None:
        index = {id(se): i for i, se in enumerate(scenario.sessions)}
        for t in live.transactions:
            if t.session is not None:
                t.sim_kwh = per_session[index[id(t.session)]]

    sim_phase = sim.get("max_phase_current_a", {})
    sim_changes = sim.get("limit_changes_per_car_hour")
    live_changes = live.changes / live.plugged_h if live.plugged_h > 0 else None
    allowed = scenario.site.fuse_limit_a - scenario.site.margin_a
    print()
    print(
        f"{scenario.name}: {len(scenario.stations)} stations, {len(scenario.sessions)} sessions, "
        f"fuse {scenario.site.phases}x{scenario.site.fuse_limit_a:g} A, margin "
        f"{scenario.site.margin_a:g} A; strategy {args.strategy}, tick {args.tick_s:g} s, "
        f"speed {args.speed:g}x, MeterValues every {args.meter_interval} s"
    )
    rows = [
        ("energy delivered (kWh)", fmt(live.energy_kwh, 2),
         fmt(sim.get("energy_delivered_kwh"), 2),
         ratio(live.energy_kwh, sim.get("energy_delivered_kwh"))),
        ("energy requested (kWh)", fmt(live.requested_kwh, 2),
         fmt(sim.get("energy_requested_kwh"), 2), ""),
        ("transactions / sessions", str(len(live.transactions)), str(sim.get("sessions")), ""),
        ("sessions met (>= 99 %)", str(live.met), str(sim.get("sessions_met")), ""),
        *[
            (f"peak {p} (A)", fmt(live.max_phase_a[p]), fmt(sim_phase.get(p)), "")
            for p in PHASES
        ],
        (f"fuse violations (> {allowed:g} A)",
         f"{live.violations} of {live.evaluated_times} sample times",
         f"{sim.get('fuse_violations')} of {sim.get('steps')} steps", ""),
        ("limit changes per car-hour",
         f"{fmt(live_changes, 3)} ({live.changes} in {live.plugged_h:.1f} h)",
         (f"{fmt(sim_changes, 3)} ({sim.get('limit_changes')} in "
          f"{fmt(sim.get('plugged_in_hours'))} h)") if sim_changes is not None else "n/a",
         ratio(live_changes, sim_changes) if sim_changes is not None else "n/a"),
    ]  # fmt: skip
    print(f"  {'':32} {'live':>30} {'simulated':>30} {'live/sim':>9}")
    for name, a, b, c in rows:
        print(f"  {name:32} {a:>30} {b:>30} {c:>9}")
    if live.plugged_h > 0:
        print(
            f"  (live limit changes counting accepted answers only: "
            f"{live.changes_accepted / live.plugged_h:.3f} per car-hour; "
            f"{live.untracked_allocs} allocation rows without a transaction)"
        )
    goal = sim.get("energy_delivered_kwh")
    if goal:
        gap = 1 - live.energy_kwh / goal
        print(
            f"  energy gap live vs simulated: {gap * 100:+.1f} % "
            f"({'within' if abs(gap) <= 0.01 else 'OUTSIDE'} the 1 % goal)"
        )

    # The run itself.
    if run is not None:
        print()
        print(f"wall time of the live run: {run.wall_s:.0f} s; " + "; ".join(run.stopped))
        sim_s = scenario.horizon_s
        print(
            f"CPU: csms serve {fmt(run.csms_cpu_s, 0)} s, virtual-chargers "
            f"{fmt(run.fleet_cpu_s, 0)} s ({fmt(100 * (run.csms_cpu_s or 0) / run.wall_s, 0)} % "
            f"and {fmt(100 * (run.fleet_cpu_s or 0) / run.wall_s, 0)} % of one core); "
            f"a simulated {sim_s / 3600:.1f} h should take {sim_s / args.speed:.0f} s"
        )
        if run.fleet_report.strip():
            print("virtual-chargers report:")
            for line in run.fleet_report.strip().splitlines():
                print(f"  | {line}")
        lag = re.search(r"p95 ([\d.]+) s \(simulated\) late", run.fleet_report)
        if lag:
            late = float(lag.group(1))
            verdict = "BEHIND" if late > 0.1 * args.meter_interval else "keeps up"
            print(
                f"fleet timing: p95 of MeterValues {late:.1f} simulated s late vs its "
                f"schedule: {verdict} (behind = more than 10 % of the interval)"
            )

    # Timing seen from the store.
    print()
    txs = live.transactions
    origin = live.origin
    start_lag = [
        (t.started_at - (origin + timedelta(seconds=t.session.arrival_s))).total_seconds()
        for t in txs
        if t.session is not None
    ]
    stop_late = [
        (t.stopped_at - t.departure_at).total_seconds()
        for t in txs
        if t.stopped_at is not None and t.departure_at is not None
    ]
    stop_vs_scenario = [
        (t.stopped_at - (origin + timedelta(seconds=t.session.departure_s))).total_seconds()
        for t in txs
        if t.stopped_at is not None and t.session is not None
    ]
    short_s = [
        (t.session.departure_s - t.session.arrival_s)
        - ((t.stopped_at - t.started_at).total_seconds())
        for t in txs
        if t.stopped_at is not None and t.session is not None
    ]
    dead = {t.id: dead_start_s(t, live.samples.get(t.id, []), scenario.site.voltage_v) for t in txs}
    dead_values = [d for d in dead.values() if d is not None]
    start = scenario.start
    print(
        f"timing (simulated s): scenario time 0 played at {origin.isoformat()} "
        + (f"({(origin - start).total_seconds():+.0f} s after --clock-start)" if start else "")
    )
    print(
        "  StartTransaction vs arrival (after the first): median "
        f"{fmt(statistics.median(start_lag) if start_lag else None, 0)}, "
        f"max {fmt(max(start_lag, default=None), 0)}; StopTransaction vs the resident's departure: "
        f"median {fmt(statistics.median(stop_late) if stop_late else None, 0)}, max "
        f"{fmt(max(stop_late, default=None), 0)}; vs the scenario's departure: median "
        f"{fmt(statistics.median(stop_vs_scenario) if stop_vs_scenario else None, 0)}, "
        f"max {fmt(max(stop_vs_scenario, default=None), 0)}"
    )
    print(
        "  transaction shorter than the scenario's stay by: median "
        f"{fmt(statistics.median(short_s) if short_s else None, 1)}, "
        f"max {fmt(max(short_s, default=None), 1)}; full-rate seconds lost in the first "
        f"sample interval (waiting for the first TxProfile): median "
        f"{fmt(statistics.median(dead_values) if dead_values else None, 1)}, "
        f"max {fmt(max(dead_values, default=None), 1)} (the simulation: 0)"
    )
    if (workdir / "csms.log").is_file():
        defaults = re.findall(
            r"default profiles sent cp_id=(\S+) tx_default_a=([\d.]+)",
            (workdir / "csms.log").read_text(errors="replace"),
        )
        flips = 0
        last: dict[str, str] = {}
        for cp, amps in defaults:
            if cp in last and last[cp] != amps:
                flips += 1
            last[cp] = amps
        print(
            f"  TxDefaultProfile sent {len(defaults)} times to {len(last)} chargers, "
            f"{flips} of them a change of its limit (csms.log)"
        )
    if live.decided_gaps_s:
        gaps = live.decided_gaps_s
        print(
            f"  controller decisions with a change: {len(gaps) + 1}; gap between them "
            f"median {statistics.median(gaps):.0f} s, p10 {pct(gaps, 10):.0f} s "
            f"(tick {args.tick_s:g} s; at {args.speed:g}x the controller's 0.5 real-s floor is "
            f"{0.5 * args.speed:.0f} s)"
        )
    if live.clock_skew_s:
        skews = [s for _t, s in live.clock_skew_s]
        n = len(skews)
        first_q = skews[: max(1, n // 4)]
        last_q = skews[-max(1, n // 4) :]
        print(
            f"  MeterValues received (CSMS clock) - sampled (charger clock): median "
            f"{statistics.median(skews):.1f} s, p95 {pct(skews, 95):.1f} s, "
            f"max {max(skews):.1f} s; "
            f"first quarter median {statistics.median(first_q):.1f} s, last quarter "
            f"{statistics.median(last_q):.1f} s (drift + delivery)"
        )

    # Sessions side by side.
    print()
    print("sessions (times in simulated h since scenario start; kWh):")
    print(
        f"  {'tx':>4} {'station':10} {'arrive':>7} {'leave':>7} {'need':>6} {'live':>6} "
        f"{'sim':>6} {'live-sim':>8} {'met':>4} {'first limit':>12} {'lost s':>6} {'limits':>6} "
        f"{'stop':>8}"
    )
    for t in txs:
        se = t.session
        allocs = live.allocations.get(t.id, [])
        first_limit = (
            f"{allocs[0][1]:g} A +{(allocs[0][0] - t.started_at).total_seconds():.0f}s"
            if allocs
            else "-"
        )
        met = (
            "yes"
            if se is not None and t.delivered_kwh >= MET_SHARE * se.energy_needed_kwh - 0.001
            else "NO"
        )
        print(
            f"  {t.id:>4} {t.station:10} "
            f"{(se.arrival_s / 3600 if se else math.nan):7.2f} "
            f"{(se.departure_s / 3600 if se else math.nan):7.2f} {t.need_kwh:6.2f} "
            f"{t.delivered_kwh:6.2f} {fmt(t.sim_kwh, 2):>6} "
            f"{fmt(t.delivered_kwh - t.sim_kwh if t.sim_kwh is not None else None, 2):>8} "
            f"{met:>4} {first_limit:>12} {fmt(dead.get(t.id), 0):>6} {len(allocs):>6} "
            f"{t.stop_reason or 'open':>8}"
        )

    # The worst sessions in detail.
    worst = sorted(
        (t for t in txs if t.sim_kwh is not None),
        key=lambda t: t.delivered_kwh - (t.sim_kwh or 0.0),
    )[: args.worst]
    for t in worst:
        if (t.sim_kwh or 0.0) - t.delivered_kwh < 0.01:
            break
        print()
        print(
            f"tx {t.id} on {t.station}: need {t.need_kwh:.2f} kWh, live {t.delivered_kwh:.2f}, "
            f"sim {fmt(t.sim_kwh, 2)}; started {t.started_at.isoformat()}, stopped "
            f"{t.stopped_at.isoformat() if t.stopped_at else '-'}"
            + (f", departure told {t.departure_at.isoformat()}" if t.departure_at else "")
        )
        limits = live.allocations.get(t.id, [])
        print(
            "  limits sent (s after start: A answer): "
            + (
                ", ".join(
                    f"+{(at - t.started_at).total_seconds():.0f}: {a:g}"
                    + ("" if ans == "Accepted" else f" {ans}")
                    for at, a, ans in limits
                )
                or "none (the TxDefaultProfile all along)"
            )
        )
        print("  metered (runs of equal readings; s after start: import A / offered A, SoC %):")
        for line in meter_runs(t, live.samples.get(t.id, [])):
            print(f"    {line}")


def dead_start_s(t: Tx, samples: list[Sample], voltage_v: float) -> float | None:
    """Seconds of full charging lost in the first sample interval: the time to the first
    periodic sample minus the time its energy takes at the current then metered (the car
    waited for its first TxProfile, at the TxDefaultProfile or 0 A); None when the car drew
    nothing at that sample."""
    first: datetime | None = None
    for s in samples:
        if s.measurand == ENERGY and s.at > t.started_at:
            first = s.at
            break
    if first is None:
        return None
    energy = next(s.value for s in samples if s.measurand == ENERGY and s.at == first)
    amps = [
        s.value for s in samples if s.measurand == "Current.Import" and s.at == first and s.value
    ]
    if not amps or sum(amps) <= 0:
        return None
    drawing_s = (energy - t.meter_start_wh) * 3600.0 / (sum(amps) * voltage_v)
    return (first - t.started_at).total_seconds() - drawing_s


def meter_runs(t: Tx, samples: list[Sample]) -> list[str]:
    """Consecutive samples with the same import and offer, folded into one line each."""
    by_time: dict[datetime, dict[str, float]] = defaultdict(dict)
    for s in samples:
        if s.measurand == "Current.Import":
            name = "imp"
            if s.phase not in (None, "L1"):
                continue
        elif s.measurand == "Current.Offered":
            name = "off"
        elif s.measurand == "SoC":
            name = "soc"
        else:
            continue
        by_time[s.at][name] = s.value
    lines: list[str] = []
    run_start: datetime | None = None
    last: tuple[float, float] | None = None
    last_at: datetime | None = None
    soc_start = soc_end = math.nan
    count = 0

    def flush() -> None:
        if run_start is None or last is None or last_at is None:
            return
        a = (run_start - t.started_at).total_seconds()
        b = (last_at - t.started_at).total_seconds()
        lines.append(
            f"+{a:.0f}..+{b:.0f} ({count}): {last[0]:.1f} / {last[1]:.1f} A, "
            f"SoC {soc_start:.1f}->{soc_end:.1f}"
        )

    for at in sorted(by_time):
        v = by_time[at]
        key = (round(v.get("imp", math.nan), 1), round(v.get("off", math.nan), 1))
        if key != last:
            flush()
            run_start, last, count = at, key, 0
            soc_start = v.get("soc", math.nan)
        count += 1
        last_at = at
        soc_end = v.get("soc", math.nan)
    flush()
    return lines


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="risvollan-2019-01")
    parser.add_argument("--strategy", default="llf")
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--tick-s", type=float, default=60.0)
    parser.add_argument("--meter-interval", type=int, default=60, help="simulated s")
    parser.add_argument("--keep-dir", action="store_true", help="keep the database and logs")
    parser.add_argument(
        "--worst", type=int, default=4, help="detail this many sessions that lost most (0: none)"
    )
    parser.add_argument(
        "--analyse-only",
        type=Path,
        metavar="DIR",
        help="no live run: re-read DIR/garagegrid.db of a kept run (same options)",
    )
    args = parser.parse_args(argv)
    for line in machine():
        print(line)
    scenario = load_scenario(args.scenario)
    t0 = time.monotonic()
    run: LiveRun | None = None
    if args.analyse_only is not None:
        url = f"sqlite+aiosqlite:///{args.analyse_only / 'garagegrid.db'}"
        workdir = args.analyse_only
    else:
        workdir = Path(tempfile.mkdtemp(prefix="bench_live_"))
        print(f"work dir: {workdir}" + ("" if args.keep_dir else " (removed at the end)"))
        try:
            run = live_run(args, scenario, workdir)
        except BaseException:
            print(f"the live run failed; logs kept in {workdir}", file=sys.stderr)
            raise
        url = run.database_url
    try:
        live = read_store(url, scenario, args.meter_interval)
        sim = run_simulate(args)
        report(args, scenario, live, sim, run, workdir)
    finally:
        if run is not None and not args.keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"wall time: {time.monotonic() - t0:.0f} s" + (f"; kept {workdir}" if args.keep_dir else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
