"""Domain events the OCPP layer publishes and the controller (and tests) consume."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

log = logging.getLogger("csms.events")


@dataclass(frozen=True)
class ChargePointConnected:
    charge_point_id: str


@dataclass(frozen=True)
class ChargePointDisconnected:
    charge_point_id: str


@dataclass(frozen=True)
class ChargePointBooted:
    charge_point_id: str


@dataclass(frozen=True)
class ConnectorStatusChanged:
    charge_point_id: str
    connector_id: int
    status: str
    error_code: str


@dataclass(frozen=True)
class TransactionStarted:
    charge_point_id: str
    connector_id: int
    transaction_id: int
    # A StartTransaction the charger sent again (OCPP 1.6 §3.7): the same transaction, now
    # confirmed by the charger that it knows this id.
    resent: bool = False


@dataclass(frozen=True)
class TransactionStopped:
    charge_point_id: str
    connector_id: int | None
    transaction_id: int


@dataclass(frozen=True)
class MeterSampled:
    """The latest electrical readings of one connector, per phase where given."""

    charge_point_id: str
    connector_id: int
    transaction_id: int | None
    timestamp: datetime
    current_import_a: dict[str, float] = field(default_factory=dict)
    current_offered_a: float | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    soc_percent: float | None = None


@dataclass(frozen=True)
class SettingsChanged:
    """A site's settings or building load changed elsewhere (the API, `csms site set` on
    PostgreSQL): its controller plans at once instead of at its next poll."""

    reason: str
    site_id: int | None = None  # None: every site


Event = (
    ChargePointConnected
    | ChargePointDisconnected
    | ChargePointBooted
    | ConnectorStatusChanged
    | TransactionStarted
    | TransactionStopped
    | MeterSampled
    | SettingsChanged
)


class EventBus:
    """Fan-out of events to subscriber queues; publishing never blocks a handler."""

    def __init__(self, maxsize: int = 10_000) -> None:
        # Each queue with the event types it wants (None: every event).
        self._queues: list[tuple[asyncio.Queue[Event], tuple[type, ...] | None]] = []
        self._maxsize = maxsize

    def subscribe(self, *types: type) -> asyncio.Queue[Event]:
        """A queue of every event, or of the events of ``types`` only (a subscriber that
        needs boots and disconnections is not woken by every MeterValues)."""
        queue: asyncio.Queue[Event] = asyncio.Queue(self._maxsize)
        self._queues.append((queue, types or None))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._queues = [(q, t) for q, t in self._queues if q is not queue]

    def publish(self, event: Event, *, skip: asyncio.Queue[Event] | None = None) -> None:
        """To every subscriber that wants it but ``skip`` (the cluster's own queue, for an
        event that came from another instance)."""
        for queue, types in self._queues:
            if queue is skip or (types is not None and not isinstance(event, types)):
                continue
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event queue full, event dropped", extra={"event": repr(event)})
