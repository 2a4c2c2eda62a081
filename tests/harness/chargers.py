"""Model chargers that obey OCPP 1.6 smart charging exactly, and the fuse they share.

Each `ModelCharger` keeps the profiles it accepted in a `csms.profiles.ProfileStore` and
answers SetChargingProfile / ClearChargingProfile the way section 3.13 says (a TxProfile
without a matching running transaction is Rejected). Its cars draw min(composite limit,
the car's maximum) on the car's phases, or nothing below 6 A (IEC 61851-1).

`Garage` checks the fuse from what the chargers actually installed, with its own
arithmetic, never the controller's:

- What a connector may draw (per phase, capped by the charger's maximum; no profile at
  all = the charger's maximum):
  - idle: what a new car would start under (`limit_at` with a new transaction);
  - running car: on the phases the car itself uses (a one-phase car on a three-phase
    station: the station's first phase), max(`limit_at` for its transaction, `limit_at`
    for a new transaction after it ends, i.e. with its TxProfiles dropped,
    `ProfileStore.end_transaction`); on the station's other phases, only the latter: the
    next car, which may be three-phase, starts under the default.
- A three-phase station loads every phase it is wired to, a one-phase station only its
  own phase. (A car's phases are physics, not the controller's inference: a controller
  that counted a three-phase car on one phase would break this rule.)
- Only chargers whose BootNotification was Accepted count: a Pending or unbooted charger
  starts no transaction (OCPP 1.6 section 4.2).
- Per supply phase, the sum stays within fuse - margin - building load, where the
  building load is the latest reading by its `measured_at` (what
  `Repository.latest_building_load` returns to the controller) if it is at most
  `building_load_max_age_s` old at the instant checked, else the site's
  `building_load_worst_case_a` on every phase; no reading at all counts as stale (the rule
  of `csms.controller.planning.effective_building_load`, recomputed here).
- What the cars actually draw, on the car's own phases, stays within fuse - building load.

Reaction windows: a change from outside the controller that makes the fuse tighter or a
connector looser (a lower fuse or higher margin, a higher building reading, a reading
that ages past its limit, a manager's override) cannot be obeyed at the instant it
happens. From then until the end of the first replan in which no injected fault fired,
each phase may stay at what it held right after the change (never above it, unless within
the new limit); after that replan the strict rule holds again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from csms.profiles import (
    ChargingProfilePurpose,
    ChargingRateUnit,
    Limit,
    ProfileError,
    ProfileStore,
    limit_at,
    profile_from_ocpp,
)

PHASES = ("L1", "L2", "L3")
# IEC 61851-1: the control pilot cannot offer less than 6 A; below that a car draws nothing.
MIN_CHARGING_A = 6.0
VOLTAGE_V = 230.0
EPS = 1e-6
# Profile ids the controller uses for TxProfiles (csms.controller.planning.TX_PROFILE_ID_BASE).
CONTROLLER_TX_PROFILE_IDS = range(100, 200)


class ManualClock:
    """A clock that moves only when the test says so (csms.clock.Clock protocol)."""

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(0)


class FixedClock:
    """Always reads one instant (a reading written by another process with an old stamp)."""

    speed = 1.0

    def __init__(self, at: datetime) -> None:
        self._at = at

    def now(self) -> datetime:
        return self._at

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(0)


def split_wiring(wiring: str) -> tuple[str, ...]:
    return tuple(wiring[i : i + 2] for i in range(0, len(wiring), 2))


class UnsupportedActionError(Exception):
    """The model charger does not implement this central-system action."""


@dataclass
class Car:
    max_current_a: float
    phases: int


@dataclass
class ConnectorModel:
    connector_id: int
    id_tag: str
    transaction_id: int | None = None
    started_at: datetime | None = None
    car: Car | None = None
    # The car left and the charger ended the transaction, but its StopTransaction has not
    # reached the central system yet (queued, OCPP 1.6 section 3.7).
    queued_stop: int | None = None
    queued_stop_at: datetime | None = None
    energy_wh: float = 0.0
    # Instants during the running transaction at which what the car may draw changed.
    limit_changes: list[datetime] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.transaction_id is not None


class ModelCharger:
    """One charge point that obeys OCPP 1.6 section 3.13 to the letter."""

    def __init__(
        self,
        cp_id: str,
        *,
        phases: int,
        wiring: str,
        max_current_a: float,
        connectors: int,
        at: datetime,
    ) -> None:
        self.id = cp_id
        self.phases = phases
        self.wiring = split_wiring(wiring)
        self.max_current_a = max_current_a
        self.connectors = {n: ConnectorModel(n, f"{cp_id}-{n}") for n in range(1, connectors + 1)}
        self.store = ProfileStore(connector_count=connectors)
        # Every store it held and since when: what a late meter sample measured.
        self.history: list[tuple[datetime, ProfileStore]] = [(at, self.store)]
        # Injected faults for the next SetChargingProfile calls: "timeout" (the request
        # was lost), "lost_answer" (installed, the answer was lost), "callerror".
        self.faults: deque[str] = deque()
        self.connected = False
        self.booted = False

    def __repr__(self) -> str:
        return f"ModelCharger({self.id}, {self.phases}ph {''.join(self.wiring)}, {self.max_current_a:g} A)"

    # ----------------------------------------------------------------- electrics
    def supply_phases(self, car_phases: int | None = None) -> tuple[int, ...]:
        """Supply phases (0 = L1) a car loads: the first station phases of the wiring."""
        n = self.phases if car_phases is None else min(car_phases, self.phases)
        return tuple(PHASES.index(p) for p in self.wiring[:n])

    def _amps(self, limit: Limit | None) -> float:
        if limit is None:
            return self.max_current_a
        return min(limit.current_a, self.max_current_a)

    def running_limit_a(
        self, c: ConnectorModel, at: datetime, store: ProfileStore | None = None
    ) -> float:
        """What the running transaction on ``c`` may draw per phase."""
        return self._amps(
            limit_at(
                store or self.store,
                c.connector_id,
                at,
                transaction_id=c.transaction_id,
                transaction_start=c.started_at,
                voltage_v=VOLTAGE_V,
            )
        )

    def new_car_limit_a(self, connector_id: int, at: datetime) -> float:
        """What a car plugging in now would start under (no TxProfile of an ended
        transaction survives it, OCPP 1.6 section 3.13.1)."""
        store = self.store.end_transaction(connector_id)
        return self._amps(
            limit_at(
                store,
                connector_id,
                at,
                transaction_id=None,
                transaction_start=at,
                voltage_v=VOLTAGE_V,
            )
        )

    def draw_a(self, c: ConnectorModel, at: datetime, store: ProfileStore | None = None) -> float:
        """What the car on ``c`` draws per phase of its own."""
        if not c.running or c.car is None:
            return 0.0
        limit = self.running_limit_a(c, at, store)
        if limit < MIN_CHARGING_A - EPS:
            return 0.0
        return min(limit, c.car.max_current_a)

    def store_at(self, at: datetime) -> ProfileStore:
        found = self.history[0][1]
        for since, store in self.history:
            if since <= at:
                found = store
        return found

    # ------------------------------------------------------------ transactions
    def start(self, c: ConnectorModel, transaction_id: int, at: datetime, car: Car) -> None:
        c.transaction_id = transaction_id
        c.started_at = at
        c.car = car
        c.limit_changes = []

    def end(self, c: ConnectorModel, at: datetime) -> int:
        """The car leaves: the transaction ends here and its TxProfiles go (7.10)."""
        assert c.transaction_id is not None
        tx = c.transaction_id
        c.transaction_id = None
        c.started_at = None
        c.car = None
        self._replace(self.store.end_transaction(c.connector_id), at)
        return tx

    # ------------------------------------------------------------ OCPP calls
    def handle(self, action: str, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
        if action == "SetChargingProfile":
            return self._set_charging_profile(payload, at)
        if action == "ClearChargingProfile":
            return self._clear_charging_profile(payload, at)
        if action == "GetConfiguration":
            return self._get_configuration(payload)
        raise UnsupportedActionError(action)

    def _set_charging_profile(self, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
        connector_id = int(payload["connectorId"])
        connector = self.connectors.get(connector_id)
        try:
            profile = profile_from_ocpp(payload["csChargingProfiles"])
            new = self.store.install(
                connector_id,
                profile,
                transaction_id=connector.transaction_id if connector else None,
            )
        except ProfileError:  # ProfileRejectedError included: what the spec rejects
            return {"status": "Rejected"}
        self._replace(new, at)
        return {"status": "Accepted"}

    def _clear_charging_profile(self, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
        purpose = payload.get("chargingProfilePurpose")
        new, cleared = self.store.clear(
            id=payload.get("id"),
            connector_id=payload.get("connectorId"),
            purpose=ChargingProfilePurpose(purpose) if purpose else None,
            stack_level=payload.get("stackLevel"),
        )
        if not cleared:
            return {"status": "Unknown"}
        self._replace(new, at)
        return {"status": "Accepted"}

    def _get_configuration(self, payload: dict[str, Any]) -> dict[str, Any]:
        rotation = ", ".join(
            f"{n}.{''.join('RST'[PHASES.index(p)] for p in self.wiring)}"
            if self.phases == 3
            else f"{n}.NotApplicable"
            for n in self.connectors
        )
        known = {
            "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
            "ChargeProfileMaxStackLevel": str(self.store.max_stack_level),
            "MaxChargingProfilesInstalled": str(self.store.max_profiles),
            "ChargingScheduleMaxPeriods": str(self.store.max_periods),
            "ConnectorPhaseRotation": rotation,
            "MeterValueSampleInterval": "60",
            "MeterValuesSampledData": "Energy.Active.Import.Register,Current.Import,Current.Offered",
        }
        asked = payload.get("key") or list(known)
        return {
            "configurationKey": [
                {"key": k, "readonly": True, "value": known[k]} for k in asked if k in known
            ],
            "unknownKey": [k for k in asked if k not in known],
        }

    def _replace(self, new: ProfileStore, at: datetime) -> None:
        before = {n: self.running_limit_a(c, at) for n, c in self.connectors.items() if c.running}
        self.store = new
        self.history.append((at, new))
        for n, old in before.items():
            c = self.connectors[n]
            if abs(self.running_limit_a(c, at) - old) > EPS:
                c.limit_changes.append(at)


def profile_limits_a(payload: dict[str, Any]) -> list[float]:
    """Every period limit of a SetChargingProfile payload, in A per phase."""
    profile = payload.get("csChargingProfiles", {})
    schedule = profile.get("chargingSchedule", {})
    unit = schedule.get("chargingRateUnit", "A")
    out = []
    for period in schedule.get("chargingSchedulePeriod", []):
        limit = float(period.get("limit", 0))
        if unit == ChargingRateUnit.W.value:
            limit /= VOLTAGE_V * int(period.get("numberPhases") or 3)
        out.append(limit)
    return out


@dataclass
class Violation:
    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} [{self.where}]: {self.detail}"


@dataclass
class _Window:
    opened_by: str
    worst: list[float]
    actual: list[float]


@dataclass
class _Load:
    per_phase: list[float]
    parts: list[str]


class Garage:
    """The model chargers behind one fuse, and the checks of section 3.13's invariant."""

    def __init__(
        self,
        clock: ManualClock,
        *,
        fuse_limit_a: float,
        margin_a: float,
        worst_case_a: float,
        max_age_s: float,
    ) -> None:
        self.clock = clock
        self.fuse_limit_a = fuse_limit_a
        self.margin_a = margin_a
        self.worst_case_a = worst_case_a
        self.max_age_s = max_age_s
        self.chargers: dict[str, ModelCharger] = {}
        self.readings: list[tuple[datetime, tuple[float, float, float]]] = []
        self.violations: list[Violation] = []
        self.step = "setup"
        self._window: _Window | None = None
        self._capturing: str | None = None
        # Soft statistics: accepted controller TxProfiles per transaction, car time.
        self.limit_changes: dict[int, int] = {}
        self.car_time: dict[int, tuple[datetime, datetime | None]] = {}

    # ------------------------------------------------------------------ inputs
    def building_a(self, at: datetime) -> tuple[tuple[float, float, float], str]:
        worst = (self.worst_case_a,) * 3
        if not self.readings:
            return worst, "no reading: worst case"
        measured_at, values = max(self.readings, key=lambda r: r[0])
        age = (at - measured_at).total_seconds()
        if age > self.max_age_s:
            return worst, f"reading {age:.0f} s old: worst case"
        return values, f"reading {age:.0f} s old"

    def limits_a(self, at: datetime) -> tuple[list[float], list[float], str]:
        """(fuse - margin - building, fuse - building, how the building load was taken)."""
        building, how = self.building_a(at)
        strict = [self.fuse_limit_a - self.margin_a - b for b in building]
        physical = [self.fuse_limit_a - b for b in building]
        return strict, physical, how

    # ------------------------------------------------------------------- loads
    def counted(self) -> Iterator[ModelCharger]:
        return (c for c in self.chargers.values() if c.booted)

    def worst_case(self, at: datetime) -> _Load:
        load = [0.0, 0.0, 0.0]
        parts = []
        for charger in self.counted():
            station_phases = charger.supply_phases()
            for c in charger.connectors.values():
                new = charger.new_car_limit_a(c.connector_id, at)
                own = charger.running_limit_a(c, at) if c.running else None
                car_phases = charger.supply_phases(c.car.phases if c.car else None)
                for p in station_phases:
                    # The car draws only on its own phases; the next car (under the
                    # default) may use every phase of the station.
                    mine = own if own is not None and p in car_phases else 0.0
                    load[p] += max(mine, new)
                what = "idle" if own is None else f"tx {c.transaction_id} own {own:g}"
                parts.append(
                    f"{charger.id}/{c.connector_id} new car {new:g} A on "
                    + ",".join(PHASES[p] for p in station_phases)
                    + (
                        ""
                        if own is None
                        else f", {what} on " + ",".join(PHASES[p] for p in car_phases)
                    )
                )
        return _Load(load, parts)

    def actual(self, at: datetime) -> _Load:
        load = [0.0, 0.0, 0.0]
        parts = []
        for charger in self.counted():
            for c in charger.connectors.values():
                if not c.running or c.car is None:
                    continue
                amps = charger.draw_a(c, at)
                phases = charger.supply_phases(c.car.phases)
                for p in phases:
                    load[p] += amps
                parts.append(
                    f"{charger.id}/{c.connector_id} car {c.car.phases}ph draws {amps:g} A on "
                    + ",".join(PHASES[p] for p in phases)
                )
        return _Load(load, parts)

    # ------------------------------------------------------------------ checks
    def check(self, where: str) -> None:
        """The fuse invariant at this instant (or, during a change from outside the
        controller, the load that change leaves as the new ceiling)."""
        at = self.clock.now()
        strict, physical, how = self.limits_a(at)
        worst = self.worst_case(at)
        actual = self.actual(at)
        if self._capturing is not None:
            self._extend_window(self._capturing, worst.per_phase, actual.per_phase)
            return
        window = self._window
        for index, phase in enumerate(PHASES):
            bound = strict[index]
            if window is not None:
                bound = max(bound, window.worst[index])
            if worst.per_phase[index] > bound + EPS:
                self._violate(
                    "fuse (worst case)",
                    where,
                    f"{phase} may draw {worst.per_phase[index]:g} A > {bound:g} A allowed "
                    f"(fuse {self.fuse_limit_a:g} - margin {self.margin_a:g} - building, {how}"
                    + (f"; reaction window since {window.opened_by}" if window else "")
                    + "); connectors: "
                    + "; ".join(worst.parts),
                )
                break
        for index, phase in enumerate(PHASES):
            bound = physical[index]
            if window is not None:
                bound = max(bound, window.actual[index])
            if actual.per_phase[index] > bound + EPS:
                self._violate(
                    "fuse (actual draw)",
                    where,
                    f"{phase} cars draw {actual.per_phase[index]:g} A > {bound:g} A "
                    f"(fuse {self.fuse_limit_a:g} - building, {how}); " + "; ".join(actual.parts),
                )
                break

    def check_sent(self, cp_id: str, action: str, payload: dict[str, Any], where: str) -> None:
        """Rules for what is sent: no limit in (0, 6) A; a TxProfile names the transaction
        running on that connector (or the one whose StopTransaction is still queued)."""
        if action != "SetChargingProfile":
            return
        for limit in profile_limits_a(payload):
            if 0 < limit < MIN_CHARGING_A - EPS:
                self._violate(
                    "limit between 0 and 6 A",
                    where,
                    f"{cp_id} was sent {limit:g} A: {payload}",
                )
        profile = payload.get("csChargingProfiles", {})
        if profile.get("chargingProfilePurpose") != ChargingProfilePurpose.TxProfile.value:
            return
        charger = self.chargers[cp_id]
        connector = charger.connectors.get(int(payload.get("connectorId", 0)))
        named = profile.get("transactionId")
        expected = (
            set()
            if connector is None
            else {t for t in (connector.transaction_id, connector.queued_stop) if t is not None}
        )
        if named not in expected:
            self._violate(
                "TxProfile names the wrong transaction",
                where,
                f"{cp_id} connector {payload.get('connectorId')} got a TxProfile for "
                f"transaction {named!r}; running there: {sorted(expected) or 'none'}",
            )

    def record_answer(self, cp_id: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        profile = payload.get("csChargingProfiles", {})
        if (
            answer.get("status") == "Accepted"
            and profile.get("chargingProfilePurpose") == ChargingProfilePurpose.TxProfile.value
            and profile.get("chargingProfileId") in CONTROLLER_TX_PROFILE_IDS
            and profile.get("transactionId") is not None
        ):
            tx = int(profile["transactionId"])
            self.limit_changes[tx] = self.limit_changes.get(tx, 0) + 1

    def _violate(self, kind: str, where: str, detail: str) -> None:
        self.violations.append(Violation(kind, f"{self.step} / {where}", detail))

    # ---------------------------------------------------------- reaction window
    @contextmanager
    def outside_change(self, label: str) -> Iterator[None]:
        """Wrap a change from outside the controller: loads seen meanwhile (and right
        after) become the ceiling until the controller has replanned without faults."""
        self._capturing = label
        try:
            yield
        finally:
            self.check(label)
            self._capturing = None

    def _extend_window(self, label: str, worst: list[float], actual: list[float]) -> None:
        if self._window is None:
            self._window = _Window(label, list(worst), list(actual))
            return
        self._window.worst = [max(a, b) for a, b in zip(self._window.worst, worst, strict=True)]
        self._window.actual = [max(a, b) for a, b in zip(self._window.actual, actual, strict=True)]

    def close_window(self) -> None:
        self._window = None

    @property
    def in_window(self) -> bool:
        return self._window is not None

    # ------------------------------------------------------------------- queries
    def connectors(self) -> Iterator[tuple[ModelCharger, ConnectorModel]]:
        for charger in self.chargers.values():
            for c in charger.connectors.values():
                yield charger, c

    def free_connectors(self) -> list[tuple[ModelCharger, ConnectorModel]]:
        return [
            (ch, c)
            for ch, c in self.connectors()
            if ch.booted and ch.connected and not c.running and c.queued_stop is None
        ]

    def running_connectors(self) -> list[tuple[ModelCharger, ConnectorModel]]:
        return [(ch, c) for ch, c in self.connectors() if c.running]

    def advance(self, seconds: float) -> bool:
        """Let time pass (cars charge). True when the fuse got tighter meanwhile (a
        building reading aged past its limit)."""
        before, _, _ = self.limits_a(self.clock.now())
        for charger, c in self.running_connectors():
            if c.car is not None:
                amps = charger.draw_a(c, self.clock.now())
                phases = len(charger.supply_phases(c.car.phases))
                c.energy_wh += amps * VOLTAGE_V * phases * seconds / 3600.0
        self.clock.advance(seconds)
        after, _, _ = self.limits_a(self.clock.now())
        return any(a < b - EPS for a, b in zip(after, before, strict=True))

    def report(self) -> str:
        return "\n".join(str(v) for v in self.violations)
