"""Who the token is, the sites it sees, a site's settings, building load and live load."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from csms.api import reads
from csms.api import schemas as s
from csms.api.security import Context, CurrentScope, audit, require
from csms.auth import Permission
from csms.domain import PHASES, SiteConfig, split_wiring
from csms.errors import ConfigError
from csms.settings import validate_building_load, validate_site_update
from csms.store import queries

router = APIRouter()


# ------------------------------------------------------------------------------ me
@router.get("/me", response_model=s.Me, tags=["tokens"], summary="Who this token acts as")
async def me(scope: CurrentScope) -> s.Me:
    account = scope.account
    own = next((x for x in scope.sites if x.site_id == account.site_id), None)
    return s.Me(
        name=account.name,
        role=account.role.value,
        stations=sorted(account.stations),
        tags=sorted(account.tags),
        site=None if own is None else s.SiteRef(id=own.site_id, name=own.name),
    )


# --------------------------------------------------------------------------- sites
@router.get(
    "/sites", response_model=list[s.SiteRef], tags=["site"], summary="The sites this token sees"
)
async def list_sites(scope: CurrentScope) -> list[s.SiteRef]:
    return [s.SiteRef(id=x.site_id, name=x.name) for x in scope.sites]


# ---------------------------------------------------------------------------- site
async def _site(ctx: Context, site_id: int) -> s.Site:
    site = await ctx.repository.site_config(site_id)
    latest = await ctx.repository.latest_building_load(site_id)
    building = (
        s.BuildingLoadOut(
            measured_at=latest[0], l1_a=latest[1][0], l2_a=latest[1][1], l3_a=latest[1][2]
        )
        if latest
        else None
    )
    values = asdict(site)
    values.pop("site_id")
    return s.Site(**values, building_load=building)


@router.get("/site", response_model=s.Site, tags=["site"], summary="Site settings")
async def get_site(ctx: Context, scope: CurrentScope) -> s.Site:
    return await _site(ctx, scope.one().site_id)


@router.patch(
    "/site", response_model=s.Site, tags=["site"], summary="Change site settings (manager)"
)
async def patch_site(ctx: Context, scope: CurrentScope, body: s.SiteUpdate) -> s.Site:
    account = scope.account
    await require(ctx, account, Permission.write_garage, "change settings", "site")
    current: SiteConfig = scope.one()
    site_id = current.site_id
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise ConfigError("nothing to change: give at least one setting")
    clean = validate_site_update(current, changes)
    before = asdict(current)
    changed = {k: v for k, v in clean.items() if before.get(k) != v}
    if changed:
        await ctx.repository.update_site(site_id, **changed)
        await audit(
            ctx,
            account,
            "change settings",
            f"site {current.name}",
            detail={k: [before.get(k), v] for k, v in changed.items()},
        )
        ctx.request_plan(site_id)
    return await _site(ctx, site_id)


@router.get(
    "/building-load",
    response_model=s.BuildingLoadOut | None,
    tags=["site"],
    summary="The newest building load reading",
)
async def get_building_load(ctx: Context, scope: CurrentScope) -> s.BuildingLoadOut | None:
    latest = await ctx.repository.latest_building_load(scope.one().site_id)
    if latest is None:
        return None
    return s.BuildingLoadOut(
        measured_at=latest[0], l1_a=latest[1][0], l2_a=latest[1][1], l3_a=latest[1][2]
    )


@router.post(
    "/building-load",
    status_code=201,
    response_model=s.BuildingLoadOut,
    tags=["site"],
    summary="Record the building's other consumption per phase (manager)",
    description="The way a building's meter feeds the controller, like `csms site load`: "
    "the controller plans with the newest reading until it is older than "
    "building_load_max_age_s, then with building_load_worst_case_a.",
)
async def post_building_load(
    ctx: Context, scope: CurrentScope, body: s.BuildingLoadIn
) -> s.BuildingLoadOut:
    await require(ctx, scope.account, Permission.write_garage, "record building load", "site")
    site_id = scope.one().site_id
    l1, l2, l3 = validate_building_load(body.l1_a, body.l2_a, body.l3_a)
    await ctx.repository.record_building_load(l1, l2, l3, source=body.source, site_id=site_id)
    ctx.request_plan(site_id)
    latest = await ctx.repository.latest_building_load(site_id)
    assert latest is not None
    return s.BuildingLoadOut(
        measured_at=latest[0], l1_a=latest[1][0], l2_a=latest[1][1], l3_a=latest[1][2]
    )


# -------------------------------------------------------------------------- live
@router.get("/live", response_model=s.LiveLoad, tags=["live"], summary="Live load")
async def live(ctx: Context, scope: CurrentScope) -> s.LiveLoad:
    """Running sessions of one site with their newest power and limit, and the sums per
    phase. A resident sees their own sessions; the sums are the site's."""
    account = scope.account
    site = scope.one()
    latest = await ctx.repository.latest_building_load(site.site_id)
    stations = {i.id: i for i in await ctx.repository.list_charge_points(site.site_id)}
    rows = [
        row
        for row in reads.records(await queries.open_session_readings(ctx.sessionmaker))
        if row["charge_point_id"] in stations
    ]
    limits = [0.0, 0.0, 0.0]
    power = 0.0
    for row in rows:
        info = stations.get(row["charge_point_id"])
        if row["limit_a"] is not None and info is not None:
            for phase in split_wiring(info.wiring):
                limits[PHASES.index(phase)] += float(row["limit_a"])
        power += float(row["power_w"] or 0.0)
    controller = ctx.controller_of_site(site.site_id)
    headroom = controller.fuse_headroom_a() if controller is not None else None
    return s.LiveLoad(
        now=ctx.now(),
        fuse_limit_a=site.fuse_limit_a,
        margin_a=site.margin_a,
        building_load=s.BuildingLoadOut(
            measured_at=latest[0], l1_a=latest[1][0], l2_a=latest[1][1], l3_a=latest[1][2]
        )
        if latest
        else None,
        limits_a=limits,
        power_w=power,
        fuse_headroom_a=list(headroom) if headroom is not None else None,
        sessions=[
            s.LiveSession.model_validate({k: row.get(k) for k in s.LiveSession.model_fields})
            for row in rows
            if account.sees_session(row["charge_point_id"], row["id_tag"])
        ],
    )
