"""Every write the monitor makes: checked against the account, then put in the audit log.

Pages call these functions, never the repository's writes, so that a hidden button is not
all that stands between a resident and the main fuse: each function checks the account's
role (and, for a car, that the car is the account's) and raises
`csms.auth.AccessDeniedError` otherwise. Done or refused, it leaves an ``audit_log`` row:
who, when (real time, `ui.wall_now`), what and to which target. The row is written right
after the change commits; passwords never reach it.

Sites: a write acts on the site the page shows (``site_id``; without one, the account's
own site, or no particular site for an operator). An account bound to a site may act on
that site only, and a station, session or reservation is written only when its station
is on that site: a crafted widget value naming another site's station is refused and
audited like a role refusal ("denied"). The audit row carries the site.

Logging in lives here too: it reads and writes the lockout (``login_throttle``) and the
audit log, and checks a password with the memory-hard KDF of `csms.auth`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from csms.auth import (
    AccessDeniedError,
    Account,
    Permission,
    check_new_password,
    hash_user_password,
    verify_user_password,
)
from csms.domain import SiteConfig
from csms.errors import ConfigError, NotFoundError
from csms.monitor import actions, ui
from csms.settings import validate_site_update
from csms.store import queries

# Each password check holds 128 MiB for ~0.4 s (csms.auth): at most this many at once, so
# that a burst of logins cannot take the monitor's memory.
KDF_SLOTS = threading.BoundedSemaphore(2)
# The outbox's requested_by column is 64 characters.
REQUESTED_BY_MAX = 64


def _json(value: Any) -> Any:
    """A value as the audit log's JSON stores it."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def audit(
    account: Account | None,
    action: str,
    target: str | None = None,
    *,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
    site_id: int | None = None,
) -> None:
    """One audit row for ``account`` (or a name that is no account: ``actor``), of
    ``site_id`` (else the account's site; an operator's: the whole deployment)."""
    ui.run(
        ui.store().repo.record_audit(
            at=ui.wall_now(),
            actor=actor if actor is not None else account.name if account else "?",
            role=account.role.value if account else None,
            action=action,
            target=target,
            outcome=outcome,
            detail=None if detail is None else _json(detail),
            site_id=site_id if site_id is not None else account.site_id if account else None,
        )
    )


def _require(
    account: Account, permission: Permission, action: str, target: str | None = None
) -> None:
    try:
        account.require(permission)
    except AccessDeniedError:
        audit(account, action, target, outcome="denied")
        raise


def _site(account: Account, site_id: int | None, action: str, target: str | None) -> int | None:
    """The site a write acts on: ``site_id`` (the page's), else the account's own (None:
    an operator naming none). A site-bound account may act on its own site only."""
    site = site_id if site_id is not None else account.site_id
    if account.site_id is not None and site != account.site_id:
        audit(account, action, target, outcome="denied", detail={"site_id": site})
        raise AccessDeniedError(f"{account.name} may not change another site")
    return site


def _station_site(
    account: Account, cp_id: str, site_id: int | None, action: str, target: str | None = None
) -> int | None:
    """`_site`, and the station must be on it: another site's station is refused (and
    audited) as if it did not exist. A station that does not exist is left to the
    repository's own error."""
    site = _site(account, site_id, action, target or cp_id)
    if site is None:
        return None
    info = ui.run(ui.store().repo.get_charge_point(cp_id))
    if info is not None and info.site_id != site:
        audit(
            account,
            action,
            target or cp_id,
            outcome="denied",
            detail={"why": "station of another site"},
            site_id=site,
        )
        raise AccessDeniedError(f"there is no station {cp_id} at this site")
    return site


# ------------------------------------------------------------------------ settings
def update_site(account: Account, current: SiteConfig, changes: dict[str, Any]) -> SiteConfig:
    """Validate, then write only what changed (to ``current``'s site); ConfigError (and
    no write) on a bad value."""
    _require(account, Permission.write_garage, "change settings")
    site = _site(account, current.site_id, "change settings", "site")
    clean = validate_site_update(current, changes)
    before = asdict(current)
    changed = {k: v for k, v in clean.items() if before.get(k) != v}
    if not changed:
        return current
    saved = ui.run(ui.store().repo.update_site(site, **changed))
    audit(
        account,
        "change settings",
        "site",
        detail={k: [before.get(k), v] for k, v in changed.items()},
        site_id=site,
    )
    return saved


