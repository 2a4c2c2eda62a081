"""Validation of site settings, shared by the CLI, the monitor and the CSMS.

Every value is checked before anything is written; one bad value refuses the whole update
with a message that names the setting and says what is expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from csms.domain import SiteConfig, split_wiring
from csms.errors import ConfigError
from csms.scheduler import LIVE_STRATEGIES, STRATEGIES

# The scheduler owns the lists of strategies; settings only check against them. The site's
# strategy controls real chargers, so only the live ones may be chosen: ``thesis`` ignores
# the fuse by design and stays a baseline of `csms simulate` and `csms bench`.
STRATEGY_NAMES = LIVE_STRATEGIES
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _number(name: str, value: Any, *, minimum: float, maximum: float, strict_min: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    if number < minimum or (strict_min and number == minimum):
        bound = "greater than" if strict_min else "at least"
        raise ConfigError(f"{name}: must be {bound} {minimum:g}, got {number:g}")
    if number > maximum:
        raise ConfigError(f"{name}: must be at most {maximum:g}, got {number:g}")
    return number


def validate_site_update(current: SiteConfig, changes: dict[str, Any]) -> dict[str, Any]:
    """Return the cleaned changes; raise ConfigError if any value, or the result, is invalid."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if value is None:
            continue
        if name == "fuse_limit_a":
            clean[name] = _number(name, value, minimum=0, maximum=4000, strict_min=True)
        elif name == "margin_a":
            clean[name] = _number(name, value, minimum=0, maximum=4000, strict_min=False)
        elif name == "phases":
            if value not in (1, 3, "1", "3"):
                raise ConfigError(f"phases: expected 1 or 3, got {value!r}")
            clean[name] = int(value)
        elif name == "voltage_v":
            clean[name] = _number(name, value, minimum=100, maximum=480, strict_min=False)
        elif name == "strategy":
            choose = f"choose one of {', '.join(STRATEGY_NAMES)}"
            if value in STRATEGIES and value not in STRATEGY_NAMES:
                raise ConfigError(
                    f"strategy: {value} is a benchmark baseline for csms simulate and csms "
                    f"bench that ignores the fuse; it never controls real chargers: {choose}"
                )
            if value not in STRATEGY_NAMES:
                raise ConfigError(f"strategy: unknown strategy {value!r}; {choose}")
            clean[name] = value
        elif name == "tick_s":
            clean[name] = _number(name, value, minimum=0.5, maximum=3600, strict_min=False)
        elif name == "default_departure":
            if not isinstance(value, str) or not _HHMM.match(value):
                raise ConfigError(f"default_departure: expected HH:MM (24 h), got {value!r}")
            clean[name] = value
        elif name == "default_energy_kwh":
            clean[name] = _number(name, value, minimum=0, maximum=200, strict_min=True)
        elif name == "timezone":
            try:
                ZoneInfo(str(value))
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"timezone: unknown time zone {value!r}") from None
            clean[name] = str(value)
        elif name == "price_per_kwh":
            clean[name] = _number(name, value, minimum=0, maximum=1000, strict_min=False)
        elif name == "currency":
            if not isinstance(value, str) or not 1 <= len(value) <= 8:
                raise ConfigError(f"currency: expected a short code such as NOK, got {value!r}")
            clean[name] = value
        elif name == "heartbeat_interval_s":
            clean[name] = int(_number(name, value, minimum=10, maximum=86400, strict_min=False))
        elif name == "building_load_max_age_s":
            clean[name] = _number(name, value, minimum=1, maximum=86400, strict_min=False)
        elif name == "building_load_worst_case_a":
            clean[name] = _number(name, value, minimum=0, maximum=4000, strict_min=False)
        else:
            raise ConfigError(f"unknown site setting {name!r}")
    merged = asdict(current) | clean
    if merged["margin_a"] >= merged["fuse_limit_a"]:
        raise ConfigError(
            f"margin_a: the margin ({merged['margin_a']:g} A) must be below the fuse limit "
            f"({merged['fuse_limit_a']:g} A)"
        )
    return clean


def validate_building_load(l1_a: Any, l2_a: Any, l3_a: Any) -> tuple[float, float, float]:
    return (
        _number("l1", l1_a, minimum=0, maximum=4000, strict_min=False),
        _number("l2", l2_a, minimum=0, maximum=4000, strict_min=False),
        _number("l3", l3_a, minimum=0, maximum=4000, strict_min=False),
    )


def validate_station(
    *, max_current_a: Any, phases: Any, wiring: str | None = None
) -> tuple[float, int, str]:
    """Check a station's max current, phases and wiring (L1/L2/L3 or a 3-phase rotation)."""
    current = _number("max_current_a", max_current_a, minimum=6, maximum=80, strict_min=False)
    if phases not in (1, 3, "1", "3"):
        raise ConfigError(f"phases: expected 1 or 3, got {phases!r}")
    n = int(phases)
    wiring = (wiring or ("L1L2L3" if n == 3 else "L1")).upper()
    parts = split_wiring(wiring)
    if (
        len(parts) != n
        or any(p not in ("L1", "L2", "L3") for p in parts)
        or len(set(parts)) != n
        or len(wiring) != 2 * n
    ):
        expected = "a rotation such as L1L2L3 or L2L3L1" if n == 3 else "L1, L2 or L3"
        raise ConfigError(f"wiring: expected {expected} for a {n}-phase station, got {wiring!r}")
    return current, n, wiring
