"""A reconnect storm: a whole fleet loses its link at once while charging, then comes back.

`run_storm` drives a running `Fleet` whose stations connect through a `LinkCutter`:

1. it waits until every station charges with a transaction id the central system gave;
2. it cuts the link: every connection is reset at once. The stations keep charging under
   the profiles they hold and queue their transaction messages (OCPP 1.6 section 3.7);
   some cars leave (StopTransaction queued) and some new ones plug in and start offline
   (StartTransaction queued, their MeterValues waiting for its id);
3. while the link is down it samples the site's draw and evaluates the fuse model over
   the profiles the stations really hold (`Fleet.installed_worst_case_a`), at the cut
   and after the cars came and went;
4. it restores the link and times how long until every station is connected again,
   Accepted again, and has every message it queued answered.

A `probe` station connected to the central system directly (not through the link) keeps
charging meanwhile; its round trips from the cut until the queues are delivered show
whether the central system kept answering others during the storm.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from csms.ev import CATALOGUE
from csms.fuse import PhaseAmps
from csms.meter import sample_key
from csms.profiles import parse_ocpp_datetime
from csms.scenario import Scenario, ScenarioSession, ScenarioSite, make_garage_scenario
from virtual_chargers.fleet import Fleet, percentile
from virtual_chargers.link import LinkCutter
from virtual_chargers.simulation import Car
from virtual_chargers.station import VirtualStation

log = logging.getLogger("virtual_chargers.storm")


@dataclass(frozen=True)
class StormPlan:
    """What happens during the outage; times are real seconds."""

    outage_s: float = 3.0
    departures: Sequence[str] = ()  # stations whose car leaves while offline
    arrivals: Mapping[str, tuple[Car, str]] = field(default_factory=dict)  # new car, id tag
    settle_s: float = 1.0  # after every transaction has its id, before the cut
    ready_timeout_s: float = 120.0
    recover_timeout_s: float = 120.0
    sample_s: float = 0.1


@dataclass
class StormReport:
    chargers: int
    cut_connections: int
    queued: int  # transaction messages queued while not connected (this outage)
    replayed: int  # of those, answered after the reconnect
    resent: int  # sends of a message after its first (an answer lost with the link)
    out_of_order: int  # answers for a message older than one already answered
    dropped: int  # messages a queue discarded
    left_queued: int  # transaction messages still queued at the end
    departures: int
    offline_starts: int
    connected_s: float  # from restore until every station had its WebSocket back
    accepted_s: float  # ... until every station was Accepted again
    delivered_s: float  # ... until every message queued offline was answered
    # The most the cars may draw under the profiles the chargers held offline, at the cut
    # and after the cars came and went, per supply phase: each running car on the phases
    # it uses, the car that may come next on every phase (`Fleet.installed_worst_case_a`).
    worst_case_a: PhaseAmps
    # The same by `csms.fuse` as it stands: a running car on every phase of its station.
    model_worst_case_a: PhaseAmps
    peak_draw_a: PhaseAmps  # what the cars drew, highest from the cut to delivery
    fuse_limit_a: float
    probe_round_trips_s: list[float]  # the probe's, from the cut until delivery
    recovered: bool

    @property
    def probe_p99_s(self) -> float:
        return percentile(self.probe_round_trips_s, 99)

    @property
    def probe_max_s(self) -> float:
        return max(self.probe_round_trips_s, default=float("nan"))

    def fuse_held(self) -> bool:
        limit = self.fuse_limit_a + 1e-6
        return max(self.worst_case_a) <= limit and max(self.peak_draw_a) <= limit


SampleKey = tuple[str, datetime, int, str]


class Ledger:
    """What the chargers were answered, in answer order: the truth to check a central
    system's store by (`StationOptions.on_delivered`)."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, station_id: str, action: str, payload: dict[str, Any]) -> None:
        self.delivered.append((station_id, action, payload))

    def samples(self) -> list[SampleKey]:
        """Every sampled value answered (MeterValues and StopTransaction transactionData)
        as (station, timestamp, connector, `csms.meter.sample_key`)."""
        out: list[SampleKey] = []
        for station_id, action, payload in self.delivered:
            values = (
                payload.get("meterValue", [])
                if action == "MeterValues"
                else payload.get("transactionData", [])
                if action == "StopTransaction"
                else []
            )
            tx = payload.get("transactionId")
            connector = int(payload.get("connectorId", 1))
            for value in values:
                at = parse_ocpp_datetime(value["timestamp"])
                for s in value["sampledValue"]:
                    key = sample_key(
                        tx,
                        s.get("measurand", "Energy.Active.Import.Register"),
                        s.get("phase"),
                        s.get("location"),
                    )
                    out.append((station_id, at, connector, key))
        return out


