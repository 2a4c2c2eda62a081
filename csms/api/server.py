"""Serving the API with uvicorn: inside `csms serve --api-port` or as `csms api`.

uvicorn is the production ASGI server of the Starlette/FastAPI world (h11, graceful
shutdown, no thread per request). It runs in the CSMS's own event loop, so a request
reaches the same store, central system and controller objects without any locking
beyond what they already do. Signals stay with the caller (`serve_forever`, `csms api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Callable, Iterator

import uvicorn

from csms import metrics
from csms.api.app import create_app
from csms.api.context import ApiContext, PublishedClock
from csms.errors import ConfigError
from csms.ocpp16.server import make_ssl_context
from csms.store import migrate
from csms.store.engine import create_engine, create_sessionmaker
from csms.store.repository import Repository

log = logging.getLogger("csms.api")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The CSMS handles SIGTERM and SIGINT itself (uvicorn would replace its handlers)."""
        yield


class ApiServer:
    """The API on one TCP socket; ``port`` 0 picks a free one (tests)."""

    def __init__(
        self,
        context: ApiContext,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.context = context
        self.host = host
        self.ssl_context = ssl_context
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the API server is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP; without it every response waited ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"the API cannot listen on {self.host}:{self._requested_port}: {exc}"
            ) from exc
        sock.setblocking(False)
        self._socket = sock
        config = uvicorn.Config(
            create_app(self.context),
            log_config=None,  # our structured logging (csms.logs) stays in charge
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            ssl_context_factory=self._tls if self.ssl_context is not None else None,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="api")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ConfigError("the API server stopped at once")
            await asyncio.sleep(0.01)
        log.info(
            "API listening",
            extra={"host": self.host, "port": self.port, "tls": self.ssl_context is not None},
        )

    def _tls(self, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        assert self.ssl_context is not None
        return self.ssl_context

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._task = None


async def serve_api_forever(
    database_url: str | None,
    host: str,
    port: int,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> None:
    """`csms api`: the API alone, on the CSMS's database, until SIGTERM or SIGINT.

    Commands go through the outbox (the `csms serve` process sends them); the garage's
    clock is the one `csms serve` published in the store.
    """
    engine = create_engine(database_url)
    metrics.instrument_engine(engine)
    await migrate.upgrade(engine)
    clock = PublishedClock()
    repository = Repository(create_sessionmaker(engine), clock)
    await clock.refresh(repository.sessionmaker)
    server = ApiServer(
        ApiContext(repository, clock, published_clock=clock),
        host,
        port,
        ssl_context=make_ssl_context(certfile, keyfile) if certfile else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
        log.info("shutdown requested")
    finally:
        await server.stop()
        await engine.dispose()
