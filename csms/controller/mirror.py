"""The CSMS's copy of the charging profiles every charger holds (OCPP 1.6 section 3.13).

OCPP 1.6 has no way to read a charger's profiles back (GetCompositeSchedule gives one
connector's result, not the profiles behind it), so the CSMS keeps its own copy from the
calls it sends and their answers, and hands it to the fuse model (`csms.fuse`):

- SetChargingProfile Accepted: installed as the charger does (`ProfileStore.install`).
  Where our copy would refuse what the charger accepted (a transaction we do not know
  yet, say), the charger is the truth: installed anyway, with a warning.
- ClearChargingProfile Accepted or Unknown: cleared with the same criteria; either answer
  means that nothing matching is left on the charger (spec 5.5 / 6.13).
- RemoteStartTransaction Accepted with a chargingProfile: a TxProfile waiting for the
  transaction it starts (spec 5.11).
- A transaction stopped: its TxProfiles are gone (section 3.13.1).
- Rejected / NotSupported: nothing changed. A call that never left the CSMS (not
  connected, refused payload) is not observed at all.

Known only after a clear. A charger may carry profiles from before: from another central
system, or from a time this copy was lost. Since the highest stack level wins, one old
TxDefaultProfile of 32 A at stack level 5 outweighs ours, so a purpose counts as known only
once a ClearChargingProfile of that whole purpose (or of everything) was answered. Until
then the fuse model gets a store in which the unknown purposes limit nothing:
ChargePointMaxProfile unknown: no store at all (`store_for` None, the charger counts at
its maximum); TxDefaultProfile or TxProfile unknown: the ChargePointMaxProfiles alone. A
boot that reports another vendor, model or serial number may be another unit: unknown
again. A reboot of the same unit keeps its profiles (they persist, section 3.13).

Uncertain answers. A SetChargingProfile or ClearChargingProfile without a usable answer
(timeout, CALLERROR, lost connection) may or may not have been carried out. The mirror
then keeps both outcomes: each charger has one or more *possible stores*, the first one
as if every unanswered call took effect, and every later call or stop applies to each of
them. The fuse model counts each connector at the largest limit among them (`store_for`
and `alternatives_for`). A later answer settles it: a profile accepted with the same id
(or the same connector, purpose and stack level) replaces the doubtful one in every
possible store, which then become equal and merge; a clear's answer drops the stores it
contradicts (Accepted: something matched; Unknown: nothing did). Beyond
`MAX_POSSIBLE_STORES` the charger becomes unknown.

Synchronous and pure apart from logging: the controller calls it from its event handlers
and after each call, in the order the answers came (one outstanding call per charger,
as OCPP-J requires, so that is the order the charger carried them out), and persists
`to_json()` in the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from csms.profiles import (
    ChargingProfile,
    ChargingProfilePurpose,
    ProfileError,
    ProfileRejectedError,
    ProfileStore,
    profile_from_ocpp,
)

__all__ = ["MAX_POSSIBLE_STORES", "ChargerIdentity", "ProfileMirror"]

log = logging.getLogger("csms.controller.mirror")

# Each unanswered call can double the possible stores; a handful covers a few lost answers
# in a row before the next answer settles them. Beyond that: unknown, i.e. its maximum.
MAX_POSSIBLE_STORES: Final = 8
_FORMAT: Final = "garagegrid.profile-mirror/1"
# The copy must hold whatever the charger accepted: its own limits (spec 3.13.5
# ChargeProfileMaxStackLevel, MaxChargingProfilesInstalled, ChargingScheduleMaxPeriods) are
# the charger's to enforce, and it says Rejected when they are exceeded.
_UNBOUNDED: Final = 1_000_000
_ALL_PURPOSES: Final = frozenset(ChargingProfilePurpose)
_MAX = ChargingProfilePurpose.ChargePointMaxProfile
_TX = ChargingProfilePurpose.TxProfile
# The statuses of SetChargingProfile.conf (ChargingProfileStatus), ClearChargingProfile.conf
# (ClearChargingProfileStatus) and RemoteStartTransaction.conf (RemoteStartStopStatus).
_ACCEPTED: Final = "Accepted"
_REFUSED: Final = frozenset({"Rejected", "NotSupported"})
_CLEAR_NOTHING: Final = "Unknown"


@dataclass(frozen=True, slots=True)
class ChargerIdentity:
    """What a BootNotification.req says about the unit (section 4.2)."""

    vendor: str | None
    model: str | None
    serial_number: str | None


@dataclass(frozen=True, slots=True)
class _Possible:
    """One store the charger may hold, and the purposes of which it may hold more."""

    store: ProfileStore
    unknown: frozenset[ChargingProfilePurpose]

    def for_fuse(self) -> ProfileStore | None:
        """The store with every unknown purpose read as "no limit" (section 3.13.6)."""
        if _MAX in self.unknown:
            return None
        if self.unknown:
            kept = tuple(e for e in self.store.entries if e.profile.purpose is _MAX)
            return replace(self.store, entries=kept)
        return self.store


@dataclass(frozen=True, slots=True)
class _Charger:
    identity: ChargerIdentity | None
    possible: tuple[_Possible, ...]  # never empty; [0]: every unanswered call took effect


def _empty_store() -> ProfileStore:
    return ProfileStore(max_stack_level=_UNBOUNDED, max_profiles=_UNBOUNDED, max_periods=_UNBOUNDED)


_UNKNOWN: Final = _Possible(_empty_store(), _ALL_PURPOSES)
_NO_IDENTITY: Final = ChargerIdentity(None, None, None)


def _canonical(possible: _Possible) -> _Possible:
    """Entry order never changes a limit (install leaves one profile per connector,
    purpose and stack level); sorted, equal stores compare equal and merge."""
    entries = tuple(
        sorted(
            possible.store.entries,
            key=lambda e: (
                e.connector_id,
                e.profile.purpose.value,
                e.profile.stack_level,
                e.profile.profile_id,
            ),
        )
    )
    return replace(possible, store=replace(possible.store, entries=entries))


class ProfileMirror:
    """Per charger, the profiles it holds as far as the CSMS can tell."""

    def __init__(self) -> None:
        self._chargers: dict[str, _Charger] = {}

    # ------------------------------------------------------------ what the fuse model reads
    def store_for(self, cp_id: str) -> ProfileStore | None:
        """The profiles to count for `cp_id`, as if every unanswered call took effect;
        None when unknown (never configured, another unit, doubtful beyond reading)."""
        stores = self._for_fuse(cp_id)
        return stores[0] if stores else None

    def alternatives_for(self, cp_id: str) -> tuple[ProfileStore, ...]:
        """Other stores `cp_id` may hold (answers lost); empty when `store_for` is certain
        or None. Pass both to `csms.fuse.ChargerView` (profiles, alternatives)."""
        stores = self._for_fuse(cp_id)
        return stores[1:] if stores else ()

    def is_uncertain(self, cp_id: str) -> bool:
        """Whether an unanswered call leaves more than one possible store."""
        charger = self._chargers.get(cp_id)
        return charger is not None and len(charger.possible) > 1

    def charger_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._chargers))

    def holds_defaults(
        self,
        cp_id: str,
        identity: ChargerIdentity,
        profile_ids: Mapping[ChargingProfilePurpose, int],
    ) -> bool:
        """Whether `cp_id`, booting as `identity`, certainly still holds the profiles with
        these ids and purposes (its fail-safe defaults): the same unit as last time (its
        profiles persist across a reboot, section 3.13), one possible store, no purpose
        unknown. A first boot, another unit or any doubt: False."""
        charger = self._chargers.get(cp_id)
        if charger is None or charger.identity != identity or len(charger.possible) != 1:
            return False
        possible = charger.possible[0]
        if possible.unknown:
            return False
        held = {(e.profile.purpose, e.profile.profile_id) for e in possible.store.entries}
        return all((purpose, pid) in held for purpose, pid in profile_ids.items())

    def _for_fuse(self, cp_id: str) -> tuple[ProfileStore, ...] | None:
        charger = self._chargers.get(cp_id)
        if charger is None:
            return None
        stores: list[ProfileStore] = []
        for possible in charger.possible:
            store = possible.for_fuse()
            if store is None:
                return None  # it may hold anything: count it at its maximum
            if store not in stores:
                stores.append(store)
        return tuple(stores)

    # ------------------------------------------------------------ what the CSMS observes
    def observe_call(
        self,
        cp_id: str,
        action: str,
        payload: Mapping[str, Any],
        answer: Mapping[str, Any] | None,
        *,
        running_tx: int | None = None,
    ) -> None:
        """A call the CSMS sent to `cp_id` and its answer (None: timeout, CALLERROR or lost).

        `payload` and `answer` as sent and received (camelCase; snake_case is read too).
        `running_tx`: the transaction running on the payload's connector when it was sent.
        """
        status = None if answer is None else answer.get("status")
        if status in _REFUSED:
            return  # the charger kept what it had
        if action == "SetChargingProfile":
            certain = status == _ACCEPTED
            self._observe_set(cp_id, payload, certain=certain, running_tx=running_tx)
        elif action == "ClearChargingProfile":
            settled = status if status in (_ACCEPTED, _CLEAR_NOTHING) else None
            self._observe_clear(cp_id, payload, settled)
        elif action == "RemoteStartTransaction" and _get(payload, "chargingProfile") is not None:
            self._observe_remote_start(cp_id, payload, certain=status == _ACCEPTED)

    def checkpoint(self, cp_id: str) -> object:
        """What is known of ``cp_id`` now, to `restore` (an opaque, immutable value)."""
        return self._chargers.get(cp_id)

    def restore(self, cp_id: str, checkpoint: object, *, if_still: object) -> bool:
        """Put back what `checkpoint` took, provided nothing was learnt of the charger
        since ``if_still`` (another checkpoint) was taken; whether it was put back."""
        if self._chargers.get(cp_id) is not if_still:
            return False
        if checkpoint is None:
            self._chargers.pop(cp_id, None)
        else:
            assert isinstance(checkpoint, _Charger)
            self._chargers[cp_id] = checkpoint
        return True

    def charger_booted(
        self,
        cp_id: str,
        *,
        vendor: str | None,
        model: str | None,
        serial_number: str | None,
    ) -> None:
        """A BootNotification: the same unit keeps its profiles (section 3.13, they persist);
        one that reports another vendor, model or serial number may be another unit."""
        identity = ChargerIdentity(vendor, model, serial_number)
        charger = self._chargers.get(cp_id)
        if charger is None:
            self._chargers[cp_id] = _Charger(identity, (_UNKNOWN,))
        elif charger.identity is None or charger.identity == _NO_IDENTITY:
            # Nothing was known of the unit (a copy from before its boot was recorded).
            self._chargers[cp_id] = replace(charger, identity=identity)
        elif charger.identity != identity:
            log.warning(
                "charger reports another unit: its profiles are unknown",
                extra={
                    "cp_id": cp_id,
                    "was": _identity_text(charger.identity),
                    "now": _identity_text(identity),
                },
            )
            self._chargers[cp_id] = _Charger(identity, (_UNKNOWN,))

    def transaction_stopped(
        self, cp_id: str, connector_id: int | None, transaction_id: int | None = None
    ) -> None:
        """Its TxProfiles are deleted with the transaction (section 3.13.1). Without a
        connector (a stop for a transaction the CSMS did not place), those bound to
        `transaction_id` go."""
        if connector_id is not None:
            self._update(cp_id, lambda s: s.end_transaction(connector_id))
        elif transaction_id is not None:
            self._update(
                cp_id,
                lambda s: replace(
                    s,
                    entries=tuple(
                        e
                        for e in s.entries
                        if not (
                            e.profile.purpose is _TX and e.profile.transaction_id == transaction_id
                        )
                    ),
                ),
            )

    def forget(self, cp_id: str) -> None:
        """The charger left the site: nothing is known about it any more."""
        self._chargers.pop(cp_id, None)

    # ------------------------------------------------------------ persistence
    def to_json(self, only: Collection[str] | None = None) -> str:
        """JSON text for a database column; `from_json` reads it back. ``only``: just
        these chargers (the ones whose copy changed), not the whole site."""
        chargers: dict[str, Any] = {}
        items = (
            sorted(self._chargers.items())
            if only is None
            else sorted((c, self._chargers[c]) for c in only if c in self._chargers)
        )
        for cp_id, charger in items:
            identity = charger.identity
            chargers[cp_id] = {
                "identity": None
                if identity is None
                else {
                    "vendor": identity.vendor,
                    "model": identity.model,
                    "serial_number": identity.serial_number,
                },
                "possible": [
                    {
                        "unknown": sorted(p.value for p in possible.unknown),
                        "store": possible.store.to_dict(),
                    }
                    for possible in charger.possible
                ],
            }
        return json.dumps({"format": _FORMAT, "chargers": chargers}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ProfileMirror:
        """Inverse of `to_json`; ProfileError when the text is not such a document."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ProfileError(f"profile mirror is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ProfileError(f"profile mirror format must be {_FORMAT!r}")
        mirror = cls()
        chargers = doc.get("chargers")
        if not isinstance(chargers, dict):
            raise ProfileError("profile mirror: chargers must be an object")
        for cp_id, item in chargers.items():
            try:
                mirror._chargers[cp_id] = _charger_from_dict(item)
            except (ProfileError, KeyError, TypeError, ValueError) as exc:
                raise ProfileError(f"profile mirror: charger {cp_id!r}: {exc}") from None
        return mirror

    # ------------------------------------------------------------ the calls
    def _observe_set(
        self, cp_id: str, payload: Mapping[str, Any], *, certain: bool, running_tx: int | None
    ) -> None:
        try:
            connector_id = _connector(payload)
            profile = profile_from_ocpp(_get(payload, "csChargingProfiles") or {})
            if connector_id is None:
                raise ProfileError("connectorId is required")
        except ProfileError as exc:
            # The charger holds (or may hold) something we cannot read.
            self._mark_unknown(cp_id, _ALL_PURPOSES, certain=certain, why=str(exc))
            return
        notes: list[str] = []

        def install(possible: _Possible) -> _Possible:
            return _install_anyway(possible, connector_id, profile, running_tx, notes)

        self._apply(cp_id, install, certain=certain)
        if notes and certain:
            log.warning(
                "charger accepted a profile our copy would refuse; installed anyway",
                extra={"cp_id": cp_id, "connector_id": connector_id, "error": notes[0]},
            )

    def _observe_clear(self, cp_id: str, payload: Mapping[str, Any], status: str | None) -> None:
        try:
            criteria = _clear_criteria(payload)
        except ProfileError as exc:
            # A clear can raise a limit (the override goes, the default goes): if we cannot
            # tell what it removed, those purposes are unknown.
            self._mark_unknown(cp_id, _ALL_PURPOSES, certain=status is not None, why=str(exc))
            return
        profile_id, connector_id, purpose, stack_level = criteria
        whole = profile_id is None and stack_level is None
        if connector_id is not None:
            # ChargePointMaxProfiles live on connector 0 only (section 3.13.1).
            whole = whole and connector_id == 0 and purpose is _MAX
        # After the clear nothing of these purposes is left, whatever it held before.
        known = (_ALL_PURPOSES if purpose is None else frozenset({purpose})) if whole else None
        relevant = _ALL_PURPOSES if purpose is None else frozenset({purpose})

        def clear(possible: _Possible) -> _Possible:
            store, _ = possible.store.clear(profile_id, connector_id, purpose, stack_level)
            unknown = possible.unknown - known if known is not None else possible.unknown
            return _Possible(store, unknown)

        charger = self._chargers.get(cp_id)
        if status is not None and charger is not None:
            # Keep the possible stores that agree with the answer: Accepted = something
            # matched, Unknown = nothing did. A store with unknown purposes agrees with both.
            matched = status == _ACCEPTED
            agreeing = tuple(
                p
                for p in charger.possible
                if p.unknown & relevant
                or p.store.clear(profile_id, connector_id, purpose, stack_level)[1] == matched
            )
            if agreeing:
                self._chargers[cp_id] = replace(charger, possible=agreeing)
            else:
                log.warning(
                    "charger's answer to a clear contradicts our copy",
                    extra={"cp_id": cp_id, "answer": status},
                )
        self._apply(cp_id, clear, certain=status is not None)

    def _observe_remote_start(
        self, cp_id: str, payload: Mapping[str, Any], *, certain: bool
    ) -> None:
        try:
            connector_id = _connector(payload)
            profile = profile_from_ocpp(_get(payload, "chargingProfile"))
        except ProfileError as exc:
            self._mark_unknown(cp_id, frozenset({_TX}), certain=certain, why=str(exc))
            return
        if connector_id is None:
            # Spec 5.11: the charger picks the connector; the profile waits on one we do
            # not know.
            self._mark_unknown(
                cp_id, frozenset({_TX}), certain=certain, why="no connectorId in the request"
            )
            return
        notes: list[str] = []

        def install(possible: _Possible) -> _Possible:
            if profile.purpose is not _TX:
                # Spec 5.11 allows a TxProfile only; what a charger that accepts another
                # purpose there does with it, nobody can say.
                notes.append(f"a {profile.purpose.value} in RemoteStartTransaction")
                return _Possible(possible.store, possible.unknown | {profile.purpose})
            try:
                store = possible.store.install_remote_start_profile(connector_id, profile)
            except ProfileRejectedError as exc:
                notes.append(str(exc))
                return _install_anyway(possible, connector_id, profile, None, notes)
            return _Possible(store, possible.unknown)

        self._apply(cp_id, install, certain=certain)
        if notes and certain:
            log.warning(
                "charger accepted a remote start profile our copy would refuse",
                extra={"cp_id": cp_id, "connector_id": connector_id, "error": notes[0]},
            )

    # ------------------------------------------------------------ possible stores
    def _apply(
        self, cp_id: str, change: Callable[[_Possible], _Possible], *, certain: bool
    ) -> None:
        """`change` happened (certain) or may have happened: keep both outcomes."""
        charger = self._chargers.get(cp_id) or _Charger(None, (_UNKNOWN,))
        changed = [change(p) for p in charger.possible]
        candidates = changed if certain else [*changed, *charger.possible]
        possible: list[_Possible] = []
        for candidate in (_canonical(p) for p in candidates):
            if candidate not in possible:
                possible.append(candidate)
        if len(possible) > MAX_POSSIBLE_STORES:
            log.warning(
                "too many unanswered profile calls: the charger's profiles are unknown",
                extra={"cp_id": cp_id, "possible": len(possible)},
            )
            possible = [_UNKNOWN]
        self._chargers[cp_id] = replace(charger, possible=tuple(possible))

    def _update(self, cp_id: str, change: Callable[[ProfileStore], ProfileStore]) -> None:
        """Something that happened on the charger for certain (a transaction stopped)."""
        if cp_id in self._chargers:
            self._apply(cp_id, lambda p: _Possible(change(p.store), p.unknown), certain=True)

    def _mark_unknown(
        self,
        cp_id: str,
        purposes: frozenset[ChargingProfilePurpose],
        *,
        certain: bool,
        why: str,
    ) -> None:
        log.warning(
            "charger may hold profiles we cannot read",
            extra={"cp_id": cp_id, "purposes": sorted(p.value for p in purposes), "error": why},
        )
        self._apply(cp_id, lambda p: _Possible(p.store, p.unknown | purposes), certain=certain)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _install_anyway(
    possible: _Possible,
    connector_id: int,
    profile: ChargingProfile,
    running_tx: int | None,
    notes: list[str],
) -> _Possible:
    """Install as the charger did, even where our copy would refuse."""
    store = possible.store
    try:
        return _Possible(
            store.install(connector_id, profile, transaction_id=running_tx), possible.unknown
        )
    except ProfileRejectedError as exc:
        notes.append(str(exc))
    if profile.purpose is _TX and connector_id > 0:
        # The charger runs a transaction we do not know of (started offline, its
        # StartTransaction still queued, section 3.7): the profile is for that one.
        try:
            if profile.transaction_id is None:
                store = store.install_remote_start_profile(connector_id, profile)
            else:
                store = store.install(connector_id, profile, transaction_id=profile.transaction_id)
            return _Possible(store, possible.unknown)
        except ProfileRejectedError as exc:
            notes.append(str(exc))
    # A profile we cannot place (a ChargePointMaxProfile on connector 1, a TxProfile on
    # connector 0): what the charger does with it is unknown, so is its purpose.
    return _Possible(store, possible.unknown | {profile.purpose})


