"""The operator API per site, over real HTTP against the real CSMS on a real SQLite file:
two sites ("default" and "north"), a charger charging at each over a real socket; a
manager token bound to north sees and changes north only (the other site's things are
404, as if they did not exist); an operator token (no site) sees both and names one with
?site= where a single site is meant."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from csms.app import CsmsApp
from csms.auth import Role
from csms.cli import main
from csms.errors import ConfigError
from csms.store.tokens import add_token
from tests.api_support import add_resident, client, make_token, start_api_app
from tests.ocpp_client import RawChargePoint
from tests.test_api_resources import KEY, _charge, assert_problem


@dataclass
class TwoSites:
    app: CsmsApp
    tokens: dict[str, str]
    tx: dict[str, int]  # station -> its running transaction
    commands: dict[str, int]  # station -> a command queued for it
    north_id: int

    def client(self, who: str) -> httpx.AsyncClient:
        return client(self.app, self.tokens[who])


async def _site_token(app: CsmsApp, name: str, role: str, site: str) -> str:
    _info, token = await add_token(
        app.repository.sessionmaker, name, Role(role), user=None, now=app.clock.now(), site=site
    )
    return token


@pytest.fixture
async def sites(db_url: str) -> AsyncIterator[TwoSites]:
    app = await start_api_app(db_url, controller=False)
    chargers: list[RawChargePoint] = []
    try:
        repo = app.repository
        north = await repo.add_site("north", fuse_limit_a=40.0)
        await repo.add_charge_point("CP1", max_current_a=16, phases=3, password=KEY)
        await repo.add_charge_point(
            "CPN", max_current_a=16, phases=3, password=KEY, site_id=north.site_id
        )
        await repo.add_id_tag("TAG1", owner="Alice")
        await repo.add_id_tag("TAGN", owner="Nora", site_id=north.site_id)
        tokens = {
            "operator": await make_token(app, "ops", "manager"),
            "north": await _site_token(app, "north-ops", "manager", "north"),
            "north-viewer": await _site_token(app, "north-wall", "viewer", "north"),
        }
        cp1, tx1 = await _charge(app, "CP1", "TAG1", 300)
        chargers.append(cp1)
        cpn, txn = await _charge(app, "CPN", "TAGN", 100)
        chargers.append(cpn)
        for cp_id, tx in (("CP1", tx1), ("CPN", txn)):
            await repo.add_notification(
                "raised", "Your limit was raised", charge_point_id=cp_id, transaction_id=tx
            )
        commands = {
            cp_id: await repo.enqueue_command(
                cp_id, "TriggerMessage", {"requestedMessage": "Heartbeat"}
            )
            for cp_id in ("CP1", "CPN")
        }
        yield TwoSites(app, tokens, {"CP1": tx1, "CPN": txn}, commands, north.site_id)
    finally:
        for cp in chargers:
            await cp.close()
        await app.stop()


async def test_a_site_bound_token_reads_its_site_only(sites: TwoSites) -> None:
    tx1, txn = sites.tx["CP1"], sites.tx["CPN"]
    for who in ("north", "north-viewer"):
        async with sites.client(who) as north:
            r = await north.get("/api/v1/sites")
            assert r.json() == [{"id": sites.north_id, "name": "north"}]
            assert [x["id"] for x in (await north.get("/api/v1/stations")).json()] == ["CPN"]
            assert_problem(await north.get("/api/v1/stations/CP1"), 404, "not-found")
            assert (await north.get("/api/v1/stations/CPN")).status_code == 200
            sessions = (await north.get("/api/v1/sessions")).json()
            assert [x["transaction_id"] for x in sessions] == [txn]
            assert_problem(await north.get(f"/api/v1/sessions/{tx1}"), 404, "not-found")
            r = await north.get(f"/api/v1/sessions/{tx1}/meter-values")
            assert_problem(r, 404, "not-found")
            assert (await north.get(f"/api/v1/sessions/{txn}/meter-values")).json()
            tags = [x["id_tag"] for x in (await north.get("/api/v1/id-tags")).json()]
            assert tags == ["TAGN"]
            notes = (await north.get("/api/v1/notifications")).json()
            assert [x["charge_point_id"] for x in notes] == ["CPN"]
            r = await north.get("/api/v1/notifications", params={"transaction_id": tx1})
            assert_problem(r, 404, "not-found")
            commands = (await north.get("/api/v1/commands")).json()
            assert [x["charge_point_id"] for x in commands] == ["CPN"]
            r = await north.get(f"/api/v1/commands/{sites.commands['CP1']}")
            assert_problem(r, 404, "not-found")
            site = (await north.get("/api/v1/site")).json()
            assert (site["name"], site["fuse_limit_a"]) == ("north", 40.0)
            live = (await north.get("/api/v1/live")).json()
            assert [x["charge_point_id"] for x in live["sessions"]] == ["CPN"]
            assert live["fuse_limit_a"] == 40.0
            # Another site's name is as unknown as a name nobody uses.
            r = await north.get("/api/v1/site", params={"site": "default"})
            assert_problem(r, 404, "not-found")
            assert (await north.get("/api/v1/site", params={"site": "north"})).status_code == 200


async def test_a_site_bound_manager_cannot_change_the_other_site(sites: TwoSites) -> None:
    repo = sites.app.repository
    default_before = await repo.site_config(1)
    async with sites.client("north") as north:
        r = await north.patch("/api/v1/stations/CP1", json={"name": "taken over"})
        assert_problem(r, 404, "not-found")
        assert_problem(await north.delete("/api/v1/stations/CP1"), 404, "not-found")
        r = await north.post(
            "/api/v1/stations/CP1/commands",
            json={"action": "Reset", "payload": {"type": "Soft"}, "wait_s": 0},
        )
        assert_problem(r, 404, "not-found")
        r = await north.patch(f"/api/v1/sessions/{sites.tx['CP1']}", json={"energy_needed_kwh": 5})
        assert_problem(r, 404, "not-found")
        r = await north.patch("/api/v1/id-tags/TAG1", json={"blocked": True})
        assert_problem(r, 404, "not-found")
        # What it may change is north's.
        r = await north.patch("/api/v1/site", json={"fuse_limit_a": 50})
        assert r.status_code == 200, r.text
        r = await north.post("/api/v1/building-load", json={"l1_a": 5, "l2_a": 6, "l3_a": 7})
        assert r.status_code == 201, r.text
        r = await north.post("/api/v1/stations", json={"id": "CPN2", "max_current_a": 16})
        assert r.status_code == 201, r.text
        r = await north.post("/api/v1/id-tags", json={"id_tag": "TAGN2"})
        assert r.status_code == 201, r.text
    station = await repo.get_charge_point("CP1")
    assert station is not None and station.name != "taken over"
    tag1 = next(t for t in await repo.list_id_tags() if t["id_tag"] == "TAG1")
    assert not tag1["blocked"]
    assert (await repo.get_command(sites.commands["CP1"])) is not None
    assert [c.id for c in await repo.list_charge_points(1)] == ["CP1"]
    assert (await repo.site_config(1)) == default_before
    assert (await repo.site_config(sites.north_id)).fuse_limit_a == 50.0
    assert await repo.latest_building_load(1) is None
    latest = await repo.latest_building_load(sites.north_id)
    assert latest is not None and latest[1] == (5.0, 6.0, 7.0)
    new = await repo.get_charge_point("CPN2")
    assert new is not None and new.site_id == sites.north_id
    tags = {t["id_tag"]: t["site_id"] for t in await repo.list_id_tags()}
    assert tags["TAGN2"] == sites.north_id


async def test_an_operator_token_sees_every_site_and_names_one(sites: TwoSites) -> None:
    async with sites.client("operator") as ops:
        names = [x["name"] for x in (await ops.get("/api/v1/sites")).json()]
        assert names == ["default", "north"]
        ids = sorted(x["id"] for x in (await ops.get("/api/v1/stations")).json())
        assert ids == ["CP1", "CPN"]
        assert len((await ops.get("/api/v1/sessions")).json()) == 2
        r = await ops.get("/api/v1/stations", params={"site": "north"})
        assert [x["id"] for x in r.json()] == ["CPN"]
        assert (await ops.get("/api/v1/stations/CP1")).status_code == 200
        assert (await ops.get("/api/v1/stations/CPN")).status_code == 200
        # One site meant, several seen: a problem naming them.
        for path in ("/api/v1/site", "/api/v1/building-load", "/api/v1/live"):
            body = assert_problem(await ops.get(path), 422, "site-ambiguous")
            assert body["sites"] == ["default", "north"]
        r = await ops.post("/api/v1/stations", json={"id": "CPX", "max_current_a": 16})
        assert_problem(r, 422, "site-ambiguous")
        assert_problem(await ops.get("/api/v1/site", params={"site": "nowhere"}), 404, "not-found")
        r = await ops.patch("/api/v1/site", params={"site": "north"}, json={"margin_a": 3})
        assert r.status_code == 200 and r.json()["name"] == "north"
        assert r.json()["margin_a"] == 3.0
        r = await ops.get("/api/v1/live", params={"site": "default"})
        assert [x["charge_point_id"] for x in r.json()["sessions"]] == ["CP1"]
        r = await ops.patch(f"/api/v1/sessions/{sites.tx['CPN']}", json={"energy_needed_kwh": 5})
        assert r.status_code == 200, r.text
    assert (await sites.app.repository.site_config(1)).margin_a != 3.0


async def test_a_resident_acts_within_its_accounts_site(sites: TwoSites) -> None:
    repo = sites.app.repository
    token = await add_resident(sites.app, "nora", stations=["CPN"], tags=["TAGN"])
    await repo.set_user_site("nora", sites.north_id)
    async with client(sites.app, token) as nora:
        assert [x["name"] for x in (await nora.get("/api/v1/sites")).json()] == ["north"]
        assert (await nora.get("/api/v1/site")).json()["name"] == "north"
        assert_problem(await nora.get(f"/api/v1/sessions/{sites.tx['CP1']}"), 404, "not-found")


async def test_a_token_is_bound_to_a_site_that_exists_and_not_a_residents(
    sites: TwoSites,
) -> None:
    sm, now = sites.app.repository.sessionmaker, sites.app.clock.now()
    with pytest.raises(ConfigError, match="no site 'south'"):
        await add_token(sm, "south-ops", Role.manager, user=None, now=now, site="south")
    with pytest.raises(ConfigError, match="resident"):
        await add_token(sm, "r", Role.resident, user="nobody", now=now, site="north")


def test_csms_token_add_binds_a_token_to_a_named_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sites.db'}"
    assert main(["--database-url", url, "site", "add", "north"]) == 0
    capsys.readouterr()
    code = main(
        ["--database-url", url, "token", "add", "n", "--role", "manager", "--site", "north"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "on site north" in err and out.strip().startswith("gg_")
    code = main(["--database-url", url, "token", "add", "s", "--role", "viewer", "--site", "south"])
    _, err = capsys.readouterr()
    assert code == 2 and "no site 'south'" in err
    assert main(["--database-url", url, "token", "add", "ops", "--role", "manager"]) == 0
    capsys.readouterr()
    assert main(["--database-url", url, "token", "list", "--json"]) == 0
    listed = {t["name"]: t["site"] for t in json.loads(capsys.readouterr().out)}
    assert listed == {"n": "north", "ops": None}
