"""Stations (with their state and capabilities), id tags, and commands to a charger."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from csms.api import reads
from csms.api import schemas as s
from csms.api.routes.common import aware
from csms.api.security import (
    Context,
    CurrentScope,
    Scope,
    audit,
    require,
    require_station,
    require_station_site,
)
from csms.auth import Permission
from csms.controller.capabilities import describe
from csms.domain import ChargePointInfo
from csms.errors import ConfigError, NotFoundError
from csms.outbox import OUTBOX_ACTIONS
from csms.settings import validate_station

# The outbox's requested_by column is 64 characters.
REQUESTED_BY_MAX = 64

router = APIRouter()


# ------------------------------------------------------------------------ stations
def _station(
    info: ChargePointInfo, connectors: list[Any], caps: dict[str, Any] | None
) -> s.Station:
    return s.Station(
        id=info.id,
        name=info.name,
        max_current_a=info.max_current_a,
        phases=info.phases,
        wiring=info.wiring,
        rate_unit=info.rate_unit,
        only_stack_level_0=info.only_stack_level_0,
        security_profile=info.security_profile,
        password_set=info.password_hash is not None,
        connected=info.connected,
        last_seen_at=info.last_seen_at,
        boot_status=info.boot_status,
        vendor=info.vendor,
        model=info.model,
        firmware_version=info.firmware_version,
        unmanaged=info.unmanaged,
        unmanaged_reason=info.unmanaged_reason,
        connectors=[s.ConnectorOut(**c) for c in connectors],
        capabilities=s.Capabilities(**caps) if caps is not None else None,
    )


async def _capabilities(ctx: Context) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for cp_id, (caps, read_at) in (await ctx.repository.charge_point_capabilities()).items():
        text = describe(caps)
        out[cp_id] = {
            "rate_units": sorted(caps.rate_units) if caps.rate_units is not None else None,
            "max_stack_level": caps.max_stack_level,
            "max_profiles": caps.max_profiles,
            "max_periods": caps.max_periods,
            "phase_rotation": text.get("phase_rotation"),
            "read_at": read_at,
        }
    return out


@router.get("/stations", response_model=list[s.Station], tags=["stations"])
async def list_stations(ctx: Context, scope: CurrentScope) -> list[s.Station]:
    """Every station of the token's site (an operator's: of every site, or of ?site=; a
    resident's: theirs) with its state and what it reported."""
    stations = [
        info
        for info in await ctx.repository.list_charge_points(scope.listing)
        if scope.account.sees_station(info.id)
    ]
    connectors = await reads.connectors(ctx.sessionmaker, [i.id for i in stations])
    caps = await _capabilities(ctx)
    return [_station(i, connectors.get(i.id, []), caps.get(i.id)) for i in stations]


async def _get_station(ctx: Context, scope: Scope, cp_id: str) -> ChargePointInfo:
    await require_station_site(ctx, scope, cp_id)
    await require_station(ctx, scope.account, cp_id)
    info = await ctx.repository.get_charge_point(cp_id)
    if info is None:
        raise NotFoundError(f"no charge point {cp_id!r}")
    return info


@router.get("/stations/{cp_id}", response_model=s.Station, tags=["stations"])
async def get_station(ctx: Context, scope: CurrentScope, cp_id: str) -> s.Station:
    info = await _get_station(ctx, scope, cp_id)
    connectors = await reads.connectors(ctx.sessionmaker, [cp_id])
    caps = await _capabilities(ctx)
    return _station(info, connectors.get(cp_id, []), caps.get(cp_id))


@router.post(
    "/stations",
    status_code=201,
    response_model=s.Station,
    tags=["stations"],
    summary="Register a station (manager)",
)
async def post_station(
    ctx: Context, scope: CurrentScope, body: s.StationIn, response: Response
) -> s.Station:
    account = scope.account
    await require(ctx, account, Permission.write_garage, "add station", body.id)
    site = scope.one()
    current, phases, wiring = validate_station(
        max_current_a=body.max_current_a, phases=body.phases, wiring=body.wiring
    )
    if body.unsecured and body.password:
        raise ConfigError("unsecured admits any client: give a password or unsecured, not both")
    info = await ctx.repository.add_charge_point(
        body.id,
        max_current_a=current,
        phases=phases,
        wiring=wiring,
        name=body.name,
        password=body.password,
        security_profile=0 if body.unsecured else 1,
        site_id=site.site_id,
    )
    await audit(
        ctx,
        account,
        "add station",
        body.id,
        detail={
            "max_current_a": current,
            "phases": phases,
            "wiring": wiring,
            "name": body.name,
            "password": "set" if body.password else "none",
            "unsecured": body.unsecured,
            "site": site.name,
        },
    )
    ctx.request_plan(site.site_id)
    response.headers["Location"] = f"/api/v1/stations/{info.id}"
    return _station(info, [], None)


