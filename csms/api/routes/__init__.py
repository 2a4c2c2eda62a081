"""The resources of /api/v1. Each route checks the role (csms.api.security), calls the
store or the outbox as the CLI and the monitor do, and audits its writes."""

from __future__ import annotations

from fastapi import APIRouter

from csms.api.problems import COMMON_RESPONSES
from csms.api.routes import garage, sessions, stations

router = APIRouter(prefix="/api/v1", responses=COMMON_RESPONSES)
router.include_router(garage.router)
router.include_router(stations.router)
router.include_router(sessions.router)
