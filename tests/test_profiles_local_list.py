"""Local Auth List Management (OCPP 1.6 sections 3.4, 5.10, 5.15; issue 13 item 4).

The arithmetic (what a charger should hold, what to send) on tables; then the CSMS side
of the 1.6 test cases over real sockets: the CSMS asks a booted charger its list version,
sends a Full list, then each id tag change as a Differential with the next version; a
version the charger reports that is not ours brings a Full list; a Differential refused
with VersionMismatch is followed by a Full one; a charger without the profile is asked
once and left alone; GetLocalListVersion and SendLocalList from the outbox (CLI); and the
virtual charger authorises from its list while the CSMS is away.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from csms import local_list_sync
from csms.cli import main
from csms.local_list import (
    ListEntry,
    ListUpdate,
    UpdateType,
    apply_update,
    desired_entries,
    plan_update,
    split_update,
)
from tests.conftest import T0, fixed_clock, start_app, ws_url
from tests.ocpp_client import AnswerCallError, RawChargePoint
from tests.profiles_support import PASSWORD, command, eventually, garage
from virtual_chargers.options import StationOptions

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


# ------------------------------------------------------------------ pure
def tag(
    id_tag: str, *, blocked: bool = False, hours: float | None = None, parent: str | None = None
) -> dict[str, Any]:
    return {
        "id_tag": id_tag,
        "blocked": blocked,
        "expires_at": None if hours is None else T0 + timedelta(hours=hours),
        "parent": parent,
    }


def test_the_list_holds_every_tag_as_authorize_would_answer_now() -> None:
    desired = desired_entries(
        [
            tag("OK"),
            tag("BLOCKED", blocked=True),
            tag("OLD", hours=-1),
            tag("KID", hours=2, parent="MUM"),
        ],
        T0,
    )
    assert {t: e.status for t, e in desired.items()} == {
        "OK": "Accepted",
        "BLOCKED": "Blocked",
        "OLD": "Expired",
        "KID": "Accepted",
    }
    assert desired["KID"].to_ocpp() == {
        "idTag": "KID",
        "idTagInfo": {
            "status": "Accepted",
            "expiryDate": "2026-01-05T18:00:00Z",
            "parentIdTag": "MUM",
        },
    }


@pytest.mark.parametrize(
    ("held", "version", "full", "expected"),
    [
        (None, None, False, ("Full", 1, ["A", "B"], [])),  # never sent: the whole list
        (None, 7, False, ("Full", 8, ["A", "B"], [])),  # copy not trusted: Full, next version
        ({"A": "Accepted", "B": "Accepted"}, 3, False, None),  # nothing changed
        ({"A": "Accepted", "B": "Accepted"}, 3, True, ("Full", 4, ["A", "B"], [])),
        ({"A": "Accepted"}, 3, False, ("Differential", 4, ["B"], [])),  # B added
        ({"A": "Blocked", "B": "Accepted"}, 3, False, ("Differential", 4, ["A"], [])),
        (
            {"A": "Accepted", "B": "Accepted", "C": "Accepted"},
            3,
            False,
            ("Differential", 4, [], ["C"]),
        ),
    ],
)
def test_plan_update(
    held: dict[str, str] | None,
    version: int | None,
    full: bool,
    expected: tuple[str, int, list[str], list[str]] | None,
) -> None:
    desired = {"A": ListEntry("A", "Accepted"), "B": ListEntry("B", "Accepted")}
    copy = None if held is None else {t: ListEntry(t, s) for t, s in held.items()}
    update = plan_update(desired, copy, version, full=full)
    if expected is None:
        assert update is None
        return
    assert update is not None
    kind, next_version, changed, removed = expected
    assert (update.update_type.value, update.version) == (kind, next_version)
    assert [e.id_tag for e in update.entries] == changed
    assert list(update.removed) == removed
    # The charger holds exactly the desired list after it: a Differential on the copy,
    # a Full one on whatever it held.
    before = copy if kind == "Differential" else {"X": ListEntry("X", "Accepted")}
    assert copy is not None or kind == "Full"
    assert apply_update(before or {}, update) == desired


def test_an_update_reads_back_from_its_payload() -> None:
    update = ListUpdate(5, UpdateType.differential, (ListEntry("A", "Blocked", T0, "P"),), ("B",))
    assert ListUpdate.from_ocpp(update.to_ocpp()) == update
    with pytest.raises(ValueError, match="SendLocalList"):
        ListUpdate.from_ocpp({"listVersion": 1})


# ------------------------------------------------------------------ over real sockets
async def test_the_csms_keeps_a_chargers_list_equal_to_the_id_tags(db_url: str) -> None:
    async with garage(db_url, local_list_sync=True, local_list_poll_s=0.2) as g:
        station, repo = g.station, g.app.repository
        received: list[tuple[str, int]] = []
        original = station.features.send_local_list

        def recording(payload: dict[str, Any]) -> str:
            received.append((payload["updateType"], payload["listVersion"]))
            return original(payload)

        station.features.send_local_list = recording  # type: ignore[method-assign]
        await repo.add_id_tag("TAG1")
        await repo.add_id_tag("TAG2")

        async def in_sync(tags: set[str]) -> bool:
            state = await g.features.local_list("CP1")
            return (
                set(station.features.local_list) == tags
                and state.in_sync
                and state.version == station.features.list_version
            )

        await eventually(lambda: in_sync({"TAG1", "TAG2"}), "TAG1 and TAG2 on the charger")
        # The first update after the boot was Full (nothing of ours was there): it may have
        # gone out before the recording above, so the raw charger test below checks it.
        assert received[:1] in ([], [("Full", 1)], [("Differential", 2)])
        version, count = station.features.list_version, len(received)
        # A tag blocked and one added reach it as Differentials, each the next version.
        await repo.set_id_tag_blocked("TAG1")
        await repo.add_id_tag("TAG3", parent="TAG2")
        await eventually(lambda: in_sync({"TAG1", "TAG2", "TAG3"}), "TAG3 on the charger")
        await eventually(
            lambda: station.features.local_list["TAG1"].status == "Blocked", "TAG1 blocked"
        )
        later = received[count:]
        assert later and all(kind == "Differential" for kind, _ in later)
        assert [v for _, v in later] == list(range(version + 1, version + 1 + len(later)))
        assert station.features.local_list["TAG3"].parent_id_tag == "TAG2"

        async def copy_is_what_it_holds() -> bool:
            # The last answer is recorded just after the charger took the update.
            state = await g.features.local_list("CP1")
            return state.entries == station.features.local_list and state.supported is True

        await eventually(copy_is_what_it_holds, "our copy equal to the charger's list")


async def test_a_version_that_is_not_ours_brings_a_full_list(db_url: str) -> None:
    """After a reboot with another list (a service tool, a reset), the charger's version
    differs from ours: the next update is Full, with a version above both."""
    async with garage(db_url, local_list_sync=True, local_list_poll_s=0.2) as g:
        features = g.station.features
        await g.app.repository.add_id_tag("TAG1")
        await eventually(lambda: "TAG1" in features.local_list, "TAG1 on the charger")
        alien = features.list_version + 8
        # Someone else gave the charger another list; it boots again.
        assert (
            features.send_local_list(
                {
                    "listVersion": alien,
                    "updateType": "Full",
                    "localAuthorizationList": [
                        {"idTag": "ALIEN", "idTagInfo": {"status": "Accepted"}}
                    ],
                }
            )
            == "Accepted"
        )
        g.station.request_reboot("Soft")
        await eventually(lambda: features.list_version == alien + 1, "a Full list above it")
        assert set(features.local_list) == {"TAG1"}


async def test_a_differential_refused_as_version_mismatch_is_followed_by_a_full_list(
    db_url: str,
) -> None:
    app = await start_app(db_url, local_list_sync=True, local_list_poll_s=0.2)
    try:
        await app.repository.add_charge_point("CP1")
        await app.repository.add_id_tag("TAG1")
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        sent: list[dict[str, Any]] = []
        version = [0]

        def send_local_list(payload: dict[str, Any]) -> dict[str, Any]:
            # Its list is at another version than it says: it refuses the Differential.
            sent.append(payload)
            if payload["updateType"] != "Full":
                return {"status": "VersionMismatch"}
            version[0] = payload["listVersion"]
            return {"status": "Accepted"}

        cp.handlers["GetLocalListVersion"] = lambda payload: {"listVersion": version[0]}
        cp.handlers["SendLocalList"] = send_local_list
        await cp.ok("BootNotification", BOOT)
        await eventually(lambda: len(sent) == 1, "the first Full list")
        await app.repository.add_id_tag("TAG2")
        await eventually(lambda: len(sent) == 3, "a Differential, then a Full list")
        assert [(p["updateType"], p["listVersion"]) for p in sent] == [
            ("Full", 1),
            ("Differential", 2),
            ("Full", 2),
        ]
        assert [i["idTag"] for i in sent[2]["localAuthorizationList"]] == ["TAG1", "TAG2"]
        await cp.close()
    finally:
        await app.stop()


@pytest.mark.parametrize("answer", ["callerror", "disabled"])
async def test_a_charger_without_a_list_is_asked_once_and_left_alone(
    db_url: str, answer: str
) -> None:
    app = await start_app(db_url, local_list_sync=True, local_list_poll_s=0.1)
    try:
        await app.repository.add_charge_point("CP1")
        await app.repository.add_id_tag("TAG1")
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        if answer == "disabled":  # LocalAuthListEnabled false: version -1 (section 5.10)
            cp.handlers["GetLocalListVersion"] = lambda payload: {"listVersion": -1}
        await cp.ok("BootNotification", BOOT)
        await eventually(lambda: len(cp.server_calls) == 1, "GetLocalListVersion")
        await app.repository.add_id_tag("TAG2")
        await asyncio.sleep(0.5)  # five polls of the sync
        assert [a for a, _ in cp.server_calls] == ["GetLocalListVersion"]
        station = await app.repository.get_charge_point("CP1")
        assert station is not None and station.local_list_supported is False
        await cp.close()
    finally:
        await app.stop()


@pytest.mark.parametrize("answer", ["invalid", "internal-error"])
async def test_a_charger_that_gives_no_usable_version_is_not_asked_every_poll(
    db_url: str, answer: str
) -> None:
    """Asked once, then again only when it reconnects (or after VERSION_RETRY_S): a fleet
    answering like this was asked every poll, thousands of calls every 2 s."""
    app = await start_app(db_url, local_list_sync=True, local_list_poll_s=0.1)
    try:
        await app.repository.add_charge_point("CP1")
        await app.repository.add_id_tag("TAG1")
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        if answer == "invalid":  # a CALLRESULT without the required listVersion
            cp.handlers["GetLocalListVersion"] = lambda payload: {}
        else:
            cp.handlers["GetLocalListVersion"] = lambda payload: _raise("InternalError")
        await cp.ok("BootNotification", BOOT)
        await eventually(lambda: len(cp.server_calls) >= 1, "GetLocalListVersion")
        await asyncio.sleep(0.5)  # five polls of the sync
        assert [a for a, _ in cp.server_calls] == ["GetLocalListVersion"], cp.server_calls
        station = await app.repository.get_charge_point("CP1")
        assert station is not None and station.local_list_supported is None
        await cp.close()
        # Connected again, it is asked again.
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        cp.handlers["GetLocalListVersion"] = lambda payload: {"listVersion": -1}
        await cp.ok("BootNotification", BOOT)
        await eventually(lambda: len(cp.server_calls) == 1, "GetLocalListVersion again")
        await cp.close()
    finally:
        await app.stop()


async def test_an_unanswered_version_is_asked_again_after_the_retry_time(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_list_sync, "VERSION_RETRY_S", 0.3)
    app = await start_app(db_url, local_list_sync=True, local_list_poll_s=0.1)
    try:
        await app.repository.add_charge_point("CP1")
        await app.repository.add_id_tag("TAG1")
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        cp.handlers["GetLocalListVersion"] = lambda payload: {}
        await cp.ok("BootNotification", BOOT)
        await eventually(lambda: len(cp.server_calls) >= 2, "GetLocalListVersion asked again")
        cp.handlers["GetLocalListVersion"] = lambda payload: {"listVersion": 0}
        cp.handlers["SendLocalList"] = lambda payload: {"status": "Accepted"}
        await eventually(
            lambda: any(a == "SendLocalList" for a, _ in cp.server_calls), "a Full list"
        )
        await cp.close()
    finally:
        await app.stop()


def _list_keeper(cp: RawChargePoint) -> dict[str, str]:
    """The charger keeps a list: ``held`` (id tag -> status) follows every SendLocalList."""
    held: dict[str, str] = {}
    cp.handlers["GetLocalListVersion"] = lambda payload: {"listVersion": 0}

    def send_local_list(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["updateType"] == "Full":
            held.clear()
        for item in payload.get("localAuthorizationList", []):
            if "idTagInfo" in item:
                held[item["idTag"]] = item["idTagInfo"]["status"]
            else:
                held.pop(item["idTag"], None)
        return {"status": "Accepted"}

    cp.handlers["SendLocalList"] = send_local_list
    return held


async def test_meter_values_do_not_bring_a_round_on_a_boot_does(db_url: str) -> None:
    """Rounds come with the poll and with boots; every MeterValues of the fleet brought one
    (5,000 chargers: a round after nearly every message, a third of the event loop)."""
    app = await start_app(db_url, local_list_sync=True, local_list_poll_s=3600)
    try:
        await app.repository.add_charge_point("CP1")
        await app.repository.add_charge_point("CP2")
        await app.repository.add_id_tag("TAG1")
        cp1 = await RawChargePoint.connect(ws_url(app, "CP1"))
        held = _list_keeper(cp1)
        await cp1.ok("BootNotification", BOOT)
        await eventually(lambda: held == {"TAG1": "Accepted"}, "TAG1 on CP1")
        await app.repository.add_id_tag("TAG2")
        meter = {
            "connectorId": 1,
            "meterValue": [{"timestamp": "2026-01-05T16:00:00Z", "sampledValue": [{"value": "1"}]}],
        }
        for _ in range(5):
            await cp1.ok("MeterValues", meter)
        await asyncio.sleep(0.3)
        assert held == {"TAG1": "Accepted"}  # no round: the poll is an hour away
        cp2 = await RawChargePoint.connect(ws_url(app, "CP2"))
        cp2.handlers["GetLocalListVersion"] = lambda payload: {"listVersion": -1}
        await cp2.ok("BootNotification", BOOT)  # a boot brings a round at once
        await eventually(lambda: held == {"TAG1": "Accepted", "TAG2": "Accepted"}, "TAG2")
        await cp1.close()
        await cp2.close()
    finally:
        await app.stop()


async def test_a_tag_that_expires_reaches_the_list_as_expired(db_url: str) -> None:
    """Nothing in the store changes when a tag expires: the sync reads the tags again when
    the first expiry it saw has passed (it reads them only when they changed otherwise)."""
    clock = fixed_clock(speed=1800.0)  # a real second is half an hour
    app = await start_app(db_url, clock=clock, local_list_sync=True, local_list_poll_s=0.1)
    try:
        await app.repository.add_charge_point("CP1")
        await app.repository.add_id_tag("TAG1")
        await app.repository.add_id_tag("SOON", expires_at=clock.now() + timedelta(hours=2))
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        held = _list_keeper(cp)
        await cp.ok("BootNotification", BOOT)
        await eventually(lambda: held.get("SOON") == "Accepted", "SOON on the list")
        await eventually(lambda: held.get("SOON") == "Expired", "SOON expired on the list")
        assert held["TAG1"] == "Accepted"
        await cp.close()
    finally:
        await app.stop()


def _raise(code: str) -> dict[str, Any]:
    raise AnswerCallError(code)


async def test_list_version_and_a_full_list_through_the_outbox(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI queues, `csms serve` sends, the answer updates the store."""
    async with garage(db_url) as g:  # no automatic sync: every call is the CLI's
        monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)
        await g.app.repository.add_id_tag("TAG1")
        await g.app.repository.add_id_tag("TAG2", expires_at=T0 - timedelta(days=1))

        def cli(*argv: str) -> int:
            return main(list(argv))

        assert await asyncio.to_thread(cli, "locallist", "version", "CP1") == 0
        assert '"listVersion": 0' in capsys.readouterr().out
        assert await asyncio.to_thread(cli, "locallist", "push", "CP1") == 0
        assert '"status": "Accepted"' in capsys.readouterr().out
        assert g.station.features.list_version == 1
        assert g.station.features.local_list["TAG2"].status == "Expired"
        assert await asyncio.to_thread(cli, "locallist", "push", "CP1") == 0
        assert "holds the current list (version 1); nothing to send" in capsys.readouterr().out
        assert await asyncio.to_thread(cli, "locallist", "push", "CP1", "--full") == 0
        assert g.station.features.list_version == 2
        assert await asyncio.to_thread(cli, "locallist", "show", "CP1") == 0
        shown = capsys.readouterr().out
        assert "version 2; copy in sync" in shown and "TAG2" in shown