@router.patch(
    "/stations/{cp_id}",
    response_model=s.Station,
    tags=["stations"],
    summary="Rename or change a station (manager)",
)
async def patch_station(
    ctx: Context, scope: CurrentScope, cp_id: str, body: s.StationUpdate
) -> s.Station:
    account = scope.account
    await require(ctx, account, Permission.write_garage, "edit station", cp_id)
    station = await _get_station(ctx, scope, cp_id)
    current, phases, wiring = validate_station(
        max_current_a=body.max_current_a
        if body.max_current_a is not None
        else station.max_current_a,
        phases=body.phases if body.phases is not None else station.phases,
        wiring=body.wiring or (station.wiring if body.phases in (None, station.phases) else None),
    )
    changes: dict[str, Any] = {"max_current_a": current, "phases": phases, "wiring": wiring}
    if body.wiring:
        changes["wiring_set_by"] = "manager"
    if body.name is not None:
        changes["name"] = body.name
    await ctx.repository.update_charge_point(cp_id, **changes)
    await audit(ctx, account, "edit station", cp_id, detail=changes)
    ctx.request_plan(station.site_id)
    return await get_station(ctx, scope, cp_id)


@router.delete(
    "/stations/{cp_id}",
    status_code=204,
    tags=["stations"],
    summary="Delete a station and its history (manager)",
)
async def delete_station(ctx: Context, scope: CurrentScope, cp_id: str) -> Response:
    account = scope.account
    if account.may(Permission.write_garage):
        # Another site's station is unknown here (a refused role stays 403, as before).
        await require_station_site(ctx, scope, cp_id)
    await require(ctx, account, Permission.write_garage, "remove station", cp_id)
    await ctx.repository.remove_charge_point(cp_id)
    await audit(ctx, account, "remove station", cp_id)
    ctx.request_plan()
    return Response(status_code=204)


# ------------------------------------------------------------------------- id tags
def _id_tag(row: dict[str, Any]) -> s.IdTag:
    expires = row.get("expires_at")
    return s.IdTag(
        id_tag=row["id_tag"],
        owner=row.get("owner"),
        parent=row.get("parent"),
        expires_at=datetime.fromisoformat(expires) if isinstance(expires, str) else expires,
        blocked=bool(row.get("blocked")),
    )


@router.get("/id-tags", response_model=list[s.IdTag], tags=["id tags"])
async def list_id_tags(ctx: Context, scope: CurrentScope) -> list[s.IdTag]:
    """Every id tag of the token's site (an operator's: of every site, or of ?site=; a
    resident's: theirs)."""
    account = scope.account
    rows = await ctx.repository.list_id_tags(scope.listing)
    return [_id_tag(r) for r in rows if account.sees_everything or r["id_tag"] in account.tags]


@router.post(
    "/id-tags",
    status_code=201,
    response_model=s.IdTag,
    tags=["id tags"],
    summary="Add an id tag (manager)",
)
async def post_id_tag(ctx: Context, scope: CurrentScope, body: s.IdTagIn) -> s.IdTag:
    account = scope.account
    await require(ctx, account, Permission.write_garage, "add id tag", body.id_tag)
    site = scope.one()
    await ctx.repository.add_id_tag(
        body.id_tag,
        owner=body.owner,
        expires_at=aware("expires_at", body.expires_at),
        parent=body.parent,
        site_id=site.site_id,
    )
    await audit(
        ctx, account, "add id tag", body.id_tag, detail={"owner": body.owner, "site": site.name}
    )
    return await _one_id_tag(ctx, scope, body.id_tag)


