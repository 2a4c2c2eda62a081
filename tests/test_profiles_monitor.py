"""The monitor's station page, tab "Lists, reservations, firmware" (issue 13 item 4):
a manager reserves a connector, triggers a message, asks the list version and marks a
station to be accepted at once; each goes into the command outbox (or the station row)
with the manager's name and an audit row. Rendered with Streamlit's AppTest."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from csms.clock import ClockAnchor
from csms.store import migrate
from csms.store import models as m
from csms.store.engine import DATABASE_URL_ENV, create_engine, create_sessionmaker
from csms.store.repository import Repository
from tests.conftest import T0
from tests.test_monitor_apptest import APP, log_in_as_manager


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches() -> Iterator[None]:
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def run(url: str, fn: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            return await fn(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def garage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'garage.db'}"

    async def seed(sm: Any) -> None:
        repo = Repository(sm)
        await repo.add_charge_point("CP1", name="Apt A1")
        await repo.add_id_tag("TAG1")
        await repo.publish_clock(ClockAnchor.frozen(T0), "test")

    run(url, seed)
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    return url


def commands(url: str) -> list[tuple[str, dict[str, Any], str]]:
    async def get(sm: Any) -> list[tuple[str, dict[str, Any], str]]:
        async with sm() as s:
            rows = (await s.execute(select(m.Command).order_by(m.Command.id))).scalars()
            return [(r.action, r.payload, r.requested_by) for r in rows]

    return list(run(url, get))


def test_a_manager_reserves_triggers_and_asks_the_list_version(garage: str) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    log_in_as_manager(at, "stations")
    at.selectbox(key="manage_station").set_value("CP1").run()
    assert not at.exception, [e.value for e in at.exception]
    captions = "\n".join(str(c.value) for c in at.caption)
    assert "List: not asked yet" in captions and "No reservation yet." in captions

    at.text_input(key="reserve_tag").set_value("TAG1")
    at.number_input(key="reserve_minutes").set_value(45)
    at.button(key="reserve_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.selectbox(key="trigger_message").set_value("StatusNotification")
    at.button(key="trigger_send").click().run()
    at.button(key="ll_version").click().run()
    assert not at.exception, [e.value for e in at.exception]

    queued = commands(garage)
    assert [c[0] for c in queued] == ["ReserveNow", "TriggerMessage", "GetLocalListVersion"]
    assert all(c[2] == "monitor:mia" for c in queued)
    reserve = queued[0][1]
    # 45 minutes after the CSMS's clock (the published anchor), not this computer's.
    assert reserve["idTag"] == "TAG1" and reserve["expiryDate"] == "2026-01-05T16:45:00Z"
    assert queued[1][1] == {"requestedMessage": "StatusNotification"}
    # The reservation is in the table, waiting for its answer.
    [table] = [d.value for d in at.dataframe if "Id tag" in d.value.columns]
    assert list(table["Id tag"]) == ["TAG1"] and list(table["State"]) == ["requested"]


def test_a_manager_marks_a_station_to_be_accepted_at_once(garage: str) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    log_in_as_manager(at, "stations")
    at.selectbox(key="manage_station").set_value("CP1").run()
    at.checkbox(key="accept_boot_at_once").check().run()
    assert not at.exception, [e.value for e in at.exception]

    async def flag(sm: Any) -> bool:
        async with sm() as s:
            row = await s.get(m.ChargePoint, "CP1")
            return bool(row.accept_boot_at_once)

    assert run(garage, flag) is True

    async def audited(sm: Any) -> list[str]:
        async with sm() as s:
            rows = (await s.execute(select(m.AuditEntry.action))).scalars()
            return list(rows)

    assert "edit station" in run(garage, audited)
