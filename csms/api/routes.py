"""The resources of /api/v1. Each route checks the role (csms.api.security), calls the
store or the outbox as the CLI and the monitor do, and audits its writes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from csms.api import reads
from csms.api import schemas as s
from csms.api.problems import COMMON_RESPONSES, ProblemError
from csms.api.security import Context, CurrentAccount, audit, require, require_station
from csms.auth import AccessDeniedError, Account, Permission
from csms.controller.capabilities import describe
from csms.domain import PHASES, ChargePointInfo, split_wiring
from csms.errors import ConfigError, NotFoundError
from csms.outbox import OUTBOX_ACTIONS
from csms.settings import validate_building_load, validate_site_update, validate_station
from csms.store import queries

router = APIRouter(prefix="/api/v1", responses=COMMON_RESPONSES)

# A resident's departure may be at most this far ahead (as on the monitor's Resident page).
MAX_DEPARTURE_AHEAD = timedelta(days=14)
# The outbox's requested_by column is 64 characters.
REQUESTED_BY_MAX = 64


def _aware(name: str, value: datetime | None) -> datetime | None:
    """A time with its zone (the store keeps UTC; a time without a zone is ambiguous)."""
    if value is not None and value.utcoffset() is None:
        raise ConfigError(f"{name}: give a time zone, e.g. 2026-01-05T07:30:00+01:00")
    return value


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
async def list_stations(ctx: Context, account: CurrentAccount) -> list[s.Station]:
    """Every station (a resident's: theirs) with its state and what it reported."""
    stations = [
        info for info in await ctx.repository.list_charge_points() if account.sees_station(info.id)
    ]
    connectors = await reads.connectors(ctx.sessionmaker, [i.id for i in stations])
    caps = await _capabilities(ctx)
    return [_station(i, connectors.get(i.id, []), caps.get(i.id)) for i in stations]


async def _get_station(ctx: Context, account: Account, cp_id: str) -> ChargePointInfo:
    await require_station(ctx, account, cp_id)
    info = await ctx.repository.get_charge_point(cp_id)
    if info is None:
        raise NotFoundError(f"no charge point {cp_id!r}")
    return info


@router.get("/stations/{cp_id}", response_model=s.Station, tags=["stations"])
async def get_station(ctx: Context, account: CurrentAccount, cp_id: str) -> s.Station:
    info = await _get_station(ctx, account, cp_id)
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
    ctx: Context, account: CurrentAccount, body: s.StationIn, response: Response
) -> s.Station:
    await require(ctx, account, Permission.write_garage, "add station", body.id)
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
        },
    )
    ctx.request_plan()
    response.headers["Location"] = f"/api/v1/stations/{info.id}"
    return _station(info, [], None)


@router.patch(
    "/stations/{cp_id}",
    response_model=s.Station,
    tags=["stations"],
    summary="Rename or change a station (manager)",
)
async def patch_station(
    ctx: Context, account: CurrentAccount, cp_id: str, body: s.StationUpdate
) -> s.Station:
    await require(ctx, account, Permission.write_garage, "edit station", cp_id)
    station = await _get_station(ctx, account, cp_id)
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
    ctx.request_plan()
    return await get_station(ctx, account, cp_id)


@router.delete(
    "/stations/{cp_id}",
    status_code=204,
    tags=["stations"],
    summary="Delete a station and its history (manager)",
)
async def delete_station(ctx: Context, account: CurrentAccount, cp_id: str) -> Response:
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
async def list_id_tags(ctx: Context, account: CurrentAccount) -> list[s.IdTag]:
    """Every id tag (a resident's: theirs)."""
    rows = await ctx.repository.list_id_tags()
    return [_id_tag(r) for r in rows if account.sees_everything or r["id_tag"] in account.tags]


