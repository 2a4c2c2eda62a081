"""The seed thesis's duration-tiered rule (section 4.2.1, figures 4.15-4.17), kept faithful.

The total charging duration T is departure - arrival, the charged duration is now - arrival:

- T < 10,000 s ("fast"): 100 % of station max for the first 20 % of T, 60 % for the next
  20 %, 20 % for the rest;
- 10,000 s <= T < 20,000 s ("medium"): 60 % for the first half, then 20 %;
- T >= 20,000 s ("slow"): 20 % all along;
- 0 once the charged duration reaches T or the battery is full (need met).

It looks at each station alone: no fuse, no car maximum, no steps and no 6 A minimum, so
20 % of a 16 A station gives 3.2 A, which a real charger treats as a pause (IEC 61851-1).
That is the baseline the other strategies have to beat, so it is not corrected here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from csms.errors import ConfigError
from csms.scheduler.model import ConnectorKey, ConnectorSpec, SessionDemand

FAST_BELOW_S = 10_000.0
MEDIUM_BELOW_S = 20_000.0


def thesis_fraction(total_s: float, charged_s: float) -> float:
    """Share of the station maximum the thesis uses at ``charged_s`` into ``total_s``."""
    if not charged_s < total_s:
        return 0.0
    if total_s >= MEDIUM_BELOW_S:
        return 0.2
    if total_s >= FAST_BELOW_S:
        return 0.6 if charged_s < 0.5 * total_s else 0.2
    if charged_s < 0.2 * total_s:
        return 1.0
    return 0.6 if charged_s < 0.4 * total_s else 0.2


def allocate_thesis(
    stations: Sequence[ConnectorSpec], sessions: Sequence[SessionDemand], now: datetime
) -> dict[ConnectorKey, float]:
    by_key = {conn.key: conn for conn in stations}
    limits: dict[ConnectorKey, float] = dict.fromkeys(by_key, 0.0)
    for s in sessions:
        if s.connector not in by_key:
            raise ConfigError(f"session on unknown connector {s.connector}")
        if not s.energy_needed_wh > 0.0:
            continue
        total_s = (s.departure_at - s.arrival_at).total_seconds()
        charged_s = max(0.0, (now - s.arrival_at).total_seconds())
        limits[s.connector] = (
            thesis_fraction(total_s, charged_s) * by_key[s.connector].max_current_a
        )
    return limits
