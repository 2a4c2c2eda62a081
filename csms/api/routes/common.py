"""What several resources share."""

from __future__ import annotations

from datetime import datetime

from csms.errors import ConfigError


def aware(name: str, value: datetime | None) -> datetime | None:
    """A time with its zone (the store keeps UTC; a time without a zone is ambiguous)."""
    if value is not None and value.utcoffset() is None:
        raise ConfigError(f"{name}: give a time zone, e.g. 2026-01-05T07:30:00+01:00")
    return value
