"""Passwords of charge points and people; the monitor's roles, lockout and session rules.

Charge points (OCPP 1.6 security profile 1: HTTP Basic, AuthorizationKey): only salted
scrypt hashes are stored. Chargers may send the AuthorizationKey as raw bytes;
websockets decodes the Basic credentials with ``surrogateescape``, so passwords are
compared as the bytes the charger sent (FIELD-NOTES, "Security profile 1 and 2").
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from csms.errors import ConfigError, GarageGridError

_SCHEME = "scrypt"
# RFC 7914 / OWASP: n=2**14, r=8, p=1 costs ~16 MiB and ~20 ms, fine at login rate.
_N, _R, _P = 2**14, 8, 1
_DKLEN = 32


def password_bytes(password: str) -> bytes:
    """The bytes a charger sent, whether it used UTF-8 text or raw bytes."""
    return password.encode("utf-8", "surrogateescape")


def hash_password(password: str) -> str:
    """Return ``scrypt$n$r$p$salt$hash`` for storage; never store the password itself."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password_bytes(password), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return "$".join(
        [
            _SCHEME,
            str(_N),
            str(_R),
            str(_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored hash; malformed hashes never match."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != _SCHEME:
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        cost = int(n), int(r), int(p)
        actual = hashlib.scrypt(
            password_bytes(password),
            salt=salt,
            n=cost[0],
            r=cost[1],
            p=cost[2],
            dklen=len(expected),
            maxmem=_scrypt_maxmem(*cost),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# ---------------------------------------------------------------------------------------
# People: the monitor's accounts (managers, residents, viewers).
#
# A person's password is guessed offline far more cheaply than a charger's random key, so
# it gets the OWASP Password Storage Cheat Sheet's scrypt minimum: N=2**17, r=8, p=1, a
# 128 MiB working set and ~0.4 s of one core per hash. The stored string carries its
# parameters (``scrypt$131072$8$1$salt$hash``), so `verify_password` checks both kinds.


class AccessDeniedError(GarageGridError):
    """An account asked for something its role or its stations do not allow."""


class Role(StrEnum):
    """What an account may see and do in the monitor."""

    manager = "manager"  # everything: every page, every write
    resident = "resident"  # their own station(s) and tag(s): car, sessions, departure, messages
    viewer = "viewer"  # read-only: what a manager sees but the audit log; no writes


class Permission(StrEnum):
    read_garage = "read every station, session and setting"
    write_garage = "change settings and stations, send commands"
    write_session = "set a car's departure and need"
    read_audit = "read the audit log"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.manager: frozenset(Permission),
    Role.viewer: frozenset({Permission.read_garage}),
    Role.resident: frozenset({Permission.write_session}),
}

USER_SCRYPT_N, USER_SCRYPT_R, USER_SCRYPT_P = 2**17, 8, 1
# NIST SP 800-63B asks for at least 8 characters; generated passwords have 16 (96 bits).
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
MAX_NAME_LENGTH = 64
NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._@-")

# Lockout: this many failed logins for one name within FAILURE_WINDOW lock it for LOCKOUT.
MAX_FAILED_LOGINS = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
# A session ends after this long without a click, and this long after the login whatever
# happens (an open Live page refreshing itself is not a click).
SESSION_IDLE_TIMEOUT = timedelta(minutes=30)
SESSION_MAX_LIFETIME = timedelta(hours=12)


def _scrypt_maxmem(n: int, r: int, p: int) -> int:
    """Memory scrypt needs (128*r*(n+p) bytes) plus slack; hashlib's default is 32 MiB."""
    return 128 * r * (n + p) + 2**20


def hash_user_password(password: str) -> str:
    """A person's password as ``scrypt$131072$8$1$salt$hash`` (OWASP parameters)."""
    n, r, p = USER_SCRYPT_N, USER_SCRYPT_R, USER_SCRYPT_P
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password_bytes(password),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=_DKLEN,
        maxmem=_scrypt_maxmem(n, r, p),
    )
    return "$".join(
        [
            _SCHEME,
            str(n),
            str(r),
            str(p),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


@functools.cache
def _decoy_hash() -> str:
    """A hash to check unknown names against, so that they take as long as known ones."""
    return hash_user_password(secrets.token_urlsafe(16))


def verify_user_password(password: str, stored: str | None) -> bool:
    """Like `verify_password`; ``stored=None`` (no such account) costs the same and fails."""
    if stored is None:
        verify_password(password, _decoy_hash())
        return False
    return verify_password(password, stored)


def generate_password() -> str:
    """16 URL-safe characters from the OS's CSPRNG (96 bits)."""
    return secrets.token_urlsafe(12)


def check_new_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ConfigError(
            f"password: {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters, got {len(password)}"
        )
    return password


def check_user_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH or not set(name) <= NAME_CHARACTERS:
        raise ConfigError(f"name: 1-{MAX_NAME_LENGTH} letters, digits or . _ @ -, got {name!r}")
    return name


@dataclass(frozen=True)
class Account:
    """A person who may log in to the monitor. ``credentials_version`` grows with every
    password change; a monitor session opened under an older one is over."""

    id: int
    name: str
    role: Role
    stations: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    credentials_version: int = 1
    last_login_at: datetime | None = None
    # The site the account sees; None: every site (an operator).
    site_id: int | None = None

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.may(permission):
            raise AccessDeniedError(f"{self.name} ({self.role}) may not {permission.value}")

    @property
    def sees_everything(self) -> bool:
        return self.may(Permission.read_garage)

    def sees_station(self, charge_point_id: str) -> bool:
        return self.sees_everything or charge_point_id in self.stations

    def sees_session(self, charge_point_id: str, id_tag: str | None) -> bool:
        """A resident's sessions: at their station(s), or charged with their tag(s)."""
        return self.sees_station(charge_point_id) or (id_tag is not None and id_tag in self.tags)


@dataclass(frozen=True)
class LoginThrottle:
    """Failed logins of one name (known or not): at most MAX_FAILED_LOGINS within
    FAILURE_WINDOW, then the name is locked for LOCKOUT. Kept in the database, so a reload
    or a second browser does not reset it."""

    failures: int = 0
    first_failure_at: datetime | None = None
    locked_until: datetime | None = None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def after_failure(self, now: datetime) -> LoginThrottle:
        fresh = (
            self.first_failure_at is None
            or now - self.first_failure_at > FAILURE_WINDOW
            or (self.locked_until is not None and now >= self.locked_until)
        )
        failures = 1 if fresh else self.failures + 1
        first = now if fresh else self.first_failure_at
        locked_until = now + LOCKOUT if failures >= MAX_FAILED_LOGINS else None
        return LoginThrottle(failures, first, locked_until)


def session_end(login_at: datetime, last_active_at: datetime, now: datetime) -> str | None:
    """Why a monitor session is over at ``now``, None while it is not."""
    if now - login_at >= SESSION_MAX_LIFETIME:
        hours = SESSION_MAX_LIFETIME.total_seconds() / 3600
        return f"Your session ended {hours:g} h after you logged in."
    if now - last_active_at >= SESSION_IDLE_TIMEOUT:
        minutes = SESSION_IDLE_TIMEOUT.total_seconds() / 60
        return f"Your session ended after {minutes:g} min without activity."
    return None


# ----------------------------------------------------------- AuthorizationKey
# OCPP 1.6 security whitepaper: the AuthorizationKey is 16-20 bytes, often configured as
# up to 40 hex digits. A rotated key is 20 random bytes written as 40 hex digits.
AUTHORIZATION_KEY_BYTES = 20
# Configuration keys whose value is a charger's password: the 1.6 name and the 2.0.1 one
# some dual-stack firmwares also report. Compared without case, "_" or "-".
SECRET_CONFIGURATION_KEYS = frozenset({"authorizationkey", "basicauthpassword"})
REDACTED = "<redacted>"
# Shorter values are not scrubbed from free text (they would match ordinary words).
MIN_SCRUB_LENGTH = 8


def new_authorization_key() -> str:
    """A fresh AuthorizationKey: 20 random bytes as 40 lowercase hex digits."""
    return secrets.token_hex(AUTHORIZATION_KEY_BYTES)


def verify_charger_password(password: str, stored: str) -> bool:
    """``verify_password``, also taking the raw bytes a hex-digit key stands for.

    A key set as hex digits (as ``csms station rotate-password`` does) is sent back by
    some chargers as those digits and by others as the 16-20 bytes they encode.
    """
    if verify_password(password, stored):
        return True
    raw = password_bytes(password)
    return 16 <= len(raw) <= 20 and verify_password(raw.hex(), stored)


class VerifiedKeys:
    """Charger keys that passed `verify_charger_password` lately, so that a charger that
    reconnects does not cost another scrypt (~20 ms of a core: 500 chargers coming back
    at once queued their handshakes for 39 s, scripts/bench_storm.py).

    An entry is an HMAC, under a random key of this process, of the stored hash and the
    key presented: a changed password (a new stored hash) matches no entry, a failure is
    never cached, and neither the keys nor a fast hash of them alone are kept. Entries
    expire after ``ttl_s`` (monotonic) and the oldest go beyond ``max_entries``.
    """

    def __init__(
        self,
        ttl_s: float = 600.0,
        max_entries: int = 20_000,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def _key(self, password: str, stored: str) -> bytes:
        message = stored.encode() + b"\x00" + password_bytes(password)
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def known(self, password: str, stored: str) -> bool:
        key = self._key(password, stored)
        until = self._entries.get(key)
        if until is None:
            return False
        if until < self._monotonic():
            del self._entries[key]
            return False
        return True

    def add(self, password: str, stored: str) -> None:
        key = self._key(password, stored)
        self._entries[key] = self._monotonic() + self.ttl_s
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def is_secret_key(name: object) -> bool:
    """Whether a configuration key name (any case, camel or snake) holds a password."""
    if not isinstance(name, str):
        return False
    return name.strip().replace("_", "").replace("-", "").lower() in SECRET_CONFIGURATION_KEYS


def authorization_key_change(action: str, payload: Mapping[str, Any]) -> str | None:
    """The new key a ChangeConfiguration(AuthorizationKey) sets, else None."""
    if action != "ChangeConfiguration" or not is_secret_key(payload.get("key")):
        return None
    value = payload.get("value")
    return value if isinstance(value, str) else None


def redact_secrets(value: Any, found: list[str] | None = None) -> Any:
    """A copy of an OCPP payload or answer without any password in it.

    Replaced by ``REDACTED``: the ``value`` of an entry whose ``key`` names a secret
    (ChangeConfiguration payloads, GetConfiguration ``configurationKey`` entries), and any
    field named like one. Whatever the value's encoding (text, hex, base64), it goes. The
    values removed are appended to ``found`` (to scrub them from free text too).
    """
    if isinstance(value, Mapping):
        secret_entry = is_secret_key(value.get("key"))
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if is_secret_key(key) or (secret_entry and key == "value"):
                if found is not None and isinstance(item, str) and item:
                    found.append(item)
                out[key] = REDACTED if item is not None else None
            else:
                out[key] = redact_secrets(item, found)
        return out
    if isinstance(value, list | tuple):
        return [redact_secrets(item, found) for item in value]
    return value


def secret_spellings(secret: str) -> set[str]:
    """The forms a secret may take in free text: as given, hex, base64 (and, for a key
    of hex digits, the base64 of the bytes it stands for). Short ones are left alone."""
    if len(secret) < MIN_SCRUB_LENGTH:
        return set()
    raw = password_bytes(secret)
    forms = {secret, raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()}
    try:
        decoded = bytes.fromhex(secret)
    except ValueError:
        decoded = b""
    if len(decoded) >= MIN_SCRUB_LENGTH // 2:
        forms.add(base64.b64encode(decoded).decode())
    return forms
