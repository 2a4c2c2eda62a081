"""One connector of a virtual charge point: state machine and meter, as pure code.

No clock, no asyncio, no OCPP messages: every function takes the state and returns a new
one, so the rules are tested with tables of cases. `virtual_chargers.station` advances the
state with the limit its charging profiles give, and turns statuses and readings into OCPP.

Status (spec 4.9 / 7.7 ChargePointStatus) follows from the state:

    Unavailable    the connector is Inoperative (ChangeAvailability), no transaction
    Available      no car plugged in
    Preparing      a car is plugged in, no transaction yet (waiting for authorisation)
    Charging       transaction running, the car draws current
    SuspendedEVSE  transaction running, the offer is below 6 A (IEC 61851-1: below the
                   lowest PWM duty cycle there is nothing to offer), or charging is held
                   after an invalid id
    SuspendedEV    transaction running, enough is offered but the car takes nothing
                   (battery full or its own charge limit reached)
    Finishing      transaction stopped, the car is still plugged in

The meter reports per station phase, like a real meter at the charger's terminals: a
one-phase car draws on L1 only, whatever supply phase L1 is wired to. The wiring maps
station phases to supply phases for the site's fuse (`supply_currents_a`); a CSMS learns
it from ConnectorPhaseRotation (spec 9.1.9) or its own station table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from csms.ev import (
    DEFAULT_VOLTAGE_V,
    MIN_CURRENT_A,
    EVSpec,
    charge,
    draw_current_a,
    effective_phases,
    time_to_full_s,
)

PHASES: Final = ("L1", "L2", "L3")
# A car that draws less than this is "taking nothing" (contactor closed, onboard charger idle).
IDLE_CURRENT_A: Final = 0.1


class ConnectorStatus(StrEnum):
    available = "Available"
    preparing = "Preparing"
    charging = "Charging"
    suspended_ev = "SuspendedEV"
    suspended_evse = "SuspendedEVSE"
    finishing = "Finishing"
    unavailable = "Unavailable"
    faulted = "Faulted"


@dataclass(frozen=True, slots=True)
class Electrics:
    """The station's electrical side: what it can offer and how it is connected."""

    max_current_a: float
    phases: int = 3
    wiring: tuple[str, ...] = PHASES
    voltage_v: float = DEFAULT_VOLTAGE_V
    # Quirk of some chargers: only these currents can be offered (e.g. 6, 8, 10, 13, 16 A).
    current_steps_a: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"phases must be 1 or 3, got {self.phases}")
        if len(self.wiring) != self.phases or any(p not in PHASES for p in self.wiring):
            raise ValueError(f"wiring {self.wiring!r} must name {self.phases} of L1, L2, L3")
        if self.max_current_a < MIN_CURRENT_A:
            raise ValueError(f"max_current_a must be >= {MIN_CURRENT_A}, got {self.max_current_a}")


@dataclass(frozen=True, slots=True)
class Car:
    """The plugged-in car: its model, state of charge and own charge limit (0-1)."""

    spec: EVSpec
    soc: float
    target_soc: float = 1.0


@dataclass(frozen=True, slots=True)
class ConnectorState:
    """Everything the simulation knows about one connector at one instant."""

    car: Car | None = None
    energy_wh: float = 0.0  # the meter register; never goes down
    offered_a: float = 0.0  # what the control pilot signals now (0 = pause)
    current_a: float = 0.0  # what the car draws now, per phase it uses
    transaction: bool = False  # a transaction is running
    energy_allowed: bool = True  # False: transaction held (e.g. invalid id, spec 9.1.31)
    finished: bool = False  # transaction stopped, car still plugged in
    operative: bool = True  # ChangeAvailability

    @property
    def status(self) -> ConnectorStatus:
        return status_of(self)


@dataclass(frozen=True, slots=True)
class MeterReading:
    """What the meter shows at one instant (the sampled values of one meterValue)."""

    energy_wh: int  # Energy.Active.Import.Register, whole Wh, monotonic
    power_w: float  # Power.Active.Import
    current_a: tuple[float, ...]  # Current.Import per station phase (L1, L2, L3)
    offered_a: float  # Current.Offered
    offered_w: float  # Power.Offered
    voltage_v: float
    soc_percent: float | None  # None without a car


def status_of(state: ConnectorState) -> ConnectorStatus:
    if state.transaction:
        if not state.energy_allowed or state.offered_a < MIN_CURRENT_A:
            return ConnectorStatus.suspended_evse
        if state.current_a < IDLE_CURRENT_A:
            return ConnectorStatus.suspended_ev
        return ConnectorStatus.charging
    if not state.operative:
        return ConnectorStatus.unavailable
    if state.car is not None:
        return ConnectorStatus.finishing if state.finished else ConnectorStatus.preparing
    return ConnectorStatus.available


# ------------------------------------------------------------------ transitions
def plug_in(state: ConnectorState, car: Car) -> ConnectorState:
    if state.car is not None:
        raise ValueError("a car is already plugged in")
    return replace(state, car=car, finished=False, current_a=0.0)


