"""Commands through the API: queued in the outbox, sent to a charger connected over a real
socket, its answer returned to the HTTP caller."""

from __future__ import annotations

import asyncio
from typing import Any

from csms.app import CsmsApp
from tests.api_support import PROBLEM, client, make_token, start_api_app
from tests.conftest import ws_url
from tests.ocpp_client import RawChargePoint
from tests.test_session_flow import BOOT


async def test_command_round_trip_to_a_connected_charger(db_url: str) -> None:
    app: CsmsApp = await start_api_app(db_url)
    cp: RawChargePoint | None = None
    try:
        await app.repository.add_charge_point("CP1", max_current_a=16, phases=3)
        manager = await make_token(app, "ops", "manager")
        viewer = await make_token(app, "wall", "viewer")
        cp = await RawChargePoint.connect(ws_url(app, "CP1"))
        await cp.boot(BOOT)
        asked: list[dict[str, Any]] = []

        def on_trigger(payload: dict[str, Any]) -> dict[str, Any]:
            asked.append(payload)
            return {"status": "Accepted"}

        cp.handlers["TriggerMessage"] = on_trigger
        async with client(app, manager) as api:
            r = await api.post(
                "/api/v1/stations/CP1/commands",
                json={"action": "TriggerMessage", "payload": {"requestedMessage": "Heartbeat"}},
            )
            assert r.status_code == 200, r.text
            command = r.json()
            assert command["status"] == "done" and command["response"] == {"status": "Accepted"}
            assert command["requested_by"] == "api:token:ops"
            assert r.headers["location"] == f"/api/v1/commands/{command['id']}"
            # The charger got exactly what the API was given, over its socket.
            assert asked == [{"requestedMessage": "Heartbeat"}]
            assert ("TriggerMessage", {"requestedMessage": "Heartbeat"}) in cp.server_calls

            # A CALLERROR from the charger: the command failed, and says why.
            r = await api.post(
                "/api/v1/stations/CP1/commands",
                json={"action": "Reset", "payload": {"type": "Soft"}},
            )
            assert r.status_code == 200 and r.json()["status"] == "failed"
            assert "NotImplemented" in r.json()["error"]

            # wait_s 0: queued only (202); the command resource tells the rest. (The
            # outbox may have sent it and the charger answered before the route reads the
            # row back: then it says so, 200.)
            r = await api.post(
                "/api/v1/stations/CP1/commands",
                json={
                    "action": "TriggerMessage",
                    "payload": {"requestedMessage": "Heartbeat"},
                    "wait_s": 0,
                },
            )
            assert (r.status_code, r.json()["status"]) in (
                (202, "pending"),
                (202, "sending"),
                (200, "done"),
            )
            queued = r.json()["id"]
            for _ in range(100):
                done = (await api.get(f"/api/v1/commands/{queued}")).json()
                if done["status"] == "done":
                    break
                await asyncio.sleep(0.05)
            assert done["response"] == {"status": "Accepted"}

            r = await api.post("/api/v1/stations/CP1/commands", json={"action": "Explode"})
            assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
            r = await api.post(
                "/api/v1/stations/CP404/commands",
                json={"action": "Reset", "payload": {"type": "Soft"}},
            )
            assert r.status_code == 404
            r = await api.post(
                "/api/v1/stations/CP1/commands",
                json={"action": "TriggerMessage", "payload": {"requestedMessage": "Nonsense"}},
            )
            assert r.json()["status"] == "failed"  # refused before it reached the charger
        async with client(app, viewer) as api:
            listed = (await api.get("/api/v1/commands", params={"station": "CP1"})).json()
            assert [c["action"] for c in listed][:2] == ["TriggerMessage", "TriggerMessage"]
            r = await api.post(
                "/api/v1/stations/CP1/commands",
                json={"action": "Reset", "payload": {"type": "Hard"}},
            )
            assert r.status_code == 403
        assert len([c for c in cp.server_calls if c[0] == "Reset"]) == 1
    finally:
        if cp is not None:
            await cp.close()
        await app.stop()


async def test_command_to_a_charger_that_is_not_connected_fails_at_once(db_url: str) -> None:
    app: CsmsApp = await start_api_app(db_url)
    try:
        await app.repository.add_charge_point("CP1", max_current_a=16, phases=3)
        manager = await make_token(app, "ops", "manager")
        async with client(app, manager) as api:
            r = await api.post(
                "/api/v1/stations/CP1/commands",
                json={"action": "Reset", "payload": {"type": "Soft"}, "wait_s": 20},
            )
        assert r.status_code == 200 and r.json()["status"] == "failed"
        assert "not connected" in r.json()["error"]
    finally:
        await app.stop()
