"""/metrics: Prometheus text that moves with real OCPP traffic, controller work and the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from csms.app import CsmsApp
from tests.api_support import api_url, client, make_token, start_api_app
from tests.conftest import ws_url
from tests.ocpp_client import RawChargePoint
from tests.test_session_flow import BOOT

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(app: CsmsApp) -> Samples:
    """Every sample of /metrics, fetched without a token like Prometheus does."""
    async with httpx.AsyncClient(base_url=api_url(app)) as http:
        r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def wait_for(check: Callable[[], Any], within_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_metrics_follow_ocpp_traffic(db_url: str) -> None:
    app = await start_api_app(db_url)
    cp: RawChargePoint | None = None
    try:
        await app.repository.add_charge_point("CP1", max_current_a=16, phases=3)
        before = await scrape(app)
        assert value(before, "garagegrid_chargers_connected") == 0
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        await cp.boot(BOOT)
        await cp.ok("Heartbeat", {})
        await cp.ok("Heartbeat", {})
        # Not an OCPP 1.6 action: the CSMS answers CALLERROR NotImplemented.
        refused = await cp.call("MakeCoffee", {})
        assert refused[0] == 4 and refused[2] == "NotImplemented"
        # A command the charger answers, and one it refuses (CALLERROR NotImplemented in).
        cp.handlers["TriggerMessage"] = lambda payload: {"status": "Accepted"}
        token = await make_token(app, "ops", "manager")
        async with client(app, token) as api:
            for action, payload in (
                ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
                ("Reset", {"type": "Soft"}),
            ):
                r = await api.post(
                    "/api/v1/stations/CP1/commands", json={"action": action, "payload": payload}
                )
                assert r.json()["status"] in ("done", "failed")
        await app.repository.set_unmanaged("CP1", True, "test")
        after = await scrape(app)
    finally:
        if cp is not None:
            await cp.close()
        await app.stop()

    def grew(name: str, by: float, **labels: str) -> None:
        delta = value(after, name, **labels) - value(before, name, **labels)
        assert delta == by, (name, labels, delta)

    assert value(after, "garagegrid_chargers_connected") == 1
    assert value(after, "garagegrid_chargers_unmanaged") == 1
    grew("garagegrid_ocpp_messages_total", 1, action="BootNotification", direction="in")
    grew("garagegrid_ocpp_messages_total", 2, action="Heartbeat", direction="in")
    grew("garagegrid_ocpp_messages_total", 1, action="TriggerMessage", direction="out")
    grew("garagegrid_ocpp_messages_total", 1, action="Reset", direction="out")
    # An unknown action is one series, "other": a charger cannot mint new series.
    grew("garagegrid_ocpp_messages_total", 1, action="other", direction="in")
    grew("garagegrid_ocpp_callerrors_total", 1, code="NotImplemented", direction="out")
    grew("garagegrid_ocpp_callerrors_total", 1, code="NotImplemented", direction="in")
    grew("garagegrid_ocpp_call_duration_seconds_count", 1, action="TriggerMessage")
    grew("garagegrid_ocpp_call_duration_seconds_count", 1, action="Reset")
    assert value(after, "garagegrid_ocpp_call_duration_seconds_sum", action="Reset") > value(
        before, "garagegrid_ocpp_call_duration_seconds_sum", action="Reset"
    )
    for kind in ("select", "insert", "update"):
        assert value(
            after, "garagegrid_database_statement_duration_seconds_count", statement=kind
        ) > value(before, "garagegrid_database_statement_duration_seconds_count", statement=kind)
    assert value(after, "garagegrid_api_requests_total", method="POST", status="200") >= 2


async def test_controller_metrics_tick_limits_and_fuse_headroom(db_url: str) -> None:
    app = await start_api_app(db_url, controller=True)
    cp: RawChargePoint | None = None
    try:
        repo = app.repository
        await repo.update_site(fuse_limit_a=40.0, margin_a=2.0, tick_s=0.5)
        await repo.add_charge_point("CP1", max_current_a=16, phases=3)
        await repo.add_id_tag("TAG1")
        before = await scrape(app)
        held: dict[int, float] = {}  # chargingProfileId -> limit it accepted

        def on_set(payload: dict[str, Any]) -> dict[str, Any]:
            profile = payload["csChargingProfiles"]
            held[profile["chargingProfileId"]] = profile["chargingSchedule"][
                "chargingSchedulePeriod"
            ][0]["limit"]
            return {"status": "Accepted"}

        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        cp.handlers["SetChargingProfile"] = on_set
        await cp.boot(BOOT)
        await cp.ok(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
        )
        await cp.ok(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "TAG1",
                "meterStart": 0,
                "timestamp": "2026-01-05T16:00:00Z",
            },
        )

        async def limited() -> bool:
            samples = await scrape(app)
            return value(samples, "garagegrid_limits_sent_total", answer="Accepted") > value(
                before, "garagegrid_limits_sent_total", answer="Accepted"
            )

        await wait_for(limited)
        # The building's meter through the API: L1 carries 10 A more than L2 and L3.
        token = await make_token(app, "meter", "manager")
        async with client(app, token) as api:
            r = await api.post("/api/v1/building-load", json={"l1_a": 10, "l2_a": 0, "l3_a": 0})
            assert r.status_code == 201

        async def shifted() -> bool:
            samples = await scrape(app)
            l1 = value(samples, "garagegrid_fuse_headroom_amperes", site="default", phase="L1")
            l2 = value(samples, "garagegrid_fuse_headroom_amperes", site="default", phase="L2")
            return abs((l2 - l1) - 10.0) < 1e-6

        await wait_for(shifted)
        after = await scrape(app)
        async with client(app, token) as api:
            live = (await api.get("/api/v1/live")).json()
    finally:
        if cp is not None:
            await cp.close()
        await app.stop()

    assert value(after, "garagegrid_controller_tick_duration_seconds_count") > value(
        before, "garagegrid_controller_tick_duration_seconds_count"
    )
    # One three-phase 16 A station on 40 - 2 A: whatever it accepted, the worst case it may
    # draw per phase is at least its largest accepted limit and at most its 16 A maximum.
    l2 = value(after, "garagegrid_fuse_headroom_amperes", site="default", phase="L2")
    l1 = value(after, "garagegrid_fuse_headroom_amperes", site="default", phase="L1")
    assert 38.0 - 16.0 <= l2 <= 38.0 - max(held.values())
    assert l1 == l2 - 10.0
    # The live resource gives the same model's numbers (read a moment later).
    assert len(live["fuse_headroom_a"]) == 3
    assert live["fuse_headroom_a"][1] - live["fuse_headroom_a"][0] == 10.0
