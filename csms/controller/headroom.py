"""Fuse headroom per phase, for the metrics: what is left under the fuse in the worst case.

Pure: the controller's last snapshot and its profile mirror in, three numbers out.
Headroom = fuse - margin - building load (the one the controller plans with, stale or
missing replaced by the configured worst case) - the fuse model's worst case of what
every charger accepted (`csms.fuse.site_worst_case_a`, a running car on its own phases).
Negative: the fuse is at risk.
"""

from __future__ import annotations

from collections.abc import Mapping

from csms.controller.mirror import ProfileMirror
from csms.controller.planning import (
    Snapshot,
    StationState,
    capacity_a,
    car_phases,
    effective_building_load,
)
from csms.domain import split_wiring
from csms.fuse import ChargerView, RunningTx, site_worst_case_a


def fuse_headroom_a(
    snapshot: Snapshot,
    mirror: ProfileMirror,
    ev_lookup: Mapping[str, tuple[float, float, int]] | None = None,
) -> tuple[float, float, float]:
    """A running car counts on the phases it draws on, as the planner counts it
    (`planning.car_phases`); the next car on every phase of its station."""
    infos = {station.info.id: station.info for station in snapshot.stations}
    running: dict[str, dict[int, RunningTx]] = {}
    for session in snapshot.sessions:
        info = infos.get(session.charge_point_id)
        phases = None if info is None else car_phases(session, info, snapshot, ev_lookup or {})
        running.setdefault(session.charge_point_id, {})[session.connector_id] = RunningTx(
            session.transaction_id, session.started_at, phases
        )
    views = [
        _view(station, mirror, running.get(station.info.id, {}), snapshot)
        for station in snapshot.stations
    ]
    worst = site_worst_case_a(views, snapshot.now)
    capacity = capacity_a(snapshot.site, effective_building_load(snapshot))
    return (capacity[0] - worst[0], capacity[1] - worst[1], capacity[2] - worst[2])


def _view(
    station: StationState,
    mirror: ProfileMirror,
    running: Mapping[int, RunningTx],
    snapshot: Snapshot,
) -> ChargerView:
    info = station.info
    cp_id = info.id
    return ChargerView(
        cp_id,
        split_wiring(info.wiring),
        info.max_current_a,
        station.connector_ids,
        mirror.store_for(cp_id),
        running=running,
        managed=not info.unmanaged,
        online=info.connected,
        voltage_v=snapshot.site.voltage_v,
        alternatives=mirror.alternatives_for(cp_id),
    )
