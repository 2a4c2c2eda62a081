"""A connector under its charging profiles: the physics that obeys the limit, pure.

`ChargingPoint` joins the connector state machine (`virtual_chargers.simulation`) with the
charging-profile arithmetic the CSMS uses (`csms.profiles`). `advance(now)` lets the car
charge from the last instant to `now`, splitting the span wherever the composite limit
changes, so the car never draws more than the limit in force at any second, however
coarsely it is advanced. No clock and no I/O: every instant is an argument, so tests
can step it like a table.

The offer (what the control pilot signals) is min(composite limit, station maximum), 0
below 6 A, rounded down to a current step on chargers that only know fixed steps.
Without any profile the station offers its maximum ("no profile = no limit", spec 3.13.6).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from csms.profiles import (
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    Limit,
    ProfileStore,
    composite_schedule,
    limit_at,
    limit_timeline,
)
from virtual_chargers import simulation
from virtual_chargers.simulation import ConnectorState, Electrics, MeterReading

CONNECTOR = 1  # the one connector of a wallbox


@dataclass
class ChargingPoint:
    """The physical side of a one-connector charger at instant `t`."""

    electrics: Electrics
    t: datetime
    state: ConnectorState = field(default_factory=ConnectorState)
    profiles: ProfileStore = field(default_factory=ProfileStore)
    ignore_profiles: bool = False  # quirk: answers Accepted, does not follow
    transaction_id: int | None = None
    transaction_start: datetime | None = None
    # The largest amount the car ever drew above the limit in force (0 unless a bug).
    max_over_limit_a: float = 0.0

    # ------------------------------------------------------------------ limits
    def limit_at(self, at: datetime) -> Limit | None:
        """The composite limit of the connector at `at` (None: no profile limits it)."""
        return limit_at(
            self.profiles,
            CONNECTOR,
            at,
            transaction_id=self.transaction_id,
            transaction_start=self.transaction_start if self.state.transaction else None,
            voltage_v=self.electrics.voltage_v,
            default_phases=self.electrics.phases,
        )

    def offer_a(self, limit: Limit | None) -> float:
        if self.ignore_profiles or limit is None:
            return simulation.offered_current_a(None, self.electrics)
        return simulation.offered_current_a(limit.current_a, self.electrics)

    def _obeys_profiles(self) -> bool:
        return bool(self.profiles.entries) and not self.ignore_profiles

    def _timeline(self, start: datetime, seconds: float) -> list[tuple[datetime, Limit | None]]:
        changes = limit_timeline(
            self.profiles,
            CONNECTOR,
            start,
            max(1, math.ceil(seconds)),
            transaction_id=self.transaction_id,
            transaction_start=self.transaction_start if self.state.transaction else None,
            voltage_v=self.electrics.voltage_v,
            default_phases=self.electrics.phases,
        )
        return [(c.at, c.limit) for c in changes]

    # ------------------------------------------------------------------ time
    def advance(self, now: datetime) -> None:
        """Charge from `t` to `now` under the limits in force, second by second exactly."""
        start = self.t
        if now <= start:
            return
        self.t = now
        state = self.state
        if state.transaction and state.car is not None:
            if self._obeys_profiles():
                changes = self._timeline(start, (now - start).total_seconds())
                for index, (at, limit) in enumerate(changes):
                    seg_start = max(at, start)
                    seg_end = min(changes[index + 1][0] if index + 1 < len(changes) else now, now)
                    if seg_end > seg_start:
                        seconds = (seg_end - seg_start).total_seconds()
                        state = simulation.step(state, seconds, self.offer_a(limit), self.electrics)
            else:
                seconds = (now - start).total_seconds()
                state = simulation.step(state, seconds, self.offer_a(None), self.electrics)
        limit = self.limit_at(now)
        self.state = simulation.settle(state, self.offer_a(limit))
        if limit is not None and not self.ignore_profiles:
            self.max_over_limit_a = max(
                self.max_over_limit_a, self.state.current_a - limit.current_a
            )

    def update(self, now: datetime, transition: Callable[[ConnectorState], ConnectorState]) -> None:
        """Advance to `now`, then apply a state transition (plug in, start, stop...)."""
        self.advance(now)
        self.state = simulation.settle(transition(self.state), self.offer_a(self.limit_at(now)))

    def set_profiles(self, now: datetime, profiles: ProfileStore) -> None:
        """Install a new profile store at `now`: the past ran under the old one."""
        self.advance(now)
        self.profiles = profiles
        self.state = simulation.settle(self.state, self.offer_a(self.limit_at(now)))

    def next_change_in(self, now: datetime, horizon_s: float) -> float:
        """Seconds until the composite limit changes, inf if not within `horizon_s`."""
        if not self._obeys_profiles() or not self.state.transaction:
            return math.inf
        changes = self._timeline(now, horizon_s)
        return (changes[1][0] - now).total_seconds() if len(changes) > 1 else math.inf

    def seconds_until_idle(self) -> float:
        return simulation.seconds_until_idle(self.state, self.electrics)

    def reading(self) -> MeterReading:
        return simulation.reading(self.state, self.electrics)

    def supply_currents_a(self) -> tuple[float, float, float]:
        return simulation.supply_currents_a(self.state, self.electrics)

    # ------------------------------------------------------------------ reports
    def composite(
        self, connector_id: int, now: datetime, duration_s: int, unit: ChargingRateUnit
    ) -> ChargingSchedule:
        """GetCompositeSchedule: the profiles' composite, capped at the station's maximum
        (errata 3.1: local limits belong in the composite schedule). ProfileError if the
        request is impossible (e.g. duration 0)."""
        running = connector_id == CONNECTOR and self.state.transaction
        schedule = composite_schedule(
            self.profiles,
            connector_id,
            now,
            duration_s,
            unit,
            transaction_id=self.transaction_id if running else None,
            transaction_start=self.transaction_start if running else None,
            voltage_v=self.electrics.voltage_v,
            default_phases=self.electrics.phases,
            unlimited_a=self.electrics.max_current_a,
        )
        return _cap(schedule, self.electrics)


def _cap(schedule: ChargingSchedule, electrics: Electrics) -> ChargingSchedule:
    periods: list[ChargingSchedulePeriod] = []
    for period in schedule.periods:
        cap = electrics.max_current_a
        if schedule.rate_unit is ChargingRateUnit.W:
            cap *= electrics.voltage_v * (period.number_phases or electrics.phases)
        capped = replace(period, limit=math.floor(min(period.limit, cap) * 10 + 1e-6) / 10)
        if periods and (periods[-1].limit, periods[-1].number_phases) == (
            capped.limit,
            capped.number_phases,
        ):
            continue
        periods.append(capped)
    return replace(schedule, periods=tuple(periods))
