"""A link that can be cut: a TCP relay between charge points and their central system.

Chargers connect to the relay's port instead of the central system's; every connection
is forwarded byte for byte to the target. `cut()` is a network outage: every relayed
connection is reset on both sides at once (neither end gets a WebSocket close frame, as
when a router or a mobile link dies), and while the link is down every new connection is
reset as soon as it is accepted. `restore()` lets connections through again. Used to
produce a reconnect storm (`scripts/bench_storm.py`); loopback only, no TLS termination
(TLS passes through untouched).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger("virtual_chargers.link")

_CHUNK = 65_536


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class LinkCutter:
    """A relay from ``host:port`` (port 0: a free one) to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.down = False
        self.accepted = 0  # connections relayed
        self.refused = 0  # connections reset because the link was down
        self.cut_connections = 0  # connections reset by cut()
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        return self.port

    def cut(self) -> int:
        """The link goes down: reset every connection; return how many were open."""
        self.down = True
        pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        self.cut_connections += len(pairs)
        log.info("link cut", extra={"connections": len(pairs)})
        return len(pairs)

    def restore(self) -> None:
        self.down = False
        log.info("link restored")

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.target_host, self.target_port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            self.refused += 1
            writer.transport.abort()
            return
        if self.down:  # cut while connecting
            self.refused += 1
            writer.transport.abort()
            up_writer.transport.abort()
            return
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        self.accepted += 1
        pumps = [
            asyncio.create_task(_pump(reader, up_writer), name="link:up"),
            asyncio.create_task(_pump(up_reader, writer), name="link:down"),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._pairs.discard(pair)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the reading side ends, then close the writing side (after a cut both
    transports are already aborted and this ends at once)."""
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        writer.transport.abort()
    finally:
        writer.close()


class Balancer(LinkCutter):
    """A TCP load balancer in front of several central system instances: each new
    connection goes to the next instance in turn that accepts it (one that refuses, a dead
    one, is skipped), as an operator's TCP balancer with health by connect does. It can
    cut every connection too, like `LinkCutter`."""

    def __init__(self, targets: Sequence[tuple[str, int]], host: str = "127.0.0.1") -> None:
        if not targets:
            raise ValueError("a balancer needs at least one target")
        super().__init__(targets[0][0], targets[0][1], host)
        self.targets = list(targets)
        self._next = 0
        self.per_target: dict[tuple[str, int], int] = dict.fromkeys(self.targets, 0)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        error: OSError | None = None
        for _ in range(len(self.targets)):
            target = self.targets[self._next % len(self.targets)]
            self._next += 1
            try:
                opened = await asyncio.open_connection(*target)
            except OSError as exc:
                error = exc
                continue
            self.per_target[target] = self.per_target.get(target, 0) + 1
            return opened
        assert error is not None
        raise error
