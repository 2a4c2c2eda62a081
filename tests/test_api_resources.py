"""The operator API's resources over real HTTP, against the real CSMS on a real SQLite file,
with two real chargers charging over real sockets; role checks for every resource."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from csms.app import CsmsApp
from tests.api_support import PROBLEM, add_resident, client, make_token, start_api_app
from tests.conftest import T0, ws_url
from tests.ocpp_client import RawChargePoint
from tests.test_session_flow import BOOT, meter_value

KEY = "api-test-station-key"


@dataclass
class Garage:
    app: CsmsApp
    tokens: dict[str, str]
    tx: dict[str, int]  # station -> its running transaction
    chargers: list[RawChargePoint]

    def client(self, who: str) -> httpx.AsyncClient:
        return client(self.app, self.tokens[who])


async def _charge(
    app: CsmsApp, cp_id: str, tag: str, energy_wh: float
) -> tuple[RawChargePoint, int]:
    cp = await RawChargePoint.connect(ws_url(app, cp_id), password=KEY)
    await cp.boot(BOOT)
    await cp.ok(
        "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
    )
    start = await cp.ok(
        "StartTransaction",
        {"connectorId": 1, "idTag": tag, "meterStart": 1000, "timestamp": "2026-01-05T16:00:00Z"},
    )
    tx = int(start["transactionId"])
    await cp.ok(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [
                meter_value("2026-01-05T16:01:00Z", 1000 + energy_wh / 2, 16),
                meter_value("2026-01-05T16:02:00Z", 1000 + energy_wh, 16),
            ],
        },
    )
    return cp, tx


@pytest.fixture
async def garage(db_url: str) -> AsyncIterator[Garage]:
    app = await start_api_app(db_url)
    chargers: list[RawChargePoint] = []
    try:
        repo = app.repository
        await repo.add_charge_point("CP1", max_current_a=16, phases=3, password=KEY, name="Apt A")
        await repo.add_charge_point("CP2", max_current_a=32, phases=1, wiring="L2", password=KEY)
        await repo.add_id_tag("TAG1", owner="Alice")
        await repo.add_id_tag("TAG2", owner="Bob")
        tokens = {
            "manager": await make_token(app, "ops", "manager"),
            "viewer": await make_token(app, "wall-display", "viewer"),
            "alice": await add_resident(app, "alice", stations=["CP1"], tags=["TAG1"]),
            "bob": await add_resident(app, "bob", stations=["CP2"], tags=["TAG2"]),
        }
        cp1, tx1 = await _charge(app, "CP1", "TAG1", 300)
        cp2, tx2 = await _charge(app, "CP2", "TAG2", 100)
        chargers = [cp1, cp2]
        await repo.add_notification(
            "raised",
            "Your limit was raised to 16 A",
            charge_point_id="CP1",
            transaction_id=tx1,
            id_tag="TAG1",
        )
        await repo.add_notification(
            "lowered",
            "Your limit was lowered to 6 A",
            charge_point_id="CP2",
            transaction_id=tx2,
            id_tag="TAG2",
        )
        yield Garage(app, tokens, {"CP1": tx1, "CP2": tx2}, chargers)
    finally:
        for cp in chargers:
            await cp.close()
        await app.stop()


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:garagegrid:problem:{kind}"
    assert body["title"] and body["instance"] == response.request.url.path
    return body


# ------------------------------------------------------------------------ tokens
async def test_requests_without_a_valid_token_get_401_problems(garage: Garage) -> None:
    async with client(garage.app, None) as anonymous:
        r = await anonymous.get("/api/v1/sessions")
        assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
    async with client(garage.app, "gg_not-a-real-token") as forged:
        r = await forged.get("/api/v1/sessions")
        assert_problem(r, 401, "invalid-token")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{garage.app.api.port}") as basic:  # type: ignore[union-attr]
        r = await basic.get("/api/v1/site", auth=("ops", garage.tokens["manager"]))
        assert_problem(r, 401, "unauthorized")


async def test_me_names_the_account_and_its_scope(garage: Garage) -> None:
    async with garage.client("alice") as alice, garage.client("manager") as manager:
        assert (await alice.get("/api/v1/me")).json() == {
            "name": "alice",
            "role": "resident",
            "stations": ["CP1"],
            "tags": ["TAG1"],
            "site": None,
        }
        assert (await manager.get("/api/v1/me")).json()["name"] == "token:ops"


async def test_a_removed_account_takes_its_tokens_with_it(garage: Garage) -> None:
    async with garage.client("bob") as bob:
        assert (await bob.get("/api/v1/me")).status_code == 200
        await garage.app.repository.remove_user("bob")
        assert_problem(await bob.get("/api/v1/sessions"), 401, "invalid-token")
    async with garage.client("alice") as alice:
        assert (await alice.get("/api/v1/me")).status_code == 200


# -------------------------------------------------------------------------- site
async def test_site_is_read_by_all_and_changed_by_managers_only(garage: Garage) -> None:
    async with garage.client("manager") as manager:
        site = (await manager.get("/api/v1/site")).json()
        assert site["fuse_limit_a"] == 63.0
        r = await manager.patch("/api/v1/site", json={"fuse_limit_a": 80, "margin_a": 3})
        assert r.status_code == 200, r.text
        assert (r.json()["fuse_limit_a"], r.json()["margin_a"]) == (80.0, 3.0)
        assert (await garage.app.repository.site_config()).fuse_limit_a == 80.0
        assert_problem(
            await manager.patch("/api/v1/site", json={"phases": 2}), 422, "invalid-value"
        )
        body = assert_problem(
            await manager.patch("/api/v1/site", json={"fuse_limt_a": 1}), 422, "validation"
        )
        assert body["errors"][0]["loc"][-1] == "fuse_limt_a"
    for who in ("viewer", "alice"):
        async with garage.client(who) as other:
            assert (await other.get("/api/v1/site")).status_code == 200
            assert_problem(
                await other.patch("/api/v1/site", json={"fuse_limit_a": 10}), 403, "forbidden"
            )
    assert (await garage.app.repository.site_config()).fuse_limit_a == 80.0


async def test_building_load_reading_reaches_the_controllers_input(garage: Garage) -> None:
    async with garage.client("manager") as manager:
        r = await manager.post("/api/v1/building-load", json={"l1_a": 20, "l2_a": 5.5, "l3_a": 0})
        assert r.status_code == 201, r.text
        assert (r.json()["l1_a"], r.json()["l2_a"], r.json()["l3_a"]) == (20.0, 5.5, 0.0)
        assert_problem(
            await manager.post("/api/v1/building-load", json={"l1_a": -1, "l2_a": 0, "l3_a": 0}),
            422,
            "validation",
        )
    # The controller reads the newest reading from the store (Controller._snapshot).
    latest = await garage.app.repository.latest_building_load()
    assert latest is not None and latest[1] == (20.0, 5.5, 0.0)
    # Measured on the garage's clock, which the controller compares it with.
    assert abs(latest[0] - garage.app.clock.now()) < timedelta(seconds=30)
    async with garage.client("viewer") as viewer:
        assert (await viewer.get("/api/v1/building-load")).json()["l2_a"] == 5.5
        assert_problem(
            await viewer.post("/api/v1/building-load", json={"l1_a": 1, "l2_a": 1, "l3_a": 1}),
            403,
            "forbidden",
        )


# ---------------------------------------------------------------------- stations
async def test_stations_crud_state_and_scope(garage: Garage) -> None:
    async with garage.client("manager") as manager:
        listed = {s["id"]: s for s in (await manager.get("/api/v1/stations")).json()}
        assert set(listed) == {"CP1", "CP2"}
        cp1 = listed["CP1"]
        assert cp1["connected"] is True and cp1["vendor"] == "Acme" and cp1["password_set"]
        assert cp1["connectors"][0]["status"] == "Charging"
        assert "password" not in cp1 and KEY not in (await manager.get("/api/v1/stations")).text
        r = await manager.post(
            "/api/v1/stations",
            json={
                "id": "CP9",
                "max_current_a": 16,
                "phases": 1,
                "wiring": "L3",
                "password": "k" * 20,
            },
        )
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/api/v1/stations/CP9"
        assert (r.json()["wiring"], r.json()["security_profile"]) == ("L3", 1)
        assert_problem(
            await manager.post("/api/v1/stations", json={"id": "CP9"}), 422, "invalid-value"
        )
        r = await manager.patch("/api/v1/stations/CP9", json={"name": "Guest", "max_current_a": 20})
        assert (r.json()["name"], r.json()["max_current_a"]) == ("Guest", 20.0)
        assert_problem(
            await manager.patch("/api/v1/stations/CP9", json={"max_current_a": 500}),
            422,
            "invalid-value",
        )
        assert (await manager.delete("/api/v1/stations/CP9")).status_code == 204
        assert_problem(await manager.get("/api/v1/stations/CP9"), 404, "not-found")
        assert await garage.app.repository.get_charge_point("CP9") is None
    async with garage.client("alice") as alice:
        assert [s["id"] for s in (await alice.get("/api/v1/stations")).json()] == ["CP1"]
        assert (await alice.get("/api/v1/stations/CP1")).status_code == 200
        assert_problem(await alice.get("/api/v1/stations/CP2"), 403, "forbidden")
        assert_problem(await alice.delete("/api/v1/stations/CP1"), 403, "forbidden")
    async with garage.client("viewer") as viewer:
        assert len((await viewer.get("/api/v1/stations")).json()) == 2
        assert_problem(await viewer.post("/api/v1/stations", json={"id": "X1"}), 403, "forbidden")
        assert_problem(
            await viewer.patch("/api/v1/stations/CP1", json={"name": "x"}), 403, "forbidden"
        )
    assert await garage.app.repository.get_charge_point("X1") is None


async def test_station_capabilities_show_what_the_charger_reported(garage: Garage) -> None:
    from csms.controller.capabilities import Capabilities

    await garage.app.repository.set_capabilities(
        "CP1",
        Capabilities(
            rate_units=frozenset({"Current"}),
            max_stack_level=3,
            max_profiles=4,
            max_periods=None,
            phase_rotation={1: "RST"},
            meter_sample_interval_s=60,
            sampled_data=None,
        ),
        T0,
    )
    async with garage.client("viewer") as viewer:
        caps = (await viewer.get("/api/v1/stations/CP1")).json()["capabilities"]
        assert caps["rate_units"] == ["Current"] and caps["max_stack_level"] == 3
        assert caps["max_profiles"] == 4 and caps["read_at"].startswith("2026-01-05T16:00")
        assert (await viewer.get("/api/v1/stations/CP2")).json()["capabilities"] is None


# ----------------------------------------------------------------------- id tags
async def test_id_tags_listed_added_blocked(garage: Garage) -> None:
    async with garage.client("manager") as manager:
        r = await manager.post("/api/v1/id-tags", json={"id_tag": "TAG3", "owner": "Carol"})
        assert r.status_code == 201 and r.json()["owner"] == "Carol"
        assert_problem(
            await manager.post("/api/v1/id-tags", json={"id_tag": "X" * 21}), 422, "validation"
        )
        assert_problem(
            await manager.post("/api/v1/id-tags", json={"id_tag": "TAG3"}), 422, "invalid-value"
        )
        assert (await manager.patch("/api/v1/id-tags/TAG3", json={"blocked": True})).json()[
            "blocked"
        ]
        assert_problem(
            await manager.patch("/api/v1/id-tags/NOPE", json={"blocked": True}), 404, "not-found"
        )
    assert (await garage.app.repository.authorize("TAG3")).status == "Blocked"
    async with garage.client("alice") as alice:
        assert [t["id_tag"] for t in (await alice.get("/api/v1/id-tags")).json()] == ["TAG1"]
        assert_problem(
            await alice.post("/api/v1/id-tags", json={"id_tag": "MINE"}), 403, "forbidden"
        )
        assert_problem(await alice.get("/api/v1/commands"), 403, "forbidden")
    async with garage.client("viewer") as viewer:
        assert len((await viewer.get("/api/v1/id-tags")).json()) == 3
        assert_problem(
            await viewer.patch("/api/v1/id-tags/TAG1", json={"blocked": True}), 403, "forbidden"
        )


# ---------------------------------------------------------------------- sessions
async def test_a_resident_reads_only_their_own_sessions(garage: Garage) -> None:
    tx1, tx2 = garage.tx["CP1"], garage.tx["CP2"]
    async with garage.client("alice") as alice:
        mine = (await alice.get("/api/v1/sessions")).json()
        assert [s["transaction_id"] for s in mine] == [tx1]
        assert mine[0]["energy_wh"] == pytest.approx(300) and mine[0]["open"] is True
        assert (await alice.get(f"/api/v1/sessions/{tx1}")).json()["id_tag"] == "TAG1"
        assert_problem(await alice.get(f"/api/v1/sessions/{tx2}"), 403, "forbidden")
        assert (await alice.get("/api/v1/sessions", params={"station": "CP2"})).json() == []
        assert_problem(
            await alice.get("/api/v1/sessions", params={"from": "2026-01-05T00:00:00"}),
            422,
            "invalid-value",
        )
        since = (
            await alice.get("/api/v1/sessions", params={"from": "2026-01-05T17:00:00+00:00"})
        ).json()
        assert since == []  # started at 16:00
        assert_problem(await alice.get(f"/api/v1/sessions/{tx2}/meter-values"), 403, "forbidden")
    async with garage.client("viewer") as viewer:
        everyone = (await viewer.get("/api/v1/sessions", params={"open": "true"})).json()
        assert {s["transaction_id"] for s in everyone} == {tx1, tx2}
        assert_problem(await viewer.get("/api/v1/sessions/99999"), 404, "not-found")


async def test_departure_and_need_set_by_the_resident_of_the_car(garage: Garage) -> None:
    tx1, tx2 = garage.tx["CP1"], garage.tx["CP2"]
    departure = (garage.app.clock.now() + timedelta(hours=10)).replace(microsecond=0)
    body = {"departure_at": departure.isoformat(), "energy_needed_kwh": 22.5}
    async with garage.client("alice") as alice:
        r = await alice.patch(f"/api/v1/sessions/{tx1}", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["energy_needed_wh"] == pytest.approx(22500)
        assert_problem(await alice.patch(f"/api/v1/sessions/{tx2}", json=body), 403, "forbidden")
        past = {"departure_at": (garage.app.clock.now() - timedelta(hours=1)).isoformat()}
        assert_problem(
            await alice.patch(f"/api/v1/sessions/{tx1}", json=past), 422, "invalid-value"
        )
        assert_problem(
            await alice.patch(f"/api/v1/sessions/{tx1}", json={"energy_needed_kwh": 0}),
            422,
            "validation",
        )
    stored = await garage.app.repository.get_transaction(tx1)
    other = await garage.app.repository.get_transaction(tx2)
    assert stored is not None and other is not None
    assert stored["departure_at"] == departure and stored["energy_needed_wh"] == 22500
    assert other["departure_at"] is None and other["energy_needed_wh"] is None
    async with garage.client("viewer") as viewer:
        assert_problem(await viewer.patch(f"/api/v1/sessions/{tx2}", json=body), 403, "forbidden")
    async with garage.client("manager") as manager:
        r = await manager.patch(
            f"/api/v1/sessions/{tx2}", json={"target_soc_pct": 80, "battery_kwh": 60}
        )
        assert r.status_code == 200 and r.json()["target_soc"] == pytest.approx(0.8)
    # Every write, done or refused, is audited as the monitor's are.
    from csms.store import queries

    audit = await queries.audit_log(garage.app.repository.sessionmaker)
    rows = {(a, o) for a, o in zip(audit["actor"], audit["outcome"], strict=True)}
    assert ("alice", "ok") in rows and ("alice", "denied") in rows
    assert ("token:wall-display", "denied") in rows and ("token:ops", "ok") in rows


async def test_an_ended_session_takes_no_departure(garage: Garage) -> None:
    tx1 = garage.tx["CP1"]
    await garage.chargers[0].ok(
        "StopTransaction",
        {
            "transactionId": tx1,
            "meterStop": 5000,
            "timestamp": "2026-01-05T17:00:00Z",
            "reason": "EVDisconnected",
        },
    )
    async with garage.client("alice") as alice:
        later = (garage.app.clock.now() + timedelta(hours=2)).isoformat()
        assert_problem(
            await alice.patch(f"/api/v1/sessions/{tx1}", json={"departure_at": later}),
            409,
            "session-ended",
        )
        ended = (await alice.get(f"/api/v1/sessions/{tx1}")).json()
        assert ended["open"] is False and ended["energy_wh"] == pytest.approx(4000)


async def test_meter_values_export_as_json_and_csv(garage: Garage) -> None:
    tx1 = garage.tx["CP1"]
    async with garage.client("alice") as alice:
        as_json = (await alice.get(f"/api/v1/sessions/{tx1}/meter-values")).json()
        # 2 meterValues x (energy, power, 3 currents, offered, SoC) as the charger sent them
        assert len(as_json) == 14
        energy = [v for v in as_json if v["measurand"] == "Energy.Active.Import.Register"]
        assert [v["value"] for v in energy] == [1150.0, 1300.0]
        assert not any(v["flag"] for v in as_json)
        assert {v["phase"] for v in as_json if v["measurand"] == "Current.Import"} == {
            "L1",
            "L2",
            "L3",
        }
        r = await alice.get(f"/api/v1/sessions/{tx1}/meter-values", params={"format": "csv"})
        assert r.headers["content-type"].startswith("text/csv")
        assert f"transaction-{tx1}.csv" in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == 14 and {row["transaction_id"] for row in rows} == {str(tx1)}
        assert rows[0]["timestamp"].startswith("2026-01-05T16:01:00")
        r = await alice.get(f"/api/v1/sessions/{tx1}/meter-values", headers={"Accept": "text/csv"})
        assert r.text.splitlines()[0].startswith("transaction_id,timestamp")


# ---------------------------------------------------------------- live, notices
async def test_live_load_sums_limits_and_hides_other_residents_cars(garage: Garage) -> None:
    repo = garage.app.repository
    now = garage.app.clock.now()
    await repo.record_allocations(
        [
            {
                "decided_at": now,
                "charge_point_id": "CP1",
                "connector_id": 1,
                "transaction_id": garage.tx["CP1"],
                "limit_a": 10.0,
                "strategy": "llf",
            },
            {
                "decided_at": now,
                "charge_point_id": "CP2",
                "connector_id": 1,
                "transaction_id": garage.tx["CP2"],
                "limit_a": 16.0,
                "strategy": "llf",
            },
        ]
    )
    async with garage.client("viewer") as viewer:
        live = (await viewer.get("/api/v1/live")).json()
        # CP1: 3 phases at 10 A; CP2: one phase wired to L2 at 16 A.
        assert live["limits_a"] == [10.0, 26.0, 10.0]
        assert live["power_w"] == pytest.approx(2 * 16 * 230 * 3)
        assert {s["charge_point_id"] for s in live["sessions"]} == {"CP1", "CP2"}
    async with garage.client("bob") as bob:
        live = (await bob.get("/api/v1/live")).json()
        assert [s["charge_point_id"] for s in live["sessions"]] == ["CP2"]
        assert live["sessions"][0]["limit_a"] == 16.0


async def test_notifications_are_scoped_to_the_resident(garage: Garage) -> None:
    async with garage.client("alice") as alice:
        notes = (await alice.get("/api/v1/notifications")).json()
        assert [n["kind"] for n in notes] == ["raised"]
        assert_problem(
            await alice.get("/api/v1/notifications", params={"transaction_id": garage.tx["CP2"]}),
            403,
            "forbidden",
        )
    async with garage.client("manager") as manager:
        assert len((await manager.get("/api/v1/notifications")).json()) == 2


# ------------------------------------------------------------------------ OpenAPI
async def test_openapi_document_describes_every_resource(garage: Garage) -> None:
    async with client(garage.app, None) as anonymous:
        doc = (await anonymous.get("/api/v1/openapi.json")).json()
        assert (await anonymous.get("/api/v1/docs")).status_code == 200
        assert_problem(await anonymous.get("/api/v1/no-such-thing"), 404, "not-found")
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/site", "patch"),
        ("/api/v1/building-load", "post"),
        ("/api/v1/stations", "post"),
        ("/api/v1/stations/{cp_id}", "delete"),
        ("/api/v1/id-tags", "post"),
        ("/api/v1/sessions", "get"),
        ("/api/v1/sessions/{transaction_id}", "patch"),
        ("/api/v1/sessions/{transaction_id}/meter-values", "get"),
        ("/api/v1/live", "get"),
        ("/api/v1/stations/{cp_id}/commands", "post"),
        ("/api/v1/commands/{command_id}", "get"),
        ("/api/v1/notifications", "get"),
    ]:
        operation = paths[path][method]
        assert operation["security"] == [{"token": []}], path
        assert "application/problem+json" in operation["responses"]["403"]["content"], path
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert "ProblemDetails" in doc["components"]["schemas"]
    assert "/metrics" not in paths
    # Every reference in the document resolves to one of its schemas.
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(doc)
    prefix = "#/components/schemas/"
    assert refs and all(r.startswith(prefix) for r in refs)
    assert {r.removeprefix(prefix) for r in refs} <= set(doc["components"]["schemas"])
    assert "MeterValue" in doc["components"]["schemas"]