async def test_the_charger_authorises_from_its_list_while_the_csms_is_away(db_url: str) -> None:
    """Offline (section 3.4): an Accepted tag on the list starts, a Blocked one does not,
    and a tag on no list waits (AllowOfflineTxForUnknownId is false)."""
    options = StationOptions(password=PASSWORD, config={"AuthorizationCacheEnabled": "false"})
    async with garage(db_url, options=options) as g:
        station = g.station
        for tag_id in ("GOOD", "BAD"):
            await g.app.repository.add_id_tag(tag_id)
        await g.app.repository.set_id_tag_blocked("BAD")
        answer = await command(
            g.app,
            "CP1",
            "SendLocalList",
            {
                "listVersion": 1,
                "updateType": "Full",
                "localAuthorizationList": [
                    {"idTag": "GOOD", "idTagInfo": {"status": "Accepted"}},
                    {"idTag": "BAD", "idTagInfo": {"status": "Blocked"}},
                ],
            },
        )
        assert answer["response"] == {"status": "Accepted"}
        await g.app.central.close()  # the CSMS goes away
        await eventually(lambda: not station.online, "the charger notices")
        assert await station._authorize("GOOD", remote=False) == "Accepted"
        assert await station._authorize("BAD", remote=False) == "Blocked"
        assert await station._authorize("NOBODY", remote=False) is None  # waits for the CSMS


