"""`csms` commands of the other OCPP 1.6 feature profiles.

    csms locallist show|push|version CP     Local Auth List Management
    csms reservation add|cancel|list        Reservation
    csms firmware update|status CP          Firmware Management (UpdateFirmware)
    csms diagnostics get CP                 Firmware Management (GetDiagnostics)
    csms trigger CP MESSAGE                 Remote Trigger (every requestedMessage)

Each operation is queued in the command outbox, sent by `csms serve` and, with
``--wait``, its answer printed. The files a charger downloads or uploads are served by
`csms serve --files-port`; the commands build their URLs from ``--files-url`` or
``$GARAGEGRID_FILES_URL`` (e.g. http://192.168.1.10:9001).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from csms.errors import ConfigError, NotFoundError
from csms.local_list import desired_entries, plan_update
from csms.reservations import cancel_reservation_payload, reserve_now_payload
from csms.store.features import FeatureStore
from csms.store.repository import Repository

FILES_URL_ENV = "GARAGEGRID_FILES_URL"
TRIGGER_MESSAGES = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)


async def csms_now(repo: Repository) -> datetime:
    """The CSMS's time: its published clock (simulated under `csms serve --speed`), else
    this computer's."""
    from csms.clock import utcnow
    from csms.store.queries import clock_anchor

    anchor = await clock_anchor(repo.sessionmaker)
    return utcnow() if anchor is None else anchor.at(utcnow())


def files_url(args: argparse.Namespace) -> str:
    url = getattr(args, "files_url", None) or os.environ.get(FILES_URL_ENV)
    if not url:
        raise ConfigError(
            f"where does `csms serve --files-port` serve files? give --files-url or set "
            f"{FILES_URL_ENV} (e.g. http://192.168.1.10:9001), or give --location"
        )
    return str(url).rstrip("/")


async def _station(repo: Repository, cp_id: str) -> None:
    if await repo.get_charge_point(cp_id) is None:
        raise NotFoundError(f"no charge point {cp_id!r}")


async def _queue(
    repo: Repository,
    cp_id: str,
    action: str,
    payload: dict[str, Any],
    wait_s: float,
    *,
    requested_by: str = "cli",
) -> int:
    """Queue, print, and with a wait print the answer; the exit code."""
    from csms.cli import _wait_for_command

    command_id = await repo.enqueue_command(cp_id, action, payload, requested_by=requested_by)
    print(f"command {command_id} queued: {action} to {cp_id}")
    if wait_s <= 0:
        return 0
    row = await _wait_for_command(repo, command_id, wait_s)
    if row is None:
        print(f"no answer within {wait_s:g} s; the command stays queued (id {command_id})")
        return 1
    print(json.dumps({k: row[k] for k in ("status", "response", "error")}, default=str))
    return 0 if row["status"] == "done" else 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


