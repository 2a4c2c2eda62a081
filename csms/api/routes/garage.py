"""Who the token is, the site's settings, the building load and the live load."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from csms.api import reads
from csms.api import schemas as s
from csms.api.security import Context, CurrentAccount, audit, require
from csms.auth import Permission
from csms.domain import PHASES, split_wiring
from csms.errors import ConfigError
from csms.settings import validate_building_load, validate_site_update
from csms.store import queries

router = APIRouter()


# ------------------------------------------------------------------------------ me
@router.get("/me", response_model=s.Me, tags=["tokens"], summary="Who this token acts as")
async def me(account: CurrentAccount) -> s.Me:
    return s.Me(
        name=account.name,
        role=account.role.value,
        stations=sorted(account.stations),
        tags=sorted(account.tags),
    )


# ---------------------------------------------------------------------------- site
async def _site(ctx: Context) -> s.Site:
    site = await ctx.repository.site_config()
    latest = await ctx.repository.latest_building_load()
    building = (
        s.BuildingLoadOut(
            measured_at=latest[0], l1_a=latest[1][0], l2_a=latest[1][1], l3_a=latest[1][2]
        )
        if latest
        else None
    )
    return s.Site(**asdict(site), building_load=building)


@router.get("/site", response_model=s.Site, tags=["site"], summary="Site settings")
async def get_site(ctx: Context, account: CurrentAccount) -> s.Site:
    return await _site(ctx)


@router.patch(
    "/site", response_model=s.Site, tags=["site"], summary="Change site settings (manager)"
)
async def patch_site(ctx: Context, account: CurrentAccount, body: s.SiteUpdate) -> s.Site:
    await require(ctx, account, Permission.write_garage, "change settings", "site")
    current = await ctx.repository.site_config()
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise ConfigError("nothing to change: give at least one setting")
    clean = validate_site_update(current, changes)
    before = asdict(current)
    changed = {k: v for k, v in clean.items() if before.get(k) != v}
    if changed:
        await ctx.repository.update_site(**changed)
        await audit(
            ctx,
            account,
            "change settings",
            "site",
            detail={k: [before.get(k), v] for k, v in changed.items()},
        )
        ctx.request_plan()
    return await _site(ctx)


@router.get(
    "/building-load",
    response_model=s.BuildingLoadOut | None,
    tags=["site"],
    summary="The newest building load reading",
)
async def get_building_load(ctx: Context, account: CurrentAccount) -> s.BuildingLoadOut | None:
    latest = await ctx.repository.latest_building_load()
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
    ctx: Context, account: CurrentAccount, body: s.BuildingLoadIn
) -> s.BuildingLoadOut:
    await require(ctx, account, Permission.write_garage, "record building load", "site")
    l1, l2, l3 = validate_building_load(body.l1_a, body.l2_a, body.l3_a)
    await ctx.repository.record_building_load(l1, l2, l3, source=body.source)
    ctx.request_plan()
    latest = await ctx.repository.latest_building_load()
    assert latest is not None
    return s.BuildingLoadOut(
        measured_at=latest[0], l1_a=latest[1][0], l2_a=latest[1][1], l3_a=latest[1][2]
    )


# -------------------------------------------------------------------------- live
@router.get("/live", response_model=s.LiveLoad, tags=["live"], summary="Live load")
async def live(ctx: Context, account: CurrentAccount) -> s.LiveLoad:
    """Running sessions with their newest power and limit, and the sums per phase.
    A resident sees their own sessions; the sums are the garage's."""
    site = await ctx.repository.site_config()
    latest = await ctx.repository.latest_building_load()
    stations = {i.id: i for i in await ctx.repository.list_charge_points()}
    rows = reads.records(await queries.open_session_readings(ctx.sessionmaker))
    limits = [0.0, 0.0, 0.0]
    power = 0.0
    for row in rows:
        info = stations.get(row["charge_point_id"])
        if row["limit_a"] is not None and info is not None:
            for phase in split_wiring(info.wiring):
                limits[PHASES.index(phase)] += float(row["limit_a"])
        power += float(row["power_w"] or 0.0)
    headroom = ctx.controller.fuse_headroom_a() if ctx.controller is not None else None
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
