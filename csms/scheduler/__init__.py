"""Pure load management: (site, connectors, sessions, now) -> one current limit per connector.

Model. A site has one main fuse with a limit per supply phase (L1, L2, L3), a safety
margin, and optionally the live load of the rest of the building; what EVs may take on a
phase is fuse - margin - building load, never below 0. Each connector has a maximum
current, 1 or 3 phases and a wiring that maps its phases onto supply phases (phase
rotation). A session is a car on a connector with an arrival, a departure, the energy it
still needs, what it has drawn lately, and its own maximum current and phase count when
known. A car using fewer phases than its station loads only the first phases of the wiring:
a one-phase car on a three-phase station counts on one supply phase only.

Hard rules (every strategy except ``thesis``):
1. on every supply phase, the sum of the limits of the cars on it <= its capacity;
2. every limit is 0 (paused) or between the minimum, 6 A by IEC 61851-1, and
   min(station max, car max);
3. a charger that only accepts some currents gets one of them (rounded down, 0 below the
   smallest); other limits are on OCPP's 0.1 A grid.

Strategies (:data:`STRATEGIES`): ``thesis`` (the seed's duration-tiered rule, the baseline),
``equal`` (max-min fair per phase), ``edf`` and ``llf`` (deadline / laxity priority), and
``optimal`` (an LP over the horizon re-solved every tick with HiGHS, falling back to
``llf`` when out of time). All but ``thesis`` pause the cars with the most slack first when
not everybody can get 6 A, give cars that need nothing 0, and give what a tapering car does
not take to others. :func:`offline_optimum` is the hindsight upper bound for benchmarks.
``thesis`` ignores the fuse by design: it is a baseline for ``csms simulate`` and ``csms
bench`` only, and ``allocate(..., live=True)`` refuses it (:data:`LIVE_STRATEGIES`).

Calm limits (:mod:`csms.scheduler.calm`): given each session's limit in force and when it
was set, a car keeps its place in line by a margin, a change smaller than 1 A is not made,
a limit set less than a minute ago is raised only after that minute, and a lowering is made
only where the fuse needs the room.

No I/O, no asyncio, no clock: everything comes in as frozen dataclasses.
"""

from csms.scheduler.model import (
    MIN_CURRENT_A,
    Allocation,
    ConnectorKey,
    ConnectorSpec,
    Diagnostics,
    Phase,
    RateUnit,
    SessionDemand,
    SiteLimits,
    rate_for_charger,
)
from csms.scheduler.offline import OfflineResult, OfflineSession, offline_optimum
from csms.scheduler.registry import LIVE_STRATEGIES, STRATEGIES, allocate
from csms.scheduler.strategies.thesis import thesis_fraction

__all__ = [
    "LIVE_STRATEGIES",
    "MIN_CURRENT_A",
    "STRATEGIES",
    "Allocation",
    "ConnectorKey",
    "ConnectorSpec",
    "Diagnostics",
    "OfflineResult",
    "OfflineSession",
    "Phase",
    "RateUnit",
    "SessionDemand",
    "SiteLimits",
    "allocate",
    "offline_optimum",
    "rate_for_charger",
    "thesis_fraction",
]
