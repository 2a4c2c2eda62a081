"""The `csms` command: serve, database, stations, id tags, site, commands, export, users.

Every subcommand takes ``--database-url`` (else ``GARAGEGRID_DATABASE_URL``, else the
SQLite default) and brings the schema up to date before it touches the database.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TextIO

from csms import cli_features, simcli
from csms.auth import (
    Role,
    check_new_password,
    check_user_name,
    generate_password,
    hash_user_password,
)
from csms.domain import ChargePointInfo, SiteConfig
from csms.errors import ConfigError, GarageGridError, NotFoundError
from csms.logs import configure_logging
from csms.settings import validate_building_load, validate_site_update, validate_station
from csms.store import migrate
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.models import SiteSettings
from csms.store.repository import Repository

Handler = Callable[[argparse.Namespace, Repository], Awaitable[int]]


def _parse_datetime(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-01-05T07:30:00+02:00, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone; add one, e.g. +02:00 or Z")
    return parsed


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def _parse_json_object(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("--payload must be a JSON object")
    return data


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def _steps(value: str) -> tuple[float, ...]:
    try:
        steps = tuple(sorted(float(x) for x in value.split(",") if x.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 6,8,10,13,16, got {value!r}") from None
    if not steps or steps[0] < 6:
        raise argparse.ArgumentTypeError("current steps must be 6 A or more (IEC 61851-1)")
    return steps


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    if not rows:
        out.write("(none)\n")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


# ------------------------------------------------------------------ handlers
async def _db_upgrade(args: argparse.Namespace, repo: Repository) -> int:
    print("database is at the latest schema revision")
    return 0


async def _station_add(args: argparse.Namespace, repo: Repository) -> int:
    current, phases, wiring = validate_station(
        max_current_a=args.max_current_a, phases=args.phases, wiring=args.wiring
    )
    if args.unsecured and args.password:
        raise ConfigError("--unsecured admits any client: give --password or --unsecured")
    await repo.add_charge_point(
        args.id,
        max_current_a=current,
        phases=phases,
        wiring=wiring,
        name=args.name,
        password=args.password,
        only_stack_level_0=args.only_stack_level_0,
        rate_unit=args.rate_unit,
        current_steps_a=args.current_steps,
        security_profile=0 if args.unsecured else 1,
    )
    if args.unsecured:
        print(
            f"warning: {args.id} is unsecured (security profile 0): any client using this "
            "id is accepted; for lab use only",
            file=sys.stderr,
        )
    elif not args.password:
        print(
            f"warning: {args.id} has no password: it is refused until it has one "
            f"(csms station set {args.id} --password KEY) or is marked --unsecured",
            file=sys.stderr,
        )
    print(f"added charge point {args.id} ({phases} x {current:g} A, wiring {wiring})")
    return 0


async def _station_set(args: argparse.Namespace, repo: Repository) -> int:
    station = await repo.get_charge_point(args.id)
    if station is None:
        raise NotFoundError(f"no charge point {args.id!r}")
    current, phases, wiring = validate_station(
        max_current_a=args.max_current_a
        if args.max_current_a is not None
        else station.max_current_a,
        phases=args.phases if args.phases is not None else station.phases,
        wiring=args.wiring or (station.wiring if args.phases in (None, station.phases) else None),
    )
    changes: dict[str, Any] = {"max_current_a": current, "phases": phases, "wiring": wiring}
    if args.wiring:
        # Typed by a person: ConnectorPhaseRotation no longer replaces a non-default wiring.
        changes["wiring_set_by"] = "manager"
    if args.name is not None:
        changes["name"] = args.name
    if args.password is not None:
        changes["password"] = args.password
    if args.accept_boot_at_once is not None:
        changes["accept_boot_at_once"] = args.accept_boot_at_once == "yes"
    profile = _profile_option(args, station.security_profile)
    if profile != station.security_profile:
        changes["security_profile"] = profile
    updated = await repo.update_charge_point(args.id, **changes)
    print(f"updated charge point {args.id}")
    if updated.security_profile == 0:
        print(
            f"warning: {args.id} is unsecured: any client using this id is accepted",
            file=sys.stderr,
        )
    elif updated.security_profile == 3:
        print(
            f"note: {args.id} logs in with a TLS client certificate whose common name is "
            f"{args.id} (csms serve --client-ca); no password is checked"
        )
    elif updated.password_hash is None and updated.pending_password_hash is None:
        print(
            f"warning: {args.id} has no password: it is refused until it has one", file=sys.stderr
        )
    return 0


def _profile_option(args: argparse.Namespace, current: int) -> int:
    """The security profile `station set` asks for (the current one if it asks none)."""
    if args.unsecured:
        return 0
    if args.secured:
        return max(1, current)
    if args.security_profile is not None:
        return int(args.security_profile)
    return current


def _security(station: ChargePointInfo) -> str:
    """How `station list` shows a charge point's security profile."""
    if station.security_profile == 0:
        return "0 unsecured"
    if station.security_profile == 3:
        return "3 client certificate"
    if station.password_hash is None and station.pending_password_hash is None:
        return f"{station.security_profile} no password: refused"
    if station.pending_password_hash is not None:
        return f"{station.security_profile} key change pending"
    return f"{station.security_profile} password" + (
        " + TLS" if station.security_profile >= 2 else ""
    )


