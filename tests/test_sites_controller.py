"""Two sites on one `csms serve` over real sockets (issue 12 item 1): each site's
controller plans only its own chargers against its own fuse, a booting charger is
prepared by its site's controller, and a fuse change on one site leaves the other's
chargers alone."""

from __future__ import annotations

from typing import Any

from csms.app import CsmsApp
from tests.conftest import start_app, wait_for, ws_url
from tests.ocpp_client import RawChargePoint

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


class Site:
    """What every charger of one site would let a car draw now, from what it accepted."""

    def __init__(self, capacity_a: float) -> None:
        self.capacity_a = capacity_a
        self.tx_limit: dict[str, float] = {}
        self.default: dict[str, float] = {}
        self.running: dict[str, int | None] = {}
        self.calls: dict[str, int] = {}
        self.violations: list[dict[str, float]] = []

    def may_draw(self, cp: str) -> float:
        if self.running.get(cp) is not None and cp in self.tx_limit:
            return self.tx_limit[cp]
        return self.default.get(cp, 16.0)

    def total(self) -> float:
        return sum(self.may_draw(cp) for cp in self.running)

    def handler(self, cp: str) -> Any:
        def on_set(payload: dict[str, Any]) -> dict[str, Any]:
            self.calls[cp] = self.calls.get(cp, 0) + 1
            profile = payload["csChargingProfiles"]
            limit = profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            purpose = profile["chargingProfilePurpose"]
            if purpose == "TxProfile":
                if profile.get("transactionId") != self.running.get(cp):
                    return {"status": "Rejected"}
                self.tx_limit[cp] = float(limit)
            elif purpose == "TxDefaultProfile":
                self.default[cp] = float(limit)
            # Only a site's limits change its total: the fuse must hold at every instant.
            if self.running and self.total() > self.capacity_a + 1e-9:
                self.violations.append({c: self.may_draw(c) for c in self.running})
            return {"status": "Accepted"}

        return on_set


