"""Live control over real sockets, against chargers that follow OCPP 1.6 to the letter.

`SpecCharger` installs what it is sent with `csms.profiles` (it rejects a TxProfile for a
transaction it does not know, a rate unit it does not take), queues its transaction
messages while the link is down and replays them in order (§3.7), and can lose answers.
Each test drives one finding of the live-control issue through `csms serve`'s real
controller; the oracle is the chargers' own installed profiles, never the controller's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from csms.app import CsmsApp
from csms.controller.mirror import ProfileMirror
from csms.monitor import actions
from csms.profiles import (
    ChargingProfilePurpose,
    ChargingRateUnit,
    ProfileRejectedError,
    ProfileStore,
    default_profile,
    limit_at,
    profile_from_ocpp,
)
from csms.store.repository import Repository
from tests.conftest import T0, start_app, wait_for, ws_url
from tests.ocpp_client import RawChargePoint

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
SPEED = 30.0  # a simulated minute (the calm hold time) passes in 2 real seconds


class SpecCharger:
    """One connector, one car at a time, profiles as the spec says."""

    def __init__(
        self,
        cp_id: str,
        max_a: float,
        *,
        units: frozenset[ChargingRateUnit] = frozenset(ChargingRateUnit),
        configuration: dict[str, str] | None = None,
    ) -> None:
        self.cp_id = cp_id
        self.max_a = max_a
        self.store = ProfileStore(allowed_rate_units=units)
        self.transaction: int | None = None  # the transaction the charger knows it runs
        self.configuration = configuration or {}
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.clears: list[dict[str, Any]] = []  # ClearChargingProfile.req payloads
        self.hang: Callable[[dict[str, Any]], bool] = lambda payload: False
        self.cp: RawChargePoint | None = None
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.cars = 0

    async def connect(self, app: CsmsApp) -> RawChargePoint:
        cp = await RawChargePoint.connect(ws_url(app, self.cp_id))
        cp.handlers["SetChargingProfile"] = self._on_set
        cp.handlers["GetConfiguration"] = self._on_get_configuration
        cp.handlers["ClearChargingProfile"] = self._on_clear
        self.cp = cp
        return cp

    async def _on_set(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.hang(payload):
            await asyncio.sleep(3600)  # never answers: the CSMS times out
        profile = profile_from_ocpp(payload["csChargingProfiles"])
        try:
            self.store = self.store.install(
                payload["connectorId"], profile, transaction_id=self.transaction
            )
            status = "Accepted"
        except ProfileRejectedError:
            status = "Rejected"
        self.calls.append((profile.purpose.value, payload, status))
        return {"status": status}

    def _on_clear(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.clears.append(payload)
        purpose = payload.get("chargingProfilePurpose")
        self.store, cleared = self.store.clear(
            id=payload.get("id"),
            connector_id=payload.get("connectorId"),
            purpose=None if purpose is None else ChargingProfilePurpose(purpose),
            stack_level=payload.get("stackLevel"),
        )
        return {"status": "Accepted" if cleared else "Unknown"}

    def _on_get_configuration(self, payload: dict[str, Any]) -> dict[str, Any]:
        asked = payload.get("key") or list(self.configuration)
        known = [k for k in asked if k in self.configuration]
        return {
            "configurationKey": [
                {"key": k, "readonly": True, "value": self.configuration[k]} for k in known
            ],
            "unknownKey": [k for k in asked if k not in self.configuration],
        }

    def may_draw_a(self) -> float:
        """What the car may draw now, or the next car right after it: the worst case."""
        now = T0  # single-period relative profiles: the instant does not matter

        def amps(transaction: int | None, store: ProfileStore) -> float:
            limit = limit_at(
                store,
                1,
                now,
                transaction_id=transaction,
                transaction_start=now if transaction is None else None,
            )
            return self.max_a if limit is None else min(self.max_a, limit.current_a)

        after = amps(None, self.store.end_transaction(1))
        if self.transaction is None:
            return after
        return max(amps(self.transaction, self.store), after)

    def tx_limits(self, status: str = "Accepted") -> list[float]:
        return [
            p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            for purpose, p, s in self.calls
            if purpose == ChargingProfilePurpose.TxProfile.value and s == status
        ]

    async def start(self, tag: str, *, forget_answer: bool = False) -> int | None:
        assert self.cp is not None
        self.cars += 1  # each car its own start: a resend has the same content (§3.7)
        payload = {
            "connectorId": 1,
            "idTag": tag,
            "meterStart": 1000 * self.cars,
            "timestamp": (T0 + timedelta(minutes=self.cars)).isoformat().replace("+00:00", "Z"),
        }
        if forget_answer:
            # The charger timed out waiting (a stalled CSMS): it does not know the id and
            # will send the same StartTransaction again.
            await self.cp.ws.send(json.dumps([2, "lost-start", "StartTransaction", payload]))
            self.queue.append(("StartTransaction", payload))
            return None
        answer = await self.cp.ok("StartTransaction", payload)
        self.transaction = int(answer["transactionId"])
        return self.transaction

    async def replay(self) -> None:
        """Send what was queued, in order (§3.7)."""
        assert self.cp is not None
        while self.queue:
            action, payload = self.queue.pop(0)
            answer = await self.cp.ok(action, payload)
            if action == "StartTransaction":
                self.transaction = int(answer["transactionId"])
            await asyncio.sleep(0.15)

    def car_leaves_offline(self, meter_stop: int = 5000) -> None:
        """The car leaves while the link is down: the charger ends the transaction at once
        (its TxProfiles go with it) and queues the messages that tell the CSMS."""
        assert self.transaction is not None
        stamp = T0.isoformat().replace("+00:00", "Z")
        self.queue += [
            (
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Finishing"},
            ),
            (
                "StopTransaction",
                {"transactionId": self.transaction, "meterStop": meter_stop, "timestamp": stamp},
            ),
        ]
        self.store = self.store.end_transaction(1)
        self.transaction = None


async def garage(
    db_url: str, fuse_a: float, chargers: list[SpecCharger], **app_options: Any
) -> CsmsApp:
    app = await start_app(db_url, controller=True, speed=SPEED, **app_options)
    await app.repository.update_site(fuse_limit_a=fuse_a, margin_a=0.0, strategy="llf", tick_s=2)
    for charger in chargers:
        await app.repository.add_charge_point(charger.cp_id, max_current_a=charger.max_a)
        await app.repository.add_id_tag(f"TAG-{charger.cp_id}")
    for charger in chargers:
        cp = await charger.connect(app)
        await cp.boot(BOOT)
    return app


async def close(app: CsmsApp, chargers: list[SpecCharger]) -> None:
    for charger in chargers:
        if charger.cp is not None:
            await charger.cp.close()
    await app.stop()


# ------------------------------------------------------------------ findings 9 (a), (b)
async def test_a_profile_for_a_transaction_that_ended_offline_is_no_alarm(db_url: str) -> None:
    """Finding 9(a): after an outage a charger replays its queue. The TxProfile for its
    transaction goes out after its StatusNotification Finishing but before its queued
    StopTransaction arrives, and the charger rightly rejects it. That is no reason to
    count a healthy charger at its maximum: its next car charges at full power."""
    a, b = SpecCharger("A", 32.0), SpecCharger("B", 32.0)
    app = await garage(db_url, 40.0, [a, b])
    try:
        tx_a = await a.start("TAG-A")
        assert tx_a is not None
        # A's resident leaves in two days: B charges first, A gets what is left.
        await app.repository.set_session_input(tx_a, departure_at=T0 + timedelta(days=2))
        await b.start("TAG-B")
        await wait_for(lambda: bool(b.tx_limits()) and b.tx_limits()[-1] == 32.0)
        await wait_for(lambda: bool(a.tx_limits()) and a.tx_limits()[-1] < 32.0)
        assert a.cp is not None
        await a.cp.close()
        a.car_leaves_offline()
        await asyncio.sleep(2.5)  # more than a simulated minute: A's limit may change
        assert b.cp is not None
        assert b.transaction is not None
        await b.cp.ok(
            "StopTransaction",
            {"transactionId": b.transaction, "meterStop": 100, "timestamp": "2026-01-05T16:30Z"},
        )
        b.transaction = None
        await asyncio.sleep(0.5)
        await a.connect(app)
        await a.replay()
        await wait_for(lambda: bool(a.tx_limits("Rejected")), within_s=5)
        station = await app.repository.get_charge_point("A")
        assert station is not None and not station.unmanaged, station.unmanaged_reason
        # The next car on A gets its own limit, above the 6 A a charger at its maximum
        # reserved would leave it.
        before = len(a.tx_limits())
        await a.start("TAG-A")
        await wait_for(lambda: len(a.tx_limits()) > before and a.tx_limits()[-1] > 6.0)
        assert a.tx_limits()[-1] >= 32.0 - 6.0  # B's idle connector holds at most 6 A
    finally:
        await close(app, [a, b])


async def test_a_profile_for_a_transaction_the_charger_does_not_know_yet_is_retried(
    db_url: str,
) -> None:
    """Finding 9(b): after a stall the charger timed out its StartTransaction; the CSMS
    sends a TxProfile for an id the charger does not know yet (Rejected), and the resent
    StartTransaction gets that same id. The limit then goes out again and is accepted."""
    a = SpecCharger("A", 32.0)
    app = await garage(db_url, 40.0, [a])
    try:
        await a.start("TAG-A", forget_answer=True)
        await wait_for(lambda: bool(a.tx_limits("Rejected")))
        await a.replay()  # the same StartTransaction again: the charger learns the id
        await wait_for(lambda: bool(a.tx_limits()))
        assert a.tx_limits()[-1] >= 32.0
        station = await app.repository.get_charge_point("A")
        assert station is not None and not station.unmanaged, station.unmanaged_reason
    finally:
        await close(app, [a])


async def test_a_charger_that_keeps_rejecting_a_running_transaction_is_unmanaged(
    db_url: str,
) -> None:
    """Rejections that the charger cannot explain (it confirms the transaction with its
    meter values, and rejects again) do mark it, with the reason, after three."""
    a = SpecCharger("A", 16.0)
    app = await garage(db_url, 40.0, [a])
    try:
        tx = await a.start("TAG-A")
        original = a._on_set

        async def reject_tx_profiles(payload: dict[str, Any]) -> dict[str, Any]:
            if payload["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile":
                a.calls.append(("TxProfile", payload, "Rejected"))
                return {"status": "Rejected"}
            return await original(payload)

        assert a.cp is not None
        a.cp.handlers["SetChargingProfile"] = reject_tx_profiles
        await wait_for(lambda: bool(a.tx_limits("Rejected")))
        for n in range(8):
            seen = len(a.tx_limits("Rejected"))
            # The charger's meter values confirm it runs the transaction: a held limit is
            # tried again, and rejected again.
            await a.cp.ok(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": tx,
                    "meterValue": [
                        {
                            "timestamp": f"2026-01-05T16:0{n}:00Z",
                            "sampledValue": [{"value": "6", "measurand": "Current.Import"}],
                        }
                    ],
                },
            )
            await wait_for(lambda seen=seen: len(a.tx_limits("Rejected")) > seen)
            await asyncio.sleep(0.2)
            station = await app.repository.get_charge_point("A")
            if station is not None and station.unmanaged:
                break
        station = await app.repository.get_charge_point("A")
        assert station is not None and station.unmanaged
        assert "rejected its limit 3 times" in (station.unmanaged_reason or "")
    finally:
        await close(app, [a])


# --------------------------------------------------------------------------- finding 6
async def test_a_default_lowering_without_answer_holds_back_the_raise(db_url: str) -> None:
    """Finding 6 with finding 2: one car on A (32 A) and two idle chargers B and C on a
    30 A fuse. The idle defaults drop to 0 A so A can take the whole fuse (no idle amp),
    but B does not answer its lowering: A is not raised beyond what fits beside B's 6 A
    until B has accepted, and at no instant do the chargers' worst cases exceed 30 A."""
    a, b, c = SpecCharger("A", 32.0), SpecCharger("B", 16.0), SpecCharger("C", 16.0)
    app = await garage(db_url, 30.0, [a, b, c], response_timeout_s=1.0)
    chargers = [a, b, c]
    worst: list[float] = []
    try:
        b.hang = lambda payload: (
            payload["csChargingProfiles"]["chargingProfilePurpose"] == "TxDefaultProfile"
            and payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
                "limit"
            ]
            == 0
            and len(worst) < 40  # answers again after a while
        )
        sampling = True

        async def sample() -> None:
            while sampling:
                worst.append(sum(ch.may_draw_a() for ch in chargers))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        await a.start("TAG-A")
        await wait_for(lambda: bool(a.tx_limits()) and a.tx_limits()[-1] >= 29.0, within_s=15)
        sampling = False
        await sampler
        assert max(worst) <= 30.0 + 1e-9, max(worst)
    finally:
        await close(app, chargers)


