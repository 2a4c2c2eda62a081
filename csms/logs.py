"""Structured logs: one line per event, ``key=value`` pairs an integrator can grep.

Example::

    2026-01-05T16:00:01.123Z INFO csms.ocpp received CALL cp_id=CP01 direction=in
        action=StartTransaction message_id=7f3c...

Passwords never reach a log line: the server logs identities and outcomes only, and this
formatter is the last line of defence for OCPP payloads and answers that are logged: an
AuthorizationKey in a dict or list field is redacted (``csms.auth.redact_secrets``), and
every key the CSMS has seen (sent in a ChangeConfiguration, found in an answer; see
``remember_secret``) is scrubbed from the whole line, also as hex or base64.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict

from csms.auth import REDACTED, redact_secrets, secret_spellings

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


# Secrets this process has handled, newest last (a bounded set: a key is scrubbed for as
# long as it is among the most recent ones).
_MAX_REMEMBERED = 256
_remembered: OrderedDict[str, None] = OrderedDict()


def remember_secret(secret: str) -> None:
    """Scrub ``secret`` (and its hex and base64 spellings) from every later log line."""
    for form in secret_spellings(secret):
        _remembered[form] = None
        _remembered.move_to_end(form)
    while len(_remembered) > _MAX_REMEMBERED:
        _remembered.popitem(last=False)


def scrub(text: str) -> str:
    """``text`` without any remembered secret."""
    if not _remembered:
        return text
    for form in sorted(_remembered, key=len, reverse=True):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


class KeyValueFormatter(logging.Formatter):
    """``time level logger message key=value ...`` with the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"{timestamp}.{int(record.msecs):03d}Z",
            record.levelname,
            record.name,
            record.getMessage(),
        ]
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            if isinstance(value, dict | list | tuple):
                value = redact_secrets(value)
            parts.append(f"{key}={_render(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


def _render(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not text or any(c in text for c in ' ="\n'):
        return json.dumps(text)
    return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str = "INFO") -> None:
    handler = _StderrHandler()
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The ocpp package logs every frame with its payload at INFO; ours says it once.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
