"""Charge point passwords (OCPP 1.6 security profile 1: HTTP Basic, AuthorizationKey).

Only salted scrypt hashes are stored. Chargers may send the AuthorizationKey as raw bytes;
websockets decodes the Basic credentials with ``surrogateescape``, so passwords are
compared as the bytes the charger sent (FIELD-NOTES, "Security profile 1 and 2").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

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
        actual = hashlib.scrypt(
            password_bytes(password), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)