@router.post(
    "/id-tags",
    status_code=201,
    response_model=s.IdTag,
    tags=["id tags"],
    summary="Add an id tag (manager)",
)
async def post_id_tag(ctx: Context, account: CurrentAccount, body: s.IdTagIn) -> s.IdTag:
    await require(ctx, account, Permission.write_garage, "add id tag", body.id_tag)
    await ctx.repository.add_id_tag(
        body.id_tag,
        owner=body.owner,
        expires_at=_aware("expires_at", body.expires_at),
        parent=body.parent,
    )
    await audit(ctx, account, "add id tag", body.id_tag, detail={"owner": body.owner})
    return await _one_id_tag(ctx, body.id_tag)


async def _one_id_tag(ctx: Context, tag: str) -> s.IdTag:
    for row in await ctx.repository.list_id_tags():
        if row["id_tag"] == tag:
            return _id_tag(row)
    raise NotFoundError(f"no id tag {tag!r}")


@router.patch(
    "/id-tags/{tag}",
    response_model=s.IdTag,
    tags=["id tags"],
    summary="Block or unblock an id tag (manager)",
)
async def patch_id_tag(
    ctx: Context, account: CurrentAccount, tag: str, body: s.IdTagUpdate
) -> s.IdTag:
    await require(ctx, account, Permission.write_garage, "block id tag", tag)
    await _one_id_tag(ctx, tag)
    await ctx.repository.set_id_tag_blocked(tag, body.blocked)
    await audit(ctx, account, "block id tag", tag, detail={"blocked": body.blocked})
    return await _one_id_tag(ctx, tag)


# ------------------------------------------------------------------------ sessions
@router.get("/sessions", response_model=list[s.Session], tags=["sessions"])
async def list_sessions(
    ctx: Context,
    account: CurrentAccount,
    station: str | None = None,
    id_tag: str | None = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[s.Session]:
    """Charging sessions, newest first (a resident's: at their stations or with their
    tags); ``from``/``to`` bound the start time."""
    frame = await queries.sessions(
        ctx.sessionmaker,
        start=_aware("from", start),
        end=_aware("to", end),
        station_id=station,
        id_tag=id_tag,
        open_only=open_only,
        limit=limit,
        visible_to=account,
    )
    return [s.Session(**row) for row in reads.records(frame)]


async def _visible_transaction(ctx: Context, account: Account, tx_id: int) -> dict[str, Any]:
    tx = await ctx.repository.get_transaction(tx_id)
    if tx is None:
        raise NotFoundError(f"no transaction {tx_id}")
    if not account.sees_session(str(tx["charge_point_id"]), tx["id_tag"]):
        raise AccessDeniedError(f"{account.name} may not see transaction {tx_id}")
    return tx


@router.get("/sessions/{transaction_id}", response_model=s.Session, tags=["sessions"])
async def get_session(ctx: Context, account: CurrentAccount, transaction_id: int) -> s.Session:
    tx = await _visible_transaction(ctx, account, transaction_id)
    started: datetime = tx["started_at"]
    frame = await queries.sessions(
        ctx.sessionmaker,
        start=started - timedelta(seconds=1),
        end=started + timedelta(seconds=1),
        station_id=str(tx["charge_point_id"]),
        visible_to=account,
    )
    for row in reads.records(frame):
        if row["transaction_id"] == transaction_id:
            return s.Session(**row)
    raise NotFoundError(f"no transaction {transaction_id}")


@router.patch(
    "/sessions/{transaction_id}",
    response_model=s.Session,
    tags=["sessions"],
    summary="Set departure and energy need (a resident for their car, or a manager)",
)
async def patch_session(
    ctx: Context, account: CurrentAccount, transaction_id: int, body: s.SessionUpdate
) -> s.Session:
    target = f"transaction {transaction_id}"
    await require(ctx, account, Permission.write_session, "set departure and need", target)
    tx = await ctx.repository.get_transaction(transaction_id)
    if tx is None:
        raise NotFoundError(f"no transaction {transaction_id}")
    if not account.sees_session(str(tx["charge_point_id"]), tx["id_tag"]):
        await audit(ctx, account, "set departure and need", target, outcome="denied")
        raise AccessDeniedError(f"{account.name} may not change another resident's car")
    if tx["stopped_at"] is not None:
        raise ProblemError(409, "session-ended", "this session has ended; nothing to plan")
    values: dict[str, Any] = {}
    now = ctx.now()
    if _aware("departure_at", body.departure_at) is not None:
        assert body.departure_at is not None
        if body.departure_at <= now:
            raise ConfigError("departure_at: that time has passed")
        if body.departure_at > now + MAX_DEPARTURE_AHEAD:
            raise ConfigError("departure_at: at most 14 days ahead")
        values["departure_at"] = body.departure_at
    if body.energy_needed_kwh is not None:
        values["energy_needed_wh"] = body.energy_needed_kwh * 1000.0
    if body.ev_model is not None:
        values["ev_model"] = body.ev_model
    if body.battery_kwh is not None:
        values["battery_kwh"] = body.battery_kwh
    if body.target_soc_pct is not None:
        values["target_soc"] = body.target_soc_pct / 100.0
    if not values:
        raise ConfigError("nothing to change: give departure_at or an energy need")
    await ctx.repository.set_session_input(transaction_id, **values)
    await audit(
        ctx,
        account,
        "set departure and need",
        target,
        detail={
            "charge_point_id": tx["charge_point_id"],
            **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()},
        },
    )
    ctx.request_plan()
    return await get_session(ctx, account, transaction_id)