# ------------------------------------------------------------------------ stations
def add_station(
    account: Account,
    cp_id: str,
    *,
    max_current_a: float,
    phases: int,
    wiring: str,
    name: str | None,
    password: str | None,
    site_id: int | None = None,
) -> None:
    """A new station on ``site_id`` (the page's site; else the account's, else site 1)."""
    _require(account, Permission.write_garage, "add station", cp_id)
    site = _site(account, site_id, "add station", cp_id)
    ui.run(
        ui.store().repo.add_charge_point(
            cp_id,
            max_current_a=max_current_a,
            phases=phases,
            wiring=wiring,
            name=name,
            password=password,
            site_id=site,
        )
    )
    detail = {"max_current_a": max_current_a, "phases": phases, "wiring": wiring, "name": name}
    audit(
        account,
        "add station",
        cp_id,
        detail=detail | {"password": "set" if password else "none"},
        site_id=site,
    )


def edit_station(account: Account, cp_id: str, site_id: int | None = None, **values: Any) -> None:
    _require(account, Permission.write_garage, "edit station", cp_id)
    site = _station_site(account, cp_id, site_id, "edit station")
    if "password" in values:
        raise ConfigError("a station's password is set with `csms station set --password`")
    if "site_id" in values:
        raise ConfigError("a station stays on its site (`csms station` cannot move it either)")
    ui.run(ui.store().repo.update_charge_point(cp_id, **values))
    audit(account, "edit station", cp_id, detail=values, site_id=site)


def remove_station(account: Account, cp_id: str, site_id: int | None = None) -> None:
    _require(account, Permission.write_garage, "remove station", cp_id)
    site = _station_site(account, cp_id, site_id, "remove station")
    ui.run(ui.store().repo.remove_charge_point(cp_id))
    audit(account, "remove station", cp_id, site_id=site)


def count_as_managed(account: Account, cp_id: str, site_id: int | None = None) -> None:
    _require(account, Permission.write_garage, "count as managed again", cp_id)
    site = _station_site(account, cp_id, site_id, "count as managed again")
    before = ui.run(ui.store().repo.clear_unmanaged(cp_id))
    audit(
        account,
        "count as managed again",
        cp_id,
        detail={"was_unmanaged": before.unmanaged, "reason": before.unmanaged_reason},
        site_id=site,
    )


def send_command(
    account: Account, cp_id: str, command: actions.Command, site_id: int | None = None
) -> int:
    """Queue an OCPP operation in the outbox; returns the command's id."""
    action, payload = command
    _require(account, Permission.write_garage, f"command {action}", cp_id)
    site = _station_site(account, cp_id, site_id, f"command {action}")
    requested_by = f"monitor:{account.name}"[:REQUESTED_BY_MAX]
    command_id = ui.run(
        ui.store().repo.enqueue_command(cp_id, action, payload, requested_by=requested_by)
    )
    audit(
        account,
        f"command {action}",
        cp_id,
        detail={"command_id": command_id, "payload": payload},
        site_id=site,
    )
    return command_id


def reserve(
    account: Account,
    cp_id: str,
    connector_id: int,
    id_tag: str,
    expires_at: datetime,
    *,
    now: datetime,
    site_id: int | None = None,
) -> int:
    """A reservation and its ReserveNow in the outbox; returns the command's id."""
    from csms.reservations import reserve_now_payload
    from csms.store.features import FeatureStore

    _require(account, Permission.write_garage, "reserve", cp_id)
    site_id = _station_site(account, cp_id, site_id, "reserve")
    if site_id is not None:
        # Another site's resident's tag: Invalid at this site's chargers anyway, and not
        # this site's to hold a connector for.
        tag_site = ui.run(queries.id_tag_site(ui.store().sessionmaker, id_tag))
        if tag_site is not None and tag_site != site_id:
            audit(
                account,
                "reserve",
                cp_id,
                outcome="denied",
                detail={"why": "id tag of another site"},
                site_id=site_id,
            )
            raise AccessDeniedError(f"there is no id tag {id_tag} at this site")
    reservation = ui.run(
        FeatureStore(ui.store().repo).add_reservation(
            cp_id,
            connector_id,
            id_tag,
            expires_at,
            requested_by=f"monitor:{account.name}"[:REQUESTED_BY_MAX],
            now=now,
        )
    )
    return send_command(
        account, cp_id, ("ReserveNow", reserve_now_payload(reservation)), site_id=site_id
    )


