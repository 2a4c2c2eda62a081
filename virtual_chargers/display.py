"""The live terminal table of a running fleet, and its final summary.

`render` is pure (snapshots in, lines out); `LiveTable` redraws it about once a second
with plain ANSI escapes (cursor home, clear to end), only when standard output is a
terminal. No dependency beyond the standard library.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from typing import TextIO

from virtual_chargers.fleet import Fleet, FleetReport, percentile
from virtual_chargers.options import StationSnapshot
from virtual_chargers.simulation import ConnectorStatus

_HEADER = (
    f"{'station':<10} {'status':<13} {'limit A':>7} {'cur A':>6} {'kW':>6} {'SoC':>9} "
    f"{'kWh':>6} {'ETA':>6} {'departs':>7} {'q':>3}"
)
_CLEAR = "\x1b[H\x1b[J"


def _clock(at: datetime | None, tz: tzinfo | None) -> str:
    if at is None:
        return "-"
    return at.astimezone(tz).strftime("%H:%M")


def render_row(s: StationSnapshot, tz: tzinfo | None) -> str:
    status = s.status.value if s.online else f"{s.status.value}*"
    limit = "-" if s.limit_a is None else f"{s.limit_a:.1f}"
    soc = "-"
    if s.soc is not None:
        target = "" if s.target_soc is None else f">{s.target_soc * 100:.0f}"
        soc = f"{s.soc * 100:.0f}{target}%"
    eta = _clock(s.eta, tz)
    if s.eta is not None and s.departure_at is not None and s.eta > s.departure_at:
        eta += "!"  # will not reach its target before leaving at this rate
    elif s.eta is None and s.status is ConnectorStatus.suspended_evse:
        eta = "paused"
    return (
        f"{s.station_id[:10]:<10} {status:<13} {limit:>7} {s.current_a:>6.1f} "
        f"{s.power_w / 1000:>6.1f} {soc:>9} {s.session_energy_wh / 1000:>6.1f} "
        f"{eta:>6} {_clock(s.departure_at, tz):>7} {s.queued:>3}"
    )


def render(
    title: str,
    now: datetime,
    speed: float,
    snapshots: Sequence[StationSnapshot],
    supply_a: tuple[float, float, float],
    fuse_limit_a: float,
    *,
    tz: tzinfo | None = None,
    max_rows: int | None = None,
    notes: Sequence[str] = (),
) -> list[str]:
    """The table: a summary line, a header, one row per station (`*` = offline), notes."""
    charging = sum(1 for s in snapshots if s.status is ConnectorStatus.charging)
    online = sum(1 for s in snapshots if s.online)
    power_kw = sum(s.power_w for s in snapshots) / 1000
    load = "/".join(f"{a:.0f}" for a in supply_a)
    lines = [
        f"{title}  {now.astimezone(tz):%Y-%m-%d %H:%M:%S} (x{speed:g})  "
        f"online {online}/{len(snapshots)}  charging {charging}  {power_kw:.1f} kW  "
        f"L1/L2/L3 {load} A of {fuse_limit_a:g} A",
        _HEADER,
    ]
    rows = [render_row(s, tz) for s in snapshots]
    if max_rows is not None and len(rows) > max_rows:
        hidden = len(rows) - max(0, max_rows - 1)
        rows = [*rows[: max(0, max_rows - 1)], f"... {hidden} more stations"]
    return lines + rows + list(notes)


class LiveTable:
    """Redraws the fleet's table on a terminal about once a second."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        out: TextIO = sys.stdout,
        interval_real_s: float = 1.0,
        tz: tzinfo | None = None,
        terminal_lines: Callable[[], int] = lambda: shutil.get_terminal_size().lines,
    ) -> None:
        self._fleet = fleet
        self._out = out
        self._interval = interval_real_s
        self._tz = tz
        self._lines = terminal_lines

    def draw(self) -> None:
        fleet = self._fleet
        refused = fleet.refused()
        notes = (
            [
                f"{refused} session(s) refused: the CSMS did not accept the id tag; register "
                "the tags (csms idtag add TAG) or run with --free-vend"
            ]
            if refused
            else []
        )
        lines = render(
            fleet.scenario.name,
            fleet.clock.now(),
            fleet.clock.speed,
            fleet.snapshots(),
            fleet.supply_a(),
            fleet.scenario.site.fuse_limit_a - fleet.scenario.site.margin_a,
            tz=self._tz,
            max_rows=max(3, self._lines() - 3 - len(notes)),
            notes=notes,
        )
        self._out.write(_CLEAR + "\n".join(lines) + "\n")
        self._out.flush()

    async def run(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(self._interval)


def format_report(report: FleetReport) -> str:
    """The summary printed when a run ends."""
    lag = list(report.meter_lag_sim_s)
    delivery_ms = [x * 1000 for x in report.delivery_real_s]
    needed = sum(r.record.needed_wh for r in report.sessions if r.record.started_at)
    lines = [
        f"scenario {report.scenario}: {report.stations} stations, "
        f"{report.elapsed_sim_s / 3600:.2f} h simulated in {report.elapsed_real_s:.1f} s",
        f"transactions: {sum(1 for r in report.sessions if r.record.started_at)} started, "
        f"{report.stopped} stopped, {report.refused} refused; energy "
        f"{report.energy_wh / 1000:.1f} kWh"
        + (f" of {needed / 1000:.1f} kWh needed" if needed else ""),
        f"messages: {report.messages_sent} sent, {report.messages_answered} answered, "
        f"{report.call_errors} CALLERRORs, {report.timeouts} timeouts, "
        f"{report.reconnects} reconnects",
        (
            f"meter values: {len(lag)} sampled, p95 {percentile(lag, 95):.2f} s (simulated) "
            f"late vs schedule, p95 {percentile(delivery_ms, 95):.0f} ms (real) to the answer"
            if lag
            else "meter values: none sampled"
        ),
        "site peak L1/L2/L3: "
        + "/".join(f"{a:.1f}" for a in report.peak_supply_a)
        + f" A (fuse {report.fuse_limit_a:g} A)",
    ]
    if report.max_over_limit_a > 1e-6:
        lines.append(f"WARNING: a car drew {report.max_over_limit_a:.2f} A above its limit")
    if report.refused:
        lines.append(
            "some id tags were refused: register them (`csms idtag add TAG`) or run with "
            "--free-vend"
        )
    return "\n".join(lines)