# ------------------------------------------------------------------ SendLocalListMaxLength
def test_a_list_longer_than_one_message_goes_in_parts() -> None:
    entries = tuple(ListEntry(f"T{n}", "Accepted") for n in range(5))
    full = ListUpdate(4, UpdateType.full, entries)
    parts = split_update(full, 2)
    assert [(p.update_type.value, p.version, len(p.entries)) for p in parts] == [
        ("Full", 4, 2),
        ("Differential", 5, 2),
        ("Differential", 6, 1),
    ]
    held: dict[str, ListEntry] = {"OLD": ListEntry("OLD", "Accepted")}
    for part in parts:
        held = apply_update(held, part)
    assert held == apply_update({}, full)  # the same list as one Full message
    diff = ListUpdate(7, UpdateType.differential, entries[:1], ("A", "B"))
    assert [(len(p.entries), p.removed) for p in split_update(diff, 2)] == [
        (1, ("A",)),
        (0, ("B",)),
    ]
    assert split_update(full, None) == [full] == split_update(full, 5)


async def test_the_csms_sends_a_long_list_in_parts_the_charger_takes(db_url: str) -> None:
    options = StationOptions(password=PASSWORD, config={"SendLocalListMaxLength": "2"})
    async with garage(db_url, options=options, local_list_sync=True, local_list_poll_s=0.2) as g:
        tags = {f"TAG{n}" for n in range(5)}
        for tag_id in sorted(tags):
            await g.app.repository.add_id_tag(tag_id)
        features = g.station.features
        await eventually(lambda: set(features.local_list) == tags, "all five on the charger")

        async def copy_agrees() -> bool:
            # The last part's answer is recorded just after the charger took it.
            state = await g.features.local_list("CP1")
            return state.in_sync and state.version == features.list_version

        await eventually(copy_agrees, "our copy at the charger's version")
        assert set((await g.features.local_list("CP1")).entries) == tags