# ----------------------------------------------------------------------- residents
def save_session_input(
    account: Account, transaction_id: int, values: dict[str, Any], site_id: int | None = None
) -> None:
    """A car's departure and need: a manager's for any car (of the site), a resident's for
    their own."""
    target = f"transaction {transaction_id}"
    _require(account, Permission.write_session, "set departure and need", target)
    tx = ui.run(ui.store().repo.get_transaction(transaction_id))
    if tx is None:
        raise NotFoundError(f"no transaction {transaction_id}")
    site = _station_site(
        account, str(tx["charge_point_id"]), site_id, "set departure and need", target
    )
    if not account.sees_session(str(tx["charge_point_id"]), tx["id_tag"]):
        audit(account, "set departure and need", target, outcome="denied")
        raise AccessDeniedError(f"{account.name} may not change another resident's car")
    if tx["stopped_at"] is not None:
        raise ConfigError("this session has ended; nothing to plan")
    ui.run(ui.store().repo.set_session_input(transaction_id, **values))
    audit(
        account,
        "set departure and need",
        target,
        detail={"charge_point_id": tx["charge_point_id"], **values},
        site_id=site,
    )


# ------------------------------------------------------------------------- accounts
@dataclass(frozen=True)
class LoginResult:
    """An account, or why not (``locked_for``: how long the name stays locked)."""

    account: Account | None
    message: str | None = None
    locked_for: timedelta | None = None


def _minutes(span: timedelta) -> str:
    return f"{max(1, math.ceil(span.total_seconds() / 60))} min"


def log_in(name: str, password: str) -> LoginResult:
    """Check a name and password against the lockout and the stored hash.

    Unknown names and wrong passwords get the same answer, take the same time and count
    towards the same lockout, so that nobody learns which names exist.
    """
    repo = ui.store().repo
    name = name.strip()
    now = ui.wall_now()
    throttle = ui.run(repo.login_throttle(name))
    if throttle.locked(now):
        assert throttle.locked_until is not None
        audit(None, "log in", outcome="locked", actor=name or "?")
        wait = throttle.locked_until - now
        return LoginResult(None, f"Too many failed attempts. Try again in {_minutes(wait)}.", wait)
    with KDF_SLOTS:
        found = ui.run(repo.user_credentials(name)) if name else None
        ok = verify_user_password(password, found[1] if found else None)
    if found is None or not ok:
        after = ui.run(repo.record_login_failure(name, now))
        if after.locked(now):
            assert after.locked_until is not None
            audit(None, "log in", outcome="locked out", actor=name or "?")
            wait = after.locked_until - now
            return LoginResult(
                None, f"Too many failed attempts. Try again in {_minutes(wait)}.", wait
            )
        audit(None, "log in", outcome="failed", actor=name or "?")
        return LoginResult(None, "Wrong name or password.")
    account = found[0]
    ui.run(repo.record_login_success(account.id, now))
    audit(account, "log in")
    return LoginResult(account)


def change_own_password(account: Account, current: str, new: str, repeated: str) -> Account:
    """Any account may change its own password, given the current one."""
    repo = ui.store().repo
    with KDF_SLOTS:
        found = ui.run(repo.user_credentials(account.name))
        ok = found is not None and verify_user_password(current, found[1])
    if not ok:
        audit(account, "change own password", account.name, outcome="failed")
        raise ConfigError("current password: that is not your password")
    if new != repeated:
        raise ConfigError("new password: the two entries differ")
    check_new_password(new)
    if new == current:
        raise ConfigError("new password: choose one that differs from the current one")
    with KDF_SLOTS:
        hashed = hash_user_password(new)
    changed = ui.run(repo.set_user_password(account.name, hashed))
    audit(account, "change own password", account.name)
    return changed
