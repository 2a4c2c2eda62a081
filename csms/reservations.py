"""Reservations (OCPP 1.6 sections 3.11, 5.13, 5.2 CancelReservation), as pure code.

A reservation is a row of the store whose id is the OCPP reservationId. It is
``requested`` until the charger answers ReserveNow: Accepted, or Faulted, Occupied,
Rejected, Unavailable (it took none). An accepted one ends when a StartTransaction names
it (``used``), when CancelReservation is accepted (``cancelled``) or at its expiryDate,
judged by the CSMS's clock (``expired``: the charger lets it go by itself, section 5.13,
so no message marks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = [
    "ACTIVE_STATUSES",
    "RESERVE_NOW_ANSWERS",
    "Reservation",
    "cancel_reservation_payload",
    "reservation_from_row",
    "reserve_now_payload",
]

# ReserveNow.conf status (spec 7.38 ReservationStatus).
RESERVE_NOW_ANSWERS: Final = frozenset(
    {"Accepted", "Faulted", "Occupied", "Rejected", "Unavailable"}
)
# States in which a reservation holds (or may soon hold) its connector.
ACTIVE_STATUSES: Final = frozenset({"requested", "Accepted"})


@dataclass(frozen=True)
class Reservation:
    id: int
    charge_point_id: str
    connector_id: int
    id_tag: str
    parent_id_tag: str | None
    expires_at: datetime
    status: str
    created_at: datetime
    ended_at: datetime | None = None
    transaction_id: int | None = None

    def state(self, now: datetime) -> str:
        """The status, with an active reservation past its expiryDate ``expired``."""
        if self.status in ACTIVE_STATUSES and now >= self.expires_at:
            return "expired"
        return self.status


def reservation_from_row(row: Any) -> Reservation:
    return Reservation(
        id=row.id,
        charge_point_id=row.charge_point_id,
        connector_id=row.connector_id,
        id_tag=row.id_tag,
        parent_id_tag=row.parent_id_tag,
        expires_at=row.expires_at,
        status=row.status,
        created_at=row.created_at,
        ended_at=row.ended_at,
        transaction_id=row.transaction_id,
    )


def reserve_now_payload(reservation: Reservation) -> dict[str, Any]:
    """ReserveNow.req (spec 6.39) for a stored reservation."""
    payload: dict[str, Any] = {
        "connectorId": reservation.connector_id,
        "expiryDate": reservation.expires_at.isoformat().replace("+00:00", "Z"),
        "idTag": reservation.id_tag,
        "reservationId": reservation.id,
    }
    if reservation.parent_id_tag is not None:
        payload["parentIdTag"] = reservation.parent_id_tag
    return payload


def cancel_reservation_payload(reservation_id: int) -> dict[str, Any]:
    return {"reservationId": reservation_id}