# -------------------------------------------------------------------------- finding 12
async def test_the_fail_safe_profiles_are_sent_once_per_boot(db_url: str) -> None:
    a = SpecCharger("A", 16.0)
    app = await garage(db_url, 40.0, [a])
    try:
        await asyncio.sleep(0.5)
        purposes = [purpose for purpose, _payload, _status in a.calls]
        assert sorted(purposes) == ["ChargePointMaxProfile", "TxDefaultProfile"]
    finally:
        await close(app, [a])


# -------------------------------------------------------------------------- finding 11
async def test_a_charger_that_takes_only_watts_is_read_and_managed(db_url: str) -> None:
    """Finding 11: registered without --rate-unit, a charger whose configuration says it
    takes Power only gets its profiles in W, and stays managed."""
    w = SpecCharger(
        "W",
        16.0,
        units=frozenset({ChargingRateUnit.W}),
        configuration={
            "ChargingScheduleAllowedChargingRateUnit": "Power",
            "ChargeProfileMaxStackLevel": "5",
        },
    )
    app = await garage(db_url, 40.0, [w])
    try:
        await w.start("TAG-W")
        await wait_for(lambda: bool(w.tx_limits()))
        station = await app.repository.get_charge_point("W")
        assert station is not None
        assert (station.rate_unit, station.unmanaged) == ("W", False)
        assert all(status == "Accepted" for _p, _payload, status in w.calls)
        # 16 A on three phases at 230 V.
        assert w.tx_limits()[-1] == 16 * 230 * 3
    finally:
        await close(app, [w])


