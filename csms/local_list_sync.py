"""Keeps every charger's Local Authorization List equal to the store's id tags.

Part of `csms serve`. Every ``poll_s`` (2 real seconds) it compares, for each connected
and accepted charger not known to lack a list, the list it should hold
(`csms.local_list.desired_entries`: every id tag, blocked and expired ones with that
status) with our copy of what it holds, and sends the difference (`plan_update`): a
tag added, blocked, unblocked or removed with `csms idtag`, the monitor or the API
reaches the chargers within a poll, in a Differential update with the next version.

After each BootNotification it asks GetLocalListVersion first: a charger that answers
NotSupported / NotImplemented (or -1, list disabled) is left alone; one that reports a
version other than ours gets a Full update. One that gives no usable answer (silence, an
invalid answer, another CALLERROR) is asked again after ``VERSION_RETRY_S`` or when it
connects again, not every poll. A Full update the charger refuses is not
sent again until the tags change or the charger boots again (no loop every poll).

Its calls go straight through `CentralSystem.call`, like the controller's; their answers
are recorded like the outbox's (`csms.answers`). A SendLocalList queued by hand (`csms
locallist push`) is let through first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from datetime import datetime
from typing import Any

from csms.answers import record_answer
from csms.clock import Clock
from csms.errors import CallFailedError, GarageGridError
from csms.events import ChargePointBooted, ChargePointDisconnected, EventBus
from csms.local_list import (
    ListEntry,
    ListUpdate,
    UpdateType,
    desired_entries,
    plan_update,
    split_update,
)
from csms.ocpp16.server import CentralSystem
from csms.store.features import FeatureStore, LocalListState
from csms.store.repository import Repository

log = logging.getLogger("csms.local_list")

POLL_S = 2.0
# Spec 9.2: the most entries one SendLocalList.req may carry.
MAX_ITEMS_KEY = "SendLocalListMaxLength"
# Every this many real seconds, every charger's copy is compared again even if the tags
# did not change.
RECHECK_S = 60.0
# A boot brings a round at once, but not sooner than this after the last one began.
BOOT_ROUND_GAP_S = 0.5
# A charger whose GetLocalListVersion brought no usable answer (timeout, an invalid answer,
# a CALLERROR other than NotSupported/NotImplemented) is asked again after this many real
# seconds, or when it connects again; not every poll (5,000 such chargers were asked
# every 2 s).
VERSION_RETRY_S = 60.0


class LocalListSync:
    def __init__(
        self,
        repository: Repository,
        central: CentralSystem,
        events: EventBus,
        clock: Clock,
        *,
        poll_s: float = POLL_S,
    ) -> None:
        self._repo = repository
        self._features = FeatureStore(repository)
        self._central = central
        self._clock = clock
        self._poll_s = poll_s
        # Boots and disconnections only: not woken by every MeterValues of the fleet.
        self._queue = events.subscribe(ChargePointBooted, ChargePointDisconnected)
        # Chargers that booted since their list version was last asked for.
        self._to_check: set[str] = set()
        # Charger -> the update it refused last time (not sent again as it is).
        self._refused: dict[str, str] = {}
        # Chargers asked on their current connection: a boot event that the round which
        # asked had not seen yet does not ask again.
        self._asked: set[str] = set()
        # Charger -> the list (fingerprint) it holds for certain: a round in which the
        # tags did not change reads no copies, except every RECHECK_S (an update sent by
        # hand, a refused one).
        self._settled: dict[str, str] = {}
        # Charger -> its SendLocalListMaxLength (spec 9.2), read with its version.
        self._max_items: dict[str, int] = {}
        self._checked_all_at = -math.inf
        # Charger -> when its version was asked without a usable answer (monotonic).
        self._unanswered: dict[str, float] = {}
        # The tags as last read (monotonic time, each charger's site, each site's list and
        # its fingerprint), reused while nothing they depend on changed.
        self._read: tuple[float, dict[str, int], dict[int, dict[str, ListEntry]], dict[int, str]]
        self._read = (-math.inf, {}, {}, {})
        # What they were read from (FeatureStore.local_list_digest), and when the first
        # tag expires after that read (its entry then says Expired).
        self._digest: tuple[str | None, str | None] | None = None
        self._next_expiry: datetime | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drain_events()
            started = loop.time()
            try:
                await self.sync_once()
            except GarageGridError:
                log.exception("local list sync failed; trying again")
            # The next round after the poll, or at once when a charger boots (its version
            # is asked); a disconnection is only noted.
            deadline = loop.time() + self._poll_s
            while (remaining := deadline - loop.time()) > 0:
                try:
                    async with asyncio.timeout(remaining):
                        event = await self._queue.get()
                except TimeoutError:
                    break
                self._on_event(event)
                if isinstance(event, ChargePointBooted):
                    # In a mass boot, one round for the boots of the last half second.
                    gap = started + BOOT_ROUND_GAP_S - loop.time()
                    if gap > 0:
                        await asyncio.sleep(gap)
                    break

    def _drain_events(self) -> None:
        while not self._queue.empty():
            self._on_event(self._queue.get_nowait())

    def _on_event(self, event: object) -> None:
        if isinstance(event, ChargePointBooted):
            if event.charge_point_id not in self._asked:
                self._to_check.add(event.charge_point_id)
            self._refused.pop(event.charge_point_id, None)
            self._settled.pop(event.charge_point_id, None)
        elif isinstance(event, ChargePointDisconnected):
            self._to_check.discard(event.charge_point_id)
            self._asked.discard(event.charge_point_id)
            self._settled.pop(event.charge_point_id, None)
            self._unanswered.pop(event.charge_point_id, None)

    async def sync_once(self) -> None:
        """One round: every connected, accepted charger gets what changed."""
        site_of, desired, fingerprints = await self._desired()
        # Accepted chargers only (section 4.2).
        accepted = [
            c
            for c in self._central.connected_ids()
            if c in site_of and self._central.is_accepted(c)
        ]
        recheck = time.monotonic() - self._checked_all_at >= RECHECK_S
        if recheck:
            self._checked_all_at = time.monotonic()
        due = [c for c in accepted if recheck or self._settled.get(c) != fingerprints[site_of[c]]]
        if self._unanswered:
            now_s = time.monotonic()
            for cp_id, at in list(self._unanswered.items()):
                if now_s - at >= VERSION_RETRY_S:
                    del self._unanswered[cp_id]
            due = [c for c in due if c not in self._unanswered]
        if not due:
            return
        copies = await self._features.local_list_copies(due)
        due = [c for c in due if c in copies]  # not known to keep no list
        # Each charger in its own task: a silent one does not hold up the others.
        holds = await asyncio.gather(*(self._sync(c, copies[c], desired[site_of[c]]) for c in due))
        for cp_id, held in zip(due, holds, strict=True):
            if held:
                self._settled[cp_id] = fingerprints[site_of[cp_id]]
            else:
                self._settled.pop(cp_id, None)

    async def _desired(
        self,
    ) -> tuple[dict[str, int], dict[int, dict[str, ListEntry]], dict[int, str]]:
        """Each charger's site, each site's list and its fingerprint: read again only when
        the tags or the chargers' sites changed, or a tag expired (every tag of every site
        into Python objects each round took a fifth of a second at 5,000 tags)."""
        _, site_of, desired, fingerprints = self._read
        digest = await self._features.local_list_digest()
        now = self._clock.now()
        if (
            digest == self._digest
            and (self._next_expiry is None or now < self._next_expiry)
            and fingerprints
        ):
            return site_of, desired, fingerprints
        read_at = time.monotonic()
        tags = await self._features.id_tags()
        site_of = await self._repo.charge_point_sites()
        now = self._clock.now()
        self._digest = digest
        self._next_expiry = min(
            (t["expires_at"] for t in tags if t["expires_at"] and t["expires_at"] > now),
            default=None,
        )
        # Each site's chargers hold that site's tags only.
        by_site: dict[int, list[dict[str, Any]]] = {site_id: [] for site_id in site_of.values()}
        for tag in tags:
            by_site.setdefault(tag["site_id"], []).append(tag)
        desired = {site_id: desired_entries(rows, now) for site_id, rows in by_site.items()}
        fingerprints = {
            site_id: json.dumps([e.to_ocpp() for _, e in sorted(entries.items())])
            for site_id, entries in desired.items()
        }
        self._read = (read_at, site_of, desired, fingerprints)
        return site_of, desired, fingerprints

    async def _sync(self, cp_id: str, state: LocalListState, desired: dict[str, ListEntry]) -> bool:
        """Bring one charger's list up to date; whether it now holds ``desired``."""
        if cp_id in self._to_check or state.supported is None:
            self._to_check.discard(cp_id)
            checked = await self._ask_version(cp_id)
            if checked is None:
                return False
            if checked.supported is None:
                # No usable answer: asked again later (VERSION_RETRY_S) or when it reconnects.
                self._unanswered[cp_id] = time.monotonic()
                return False
            state = checked
        update = plan_update(desired, state.entries if state.in_sync else None, state.version)
        if update is None:
            return True
        return await self._send_update(cp_id, update)

    async def _send_update(self, cp_id: str, update: ListUpdate) -> bool:
        payload = update.to_ocpp()
        fingerprint = json.dumps(
            {"type": payload["updateType"], "list": payload["localAuthorizationList"]},
            sort_keys=True,
        )
        if self._refused.get(cp_id) == fingerprint:
            return False
        if await self._features.has_open_command(cp_id, "SendLocalList"):
            return False
        status = None
        for part in split_update(update, self._max_items.get(cp_id)):
            status = await self._send(cp_id, "SendLocalList", part.to_ocpp())
            if status != "Accepted":
                break
        if status != "Accepted" and update.update_type is UpdateType.full:
            self._refused[cp_id] = fingerprint
        elif status == "Accepted":
            self._refused.pop(cp_id, None)
        return status == "Accepted"

    async def _ask_version(self, cp_id: str) -> LocalListState | None:
        self._asked.add(cp_id)
        await self._send(cp_id, "GetLocalListVersion", {})
        state = await self._features.local_list(cp_id)
        if state.supported is False:
            return None
        if state.supported is None:
            return state  # not answered (usably): the caller waits before asking again
        limit = await self._read_max_items(cp_id)
        if limit is None:
            self._max_items.pop(cp_id, None)
        else:
            self._max_items[cp_id] = limit
        return state

    async def _read_max_items(self, cp_id: str) -> int | None:
        """SendLocalListMaxLength, or None when the charger does not say."""
        try:
            answer = await self._central.call(cp_id, "GetConfiguration", {"key": [MAX_ITEMS_KEY]})
        except GarageGridError:
            return None
        for item in answer.get("configurationKey") or []:
            if str(item.get("key", "")).lower() == MAX_ITEMS_KEY.lower():
                value = str(item.get("value", "")).strip()
                return int(value) if value.isdigit() and int(value) > 0 else None
        return None

    async def _send(self, cp_id: str, action: str, payload: dict[str, object]) -> str | None:
        answer = None
        code = None
        try:
            answer = await self._central.call(cp_id, action, dict(payload))
        except CallFailedError as exc:
            code = exc.code
            log.warning(
                "local list call failed",
                extra={"cp_id": cp_id, "action": action, "error": str(exc)},
            )
        except GarageGridError as exc:
            log.info(
                "local list call not sent",
                extra={"cp_id": cp_id, "action": action, "error": str(exc)},
            )
            return None
        await record_answer(self._features, cp_id, action, dict(payload), answer, error_code=code)
        return None if answer is None else str(answer.get("status", "Accepted"))