def storm_garage(
    n: int, *, seed: int = 1, start: datetime | None = None, fuse_per_station_a: float = 6.0
) -> Scenario:
    """`n` stations of a generated garage (`csms.scenario.make_garage_scenario`), every
    one with a car that plugs in within the first 5 simulated seconds and stays for ten
    days; a fuse of `fuse_per_station_a` x n per phase, so that the controller has to
    share (some cars paused, the rest between 6 A and their maximum)."""
    base = make_garage_scenario(n, seed=seed, start=start)
    rng = random.Random(seed)
    cars = sorted(k for k in CATALOGUE if CATALOGUE[k].battery_kwh >= 40)
    sessions = tuple(
        ScenarioSession(
            station.id,
            f"TAG{i:04d}",
            arrival_s=round(rng.uniform(0.0, 5.0), 1),
            departure_s=10 * 86_400,
            ev=CATALOGUE[rng.choice(cars)],
            soc_start=0.1,
            soc_target=0.9,
        )
        for i, station in enumerate(base.stations)
    )
    site = ScenarioSite(
        float(round(fuse_per_station_a * n)), base.site.margin_a, 3, base.site.voltage_v
    )
    return replace(base, name=f"storm-{n}", site=site, sessions=sessions)


def storm_visits(
    scenario: Scenario, share: float, *, seed: int = 1, skip: Sequence[str] = ()
) -> tuple[list[str], dict[str, tuple[Car, str]]]:
    """Which cars leave during the outage (`share` of the stations), and on half of those
    stations a new car that plugs in, offline, with id tag ``NEW<station>``."""
    rng = random.Random(seed)
    ids = [s.id for s in scenario.stations if s.id not in skip]
    leaving = sorted(rng.sample(ids, round(share * len(ids))))
    cars = sorted(CATALOGUE)
    arrivals = {
        sid: (Car(CATALOGUE[rng.choice(cars)], 0.3, 0.8), f"NEW{sid}") for sid in leaving[::2]
    }
    return leaving, arrivals


def _max3(a: PhaseAmps, b: PhaseAmps) -> PhaseAmps:
    return (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]))