# ---------------------------------------------------------------------- findings 1, 2
async def test_two_cars_left_of_four_hold_the_fuse_and_their_limits_stay_calm(
    db_url: str,
) -> None:
    """Findings 1 and 2: four chargers behind a 40 A fuse, tick 2 s, no resident input.
    After two cars leave, the two remaining ones share the fuse (the idle connectors do
    not keep 12 A reserved) and, once settled, their limits do not change at all."""
    chargers = [SpecCharger(f"C{n}", 32.0) for n in range(1, 5)]
    app = await garage(db_url, 40.0, chargers)
    try:
        for charger in chargers:
            await charger.start(f"TAG-{charger.cp_id}")
        await wait_for(lambda: all(ch.tx_limits() for ch in chargers))
        for charger in chargers[:2]:
            assert charger.cp is not None and charger.transaction is not None
            await charger.cp.ok(
                "StopTransaction",
                {
                    "transactionId": charger.transaction,
                    "meterStop": 100,
                    "timestamp": "2026-01-05T16:10:00Z",
                },
            )
            charger.transaction = None
            charger.store = charger.store.end_transaction(1)
        staying = chargers[2:]
        await wait_for(
            lambda: sum(ch.tx_limits()[-1] for ch in staying) >= 0.75 * 40.0, within_s=10
        )
        await asyncio.sleep(2.5)  # let the last hold time pass
        sent = [len(ch.tx_limits()) for ch in staying]
        await asyncio.sleep(3.0)  # 90 simulated seconds, 45 ticks of a steady state
        assert [len(ch.tx_limits()) for ch in staying] == sent
        assert sum(ch.may_draw_a() for ch in chargers) <= 40.0 + 1e-9
    finally:
        await close(app, chargers)


