"""Options, quirks and the records a virtual station keeps (plain data)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from csms.profiles import ChargingProfile
from virtual_chargers.simulation import ConnectorStatus

_MAX_SAMPLES: Final = 20_000  # per-station latency samples kept for statistics


# ----------------------------------------------------------------------- options
QUIRK_NAMES: Final = (
    "stack-level-0",
    "w-only",
    "reject-connector-0",
    "ignore-profiles",
    "steps=6/8/10/13/16",
)


@dataclass(frozen=True, slots=True)
class Quirks:
    """Behaviours of real chargers that a CSMS must cope with (FIELD-NOTES).

    `only_stack_level_0`: ChargeProfileMaxStackLevel 0 (ABB Terra AC, Wallbox, Zaptec).
    `only_watts`: schedules in W only (Huawei). `reject_connector_0`: SetChargingProfile
    on connector 0 is Rejected. `ignore_profiles`: answers Accepted but does not follow
    the limit (a CSMS should notice from Current.Import). `current_steps_a`: only these
    currents can be offered (e.g. 6/8/10/13/16 A); a limit is rounded down to a step.
    """

    only_stack_level_0: bool = False
    only_watts: bool = False
    reject_connector_0: bool = False
    ignore_profiles: bool = False
    current_steps_a: tuple[float, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> Quirks:
        """``"stack-level-0,w-only,steps=6/8/10/13/16"`` -> Quirks; ValueError if unknown."""
        quirks = cls()
        for raw in (p.strip() for p in text.split(",")):
            if not raw:
                continue
            if raw == "stack-level-0":
                quirks = replace(quirks, only_stack_level_0=True)
            elif raw == "w-only":
                quirks = replace(quirks, only_watts=True)
            elif raw == "reject-connector-0":
                quirks = replace(quirks, reject_connector_0=True)
            elif raw == "ignore-profiles":
                quirks = replace(quirks, ignore_profiles=True)
            elif raw.startswith("steps="):
                try:
                    steps = tuple(sorted(float(s) for s in raw[6:].split("/") if s))
                except ValueError:
                    raise ValueError(f"quirk {raw!r}: expected steps=6/8/10/13/16") from None
                if not steps or steps[0] <= 0:
                    raise ValueError(f"quirk {raw!r}: expected positive currents")
                quirks = replace(quirks, current_steps_a=steps)
            else:
                raise ValueError(f"unknown quirk {raw!r}; expected one of {', '.join(QUIRK_NAMES)}")
        return quirks

    def describe(self) -> str:
        names = [
            name
            for name, on in (
                ("stack-level-0", self.only_stack_level_0),
                ("w-only", self.only_watts),
                ("reject-connector-0", self.reject_connector_0),
                ("ignore-profiles", self.ignore_profiles),
            )
            if on
        ]
        if self.current_steps_a:
            names.append("steps=" + "/".join(f"{s:g}" for s in self.current_steps_a))
        return ",".join(names)


def _no_time_sync(_: datetime) -> None:
    return None


@dataclass(frozen=True)
class StationOptions:
    """How a station behaves beyond its electrics; times are simulated seconds unless `_real`."""

    password: str | None = None
    quirks: Quirks = field(default_factory=Quirks)
    config: Mapping[str, str] = field(default_factory=dict)  # initial configuration values
    vendor: str = "GarageGrid"
    model: str = "Virtual AC Wallbox"
    firmware_version: str = "1.0.0"
    free_vend: bool = False  # start without Authorize and keep charging on an invalid id
    response_timeout_real_s: float = 30.0
    open_timeout_real_s: float = 10.0
    reconnect_initial_s: float = 2.0
    reconnect_max_s: float = 300.0
    boot_retry_s: float = 60.0  # when the central system gives interval 0
    reboot_s: float = 10.0
    unplug_delay_s: float = 10.0
    max_tick_real_s: float = 1.0  # the simulation wakes at least this often (real time)
    # Check our own outgoing payloads against the schemas: a debugging aid; it costs
    # ~3 ms per MeterValues (jsonschema), the bulk of a fleet's CPU.
    validate_messages: bool = False
    state_file: Path | None = None
    on_time_sync: Callable[[datetime], None] = _no_time_sync
    # (station id, transaction id, departure, energy needed in Wh) once a start has its id.
    on_transaction_started: Callable[[str, int, datetime | None, float], None] | None = None
    # (station id, action, payload as sent) for every transaction message the central
    # system answered with a CALLRESULT, in the order the answers came: a ledger for checks.
    on_delivered: Callable[[str, str, dict[str, Any]], None] | None = None
    # Tell each session's departure and need over OCPP (the GarageGrid ChargingNeeds
    # DataTransfer) once its transaction has an id, as a charger's own app would.
    needs_by_data_transfer: bool = False
    seed: int | None = None


# ----------------------------------------------------------------- bookkeeping
@dataclass
class SessionRecord:
    """One transaction (or one refused attempt) of a car's visit, for statistics."""

    visit: int
    id_tag: str
    arrived_at: datetime
    departure_at: datetime | None
    needed_wh: float
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    transaction_id: int | None = None
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    stop_reason: str | None = None
    refused: str | None = None
    start_failed: bool = False

    @property
    def energy_wh(self) -> int:
        if self.meter_start_wh is None or self.meter_stop_wh is None:
            return 0
        return self.meter_stop_wh - self.meter_start_wh


@dataclass
class StationStats:
    sent: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    call_errors: int = 0
    timeouts: int = 0
    connects: int = 0
    disconnects: int = 0
    # MeterValues: simulated seconds late vs the sampling schedule, and real seconds from
    # the sample to the central system's answer.
    meter_lag_s: deque[float] = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    delivery_real_s: deque[float] = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    # Every answered CALL: (time.monotonic() when sent, real seconds until its answer).
    round_trips: deque[tuple[float, float]] = field(
        default_factory=lambda: deque(maxlen=_MAX_SAMPLES)
    )
    # Offline queue (OCPP 1.6 section 3.7): transaction messages queued while not
    # connected, how many of those were answered after a reconnect, sends of a message
    # after its first (no answer before the link went, or a CALLERROR), and answers that
    # came for a message older than one already answered (0 unless the FIFO broke).
    queued_offline: int = 0
    replayed: int = 0
    resent: int = 0
    out_of_order: int = 0


@dataclass(frozen=True, slots=True)
class StationSnapshot:
    """What the live table shows about one station."""

    station_id: str
    status: ConnectorStatus
    online: bool
    limit_a: float | None  # composite limit per phase now; None = no profile limits it
    offered_a: float
    current_a: float
    power_w: float
    soc: float | None
    target_soc: float | None
    session_energy_wh: float
    transaction_id: int | None
    id_tag: str | None
    eta: datetime | None
    departure_at: datetime | None
    queued: int


@dataclass(frozen=True)
class RemoteStart:
    """An accepted RemoteStartTransaction waiting for a car (ConnectionTimeOut)."""

    id_tag: str
    expires_at: datetime
    profile: ChargingProfile | None
