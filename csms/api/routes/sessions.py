"""Charging sessions: list, departure and need, meter values; residents' notifications."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from csms.api import reads
from csms.api import schemas as s
from csms.api.problems import ProblemError
from csms.api.routes.common import aware
from csms.api.security import Context, CurrentScope, Scope, audit, require, require_station_site
from csms.auth import AccessDeniedError, Permission
from csms.errors import ConfigError, NotFoundError
from csms.store import queries

# A resident's departure may be at most this far ahead (as on the monitor's Resident page).
MAX_DEPARTURE_AHEAD = timedelta(days=14)


router = APIRouter()


# ------------------------------------------------------------------------ sessions
@router.get("/sessions", response_model=list[s.Session], tags=["sessions"])
async def list_sessions(
    ctx: Context,
    scope: CurrentScope,
    station: str | None = None,
    id_tag: str | None = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[s.Session]:
    """Charging sessions of the token's site (an operator's: of every site, or of
    ?site=), newest first (a resident's: at their stations or with their tags);
    ``from``/``to`` bound the start time."""
    frame = await queries.sessions(
        ctx.sessionmaker,
        start=aware("from", start),
        end=aware("to", end),
        station_id=station,
        id_tag=id_tag,
        open_only=open_only,
        limit=limit,
        visible_to=scope.account,
        site_id=scope.listing,
    )
    return [s.Session(**row) for row in reads.records(frame)]


async def _on_site_transaction(ctx: Context, scope: Scope, tx_id: int) -> dict[str, Any]:
    """The transaction; 404 when there is none or it is at another site's station."""
    tx = await ctx.repository.get_transaction(tx_id)
    if tx is None:
        raise NotFoundError(f"no transaction {tx_id}")
    try:
        await require_station_site(ctx, scope, str(tx["charge_point_id"]))
    except NotFoundError:
        raise NotFoundError(f"no transaction {tx_id}") from None
    return tx


async def _visible_transaction(ctx: Context, scope: Scope, tx_id: int) -> dict[str, Any]:
    account = scope.account
    tx = await _on_site_transaction(ctx, scope, tx_id)
    if not account.sees_session(str(tx["charge_point_id"]), tx["id_tag"]):
        raise AccessDeniedError(f"{account.name} may not see transaction {tx_id}")
    return tx


@router.get("/sessions/{transaction_id}", response_model=s.Session, tags=["sessions"])
async def get_session(ctx: Context, scope: CurrentScope, transaction_id: int) -> s.Session:
    tx = await _visible_transaction(ctx, scope, transaction_id)
    started: datetime = tx["started_at"]
    frame = await queries.sessions(
        ctx.sessionmaker,
        start=started - timedelta(seconds=1),
        end=started + timedelta(seconds=1),
        station_id=str(tx["charge_point_id"]),
        visible_to=scope.account,
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
    ctx: Context, scope: CurrentScope, transaction_id: int, body: s.SessionUpdate
) -> s.Session:
    account = scope.account
    target = f"transaction {transaction_id}"
    await require(ctx, account, Permission.write_session, "set departure and need", target)
    tx = await _on_site_transaction(ctx, scope, transaction_id)
    if not account.sees_session(str(tx["charge_point_id"]), tx["id_tag"]):
        await audit(ctx, account, "set departure and need", target, outcome="denied")
        raise AccessDeniedError(f"{account.name} may not change another resident's car")
    if tx["stopped_at"] is not None:
        raise ProblemError(409, "session-ended", "this session has ended; nothing to plan")
    values: dict[str, Any] = {}
    now = ctx.now()
    if aware("departure_at", body.departure_at) is not None:
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
    return await get_session(ctx, scope, transaction_id)


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
    scope: CurrentScope,
    request: Request,
    transaction_id: int,
    fmt: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
) -> Response:
    """``?format=csv`` or ``Accept: text/csv`` for CSV; JSON otherwise."""
    await _visible_transaction(ctx, scope, transaction_id)
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


# ----------------------------------------------------------------- notifications
@router.get("/notifications", response_model=list[s.Notification], tags=["notifications"])
async def list_notifications(
    ctx: Context,
    scope: CurrentScope,
    transaction_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[s.Notification]:
    """Messages to residents (limit raised, lowered, paused, resumed), newest first; a
    resident's: at their stations or for their tags; the token's site's."""
    if transaction_id is not None:
        await _visible_transaction(ctx, scope, transaction_id)
    frame = await queries.notifications(
        ctx.sessionmaker,
        transaction_id=transaction_id,
        limit=limit,
        visible_to=scope.account,
        site_id=scope.listing,
    )
    return [s.Notification(**row) for row in reads.records(frame)]