# --------------------------------------------------------------------------- finding 4
async def test_a_managers_override_is_counted_and_planned_around(db_url: str) -> None:
    """Finding 4: the monitor's override (a stack-level-8 TxProfile through the outbox)
    was invisible to planning. Now the controller counts A at its override and gives the
    rest of the fuse to B at once; when the override is cleared, A is planned again. At
    no instant do the chargers' worst cases exceed the fuse."""
    a, b = SpecCharger("A", 32.0), SpecCharger("B", 32.0)
    app = await garage(db_url, 40.0, [a, b])
    worst: list[float] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            worst.append(a.may_draw_a() + b.may_draw_a())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        tx_a = await a.start("TAG-A")
        assert tx_a is not None
        await b.start("TAG-B")
        await wait_for(lambda: bool(a.tx_limits()) and bool(b.tx_limits()))
        await asyncio.sleep(2.5)  # past the hold time
        action, payload = actions.set_limit(1, tx_a, 10.0, max_current_a=32.0)
        await app.repository.enqueue_command("A", action, payload, requested_by="monitor")
        await wait_for(lambda: a.may_draw_a() == 10.0)
        # B gets what A's override leaves: 40 - 10 = 30 A.
        await wait_for(lambda: b.tx_limits()[-1] == 30.0, within_s=8)
        action, payload = actions.resume(1)
        await app.repository.enqueue_command("A", action, payload, requested_by="monitor")
        await wait_for(lambda: a.may_draw_a() > 10.0, within_s=8)
    finally:
        sampling = False
        await sampler
        await close(app, [a, b])
    assert max(worst) <= 40.0 + 1e-9, max(worst)


# -------------------------------------------------------------------------- finding 13
def meter_values(tx: int, at: str, amps: float) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [
            {
                "timestamp": at,
                "sampledValue": [
                    {
                        "value": f"{amps:g}",
                        "measurand": "Current.Import",
                        "phase": phase,
                        "unit": "A",
                    }
                    for phase in ("L1", "L2", "L3")
                ],
            }
        ],
    }


