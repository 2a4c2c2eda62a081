"""Fuse headroom per phase, for the metrics: what is left under the fuse in the worst case.

Pure: the controller's last snapshot and its profile mirror in, three numbers out.
Headroom = fuse - margin - building load (the one the controller plans with, stale or
missing replaced by the configured worst case) - the fuse model's worst case of what
every charger accepted (`csms.fuse.site_worst_case_a`). Negative: the fuse is at risk.
"""

from __future__ import annotations

from collections.abc import Mapping

from csms.controller.mirror import ProfileMirror
from csms.controller.planning import (
    Snapshot,
    StationState,
    capacity_a,
    effective_building_load,
)
from csms.domain import split_wiring
from csms.fuse import ChargerView, RunningTx, site_worst_case_a


def fuse_headroom_a(snapshot: Snapshot, mirror: ProfileMirror) -> tuple[float, float, float]:
    running: dict[str, dict[int, RunningTx]] = {}
    for session in snapshot.sessions:
        running.setdefault(session.charge_point_id, {})[session.connector_id] = RunningTx(
            session.transaction_id, session.started_at
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
