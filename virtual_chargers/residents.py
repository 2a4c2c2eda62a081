"""The residents of a virtual garage: they tell the CSMS when they leave and what they need.

OCPP 1.6 carries neither a departure time nor an energy need; a resident types them into
the monitor's Resident page or a resident app, which sends them to the CSMS's operator
API. `virtual-chargers run --residents` does what such an app does, for every session of
the scenario as soon as its transaction has an id: ``PATCH /api/v1/sessions/{id}`` with a
bearer token (`csms token add NAME --role resident --user ACCOUNT`, the account bound to
the garage's stations; or a manager token). So the CSMS plans with the scenario's real
departures instead of its defaults, and the virtual chargers never touch its database.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import httpx

log = logging.getLogger("virtual_chargers.residents")

# A request that fails in transit or with a 5xx is tried this many times in all, waiting
# RETRY_S, 2 x RETRY_S, ... (the CSMS may be restarting); a 4xx is final.
ATTEMPTS = 4
RETRY_S = 0.5
TIMEOUT_S = 10.0


class Residents:
    """Sends each session's departure and energy need to the CSMS's API."""

    def __init__(
        self, api_url: str, token: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_S,
            transport=transport,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.stored = 0
        self.refused = 0

    def on_transaction_started(
        self, station_id: str, transaction_id: int, departure_at: datetime | None, needed_wh: float
    ) -> None:
        task = asyncio.create_task(self._tell(station_id, transaction_id, departure_at, needed_wh))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell(
        self, station_id: str, transaction_id: int, departure_at: datetime | None, needed_wh: float
    ) -> None:
        body: dict[str, Any] = {}
        if departure_at is not None:
            body["departure_at"] = departure_at.isoformat()
        if needed_wh > 0:
            body["energy_needed_kwh"] = needed_wh / 1000.0
        if not body:
            return
        extra: dict[str, Any] = {"cp_id": station_id, "transaction_id": transaction_id}
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = await self._client.patch(f"/sessions/{transaction_id}", json=body)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    self.stored += 1
                    log.info(
                        "resident input stored",
                        extra=extra
                        | {
                            "departure_at": body.get("departure_at"),
                            "energy_needed_wh": round(needed_wh),
                        },
                    )
                    return
                error = _problem(response)
                if response.status_code < 500:
                    break
            if attempt < ATTEMPTS:
                await asyncio.sleep(RETRY_S * attempt)
        self.refused += 1
        log.warning("resident input not stored", extra=extra | {"error": error})

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()


def _problem(response: httpx.Response) -> str:
    """An RFC 9457 problem's detail, else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