async def _station_rotate_password(args: argparse.Namespace, repo: Repository) -> int:
    """ChangeConfiguration(AuthorizationKey) with a new random key, through the outbox.

    The CSMS stores the new key's hash only when the charger accepts it (then the old key
    stops working at once); see csms.ocpp16.handlers.ChargePointSession.send_call.
    """
    from csms.auth import new_authorization_key

    station = await repo.get_charge_point(args.id)
    if station is None:
        raise NotFoundError(f"no charge point {args.id!r}")
    command_id = await repo.enqueue_command(
        args.id,
        "ChangeConfiguration",
        {"key": "AuthorizationKey", "value": new_authorization_key()},
        requested_by="rotate-password",
    )
    print(f"command {command_id} queued: a new AuthorizationKey for {args.id}")
    if args.wait <= 0:
        return 0
    row = await _wait_for_command(repo, command_id, args.wait)
    if row is None:
        print(
            f"no answer within {args.wait:g} s; the command stays queued (id {command_id}) "
            "and the old key works until the charger accepts the new one"
        )
        return 1
    after = await repo.get_charge_point(args.id)
    status = (row.get("response") or {}).get("status")
    why = f"it answered {status}" if status else (row.get("error") or "it did not answer")
    if status == "Accepted":
        print(f"{args.id}: it accepted the new key; the old key no longer works")
        if after is not None and after.security_profile == 0:
            print(
                f"note: {args.id} is unsecured; `csms station set {args.id} --secured` "
                "makes it log in with the key"
            )
        return 0
    if after is not None and after.pending_password_hash is not None:
        print(
            f"{args.id}: {why}; its old key stays, and the new key is accepted too until "
            "it first logs in with it"
        )
        return 0 if status == "RebootRequired" else 1
    print(f"{args.id}: {why}; nothing changed, the old key stays")
    return 1


