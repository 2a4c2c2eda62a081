"""Run a scenario: one virtual station per scenario station, cars coming and going.

`Fleet` starts every station, waits (a bounded time) until they have booted, then plays
the scenario's sessions in simulated time: at ``arrival_s`` the car plugs in, at
``departure_s`` it leaves. Sessions are scheduled on elapsed simulated time since the
sessions began, so they keep their spacing even when the clock is set to the central
system's time: like real chargers, the stations take the time from BootNotification.conf
(`FleetClock.sync`), which keeps their timestamps consistent with a CSMS that started a
little earlier on the same `--clock-start`.

The fleet also samples the site load (the sum of every station's draw on the supply
phases L1-L3) so that a run can be checked against the fuse, and collects per-station
statistics into a `FleetReport`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from csms.fuse import ChargerView, PhaseAmps, RunningTx, site_worst_case_a
from csms.scenario import Scenario, ScenarioSession
from virtual_chargers.charging import CONNECTOR
from virtual_chargers.options import Quirks, SessionRecord, StationOptions, StationSnapshot
from virtual_chargers.simulation import Car, Electrics, used_phases
from virtual_chargers.station import VirtualStation
from virtual_chargers.uplink import wait_event

log = logging.getLogger("virtual_chargers.fleet")


class FleetClock:
    """Simulated time, `speed` times real time, that can be set to a reference time.

    Satisfies `csms.clock.Clock`. `elapsed_s()` is simulated time since creation and is
    not affected by `sync`, so schedules stay evenly spaced.
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if start is not None and start.utcoffset() is None:
            raise ValueError("clock start must carry a time zone")
        self.speed = speed
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._t0 = time.monotonic()
        self._offset = timedelta(0)
        self.synced = False

    def elapsed_s(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.elapsed_s()) + self._offset

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, simulated_s) / self.speed)

    def sync(self, reference: datetime) -> None:
        """Adopt `reference` as the current time if it differs by more than the tolerance
        (latency of the BootNotification round trip, at this speed)."""
        difference = (reference - self.now()).total_seconds()
        tolerance_s = max(1.0, 0.05 * self.speed)
        if abs(difference) > tolerance_s:
            self._offset += timedelta(seconds=difference)
            log.info("clock set to the central system's", extra={"shift_s": round(difference, 1)})
        self.synced = True


@dataclass(frozen=True)
class FleetOptions:
    """How to run a fleet; durations are simulated seconds, `_real_s` real ones."""

    station: StationOptions = field(default_factory=StationOptions)
    quirks: Mapping[str, Quirks] = field(default_factory=dict)  # by station id, "*" = all
    duration_s: float | None = None  # default: until the last car has left
    boot_wait_real_s: float = 10.0
    shutdown_flush_real_s: float = 5.0
    load_sample_real_s: float = 0.1
    state_dir: Path | None = None
    sync_clock: bool = True


@dataclass(frozen=True)
class SessionResult:
    station_id: str
    record: SessionRecord


@dataclass
class FleetReport:
    scenario: str
    stations: int
    elapsed_real_s: float
    elapsed_sim_s: float
    sessions: list[SessionResult]
    messages_sent: int
    messages_answered: int
    call_errors: int
    timeouts: int
    reconnects: int
    meter_lag_sim_s: list[float]
    delivery_real_s: list[float]
    peak_supply_a: tuple[float, float, float]
    fuse_limit_a: float
    max_over_limit_a: float
    refused: int = 0

    @property
    def energy_wh(self) -> int:
        return sum(r.record.energy_wh for r in self.sessions)

    @property
    def stopped(self) -> int:
        return sum(1 for r in self.sessions if r.record.stopped_at is not None)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


