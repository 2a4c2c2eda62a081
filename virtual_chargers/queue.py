"""The outgoing message queue of a charge point, with offline rules (spec 3.7, 4.10), pure.

Every message a station sends on its own goes through one FIFO, so they reach the central
system in the order they happened. Two kinds:

- transaction messages (StartTransaction, StopTransaction, MeterValues of a transaction)
  are kept while the station is offline and across a reboot, and replayed in order after
  reconnecting. A CALLERROR answer is retried `TransactionMessageAttempts` times, waiting
  `TransactionMessageRetryInterval` x attempts in between, then the message is discarded
  (spec 4.10 / 9.1.28-29);
- volatile messages (StatusNotification) are dropped when the connection goes; the
  station reports its current status again after the next BootNotification.

A transaction's id is only known once StartTransaction.conf arrives, possibly long after
its MeterValues and StopTransaction were queued. So queued messages refer to a local
transaction number and get their `transactionId` when they are sent. When the
StartTransaction is discarded (it never got an id), the transaction's MeterValues are
dropped (no id can attribute them) and its StopTransaction goes out with transactionId
-1 and the begin and end readings in `transactionData`, which a central system stores as
an orphan for reconciliation (errata 3.18 practice, FIELD-NOTES). Resends keep their
message id, so a central system that saw the first attempt can spot the duplicate.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

START: Final = "StartTransaction"
STOP: Final = "StopTransaction"
METER_VALUES: Final = "MeterValues"
UNKNOWN_TRANSACTION_ID: Final = -1
DEFAULT_MAX_MESSAGES: Final = 10_000
_FORMAT: Final = "garagegrid.tx-queue/1"


@dataclass(slots=True)
class TransactionRecord:
    """What the station knows about one of its transactions' ids."""

    local_id: int
    transaction_id: int | None = None
    start_failed: bool = False