async def _wait_for_command(
    repo: Repository, command_id: int, wait_s: float
) -> dict[str, Any] | None:
    """The command row once it is done or failed; None if ``wait_s`` passes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        row = await repo.get_command(command_id)
        if row is not None and row["status"] in ("done", "failed"):
            return row
        await asyncio.sleep(0.2)
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


async def _station_list(args: argparse.Namespace, repo: Repository) -> int:
    from csms.controller.capabilities import capabilities_to_json, describe

    read = await repo.charge_point_capabilities()
    rows: list[dict[str, Any]] = []
    table: list[dict[str, Any]] = []
    site_names = {site.site_id: site.name for site in await repo.list_sites()}
    for s in await repo.list_charge_points():
        caps, read_at = read.get(s.id, (None, None))
        row: dict[str, Any] = {"site": site_names.get(s.site_id)} if len(site_names) > 1 else {}
        row |= {
            "id": s.id,
            "name": s.name,
            "max_current_a": s.max_current_a,
            "phases": s.phases,
            "wiring": s.wiring,
            "connected": "yes" if s.connected else "no",
            "last_seen": _iso(s.last_seen_at),
            "vendor": s.vendor,
            "model": s.model,
            "firmware": s.firmware_version,
            "password": "set" if s.password_hash else "none",
            "security": _security(s),
        }
        reported = describe(caps)
        table.append(
            row
            | {
                "unit": s.rate_unit,
                "reported_units": reported.get("rate_units", "not read"),
                "max_stack_level": reported.get("max_stack_level"),
                "phase_rotation": reported.get("phase_rotation"),
                "unmanaged": (s.unmanaged_reason or "yes") if s.unmanaged else "-",
            }
        )
        rows.append(
            row
            | {
                "security_profile": s.security_profile,
                "key_change_pending": s.pending_password_hash is not None,
                "wiring_set_by": s.wiring_set_by,
                "rate_unit": s.rate_unit,
                "only_stack_level_0": s.only_stack_level_0,
                "unmanaged": s.unmanaged,
                "unmanaged_reason": s.unmanaged_reason,
                "unmanaged_at": _iso(s.unmanaged_at),
                "accept_boot_at_once": s.accept_boot_at_once,
                "local_list_supported": s.local_list_supported,
                "local_list_version": s.local_list_version,
                # What the charger reported (GetConfiguration); None: not read yet.
                "capabilities": (
                    capabilities_to_json(caps) | {"read_at": _iso(read_at)}
                    if caps is not None
                    else None
                ),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(table, list(table[0]) if table else ["id"], sys.stdout)
    return 0


async def _station_security_events(args: argparse.Namespace, repo: Repository) -> int:
    """SecurityEventNotifications the chargers sent (OCPP 1.6 security extension)."""
    if args.id is not None and await repo.get_charge_point(args.id) is None:
        raise NotFoundError(f"no charge point {args.id!r}")
    events = (await repo.security_events(args.id))[: args.limit]
    rows = [
        e | {"occurred_at": _iso(e["occurred_at"]), "received_at": _iso(e["received_at"])}
        for e in events
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        columns = ["received_at", "charge_point_id", "type", "occurred_at", "tech_info"]
        _print_table(rows, columns, sys.stdout)
    return 0


async def _station_reset_managed(args: argparse.Namespace, repo: Repository) -> int:
    before = await repo.clear_unmanaged(args.id)
    if not before.unmanaged:
        print(f"{args.id} was not marked unmanaged; nothing changed")
        return 0
    since = f" since {_iso(before.unmanaged_at)}" if before.unmanaged_at else ""
    print(f"{args.id} was counted at its maximum{since}: {before.unmanaged_reason or 'no reason'}")
    print(f"{args.id} is managed again: the controller sends it limits from its next tick")
    return 0


async def _station_remove(args: argparse.Namespace, repo: Repository) -> int:
    await repo.remove_charge_point(args.id)
    print(f"removed charge point {args.id}")
    return 0


async def _idtag_add(args: argparse.Namespace, repo: Repository) -> int:
    if len(args.tag) > 20:
        raise ConfigError(f"id tag {args.tag!r} is longer than 20 characters (OCPP 1.6 CiString20)")
    await repo.add_id_tag(args.tag, owner=args.owner, expires_at=args.expires, parent=args.parent)
    print(f"added id tag {args.tag}")
    return 0


async def _idtag_list(args: argparse.Namespace, repo: Repository) -> int:
    rows = await repo.list_id_tags()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        columns = ["id_tag", "owner", "parent", "expires_at", "blocked"]
        if len({r["site_id"] for r in rows}) > 1:
            columns.insert(0, "site_id")
        _print_table(rows, columns, sys.stdout)
    return 0


async def _idtag_block(args: argparse.Namespace, repo: Repository) -> int:
    await repo.set_id_tag_blocked(args.tag, not args.unblock)
    print(f"{'unblocked' if args.unblock else 'blocked'} id tag {args.tag}")
    return 0


# A new site's settings before `csms site add` options apply (the columns' defaults).
NEW_SITE_DEFAULTS: dict[str, Any] = {
    column.key: column.default.arg
    for column in SiteSettings.__table__.columns
    if column.key in {f.name for f in fields(SiteConfig)} and column.default is not None
}

SITE_OPTIONS = (
    "fuse_limit_a",
    "margin_a",
    "phases",
    "voltage_v",
    "strategy",
    "tick_s",
    "default_departure",
    "default_energy_kwh",
    "timezone",
    "price_per_kwh",
    "currency",
    "heartbeat_interval_s",
    "building_load_max_age_s",
    "building_load_worst_case_a",
)


async def _site_set(args: argparse.Namespace, repo: Repository) -> int:
    changes = {
        name: getattr(args, name) for name in SITE_OPTIONS if getattr(args, name) is not None
    }
    if not changes and args.name is None:
        raise ConfigError("nothing to set; see `csms site set --help`")
    clean = validate_site_update(await repo.site_config(), changes)
    if args.name is not None:
        clean["name"] = _site_name(args.name)
    site = await repo.update_site(**clean)
    await _tell_controllers(repo, "site settings", site.site_id)
    print(json.dumps(site.__dict__, indent=2))
    return 0


async def _tell_controllers(repo: Repository, reason: str, site_id: int) -> None:
    """On PostgreSQL the site's controller (on whichever instance leads it) hears of the
    change at once; elsewhere it notices within its poll second."""
    bind = repo.sessionmaker.kw.get("bind")
    if bind is not None and bind.dialect.name == "postgresql":
        from csms.cluster import announce_settings_changed

        await announce_settings_changed(bind.url, reason, site_id)


async def _site_show(args: argparse.Namespace, repo: Repository) -> int:
    site = await repo.site_config()
    data: dict[str, Any] = dict(site.__dict__)
    latest = await repo.latest_building_load()
    if latest is not None:
        data["building_load"] = {"measured_at": latest[0].isoformat(), "a": list(latest[1])}
    print(json.dumps(data, indent=2))
    return 0


def _site_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64:
        raise ConfigError("a site name is 1 to 64 characters")
    return name


async def _site_add(args: argparse.Namespace, repo: Repository) -> int:
    changes = {
        name: getattr(args, name) for name in SITE_OPTIONS if getattr(args, name) is not None
    }
    # Checked against a new site's defaults (site 1's row may differ from them).
    defaults = replace(await repo.site_config(), **NEW_SITE_DEFAULTS)
    clean = validate_site_update(defaults, changes)
    site = await repo.add_site(_site_name(args.name), **clean)
    print(f"added site {site.name} (id {site.site_id}, fuse {site.fuse_limit_a:g} A)")
    return 0


async def _site_list(args: argparse.Namespace, repo: Repository) -> int:
    stations: dict[int, int] = {}
    for site_id in (await repo.charge_point_sites()).values():
        stations[site_id] = stations.get(site_id, 0) + 1
    rows = [
        {
            "id": site.site_id,
            "name": site.name,
            "stations": stations.get(site.site_id, 0),
            "fuse_limit_a": site.fuse_limit_a,
            "strategy": site.strategy,
            "timezone": site.timezone,
        }
        for site in await repo.list_sites()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, list(rows[0]), sys.stdout)
    return 0


async def _cluster_status(args: argparse.Namespace, repo: Repository) -> int:
    from csms.cluster import cluster_status

    bind = repo.sessionmaker.kw.get("bind")
    if bind is None or bind.dialect.name != "postgresql":
        raise ConfigError(
            "cluster status needs PostgreSQL: on SQLite one csms serve is the whole system"
        )
    status = await cluster_status(bind.url, repo)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    rows = [
        {
            "instance": i["instance"],
            "leads": ", ".join(i["leads"]) or "-",
            "chargers": i["chargers"],
        }
        for i in status["instances"]
    ]
    if rows:
        _print_table(rows, list(rows[0]), sys.stdout)
    else:
        print("no csms serve instance is running on this database")
    if status["sites_without_leader"]:
        print("sites nobody leads now: " + ", ".join(status["sites_without_leader"]))
    if status["chargers_on_no_live_instance"]:
        print(
            f"{status['chargers_on_no_live_instance']} chargers marked connected to an "
            "instance that is gone (cleared by the next instance's election)"
        )
    return 0


async def _site_load(args: argparse.Namespace, repo: Repository) -> int:
    l1, l2, l3 = validate_building_load(args.l1, args.l2, args.l3)
    await repo.record_building_load(l1, l2, l3, source=args.source)
    await _tell_controllers(repo, "building load", repo.site_id or 1)
    print(f"building load recorded: L1 {l1:g} A, L2 {l2:g} A, L3 {l3:g} A")
    return 0


async def _command(args: argparse.Namespace, repo: Repository) -> int:
    from csms.outbox import OUTBOX_ACTIONS

    if args.action not in OUTBOX_ACTIONS:
        raise ConfigError(
            f"unknown action {args.action!r}; choose one of {', '.join(sorted(OUTBOX_ACTIONS))}"
        )
    command_id = await repo.enqueue_command(args.cp_id, args.action, args.payload)
    print(f"command {command_id} queued: {args.action} to {args.cp_id}")
    if args.wait <= 0:
        return 0
    deadline = asyncio.get_running_loop().time() + args.wait
    while asyncio.get_running_loop().time() < deadline:
        row = await repo.get_command(command_id)
        if row is not None and row["status"] in ("done", "failed"):
            print(json.dumps({k: row[k] for k in ("status", "response", "error")}, default=str))
            return 0 if row["status"] == "done" else 1
        await asyncio.sleep(0.2)
    print(f"no answer within {args.wait:g} s; the command stays queued (id {command_id})")
    return 1


async def _export_sessions(args: argparse.Namespace, repo: Repository) -> int:
    start = datetime.combine(args.from_date, time(), UTC) if args.from_date else None
    end = datetime.combine(args.to_date, time(), UTC) + timedelta(days=1) if args.to_date else None
    rows = await repo.sessions_for_export(start, end)
    columns = [
        "transaction_id",
        "charge_point_id",
        "connector_id",
        "id_tag",
        "owner",
        "started_at",
        "stopped_at",
        "meter_start_wh",
        "meter_stop_wh",
        "energy_wh",
        "stop_reason",
    ]
    out: TextIO = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: ASYNC230, SIM115 - one-shot CLI
    try:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"wrote {len(rows)} sessions to {args.output}", file=sys.stderr)
    return 0


async def _session_set(args: argparse.Namespace, repo: Repository) -> int:
    if args.target_soc is not None and not 0 < args.target_soc <= 100:
        raise ConfigError(f"--target-soc: expected a percentage 1-100, got {args.target_soc:g}")
    await repo.set_session_input(
        args.transaction_id,
        departure_at=args.departure,
        energy_needed_wh=args.energy_kwh * 1000 if args.energy_kwh is not None else None,
        ev_model=args.ev_model,
        battery_kwh=args.battery_kwh,
        target_soc=args.target_soc / 100 if args.target_soc is not None else None,
    )
    print(f"updated session {args.transaction_id}")
    return 0


async def _provision(args: argparse.Namespace, repo: Repository) -> int:
    """Register a scenario's stations (max current, phases, wiring, name) and id tags."""
    from csms.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    known = {s.id for s in await repo.list_charge_points()}
    tags = {t["id_tag"] for t in await repo.list_id_tags()}
    added_stations = added_tags = 0
    for station in scenario.stations:
        if station.id in known:
            continue
        await repo.add_charge_point(
            station.id,
            max_current_a=station.max_current_a,
            phases=station.phases,
            wiring="".join(station.wiring),
            name=station.name,
            password=args.password,
        )
        added_stations += 1
    names = {s.id: s.name for s in scenario.stations}
    for session in scenario.sessions:
        if session.id_tag in tags:
            continue
        await repo.add_id_tag(session.id_tag, owner=names.get(session.station))
        tags.add(session.id_tag)
        added_tags += 1
    if args.site:
        clean = validate_site_update(
            await repo.site_config(),
            {
                "fuse_limit_a": scenario.site.fuse_limit_a,
                "margin_a": scenario.site.margin_a,
                "phases": scenario.site.phases,
                "voltage_v": scenario.site.voltage_v,
            },
        )
        await repo.update_site(**clean)
    print(
        f"scenario {scenario.name}: {added_stations} stations and {added_tags} id tags added"
        + (", site fuse set" if args.site else "")
    )
    return 0


