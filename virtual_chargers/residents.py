"""The residents of a virtual garage: they tell the CSMS when they leave and what they need.

OCPP 1.6 carries neither a departure time nor an energy need; a resident types them into
the monitor's Resident page, which writes them to the store. `virtual-chargers run
--residents` does the same for every session of the scenario as soon as its transaction
has an id, so the CSMS plans with the scenario's real departures instead of its defaults.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from csms.errors import GarageGridError
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository

log = logging.getLogger("virtual_chargers.residents")


class Residents:
    """Writes each session's departure and energy need into the CSMS store."""

    def __init__(self, database_url: str | None = None) -> None:
        self._engine = create_engine(database_url)
        self._repo = Repository(create_sessionmaker(self._engine))
        self._tasks: set[asyncio.Task[None]] = set()

    def on_transaction_started(
        self, station_id: str, transaction_id: int, departure_at: datetime | None, needed_wh: float
    ) -> None:
        task = asyncio.create_task(self._tell(station_id, transaction_id, departure_at, needed_wh))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell(
        self, station_id: str, transaction_id: int, departure_at: datetime | None, needed_wh: float
    ) -> None:
        try:
            await self._repo.set_session_input(
                transaction_id,
                departure_at=departure_at,
                energy_needed_wh=needed_wh if needed_wh > 0 else None,
            )
        except GarageGridError as exc:
            log.warning(
                "resident input not stored",
                extra={"cp_id": station_id, "transaction_id": transaction_id, "error": str(exc)},
            )
            return
        log.info(
            "resident input stored",
            extra={
                "cp_id": station_id,
                "transaction_id": transaction_id,
                "departure_at": departure_at.isoformat() if departure_at else None,
                "energy_needed_wh": round(needed_wh),
            },
        )

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._engine.dispose()
