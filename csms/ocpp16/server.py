"""The WebSocket server: HTTP checks before the upgrade, one session per charge point.

``ws://HOST:PORT/ocpp/<chargePointId>`` with subprotocol ``ocpp1.6``; HTTP Basic auth
(OCPP 1.6 security profile 1, TLS = profile 2 when a certificate is given).
Before any WebSocket opens: unknown identity -> 404 (OCPP-J 3.2), missing or wrong
password -> 401, too many failures from one address -> 429. ``GET /healthz`` -> 200 JSON.
"""

from __future__ import annotations

import contextlib
import http
import json
import logging
import ssl
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHeader, NegotiationError
from websockets.headers import parse_authorization_basic
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from csms.auth import verify_password
from csms.clock import Clock
from csms.errors import GarageGridError, NotConnectedError, StoreError
from csms.events import ChargePointConnected, ChargePointDisconnected, EventBus
from csms.ocpp16.handlers import ChargePointSession
from csms.store.repository import Repository

log = logging.getLogger("csms.server")

#: Told of every call the central system sends: (cp_id, action, payload, answer or None).
CallObserver = Callable[[str, str, dict[str, Any], dict[str, Any] | None], None]

SUBPROTOCOL = Subprotocol("ocpp1.6")
OCPP_PATH_PREFIX = "/ocpp/"
# Brute-force protection: this many failed logins from one address in the window...
MAX_AUTH_FAILURES = 10
AUTH_FAILURE_WINDOW_S = 60.0
# OCPP 1.6 CiString20 for the identity in practice; keep the URL sane.
MAX_ID_LENGTH = 64


def _select_subprotocol(
    connection: ServerConnection, subprotocols: Sequence[Subprotocol]
) -> Subprotocol | None:
    if SUBPROTOCOL in subprotocols:
        return SUBPROTOCOL
    log.warning(
        "connection refused: no supported subprotocol",
        extra={
            "remote": _remote(connection),
            "path": connection.request.path if connection.request else None,
            "offered": list(subprotocols),
            "supported": [SUBPROTOCOL],
        },
    )
    raise NegotiationError(
        f"this central system speaks {SUBPROTOCOL}; "
        f"the client offered {list(subprotocols) or 'none'}"
    )


