"""Reservation (OCPP 1.6 sections 3.11, 5.13, 5.2; issue 13 item 4), CSMS side over real
sockets against a virtual charger: ReserveNow from the CLI (Accepted, the connector
reports Reserved), another tag refused, the reserved tag's StartTransaction carries the
reservationId and uses it up, CancelReservation, Occupied and Rejected answers, a remote
start for someone else refused, and expiry on the injected clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from csms.cli import main
from csms.errors import ConfigError
from csms.ev import CATALOGUE
from csms.reservations import Reservation, reserve_now_payload
from csms.store import models as m
from tests.conftest import T0
from tests.profiles_support import Garage, command, eventually, garage
from virtual_chargers.simulation import Car


def test_an_accepted_reservation_expires_on_the_clock_it_is_judged_by() -> None:
    r = Reservation(7, "CP1", 1, "TAG1", None, T0 + timedelta(minutes=30), "Accepted", T0)
    assert r.state(T0) == "Accepted"
    assert r.state(T0 + timedelta(minutes=30)) == "expired"
    assert Reservation(**(r.__dict__ | {"status": "used"})).state(T0 + timedelta(days=1)) == "used"
    assert reserve_now_payload(r) == {
        "connectorId": 1,
        "expiryDate": "2026-01-05T16:30:00Z",
        "idTag": "TAG1",
        "reservationId": 7,
    }


async def connector_status(g: Garage) -> str | None:
    async with g.app.repository.unit_of_work() as s:
        return await s.scalar(
            select(m.Connector.status).where(
                m.Connector.charge_point_id == "CP1", m.Connector.connector_id == 1
            )
        )


def cli(*argv: str) -> int:
    return main(list(argv))


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)


async def test_a_reserved_connector_starts_only_for_its_tag_and_the_start_uses_it(
    db_url: str, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    async with garage(db_url) as g:
        for tag in ("TAG1", "OTHER"):
            await g.app.repository.add_id_tag(tag)
        code = await asyncio.to_thread(
            cli, "reservation", "add", "CP1", "--id-tag", "TAG1", "--minutes", "30"
        )
        assert code == 0
        assert '"status": "Accepted"' in capsys.readouterr().out
        [reservation] = await g.features.reservations("CP1")
        assert reservation.status == "Accepted"
        await eventually(lambda: _is(g, "Reserved"), "the connector reports Reserved")

        # Someone else plugs in: refused by the charger, no transaction.
        g.station.arrive(Car(CATALOGUE["renault-zoe-52"], 0.5), "OTHER")
        await eventually(
            lambda: any(r.refused == "Reserved" for r in g.station.sessions), "OTHER refused"
        )
        await g.station.depart()
        assert await g.app.repository.open_sessions() == []

        # The reserved tag: StartTransaction with the reservationId; the reservation is used.
        g.station.arrive(Car(CATALOGUE["renault-zoe-52"], 0.5), "TAG1")
        sessions = []

        async def started() -> bool:
            sessions[:] = await g.app.repository.open_sessions()
            return bool(sessions)

        await eventually(started, "TAG1's transaction")
        tx = await g.app.repository.get_transaction(sessions[0].transaction_id)
        assert tx is not None and tx["reservation_id"] == reservation.id

        async def used() -> bool:
            r = await g.features.reservation(reservation.id)
            return r is not None and r.status == "used"

        await eventually(used, "the reservation used")
        final = await g.features.reservation(reservation.id)
        assert final is not None and final.transaction_id == sessions[0].transaction_id
        assert await asyncio.to_thread(cli, "reservation", "list", "CP1") == 0
        assert "used" in capsys.readouterr().out


async def _is(g: Garage, status: str) -> bool:
    return await connector_status(g) == status


async def test_a_cancelled_reservation_frees_the_connector(
    db_url: str, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    async with garage(db_url) as g:
        assert await asyncio.to_thread(cli, "reservation", "add", "CP1", "--id-tag", "TAG1") == 0
        [reservation] = await g.features.reservations("CP1")
        await eventually(lambda: _is(g, "Reserved"), "Reserved")
        assert await asyncio.to_thread(cli, "reservation", "cancel", str(reservation.id)) == 0
        cancelled = await g.features.reservation(reservation.id)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert cancelled.ended_at is not None
        await eventually(lambda: _is(g, "Available"), "Available again")
        # Cancelling what the charger no longer holds: Rejected, and it is gone for us too.
        answer = await command(g.app, "CP1", "CancelReservation", {"reservationId": reservation.id})
        assert answer["response"] == {"status": "Rejected"}
        again = await g.features.reservation(reservation.id)
        assert again is not None and again.status == "cancelled"  # it stays as it ended


async def test_occupied_and_rejected_reservations_end_at_once(db_url: str) -> None:
    async with garage(db_url) as g:
        await g.app.repository.add_id_tag("TAG1")
        expires = g.clock.now() + timedelta(hours=1)
        # Connector 0: ReserveConnectorZeroSupported is false.
        zero = await g.features.add_reservation("CP1", 0, "TAG1", expires)
        row = await command(g.app, "CP1", "ReserveNow", reserve_now_payload(zero))
        assert row["response"] == {"status": "Rejected"}
        # A car is charging: Occupied.
        g.station.arrive(Car(CATALOGUE["renault-zoe-52"], 0.5), "TAG1")
        await eventually(lambda: g.station.transaction_running, "charging")
        busy = await g.features.add_reservation("CP1", 1, "TAG1", expires)
        row = await command(g.app, "CP1", "ReserveNow", reserve_now_payload(busy))
        assert row["response"] == {"status": "Occupied"}
        for r in (zero, busy):
            stored = await g.features.reservation(r.id)
            assert stored is not None and stored.ended_at is not None
        assert await g.features.reservations("CP1", active_only=True) == []


async def test_a_remote_start_for_someone_else_is_refused_while_reserved(db_url: str) -> None:
    async with garage(db_url) as g:
        reservation = await g.features.add_reservation(
            "CP1", 1, "TAG1", g.clock.now() + timedelta(hours=1)
        )
        await command(g.app, "CP1", "ReserveNow", reserve_now_payload(reservation))
        other = await command(g.app, "CP1", "RemoteStartTransaction", {"idTag": "OTHER"})
        assert other["response"] == {"status": "Rejected"}
        mine = await command(
            g.app, "CP1", "RemoteStartTransaction", {"idTag": "TAG1", "connectorId": 1}
        )
        assert mine["response"] == {"status": "Accepted"}


async def test_a_reservation_expires_by_the_clock(db_url: str) -> None:
    """On the simulated clock (20x): a 60 s reservation lapses on the charger (Available
    again) and counts as expired in the CSMS; one that would expire before it is sent is
    refused."""
    async with garage(db_url) as g:
        with pytest.raises(ConfigError, match="expire before"):
            await g.features.add_reservation("CP1", 1, "TAG1", g.clock.now())
        reservation = await g.features.add_reservation(
            "CP1", 1, "TAG1", g.clock.now() + timedelta(seconds=60)
        )
        row = await command(g.app, "CP1", "ReserveNow", reserve_now_payload(reservation))
        assert row["response"] == {"status": "Accepted"}
        await eventually(lambda: _is(g, "Reserved"), "Reserved")
        assert [r.id for r in await g.features.reservations(active_only=True)] == [reservation.id]
        await eventually(lambda: _is(g, "Available"), "the reservation lapsed on the charger")
        assert g.clock.now() >= reservation.expires_at
        assert await g.features.reservations(active_only=True) == []
        stored = await g.features.reservation(reservation.id)
        assert stored is not None and stored.state(g.clock.now()) == "expired"
