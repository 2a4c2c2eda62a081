"""A charger's password never reaches a log line or a table (issue 10, item 1).

Some firmwares return AuthorizationKey in GetConfiguration although the security
whitepaper makes it write-only; a ChangeConfiguration(AuthorizationKey) carries one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from csms.auth import REDACTED, redact_secrets, secret_spellings
from csms.cli import main
from csms.logs import KeyValueFormatter, remember_secret, scrub
from tests.conftest import start_app, ws_url
from tests.ocpp_client import RawChargePoint

PASSWORD = "0123456789abcdef0123"  # what the charger logs in with
NEW_KEY = "89abcdef0123456789abcdef0123456789abcdef"
REFUSED_KEY = "aaaabbbbccccddddeeeeffff0000111122223333"
LATE_KEY = "late-answer-key-4567"


def spellings(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {secret, raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()}
    if all(c in "0123456789abcdef" for c in secret):
        forms.add(base64.b64encode(bytes.fromhex(secret)).decode())
    return forms


SECRETS = {s: spellings(s) for s in (PASSWORD, NEW_KEY, REFUSED_KEY, LATE_KEY)}


def leaks(text: str) -> list[str]:
    return [f"{s} as {f}" for s, forms in SECRETS.items() for f in forms if f in text]


class Records(logging.Handler):
    """Every record of the csms loggers, raw (kept on the "csms" logger: `csms ...` resets
    the root logger's handlers)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("csms")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def database_text(path: str) -> str:
    """Every value of every column of every table, as text."""
    out: list[str] = []
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                out += [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row]
    return "\n".join(out)


def configuration(payload: dict[str, Any]) -> dict[str, Any]:
    """A firmware that reports its key, in three spellings of the name and the value."""
    raw = PASSWORD.encode()
    return {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            {"key": "AuthorizationKey", "readonly": False, "value": PASSWORD},
            {"key": "authorizationkey", "readonly": False, "value": raw.hex()},
            {"key": "AUTHORIZATIONKEY", "readonly": False, "value": base64.b64encode(raw).decode()},
        ]
    }


async def test_keys_never_reach_the_log_or_the_database(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    records: Records,
) -> None:
    monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)
    app = await start_app(db_url, response_timeout_s=1.0)
    try:
        await app.repository.add_charge_point("CP1", password=PASSWORD)
        cp = await RawChargePoint.connect(ws_url(app, "CP1"), password=PASSWORD)
        await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        cp.handlers["GetConfiguration"] = configuration
        cp.handlers["ChangeConfiguration"] = lambda p: {
            "status": "Accepted" if p["value"] == NEW_KEY else "Rejected"
        }

        def command(action: str, payload: dict[str, Any]) -> int:
            return main(["command", "CP1", action, "--payload", json.dumps(payload)])

        assert await asyncio.to_thread(command, "GetConfiguration", {}) == 0
        answer = json.loads(capsys.readouterr().out.splitlines()[-1])
        values = {e["key"]: e["value"] for e in answer["response"]["configurationKey"]}
        assert values == {
            "HeartbeatInterval": "300",
            "AuthorizationKey": REDACTED,
            "authorizationkey": REDACTED,
            "AUTHORIZATIONKEY": REDACTED,
        }
        assert (
            await asyncio.to_thread(command, "GetConfiguration", {"key": ["AuthorizationKey"]}) == 0
        )
        for key in (NEW_KEY, REFUSED_KEY):
            change = {"key": "AuthorizationKey", "value": key}
            assert await asyncio.to_thread(command, "ChangeConfiguration", change) == 0

        # A late answer (its call timed out) with the key in it is dropped unread.
        late = asyncio.Event()

        async def late_configuration(payload: dict[str, Any]) -> dict[str, Any]:
            await late.wait()
            return {"configurationKey": [{"key": "AuthorizationKey", "value": LATE_KEY}]}

        cp.handlers["GetConfiguration"] = late_configuration
        assert await asyncio.to_thread(command, "GetConfiguration", {}) == 1
        late.set()
        await asyncio.sleep(0.2)
        await cp.close()
    finally:
        await app.stop()

    captured = capsys.readouterr()
    logged = captured.out + captured.err
    assert "command answered" in logged and "answer to no outstanding call dropped" in logged
    assert leaks(logged) == []
    raw = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in records.records)
    assert "command answered" in raw
    assert leaks(raw) == []
    stored = await asyncio.to_thread(database_text, db_url.removeprefix("sqlite+aiosqlite:///"))
    assert "ChangeConfiguration" in stored and REDACTED in stored
    assert leaks(stored) == []


def test_redact_secrets_finds_the_key_in_any_shape() -> None:
    found: list[str] = []
    payload = {
        "configurationKey": [
            {"key": " Authorization_Key ", "value": "one"},
            {"key": "BasicAuthPassword", "value": "two"},
            {"key": "MeterValueSampleInterval", "value": "60"},
        ],
        "unknownKey": ["AuthorizationKey"],
        "authorizationKey": "three",
        "nested": [{"authorization_key": "four"}],
    }
    clean = redact_secrets(payload, found)
    assert sorted(found) == ["four", "one", "three", "two"]
    assert clean == {
        "configurationKey": [
            {"key": " Authorization_Key ", "value": REDACTED},
            {"key": "BasicAuthPassword", "value": REDACTED},
            {"key": "MeterValueSampleInterval", "value": "60"},
        ],
        "unknownKey": ["AuthorizationKey"],
        "authorizationKey": REDACTED,
        "nested": [{"authorization_key": REDACTED}],
    }
    assert payload["authorizationKey"] == "three"  # a copy; the original is untouched


def test_log_lines_are_scrubbed_of_remembered_keys_in_any_encoding() -> None:
    secret = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
    remember_secret(secret)
    for form in secret_spellings(secret):
        assert secret not in scrub(f"frame ... {form} ...")
        assert REDACTED in scrub(f"frame ... {form} ...")
    record = logging.LogRecord("csms.test", logging.INFO, __file__, 1, "sent %s", (secret,), None)
    record.payload = {"key": "AuthorizationKey", "value": "not-remembered-but-a-key"}
    line = KeyValueFormatter().format(record)
    assert secret not in line and "not-remembered-but-a-key" not in line
    # Short values are left alone: they would match ordinary words.
    assert secret_spellings("abc") == set()
