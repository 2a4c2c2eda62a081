"""Reads and writes of the other OCPP 1.6 feature profiles: local auth lists,
reservations, firmware and diagnostics status. One unit of work per call, like
`csms.store.repository.Repository`, whose session and clock it shares."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, cast, delete, func, select, update

from csms.domain import CommandStatus
from csms.errors import ConfigError, NotFoundError
from csms.local_list import ListEntry, ListUpdate, UpdateType, apply_update
from csms.reservations import ACTIVE_STATUSES, Reservation, reservation_from_row
from csms.store import models as m
from csms.store.repository import Repository

# The two status notifications of Firmware Management and the column of each.
MAINTENANCE_KINDS = {"firmware": "firmware_status", "diagnostics": "diagnostics_status"}


@dataclass(frozen=True)
class LocalListState:
    """What the CSMS knows of one charger's Local Authorization List."""

    charge_point_id: str
    supported: bool | None
    version: int | None
    in_sync: bool
    entries: dict[str, ListEntry]


class FeatureStore:
    def __init__(self, repository: Repository) -> None:
        self._repo = repository

    def now(self) -> datetime:
        return self._repo.now()

    # ------------------------------------------------------------ id tags
    async def id_tags(self, cp_id: str | None = None) -> list[dict[str, Any]]:
        """Every id tag with its site, block, expiry (datetime) and parent; with ``cp_id``
        the tags of that charge point's site only (what its local list holds)."""
        async with self._repo.reading() as s:
            stmt = select(m.IdTag).order_by(m.IdTag.id_tag)
            if cp_id is not None:
                site = select(m.ChargePoint.site_id).where(m.ChargePoint.id == cp_id)
                stmt = stmt.where(m.IdTag.site_id == site.scalar_subquery())
            rows = (await s.execute(stmt)).scalars()
            return [
                {
                    "id_tag": r.id_tag,
                    "site_id": r.site_id,
                    "blocked": r.blocked,
                    "expires_at": r.expires_at,
                    "parent": r.parent_id_tag,
                }
                for r in rows
            ]

    async def local_list_digest(self) -> tuple[str | None, str | None]:
        """What every charger's local list depends on (each tag's site, block, expiry and
        parent; each charger's site), folded into two strings by the database: while
        they are equal, so are the lists (a tag that expires meanwhile aside). One small
        read instead of every row into Python objects every poll."""
        t, cp = m.IdTag, m.ChargePoint
        field, row = "\x1f", "\x1e"
        tag = (
            t.id_tag
            + field
            + cast(t.site_id, String)
            + field
            + cast(cast(t.blocked, Integer), String)
            + field
            + func.coalesce(cast(t.expires_at, String), "")
            + field
            + func.coalesce(t.parent_id_tag, "")
        )
        station = cp.id + field + cast(cp.site_id, String)
        async with self._repo.reading() as s:
            tags = (await s.execute(select(func.aggregate_strings(tag, row)))).scalar()
            stations = (await s.execute(select(func.aggregate_strings(station, row)))).scalar()
        return tags, stations

    # ------------------------------------------------------------ local auth lists
    async def local_list(self, cp_id: str) -> LocalListState:
        async with self._repo.unit_of_work() as s:
            row = await s.get(m.ChargePoint, cp_id)
            if row is None:
                raise NotFoundError(f"no charge point {cp_id!r}")
            entries = (
                await s.execute(
                    select(m.LocalListEntry).where(m.LocalListEntry.charge_point_id == cp_id)
                )
            ).scalars()
            return LocalListState(
                cp_id,
                row.local_list_supported,
                row.local_list_version,
                bool(row.local_list_in_sync),
                {
                    e.id_tag: ListEntry(e.id_tag, e.status, e.expiry_date, e.parent_id_tag)
                    for e in entries
                },
            )

    async def local_list_accepted(self, cp_id: str, sent: ListUpdate) -> None:
        """The charger answered Accepted: our copy becomes what it holds now.

        A Differential on a copy in sync writes only the tags it names; anything else
        rewrites the copy (a Differential on a copy we did not trust leaves it untrusted).
        """
        state = await self.local_list(cp_id)
        differential = sent.update_type is UpdateType.differential
        if differential and state.in_sync:
            touched = [e.id_tag for e in sent.entries] + list(sent.removed)
            rows = list(sent.entries)
        else:
            touched = None
            rows = list(apply_update(state.entries if state.in_sync else {}, sent).values())
        async with self._repo.unit_of_work() as s:
            stale = delete(m.LocalListEntry).where(m.LocalListEntry.charge_point_id == cp_id)
            if touched is not None:
                stale = stale.where(m.LocalListEntry.id_tag.in_(touched))
            await s.execute(stale)
            s.add_all(
                m.LocalListEntry(
                    charge_point_id=cp_id,
                    id_tag=e.id_tag,
                    status=e.status,
                    expiry_date=e.expiry_date,
                    parent_id_tag=e.parent_id_tag,
                )
                for e in rows
            )
            await s.execute(
                update(m.ChargePoint)
                .where(m.ChargePoint.id == cp_id)
                .values(
                    local_list_supported=True,
                    local_list_version=sent.version,
                    local_list_in_sync=state.in_sync or not differential,
                )
            )

    async def set_local_list_state(
        self,
        cp_id: str,
        *,
        supported: bool | None,
        version: int | None = None,
        in_sync: bool | None = None,
    ) -> None:
        """What an answer told about the list (``version`` None: unchanged)."""
        values: dict[str, Any] = {"local_list_supported": supported}
        if version is not None:
            values["local_list_version"] = version
        if in_sync is not None:
            values["local_list_in_sync"] = in_sync
        async with self._repo.unit_of_work() as s:
            await s.execute(update(m.ChargePoint).where(m.ChargePoint.id == cp_id).values(**values))

    async def local_list_copies(
        self, only: Collection[str] | None = None
    ) -> dict[str, LocalListState]:
        """Every charger not known to lack a local list (of ``only``, if given), with its
        copy. Plain columns: whole ChargePoint rows brought each one's profile copies
        (big JSON documents) into Python, every round of a mass boot."""
        cp, e = m.ChargePoint, m.LocalListEntry
        keeps = cp.local_list_supported.is_not(False)  # None or True
        wanted = None if only is None else set(only)
        async with self._repo.reading() as s:
            stations = await s.execute(
                select(
                    cp.id, cp.local_list_supported, cp.local_list_version, cp.local_list_in_sync
                ).where(keeps)
            )
            states = {
                r[0]: LocalListState(r[0], r[1], r[2], bool(r[3]), {})
                for r in stations
                if wanted is None or r[0] in wanted
            }
            if not states:
                return states
            entries = await s.execute(
                select(e.charge_point_id, e.id_tag, e.status, e.expiry_date, e.parent_id_tag)
                .join(cp, cp.id == e.charge_point_id)
                .where(keeps)
            )
            for cp_id, id_tag, status, expiry, parent in entries:
                state = states.get(cp_id)
                if state is not None:
                    state.entries[id_tag] = ListEntry(id_tag, status, expiry, parent)
            return states

    # ------------------------------------------------------------ reservations
    async def add_reservation(
        self,
        cp_id: str,
        connector_id: int,
        id_tag: str,
        expires_at: datetime,
        *,
        parent_id_tag: str | None = None,
        requested_by: str = "cli",
        now: datetime | None = None,
    ) -> Reservation:
        """A reservation waiting for its ReserveNow; its id is the reservationId.

        ``now``: the CSMS's time where this process's clock is not it (the CLI under a
        simulated `csms serve`)."""
        if expires_at <= (now or self.now()):
            raise ConfigError("the reservation would expire before it is sent")
        async with self._repo.unit_of_work() as s:
            if await s.get(m.ChargePoint, cp_id) is None:
                raise NotFoundError(f"no charge point {cp_id!r}")
            row = m.Reservation(
                charge_point_id=cp_id,
                connector_id=connector_id,
                id_tag=id_tag,
                parent_id_tag=parent_id_tag,
                expires_at=expires_at,
                status="requested",
                created_at=self.now(),
                requested_by=requested_by[:64],
            )
            s.add(row)
            await s.flush()
            return reservation_from_row(row)

    async def reservation(self, reservation_id: int) -> Reservation | None:
        async with self._repo.unit_of_work() as s:
            row = await s.get(m.Reservation, reservation_id)
            return None if row is None else reservation_from_row(row)

    async def reservations(
        self, cp_id: str | None = None, *, active_only: bool = False
    ) -> list[Reservation]:
        """Newest first; ``active_only``: requested or Accepted and not expired."""
        query = select(m.Reservation).order_by(m.Reservation.id.desc())
        if cp_id is not None:
            query = query.where(m.Reservation.charge_point_id == cp_id)
        async with self._repo.unit_of_work() as s:
            rows = [reservation_from_row(r) for r in (await s.execute(query)).scalars()]
        if active_only:
            now = self.now()
            rows = [r for r in rows if r.state(now) in ACTIVE_STATUSES]
        return rows

    async def set_reservation_status(
        self, reservation_id: int, status: str, *, ended: bool = False
    ) -> None:
        async with self._repo.unit_of_work() as s:
            row = await s.get(m.Reservation, reservation_id)
            if row is None:
                raise NotFoundError(f"no reservation {reservation_id}")
            row.status = status
            if ended and row.ended_at is None:
                row.ended_at = self.now()

    async def use_reservation(
        self, cp_id: str, reservation_id: int, transaction_id: int
    ) -> Reservation | None:
        """A StartTransaction named this reservation: it ends, used by the transaction.
        None if this charger has no such reservation (it is only logged then)."""
        async with self._repo.unit_of_work() as s:
            row = await s.get(m.Reservation, reservation_id)
            if row is None or row.charge_point_id != cp_id:
                return None
            row.status = "used"
            row.transaction_id = transaction_id
            if row.ended_at is None:
                row.ended_at = self.now()
            return reservation_from_row(row)

    # ------------------------------------------------------------ firmware, diagnostics
    async def record_maintenance(self, cp_id: str, kind: str, status: str) -> None:
        """A Firmware/DiagnosticsStatusNotification: kept in history and as the latest."""
        column = MAINTENANCE_KINDS[kind]
        now = self.now()
        async with self._repo.unit_of_work() as s:
            s.add(
                m.MaintenanceEvent(charge_point_id=cp_id, kind=kind, status=status, received_at=now)
            )
            await s.execute(
                update(m.ChargePoint)
                .where(m.ChargePoint.id == cp_id)
                .values(**{column: status}, last_seen_at=now)
            )

    async def maintenance_events(self, cp_id: str, limit: int = 50) -> list[dict[str, Any]]:
        async with self._repo.unit_of_work() as s:
            rows = (
                await s.execute(
                    select(m.MaintenanceEvent)
                    .where(m.MaintenanceEvent.charge_point_id == cp_id)
                    .order_by(m.MaintenanceEvent.id.desc())
                    .limit(limit)
                )
            ).scalars()
            return [
                {"kind": r.kind, "status": r.status, "received_at": r.received_at} for r in rows
            ]

    # ------------------------------------------------------------ sessions
    async def open_transaction(
        self, cp_id: str, connector_id: int | None = None
    ) -> dict[str, Any] | None:
        """The running transaction of a charger (of one connector); None if there is none
        or, without a connector, more than one."""
        query = select(m.Transaction).where(
            m.Transaction.charge_point_id == cp_id, m.Transaction.stopped_at.is_(None)
        )
        if connector_id is not None:
            query = query.where(m.Transaction.connector_id == connector_id)
        async with self._repo.unit_of_work() as s:
            rows = (await s.execute(query.order_by(m.Transaction.id.desc()))).scalars().all()
        if len(rows) != 1 and connector_id is None:
            return None
        if not rows:
            return None
        row = rows[0]
        return {"transaction_id": row.id, "connector_id": row.connector_id, "id_tag": row.id_tag}

    # ------------------------------------------------------------ commands
    async def has_open_command(self, cp_id: str, action: str) -> bool:
        """Whether a command of ``action`` for ``cp_id`` waits or is being sent."""
        async with self._repo.unit_of_work() as s:
            found = await s.scalar(
                select(m.Command.id)
                .where(
                    m.Command.charge_point_id == cp_id,
                    m.Command.action == action,
                    m.Command.status.in_(
                        [CommandStatus.pending.value, CommandStatus.sending.value]
                    ),
                )
                .limit(1)
            )
            return found is not None
