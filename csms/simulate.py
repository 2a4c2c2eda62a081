"""Run a scheduling strategy over a scenario with the EV model, and measure the outcome.

Pure and deterministic apart from the compute-time metrics: no clock, no I/O. Every
``step_s`` the scheduler sees the cars that are plugged in (what they still need, what they
drew at the end of the previous step and under which limit), returns limits, and each car
then draws per :func:`csms.ev.draw_current_a` (0 below 6 A, less when tapering) and charges
per :func:`csms.ev.charge` until its target state of charge. A car that arrives or leaves
inside a step charges for the part of the step it is there.

The scheduler is fed as a live controller feeds it: each car's limit in force (the one of
the previous step, 0 when paused) and when it last changed, so that calm limits
(:mod:`csms.scheduler.calm`) act as they would live.

Metrics follow the ACN literature (energy delivered, sessions served, peak, phase
currents, Jain fairness of the served fractions) plus what matters for a fuse: steps on
which any phase drew more than fuse - margin, and the smallest non-zero limit (below 6 A a
charger pauses), and what matters for the cars: limit changes per car-hour plugged in (a
car's limit differing from its previous step's; its first limit is none, a pause or a
resume is one). Physical phase currents are those drawn at the start of each step (the
highest within it, since tapering only lowers them) by every car present in the step.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from csms.errors import ConfigError
from csms.ev import charge, draw_current_a, effective_phases
from csms.scenario import Scenario, ScenarioSession, ScenarioStation
from csms.scheduler import (
    STRATEGIES,
    ConnectorSpec,
    OfflineSession,
    SessionDemand,
    SiteLimits,
    allocate,
    offline_optimum,
)

#: Origin for scenarios without a start; only differences of times matter.
DEFAULT_ORIGIN = datetime(2026, 1, 5, tzinfo=UTC)
#: A session is met when at least this share of its need was delivered by its departure.
MET_SHARE = 0.99
_PHASE_NAMES = ("L1", "L2", "L3")
_FUSE_TOL_A = 1e-6


@dataclass(frozen=True)
class SimulationResult:
    """What one strategy achieved on one scenario."""

    strategy: str
    scenario: str
    step_s: float
    sessions: int
    sessions_met: int
    energy_requested_kwh: float
    energy_delivered_kwh: float
    max_phase_current_a: dict[str, float]
    fuse_limit_a: float
    margin_a: float
    fuse_violations: int
    min_nonzero_limit_a: float | None
    jain_index: float
    peak_kw: float
    compute_ms_p50: float
    compute_ms_max: float
    steps: int
    fallbacks: int = 0
    energy_offline_optimum_kwh: float | None = None
    #: Limit changes (a car's limit differs from its previous step's) per hour that cars
    #: were plugged in, summed over all sessions.
    limit_changes: int = 0
    plugged_in_hours: float = 0.0
    limit_changes_per_car_hour: float = 0.0
    session_delivered_kwh: tuple[float, ...] = field(default=(), repr=False)

    @property
    def delivered_share(self) -> float:
        """Energy delivered as a share of the energy requested (1.0 when nothing was)."""
        if self.energy_requested_kwh <= 0:
            return 1.0
        return self.energy_delivered_kwh / self.energy_requested_kwh

    def to_json(self, *, per_session: bool = False) -> str:
        """The metrics as one JSON object; per-session energies only on request."""
        data = asdict(self)
        data["session_delivered_kwh"] = list(self.session_delivered_kwh)
        if not per_session:
            del data["session_delivered_kwh"]
        return json.dumps(data, sort_keys=True)


@dataclass
class _Car:
    """Mutable state of one session during the run."""

    session: ScenarioSession
    station: ScenarioStation
    phases: tuple[int, ...]  # supply phase indices the car loads
    soc: float
    delivered_wh: float = 0.0
    drawn_a: float | None = None
    last_limit_a: float | None = None
    last_change_at: datetime | None = None  # when last_limit_a was set (it differed)

    @property
    def full(self) -> bool:
        """At its target: the car stops drawing by itself."""
        return self.soc >= self.session.soc_target

    @property
    def need_wh(self) -> float:
        if self.full:
            return 0.0
        return max(0.0, self.session.energy_needed_kwh * 1000.0 - self.delivered_wh)


def simulate(
    scenario: Scenario,
    strategy: str,
    step_s: float = 60.0,
    *,
    budget_s: float = 0.5,
    feed_back_draw: bool = True,
    with_offline_optimum: bool = False,
) -> SimulationResult:
    """Simulate ``strategy`` over ``scenario`` in steps of ``step_s`` seconds.

    ``feed_back_draw=False`` hides the measured draw from the scheduler (to show what the
    feedback is worth). ``with_offline_optimum`` also solves the hindsight LP.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not step_s > 0:
        raise ConfigError(f"step must be positive, got {step_s} s")
    origin = scenario.start or DEFAULT_ORIGIN
    site = SiteLimits(
        scenario.site.fuse_limit_a,
        margin_a=scenario.site.margin_a,
        voltage_v=scenario.site.voltage_v,
    )
    voltage = scenario.site.voltage_v
    allowed_a = scenario.site.fuse_limit_a - scenario.site.margin_a
    connectors = [_connector(st) for st in scenario.stations]
    index = {p: i for i, p in enumerate(_PHASE_NAMES)}
    cars = [
        _Car(
            session=se,
            station=(st := scenario.station(se.station)),
            phases=tuple(index[p] for p in st.supply_phases(se.ev)),
            soc=se.soc_start,
        )
        for se in scenario.sessions
    ]
    arrivals = sorted(se.arrival_s for se in scenario.sessions)

    max_phase = [0.0, 0.0, 0.0]
    violations = steps = fallbacks = changes = 0
    min_limit = math.inf
    peak_w = 0.0
    compute_ms: list[float] = []
    t = min(arrivals, default=0.0)
    end = scenario.horizon_s
    while t < end:
        present = _one_car_per_station(
            c for c in cars if c.session.arrival_s < t + step_s and c.session.departure_s > t
        )
        if not present:
            t = _next_step_with_arrival(arrivals, t, step_s)
            continue
        steps += 1
        now = origin + timedelta(seconds=t)
        demands = [_demand(c, origin, feed_back_draw) for c in present]
        t0 = time.perf_counter()
        alloc = allocate(strategy, site, connectors, demands, now, tick_s=step_s, budget_s=budget_s)
        compute_ms.append((time.perf_counter() - t0) * 1000.0)
        if alloc.diagnostics.fallback is not None:
            fallbacks += 1

        phase_a = [0.0, 0.0, 0.0]
        power_w = 0.0
        for c in present:
            limit = alloc.limits_a[(c.station.id, 1)]
            if limit > 0:
                min_limit = min(min_limit, limit)
            start = max(t, c.session.arrival_s)
            span = min(t + step_s, c.session.departure_s) - start
            drawn = 0.0 if c.full else draw_current_a(c.session.ev, c.soc, limit)
            # Counted as if every car of the step drew at once: an upper bound when one
            # arrives or leaves inside the step.
            for p in c.phases:
                phase_a[p] += drawn
            power_w += drawn * voltage * len(c.phases)
            _charge(c, drawn, span, voltage)
            if c.last_limit_a != limit:
                # The first limit a car gets is no change; it does start its hold time.
                if c.last_limit_a is not None:
                    changes += 1
                c.last_change_at = now
            c.last_limit_a = limit
        for p in range(3):
            max_phase[p] = max(max_phase[p], phase_a[p])
        if max(phase_a) > allowed_a + _FUSE_TOL_A:
            violations += 1
        peak_w = max(peak_w, power_w)
        t += step_s

    return _result(
        scenario,
        strategy,
        step_s,
        cars,
        max_phase=max_phase,
        violations=violations,
        min_limit=min_limit,
        peak_w=peak_w,
        compute_ms=compute_ms,
        steps=steps,
        fallbacks=fallbacks,
        changes=changes,
        offline_kwh=_offline_kwh(scenario, site, connectors) if with_offline_optimum else None,
    )