@dataclass(slots=True)
class QueuedMessage:
    """One CALL waiting to be sent; `payload` is camelCase OCPP JSON."""

    seq: int
    message_id: str
    action: str
    payload: dict[str, Any]
    tx_local_id: int | None = None
    persistent: bool = True
    attempts: int = 0
    not_before: datetime | None = None
    # Queued while the station was not connected (for statistics), and how often it went
    # out (a resend after a lost connection keeps its message id).
    queued_offline: bool = False
    sends: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "message_id": self.message_id,
            "action": self.action,
            "payload": self.payload,
            "tx_local_id": self.tx_local_id,
            "persistent": self.persistent,
            "attempts": self.attempts,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "queued_offline": self.queued_offline,
            "sends": self.sends,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QueuedMessage:
        not_before = d.get("not_before")
        return cls(
            seq=int(d["seq"]),
            message_id=str(d["message_id"]),
            action=str(d["action"]),
            payload=dict(d["payload"]),
            tx_local_id=d.get("tx_local_id"),
            persistent=bool(d.get("persistent", True)),
            attempts=int(d.get("attempts", 0)),
            not_before=datetime.fromisoformat(not_before) if not_before else None,
            queued_offline=bool(d.get("queued_offline", False)),
            sends=int(d.get("sends", 0)),
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """Outcome of a CALLERROR: retry at `retry_at`, or the message was discarded."""

    dropped: bool
    retry_at: datetime | None = None


def _new_message_id() -> str:
    return str(uuid.uuid4())


@dataclass
class MessageQueue:
    """FIFO of outgoing CALLs with the transaction-id bookkeeping described above."""

    new_message_id: Callable[[], str] = _new_message_id
    max_messages: int = DEFAULT_MAX_MESSAGES
    _messages: deque[QueuedMessage] = field(default_factory=deque)
    _transactions: dict[int, TransactionRecord] = field(default_factory=dict)
    _next_seq: int = 1
    _next_local_id: int = 1
    # Transactions whose StopTransaction is queued: forgotten once their messages are out.
    _stopped: set[int] = field(default_factory=set)
    dropped: int = 0  # messages discarded (attempts exhausted, overflow, unattributable)

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[QueuedMessage]:
        return iter(self._messages)

    def count(self, action: str | None = None, *, persistent: bool | None = None) -> int:
        return sum(
            1
            for m in self._messages
            if (action is None or m.action == action)
            and (persistent is None or m.persistent == persistent)
        )

    # ----------------------------------------------------------- transactions
    def new_transaction(self) -> int:
        """A local number for a transaction that is about to start."""
        local_id = self._next_local_id
        self._next_local_id += 1
        self._transactions[local_id] = TransactionRecord(local_id)
        return local_id

    def transaction(self, local_id: int) -> TransactionRecord:
        return self._transactions[local_id]

    def find_local_id(self, transaction_id: int) -> int | None:
        for record in self._transactions.values():
            if record.transaction_id == transaction_id:
                return record.local_id
        return None

    # --------------------------------------------------------------- enqueue
    def enqueue(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        tx_local_id: int | None = None,
        persistent: bool = True,
        offline: bool = False,
    ) -> QueuedMessage:
        if tx_local_id is not None and tx_local_id not in self._transactions:
            raise KeyError(f"unknown local transaction {tx_local_id}")
        message = QueuedMessage(
            seq=self._next_seq,
            message_id=self.new_message_id(),
            action=action,
            payload=payload,
            tx_local_id=tx_local_id,
            persistent=persistent,
            queued_offline=offline,
        )
        self._next_seq += 1
        self._messages.append(message)
        if action == STOP and tx_local_id is not None:
            self._stopped.add(tx_local_id)
        if len(self._messages) > self.max_messages:
            self._shed_one()
        return message

    def _shed_one(self) -> None:
        """Storage full: drop the oldest MeterValues, never a Start or Stop."""
        for message in self._messages:
            if message.action == METER_VALUES or not message.persistent:
                self._messages.remove(message)
                self.dropped += 1
                return

    # ------------------------------------------------------------------ send
    def head(self) -> QueuedMessage | None:
        return self._messages[0] if self._messages else None

    def prepare(self, message: QueuedMessage) -> dict[str, Any] | None:
        """The payload to send now, transactionId filled in; None = discard the message."""
        if message.tx_local_id is None or message.action == START:
            return message.payload
        record = self._transactions[message.tx_local_id]
        if record.transaction_id is not None:
            return {**message.payload, "transactionId": record.transaction_id}
        if message.action == STOP:
            # The start never got an id: -1, and the readings travel in transactionData.
            return {**message.payload, "transactionId": UNKNOWN_TRANSACTION_ID}
        if record.start_failed:
            return None
        # The StartTransaction is still ahead in the queue: cannot happen in FIFO order,
        # but sending MeterValues without an id is better than losing them.
        return message.payload

    def discard(self, message: QueuedMessage) -> None:
        """Remove a message that `prepare` said cannot be sent."""
        self._remove(message)
        self.dropped += 1

    def acknowledge(self, message: QueuedMessage, result: Mapping[str, Any]) -> None:
        """The central system answered with a CALLRESULT."""
        self._remove(message)
        if message.action == START and message.tx_local_id is not None:
            transaction_id = result.get("transactionId")
            if isinstance(transaction_id, int) and not isinstance(transaction_id, bool):
                self._transactions[message.tx_local_id].transaction_id = transaction_id
            else:
                self._transactions[message.tx_local_id].start_failed = True
        self._prune(message.tx_local_id)

    def reject(
        self, message: QueuedMessage, *, now: datetime, max_attempts: int, retry_interval_s: float
    ) -> Rejection:
        """The central system answered with a CALLERROR (spec 4.10)."""
        message.attempts += 1
        if message.persistent and message.attempts < max(1, max_attempts):
            retry_at = now + timedelta(seconds=retry_interval_s * message.attempts)
            message.not_before = retry_at
            return Rejection(dropped=False, retry_at=retry_at)
        self._remove(message)
        self.dropped += 1
        if message.action == START and message.tx_local_id is not None:
            self._transactions[message.tx_local_id].start_failed = True
        self._prune(message.tx_local_id)
        return Rejection(dropped=True)

    def drop_volatile(self) -> int:
        """The connection is gone: forget StatusNotifications and the like."""
        kept = deque(m for m in self._messages if m.persistent)
        dropped = len(self._messages) - len(kept)
        self._messages = kept
        return dropped

    def _remove(self, message: QueuedMessage) -> None:
        if self._messages and self._messages[0] is message:
            self._messages.popleft()
        else:
            self._messages.remove(message)

    def _prune(self, local_id: int | None) -> None:
        """Forget a finished transaction once none of its messages is left."""
        if local_id is None or local_id not in self._stopped:
            return
        if any(m.tx_local_id == local_id for m in self._messages):
            return
        self._stopped.discard(local_id)
        self._transactions.pop(local_id, None)

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "next_seq": self._next_seq,
            "next_local_id": self._next_local_id,
            "dropped": self.dropped,
            "stopped": sorted(self._stopped),
            "transactions": [
                {
                    "local_id": r.local_id,
                    "transaction_id": r.transaction_id,
                    "start_failed": r.start_failed,
                }
                for r in self._transactions.values()
            ],
            "messages": [m.to_dict() for m in self._messages if m.persistent],
        }

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, new_message_id: Callable[[], str] = _new_message_id
    ) -> MessageQueue:
        if d.get("format") != _FORMAT:
            raise ValueError(f"format must be {_FORMAT!r}, got {d.get('format')!r}")
        queue = cls(new_message_id=new_message_id)
        queue._next_seq = int(d["next_seq"])
        queue._next_local_id = int(d["next_local_id"])
        queue.dropped = int(d.get("dropped", 0))
        queue._stopped = {int(x) for x in d.get("stopped", [])}
        for r in d.get("transactions", []):
            record = TransactionRecord(
                int(r["local_id"]), r.get("transaction_id"), bool(r.get("start_failed"))
            )
            queue._transactions[record.local_id] = record
        queue._messages = deque(QueuedMessage.from_dict(m) for m in d.get("messages", []))
        return queue
