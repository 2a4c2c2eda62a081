"""Bearer tokens (RFC 6750) -> the account a request acts as, role checks, audit rows.

The roles are the monitor's (`csms.auth.Role`, `Permission`): a manager reads and
changes everything; a viewer reads everything and changes nothing; a resident token acts
as its resident account and sees only that account's stations and sessions (those at
its stations or charged with its tags), and may set departure and need of those cars.
A token acts within a site: a manager or viewer token made with ``--site NAME`` within
that site, a resident token within its account's site; one without is an operator's and
sees every site, naming one with ``?site=NAME`` where a single site is meant (`Scope`).
Another site's station or session is 404 to a site-bound token, as if it did not exist.
Every write, done or refused, leaves an audit row like the monitor's, with the actor
``token:NAME`` (manager and viewer tokens) or the resident's account name, and real time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from csms.api.context import ApiContext
from csms.api.problems import ProblemError
from csms.auth import AccessDeniedError, Account, Permission
from csms.clock import utcnow
from csms.domain import SiteConfig
from csms.errors import NotFoundError
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
        if account is not None and identity.site_id is not None:
            account = dataclasses.replace(account, site_id=identity.site_id)
    elif identity is not None:
        account = Account(
            id=0, name=f"token:{identity.name}", role=identity.role, site_id=identity.site_id
        )
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


@dataclass(frozen=True)
class Scope:
    """The sites a request acts within: ``site_id`` the one meant (the token's, or the
    operator's ``?site=``), None for an operator naming none (every site in listings)."""

    account: Account
    sites: list[SiteConfig]
    site_id: int | None

    @property
    def listing(self) -> int | None:
        """The site a listing is limited to; None: every site."""
        return self.site_id

    def sees(self, site_id: int) -> bool:
        return self.site_id is None or site_id == self.site_id

    def one(self) -> SiteConfig:
        """The single site meant; a 422 naming the sites when an operator must choose."""
        if self.site_id is not None:
            return next(s for s in self.sites if s.site_id == self.site_id)
        if len(self.sites) == 1:
            return self.sites[0]
        names = [s.name for s in self.sites]
        raise ProblemError(
            422,
            "site-ambiguous",
            f"this token sees several sites: name one with ?site=NAME ({', '.join(names)})",
            extra={"sites": names},
        )


async def current_scope(
    request: Request,
    account: CurrentAccount,
    site: Annotated[
        str | None,
        Query(description="the site meant (an operator token; a site-bound token's own)"),
    ] = None,
) -> Scope:
    ctx = context(request)
    every = await ctx.repository.list_sites()
    visible = [s for s in every if account.site_id is None or s.site_id == account.site_id]
    if site is None:
        return Scope(account, visible, account.site_id)
    for found in visible:
        if found.name == site:
            return Scope(account, visible, found.site_id)
    # Another site's name is as unknown to a site-bound token as a name nobody uses.
    raise NotFoundError(f"no site {site!r}")


CurrentScope = Annotated[Scope, Depends(current_scope)]


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
        # A site-bound token's rows are its site's (the monitor's Audit page of that site
        # shows them); an operator token's are the deployment's.
        site_id=account.site_id,
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


async def require_station_site(ctx: ApiContext, scope: Scope, cp_id: str) -> None:
    """A station of a site the request does not act within is 404 (not 403: whether it
    exists is not this token's business)."""
    sites = await ctx.repository.charge_point_sites()
    if cp_id not in sites or not scope.sees(sites[cp_id]):
        raise NotFoundError(f"no charge point {cp_id!r}")