def _one_car_per_station(cars: Iterable[_Car]) -> list[_Car]:
    """When one car leaves and the next arrives within a step, the leaving car keeps the
    station for that step; the newcomer is planned from the next step on, as on a real
    charger whose new transaction gets its limit at the next tick."""
    by_station: dict[str, _Car] = {}
    for car in cars:
        incumbent = by_station.get(car.station.id)
        if incumbent is None or car.session.arrival_s < incumbent.session.arrival_s:
            by_station[car.station.id] = car
    return list(by_station.values())


def _connector(station: ScenarioStation) -> ConnectorSpec:
    return ConnectorSpec(
        station.id,
        1,
        max_current_a=station.max_current_a,
        phases=station.phases,
        wiring=station.wiring,
    )


def _demand(car: _Car, origin: datetime, feed_back_draw: bool) -> SessionDemand:
    se = car.session
    drawn: tuple[float, ...] | None = None
    if feed_back_draw and car.drawn_a is not None:
        # Per station phase: the car draws on its first phases, nothing on the others.
        used = effective_phases(se.ev, car.station.phases)
        drawn = tuple(car.drawn_a if i < used else 0.0 for i in range(car.station.phases))
    return SessionDemand(
        (car.station.id, 1),
        origin + timedelta(seconds=se.arrival_s),
        origin + timedelta(seconds=se.departure_s),
        car.need_wh,
        drawn_a=drawn,
        # A controller knows the limit it sent whether or not it reads the meter.
        last_limit_a=car.last_limit_a,
        ev_max_current_a=se.ev.max_current_a,
        ev_phases=se.ev.phases,
        energy_delivered_wh=car.delivered_wh,
        last_change_at=car.last_change_at,
    )


