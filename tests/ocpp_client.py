"""A minimal OCPP-J 1.6 charge point for tests, on bare `websockets` (not the ocpp package).

It sends raw frames and checks nothing on its own, so tests can also send broken frames.
CALLs from the central system are answered by registered handlers (default: CALLERROR
NotImplemented; a handler raising AnswerCallError answers a CALLERROR of its code), from a background task so the test can await its own calls meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

ServerCallHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


class AnswerCallError(Exception):
    """Raised by a handler: the CALL is answered with a CALLERROR of this code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class RawChargePoint:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = (f"m{n}" for n in itertools.count(1))
        self._waiting: dict[str, asyncio.Future[list[Any]]] = {}
        self.handlers: dict[str, ServerCallHandler] = {}
        self.server_calls: list[tuple[str, dict[str, Any]]] = []
        self.unmatched: list[list[Any]] = []
        self._answering: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        password: str | None = None,
        user: str | None = None,
        subprotocols: list[str] | None = None,
    ) -> RawChargePoint:
        headers = {}
        if password is not None:
            cp_id = user or url.rstrip("/").rsplit("/", 1)[-1]
            headers = basic_auth_header(cp_id, password)
        ws = await connect(
            url,
            subprotocols=subprotocols if subprotocols is not None else ["ocpp1.6"],  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=5,
        )
        return cls(ws)

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] == 2:
                task = asyncio.create_task(self._answer(frame))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)
            elif frame[1] in self._waiting:
                self._waiting.pop(frame[1]).set_result(frame)
            else:
                self.unmatched.append(frame)

    async def _answer(self, frame: list[Any]) -> None:
        _, message_id, action, payload = frame
        self.server_calls.append((action, payload))
        handler = self.handlers.get(action)
        if handler is None:
            reply = [4, message_id, "NotImplemented", f"no handler for {action}", {}]
        else:
            try:
                result = handler(payload)
                if asyncio.iscoroutine(result):
                    result = await result
                reply = [3, message_id, result]
            except AnswerCallError as error:
                reply = [4, message_id, error.code, "", {}]
        await self.ws.send(json.dumps(reply))

    async def send_frame(self, frame: Any, *, expect_id: str | None = None) -> list[Any]:
        """Send any frame (even a broken one) and wait for the answer with ``expect_id``."""
        text = frame if isinstance(frame, str) else json.dumps(frame)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        key = expect_id if expect_id is not None else frame[1]
        self._waiting[key] = future
        await self.ws.send(text)
        return await asyncio.wait_for(future, 10)

    async def call(
        self, action: str, payload: dict[str, Any], *, message_id: str | None = None
    ) -> list[Any]:
        """Send a CALL; return the whole answer frame ([3, id, payload] or [4, id, code, ...])."""
        mid = message_id or next(self._ids)
        return await self.send_frame([2, mid, action, payload])

    async def ok(self, action: str, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        frame = await self.call(action, payload, **kwargs)
        assert frame[0] == 3, f"{action} answered with {frame}"
        result: dict[str, Any] = frame[2]
        return result

    async def boot(self, payload: dict[str, Any], *, attempts: int = 100) -> dict[str, Any]:
        """BootNotification until Accepted (a CSMS with load management answers Pending
        until the charger's fail-safe profiles are set); the test does not wait the
        interval it is given."""
        for _ in range(attempts):
            answer = await self.ok("BootNotification", payload)
            if answer["status"] == "Accepted":
                return answer
            await asyncio.sleep(0.05)
        raise AssertionError(f"BootNotification never accepted: {answer}")

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
