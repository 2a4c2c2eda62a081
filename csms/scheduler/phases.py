"""Which supply phases a car loads, given the station wiring and what the car is.

A station phase is the station's own terminal (its meter reports per station phase); a
supply phase is L1/L2/L3 of the site fuse. The wiring tuple maps the first to the second.
A car that uses fewer phases than the station draws on the first station phases only, so a
one-phase car on a three-phase station wired ("L2", "L3", "L1") loads L2 alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from csms.scheduler.model import ConnectorSpec, PerPhase, Phase

PHASE_INDEX: dict[Phase, int] = {Phase.L1: 0, Phase.L2: 1, Phase.L3: 2}

#: A car counts as drawing on a phase when the meter shows at least this much there...
_DRAWING_A = 1.0
#: ...and as not drawing when it shows at most this much (meter noise, standby).
_IDLE_A = 0.5


def infer_ev_phases(drawn_a: tuple[float, ...] | None, station_phases: int) -> int | None:
    """Guess how many phases a car uses from its per-phase draw, or None if unclear.

    A three-phase car draws (nearly) the same on every phase, so a clear pattern of
    current on the first station phase(s) and none on the rest means a one- or two-phase
    car. Anything else (no draw, noise, a short tuple) stays unknown.
    """
    if drawn_a is None or station_phases == 1 or len(drawn_a) != station_phases:
        return None
    drawing = [a >= _DRAWING_A for a in drawn_a]
    idle = [a <= _IDLE_A for a in drawn_a]
    for used in (1, 2):
        if all(drawing[:used]) and all(idle[used:]):
            return used
    return None


def supply_phases(
    connector: ConnectorSpec, ev_phases: int | None, drawn_a: tuple[float, ...] | None = None
) -> tuple[int, ...]:
    """Indices (0 = L1) of the supply phases the car on this connector loads.

    Unknown car: assume it uses every phase of the station, which is the safe guess for
    the fuse.
    """
    used = ev_phases
    if used is None and drawn_a is not None:
        used = infer_ev_phases(drawn_a, connector.phases)
    n = connector.phases if used is None else min(used, connector.phases)
    wiring = connector.wiring
    found = _INDICES.get((wiring, n))
    if found is None:
        found = _INDICES[(wiring, n)] = tuple(PHASE_INDEX[Phase(p)] for p in wiring[:n])
    return found


# Memo of wiring prefixes -> phase indices; at most 15 distinct keys ever.
_INDICES: dict[tuple[tuple[str, ...], int], tuple[int, ...]] = {}


def sum_per_phase(loads: Iterable[tuple[tuple[int, ...], float]]) -> PerPhase:
    """Per-phase sum of (phases, current) pairs."""
    total = [0.0, 0.0, 0.0]
    for phases, current_a in loads:
        if current_a:
            for p in phases:
                total[p] += current_a
    return (total[0], total[1], total[2])
