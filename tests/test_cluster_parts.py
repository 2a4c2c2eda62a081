"""The pure parts of `csms.cluster` (messages, elections) and the store's part of several
instances (which instance holds a charger; whose outbox commands a start may fail), on
SQLite and PostgreSQL 15."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from csms.cli import main
from csms.cluster import Election, Reassembler, decode_event, encode_event, pack, preference
from csms.events import ChargePointConnected, MeterSampled, SettingsChanged, TransactionStarted
from csms.store import migrate
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.conftest import fixed_clock
from tests.test_postgres import new_database
from tests.test_postgres import pg_url as pg_server  # noqa: F401  (the module's server)

AT = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)


def test_events_survive_the_channel() -> None:
    events = [
        ChargePointConnected("CP1"),
        TransactionStarted("CP1", 1, 42, resent=True),
        MeterSampled(
            "CP1", 2, 42, AT, {"L1": 15.5, "L2": 0.0}, current_offered_a=16.0, energy_wh=1200.0
        ),
        SettingsChanged("fuse"),
    ]
    for event in events:
        assert decode_event(json.loads(json.dumps(encode_event(event)))) == event
    assert decode_event({"type": "SomethingNewer", "x": 1}) is None


def _unpack(payloads: list[str]) -> list[dict[str, object]]:
    reassembler = Reassembler()
    out: list[dict[str, object]] = []
    for payload in payloads:
        sender, messages = reassembler.feed(payload)
        assert sender == "me"
        out += messages
    return out


def test_messages_are_packed_under_the_notify_limit_in_order_and_long_ones_in_parts() -> None:
    small = [{"k": "ev", "n": i} for i in range(500)]
    huge = {"k": "reply", "answer": {"configurationKey": ["x" * 90] * 300}, "note": "é" * 3000}
    messages = [*small[:200], huge, *small[200:]]
    payloads = pack("me", messages, limit=7000)
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert len(payloads) > 3
    assert _unpack(payloads) == messages


def test_a_message_with_a_lost_part_is_dropped_not_garbled() -> None:
    payloads = pack("me", [{"k": "x", "data": "y" * 30_000}, {"k": "after"}], limit=7000)
    assert len(payloads) > 3
    without_second = [payloads[0], *payloads[2:]]
    assert _unpack(without_second) == [{"k": "after"}]


def _election(me: str, alive: list[str], leaders: dict[int, str], rounds: int = 1) -> Election:
    sites = [1, 2, 3]
    return Election(me, sites, leaders, alive, {s: rounds for s in sites if s not in leaders})


def test_a_lone_instance_takes_every_site() -> None:
    assert sorted(_election("a", ["a"], {}).to_take()) == [1, 2, 3]


def test_instances_prefer_different_sites_and_take_no_more_than_their_share() -> None:
    alive = ["a", "b", "c"]
    wanted = {me: _election(me, alive, {}).to_take() for me in alive}
    # In the first round each takes only sites it wins by rendezvous hashing, at most
    # its share (one): no site is asked for twice.
    taken = [s for sites in wanted.values() for s in sites]
    assert len(taken) == len(set(taken)) >= 1
    for me, sites in wanted.items():
        assert len(sites) <= 1
        assert all(max(alive, key=lambda i, s=s: preference(i, s)) == me for s in sites)
    # Later rounds: any instance with room takes a site nobody leads.
    full = _election("a", alive, {1: "a"}, rounds=2)
    assert full.to_take() == []  # a's share (1 of 3) is full
    assert _election("b", alive, {1: "a"}, rounds=2).to_take() != []
    assert sorted(_election("a", alive, {1: "a"}, rounds=4).to_take()) == [2, 3]


def test_an_instance_above_its_share_hands_one_over_only_when_none_is_leaderless() -> None:
    leaders = {1: "a", 2: "a", 3: "a"}
    assert _election("a", ["a", "b"], leaders).to_hand_over() is not None
    assert _election("a", ["a"], leaders).to_hand_over() is None
    assert _election("a", ["a", "b"], {1: "a", 2: "a"}).to_hand_over() is None
    assert _election("a", ["a", "b", "c"], {1: "a", 2: "b", 3: "c"}).to_hand_over() is None


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'cluster.db'}"
        return
    server: str = request.getfixturevalue("pg_server")
    yield new_database(server, "parts")


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_url)
    await migrate.upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def _instance(engine: AsyncEngine, instance_id: str) -> Repository:
    repo = Repository(create_sessionmaker(engine), fixed_clock(AT))
    repo.instance_id = instance_id
    return repo


async def test_connections_are_marked_by_instance_and_a_dead_ones_are_cleared(
    engine: AsyncEngine,
) -> None:
    a, b = _instance(engine, "a"), _instance(engine, "b")
    for cp in ("CP1", "CP2", "CP3"):
        await a.add_charge_point(cp, max_current_a=16, phases=3)
    await a.set_connected("CP1", True)
    await a.set_connected("CP2", True)
    await b.set_connected("CP3", True)
    assert await b.connected_elsewhere() == {"CP1": ("a", False), "CP2": ("a", False)}

    # CP1 reconnects to b; a's old connection closes afterwards: CP1 stays connected.
    await b.set_connected("CP1", True)
    await a.set_connected("CP1", False)
    assert (await a.get_charge_point("CP1")).connected  # type: ignore[union-attr]

    # a dies: only what it still held is cleared.
    assert await b.disconnect_instance("a") == ["CP2"]
    assert await b.connected_elsewhere() == {}
    assert (await b.get_charge_point("CP3")).connected  # type: ignore[union-attr]

    # A new instance starts while b lives: b's chargers stay connected.
    c = _instance(engine, "c")
    await c.mark_all_disconnected(alive={"b", "c"})
    assert (await c.get_charge_point("CP1")).connected  # type: ignore[union-attr]
    await c.mark_all_disconnected(alive={"c"})
    assert not (await c.get_charge_point("CP1")).connected  # type: ignore[union-attr]


async def test_a_starting_instance_fails_only_its_own_or_dead_instances_commands(
    engine: AsyncEngine,
) -> None:
    a, b = _instance(engine, "a"), _instance(engine, "b")
    await a.add_charge_point("CP1", max_current_a=16, phases=3)
    for _ in range(2):
        await a.enqueue_command("CP1", "Reset", {"type": "Soft"})
    first = await a.claim_pending_commands(limit=1)
    second = await b.claim_pending_commands()
    assert len(first) == len(second) == 1 and first[0].id != second[0].id
    # c starts while a lives and b is dead: b's command fails, a's is a's to finish.
    c = _instance(engine, "c")
    assert await c.requeue_interrupted_commands(alive={"a", "c"}) == 1
    assert await c.requeue_interrupted_commands(alive={"c"}) == 1


def test_cluster_status_says_it_needs_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    assert main(["cluster", "status", "--database-url", url]) != 0
    assert "needs PostgreSQL" in capsys.readouterr().err


async def test_instances_that_start_at_once_migrate_once(pg_server: str) -> None:  # noqa: F811
    """Two fresh instances on one new PostgreSQL database: one migrates, the other waits
    for it (an advisory lock) and finds the schema at head, instead of failing."""
    url = new_database(pg_server, "mig")
    engines = [create_engine(url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(e) for e in engines))
        assert {await migrate.current_revision(e) for e in engines} == {await _head_revision()}
    finally:
        for e in engines:
            await e.dispose()


async def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head
