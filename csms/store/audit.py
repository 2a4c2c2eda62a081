"""After a long run: does the central system's store agree with what the chargers metered?

`audit_store` reads the transactions and energy-register samples a central system stored
(through `csms.store`, read only, as the monitor would) and compares them with the
sessions a `Fleet` ran (`FleetReport.sessions`):

- every session the fleet started is one stored transaction and every one is closed;
- each transaction's meterStart and meterStop are the readings the charger took, so
  stop - start is the energy the charger metered, and the totals agree;
- each charger's register never runs backwards from one transaction to the next;
- a transaction's stored register samples lie between its start and stop readings, rise
  with time, and none is flagged implausible; so the energy they span never exceeds the
  transaction's energy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from csms.store import models as m


class MeteredTransaction(Protocol):
    """What a charger knows of one of its transactions (e.g.
    `virtual_chargers.options.SessionRecord`)."""

    @property
    def transaction_id(self) -> int | None: ...
    @property
    def meter_start_wh(self) -> int | None: ...
    @property
    def meter_stop_wh(self) -> int | None: ...
    @property
    def energy_wh(self) -> int: ...


class ChargerSession(Protocol):
    """A transaction with the station that ran it (`virtual_chargers.fleet.SessionResult`)."""

    @property
    def station_id(self) -> str: ...
    @property
    def record(self) -> MeteredTransaction: ...


REGISTER = "Energy.Active.Import.Register"


@dataclass
class StoreAudit:
    transactions: int = 0
    fleet_sessions: int = 0  # transactions the fleet started (with an id)
    open: int = 0  # transactions without a stop
    missing: int = 0  # fleet transactions the store lacks
    unknown: int = 0  # stored transactions the fleet did not run
    meter_mismatch: int = 0  # start or stop reading differs from the charger's
    energy_store_wh: int = 0  # sum of meterStop - meterStart
    energy_fleet_wh: int = 0  # sum of what the chargers metered
    register_backwards: int = 0  # a transaction starting below the previous one's stop
    samples: int = 0  # energy-register samples of transactions
    samples_outside: int = 0  # below meterStart or above meterStop
    samples_backwards: int = 0  # lower than an earlier sample of the same transaction
    samples_flagged: int = 0
    sample_span_wh: float = 0.0  # sum over transactions of (last - first sample)
    problems: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return (
            self.open == 0
            and self.missing == 0
            and self.unknown == 0
            and self.meter_mismatch == 0
            and self.energy_store_wh == self.energy_fleet_wh
            and self.register_backwards == 0
            and self.samples_outside == 0
            and self.samples_backwards == 0
            and self.samples_flagged == 0
            and self.sample_span_wh <= self.energy_store_wh
        )

    def note(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


async def audit_store(
    sessionmaker: async_sessionmaker[AsyncSession], sessions: Sequence[ChargerSession]
) -> StoreAudit:
    """Compare the store with the fleet's sessions (see the module docstring)."""
    audit = StoreAudit()
    async with sessionmaker() as s:
        txs = (
            await s.execute(
                select(
                    m.Transaction.id,
                    m.Transaction.charge_point_id,
                    m.Transaction.meter_start_wh,
                    m.Transaction.meter_stop_wh,
                    m.Transaction.started_at,
                ).order_by(m.Transaction.charge_point_id, m.Transaction.started_at)
            )
        ).all()
        samples = (
            await s.execute(
                select(
                    m.MeterSample.transaction_id,
                    m.MeterSample.timestamp,
                    m.MeterSample.value,
                    m.MeterSample.flag,
                )
                .where(
                    m.MeterSample.measurand == REGISTER,
                    m.MeterSample.phase.is_(None),
                    m.MeterSample.transaction_id.is_not(None),
                )
                .order_by(m.MeterSample.transaction_id, m.MeterSample.timestamp)
            )
        ).all()
    records = {
        r.record.transaction_id: (r.station_id, r.record)
        for r in sessions
        if r.record.transaction_id is not None and r.record.transaction_id > 0
    }
    audit.fleet_sessions = len(records)
    audit.energy_fleet_wh = sum(record.energy_wh for _, record in records.values())
    audit.transactions = len(txs)
    bounds: dict[int, tuple[int, int | None]] = {}
    previous: dict[str, int] = {}
    for tx_id, cp_id, start_wh, stop_wh, _started in txs:
        bounds[tx_id] = (start_wh, stop_wh)
        if stop_wh is None:
            audit.open += 1
            audit.note(f"transaction {tx_id} on {cp_id} is open")
        else:
            audit.energy_store_wh += stop_wh - start_wh
        if cp_id in previous and start_wh < previous[cp_id]:
            audit.register_backwards += 1
            audit.note(f"transaction {tx_id} on {cp_id} starts below the previous stop")
        previous[cp_id] = stop_wh if stop_wh is not None else start_wh
        known = records.get(tx_id)
        if known is None:
            audit.unknown += 1
            audit.note(f"transaction {tx_id} on {cp_id} was not run by the fleet")
            continue
        station_id, record = known
        if (station_id, start_wh, stop_wh) != (cp_id, record.meter_start_wh, record.meter_stop_wh):
            audit.meter_mismatch += 1
            audit.note(
                f"transaction {tx_id}: store {cp_id} {start_wh}-{stop_wh} Wh, charger "
                f"{station_id} {record.meter_start_wh}-{record.meter_stop_wh} Wh"
            )
    audit.missing = len(set(records) - set(bounds))
    spans: dict[int, tuple[float, float]] = {}
    last: dict[int, tuple[datetime, float]] = {}
    for sample_tx, at, value, flag in samples:
        if sample_tx is None:  # excluded by the query
            continue
        tx_id = sample_tx
        audit.samples += 1
        if flag is not None:
            audit.samples_flagged += 1
            audit.note(f"transaction {tx_id}: sample {value} flagged {flag}")
            continue
        if value is None:
            continue
        low_wh, high_wh = bounds.get(tx_id, (None, None))
        if low_wh is not None and (value < low_wh or (high_wh is not None and value > high_wh)):
            audit.samples_outside += 1
            audit.note(f"transaction {tx_id}: sample {value} outside {low_wh}-{high_wh}")
        if tx_id in last and value < last[tx_id][1]:
            audit.samples_backwards += 1
        last[tx_id] = (at, value)
        low, high = spans.get(tx_id, (value, value))
        spans[tx_id] = (min(low, value), max(high, value))
    audit.sample_span_wh = sum(high - low for low, high in spans.values())
    return audit
