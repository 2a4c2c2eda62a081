"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

``type`` is a URN per kind of problem (``urn:garagegrid:problem:forbidden``), ``title`` the
kind in words, ``status`` the HTTP status, ``detail`` this occurrence, ``instance`` the
request path. Validation problems add ``errors`` (where and what); a refused token adds a
``WWW-Authenticate: Bearer`` header (RFC 6750).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from csms.auth import AccessDeniedError
from csms.errors import (
    ChargePointError,
    ConfigError,
    GarageGridError,
    NotFoundError,
    StoreError,
)

log = logging.getLogger("csms.api")

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:garagegrid:problem:"


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["urn:garagegrid:problem:forbidden"])
    title: str = Field(examples=["Forbidden"])
    status: int = Field(examples=[403])
    detail: str | None = Field(default=None, examples=["a viewer token may not change settings"])
    instance: str | None = Field(default=None, examples=["/api/v1/site"])
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="validation problems: where (loc) and what (msg)"
    )


class ProblemError(Exception):
    """Raised by a route: becomes a problem details response."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or kind)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers
        self.extra = extra or {}


def problem_response(
    request: Request,
    status: int,
    kind: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.url.path
    body |= extra or {}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


# The problem responses every route of /api/v1 may give (for the OpenAPI document).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": ProblemDetails,
        "description": HTTPStatus(status).phrase,
        "content": {MEDIA_TYPE: {}},
    }
    for status in (401, 403, 404, 422, 503)
}


def install(app: FastAPI) -> None:
    """Map every error to problem details."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            request, exc.status, exc.kind, exc.detail, headers=exc.headers, extra=exc.extra
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kinds = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}
        return problem_response(
            request,
            exc.status_code,
            kinds.get(exc.status_code, "http-error"),
            str(exc.detail) if exc.detail else None,
            headers=dict(exc.headers) if exc.headers else None,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return problem_response(
            request,
            422,
            "validation",
            "the request does not match the schema; see errors",
            extra={"errors": errors},
        )

    async def on_garagegrid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GarageGridError)
        if isinstance(exc, AccessDeniedError):
            return problem_response(request, 403, "forbidden", str(exc))
        if isinstance(exc, NotFoundError):
            return problem_response(request, 404, "not-found", str(exc))
        if isinstance(exc, ConfigError):
            return problem_response(request, 422, "invalid-value", str(exc))
        if isinstance(exc, StoreError):
            log.warning("store error", extra={"path": request.url.path, "error": str(exc)})
            return problem_response(request, 503, "store-unavailable", str(exc))
        if isinstance(exc, ChargePointError):
            return problem_response(request, 502, "charge-point", str(exc))
        log.exception("unexpected GarageGrid error", extra={"path": request.url.path})
        return problem_response(request, 500, "internal", "internal error")

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the API", extra={"path": request.url.path})
        return problem_response(request, 500, "internal", "internal error")

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(GarageGridError, on_garagegrid)
    app.add_exception_handler(Exception, on_unexpected)
