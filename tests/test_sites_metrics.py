"""Many sites on the API port: /metrics gives every site's fuse headroom labelled by the
site's name, and /api/v1/me says which site a token acts within. Real `csms serve` with
its controllers and API on 127.0.0.1, a real SQLite file."""

from __future__ import annotations

from csms.app import CsmsApp
from csms.auth import Role
from csms.store.tokens import add_token
from tests.api_support import add_resident, client, make_token, start_api_app
from tests.test_api_metrics import Samples, scrape, value, wait_for

HEADROOM = "garagegrid_fuse_headroom_amperes"


def _headroom(samples: Samples) -> dict[str, tuple[float, float, float]]:
    """site -> (L1, L2, L3) of the headroom gauge."""
    sites = {dict(labels)["site"] for name, labels in samples if name == HEADROOM}
    return {
        site: tuple(value(samples, HEADROOM, site=site, phase=p) for p in ("L1", "L2", "L3"))  # type: ignore[misc]
        for site in sites
    }


async def test_fuse_headroom_is_labelled_by_every_sites_name(db_url: str) -> None:
    # Two sites without chargers: the headroom is fuse - margin - building load per phase.
    app: CsmsApp = await start_api_app(db_url, controller=False)
    await app.repository.update_site(fuse_limit_a=40.0, margin_a=2.0, tick_s=0.5)
    berg = await app.repository.add_site("Berg", fuse_limit_a=25.0, margin_a=1.0, tick_s=0.5)
    await app.stop()

    app = await start_api_app(db_url, controller=True)
    try:
        # Berg's building meter: 10 A on L1 (read by Berg's controller only).
        await app.repository.record_building_load(10.0, 0.0, 0.0, site_id=berg.site_id)

        async def both() -> bool:
            return _headroom(await scrape(app)) == {
                "default": (38.0, 38.0, 38.0),
                "Berg": (14.0, 24.0, 24.0),
            }

        await wait_for(both)
        # A renamed site is labelled by its new name at the next scrape; no old series stays.
        await app.repository.update_site(berg.site_id, name="Berg Nord")
        after = _headroom(await scrape(app))
        assert set(after) == {"default", "Berg Nord"}
        assert after["Berg Nord"] == (14.0, 24.0, 24.0)
    finally:
        await app.stop()


async def test_me_gives_the_sites_a_token_acts_within(db_url: str) -> None:
    app = await start_api_app(db_url, controller=False)
    try:
        north = await app.repository.add_site("north")
        operator = await make_token(app, "ops", "manager")
        _info, bound = await add_token(
            app.repository.sessionmaker,
            "north-ops",
            Role.manager,
            user=None,
            now=app.clock.now(),
            site="north",
        )
        await app.repository.add_charge_point("N1", max_current_a=16, site_id=north.site_id)
        resident = await add_resident(app, "nora", stations=["N1"])
        await app.repository.set_user_site("nora", north.site_id)
        async with client(app, operator) as ops:
            me = (await ops.get("/api/v1/me")).json()
            assert (me["name"], me["site"]) == ("token:ops", None)
        north_ref = {"id": north.site_id, "name": "north"}
        async with client(app, bound) as api:
            assert (await api.get("/api/v1/me")).json()["site"] == north_ref
        async with client(app, resident) as api:
            me = (await api.get("/api/v1/me")).json()
            assert (me["name"], me["role"], me["site"]) == ("nora", "resident", north_ref)
    finally:
        await app.stop()