# ------------------------------------------------------------- monitor accounts
def _cli_actor() -> str:
    """Who ran ``csms user ...``, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """--password, else asked twice on a terminal (empty: generate), else generated.
    Returns the password and whether it was generated (then it is printed once)."""
    if args.password is not None:
        return check_new_password(args.password), False
    if sys.stdin.isatty():
        first = getpass.getpass("password (empty: generate one): ")
        if first:
            if getpass.getpass("again: ") != first:
                raise ConfigError("password: the two entries differ")
            return check_new_password(first), False
    return generate_password(), True


def _print_generated(name: str, password: str) -> None:
    print(f"password for {name} (shown once, not stored in clear): {password}")


async def _user_add(args: argparse.Namespace, repo: Repository) -> int:
    name = check_user_name(args.name)
    role = Role(args.role)
    password, generated = _new_password(args)
    account = await repo.add_user(
        name,
        role,
        hash_user_password(password),
        stations=args.station,
        tags=args.tag,
        site_id=None if args.all_sites else (await repo.site_config()).site_id,
    )
    scope = sorted(account.stations | account.tags)
    await repo.record_audit(
        at=repo.now(),
        actor=_cli_actor(),
        role=None,
        action="add user",
        target=name,
        detail={
            "role": role.value,
            "stations": sorted(account.stations),
            "tags": sorted(account.tags),
            "site_id": account.site_id,
        },
    )
    print(f"added {role} {name}" + (f" ({', '.join(scope)})" if scope else ""))
    if generated:
        _print_generated(name, password)
    return 0


async def _user_set_password(args: argparse.Namespace, repo: Repository) -> int:
    if await repo.get_user(args.name) is None:
        raise NotFoundError(f"no user {args.name!r}")
    password, generated = _new_password(args)
    await repo.set_user_password(args.name, hash_user_password(password))
    await repo.record_audit(
        at=repo.now(), actor=_cli_actor(), role=None, action="set password", target=args.name
    )
    print(f"new password set for {args.name}; their monitor sessions have ended")
    if generated:
        _print_generated(args.name, password)
    return 0


async def _user_set_site(args: argparse.Namespace, repo: Repository) -> int:
    site_id = None if args.all_sites else (await repo.site_config()).site_id
    account = await repo.set_user_site(args.name, site_id)
    await repo.record_audit(
        at=repo.now(),
        actor=_cli_actor(),
        role=None,
        action="set user site",
        target=args.name,
        detail={"site_id": account.site_id},
    )
    sees = "every site" if site_id is None else f"site {(await repo.site_config()).name}"
    print(f"{args.name} sees {sees}")
    return 0


async def _user_list(args: argparse.Namespace, repo: Repository) -> int:
    accounts = await repo.list_users()
    sites = {site.site_id: site.name for site in await repo.list_sites()}
    if args.json:
        rows: list[dict[str, Any]] = [
            {
                "name": a.name,
                "role": a.role.value,
                "site": "*" if a.site_id is None else sites.get(a.site_id),
                "stations": sorted(a.stations),
                "tags": sorted(a.tags),
                "last_login": _iso(a.last_login_at),
            }
            for a in accounts
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        {
            "name": a.name,
            "role": a.role.value,
            "stations": ",".join(sorted(a.stations)),
            "tags": ",".join(sorted(a.tags)),
            "last_login": _iso(a.last_login_at) or "never",
            "site": "*" if a.site_id is None else sites.get(a.site_id),
        }
        for a in accounts
    ]
    columns = ["name", "role", "stations", "tags", "last_login"]
    if len(sites) > 1:
        columns.insert(2, "site")
    _print_table(table, columns, sys.stdout)
    return 0


async def _user_remove(args: argparse.Namespace, repo: Repository) -> int:
    await repo.remove_user(args.name)
    await repo.record_audit(
        at=repo.now(), actor=_cli_actor(), role=None, action="remove user", target=args.name
    )
    print(f"removed user {args.name}; their monitor sessions have ended")
    return 0


# ------------------------------------------------------------------- API tokens
async def _token_add(args: argparse.Namespace, repo: Repository) -> int:
    from csms.clock import utcnow
    from csms.store.tokens import add_token

    info, token = await add_token(
        repo.sessionmaker,
        args.name,
        Role(args.role),
        user=args.user,
        now=utcnow(),
        site=args.site,
    )
    await repo.record_audit(
        at=utcnow(),
        actor=_cli_actor(),
        role=None,
        action="add API token",
        target=info.name,
        detail={"role": info.role.value, "user": info.user, "site": args.site},
    )
    # The token alone on standard output (scripts: TOKEN=$(csms token add ...)); it is
    # shown this once and stored hashed.
    print(
        f"added {info.role} token {info.name}"
        + (f" for {info.user}" if info.user else "")
        + (f" on site {args.site}" if args.site else "")
        + "; the token (shown once, stored hashed) follows on standard output",
        file=sys.stderr,
    )
    print(token)
    return 0


async def _token_list(args: argparse.Namespace, repo: Repository) -> int:
    from csms.store.tokens import list_tokens

    site_names = {site.site_id: site.name for site in await repo.list_sites()}
    rows = [
        {
            "name": t.name,
            "role": t.role.value,
            "user": t.user,
            # The site a token acts within; empty: every site (an operator's token).
            "site": site_names.get(t.site_id) if t.site_id is not None else None,
            "token": f"{t.prefix}...",
            "created_at": _iso(t.created_at),
            "last_used_at": _iso(t.last_used_at),
            "revoked_at": _iso(t.revoked_at),
        }
        for t in await list_tokens(repo.sessionmaker)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, list(rows[0]) if rows else ["name"], sys.stdout)
    return 0


async def _token_revoke(args: argparse.Namespace, repo: Repository) -> int:
    from csms.clock import utcnow
    from csms.store.tokens import revoke_token

    info = await revoke_token(repo.sessionmaker, args.name, now=utcnow())
    await repo.record_audit(
        at=utcnow(), actor=_cli_actor(), role=None, action="revoke API token", target=info.name
    )
    print(f"revoked token {info.name}: it is refused from now on")
    return 0


# ------------------------------------------------------------------- parser
def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=argparse.SUPPRESS,
        help="SQLAlchemy async URL (default: $GARAGEGRID_DATABASE_URL or sqlite+aiosqlite:///garagegrid.db)",
    )


def _site_option(parser: argparse.ArgumentParser, *, needed: bool = False) -> None:
    """``--site NAME``; ``needed``: the command acts on one site, so without --site a
    deployment of several sites is an error (one site: that one)."""
    parser.add_argument(
        "--site",
        dest="site_name",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="the site (garage) by name; default: the only site"
        + ("" if needed else " (several sites: all of them)"),
    )
    if needed:
        parser.set_defaults(site_needed=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csms", description="GarageGrid OCPP 1.6J central system with load management"
    )
    _db_option(parser)
    _site_option(parser)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the central system")
    _db_option(serve)
    serve.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")  # noqa: S104
    serve.add_argument("--port", type=int, default=9000, help="listen port (default 9000)")
    serve.add_argument(
        "--auto-register",
        action="store_true",
        help="accept an unknown charge point id that brings a password, and pin that "
        "password (trust on first use); one without a password is refused",
    )
    serve.add_argument(
        "--auto-register-unsecured",
        action="store_true",
        help="--auto-register, and record an unknown id without a password as unsecured "
        "(security profile 0: any client using it is accepted; lab use only)",
    )
    serve.add_argument("--speed", type=_positive_float, default=1.0, help="simulated clock speed")
    serve.add_argument("--clock-start", type=_parse_datetime, help="simulated clock start (ISO)")
    serve.add_argument(
        "--join-clock",
        action="store_true",
        help="run on the clock another instance published in the database (several "
        "instances of one simulated garage on PostgreSQL; --speed and --clock-start are "
        "taken from there)",
    )
    serve.add_argument(
        "--no-cluster",
        action="store_true",
        help="on PostgreSQL, do not take part in leader election with other instances "
        "(only when this is certainly the only instance on the database)",
    )
    serve.add_argument("--certfile", help="TLS certificate (security profile 2)")
    serve.add_argument("--keyfile", help="TLS private key")
    serve.add_argument(
        "--client-ca",
        help="CA (PEM) whose client certificates TLS accepts; a profile 3 station must "
        "present one whose common name is its id (needs --certfile)",
    )
    serve.add_argument(
        "--ca-cert", help="site CA certificate (PEM) that signs chargers' CSRs (SignCertificate)"
    )
    serve.add_argument("--ca-key", help="the site CA's private key (PEM, unencrypted)")
    serve.add_argument("--no-controller", action="store_true", help="do not run load management")
    serve.add_argument(
        "--api-port",
        type=int,
        help="also serve the operator HTTP API (/api/v1) and /metrics on this port "
        "(off unless set; https with --certfile)",
    )
    serve.add_argument(
        "--api-host", default="127.0.0.1", help="the API's listen address (default 127.0.0.1)"
    )
    serve.add_argument(
        "--no-local-list-sync",
        action="store_true",
        help="do not push id tag changes to the chargers' local authorization lists",
    )
    serve.add_argument(
        "--files-port",
        type=int,
        help="serve firmware (GET /firmware/NAME) and take diagnostics uploads "
        "(PUT/POST /diagnostics/CP/NAME) over HTTP on this port (off unless given)",
    )
    serve.add_argument(
        "--files-host",
        default="127.0.0.1",
        help="address of the files endpoint (default 127.0.0.1; it has no authentication)",
    )
    serve.add_argument(
        "--files-dir", default="garagegrid-files", help="its directory (default ./garagegrid-files)"
    )
    serve.set_defaults(handler=None)

    api = sub.add_parser(
        "api", help="serve the operator HTTP API alone, on the CSMS's database (beside csms serve)"
    )
    _db_option(api)
    api.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    api.add_argument("--certfile", help="TLS certificate (PEM): serve https")
    api.add_argument("--keyfile", help="TLS private key")
    api.set_defaults(handler=None)

    token = sub.add_parser("token", help="bearer tokens of the operator HTTP API")
    tk_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    tk_add = tk_sub.add_parser(
        "add",
        help="make a token (printed once on standard output, stored hashed)",
        description="A resident token acts for a resident account (--user) and sees only "
        "its stations and sessions; a viewer token reads; a manager token does everything.",
    )
    _db_option(tk_add)
    tk_add.add_argument("name", help="the token's name (who or what uses it)")
    tk_add.add_argument("--role", required=True, choices=[r.value for r in Role])
    tk_add.add_argument("--user", help="the account it acts for (required for --role resident)")
    tk_add.add_argument(
        "--site",
        help="the site a manager or viewer token acts within (else every site: an operator)",
    )
    tk_add.set_defaults(handler=_token_add)
    tk_list = tk_sub.add_parser("list", help="list tokens (never the tokens themselves)")
    _db_option(tk_list)
    tk_list.add_argument("--json", action="store_true")
    tk_list.set_defaults(handler=_token_list)
    tk_revoke = tk_sub.add_parser("revoke", help="refuse a token from now on")
    _db_option(tk_revoke)
    tk_revoke.add_argument("name")
    tk_revoke.set_defaults(handler=_token_revoke)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="apply pending migrations")
    _db_option(upgrade)
    upgrade.set_defaults(handler=_db_upgrade)

    station = sub.add_parser("station", help="charge points")
    st_sub = station.add_subparsers(dest="station_command", required=True, metavar="ACTION")
    add = st_sub.add_parser("add", help="register a charge point")
    _db_option(add)
    _site_option(add, needed=True)
    add.add_argument("id")
    add.add_argument("--max-current-a", type=float, default=32.0)
    add.add_argument("--phases", type=int, default=3, choices=(1, 3))
    add.add_argument("--wiring", help="L1/L2/L3 for 1-phase, rotation like L2L3L1 for 3-phase")
    add.add_argument("--name", help='apartment or label, e.g. "Apt B12"')
    add.add_argument("--password", help="AuthorizationKey for HTTP Basic auth (stored hashed)")
    add.add_argument("--only-stack-level-0", action="store_true", help="charger quirk")
    add.add_argument(
        "--rate-unit", choices=("A", "W"), default="A", help="unit the charger accepts"
    )
    add.add_argument("--current-steps", type=_steps, help="allowed currents, e.g. 6,8,10,13,16")
    add.add_argument(
        "--unsecured",
        action="store_true",
        help="no authentication at all (security profile 0, lab use); without it and "
        "without --password the station is refused until it gets a password",
    )
    add.set_defaults(handler=_station_add)
    st_set = st_sub.add_parser("set", help="rename or change a charge point")
    _db_option(st_set)
    st_set.add_argument("id")
    st_set.add_argument("--max-current-a", type=float)
    st_set.add_argument("--phases", type=int, choices=(1, 3))
    st_set.add_argument("--wiring")
    st_set.add_argument("--name")
    st_set.add_argument("--password", help="a new AuthorizationKey ('' removes it)")
    security = st_set.add_mutually_exclusive_group()
    security.add_argument(
        "--unsecured", action="store_true", help="no authentication (security profile 0)"
    )
    security.add_argument(
        "--secured", action="store_true", help="require the password (profile 1, or keep 2)"
    )
    security.add_argument(
        "--security-profile",
        type=int,
        choices=(0, 1, 2, 3),
        help="0 none, 1 HTTP Basic, 2 HTTP Basic over TLS only, 3 TLS client certificate "
        "(common name = the id; csms serve --client-ca)",
    )
    st_set.add_argument(
        "--accept-boot-at-once",
        choices=("yes", "no"),
        help="yes: answer its first BootNotification Accepted, then install the fail-safe "
        "profiles (for chargers that never boot again after Pending); no: Pending first",
    )
    st_set.set_defaults(handler=_station_set)
    rotate = st_sub.add_parser(
        "rotate-password",
        help="send the charger a new random AuthorizationKey (the old one works until it accepts)",
    )
    _db_option(rotate)
    rotate.add_argument("id")
    rotate.add_argument(
        "--wait", type=float, default=40.0, help="seconds to wait for the answer (0: do not wait)"
    )
    rotate.set_defaults(handler=_station_rotate_password)
    events = st_sub.add_parser(
        "security-events",
        help="security events the chargers reported (SecurityEventNotification), newest first",
    )
    _db_option(events)
    events.add_argument("id", nargs="?", help="one charge point (default: all)")
    events.add_argument("--limit", type=int, default=50)
    events.add_argument("--json", action="store_true")
    events.set_defaults(handler=_station_security_events)
    st_list = st_sub.add_parser("list", help="list charge points")
    _db_option(st_list)
    _site_option(st_list)
    st_list.add_argument("--json", action="store_true")
    st_list.set_defaults(handler=_station_list)
    reset = st_sub.add_parser(
        "reset-managed", help="count a charger as managed again (clears the unmanaged mark)"
    )
    _db_option(reset)
    reset.add_argument("id")
    reset.set_defaults(handler=_station_reset_managed)
    remove = st_sub.add_parser("remove", help="delete a charge point and its history")
    _db_option(remove)
    remove.add_argument("id")
    remove.set_defaults(handler=_station_remove)

    idtag = sub.add_parser("idtag", help="residents' id tags")
    id_sub = idtag.add_subparsers(dest="idtag_command", required=True, metavar="ACTION")
    id_add = id_sub.add_parser("add", help="add an id tag")
    _db_option(id_add)
    _site_option(id_add, needed=True)
    id_add.add_argument("tag")
    id_add.add_argument("--owner")
    id_add.add_argument("--expires", type=_parse_datetime)
    id_add.add_argument("--parent")
    id_add.set_defaults(handler=_idtag_add)
    id_list = id_sub.add_parser("list", help="list id tags")
    _db_option(id_list)
    _site_option(id_list)
    id_list.add_argument("--json", action="store_true")
    id_list.set_defaults(handler=_idtag_list)
    block = id_sub.add_parser("block", help="block an id tag")
    _db_option(block)
    block.add_argument("tag")
    block.add_argument("--unblock", action="store_true", help="lift the block instead")
    block.set_defaults(handler=_idtag_block)

    cluster = sub.add_parser("cluster", help="several csms serve instances on PostgreSQL")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    cluster_status = cluster_sub.add_parser(
        "status", help="live instances, the sites each leads, the chargers each holds"
    )
    _db_option(cluster_status)
    cluster_status.add_argument("--json", action="store_true")
    cluster_status.set_defaults(handler=_cluster_status)
    site = sub.add_parser("site", help="sites (garages): settings and building load")
    site_sub = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    site_add = site_sub.add_parser("add", help="add a site (a garage with its own fuse)")
    _db_option(site_add)
    site_add.add_argument("name")
    _site_settings_options(site_add)
    site_add.set_defaults(handler=_site_add)
    site_list = site_sub.add_parser("list", help="list sites")
    _db_option(site_list)
    site_list.add_argument("--json", action="store_true")
    site_list.set_defaults(handler=_site_list)
    site_set = site_sub.add_parser("set", help="change site settings")
    _db_option(site_set)
    _site_option(site_set, needed=True)
    site_set.add_argument("--name", help="rename the site")
    _site_settings_options(site_set)
    site_set.set_defaults(handler=_site_set)
    site_show = site_sub.add_parser("show", help="print site settings")
    _db_option(site_show)
    _site_option(site_show, needed=True)
    site_show.set_defaults(handler=_site_show)
    load = site_sub.add_parser("load", help="record the building's other consumption per phase")
    _db_option(load)
    _site_option(load, needed=True)
    load.add_argument("--l1", type=float, required=True)
    load.add_argument("--l2", type=float, required=True)
    load.add_argument("--l3", type=float, required=True)
    load.add_argument("--source", default="cli")
    load.set_defaults(handler=_site_load)

    command = sub.add_parser("command", help="queue an OCPP operation for a charge point")
    _db_option(command)
    command.add_argument("cp_id")
    command.add_argument("action", help="e.g. Reset, RemoteStartTransaction, TriggerMessage")
    command.add_argument("--payload", type=_parse_json_object, default={}, help="OCPP JSON payload")
    command.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for the answer (0: do not wait)"
    )
    command.set_defaults(handler=_command)

    export = sub.add_parser("export", help="export data")
    ex_sub = export.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    sessions = ex_sub.add_parser("sessions", help="one row per transaction")
    _db_option(sessions)
    _site_option(sessions, needed=True)
    sessions.add_argument("--from", dest="from_date", type=_parse_date)
    sessions.add_argument("--to", dest="to_date", type=_parse_date, help="inclusive")
    sessions.add_argument("--format", choices=("csv",), default="csv")
    sessions.add_argument("--output", "-o", help="file (default: standard output)")
    sessions.set_defaults(handler=_export_sessions)

    session = sub.add_parser("session", help="residents' input for a running session")
    se_sub = session.add_subparsers(dest="session_command", required=True, metavar="ACTION")
    se_set = se_sub.add_parser("set", help="set departure and energy need")
    _db_option(se_set)
    se_set.add_argument("transaction_id", type=int)
    se_set.add_argument("--departure", type=_parse_datetime)
    se_set.add_argument("--energy-kwh", type=_positive_float)
    se_set.add_argument("--ev-model")
    se_set.add_argument("--battery-kwh", type=_positive_float)
    se_set.add_argument("--target-soc", type=float, help="percent")
    se_set.set_defaults(handler=_session_set)

    provision = sub.add_parser(
        "provision", help="register a scenario's stations and id tags (for demos and tests)"
    )
    _db_option(provision)
    provision.add_argument("--scenario", required=True, help="built-in name or a JSON path")
    provision.add_argument("--password", help="AuthorizationKey for every station")
    provision.add_argument(
        "--site",
        action="store_true",
        help="also take the scenario's fuse (into which site: `csms --site NAME provision`)",
    )
    provision.set_defaults(handler=_provision, site_needed=True)

    user = sub.add_parser("user", help="monitor accounts: managers, residents, viewers")
    us_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    us_add = us_sub.add_parser(
        "add",
        help="create a monitor account",
        description="Without --password: asked on a terminal, else generated and printed once.",
    )
    _db_option(us_add)
    us_add.add_argument("name")
    us_add.add_argument("--role", required=True, choices=[r.value for r in Role])
    us_add.add_argument(
        "--station", action="append", default=[], metavar="CP_ID", help="a resident's station"
    )
    us_add.add_argument("--tag", action="append", default=[], help="a resident's id tag")
    us_add.add_argument(
        "--password", help="the password (else asked, or generated); stays in shell history"
    )
    _user_site_options(us_add)
    us_add.set_defaults(handler=_user_add)
    us_site = us_sub.add_parser("set-site", help="the site an account sees (or every site)")
    _db_option(us_site)
    us_site.add_argument("name")
    _user_site_options(us_site)
    us_site.set_defaults(handler=_user_set_site)
    us_pw = us_sub.add_parser("set-password", help="a new password (ends the account's sessions)")
    _db_option(us_pw)
    us_pw.add_argument("name")
    us_pw.add_argument("--password", help="the password (else asked, or generated)")
    us_pw.set_defaults(handler=_user_set_password)
    us_list = us_sub.add_parser("list", help="list monitor accounts (never their passwords)")
    _db_option(us_list)
    _site_option(us_list)
    us_list.add_argument("--json", action="store_true")
    us_list.set_defaults(handler=_user_list)
    us_remove = us_sub.add_parser("remove", help="delete a monitor account")
    _db_option(us_remove)
    us_remove.add_argument("name")
    us_remove.set_defaults(handler=_user_remove)

    simcli.add_commands(sub)
    cli_features.add_commands(sub)
    return parser


def _site_settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fuse-limit-a", type=float, dest="fuse_limit_a")
    parser.add_argument("--margin-a", type=float, dest="margin_a")
    parser.add_argument("--phases", type=int, dest="phases")
    parser.add_argument("--voltage-v", type=float, dest="voltage_v")
    parser.add_argument("--strategy", dest="strategy")
    parser.add_argument("--tick-s", type=float, dest="tick_s")
    parser.add_argument("--default-departure", dest="default_departure", help="HH:MM")
    parser.add_argument("--default-energy-kwh", type=float, dest="default_energy_kwh")
    parser.add_argument("--timezone", dest="timezone", help="e.g. Europe/Oslo")
    parser.add_argument("--price-per-kwh", type=float, dest="price_per_kwh")
    parser.add_argument("--currency", dest="currency")
    parser.add_argument("--heartbeat-interval-s", type=int, dest="heartbeat_interval_s")
    parser.add_argument("--building-load-max-age-s", type=float, dest="building_load_max_age_s")
    parser.add_argument(
        "--building-load-worst-case-a", type=float, dest="building_load_worst_case_a"
    )


def _user_site_options(parser: argparse.ArgumentParser) -> None:
    _site_option(parser, needed=True)
    parser.add_argument(
        "--all-sites",
        action="store_true",
        help="the account sees every site (an operator's); default: the site given or the only one",
    )


async def _site_repository(args: argparse.Namespace, repo: Repository) -> Repository:
    """The repository the command works with: the site named by --site, else (a command
    on one site, several sites, no --all-sites) an error that lists them, else the store
    as a single-site install sees it (site 1 for a setting, every site for a listing)."""
    name = getattr(args, "site_name", None)
    if name is not None and getattr(args, "all_sites", False):
        raise ConfigError("give --site NAME or --all-sites, not both")
    if name is None and not getattr(args, "site_needed", False):
        return repo
    if name is None and getattr(args, "all_sites", False):
        return repo
    sites = await repo.list_sites()
    if name is None:
        if len(sites) == 1:
            return repo.for_site(sites[0].site_id)
        raise ConfigError(
            f"there are {len(sites)} sites: name one with --site ("
            + ", ".join(site.name for site in sites)
            + ")"
        )
    for site in sites:
        if site.name == name:
            return repo.for_site(site.site_id)
    raise NotFoundError(
        f"no site {name!r}; the sites are: " + ", ".join(site.name for site in sites)
    )


async def _run(args: argparse.Namespace) -> int:
    handler: Handler = args.handler
    engine = create_engine(getattr(args, "database_url", None))
    try:
        await migrate.upgrade(engine)
        repo = await _site_repository(args, Repository(create_sessionmaker(engine)))
        return await handler(args, repo)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        if args.command == "serve":
            from csms.app import ServeConfig, serve_forever

            config = ServeConfig(
                database_url=getattr(args, "database_url", None),
                host=args.host,
                port=args.port,
                auto_register=args.auto_register or args.auto_register_unsecured,
                auto_register_unsecured=args.auto_register_unsecured,
                speed=args.speed,
                clock_start=args.clock_start,
                join_clock=args.join_clock,
                cluster=not args.no_cluster,
                certfile=args.certfile,
                keyfile=args.keyfile,
                client_ca=args.client_ca,
                ca_cert=args.ca_cert,
                ca_key=args.ca_key,
                controller=not args.no_controller,
                api_port=args.api_port,
                api_host=args.api_host,
                local_list_sync=not args.no_local_list_sync,
                files_port=args.files_port,
                files_host=args.files_host,
                files_dir=args.files_dir,
            )
            asyncio.run(serve_forever(config))
            return 0
        if args.command == "api":
            from csms.api.server import serve_api_forever

            asyncio.run(
                serve_api_forever(
                    getattr(args, "database_url", None),
                    args.host,
                    args.port,
                    certfile=args.certfile,
                    keyfile=args.keyfile,
                )
            )
            return 0
        if getattr(args, "run", None) is not None:
            result: int = args.run(args)
            return result
        return asyncio.run(_run(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GarageGridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