# ------------------------------------------------------------------ local auth list
async def _locallist_show(args: argparse.Namespace, repo: Repository) -> int:
    state = await FeatureStore(repo).local_list(args.id)
    supported = {None: "not asked yet", True: "yes", False: "no"}[state.supported]
    print(
        f"{args.id}: local list kept: {supported}; version {state.version}; "
        f"copy {'in sync' if state.in_sync else 'not trusted (next update is Full)'}"
    )
    rows = [
        {
            "id_tag": e.id_tag,
            "status": e.status,
            "expiry": _iso(e.expiry_date),
            "parent": e.parent_id_tag,
        }
        for e in sorted(state.entries.values(), key=lambda e: e.id_tag)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from csms.cli import _print_table

        _print_table(rows, ["id_tag", "status", "expiry", "parent"], sys.stdout)
    return 0


async def _locallist_push(args: argparse.Namespace, repo: Repository) -> int:
    """What the sync of `csms serve` would send now, or a Full list with --full."""
    features = FeatureStore(repo)
    state = await features.local_list(args.id)
    desired = desired_entries(await features.id_tags(args.id), await csms_now(repo))
    update = plan_update(
        desired, state.entries if state.in_sync else None, state.version, full=args.full
    )
    if update is None:
        print(f"{args.id} holds the current list (version {state.version}); nothing to send")
        return 0
    return await _queue(repo, args.id, "SendLocalList", update.to_ocpp(), args.wait)


async def _locallist_version(args: argparse.Namespace, repo: Repository) -> int:
    await _station(repo, args.id)
    return await _queue(repo, args.id, "GetLocalListVersion", {}, args.wait)


# ------------------------------------------------------------------ reservations
async def _reservation_add(args: argparse.Namespace, repo: Repository) -> int:
    if len(args.id_tag) > 20:
        raise ConfigError("an id tag has at most 20 characters (CiString20)")
    now = await csms_now(repo)
    expires = args.expires or now + timedelta(minutes=args.minutes)
    reservation = await FeatureStore(repo).add_reservation(
        args.id,
        args.connector,
        args.id_tag,
        expires,
        parent_id_tag=args.parent,
        requested_by="cli",
        now=now,
    )
    print(
        f"reservation {reservation.id}: connector {args.connector} of {args.id} for "
        f"{args.id_tag} until {_iso(expires)}"
    )
    return await _queue(repo, args.id, "ReserveNow", reserve_now_payload(reservation), args.wait)


async def _reservation_cancel(args: argparse.Namespace, repo: Repository) -> int:
    reservation = await FeatureStore(repo).reservation(args.reservation_id)
    if reservation is None:
        raise NotFoundError(f"no reservation {args.reservation_id}")
    payload = cancel_reservation_payload(reservation.id)
    return await _queue(repo, reservation.charge_point_id, "CancelReservation", payload, args.wait)


async def _reservation_list(args: argparse.Namespace, repo: Repository) -> int:
    features = FeatureStore(repo)
    now = await csms_now(repo)
    rows = [
        {
            "id": r.id,
            "charge_point_id": r.charge_point_id,
            "connector_id": r.connector_id,
            "id_tag": r.id_tag,
            "expires_at": _iso(r.expires_at),
            "state": r.state(now),
            "transaction_id": r.transaction_id,
        }
        for r in await features.reservations(args.id, active_only=args.active)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from csms.cli import _print_table

        columns = ["id", "charge_point_id", "connector_id", "id_tag", "expires_at", "state"]
        _print_table(rows, [*columns, "transaction_id"], sys.stdout)
    return 0


# ------------------------------------------------------------------ firmware, diagnostics
async def _firmware_update(args: argparse.Namespace, repo: Repository) -> int:
    await _station(repo, args.id)
    location = args.location or f"{files_url(args)}/firmware/{args.file}"
    retrieve = (args.retrieve_at or await csms_now(repo)).astimezone(UTC)
    payload: dict[str, Any] = {
        "location": location,
        "retrieveDate": retrieve.isoformat().replace("+00:00", "Z"),
    }
    if args.retries is not None:
        payload["retries"] = args.retries
    if args.retry_interval is not None:
        payload["retryInterval"] = args.retry_interval
    return await _queue(repo, args.id, "UpdateFirmware", payload, args.wait)


async def _firmware_status(args: argparse.Namespace, repo: Repository) -> int:
    station = await repo.get_charge_point(args.id)
    if station is None:
        raise NotFoundError(f"no charge point {args.id!r}")
    events = await FeatureStore(repo).maintenance_events(args.id, args.limit)
    print(f"{args.id}: firmware {station.firmware_version or 'unknown'}")
    rows = [e | {"received_at": _iso(e["received_at"])} for e in events]
    from csms.cli import _print_table

    _print_table(rows, ["received_at", "kind", "status"], sys.stdout)
    return 0


async def _diagnostics_get(args: argparse.Namespace, repo: Repository) -> int:
    await _station(repo, args.id)
    location = args.location or f"{files_url(args)}/diagnostics/{args.id}/"
    payload: dict[str, Any] = {"location": location}
    if args.retries is not None:
        payload["retries"] = args.retries
    if args.retry_interval is not None:
        payload["retryInterval"] = args.retry_interval
    return await _queue(repo, args.id, "GetDiagnostics", payload, args.wait)


# ------------------------------------------------------------------ remote trigger
async def _trigger(args: argparse.Namespace, repo: Repository) -> int:
    await _station(repo, args.id)
    payload: dict[str, Any] = {"requestedMessage": args.message}
    if args.connector is not None:
        payload["connectorId"] = args.connector
    return await _queue(repo, args.id, "TriggerMessage", payload, args.wait)


# ------------------------------------------------------------------ parser
def add_commands(sub: Any) -> None:
    from csms.cli import _db_option, _parse_datetime, _positive_float

    def waiting(parser: argparse.ArgumentParser, default: float = 10.0) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=default,
            help=f"seconds to wait for the answer (0: do not wait; default {default:g})",
        )

    local = sub.add_parser("locallist", help="chargers' local authorization lists")
    l_sub = local.add_subparsers(dest="locallist_command", required=True, metavar="ACTION")
    show = l_sub.add_parser("show", help="what the CSMS knows a charger's list holds")
    _db_option(show)
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_locallist_show)
    push = l_sub.add_parser(
        "push", help="send the id tags' changes now (csms serve does so within seconds)"
    )
    _db_option(push)
    push.add_argument("id")
    push.add_argument("--full", action="store_true", help="send the whole list (updateType Full)")
    waiting(push)
    push.set_defaults(handler=_locallist_push)
    version = l_sub.add_parser("version", help="ask the charger its list version")
    _db_option(version)
    version.add_argument("id")
    waiting(version)
    version.set_defaults(handler=_locallist_version)

    reservation = sub.add_parser("reservation", help="reserve a connector for an id tag")
    r_sub = reservation.add_subparsers(dest="reservation_command", required=True, metavar="ACTION")
    r_add = r_sub.add_parser("add", help="ReserveNow")
    _db_option(r_add)
    r_add.add_argument("id", help="charge point")
    r_add.add_argument("--id-tag", required=True)
    r_add.add_argument("--connector", type=int, default=1)
    r_add.add_argument("--parent", help="parentIdTag: any tag of this group may use it")
    expiry = r_add.add_mutually_exclusive_group()
    expiry.add_argument("--minutes", type=_positive_float, default=30.0, help="default 30")
    expiry.add_argument("--expires", type=_parse_datetime, help="expiry (ISO 8601)")
    waiting(r_add)
    r_add.set_defaults(handler=_reservation_add)
    r_cancel = r_sub.add_parser("cancel", help="CancelReservation")
    _db_option(r_cancel)
    r_cancel.add_argument("reservation_id", type=int)
    waiting(r_cancel)
    r_cancel.set_defaults(handler=_reservation_cancel)
    r_list = r_sub.add_parser("list", help="reservations, newest first")
    _db_option(r_list)
    r_list.add_argument("id", nargs="?", help="one charge point (default: all)")
    r_list.add_argument("--active", action="store_true", help="only those that hold now")
    r_list.add_argument("--json", action="store_true")
    r_list.set_defaults(handler=_reservation_list)

    firmware = sub.add_parser("firmware", help="firmware updates")
    f_sub = firmware.add_subparsers(dest="firmware_command", required=True, metavar="ACTION")
    f_update = f_sub.add_parser("update", help="UpdateFirmware")
    _db_option(f_update)
    f_update.add_argument("id")
    source = f_update.add_mutually_exclusive_group(required=True)
    source.add_argument("--location", help="the firmware's URI")
    source.add_argument("--file", help="a file in <files-dir>/firmware of csms serve")
    f_update.add_argument("--files-url", help=f"csms serve's files URL (${FILES_URL_ENV})")
    f_update.add_argument("--retrieve-at", type=_parse_datetime, help="default: now")
    f_update.add_argument("--retries", type=int)
    f_update.add_argument("--retry-interval", type=int, help="seconds")
    waiting(f_update)
    f_update.set_defaults(handler=_firmware_update)
    f_status = f_sub.add_parser("status", help="firmware and diagnostics status notifications")
    _db_option(f_status)
    f_status.add_argument("id")
    f_status.add_argument("--limit", type=int, default=20)
    f_status.set_defaults(handler=_firmware_status)

    diagnostics = sub.add_parser("diagnostics", help="diagnostics files")
    d_sub = diagnostics.add_subparsers(dest="diagnostics_command", required=True, metavar="ACTION")
    d_get = d_sub.add_parser("get", help="GetDiagnostics: the charger uploads a file")
    _db_option(d_get)
    d_get.add_argument("id")
    d_get.add_argument("--location", help="directory URI to upload to (default: csms serve's)")
    d_get.add_argument("--files-url", help=f"csms serve's files URL (${FILES_URL_ENV})")
    d_get.add_argument("--retries", type=int)
    d_get.add_argument("--retry-interval", type=int, help="seconds")
    waiting(d_get)
    d_get.set_defaults(handler=_diagnostics_get)

    trigger = sub.add_parser("trigger", help="TriggerMessage: ask a charger to send a message")
    _db_option(trigger)
    trigger.add_argument("id")
    trigger.add_argument("message", choices=TRIGGER_MESSAGES)
    trigger.add_argument("--connector", type=int, help="connectorId (default: all)")
    waiting(trigger)
    trigger.set_defaults(handler=_trigger)