def _get(payload: Mapping[str, Any], camel: str) -> Any:
    """A field by its OCPP camelCase name or the `ocpp` library's snake_case one."""
    if camel in payload:
        return payload[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return payload.get(snake)


def _optional_int(payload: Mapping[str, Any], camel: str) -> int | None:
    value = _get(payload, camel)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(f"{camel} must be an integer, got {value!r}")
    return value


def _connector(payload: Mapping[str, Any]) -> int | None:
    connector_id = _optional_int(payload, "connectorId")
    if connector_id is not None and connector_id < 0:
        raise ProfileError(f"connectorId must be >= 0, got {connector_id}")
    return connector_id


def _clear_criteria(
    payload: Mapping[str, Any],
) -> tuple[int | None, int | None, ChargingProfilePurpose | None, int | None]:
    """ClearChargingProfile.req fields (spec 6.13): id, connectorId, purpose, stackLevel."""
    purpose_text = _get(payload, "chargingProfilePurpose")
    try:
        purpose = None if purpose_text is None else ChargingProfilePurpose(purpose_text)
    except ValueError:
        raise ProfileError(f"chargingProfilePurpose {purpose_text!r} is unknown") from None
    return (
        _optional_int(payload, "id"),
        _connector(payload),
        purpose,
        _optional_int(payload, "stackLevel"),
    )


def _identity_text(identity: ChargerIdentity) -> str:
    return "/".join(str(part) for part in (identity.vendor, identity.model, identity.serial_number))


def _charger_from_dict(item: Mapping[str, Any]) -> _Charger:
    raw_identity = item["identity"]
    identity = (
        None
        if raw_identity is None
        else ChargerIdentity(
            raw_identity.get("vendor"), raw_identity.get("model"), raw_identity.get("serial_number")
        )
    )
    possible = tuple(
        _Possible(
            ProfileStore.from_dict(p["store"]),
            frozenset(ChargingProfilePurpose(u) for u in p["unknown"]),
        )
        for p in _list(item["possible"])
    )
    if not possible:
        raise ProfileError("possible must hold at least one store")
    return _Charger(identity, possible)


def _list(value: Any) -> Iterable[Any]:
    if not isinstance(value, list):
        raise ProfileError(f"expected a list, got {type(value).__name__}")
    return value