async def test_two_sites_on_one_serve_each_hold_their_own_fuse(db_url: str) -> None:
    app: CsmsApp = await start_app(db_url, controller=False)
    repo = app.repository
    # Site 1 ("default"): 20 A fuse, 18 A to share; site 2 ("Berg"): 32 A, 30 A to share.
    await repo.update_site(fuse_limit_a=20.0, margin_a=2.0, strategy="llf", tick_s=0.5)
    berg = await repo.add_site("Berg", fuse_limit_a=32.0, margin_a=2.0, strategy="llf", tick_s=0.5)
    for site_id, prefix in ((1, "A"), (berg.site_id, "B")):
        for n in (1, 2):
            await repo.add_charge_point(f"{prefix}{n}", max_current_a=16, phases=3, site_id=site_id)
            await repo.add_id_tag(f"T{prefix}{n}", site_id=site_id)
    await app.stop()

    # `csms serve` with load management over the two sites (a sped-up clock: calm limits).
    app = await start_app(db_url, controller=True, speed=30.0)
    repo = app.repository
    sites = {"A": Site(18.0), "B": Site(30.0)}
    chargers: dict[str, RawChargePoint] = {}
    try:
        assert app.sites is not None and sorted(app.sites.controllers) == [1, berg.site_id]
        for prefix, site in sites.items():
            for n in (1, 2):
                cp_id = f"{prefix}{n}"
                cp = await RawChargePoint.connect(ws_url(app, cp_id))
                cp.handlers["SetChargingProfile"] = site.handler(cp_id)
                # Pending until its site's controller installed its fail-safe profiles;
                # counted once Accepted (a Pending charger starts no transaction, 4.2).
                await cp.boot(BOOT)
                site.running[cp_id] = None
                await cp.ok(
                    "StatusNotification",
                    {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
                )
                chargers[cp_id] = cp
        await wait_for(lambda: all(len(s.default) == 2 for s in sites.values()))

        for prefix, site in sites.items():
            for n in (1, 2):
                cp_id = f"{prefix}{n}"
                answer = await chargers[cp_id].ok(
                    "StartTransaction",
                    {
                        "connectorId": 1,
                        "idTag": f"T{cp_id}",
                        "meterStart": 0,
                        "timestamp": "2026-01-05T16:00:00Z",
                    },
                )
                site.running[cp_id] = int(answer["transactionId"])
        # Each site shares its own fuse: site A's two cars 9 A each (18 A), site B's two
        # cars their 16 A maximum (32 A would exceed 30 A: 15 A each).
        await wait_for(
            lambda: (
                len(sites["A"].tx_limit) == 2
                and len(sites["B"].tx_limit) == 2
                and sites["A"].total() >= 17
                and sites["B"].total() >= 29
            )
        )
        assert sites["A"].total() <= 18.0 and sites["B"].total() <= 30.0
        assert max(sites["A"].tx_limit.values()) < min(sites["B"].tx_limit.values())

        # A fuse change on site A: its chargers come down, site B's hear nothing.
        b_calls, b_limits = dict(sites["B"].calls), dict(sites["B"].tx_limit)
        sites["A"].capacity_a = 12.0
        await repo.update_site(site_id=1, fuse_limit_a=14.0)
        await wait_for(lambda: sites["A"].total() <= 12.0)
        assert sites["A"].total() >= 11.0
        # Site A planned again (its limits changed); site B's controller sent nothing.
        assert sites["B"].calls == b_calls and sites["B"].tx_limit == b_limits
        for prefix, site in sites.items():
            assert site.violations == [], (prefix, site.violations)
    finally:
        for cp in chargers.values():
            await cp.close()
        await app.stop()


async def test_a_tag_works_on_its_own_site_and_is_listed_only_there(db_url: str) -> None:
    """Residents are per site: a tag of site A is Invalid at a charger of site B (Authorize,
    StartTransaction), and a charger's Local Authorization List holds its site's tags; a
    charger gets its own site's heartbeat interval."""
    app = await start_app(db_url, local_list_sync=True, local_list_poll_s=0.1)
    chargers: list[RawChargePoint] = []
    try:
        repo = app.repository
        berg = await repo.add_site("Berg", heartbeat_interval_s=77)
        await repo.add_charge_point("A1")
        await repo.add_charge_point("B1", site_id=berg.site_id)
        await repo.add_id_tag("TAG-A")
        await repo.add_id_tag("TAG-B", site_id=berg.site_id)
        lists: dict[str, list[str]] = {}
        for cp_id in ("A1", "B1"):
            cp = await RawChargePoint.connect(ws_url(app, cp_id))
            chargers.append(cp)
            cp.handlers["GetLocalListVersion"] = lambda payload: {"listVersion": 0}

            def send_local_list(payload: dict[str, Any], cp_id: str = cp_id) -> dict[str, Any]:
                lists[cp_id] = [i["idTag"] for i in payload.get("localAuthorizationList", [])]
                return {"status": "Accepted"}

            cp.handlers["SendLocalList"] = send_local_list
            boot = await cp.ok("BootNotification", BOOT)
            # Each site's own settings: its heartbeat interval.
            assert boot["interval"] == (300 if cp_id == "A1" else 77)
        a1, b1 = chargers
        assert (await a1.ok("Authorize", {"idTag": "TAG-A"}))["idTagInfo"]["status"] == "Accepted"
        assert (await b1.ok("Authorize", {"idTag": "TAG-A"}))["idTagInfo"]["status"] == "Invalid"
        assert (await b1.ok("Authorize", {"idTag": "TAG-B"}))["idTagInfo"]["status"] == "Accepted"
        start = {"connectorId": 1, "meterStart": 0, "timestamp": "2026-01-05T16:00:00Z"}
        answer = await b1.ok("StartTransaction", start | {"idTag": "TAG-A"})
        assert answer["idTagInfo"]["status"] == "Invalid"
        await wait_for(lambda: "A1" in lists and "B1" in lists)
        assert lists == {"A1": ["TAG-A"], "B1": ["TAG-B"]}
    finally:
        for cp in chargers:
            await cp.close()
        await app.stop()


async def test_a_site_added_while_serving_gets_its_own_controller(db_url: str) -> None:
    """A single-site `csms serve` (one controller over the whole store); a second site and
    its charger added meanwhile: the charger is prepared and planned by the new site's
    controller against its own fuse, and site 1's controller keeps to site 1."""
    app: CsmsApp = await start_app(db_url, controller=True, speed=30.0)
    repo = app.repository
    sites = {"A": Site(18.0), "B": Site(30.0)}
    chargers: dict[str, RawChargePoint] = {}

    async def plug_in(cp_id: str, site: Site) -> None:
        cp = await RawChargePoint.connect(ws_url(app, cp_id))
        cp.handlers["SetChargingProfile"] = site.handler(cp_id)
        await cp.boot(BOOT)
        # Counted once Accepted: a Pending charger starts no transaction (OCPP 1.6 4.2),
        # while its fail-safe profiles are being set (it would count at its maximum).
        site.running[cp_id] = None
        await cp.ok(
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
        )
        chargers[cp_id] = cp
        answer = await cp.ok(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": f"T{cp_id}",
                "meterStart": 0,
                "timestamp": "2026-01-05T16:00:00Z",
            },
        )
        site.running[cp_id] = int(answer["transactionId"])

    try:
        assert app.sites is not None and app.controller is not None
        first = app.controller
        await repo.update_site(fuse_limit_a=20.0, margin_a=2.0, strategy="llf", tick_s=0.5)
        for cp_id in ("A1", "A2"):
            await repo.add_charge_point(cp_id, max_current_a=16, phases=3)
            await repo.add_id_tag(f"T{cp_id}")
            await plug_in(cp_id, sites["A"])
        await wait_for(lambda: len(sites["A"].tx_limit) == 2 and sites["A"].total() >= 17)

        berg = await repo.add_site(
            "Berg", fuse_limit_a=32.0, margin_a=2.0, strategy="llf", tick_s=0.5
        )
        await repo.add_charge_point("B1", max_current_a=16, phases=3, site_id=berg.site_id)
        await repo.add_id_tag("TB1", site_id=berg.site_id)
        await plug_in("B1", sites["B"])
        # Site 1's 18 A would leave B1 nothing: its 16 A come from Berg's own fuse.
        await wait_for(lambda: sites["B"].tx_limit.get("B1") == 16.0)
        assert sorted(app.sites.controllers) == [1, berg.site_id]
        assert app.sites.controllers[1] is first  # limited to site 1 in place
        await wait_for(lambda: sites["A"].total() >= 17)
        for prefix, site in sites.items():
            assert site.violations == [], (prefix, site.violations)
    finally:
        for cp in chargers.values():
            await cp.close()
        await app.stop()