def _charge(car: _Car, current_a: float, span_s: float, voltage_v: float) -> None:
    """Charge for ``span_s`` at up to ``current_a``, stopping at the target SoC."""
    se = car.session
    if current_a > 0 and span_s > 0 and car.soc < se.soc_target:
        soc, energy_wh = charge(
            se.ev, car.soc, current_a, span_s, voltage_v, phases=car.station.phases
        )
        if soc > se.soc_target:  # the car stops itself at its target
            energy_wh *= (se.soc_target - car.soc) / (soc - car.soc)
            soc = se.soc_target
        car.soc = soc
        car.delivered_wh += energy_wh
    # What the meter shows now, for the next step's scheduler.
    car.drawn_a = 0.0 if car.soc >= se.soc_target else draw_current_a(se.ev, car.soc, current_a)


def _next_step_with_arrival(arrivals: list[float], t: float, step_s: float) -> float:
    """The first step boundary after ``t`` whose step sees a car arrive."""
    upcoming = [a for a in arrivals if a >= t]
    if not upcoming:
        return math.inf
    return t + max(1, math.floor((upcoming[0] - t) / step_s)) * step_s


def jain_index(values: list[float]) -> float:
    """(sum x)^2 / (n sum x^2): 1.0 when all are equal (also all 0 or none)."""
    squares = sum(v * v for v in values)
    if not values or squares == 0:
        return 1.0
    return sum(values) ** 2 / (len(values) * squares)


def _offline_kwh(scenario: Scenario, site: SiteLimits, connectors: list[ConnectorSpec]) -> float:
    sessions = [
        OfflineSession(
            (se.station, 1),
            se.arrival_s,
            se.departure_s,
            se.energy_needed_kwh * 1000.0,
            ev_max_current_a=se.ev.max_current_a,
            ev_phases=se.ev.phases,
        )
        for se in scenario.sessions
    ]
    return offline_optimum(site, connectors, sessions).total_delivered_wh / 1000.0


def _result(
    scenario: Scenario,
    strategy: str,
    step_s: float,
    cars: list[_Car],
    *,
    max_phase: list[float],
    violations: int,
    min_limit: float,
    peak_w: float,
    compute_ms: list[float],
    steps: int,
    fallbacks: int,
    changes: int,
    offline_kwh: float | None,
) -> SimulationResult:
    needed = [c.session.energy_needed_kwh * 1000.0 for c in cars]
    delivered = [c.delivered_wh for c in cars]
    served = [d / n for d, n in zip(delivered, needed, strict=True) if n > 0]
    met = sum(1 for d, n in zip(delivered, needed, strict=True) if d >= MET_SHARE * n)
    plugged_h = sum(c.session.departure_s - c.session.arrival_s for c in cars) / 3600.0
    return SimulationResult(
        strategy=strategy,
        scenario=scenario.name,
        step_s=step_s,
        sessions=len(cars),
        sessions_met=met,
        energy_requested_kwh=sum(needed) / 1000.0,
        energy_delivered_kwh=sum(delivered) / 1000.0,
        max_phase_current_a=dict(zip(_PHASE_NAMES, max_phase, strict=True)),
        fuse_limit_a=scenario.site.fuse_limit_a,
        margin_a=scenario.site.margin_a,
        fuse_violations=violations,
        min_nonzero_limit_a=None if min_limit == math.inf else min_limit,
        jain_index=jain_index(served),
        peak_kw=peak_w / 1000.0,
        compute_ms_p50=statistics.median(compute_ms) if compute_ms else 0.0,
        compute_ms_max=max(compute_ms, default=0.0),
        steps=steps,
        fallbacks=fallbacks,
        energy_offline_optimum_kwh=offline_kwh,
        limit_changes=changes,
        plugged_in_hours=plugged_h,
        limit_changes_per_car_hour=changes / plugged_h if plugged_h > 0 else 0.0,
        session_delivered_kwh=tuple(d / 1000.0 for d in delivered),
    )