class Fleet:
    """The stations of a scenario, driven by its sessions."""

    def __init__(
        self,
        scenario: Scenario,
        csms_url: str,
        clock: FleetClock,
        options: FleetOptions | None = None,
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.options = options or FleetOptions()
        self.stations: dict[str, VirtualStation] = {}
        site = scenario.site
        template = self.options.station
        time_sync = clock.sync if self.options.sync_clock else template.on_time_sync
        state_dir = self.options.state_dir
        for index, spec in enumerate(scenario.stations):
            quirks = self.options.quirks.get(spec.id) or self.options.quirks.get("*") or Quirks()
            station_options = replace(
                template,
                quirks=quirks,
                seed=index if template.seed is None else template.seed + index,
                on_time_sync=time_sync,
                state_file=state_dir / f"{spec.id}.json" if state_dir else None,
            )
            electrics = Electrics(spec.max_current_a, spec.phases, spec.wiring, site.voltage_v)
            self.stations[spec.id] = VirtualStation(
                spec.id, csms_url, electrics, clock, station_options
            )
        self._peak = [0.0, 0.0, 0.0]
        self._sessions_started = asyncio.Event()
        self._t_zero_s = 0.0
        self.stop_requested = asyncio.Event()

    # ------------------------------------------------------------ views
    def snapshots(self) -> list[StationSnapshot]:
        return [station.snapshot() for station in self.stations.values()]

    def supply_a(self) -> tuple[float, float, float]:
        load = [0.0, 0.0, 0.0]
        for station in self.stations.values():
            for index, amps in enumerate(station.supply_currents_a()):
                load[index] += amps
        return load[0], load[1], load[2]

    def refused(self) -> int:
        """Sessions the central system refused (id tag not accepted)."""
        return sum(1 for station in self.stations.values() for r in station.sessions if r.refused)

    def installed_worst_case_a(self, at: datetime, *, car_phases: bool = False) -> PhaseAmps:
        """The fuse model (`csms.fuse`) over the profiles the stations really hold: the
        most the site may draw per supply phase from `at` on if no central system ever
        spoke again (a station that ignores profiles counts at its maximum).

        The model counts a running transaction's limit on every phase the station is
        wired to (a three-phase car on a three-phase station). With `car_phases` the
        running car counts only on the phases it draws from (a one-phase car stays one
        phase until it leaves; its TxProfile ends with its transaction), and the car that
        may come next at its start limits on every wired phase, as in the model.
        """
        total = [0.0, 0.0, 0.0]
        for station in self.stations.values():
            charging = station.charging
            electrics = station.electrics
            running = {}
            if charging.state.transaction and charging.transaction_start is not None:
                running[CONNECTOR] = RunningTx(charging.transaction_id, charging.transaction_start)

            used = used_phases(charging.state, electrics)
            if not car_phases or not running or used >= electrics.phases:
                loads = site_worst_case_a([_view(station, electrics.wiring, running)], at)
            else:
                next_car = site_worst_case_a([_view(station, electrics.wiring, {})], at)
                this_car = site_worst_case_a(
                    [_view(station, electrics.wiring[: max(1, used)], running)], at
                )
                loads = (
                    max(next_car[0], this_car[0]),
                    max(next_car[1], this_car[1]),
                    max(next_car[2], this_car[2]),
                )
            for index in range(3):
                total[index] += loads[index]
        return total[0], total[1], total[2]

    @property
    def peak_supply_a(self) -> tuple[float, float, float]:
        return self._peak[0], self._peak[1], self._peak[2]

    @property
    def sessions_started(self) -> bool:
        """True once the stations have booted (or the wait ended) and sessions play."""
        return self._sessions_started.is_set()

    async def wait_sessions_started(self) -> None:
        await self._sessions_started.wait()

    def sim_elapsed_s(self) -> float:
        """Simulated seconds since the sessions began (0 before)."""
        if not self._sessions_started.is_set():
            return 0.0
        return self.clock.elapsed_s() - self._t_zero_s

    # ------------------------------------------------------------ running
    def stop(self) -> None:
        """Ask the fleet to stop (Ctrl-C): transactions stop with reason Local."""
        self.stop_requested.set()

    async def _until(self, elapsed_s: float) -> bool:
        """Sleep until `elapsed_s` since the sessions began; False if stopped first."""
        remaining = self._t_zero_s + elapsed_s - self.clock.elapsed_s()
        await wait_event(self.stop_requested, remaining, self.clock.speed)
        return not self.stop_requested.is_set()

    async def _play(self, station: VirtualStation, sessions: Sequence[ScenarioSession]) -> None:
        for session in sorted(sessions, key=lambda s: s.arrival_s):
            if not await self._until(session.arrival_s):
                return
            departure_at = self.clock.now() + timedelta(seconds=session.duration_s)
            station.arrive(
                Car(session.ev, session.soc_start, session.soc_target),
                session.id_tag,
                departure_at=departure_at,
                needed_wh=session.energy_needed_kwh * 1000.0,
            )
            if not await self._until(session.departure_s):
                return
            await station.depart()

    async def _sample_load(self) -> None:
        while True:
            for index, amps in enumerate(self.supply_a()):
                self._peak[index] = max(self._peak[index], amps)
            await asyncio.sleep(self.options.load_sample_real_s)

    async def _wait_for_boots(self) -> None:
        deadline = time.monotonic() + self.options.boot_wait_real_s
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            if all(station.online for station in self.stations.values()):
                return
            await asyncio.sleep(0.05)
        offline = [s.id for s in self.stations.values() if not s.online]
        if offline:
            log.warning(
                "starting sessions although some stations are not connected",
                extra={"offline": offline[:10], "count": len(offline)},
            )

    async def run(self) -> FleetReport:
        """Play the scenario until its end, `duration_s`, or `stop()`; then shut down."""
        started = time.monotonic()
        runners = [
            asyncio.create_task(station.run(), name=f"{station.id}:run")
            for station in self.stations.values()
        ]
        sampler = asyncio.create_task(self._sample_load(), name="fleet:load")
        players: list[asyncio.Task[None]] = []
        try:
            await self._wait_for_boots()
            self._t_zero_s = self.clock.elapsed_s()
            self._sessions_started.set()
            by_station: dict[str, list[ScenarioSession]] = {}
            for session in self.scenario.sessions:
                by_station.setdefault(session.station, []).append(session)
            players = [
                asyncio.create_task(self._play(self.stations[sid], sessions), name=f"{sid}:play")
                for sid, sessions in by_station.items()
            ]
            duration_s = self.options.duration_s
            if duration_s is None:
                duration_s = self.scenario.horizon_s + 2 * self.options.station.unplug_delay_s
            everyone_left = asyncio.create_task(_gather(players), name="fleet:sessions")
            stop = asyncio.create_task(self.stop_requested.wait(), name="fleet:stop")
            try:
                await asyncio.wait(
                    {everyone_left, stop},
                    timeout=max(0.0, duration_s) / self.clock.speed,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for task in (everyone_left, stop):
                    task.cancel()
                await asyncio.gather(everyone_left, stop, return_exceptions=True)
        finally:
            self.stop_requested.set()
            for task in players:
                task.cancel()
            await asyncio.gather(*players, return_exceptions=True)
            await asyncio.gather(
                *(
                    station.shutdown(self.options.shutdown_flush_real_s)
                    for station in self.stations.values()
                ),
                return_exceptions=True,
            )
            await asyncio.gather(*runners, return_exceptions=True)
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        return self.report(time.monotonic() - started)

    def report(self, elapsed_real_s: float) -> FleetReport:
        sessions = [
            SessionResult(station.id, record)
            for station in self.stations.values()
            for record in station.sessions
        ]
        stats = [station.stats for station in self.stations.values()]
        return FleetReport(
            scenario=self.scenario.name,
            stations=len(self.stations),
            elapsed_real_s=elapsed_real_s,
            elapsed_sim_s=self.sim_elapsed_s(),
            sessions=sessions,
            messages_sent=sum(sum(s.sent.values()) for s in stats),
            messages_answered=sum(s.answered for s in stats),
            call_errors=sum(s.call_errors for s in stats),
            timeouts=sum(s.timeouts for s in stats),
            reconnects=sum(max(0, s.connects - 1) for s in stats),
            meter_lag_sim_s=[x for s in stats for x in s.meter_lag_s],
            delivery_real_s=[x for s in stats for x in s.delivery_real_s],
            peak_supply_a=self.peak_supply_a,
            fuse_limit_a=self.scenario.site.fuse_limit_a,
            max_over_limit_a=max(
                (station.charging.max_over_limit_a for station in self.stations.values()),
                default=0.0,
            ),
            refused=sum(1 for r in sessions if r.record.refused),
        )


def _view(
    station: VirtualStation, wiring: tuple[str, ...], running: Mapping[int, RunningTx]
) -> ChargerView:
    """What the fuse model needs of a station, from the profiles it really holds."""
    electrics = station.electrics
    return ChargerView(
        station.id,
        wiring,
        electrics.max_current_a,
        (CONNECTOR,),
        station.charging.profiles,
        running,
        managed=not station.charging.ignore_profiles,
        voltage_v=electrics.voltage_v,
    )


async def _gather(tasks: Sequence[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
