"""The offline optimum: how much energy could have been delivered with full hindsight.

Knowing every arrival, departure and need in advance, a single linear program over the
whole scenario maximises the energy delivered before each departure under the per-phase
capacity, each car's maximum and each connector's one-car-at-a-time. It ignores the 6 A
minimum, the current steps and tapering, so it is an upper bound that no online strategy
can beat; benchmarks report energy as a share of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from csms.errors import ConfigError
from csms.scheduler.lp import (
    FloatArray,
    IntArray,
    RowBuilder,
    SlotVariables,
    add_capacity_rows,
    add_need_rows,
    slot_variables,
    solve_max,
)
from csms.scheduler.model import ConnectorKey, ConnectorSpec, SiteLimits
from csms.scheduler.phases import supply_phases

DEFAULT_OFFLINE_SLOT_S = 300.0


@dataclass(frozen=True, slots=True)
class OfflineSession:
    """One charging session of a scenario, with times in seconds from any common origin."""

    connector: ConnectorKey
    arrival_s: float
    departure_s: float
    energy_needed_wh: float
    ev_max_current_a: float | None = None
    ev_phases: int | None = None


@dataclass(frozen=True, slots=True)
class OfflineResult:
    """Energy per session (in the input order) and in total."""

    energy_delivered_wh: tuple[float, ...]
    total_delivered_wh: float
    total_requested_wh: float
    status: str
    solve_s: float


def offline_optimum(
    site: SiteLimits,
    stations: Sequence[ConnectorSpec],
    sessions: Sequence[OfflineSession],
    *,
    slot_s: float = DEFAULT_OFFLINE_SLOT_S,
    time_limit_s: float | None = None,
) -> OfflineResult:
    """Solve the whole scenario once; raise ConfigError on bad input or a failed solve."""
    if slot_s <= 0:
        raise ConfigError(f"slot length must be positive, got {slot_s} s")
    by_key = {conn.key: conn for conn in stations}
    n = len(sessions)
    requested = float(sum(max(0.0, s.energy_needed_wh) for s in sessions))
    if n == 0:
        return OfflineResult((), 0.0, 0.0, "empty", 0.0)
    arrival = np.empty(n)
    departure = np.empty(n)
    need = np.empty(n)
    cap = np.empty(n)
    power = np.empty(n)
    connector = np.empty(n, dtype=np.int64)
    phase_mask = np.zeros((n, 3), dtype=np.bool_)
    conn_index = {key: i for i, key in enumerate(by_key)}
    for i, s in enumerate(sessions):
        conn = by_key.get(s.connector)
        if conn is None:
            raise ConfigError(f"session {i} on unknown connector {s.connector}")
        phases = supply_phases(conn, s.ev_phases)
        limit = conn.max_current_a
        if s.ev_max_current_a is not None:
            limit = min(limit, s.ev_max_current_a)
        if conn.current_steps_a is not None:
            limit = max((x for x in conn.current_steps_a if x <= limit), default=0.0)
        arrival[i], departure[i] = s.arrival_s, s.departure_s
        need[i] = max(0.0, s.energy_needed_wh)
        cap[i] = limit
        power[i] = site.voltage_v * len(phases)
        connector[i] = conn_index[s.connector]
        phase_mask[i, list(phases)] = True

    origin = float(arrival.min())
    n_slots = max(1, int(np.ceil((float(departure.max()) - origin) / slot_s)))
    boundaries = origin + slot_s * np.arange(n_slots + 1, dtype=np.float64)
    v = slot_variables(arrival, departure, boundaries, power)
    rows = RowBuilder.empty()
    add_capacity_rows(rows, v, phase_mask, site.capacity_a())
    add_need_rows(rows, v, need)
    _add_connector_rows(rows, v, connector, cap)

    res = solve_max(v.energy_wh_per_a, rows, cap[v.car], time_limit_s=time_limit_s)
    if res.x is None:
        raise ConfigError(f"offline optimum not solved: {res.message}")
    delivered = np.bincount(v.car, weights=v.energy_wh_per_a * res.x, minlength=n)
    delivered = np.minimum(delivered, need)
    return OfflineResult(
        energy_delivered_wh=tuple(float(e) for e in delivered),
        total_delivered_wh=float(delivered.sum()),
        total_requested_wh=requested,
        status=res.message,
        solve_s=res.solve_s,
    )


def _add_connector_rows(
    rows: RowBuilder, v: SlotVariables, connector: IntArray, cap: FloatArray
) -> None:
    """Where sessions on one connector overlap in a slot, they share its maximum."""
    pair = connector[v.car] * v.n_slots + v.slot
    _, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    shared = counts[inverse] > 1
    if not shared.any():
        return
    groups, local = np.unique(inverse[shared], return_inverse=True)
    limit = np.zeros(len(groups))
    np.maximum.at(limit, local, cap[v.car[shared]])
    rows.add(
        local.astype(np.int64),
        np.flatnonzero(shared).astype(np.int64),
        np.ones(int(shared.sum())),
        limit,
    )
