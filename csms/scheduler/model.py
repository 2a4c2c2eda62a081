"""Plain frozen dataclasses the scheduler reads and returns.

Units are in the names: ``_a`` amperes (per phase), ``_wh`` watt-hours, ``_v`` volts,
``_at`` aware datetimes, ``_s`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

from csms.errors import ConfigError

#: IEC 61851-1: the control pilot PWM cannot signal less than 6 A; below it a car is paused.
MIN_CURRENT_A = 6.0
#: Nominal phase-to-neutral voltage of a European low-voltage supply.
NOMINAL_VOLTAGE_V = 230.0

#: (charge point id, connector id), the OCPP 1.6 address of one connector.
ConnectorKey: TypeAlias = tuple[str, int]


class Phase(StrEnum):
    """A supply phase of the site's main fuse."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"


#: Supply phases in index order: index 0 is L1.
SUPPLY_PHASES: tuple[Phase, Phase, Phase] = (Phase.L1, Phase.L2, Phase.L3)


class RateUnit(StrEnum):
    """The charging rate unit a charger accepts in a charging profile (OCPP 1.6 §7.7)."""

    A = "A"
    W = "W"


PerPhase: TypeAlias = tuple[float, float, float]


def _per_phase(value: float | tuple[float, ...], name: str) -> PerPhase:
    if isinstance(value, int | float):
        return (float(value), float(value), float(value))
    if len(value) != 3:
        raise ConfigError(f"{name} needs one value per phase (L1, L2, L3), got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """The main fuse all connectors share.

    ``fuse_limit_a`` and ``building_load_a`` are per phase: one number for all three
    phases, or a tuple (L1, L2, L3). Building load is the live consumption of everything
    else behind the fuse; the controller may also add to it what idle connectors could
    draw under their default profile, so that the fuse holds while the CSMS is down.
    """

    fuse_limit_a: float | tuple[float, float, float]
    margin_a: float = 0.0
    building_load_a: float | tuple[float, float, float] | None = None
    voltage_v: float = NOMINAL_VOLTAGE_V

    def __post_init__(self) -> None:
        fuse = _per_phase(self.fuse_limit_a, "fuse_limit_a")
        if min(fuse) < 0 or self.margin_a < 0:
            raise ConfigError("fuse limit and margin must not be negative")
        if self.voltage_v <= 0:
            raise ConfigError(f"voltage must be positive, got {self.voltage_v}")
        if self.building_load_a is not None:
            _per_phase(self.building_load_a, "building_load_a")

    def capacity_a(self) -> PerPhase:
        """What EVs may take per phase: fuse - margin - building load, never below 0."""
        fuse = _per_phase(self.fuse_limit_a, "fuse_limit_a")
        load = (
            (0.0, 0.0, 0.0)
            if self.building_load_a is None
            else _per_phase(self.building_load_a, "building_load_a")
        )
        c1, c2, c3 = (max(0.0, f - self.margin_a - b) for f, b in zip(fuse, load, strict=True))
        return (c1, c2, c3)


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """One connector of a charge point as the load manager sees it.

    ``wiring`` names the supply phase each station phase is connected to, in the station's
    own phase order: ``("L2",)`` for a one-phase unit on L2, ``("L2", "L3", "L1")`` for a
    three-phase unit installed with rotation. A car using fewer phases than the station
    draws on the first ones of this tuple (a one-phase car: only ``wiring[0]``).
    ``current_steps_a``: the only limits the charger accepts, if it has such a list.
    """

    station_id: str
    connector_id: int = 1
    max_current_a: float = 16.0
    phases: int = 3
    wiring: tuple[str, ...] = (Phase.L1, Phase.L2, Phase.L3)
    min_current_a: float = MIN_CURRENT_A
    current_steps_a: tuple[float, ...] | None = None
    rate_unit: RateUnit = RateUnit.A

    def __post_init__(self) -> None:
        where = f"connector {self.station_id}/{self.connector_id}"
        if self.phases not in (1, 3):
            raise ConfigError(f"{where}: phases must be 1 or 3, got {self.phases}")
        try:
            wiring = tuple(Phase(p) for p in self.wiring)
        except ValueError as exc:
            raise ConfigError(f"{where}: wiring must use L1, L2, L3: {self.wiring!r}") from exc
        if len(wiring) != self.phases or len(set(wiring)) != len(wiring):
            raise ConfigError(
                f"{where}: wiring {self.wiring!r} must name {self.phases} distinct phase(s)"
            )
        object.__setattr__(self, "wiring", wiring)
        if self.max_current_a < 0 or self.min_current_a < MIN_CURRENT_A:
            raise ConfigError(
                f"{where}: max current must be >= 0 and min current >= {MIN_CURRENT_A} A"
            )
        if self.current_steps_a is not None:
            steps = tuple(sorted({float(s) for s in self.current_steps_a}))
            if not steps or steps[0] <= 0:
                raise ConfigError(f"{where}: current steps must be positive: {steps!r}")
            object.__setattr__(self, "current_steps_a", steps)
        object.__setattr__(self, "rate_unit", RateUnit(self.rate_unit))

    @property
    def key(self) -> ConnectorKey:
        return (self.station_id, self.connector_id)


@dataclass(frozen=True, slots=True)
class SessionDemand:
    """A car plugged into a connector and what it still wants.

    ``drawn_a`` is what the meter measured lately, per station phase (in wiring order),
    and ``last_limit_a`` the limit that was in force while it was measured; together they
    reveal a car that takes less than it is offered (tapering near full, or limited by
    itself), whose unused share then goes to others. ``ev_phases`` may be 1, 2 or 3.
    ``energy_delivered_wh`` is what the session has received so far, when known: with it
    ``optimal`` shares a shortage in proportion to what each car asked for in all (served
    fractions), not to what each still needs.

    ``last_limit_a`` (the limit in force now, 0 when paused) and ``last_change_at`` (when
    that limit was set, i.e. last differed from the one before) keep limits calm (see
    :mod:`csms.scheduler.calm`): a car keeps its place in line by a margin, small changes
    are not made, and a limit set less than a minute ago is raised only after that minute.
    Without them (a car's first tick) the car gets what the strategy gives it.
    """

    connector: ConnectorKey
    arrival_at: datetime
    departure_at: datetime
    energy_needed_wh: float
    drawn_a: tuple[float, ...] | None = None
    last_limit_a: float | None = None
    ev_max_current_a: float | None = None
    ev_phases: int | None = None
    energy_delivered_wh: float | None = None
    last_change_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.departure_at < self.arrival_at:
            raise ConfigError(f"session on {self.connector}: departure before arrival")
        if self.ev_phases is not None and self.ev_phases not in (1, 2, 3):
            raise ConfigError(f"session on {self.connector}: ev_phases must be 1, 2 or 3")


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """What the scheduler wants a human (or a benchmark) to know about one allocation.

    ``repaired`` is the last safety net: it is True only when a strategy produced limits
    that broke a hard rule and the registry lowered them, which is a bug to report.
    """

    capacity_a: PerPhase
    phase_load_a: PerPhase
    paused: tuple[ConnectorKey, ...] = ()
    fallback: str | None = None
    fallback_reason: str | None = None
    solve_ms: float | None = None
    repaired: bool = False


@dataclass(frozen=True, slots=True)
class Allocation:
    """One limit in A per connector (0 = paused or idle), with diagnostics."""

    strategy: str
    limits_a: Mapping[ConnectorKey, float] = field(hash=False)
    diagnostics: Diagnostics

    def limit_a(self, key: ConnectorKey) -> float:
        return self.limits_a.get(key, 0.0)


def rate_for_charger(
    limit_a: float, connector: ConnectorSpec, *, phases: int, voltage_v: float
) -> float:
    """The limit in the unit the charger accepts: A as is, W = A x V x phases in use."""
    if connector.rate_unit is RateUnit.A:
        return limit_a
    return limit_a * voltage_v * phases