def unplug(state: ConnectorState) -> ConnectorState:
    return replace(
        state, car=None, transaction=False, finished=False, current_a=0.0, energy_allowed=True
    )


def start_transaction(state: ConnectorState) -> ConnectorState:
    if state.car is None:
        raise ValueError("no car is plugged in")
    return replace(state, transaction=True, finished=False, energy_allowed=True)


def stop_transaction(state: ConnectorState) -> ConnectorState:
    return replace(
        state,
        transaction=False,
        finished=state.car is not None,
        current_a=0.0,
        energy_allowed=True,
    )


def hold_energy(state: ConnectorState) -> ConnectorState:
    """Keep the transaction but offer nothing (StopTransactionOnInvalidId false)."""
    return replace(state, energy_allowed=False, current_a=0.0)


def set_operative(state: ConnectorState, operative: bool) -> ConnectorState:
    return replace(state, operative=operative)


# ----------------------------------------------------------------------- physics
def offered_current_a(limit_a: float | None, electrics: Electrics) -> float:
    """What the control pilot can signal under `limit_a` (None = no profile limits it).

    Never more than the station's maximum; nothing below 6 A (IEC 61851-1); with
    `current_steps_a` the highest step not above the limit.
    """
    offer = electrics.max_current_a if limit_a is None else min(limit_a, electrics.max_current_a)
    if electrics.current_steps_a is not None:
        steps = [s for s in electrics.current_steps_a if s <= offer + 1e-9]
        offer = max(steps) if steps else 0.0
    return offer if offer >= MIN_CURRENT_A else 0.0


def _car_draw_a(car: Car, offered_a: float) -> float:
    if car.soc >= car.target_soc:
        return 0.0
    return draw_current_a(car.spec, car.soc, offered_a)


def settle(state: ConnectorState, offered_a: float) -> ConnectorState:
    """The instantaneous offer and draw, without time passing."""
    if not state.transaction or not state.energy_allowed or state.car is None:
        return replace(state, offered_a=offered_a, current_a=0.0)
    return replace(state, offered_a=offered_a, current_a=_car_draw_a(state.car, offered_a))


def step(
    state: ConnectorState, seconds: float, offered_a: float, electrics: Electrics
) -> ConnectorState:
    """`seconds` pass with the control pilot offering `offered_a` the whole time.

    Energy is integrated exactly (`csms.ev.charge`, taper included); the car stops at its
    own `target_soc`. The returned offer and draw are those at the end of the step.
    """
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    car = state.car
    if (
        car is None
        or not state.transaction
        or not state.energy_allowed
        or seconds == 0
        or car.soc >= car.target_soc
        or offered_a < MIN_CURRENT_A
    ):
        return settle(state, offered_a)
    ceiling = min(offered_a, car.spec.max_current_a)
    spec = car.spec
    charge_s = seconds
    if car.target_soc < 1.0:
        to_target = time_to_full_s(
            spec, car.soc, car.target_soc, ceiling, electrics.voltage_v, phases=electrics.phases
        )
        charge_s = min(seconds, to_target)
    soc, energy_wh = charge(
        spec, car.soc, ceiling, charge_s, electrics.voltage_v, phases=electrics.phases
    )
    if charge_s < seconds or soc > car.target_soc:
        # Reached its own charge limit inside the step (exactly, not by rounding).
        soc = car.target_soc
    new_car = replace(car, soc=min(soc, 1.0))
    new_state = replace(state, car=new_car, energy_wh=state.energy_wh + energy_wh)
    return settle(new_state, offered_a)


def seconds_until_idle(state: ConnectorState, electrics: Electrics) -> float:
    """Seconds until the car stops drawing at the current offer (inf: not before a change)."""
    car = state.car
    if car is None or state.current_a < IDLE_CURRENT_A:
        return math.inf
    return time_to_full_s(
        car.spec,
        car.soc,
        car.target_soc,
        state.offered_a,
        electrics.voltage_v,
        phases=electrics.phases,
    )


def used_phases(state: ConnectorState, electrics: Electrics) -> int:
    if state.car is None:
        return electrics.phases
    return effective_phases(state.car.spec, electrics.phases)


def reading(state: ConnectorState, electrics: Electrics) -> MeterReading:
    n = used_phases(state, electrics)
    per_phase = tuple(state.current_a if index < n else 0.0 for index in range(electrics.phases))
    power_w = state.current_a * electrics.voltage_v * n
    return MeterReading(
        energy_wh=math.floor(state.energy_wh + 1e-6),
        power_w=power_w,
        current_a=per_phase,
        offered_a=state.offered_a,
        offered_w=state.offered_a * electrics.voltage_v * n,
        voltage_v=electrics.voltage_v,
        soc_percent=None if state.car is None else state.car.soc * 100.0,
    )


def supply_currents_a(state: ConnectorState, electrics: Electrics) -> tuple[float, float, float]:
    """The connector's load on the site's supply phases L1, L2, L3 (through the wiring)."""
    load = [0.0, 0.0, 0.0]
    for index in range(used_phases(state, electrics)):
        load[PHASES.index(electrics.wiring[index])] += state.current_a
    return load[0], load[1], load[2]
