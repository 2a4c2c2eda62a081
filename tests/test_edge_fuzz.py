"""Fuzzing the OCPP edge (issue 10, item 4): generated and mutated frames at a live
``csms serve`` while a normal charger keeps charging beside it.

The frames: CALLs whose payloads hypothesis-jsonschema draws from the official OCPP 1.6
schemas of every charge-point-to-central-system request (shipped with the ``ocpp``
package), the same payloads mutated (huge numbers, wrong types, deep nesting, missing and
unknown fields, over-long strings), random bytes and text, invalid UTF-8, unknown
actions and message types, and CALLRESULTs / CALLERRORs for calls never made.

After each fuzzed frame a Heartbeat probe follows on the same connection: the central
system handles a connection's messages in order, so everything that arrives before the
probe's answer is the answer to the fuzzed frame. Every CALL with a readable id must get
exactly one answer with its id, an unreadable frame a CALLERROR with id ``-1``, a response
to nothing no answer at all; the only closes allowed are the clean ones RFC 6455 asks for
(1007 invalid UTF-8, 1009 too big), after which the fuzzer reconnects.

Meanwhile, on its own thread and event loop, a normal charger boots, starts a transaction
and sends MeterValues every ~100 ms: every call must be answered with a CALLRESULT in
under 2 s. At the end the server still answers /healthz and the database is consistent.

Seeded (``derandomize``) and bounded for CI: ``GARAGEGRID_FUZZ_FRAMES`` frames (default
300, 10-20 s on two cores; 2,000 take about 70 s); set it higher for a longer run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as sync_connect

from csms.app import CsmsApp
from csms.ocpp16.validation import SCHEMA_DIR
from tests.conftest import T0, start_app
from tests.ocpp_client import RawChargePoint, basic_auth_header

FRAMES = int(os.environ.get("GARAGEGRID_FUZZ_FRAMES", "300"))
pytestmark = [
    pytest.mark.slow,
    # About 35 ms a frame on two busy cores; a long run on demand gets the time it needs.
    pytest.mark.timeout(max(120, FRAMES // 5)),
    # websockets' keepalive pings (every 20 s, on the server's and the normal charger's
    # threads) draw their payload from the global `random`, which hypothesis takes for a
    # strategy using it; no strategy here does.
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]
# Every request a charge point sends to the central system in OCPP 1.6 (Core, Firmware,
# Smart Charging, Local Auth, and the security whitepaper's).
CP_TO_CS = (
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
    "SecurityEventNotification",
    "SignCertificate",
    "LogStatusNotification",
    "SignedFirmwareStatusNotification",
)
NORMAL, FUZZ = "NORMAL1", "FUZZ1"
NORMAL_KEY, FUZZ_KEY = "normal-charger-key-001", "fuzzing-charger-key-01"
BOOT = {"chargePointVendor": "GarageGrid", "chargePointModel": "Fuzz"}
# The answer to a fuzzed frame and its probe: far more than any answer should take.
ANSWER_TIMEOUT_S = 10.0
NORMAL_CALL_LIMIT_S = 2.0
# Closes the server may answer a broken frame with (RFC 6455 7.4.1).
CLEAN_CLOSES = {1007, 1009}


def _schema(action: str) -> dict[str, Any]:
    with (SCHEMA_DIR / f"{action}.json").open(encoding="utf-8-sig") as fh:
        schema: dict[str, Any] = json.load(fh)
    # hypothesis-jsonschema resolves $ref on its own; the ids only name the schema.
    schema.pop("$id", None)
    schema.pop("id", None)
    return schema


# ----------------------------------------------------------------- strategies
# Mostly readable ids (so that payloads reach the handlers), sometimes odd or unreadable.
message_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(str),
    st.uuids().map(str),
    st.integers(min_value=0, max_value=10**9).map(str),
    st.text(min_size=1, max_size=36),
    st.sampled_from(["", "x" * 37, "-1"]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
huge_numbers = st.sampled_from(
    [2**63, -(2**63) - 1, 2**64, 10**30, -(10**40), 1e308, -1e308, 1.5e-320, 2**53 + 1]
)


def _valid_calls(action: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    return st.tuples(st.just(action), from_schema(_schema(action)))


valid_calls = st.one_of(*(_valid_calls(action) for action in CP_TO_CS))


def _plausible(schema: Any) -> Any:
    """The schema with every unbounded integer kept to 0..2^31-1: a charger's ids, meter
    registers and connector numbers, so that more payloads reach the handlers and the store
    (the official schemas allow any integer; negative connector ids and beyond-64-bit
    numbers are refused before any handler runs)."""
    if isinstance(schema, dict):
        out = {key: _plausible(value) for key, value in schema.items()}
        if out.get("type") == "integer":
            out.setdefault("minimum", 0)
            out.setdefault("maximum", 2**31 - 1)
        return out
    if isinstance(schema, list):
        return [_plausible(item) for item in schema]
    return schema


plausible_calls = st.one_of(
    *(st.tuples(st.just(action), from_schema(_plausible(_schema(action)))) for action in CP_TO_CS)
)


@st.composite
def mutated_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    action, payload = draw(valid_calls)
    payload = dict(payload)
    keys = sorted(payload)
    kind = draw(
        st.sampled_from(["huge", "wrong_type", "deep", "drop", "extra", "long", "negative"])
    )
    key = draw(st.sampled_from(keys)) if keys else "connectorId"
    if kind == "huge":
        payload[key] = draw(huge_numbers)
    elif kind == "wrong_type":
        payload[key] = draw(json_values)
    elif kind == "deep":
        depth = draw(st.integers(min_value=50, max_value=600))
        payload[key] = json.loads("[" * depth + "]" * depth)
    elif kind == "drop" and keys:
        del payload[key]
    elif kind == "extra":
        payload[draw(st.text(min_size=1, max_size=20))] = draw(json_values)
    elif kind == "long":
        payload[key] = "x" * draw(st.sampled_from([21, 51, 256, 5501, 100_000]))
    else:
        payload[key] = draw(st.integers(max_value=-1))
    return action, payload


@dataclass(frozen=True)
class Frame:
    """One fuzzed frame and what the central system must do with it."""

    data: str | bytes
    # "answer": one answer with ``answer_id``; "none": no answer; "either": an answer
    # with ``answer_id`` or nothing (a frame whose meaning the fuzzer does not decide).
    expect: str
    answer_id: str | None = None
    # This frame may be answered by a clean close instead.
    may_close: bool = False
    text: bool = True
    label: str = ""

    def __repr__(self) -> str:
        # Falsifying examples stay readable: a megabyte frame is shown by its start.
        return f"Frame({self.label!r}, expect={self.expect!r}, data={self.data[:300]!r}...)"


def _call(message_id: str, action: str, payload: Any, label: str) -> Frame:
    readable = len(message_id) <= 36  # OCPP-J 4.1.3; an empty id is taken as it is
    return Frame(
        json.dumps([2, message_id, action, payload]),
        "answer",
        message_id if readable else "-1",
        label=label,
    )


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "plausible",
                "plausible",
                "mutated",
                "mutated",
                "mutated",
                "unknown_action",
                "response",
                "error_response",
                "random_json",
                "random_text",
                "random_bytes",
                "invalid_utf8",
                "huge_literal",
                "deep_frame",
                "bad_message_type",
                "oversized",
            ]
        )
    )
    message_id = draw(message_ids)
    if kind == "valid":
        action, payload = draw(valid_calls)
        return _call(message_id, action, payload, f"valid {action}")
    if kind == "plausible":
        action, payload = draw(plausible_calls)
        return _call(message_id, action, payload, f"valid (plausible) {action}")
    if kind == "mutated":
        action, payload = draw(mutated_calls())
        return _call(message_id, action, payload, f"mutated {action}")
    if kind == "unknown_action":
        action = draw(st.text(max_size=40).filter(lambda a: a not in CP_TO_CS))
        return _call(message_id, action, draw(json_values.filter(_is_dict)), "unknown action")
    if kind == "response":
        return Frame(json.dumps([3, message_id, draw(json_values)]), "none", label="CALLRESULT")
    if kind == "error_response":
        frame = [4, message_id, draw(st.text(max_size=30)), draw(st.text(max_size=30)), {}]
        return Frame(json.dumps(frame), "none", label="CALLERROR")
    if kind == "random_json":
        value = draw(json_values)
        return Frame(json.dumps(value), "either", label="random JSON")
    if kind == "random_text":
        return Frame(draw(st.text(max_size=200)), "either", label="random text")
    if kind == "random_bytes":
        return Frame(draw(st.binary(max_size=200)), "answer", "-1", text=False, label="binary")
    if kind == "invalid_utf8":
        raw = b'[2,"u1","Heartbeat",{"x":"' + draw(st.sampled_from([b"\xff", b"\xc3\x28"])) + b'"}]'
        return Frame(raw, "none", may_close=True, label="invalid UTF-8")
    if kind == "huge_literal":
        digits = draw(st.integers(min_value=20, max_value=20_000))
        text = f'[2,{json.dumps(message_id[:36])},"Heartbeat",{{"n":{"9" * digits}}}]'
        if draw(st.booleans()):
            text = f'[2,"h2","MeterValues",{{"connectorId":1e{digits},"meterValue":[]}}]'
        return Frame(text, "either", None, label="huge literal")
    if kind == "deep_frame":
        depth = draw(st.integers(min_value=500, max_value=200_000))
        return Frame("[" * depth + "]" * depth, "answer", "-1", label="deep nesting")
    if kind == "bad_message_type":
        message_type = draw(st.one_of(st.integers(), st.text(max_size=3), st.just(2.0)))
        frame = [message_type, message_id, "Heartbeat", {}]
        return Frame(json.dumps(frame), "either", None, label="bad message type")
    # Over websockets' 1 MiB message limit: closed with 1009.
    return Frame(
        json.dumps([2, "big", "DataTransfer", {"vendorId": "v", "data": "x" * (1 << 20)}]),
        "none",
        may_close=True,
        label="oversized",
    )


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


# ------------------------------------------------------------- the harness
class LoopThread:
    """An event loop on its own thread; coroutines are run on it from this one."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class NormalCharger:
    """A charger minding its own business: boot, start, MeterValues every ~100 ms."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    meter_values_sent: int = 0
    transaction_id: int | None = None

    async def _timed(self, cp: RawChargePoint, action: str, payload: dict[str, Any]) -> Any:
        started = time.perf_counter()
        frame = await cp.call(action, payload)
        self.latencies_s.append(time.perf_counter() - started)
        if frame[0] != 3:
            self.failures.append(f"{action}: {frame}")
            return {}
        return frame[2]

    async def run(self) -> None:
        cp = await RawChargePoint.connect(self.url, password=NORMAL_KEY)
        try:
            await self._timed(cp, "BootNotification", BOOT)
            ts = T0
            await self._timed(
                cp,
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"},
            )
            started = await self._timed(
                cp,
                "StartTransaction",
                {"connectorId": 1, "idTag": "NORMALTAG", "meterStart": 1000, "timestamp": _iso(ts)},
            )
            self.transaction_id = started["transactionId"]
            energy_wh = 1000
            while not self.stop.is_set():
                ts += timedelta(seconds=10)
                energy_wh += 20
                await self._timed(
                    cp,
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "transactionId": self.transaction_id,
                        "meterValue": [
                            {
                                "timestamp": _iso(ts),
                                "sampledValue": [
                                    {"value": str(energy_wh), "unit": "Wh"},
                                    {"value": "7.5", "measurand": "Current.Import", "phase": "L1",
                                     "unit": "A"},
                                ],
                            }
                        ],
                    },
                )  # fmt: skip
                self.meter_values_sent += 1
                await asyncio.sleep(0.1)
            await self._timed(
                cp,
                "StopTransaction",
                {
                    "transactionId": self.transaction_id,
                    "meterStop": energy_wh,
                    "timestamp": _iso(ts + timedelta(seconds=1)),
                },
            )
        except Exception as exc:  # reported, then asserted on by the test
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            await cp.close()


def _iso(moment: Any) -> str:
    return str(moment.isoformat().replace("+00:00", "Z"))


@dataclass
class Fuzzer:
    url: str
    frames_sent: int = 0
    probes: int = 0
    closes: Counter[int] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    valid_answers: Counter[str] = field(default_factory=Counter)
    ws: ClientConnection | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def connect(self) -> ClientConnection:
        if self.ws is None:
            self._stack.close()
            self.ws = self._stack.enter_context(
                sync_connect(
                    self.url,
                    subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    additional_headers=basic_auth_header(FUZZ, FUZZ_KEY),
                    open_timeout=ANSWER_TIMEOUT_S,
                    max_size=None,
                )
            )
        return self.ws

    def boot(self) -> None:
        ws = self.connect()
        ws.send(json.dumps([2, "boot", "BootNotification", BOOT]))
        answer = json.loads(ws.recv(timeout=ANSWER_TIMEOUT_S))
        assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer

    def send(self, frame: Frame) -> None:
        ws = self.connect()
        self.frames_sent += 1
        self.kinds[frame.label.split(" ")[0]] += 1
        self.probes += 1
        probe_id = f"probe:{self.probes}"
        try:
            ws.send(frame.data, text=frame.text)
            ws.send(json.dumps([2, probe_id, "Heartbeat", {}]))
            received = []
            while True:
                answer = json.loads(ws.recv(timeout=ANSWER_TIMEOUT_S))
                if answer[1] == probe_id:
                    assert answer[0] == 3, f"probe after {frame.label}: {answer}"
                    break
                received.append(answer)
        except ConnectionClosed as closed:
            self.ws = None
            code = closed.rcvd.code if closed.rcvd else None
            assert frame.may_close and code in CLEAN_CLOSES, (
                f"connection closed ({code}) after {frame.label}: {str(frame.data)[:200]}"
            )
            self.closes[code] += 1
            return
        except TimeoutError as exc:
            raise AssertionError(f"no answer within {ANSWER_TIMEOUT_S} s to {frame.label}") from exc
        for answer in received:
            assert answer[0] in (3, 4), f"{frame.label}: unexpected frame {answer}"
            code = answer[2] if answer[0] == 4 else "CALLRESULT"
            self.answers[code] += 1
            if frame.label.startswith("valid"):
                self.valid_answers[code] += 1
                if os.environ.get("GARAGEGRID_FUZZ_SHOW") and answer[0] == 4:
                    print(f"{frame.label}: {str(frame.data)[:300]} -> {answer[2:4]}")
        if frame.expect == "none":
            assert received == [], f"{frame.label} got answers: {received}"
        elif frame.expect == "answer":
            assert [a[1] for a in received] == [frame.answer_id], (
                f"{frame.label} {str(frame.data)[:300]!r}: answers {received}"
            )
        else:
            assert len(received) <= 1, f"{frame.label}: answers {received}"
            if received and frame.answer_id is not None:
                assert received[0][1] == frame.answer_id, f"{frame.label}: {received}"
        # A schema-valid call must never fail inside the central system.
        assert "InternalError" not in {a[2] for a in received if a[0] == 4}, (
            f"{frame.label} {str(frame.data)[:500]!r}: {received}"
        )

    def close(self) -> None:
        self.ws = None
        self._stack.close()


def _check_database(path: Path, charger: NormalCharger) -> dict[str, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:

        def one(sql: str, *args: Any) -> Any:
            return db.execute(sql, args).fetchone()[0]

        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert (
            one(
                "SELECT count(*) FROM transactions t LEFT JOIN charge_points c "
                "ON c.id = t.charge_point_id WHERE c.id IS NULL"
            )
            == 0
        )
        assert (
            one(
                "SELECT count(*) FROM meter_samples s LEFT JOIN charge_points c "
                "ON c.id = s.charge_point_id WHERE c.id IS NULL"
            )
            == 0
        )
        # A sample is only ever tied to a transaction of its own station.
        assert (
            one(
                "SELECT count(*) FROM meter_samples s JOIN transactions t ON t.id = s.transaction_id "
                "WHERE t.charge_point_id != s.charge_point_id"
            )
            == 0
        )
        # The normal charger's session is whole: started, stopped, every sample there.
        row = db.execute(
            "SELECT charge_point_id, meter_start_wh, meter_stop_wh, stopped_at "
            "FROM transactions WHERE id = ?",
            (charger.transaction_id,),
        ).fetchone()
        assert row[0] == NORMAL and row[1] == 1000
        assert row[2] == 1000 + 20 * charger.meter_values_sent and row[3] is not None
        assert one("SELECT count(*) FROM transactions WHERE charge_point_id = ?", NORMAL) == 1
        samples = one(
            "SELECT count(*) FROM meter_samples WHERE transaction_id = ? AND flag IS NULL",
            charger.transaction_id,
        )
        assert samples == 2 * charger.meter_values_sent
        return {
            "transactions": one("SELECT count(*) FROM transactions"),
            "meter_samples": one("SELECT count(*) FROM meter_samples"),
        }
    finally:
        db.close()


def test_fuzzed_frames_never_hurt_the_server_or_a_charger_beside_them(tmp_path: Path) -> None:
    started = time.perf_counter()
    db_path = tmp_path / "fuzz.db"
    db_url = f"sqlite+aiosqlite:///{db_path}"
    server = LoopThread("csms")
    app: CsmsApp = server.run(start_app(db_url))
    normal_thread: LoopThread | None = None
    charger: NormalCharger | None = None
    fuzzer: Fuzzer | None = None
    try:
        server.run(app.repository.add_charge_point(NORMAL, password=NORMAL_KEY))
        server.run(app.repository.add_charge_point(FUZZ, password=FUZZ_KEY))
        server.run(app.repository.add_id_tag("NORMALTAG"))
        base = f"ws://127.0.0.1:{app.port}/ocpp/"
        charger = NormalCharger(base + NORMAL)
        normal_thread = LoopThread("normal-charger")
        normal_done = normal_thread.submit(charger.run())
        fuzzer = Fuzzer(base + FUZZ)
        fuzzer.boot()

        @settings(
            max_examples=FRAMES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
        )
        @given(frame=frames())
        def one_frame(frame: Frame) -> None:
            fuzzer.send(frame)

        one_frame()
        fuzzer.close()
        charger.stop.set()
        normal_done.result(30)
        # The server is alive and well.
        with urllib.request.urlopen(f"http://127.0.0.1:{app.port}/healthz", timeout=5) as r:
            health = json.loads(r.read())
        assert health["status"] == "ok" and health["database"] == "ok"
    finally:
        if fuzzer is not None:
            fuzzer.close()
        if charger is not None and normal_thread is not None:
            charger.stop.set()
            with contextlib.suppress(Exception):
                normal_done.result(30)
            normal_thread.stop()
        server.run(app.stop())
        server.stop()

    assert charger.failures == []
    assert charger.meter_values_sent > 0
    assert max(charger.latencies_s) < NORMAL_CALL_LIMIT_S
    counts = _check_database(db_path, charger)
    elapsed = time.perf_counter() - started
    print(
        f"\nfuzz: {fuzzer.frames_sent} frames ({dict(fuzzer.kinds)}) in {elapsed:.1f} s; "
        f"answers {dict(fuzzer.answers)} (to schema-valid calls: "
        f"{dict(fuzzer.valid_answers)}); clean closes {dict(fuzzer.closes)}; "
        f"normal charger: {charger.meter_values_sent} MeterValues, slowest call "
        f"{max(charger.latencies_s) * 1000:.0f} ms; store {counts}"
    )