def _remote(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "?"


def charge_point_id_from_path(path: str) -> str | None:
    """``/ocpp/CP01`` -> ``CP01``; anything else -> None."""
    target = urlsplit(path).path
    if not target.startswith(OCPP_PATH_PREFIX):
        return None
    cp_id = unquote(target[len(OCPP_PATH_PREFIX) :])
    if not cp_id or "/" in cp_id or len(cp_id) > MAX_ID_LENGTH or not cp_id.isprintable():
        return None
    return cp_id


class CentralSystem:
    """Accepts charge points and offers the one internal API for outgoing OCPP calls."""

    def __init__(
        self,
        repository: Repository,
        events: EventBus,
        clock: Clock,
        *,
        auto_register: bool = False,
        response_timeout_s: float = 30.0,
    ) -> None:
        self._repo = repository
        self._events = events
        self._clock = clock
        self._auto_register = auto_register
        self._response_timeout_s = response_timeout_s
        self._sessions: dict[str, ChargePointSession] = {}
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._server: Server | None = None
        self._call_observers: list[CallObserver] = []
        self.started_at = time.monotonic()
        # Set by load management: whether a booting charger may be Accepted yet.
        self.boot_gate: Callable[[str], bool] | None = None

    # ----------------------------------------------------------- lifecycle
    async def start(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
    ) -> Server:
        self._server = await serve(
            self._handle,
            host,
            port,
            subprotocols=[SUBPROTOCOL],
            select_subprotocol=_select_subprotocol,
            process_request=self._process_request,
            ssl=ssl_context,
            server_header="GarageGrid",
        )
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None
        sockets = list(self._server.sockets)
        return int(sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=True)
        await self._server.wait_closed()

    def connected_ids(self) -> list[str]:
        return sorted(self._sessions)

    def is_connected(self, cp_id: str) -> bool:
        return cp_id in self._sessions

    # ----------------------------------------------------- the internal API
    async def call(self, cp_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one central-system-initiated OCPP call; return the charge point's answer.

        Raises NotConnectedError or CallFailedError (CALLERROR, timeout, invalid answer).
        """
        session = self._sessions.get(cp_id)
        if session is None:
            self._tell_observers(cp_id, action, payload, None)
            raise NotConnectedError(f"charge point {cp_id!r} is not connected")
        answer: dict[str, Any] | None = None
        try:
            answer = await session.send_call(action, payload)
            return answer
        except ConnectionClosed as exc:
            # The link went down with the call on it: no answer will come.
            raise NotConnectedError(
                f"charge point {cp_id!r} disconnected during {action}: {exc}"
            ) from exc
        finally:
            # Whoever sent it (controller, outbox, monitor override), every observer learns
            # what the charger was asked and what it answered (None: no answer came back).
            self._tell_observers(cp_id, action, payload, answer)

    def add_call_observer(self, observer: CallObserver) -> None:
        """``observer(cp_id, action, payload, answer)`` runs after every call this central
        system sends; ``answer`` is None when the call failed (timeout, CALLERROR, closed)."""
        self._call_observers.append(observer)

    def _tell_observers(
        self, cp_id: str, action: str, payload: dict[str, Any], answer: dict[str, Any] | None
    ) -> None:
        for observer in self._call_observers:
            try:
                observer(cp_id, action, payload, answer)
            except Exception:
                log.exception("call observer failed", extra={"cp_id": cp_id, "action": action})

    # ------------------------------------------------------- HTTP handshake
    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return await self._health(connection)
        cp_id = charge_point_id_from_path(request.path)
        remote = _remote(connection)
        if cp_id is None:
            log.warning("refused: not an OCPP path", extra={"remote": remote, "path": path})
            return connection.respond(
                http.HTTPStatus.NOT_FOUND, "Connect to /ocpp/<chargePointId>\n"
            )
        if self._too_many_failures(remote):
            log.warning("refused: too many failed logins", extra={"cp_id": cp_id, "remote": remote})
            response = connection.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "Too many failures\n")
            response.headers["Retry-After"] = str(int(AUTH_FAILURE_WINDOW_S))
            return response
        try:
            station = await self._repo.get_charge_point(cp_id)
        except StoreError:
            log.exception("refused: database unavailable", extra={"cp_id": cp_id})
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Database unavailable\n")
        username, password = _basic_credentials(request.headers)
        if station is None:
            if not self._auto_register:
                log.warning(
                    "refused: unknown charge point", extra={"cp_id": cp_id, "remote": remote}
                )
                await self._audit(cp_id, "refused_unknown", remote)
                return connection.respond(http.HTTPStatus.NOT_FOUND, "Unknown charge point\n")
            if username is not None and username != cp_id:
                return self._unauthorized(connection, cp_id, remote, "username is not the id")
            # Trust on first use: the password of the first connection becomes its key.
            await self._repo.add_charge_point(cp_id, password=password, auto_registered=True)
            log.info(
                "charge point auto-registered",
                extra={"cp_id": cp_id, "remote": remote, "with_password": password is not None},
            )
            await self._audit(cp_id, "auto_registered", remote)
            return None
        if station.password_hash is None:
            return None
        if username is None or password is None:
            return self._unauthorized(connection, cp_id, remote, "no credentials")
        if username != cp_id:
            return self._unauthorized(connection, cp_id, remote, "username is not the id")
        if not verify_password(password, station.password_hash):
            return self._unauthorized(connection, cp_id, remote, "wrong password")
        return None

    def _unauthorized(
        self, connection: ServerConnection, cp_id: str, remote: str, why: str
    ) -> Response:
        self._failures[remote].append(time.monotonic())
        log.warning(
            "refused: authentication failed", extra={"cp_id": cp_id, "remote": remote, "why": why}
        )
        response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="GarageGrid OCPP", charset="UTF-8"'
        return response

    def _too_many_failures(self, remote: str) -> bool:
        failures = self._failures.get(remote)
        if not failures:
            return False
        horizon = time.monotonic() - AUTH_FAILURE_WINDOW_S
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[remote]
            return False
        return len(failures) >= MAX_AUTH_FAILURES

    async def _health(self, connection: ServerConnection) -> Response:
        database = "ok"
        try:
            await self._repo.site_config()
        except GarageGridError:
            database = "unavailable"
        body = {
            "status": "ok" if database == "ok" else "degraded",
            "database": database,
            "connected_charge_points": len(self._sessions),
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "time": self._clock.now().isoformat(),
        }
        status = http.HTTPStatus.OK if database == "ok" else http.HTTPStatus.SERVICE_UNAVAILABLE
        response = connection.respond(status, json.dumps(body) + "\n")
        response.headers["Content-Type"] = "application/json"
        return response

    async def _audit(self, cp_id: str, event: str, remote: str, detail: str | None = None) -> None:
        try:
            await self._repo.record_connection_event(cp_id, event, remote=remote, detail=detail)
        except GarageGridError:
            log.exception("could not record connection event", extra={"cp_id": cp_id})

    # -------------------------------------------------- WebSocket session
    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        cp_id = charge_point_id_from_path(connection.request.path)
        assert cp_id is not None  # _process_request refused anything else
        remote = _remote(connection)
        station = await self._repo.get_charge_point(cp_id)
        site = await self._repo.site_config()
        session = ChargePointSession(
            cp_id,
            connection,
            repository=self._repo,
            events=self._events,
            clock=self._clock,
            heartbeat_interval_s=site.heartbeat_interval_s,
            accepted=station is not None and station.boot_status == "Accepted",
            response_timeout=self._response_timeout_s,
            boot_gate=self.boot_gate,
        )
        previous = self._sessions.get(cp_id)
        self._sessions[cp_id] = session
        if previous is not None:
            log.warning(
                "second connection replaces the first",
                extra={"cp_id": cp_id, "remote": remote},
            )
            await self._audit(cp_id, "replaced", remote)
            await previous._connection.close(code=1000, reason="replaced by a newer connection")
        log.info("charge point connected", extra={"cp_id": cp_id, "remote": remote})
        await self._repo.set_connected(cp_id, True)
        await self._audit(cp_id, "connected", remote)
        self._events.publish(ChargePointConnected(cp_id))
        try:
            await session.start()
        except ConnectionClosed as closed:
            log.info(
                "charge point disconnected",
                extra={"cp_id": cp_id, "code": closed.rcvd.code if closed.rcvd else None},
            )
        finally:
            if self._sessions.get(cp_id) is session:
                del self._sessions[cp_id]
                with contextlib.suppress(GarageGridError):
                    await self._repo.set_connected(cp_id, False)
                await self._audit(cp_id, "disconnected", remote)
                self._events.publish(ChargePointDisconnected(cp_id))


def _basic_credentials(headers: Headers) -> tuple[str | None, str | None]:
    try:
        header = headers["Authorization"]
    except KeyError:
        return None, None
    try:
        username, password = parse_authorization_basic(header)
    except InvalidHeader:
        return None, None
    return username, password


def make_ssl_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """TLS for security profile 2: TLS 1.2 or newer only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context
