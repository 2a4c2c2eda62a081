"""Local Auth List Management (OCPP 1.6 sections 3.4, 5.10, 5.15), as pure code.

A charger that keeps a Local Authorization List authorises the tags on it without asking
(offline, or online with LocalPreAuthorize). The CSMS keeps, per charger, a copy of what
it holds and the list's version, and sends what changed:

- the list a charger should hold is every id tag of the store, each with the status an
  Authorize would get now (a blocked or expired tag stays on the list, Blocked or Expired,
  so that the charger refuses it offline too);
- a Differential update carries the tags added or changed (with their idTagInfo) and the
  tags removed (without idTagInfo: section 5.15 "remove"); its listVersion is the next
  one. A Full update replaces the list;
- a Full update is sent when the copy cannot be trusted: the charger never had one from
  us, or reports a version other than the one we gave it (GetLocalListVersion), or
  answered a Differential with Failed or VersionMismatch (section 5.15: "the Central
  System SHOULD retry with a Full update").

GetLocalListVersion: 0 is an empty list, -1 a charger whose list is disabled (5.10).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "DISABLED_VERSION",
    "ListEntry",
    "ListUpdate",
    "UpdateType",
    "apply_update",
    "desired_entries",
    "plan_update",
    "split_update",
]

# GetLocalListVersion.conf listVersion of a charger whose local list is disabled (5.10).
DISABLED_VERSION = -1


class UpdateType(StrEnum):
    """SendLocalList.req updateType (spec 7.46)."""

    full = "Full"
    differential = "Differential"


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One AuthorizationData (spec 7.3): an id tag and its IdTagInfo."""

    id_tag: str
    status: str
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None

    def to_ocpp(self) -> dict[str, Any]:
        info: dict[str, Any] = {"status": self.status}
        if self.expiry_date is not None:
            info["expiryDate"] = _iso(self.expiry_date)
        if self.parent_id_tag is not None:
            info["parentIdTag"] = self.parent_id_tag
        return {"idTag": self.id_tag, "idTagInfo": info}


@dataclass(frozen=True, slots=True)
class ListUpdate:
    """A SendLocalList.req: set (add or change) these entries, remove these tags."""

    version: int
    update_type: UpdateType
    entries: tuple[ListEntry, ...]
    removed: tuple[str, ...] = ()

    def to_ocpp(self) -> dict[str, Any]:
        items = [e.to_ocpp() for e in self.entries] + [{"idTag": t} for t in self.removed]
        return {
            "listVersion": self.version,
            "updateType": self.update_type.value,
            "localAuthorizationList": items,
        }

    @classmethod
    def from_ocpp(cls, payload: Mapping[str, Any]) -> ListUpdate:
        """The update a SendLocalList.req payload describes (ValueError if unreadable)."""
        try:
            update_type = UpdateType(payload["updateType"])
            version = int(payload["listVersion"])
            entries: list[ListEntry] = []
            removed: list[str] = []
            for item in payload.get("localAuthorizationList") or []:
                info = item.get("idTagInfo")
                if info is None:
                    removed.append(str(item["idTag"]))
                    continue
                expiry = info.get("expiryDate")
                entries.append(
                    ListEntry(
                        str(item["idTag"]),
                        str(info["status"]),
                        datetime.fromisoformat(expiry.replace("Z", "+00:00")) if expiry else None,
                        info.get("parentIdTag"),
                    )
                )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a SendLocalList payload: {exc!r}") from None
        return cls(version, update_type, tuple(entries), tuple(removed))


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def desired_entries(tags: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, ListEntry]:
    """The list every charger should hold: each tag as an Authorize would answer now.

    ``tags``: rows with ``id_tag``, ``blocked``, ``expires_at`` (datetime or None) and
    ``parent`` (csms.store.features.FeatureStore.id_tags).
    """
    out: dict[str, ListEntry] = {}
    for tag in tags:
        expires = tag.get("expires_at")
        if tag.get("blocked"):
            status = "Blocked"
        elif expires is not None and expires <= now:
            status = "Expired"
        else:
            status = "Accepted"
        out[tag["id_tag"]] = ListEntry(tag["id_tag"], status, expires, tag.get("parent"))
    return out


def plan_update(
    desired: Mapping[str, ListEntry],
    held: Mapping[str, ListEntry] | None,
    version: int | None,
    *,
    full: bool = False,
) -> ListUpdate | None:
    """The SendLocalList to send, or None when the charger holds the desired list.

    ``held``/``version``: the copy of the charger's list and its version (None: unknown,
    so a Full update). ``full``: a Full update even if the copy is known.
    """
    next_version = max(version or 0, 0) + 1
    if held is None or version is None or full:
        entries = tuple(desired[t] for t in sorted(desired))
        return ListUpdate(next_version, UpdateType.full, entries)
    changed = tuple(desired[t] for t in sorted(desired) if held.get(t) != desired[t])
    removed = tuple(t for t in sorted(held) if t not in desired)
    if not changed and not removed:
        return None
    return ListUpdate(next_version, UpdateType.differential, changed, removed)


def apply_update(held: Mapping[str, ListEntry], update: ListUpdate) -> dict[str, ListEntry]:
    """What a charger holds after accepting ``update`` (the charger's side and our copy)."""
    out = {} if update.update_type is UpdateType.full else dict(held)
    for tag in update.removed:
        out.pop(tag, None)
    for entry in update.entries:
        out[entry.id_tag] = entry
    return out


def split_update(update: ListUpdate, max_items: int | None) -> list[ListUpdate]:
    """``update`` in parts of at most ``max_items`` entries (SendLocalListMaxLength, spec
    9.2): a Full list becomes a Full part and Differential parts, a Differential becomes
    several, each with the next version, so that a charger that took some parts holds a
    consistent list at the version of the last one. One part when it fits (or no limit
    is known)."""
    items: list[ListEntry | str] = [*update.entries, *update.removed]
    if max_items is None or max_items < 1 or len(items) <= max_items:
        return [update]
    parts: list[ListUpdate] = []
    for n, start in enumerate(range(0, len(items), max_items)):
        chunk = items[start : start + max_items]
        kind = update.update_type if n == 0 else UpdateType.differential
        parts.append(
            ListUpdate(
                update.version + n,
                kind,
                tuple(i for i in chunk if isinstance(i, ListEntry)),
                tuple(i for i in chunk if isinstance(i, str)),
            )
        )
    return parts
