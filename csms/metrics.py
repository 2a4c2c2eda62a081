"""Prometheus metrics of the CSMS: what `/metrics` on the API port shows.

Counters and histograms are updated where things happen (the OCPP connection, the
controller, every database statement through the engine's events); gauges that describe
the present (chargers connected, unmanaged, fuse headroom) are read when Prometheus
scrapes (`refresh`). Everything lives in one registry of its own, `REGISTRY`, so that
nothing else a library registers globally leaks into the page.

Label values are bounded: OCPP action names and error codes are checked against the
OCPP 1.6 lists before they become labels (a charger cannot mint new series by sending
made-up actions), phases are L1-L3, a site is its name (set by an operator, at most
`MAX_SITE_LABELS` sites), and no charge point id is a label (a garage of 500
chargers would make 500 series of every metric; per-charger detail is in the API).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

# No ``*_created`` series beside every counter: Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# OCPP 1.6 actions (both directions, security extension included): anything else is "other".
_ACTIONS = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
        "SecurityEventNotification",
        "SignCertificate",
        "CertificateSigned",
        "LogStatusNotification",
        "SignedFirmwareStatusNotification",
        "ExtendedTriggerMessage",
        "GetLog",
        "SignedUpdateFirmware",
        "InstallCertificate",
        "GetInstalledCertificateIds",
        "DeleteCertificate",
    }
)
# OCPP-J 1.6 section 4.2.3 error codes, with the 2.0.1 spelling the `ocpp` package uses
# and the two our CSMS gives a call that got no answer (Timeout, ConnectionClosed).
_ERROR_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "FormatViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "OccurrenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
        "Timeout",
        "ConnectionClosed",
    }
)

CHARGERS_CONNECTED = Gauge(
    "garagegrid_chargers_connected",
    "Charge points with an open OCPP connection",
    registry=REGISTRY,
)
CHARGERS_UNMANAGED = Gauge(
    "garagegrid_chargers_unmanaged",
    "Charge points counted at their maximum because they reject or ignore limits",
    registry=REGISTRY,
)
MESSAGES = Counter(
    "garagegrid_ocpp_messages",
    "OCPP CALLs by action and direction (in: from a charger, out: to a charger)",
    ["action", "direction"],
    registry=REGISTRY,
)
CALL_ERRORS = Counter(
    "garagegrid_ocpp_callerrors",
    "OCPP CALLERRORs by error code and direction (out: the CSMS refused a charger's "
    "CALL; in: a charger refused the CSMS's CALL; Timeout and ConnectionClosed: no answer)",
    ["code", "direction"],
    registry=REGISTRY,
)
CALL_LATENCY = Histogram(
    "garagegrid_ocpp_call_duration_seconds",
    "Time from sending a CALL to a charger to its answer (CALLRESULT or CALLERROR)",
    ["action"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
TICK_DURATION = Histogram(
    "garagegrid_controller_tick_duration_seconds",
    "Time of one controller plan: read the store, allocate, send the limits",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
LIMITS_SENT = Counter(
    "garagegrid_limits_sent",
    "TxProfiles the controller sent, by the charger's answer (Accepted, Rejected, "
    "NotSupported, or the error when there was no answer)",
    ["answer"],
    registry=REGISTRY,
)
FUSE_HEADROOM = Gauge(
    "garagegrid_fuse_headroom_amperes",
    "Per phase: fuse - margin - building load - the worst case the chargers may draw "
    "with the profiles they accepted (csms.fuse); negative means the fuse is at risk",
    ["site", "phase"],
    registry=REGISTRY,
)
DB_LATENCY = Histogram(
    "garagegrid_database_statement_duration_seconds",
    "Time of one database statement, by kind",
    ["statement"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "garagegrid_api_requests",
    "Operator API requests by method and status code",
    ["method", "status"],
    registry=REGISTRY,
)

# Site labels: one series per phase of each site, named by the operator (never by a
# charger), up to this many sites; a longer name is cut (site names are at most 64).
MAX_SITE_LABELS = 1000
SITE_LABEL_MAX = 64

_STATEMENTS = frozenset({"select", "insert", "update", "delete"})
_TIMER_KEY = "garagegrid_statement_started"


def action_label(action: object) -> str:
    return action if isinstance(action, str) and action in _ACTIONS else "other"


def code_label(code: object) -> str:
    return code if isinstance(code, str) and code in _ERROR_CODES else "other"


def count_message(action: object, direction: str) -> None:
    MESSAGES.labels(action_label(action), direction).inc()


def count_call_error(code: object, direction: str) -> None:
    CALL_ERRORS.labels(code_label(code), direction).inc()


def observe_call(action: object, seconds: float) -> None:
    CALL_LATENCY.labels(action_label(action)).observe(seconds)


def count_limit(answer: str) -> None:
    LIMITS_SENT.labels(answer if answer.isalnum() and len(answer) <= 32 else "other").inc()


def set_fuse_headroom(site: str, headroom_a: Iterable[float]) -> None:
    for phase, amps in zip(("L1", "L2", "L3"), headroom_a, strict=False):
        FUSE_HEADROOM.labels(site, phase).set(amps)


def replace_fuse_headroom(by_site: Mapping[str, Iterable[float]]) -> None:
    """The headroom of every site now (by the site's name): a site renamed, or whose
    controller has not planned yet, leaves no series behind. At most
    `MAX_SITE_LABELS` sites, the first by name, so the series stay bounded."""
    FUSE_HEADROOM.clear()
    for name in sorted(by_site)[:MAX_SITE_LABELS]:
        set_fuse_headroom(site_label(name), by_site[name])


def site_label(name: str) -> str:
    """A site's name as a label value: what the operator named it (``csms site add``),
    cut to `SITE_LABEL_MAX` characters."""
    return name[:SITE_LABEL_MAX]


def _statement_kind(statement: str) -> str:
    word = statement.lstrip().split(None, 1)[0].lower() if statement.strip() else ""
    return word if word in _STATEMENTS else "other"


def instrument_engine(engine: AsyncEngine) -> None:
    """Time every statement this engine runs (once per engine)."""
    sync = engine.sync_engine
    if event.contains(sync, "before_cursor_execute", _before):
        return
    event.listen(sync, "before_cursor_execute", _before)
    event.listen(sync, "after_cursor_execute", _after)


def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    conn.info.setdefault(_TIMER_KEY, []).append(time.perf_counter())


def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    started = conn.info.get(_TIMER_KEY)
    if started:
        DB_LATENCY.labels(_statement_kind(statement)).observe(time.perf_counter() - started.pop())


def exposition() -> bytes:
    return generate_latest(REGISTRY)
