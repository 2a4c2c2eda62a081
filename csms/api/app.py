"""The FastAPI application: /api/v1 (with its OpenAPI document) and /metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from sqlalchemy.exc import SQLAlchemyError

from csms import metrics
from csms.api import problems, reads
from csms.api.context import ApiContext
from csms.api.routes import router
from csms.errors import GarageGridError
from csms.store import queries

log = logging.getLogger("csms.api")

API_VERSION = "1.0.0"
OPENAPI_URL = "/api/v1/openapi.json"

DESCRIPTION = """
The operator API of GarageGrid, an OCPP 1.6J central system that shares one main fuse
between the chargers of a garage.

**Authentication**: `Authorization: Bearer <token>`, a token made on the CSMS's computer
with `csms token add NAME --role manager|resident|viewer [--user NAME] [--site NAME]`.
The roles are the monitor's: a manager reads and changes everything, a viewer reads
everything, a resident token acts for its resident account and sees only that account's
stations and sessions.

**Sites**: a token acts within a site. A manager or viewer token made with
`--site NAME` sees and changes that site only (another site's stations and sessions are
404); a resident token acts within its account's site; a token without `--site` is an
operator's: listings cover every site, `?site=NAME` narrows them, and where one site is
meant (`/site`, `/building-load`, `/live`, adding a station or id tag) it names the site
(a 422 problem lists the sites when it is missing). `GET /api/v1/sites` lists them.

**Errors** are RFC 9457 problem details (`application/problem+json`).

**Metrics** for Prometheus are at `/metrics` on the same port, without a token.
"""


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="GarageGrid operator API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.context = context
    problems.install(app)
    app.include_router(router)

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/api/"):
            metrics.API_REQUESTS.labels(request.method, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page() -> Response:
        await refresh_gauges(context)
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    return app


async def refresh_gauges(context: ApiContext) -> None:
    """The gauges that describe the present, read at scrape time."""
    try:
        metrics.CHARGERS_UNMANAGED.set(await reads.unmanaged_count(context.sessionmaker))
        if context.central is not None:
            metrics.CHARGERS_CONNECTED.set(len(context.central.connected_ids()))
        else:
            # A separate `csms api`: what the CSMS wrote in the store.
            metrics.CHARGERS_CONNECTED.set(await reads.connected_count(context.sessionmaker))
    except (GarageGridError, SQLAlchemyError):
        log.warning("metrics: the store could not be read", exc_info=True)
    await _refresh_headroom(context)


async def _refresh_headroom(context: ApiContext) -> None:
    """Every site's fuse headroom, labelled by the site's name (in-process only: a separate
    `csms api` has no controller to ask)."""
    if context.sites is not None:
        controllers = dict(context.sites.controllers)
    elif context.controller is not None:
        controllers = {1: context.controller}
    else:
        return
    try:
        names = {site.site_id: site.name for site in await queries.sites(context.sessionmaker)}
    except (GarageGridError, SQLAlchemyError):
        log.warning("metrics: the sites could not be read", exc_info=True)
        return
    by_site: dict[str, tuple[float, float, float]] = {}
    for site_id, controller in controllers.items():
        try:
            headroom = controller.fuse_headroom_a()
        except GarageGridError:
            log.warning(
                "metrics: fuse headroom could not be computed",
                exc_info=True,
                extra={"site_id": site_id},
            )
            continue
        if headroom is not None and site_id in names:
            by_site[names[site_id]] = headroom
    metrics.replace_fuse_headroom(by_site)