@router.get(
    "/sessions/{transaction_id}/meter-values",
    tags=["sessions"],
    summary="Export a session's meter values (CSV or JSON)",
    responses={
        200: {
            "model": list[s.MeterValue],
            "description": "every sampled value of the transaction, oldest first",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def meter_values(
    ctx: Context,
    account: CurrentAccount,
    request: Request,
    transaction_id: int,
    fmt: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
) -> Response:
    """``?format=csv`` or ``Accept: text/csv`` for CSV; JSON otherwise."""
    await _visible_transaction(ctx, account, transaction_id)
    rows = await reads.meter_values(ctx.sessionmaker, transaction_id)
    wants_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))
    if not wants_csv:
        body = [s.MeterValue(**r).model_dump(mode="json") for r in rows]
        return JSONResponse(body)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["transaction_id", *reads.METER_COLUMNS])
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {"transaction_id": transaction_id} | r | {"timestamp": r["timestamp"].isoformat()}
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="transaction-{transaction_id}.csv"'},
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
    ctx: Context, account: CurrentAccount, cp_id: str, body: s.CommandIn, response: Response
) -> s.Command:
    """Queued in the outbox like `csms command`; the CSMS sends it within its poll
    (0.5 s) and stores the answer. The response is the command once it is done or failed,
    or after ``wait_s`` (then 202, and GET /commands/{id} tells the rest)."""
    await require(ctx, account, Permission.write_garage, f"command {body.action}", cp_id)
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
    account: CurrentAccount,
    station: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[s.Command]:
    """The newest commands (of one station), with their answers (manager, viewer)."""
    await require(ctx, account, Permission.read_garage, "read commands")
    rows = await reads.command_rows(ctx.sessionmaker, station_id=station, limit=limit)
    return [_command(r) for r in rows]


@router.get("/commands/{command_id}", response_model=s.Command, tags=["commands"])
async def get_command(ctx: Context, account: CurrentAccount, command_id: int) -> s.Command:
    await require(ctx, account, Permission.read_garage, "read commands")
    row = await ctx.repository.get_command(command_id)
    if row is None:
        raise NotFoundError(f"no command {command_id}")
    return _command(row)


# ----------------------------------------------------------------- notifications
@router.get("/notifications", response_model=list[s.Notification], tags=["notifications"])
async def list_notifications(
    ctx: Context,
    account: CurrentAccount,
    transaction_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[s.Notification]:
    """Messages to residents (limit raised, lowered, paused, resumed), newest first; a
    resident's: at their stations or for their tags."""
    if transaction_id is not None:
        await _visible_transaction(ctx, account, transaction_id)
    frame = await queries.notifications(
        ctx.sessionmaker, transaction_id=transaction_id, limit=limit, visible_to=account
    )
    return [s.Notification(**row) for row in reads.records(frame)]