async def _wait(check: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(poll_s)
    return check()


async def wait_charging(fleet: Fleet, timeout_s: float) -> bool:
    """Until every station runs a transaction whose id the central system gave."""

    def ready() -> bool:
        return all(
            s.online and s.transaction_id is not None and s.transaction_id > 0
            for s in fleet.stations.values()
        )

    return await _wait(ready, timeout_s)


async def _swap_car(station: VirtualStation, arrival: tuple[Car, str] | None) -> None:
    """The car leaves (after the unplug delay the connector is free); maybe another comes."""
    await station.depart()
    if arrival is not None:
        station.arrive(*arrival)


async def run_storm(
    fleet: Fleet,
    link: LinkCutter,
    plan: StormPlan,
    *,
    probe: str | None = None,
) -> StormReport:
    """Cut, wait, restore and measure (see the module docstring); the fleet keeps running.

    `probe`: the id of a fleet station that connects to the central system directly (its
    uplink's url changed before the fleet ran), so the cut does not touch it.
    """
    probe_station = fleet.stations[probe] if probe is not None else None
    stations = [s for s in fleet.stations.values() if s is not probe_station]
    if not await wait_charging(fleet, plan.ready_timeout_s):
        missing = [s.id for s in stations if s.transaction_id is None]
        raise TimeoutError(f"{len(missing)} stations not charging, e.g. {missing[:5]}")
    await asyncio.sleep(plan.settle_s)

    before = {s.id: (s.stats.connects, s.stats.queued_offline, s.stats.replayed) for s in stations}
    resent_before = sum(s.stats.resent for s in stations)
    dropped_before = sum(s.queue.dropped for s in stations)
    probe_from = time.monotonic()

    cut = link.cut()
    log.warning("link cut", extra={"connections": cut, "stations": len(stations)})
    peak: PhaseAmps = fleet.supply_a()
    model = fleet.installed_worst_case_a(fleet.clock.now())
    worst = fleet.installed_worst_case_a(fleet.clock.now(), car_phases=True)
    visits = [
        asyncio.create_task(_swap_car(fleet.stations[sid], plan.arrivals.get(sid)))
        for sid in {*plan.departures, *plan.arrivals}
    ]
    outage_end = probe_from + plan.outage_s
    while time.monotonic() < outage_end:
        peak = _max3(peak, fleet.supply_a())
        await asyncio.sleep(plan.sample_s)
    await asyncio.gather(*visits)
    model = _max3(model, fleet.installed_worst_case_a(fleet.clock.now()))
    worst = _max3(worst, fleet.installed_worst_case_a(fleet.clock.now(), car_phases=True))

    link.restore()
    restored = time.monotonic()
    times: dict[str, float] = {}

    def connected() -> bool:
        return all(s.stats.connects > before[s.id][0] for s in stations)

    def accepted() -> bool:
        return connected() and all(s.online for s in stations)

    def delivered() -> bool:
        return accepted() and all(
            s.stats.replayed - before[s.id][2] >= s.stats.queued_offline - before[s.id][1]
            for s in stations
        )

    deadline = restored + plan.recover_timeout_s
    while time.monotonic() < deadline:
        peak = _max3(peak, fleet.supply_a())
        for name, check in (("connected", connected), ("accepted", accepted)):
            if name not in times and check():
                times[name] = time.monotonic() - restored
        if delivered():
            times["delivered"] = time.monotonic() - restored
            break
        await asyncio.sleep(plan.sample_s / 2)
    recovered = "delivered" in times
    probe_round_trips = (
        [rtt for sent, rtt in probe_station.stats.round_trips if sent >= probe_from]
        if probe_station is not None
        else []
    )
    nan = float("nan")
    report = StormReport(
        chargers=len(stations),
        cut_connections=cut,
        queued=sum(s.stats.queued_offline - before[s.id][1] for s in stations),
        replayed=sum(s.stats.replayed - before[s.id][2] for s in stations),
        resent=sum(s.stats.resent for s in stations) - resent_before,
        out_of_order=sum(s.stats.out_of_order for s in stations),
        dropped=sum(s.queue.dropped for s in stations) - dropped_before,
        left_queued=sum(s.queue.count(persistent=True) for s in stations),
        departures=len(plan.departures),
        offline_starts=len(plan.arrivals),
        connected_s=times.get("connected", nan),
        accepted_s=times.get("accepted", nan),
        delivered_s=times.get("delivered", nan),
        worst_case_a=worst,
        model_worst_case_a=model,
        peak_draw_a=peak,
        fuse_limit_a=fleet.scenario.site.fuse_limit_a,
        probe_round_trips_s=probe_round_trips,
        recovered=recovered,
    )
    log.warning(
        "storm over",
        extra={
            "recovered": recovered,
            "accepted_s": round(report.accepted_s, 2),
            "delivered_s": round(report.delivered_s, 2),
        },
    )
    return report
