"""Bearer tokens (RFC 6750) -> the account a request acts as, role checks, audit rows.

The roles are the monitor's (`csms.auth.Role`, `Permission`): a manager reads and
changes everything; a viewer reads everything and changes nothing; a resident token acts
as its resident account and sees only that account's stations and sessions (those at
its stations or charged with its tags), and may set departure and need of those cars.
Every write, done or refused, leaves an audit row like the monitor's, with the actor
``token:NAME`` (manager and viewer tokens) or the resident's account name, and real time.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from csms.api.context import ApiContext
from csms.api.problems import ProblemError
from csms.auth import AccessDeniedError, Account, Permission
from csms.clock import utcnow
from csms.store.tokens import identify_token

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `csms token add NAME --role manager|resident|viewer`.",
)

_CHALLENGE = 'Bearer realm="garagegrid"'


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


async def current_account(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Account:
    ctx = context(request)
    await ctx.refresh_clock()
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            401,
            "unauthorized",
            "a bearer token is needed: 'Authorization: Bearer <token>' (csms token add)",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    identity = await identify_token(ctx.sessionmaker, credentials.credentials, now=utcnow())
    account: Account | None = None
    if identity is not None and identity.user_id is not None:
        account = await ctx.repository.user_by_id(identity.user_id)
        if account is not None and account.role is not identity.role:
            account = None
    elif identity is not None:
        account = Account(id=0, name=f"token:{identity.name}", role=identity.role)
    if account is None:
        raise ProblemError(
            401,
            "invalid-token",
            "the token is unknown or revoked",
            headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
        )
    request.state.account = account
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]
Context = Annotated[ApiContext, Depends(context)]


async def audit(
    ctx: ApiContext,
    account: Account,
    action: str,
    target: str | None = None,
    *,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    await ctx.repository.record_audit(
        at=utcnow(),
        actor=account.name,
        role=account.role.value,
        action=f"api {action}",
        target=target,
        outcome=outcome,
        detail=detail,
    )


async def require(
    ctx: ApiContext,
    account: Account,
    permission: Permission,
    action: str,
    target: str | None = None,
) -> None:
    """AccessDeniedError (403) unless the role has ``permission``; a refused write is audited."""
    if account.may(permission):
        return
    if permission is not Permission.read_garage:
        await audit(ctx, account, action, target, outcome="denied")
    raise AccessDeniedError(f"a {account.role} token may not {permission.value}")


async def require_station(ctx: ApiContext, account: Account, cp_id: str) -> None:
    """A resident sees only their stations."""
    if not account.sees_station(cp_id):
        raise AccessDeniedError(f"{account.name} may not see station {cp_id!r}")