async def _one_id_tag(ctx: Context, scope: Scope, tag: str) -> s.IdTag:
    for row in await ctx.repository.list_id_tags(scope.listing):
        if row["id_tag"] == tag:
            return _id_tag(row)
    raise NotFoundError(f"no id tag {tag!r}")


@router.patch(
    "/id-tags/{tag}",
    response_model=s.IdTag,
    tags=["id tags"],
    summary="Block or unblock an id tag (manager)",
)
async def patch_id_tag(ctx: Context, scope: CurrentScope, tag: str, body: s.IdTagUpdate) -> s.IdTag:
    account = scope.account
    await require(ctx, account, Permission.write_garage, "block id tag", tag)
    await _one_id_tag(ctx, scope, tag)
    await ctx.repository.set_id_tag_blocked(tag, body.blocked)
    await audit(ctx, account, "block id tag", tag, detail={"blocked": body.blocked})
    return await _one_id_tag(ctx, scope, tag)


# ---------------------------------------------------------------------- commands
def _command(row: dict[str, Any]) -> s.Command:
    return s.Command.model_validate({k: row.get(k) for k in s.Command.model_fields})


@router.post(
    "/stations/{cp_id}/commands",
    response_model=s.Command,
    tags=["commands"],
    summary="Send an OCPP operation to a charger and wait for its answer (manager)",
    responses={
        200: {"description": "answered (status done) or failed (status failed, see error)"},
        202: {"description": "no answer within wait_s: still queued or being sent"},
    },
)
async def post_command(
    ctx: Context, scope: CurrentScope, cp_id: str, body: s.CommandIn, response: Response
) -> s.Command:
    """Queued in the outbox like `csms command`; the CSMS sends it within its poll
    (0.5 s) and stores the answer. The response is the command once it is done or failed,
    or after ``wait_s`` (then 202, and GET /commands/{id} tells the rest)."""
    account = scope.account
    await require(ctx, account, Permission.write_garage, f"command {body.action}", cp_id)
    await require_station_site(ctx, scope, cp_id)
    if body.action not in OUTBOX_ACTIONS:
        raise ConfigError(
            f"unknown action {body.action!r}; choose one of {', '.join(sorted(OUTBOX_ACTIONS))}"
        )
    if await ctx.repository.get_charge_point(cp_id) is None:
        raise NotFoundError(f"no charge point {cp_id!r}")
    wait_s = min(body.wait_s, ctx.max_command_wait_s)
    command_id = await ctx.repository.enqueue_command(
        cp_id,
        body.action,
        body.payload,
        requested_by=f"api:{account.name}"[:REQUESTED_BY_MAX],
    )
    await audit(
        ctx,
        account,
        f"command {body.action}",
        cp_id,
        detail={"command_id": command_id, "payload": json.loads(json.dumps(body.payload))},
    )
    ctx.wake_outbox()
    response.headers["Location"] = f"/api/v1/commands/{command_id}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        row = await ctx.repository.get_command(command_id)
        assert row is not None
        if row["status"] in ("done", "failed"):
            return _command(row)
        if loop.time() >= deadline:
            response.status_code = 202
            return _command(row)
        await asyncio.sleep(ctx.command_poll_s)


@router.get("/commands", response_model=list[s.Command], tags=["commands"])
async def list_commands(
    ctx: Context,
    scope: CurrentScope,
    station: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[s.Command]:
    """The newest commands of the token's site (of one station), with their answers
    (manager, viewer)."""
    await require(ctx, scope.account, Permission.read_garage, "read commands")
    rows = await reads.command_rows(
        ctx.sessionmaker, station_id=station, limit=limit, site_id=scope.listing
    )
    return [_command(r) for r in rows]


@router.get("/commands/{command_id}", response_model=s.Command, tags=["commands"])
async def get_command(ctx: Context, scope: CurrentScope, command_id: int) -> s.Command:
    await require(ctx, scope.account, Permission.read_garage, "read commands")
    row = await ctx.repository.get_command(command_id)
    if row is None:
        raise NotFoundError(f"no command {command_id}")
    sites = await ctx.repository.charge_point_sites()
    if not scope.sees(sites.get(str(row["charge_point_id"]), 0)):
        raise NotFoundError(f"no command {command_id}")
    return _command(row)