async def test_a_charger_that_draws_above_its_limit_three_times_is_unmanaged(
    db_url: str,
) -> None:
    """The three-sample strike: a car measured clearly above the limit its charger accepted,
    after the settle time, three samples in a row, is counted at its maximum, with why."""
    a, b = SpecCharger("A", 32.0), SpecCharger("B", 32.0)
    app = await garage(db_url, 40.0, [a, b])
    try:
        tx = await a.start("TAG-A")
        assert tx is not None
        await b.start("TAG-B")
        await wait_for(lambda: bool(a.tx_limits()) and bool(b.tx_limits()))
        limit = min(a.tx_limits()[-1], b.tx_limits()[-1])
        cheat = a if a.tx_limits()[-1] == limit else b
        assert cheat.cp is not None and cheat.transaction is not None
        start = app.clock.now()
        for n in range(1, 4):
            stamp = (start + timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
            await cheat.cp.ok("MeterValues", meter_values(cheat.transaction, stamp, limit + 8))
        station = None
        for _ in range(40):
            station = await app.repository.get_charge_point(cheat.cp_id)
            if station is not None and station.unmanaged:
                break
            await asyncio.sleep(0.05)
        assert station is not None and station.unmanaged
        assert "draws" in (station.unmanaged_reason or "")
    finally:
        await close(app, [a, b])


async def test_after_a_restart_the_limits_and_profiles_in_force_are_known(db_url: str) -> None:
    """A restarted CSMS restores what each charger accepted (limits and its copy of their
    profiles, from the store): an unchanged limit is not sent again, and a charger it knows
    is not cleared at its next boot."""
    a = SpecCharger("A", 16.0)
    app = await garage(db_url, 40.0, [a])
    try:
        await a.start("TAG-A")
        await wait_for(lambda: bool(a.tx_limits()))
        sent_before = len(a.calls)
        assert a.cp is not None
        await a.cp.close()
        await app.stop()
        app = await start_app(db_url, controller=True, speed=SPEED)
        cp = await a.connect(app)
        clears_before = len(a.clears)
        await cp.boot(BOOT)
        await asyncio.sleep(1.5)
        assert a.clears[clears_before:] == []  # its profiles are known: nothing to clear
        tx_profiles_after = [c for c in a.calls[sent_before:] if c[0] == "TxProfile"]
        assert tx_profiles_after == []  # 16 A is still in force: not sent again
    finally:
        await close(app, [a])


async def test_a_charger_back_without_a_boot_and_with_unknown_profiles_is_cleared_first(
    db_url: str,
) -> None:
    """A charger that reconnects without a BootNotification (many do after a link loss)
    to a CSMS that knows nothing of its profiles (the copy lost) is never handed our
    defaults over what it may hold: it is cleared first, as at a boot. Here it carries
    another central system's TxDefaultProfile of 32 A at stack level 5, which outweighs
    ours; kept, it would let the next car draw the charger's maximum."""
    a = SpecCharger("A", 16.0)
    app = await garage(db_url, 40.0, [a])
    try:
        await wait_for(lambda: any(c[0] == "TxDefaultProfile" for c in a.calls))
        assert a.cp is not None
        await a.cp.close()
        await app.repository.save_installed_profiles("A", None)  # the copy is lost
        await app.stop()
        foreign = default_profile(
            ChargingProfilePurpose.TxDefaultProfile, 32.0, profile_id=77, stack_level=5
        )
        a.store = a.store.install(0, foreign)
        assert a.may_draw_a() == 16.0
        sent_before = len(a.calls)

        app = await start_app(db_url, controller=True, speed=SPEED)
        cp = await a.connect(app)
        clears_before = len(a.clears)
        await cp.ok("Heartbeat", {})  # back, no BootNotification
        await wait_for(lambda: any(c[0] == "TxDefaultProfile" for c in a.calls[sent_before:]))
        assert a.clears[clears_before:] == [{}]
        assert all(e.profile.profile_id != 77 for e in a.store.entries)
        assert a.may_draw_a() == 6.0  # our default for the next car
    finally:
        await close(app, [a])


def _watch_answers(
    cp: RawChargePoint,
    charger: SpecCharger,
    garage_chargers: list[SpecCharger],
    worst: list[float],
    events: list[tuple[str, str, float]],
) -> None:
    """After every profile call the charger answers: what all of the garage's chargers
    together may draw goes to ``worst``, (charger, action, what it may draw) to ``events``."""
    for action in ("SetChargingProfile", "ClearChargingProfile"):
        original = cp.handlers[action]

        async def watched(
            payload: dict[str, Any], original: Any = original, action: str = action
        ) -> Any:
            answer = original(payload)
            if asyncio.iscoroutine(answer):
                answer = await answer
            worst.append(sum(c.may_draw_a() for c in garage_chargers))
            events.append((charger.cp_id, action, charger.may_draw_a()))
            return answer

        cp.handlers[action] = watched


async def _restart_without_the_copy_of_a(
    db_url: str,
    app: CsmsApp,
    a: SpecCharger,
    b: SpecCharger,
    worst: list[float],
    *,
    before_start: Callable[[], None] = lambda: None,
    first_plan: bool = True,
) -> tuple[CsmsApp, list[tuple[str, str, float]]]:
    """Both chargers' links close and the CSMS restarts without its copy of A's profiles;
    once its first plan is made (unless not ``first_plan``), both connect again, their
    profile answers watched (`_watch_answers`). Returns the new CSMS and the events."""
    for charger in (a, b):
        assert charger.cp is not None
        await charger.cp.close()
    await app.repository.save_installed_profiles("A", None)  # A's copy is lost
    await app.stop()
    before_start()
    app = await start_app(db_url, controller=True, speed=SPEED)
    controller = app.controller
    assert controller is not None
    if first_plan:
        await wait_for(lambda: controller.fuse_headroom_a() is not None)
    events: list[tuple[str, str, float]] = []
    for charger in (a, b):
        _watch_answers(await charger.connect(app), charger, [a, b], worst, events)
    return app, events


@pytest.mark.parametrize("when", ["no-boot", "boot", "boot-before-the-first-read"])
async def test_a_car_on_a_charger_of_unknown_profiles_is_counted_at_its_maximum_first(
    db_url: str, when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two 16 A chargers share 24 A, both charging: B at 16 A, A at 8 A. The CSMS restarts
    without its copy of A's profiles and both come back, without a BootNotification or A
    with one (Pending until it is prepared), after the controller's first plan or before
    it has even read which cars run (its read of the open sessions held). A must be
    cleared before it is given ours, and once cleared its car may draw A's 16 A: B is
    lowered to 8 A before that, and after every answer of either charger the two together
    may draw at most 24 A."""
    a, b = SpecCharger("A", 16.0), SpecCharger("B", 16.0)
    app = await garage(db_url, 24.0, [a, b])
    worst: list[float] = []
    try:
        await a.start("TAG-A")
        tx_b = await b.start("TAG-B")
        assert tx_b is not None
        # B's resident leaves soon: B gets its 16 A, A the 8 A left.
        await app.repository.set_session_input(
            tx_b, departure_at=T0 + timedelta(minutes=90), energy_needed_wh=10_000.0
        )
        await wait_for(lambda: b.may_draw_a() == 16.0 and a.may_draw_a() == 8.0, within_s=15)
        early = when == "boot-before-the-first-read"
        release = asyncio.Event()
        read_sessions = Repository.open_sessions

        async def held_first_read(repo: Repository, *args: Any, **kwargs: Any) -> Any:
            await release.wait()
            return await read_sessions(repo, *args, **kwargs)

        def hold_the_first_read() -> None:
            if early:
                monkeypatch.setattr(Repository, "open_sessions", held_first_read)

        # Unless early, its first plan is made (it saw A's car running) before A is back.
        app, events = await _restart_without_the_copy_of_a(
            db_url, app, a, b, worst, before_start=hold_the_first_read, first_plan=not early
        )
        assert b.cp is not None and a.cp is not None
        await b.cp.ok("Heartbeat", {})  # back, no BootNotification
        if when == "no-boot":
            await a.cp.ok("Heartbeat", {})
        elif early:
            assert (await a.cp.ok("BootNotification", BOOT))["status"] == "Pending"
            await asyncio.sleep(0.5)
            assert not any(
                cp_id == "A" and action.startswith("Clear") for cp_id, action, _ in events
            )
            monkeypatch.setattr(Repository, "open_sessions", read_sessions)
            release.set()
            await a.cp.boot(BOOT)
        else:
            await a.cp.boot(BOOT)
        await wait_for(lambda: ("A", "ClearChargingProfile", 16.0) in events)
        await wait_for(lambda: a.may_draw_a() < 16.0)  # A under our profiles again
        cleared_at = events.index(("A", "ClearChargingProfile", 16.0))
        assert any(cp_id == "B" and amps <= 8.0 for cp_id, _, amps in events[:cleared_at]), events
        assert max(worst) <= 24.0, events
    finally:
        await close(app, [a, b])


async def test_a_limit_that_beats_the_chargers_own_transaction_id_is_sent_again_soon(
    db_url: str,
) -> None:
    """The live benchmark's race: the TxProfile of a transaction that has just started
    reaches the charger before the charger has taken in its own transaction id (even its
    StatusNotification Charging came first), and is rejected. It is sent again within
    seconds, not after the car's first MeterValues a meter interval later."""
    a = SpecCharger("A", 32.0)
    app = await garage(db_url, 40.0, [a])
    try:
        assert a.cp is not None
        a.cars += 1
        payload = {
            "connectorId": 1,
            "idTag": "TAG-A",
            "meterStart": 0,
            "timestamp": (T0 + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
        }
        answer = await a.cp.ok("StartTransaction", payload)
        await a.cp.ok(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
        )
        await wait_for(lambda: bool(a.tx_limits("Rejected")))
        a.transaction = int(answer["transactionId"])  # the charger catches up; no MeterValues
        await wait_for(lambda: bool(a.tx_limits()), within_s=3)
        station = await app.repository.get_charge_point("A")
        assert station is not None and not station.unmanaged
    finally:
        await close(app, [a])


# ------------------------------------------------------- issue 12: a leader that dies
def _stored_tx_limit(document: dict[str, Any], cp_id: str, transaction_id: int) -> float | None:
    """The TxProfile limit a restarted controller (or the instance that takes the site
    over) would count for the charger, from the copy of its profiles in the store."""
    mirror = ProfileMirror.from_json(json.dumps(document))
    store = mirror.store_for(cp_id)
    assert store is not None
    limit = limit_at(store, 1, T0, transaction_id=transaction_id, transaction_start=None)
    return None if limit is None else limit.current_a


def _limit_of(payload: dict[str, Any], purpose: str) -> float | None:
    """The limit a SetChargingProfile.req sets, if its profile has this purpose."""
    profile = payload["csChargingProfiles"]
    if profile["chargingProfilePurpose"] != purpose:
        return None
    return float(profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"])


def _hang_one_refuse_all(
    a: SpecCharger, b: SpecCharger, raised: Callable[[SpecCharger, dict[str, Any]], float | None]
) -> tuple[list[float], list[float]]:
    """From now on A never answers the first raise it is sent (``raised``: its limit, None
    for anything else) and B refuses every raise; returns the limits hung and refused."""
    hung: list[float] = []
    refused: list[float] = []

    def hang_raise(payload: dict[str, Any]) -> bool:
        limit = raised(a, payload)
        if limit is not None and not hung:
            hung.append(limit)
            return True
        return False

    async def refuse_raises(payload: dict[str, Any]) -> dict[str, Any]:
        limit = raised(b, payload)
        if limit is not None:
            refused.append(limit)
            return {"status": "Rejected"}
        return await b._on_set(payload)

    a.hang = hang_raise
    assert b.cp is not None
    b.cp.handlers["SetChargingProfile"] = refuse_raises
    return hung, refused


async def test_a_raise_is_in_the_stored_copy_before_it_is_sent_and_a_refused_one_is_not(
    db_url: str,
) -> None:
    """A raise is written to the stored copy of the charger's profiles (as possibly in
    force) before it goes out: an instance that dies while the raise is on its way leaves a
    copy from which the next controller counts the higher limit, not the lower one the
    charger may no longer hold. A raise the charger refuses leaves the copy as it was.
    A and B charge on a 20 A fuse; the fuse goes up to 60 A: A's raise hangs, B refuses."""
    a, b = SpecCharger("A", 32.0), SpecCharger("B", 32.0)
    app = await garage(db_url, 20.0, [a, b], response_timeout_s=2.0)
    try:
        tx_a, tx_b = await a.start("TAG-A"), await b.start("TAG-B")
        assert tx_a is not None and tx_b is not None
        await wait_for(lambda: bool(a.tx_limits()) and bool(b.tx_limits()))
        await asyncio.sleep(0.5)
        low_a, low_b = a.tx_limits()[-1], b.tx_limits()[-1]
        assert low_a + low_b <= 20.0
        low = {"A": low_a, "B": low_b}

        def raised(charger: SpecCharger, payload: dict[str, Any]) -> float | None:
            limit = _limit_of(payload, "TxProfile")
            return limit if limit is not None and limit > low[charger.cp_id] else None

        hung, refused = _hang_one_refuse_all(a, b, raised)
        await app.repository.update_site(fuse_limit_a=60.0)
        await wait_for(lambda: bool(hung) and bool(refused), within_s=15)
        # A's raise is on its way, unanswered: the stored copy already counts it.
        stored = await app.repository.installed_profiles()
        assert _stored_tx_limit(stored["A"], "A", tx_a) == hung[0] > low_a
        # B refused: once the tick is over (A's call timed out), its copy is what it kept.
        await asyncio.sleep(2.5)
        stored = await app.repository.installed_profiles()
        assert _stored_tx_limit(stored["B"], "B", tx_b) == low_b < refused[0]
        assert _stored_tx_limit(stored["A"], "A", tx_a) == hung[0]  # may hold it: counted
    finally:
        await close(app, [a, b])


def _stored_default_limit(document: dict[str, Any], cp_id: str) -> float | None:
    """What the next car on the charger may draw as a restarted controller (or the
    instance that takes the site over) counts it from the stored copy: the
    TxDefaultProfile under the ChargePointMaxProfile."""
    mirror = ProfileMirror.from_json(json.dumps(document))
    store = mirror.store_for(cp_id)
    assert store is not None
    limit = limit_at(store, 1, T0, transaction_id=None, transaction_start=T0)
    return None if limit is None else limit.current_a


async def test_a_default_raise_is_in_the_stored_copy_before_it_is_sent_and_a_refused_one_is_not(
    db_url: str,
) -> None:
    """The TxDefaultProfile raise, like a TxProfile raise, is in the stored copy before
    it goes out (a leader that dies meanwhile leaves a copy that counts what the next car
    may draw), and a refused one is taken back. C charges on a 20 A fuse, so the idle
    A and B hold a 0 A default; the fuse goes up to 60 A and the default with it: A's
    raise hangs, B refuses it."""
    a, b, c = SpecCharger("A", 32.0), SpecCharger("B", 32.0), SpecCharger("C", 32.0)
    app = await garage(db_url, 20.0, [a, b, c], response_timeout_s=2.0)
    try:
        assert await c.start("TAG-C") is not None
        await wait_for(lambda: bool(c.tx_limits()))
        await asyncio.sleep(0.5)
        assert a.may_draw_a() == b.may_draw_a() == 0.0  # the car on C takes the fuse
        stored = await app.repository.installed_profiles()
        assert _stored_default_limit(stored["A"], "A") == 0.0

        def raised_default(charger: SpecCharger, payload: dict[str, Any]) -> float | None:
            limit = _limit_of(payload, "TxDefaultProfile")
            return limit if limit is not None and limit > 0 else None

        hung, refused = _hang_one_refuse_all(a, b, raised_default)
        await app.repository.update_site(fuse_limit_a=60.0)
        await wait_for(lambda: bool(hung) and bool(refused), within_s=15)
        # A's raise is on its way, unanswered: the stored copy already counts it.
        stored = await app.repository.installed_profiles()
        assert _stored_default_limit(stored["A"], "A") == hung[0] > 0.0
        # B refused (on connector 0, then on its connector): its copy is what it kept,
        # once the tick is over (A's call timed out); A may hold the raise: counted.
        await asyncio.sleep(2.5)
        stored = await app.repository.installed_profiles()
        assert _stored_default_limit(stored["B"], "B") == 0.0 < refused[0]
        assert b.may_draw_a() == 0.0
        assert _stored_default_limit(stored["A"], "A") == hung[0]
    finally:
        await close(app, [a, b, c])


def _stored_station_max(document: dict[str, Any], cp_id: str) -> float:
    """The ChargePointMaxProfile limit (on connector 0) in the stored copy, counted as a
    restarted controller counts it: as if every unanswered call took effect."""
    mirror = ProfileMirror.from_json(json.dumps(document))
    store = mirror.store_for(cp_id)
    assert store is not None
    limits = [
        p.schedule.periods[0].limit
        for p in store.profiles_on(0)
        if p.purpose is ChargingProfilePurpose.ChargePointMaxProfile
    ]
    assert len(limits) == 1, limits
    return limits[0]


async def test_a_cap_lift_is_in_the_stored_copy_before_it_is_sent(db_url: str) -> None:
    """Lifting a station cap is a raise too: in the stored copy before it goes out. A
    manager's 32 A override on A where the building leaves 20 A of a 40 A fuse: A is
    capped at 20 A; the override is resumed, and the lift back to 32 A hangs."""
    a = SpecCharger("A", 32.0)
    app = await garage(db_url, 40.0, [a], response_timeout_s=2.0)
    try:
        await app.repository.record_building_load(20.0, 20.0, 20.0)
        tx_a = await a.start("TAG-A")
        assert tx_a is not None
        await wait_for(lambda: bool(a.tx_limits()))
        action, payload = actions.set_limit(1, tx_a, 32.0, max_current_a=32.0)
        await app.repository.enqueue_command("A", action, payload, requested_by="monitor")

        def capped() -> bool:
            return any(
                purpose == ChargingProfilePurpose.ChargePointMaxProfile.value
                and status == "Accepted"
                and p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
                    "limit"
                ]
                == 20.0
                for purpose, p, status in a.calls
            )

        await wait_for(capped)
        await wait_for(lambda: a.may_draw_a() == 20.0)
        await asyncio.sleep(0.3)  # the copy is saved after the tick
        stored = await app.repository.installed_profiles()
        assert _stored_station_max(stored["A"], "A") == 20.0
        hung: list[float] = []

        def hang_lift(payload: dict[str, Any]) -> bool:
            limit = _limit_of(payload, "ChargePointMaxProfile")
            if limit is not None and limit > 20 and not hung:
                hung.append(limit)
                return True
            return False

        a.hang = hang_lift
        action, payload = actions.resume(1)
        await app.repository.enqueue_command("A", action, payload, requested_by="monitor")
        await wait_for(lambda: bool(hung), within_s=15)
        # The lift is on its way, unanswered: the stored copy already counts it.
        stored = await app.repository.installed_profiles()
        assert _stored_station_max(stored["A"], "A") == hung[0] == 32.0
        assert a.may_draw_a() <= 20.0  # the charger itself still holds the cap
    finally:
        await close(app, [a])


async def test_a_charger_that_boots_right_after_a_car_started_there_is_cleared_after_the_room(
    db_url: str,
) -> None:
    """The CSMS restarts without its copy of A's profiles. A comes back with a car: its
    StartTransaction and, right behind it, a BootNotification, before any plan has seen
    that car. The boot must not clear A at once (its car could then draw A's 16 A beside
    B's 16 A on a 24 A fuse): the car is counted at A's maximum, B lowered first, and
    A cleared and given our profiles after that."""
    a, b = SpecCharger("A", 16.0), SpecCharger("B", 16.0)
    app = await garage(db_url, 24.0, [a, b])
    worst: list[float] = []
    try:
        tx_b = await b.start("TAG-B")
        assert tx_b is not None
        await wait_for(lambda: b.may_draw_a() == 16.0)
        app, events = await _restart_without_the_copy_of_a(db_url, app, a, b, worst)
        assert b.cp is not None and a.cp is not None
        await b.cp.ok("Heartbeat", {})
        await wait_for(lambda: b.may_draw_a() == 16.0)
        # A's car starts under the defaults A still holds; the boot follows at once.
        a.cars += 1
        start = {
            "connectorId": 1,
            "idTag": "TAG-A",
            "meterStart": 1000,
            "timestamp": T0.isoformat().replace("+00:00", "Z"),
        }
        started, booted = await asyncio.gather(
            a.cp.ok("StartTransaction", start), a.cp.ok("BootNotification", BOOT)
        )
        a.transaction = int(started["transactionId"])
        assert booted["status"] == "Pending"
        await a.cp.boot(BOOT)  # Accepted once A is prepared
        assert ("A", "ClearChargingProfile", 16.0) in events
        cleared_at = events.index(("A", "ClearChargingProfile", 16.0))
        assert any(cp_id == "B" and amps <= 8.0 for cp_id, _, amps in events[:cleared_at]), events
        await wait_for(lambda: a.may_draw_a() + b.may_draw_a() <= 24.0)
        assert max(worst) <= 24.0, events
    finally:
        await close(app, [a, b])
