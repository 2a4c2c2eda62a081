"""What the CSMS records from the answers to the other feature profiles' calls.

Whoever sent the call (the outbox for the CLI, the monitor and the API, or the local list
sync), its answer updates the store the same way:

- ReserveNow: the reservation takes the charger's answer (Accepted holds it until it is
  used, cancelled or expires; any other answer, or none, ends it).
- CancelReservation Accepted: cancelled. Rejected: the charger has no such reservation
  (it expired, or was used): it ends as well, as ``gone``.
- SendLocalList Accepted: our copy of the charger's list becomes what it holds, with the
  version sent. Failed or VersionMismatch: our copy is no longer trusted, so the next
  update is Full (section 5.15). NotSupported, or a CALLERROR NotSupported or
  NotImplemented: the charger keeps no list; nothing more is sent to it.
- GetLocalListVersion: -1 (list disabled, section 5.10) counts as no list; another
  version than the one we gave it means that our copy is not what it holds.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from csms.errors import GarageGridError
from csms.local_list import DISABLED_VERSION, ListUpdate, UpdateType
from csms.reservations import ACTIVE_STATUSES, RESERVE_NOW_ANSWERS
from csms.store.features import FeatureStore

log = logging.getLogger("csms.answers")

# CALLERROR codes that say the charger does not implement an action at all.
UNSUPPORTED_CODES: Final = frozenset({"NotSupported", "NotImplemented"})
# The actions whose answers are recorded here.
RECORDED_ACTIONS: Final = frozenset(
    {"ReserveNow", "CancelReservation", "SendLocalList", "GetLocalListVersion"}
)


async def record_answer(
    features: FeatureStore,
    cp_id: str,
    action: str,
    payload: dict[str, Any],
    answer: dict[str, Any] | None,
    *,
    error_code: str | None = None,
) -> None:
    """Record ``answer`` (None: no answer; ``error_code``: the CALLERROR's code if any).

    Never raises a GarageGridError: a failure is logged (the call itself is done).
    """
    if action not in RECORDED_ACTIONS:
        return
    try:
        await _record(features, cp_id, action, payload, answer, error_code)
    except (GarageGridError, ValueError) as exc:
        log.warning(
            "answer not recorded",
            extra={"cp_id": cp_id, "action": action, "error": str(exc)},
        )


async def _record(
    features: FeatureStore,
    cp_id: str,
    action: str,
    payload: dict[str, Any],
    answer: dict[str, Any] | None,
    error_code: str | None,
) -> None:
    status = None if answer is None else answer.get("status")
    if action == "ReserveNow":
        reservation_id = int(payload["reservationId"])
        if await features.reservation(reservation_id) is None:
            return  # sent by hand with an id of its own: nothing of ours to update
        if status in RESERVE_NOW_ANSWERS:
            await features.set_reservation_status(
                reservation_id, str(status), ended=status != "Accepted"
            )
        else:
            await features.set_reservation_status(reservation_id, "failed", ended=True)
    elif action == "CancelReservation":
        reservation_id = int(payload["reservationId"])
        reservation = await features.reservation(reservation_id)
        if reservation is None or reservation.status not in ACTIVE_STATUSES:
            return  # not ours, or ended already (used, cancelled): it stays as it ended
        if status == "Accepted":
            await features.set_reservation_status(reservation_id, "cancelled", ended=True)
        elif status == "Rejected":
            await features.set_reservation_status(reservation_id, "gone", ended=True)
    elif action == "SendLocalList":
        if status == "Accepted":
            await features.local_list_accepted(cp_id, ListUpdate.from_ocpp(payload))
        elif status in ("Failed", "VersionMismatch"):
            await features.set_local_list_state(cp_id, supported=True, in_sync=False)
        elif status == "NotSupported" or error_code in UNSUPPORTED_CODES:
            await features.set_local_list_state(cp_id, supported=False, in_sync=False)
        log.info(
            "local list update answered",
            extra={
                "cp_id": cp_id,
                "update_type": payload.get("updateType"),
                "list_version": payload.get("listVersion"),
                "status": status or error_code,
            },
        )
    elif action == "GetLocalListVersion":
        if answer is None:
            if error_code in UNSUPPORTED_CODES:
                await features.set_local_list_state(cp_id, supported=False, in_sync=False)
            return
        version = int(answer["listVersion"])
        if version == DISABLED_VERSION:
            await features.set_local_list_state(cp_id, supported=False, in_sync=False)
            return
        state = await features.local_list(cp_id)
        if state.version == version and state.in_sync:
            await features.set_local_list_state(cp_id, supported=True)
        else:
            await features.set_local_list_state(
                cp_id, supported=True, version=version, in_sync=False
            )


__all__ = ["RECORDED_ACTIONS", "UNSUPPORTED_CODES", "UpdateType", "record_answer"]
