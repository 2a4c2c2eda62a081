"""The WebSocket server: HTTP checks before the upgrade, one session per charge point.

``ws://HOST:PORT/ocpp/<chargePointId>`` with subprotocol ``ocpp1.6``; HTTP Basic auth
(OCPP 1.6 security profile 1, TLS = profile 2 when a certificate is given); profile 3 =
TLS with a client certificate, signed by the CA given to ``make_ssl_context`` (TLS itself
refuses any other), whose subject common name is the station's id; no password.
Before any WebSocket opens: unknown identity -> 404 (OCPP-J 3.2), missing or wrong
password, or a station without one -> 401, a profile-2 or 3 station without TLS, or a
profile-3 station without the right client certificate -> 403; each of them counts as a
failure of the address, and too many of them -> 429 with Retry-After. Only a station a
manager marked unsecured (profile 0) needs neither password nor certificate.
``GET /healthz`` -> 200 JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import math
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHeader, NegotiationError
from websockets.headers import parse_authorization_basic
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from csms.auth import VerifiedKeys, verify_charger_password
from csms.clock import Clock
from csms.controller.mirror import ChargerIdentity
from csms.domain import ChargePointInfo
from csms.errors import ConfigError, GarageGridError, NotConnectedError, StoreError
from csms.events import ChargePointConnected, ChargePointDisconnected, EventBus
from csms.ocpp16.handlers import ChargePointSession
from csms.pki import SiteCA
from csms.store.meter_writer import MeterWriter
from csms.store.repository import Repository

log = logging.getLogger("csms.server")

#: Whether a booting charger (its id, the unit its BootNotification describes) may be
#: Accepted now; awaitable when another instance's controller is asked (csms.cluster).
BootGate = Callable[[str, ChargerIdentity | None], bool | Awaitable[bool]]
#: Told of every call the central system sends: (cp_id, action, payload, answer or None).
CallObserver = Callable[[str, str, dict[str, Any], dict[str, Any] | None], None]


class RemoteChargers(Protocol):
    """The chargers other instances hold (several `csms serve` on one PostgreSQL
    database: ``csms.cluster``)."""

    def holder(self, cp_id: str) -> str | None:
        """The instance holding ``cp_id``'s connection, None when no other does."""
        ...

    def is_accepted(self, cp_id: str) -> bool: ...

    async def call(self, cp_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a call through the instance holding the charger; its answer."""
        ...


SUBPROTOCOL = Subprotocol("ocpp1.6")
OCPP_PATH_PREFIX = "/ocpp/"
# Brute-force and enumeration protection: this many failed logins (401) or unknown ids
# (404) from one address within the window, and the address is refused (429) until the
# oldest of them is older than the window. Other addresses are not affected.
MAX_AUTH_FAILURES = 10
AUTH_FAILURE_WINDOW_S = 60.0
# Addresses remembered at most (an attack from many addresses must not exhaust memory).
MAX_TRACKED_ADDRESSES = 10_000
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


class FailureLimiter:
    """Failed logins per remote address in a sliding window (pure: the clock is injected)."""

    def __init__(
        self,
        max_failures: int = MAX_AUTH_FAILURES,
        window_s: float = AUTH_FAILURE_WINDOW_S,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_TRACKED_ADDRESSES,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._monotonic = monotonic
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def record(self, remote: str) -> bool:
        """Count a failure; True when it is the one that reaches the limit."""
        now = self._monotonic()
        failures = self._recent(remote, now)
        if failures is None:
            failures = self._failures[remote] = deque()
        failures.append(now)
        self._failures.move_to_end(remote)
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)
        return len(failures) == self.max_failures

    def retry_after(self, remote: str) -> float | None:
        """Seconds until ``remote`` may try again, or None if it may now."""
        now = self._monotonic()
        failures = self._recent(remote, now)
        if failures is None or len(failures) < self.max_failures:
            return None
        # Refused until enough failures have left the window to fall below the limit.
        return failures[-self.max_failures] + self.window_s - now

    def _recent(self, remote: str, now: float) -> deque[float] | None:
        failures = self._failures.get(remote)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[remote]
            return None
        return failures


class CentralSystem:
    """Accepts charge points and offers the one internal API for outgoing OCPP calls."""

    def __init__(
        self,
        repository: Repository,
        events: EventBus,
        clock: Clock,
        *,
        auto_register: bool = False,
        auto_register_unsecured: bool = False,
        response_timeout_s: float = 30.0,
        limiter: FailureLimiter | None = None,
        certificate_authority: SiteCA | None = None,
        meter_writer: MeterWriter | None = None,
    ) -> None:
        self._repo = repository
        # MeterValues are stored by it with group commit (None: one commit each).
        self.meter_writer = meter_writer
        self._events = events
        self._clock = clock
        # Trust on first use: an unknown id is registered with its first password; without
        # a password only when unsecured registration was asked for as well.
        self._auto_register = auto_register or auto_register_unsecured
        self._auto_register_unsecured = auto_register_unsecured
        self._response_timeout_s = response_timeout_s
        self._sessions: dict[str, ChargePointSession] = {}
        self.limiter = limiter or FailureLimiter()
        # Keys that passed lately: a charger that reconnects costs no second scrypt.
        self.verified_keys = VerifiedKeys()
        # Signs the CSRs chargers send with SignCertificate (None: they are Rejected).
        self.certificate_authority = certificate_authority
        self._asks_client_certificates = False
        self._server: Server | None = None
        self._call_observers: list[CallObserver] = []
        self.started_at = time.monotonic()
        # Set by load management: whether a booting charger (its id, and the unit its
        # BootNotification describes) may be Accepted yet.
        self.boot_gate: BootGate | None = None
        # With several instances: the chargers the others hold (csms.cluster).
        self.remote: RemoteChargers | None = None
        # More for /healthz (the cluster's state).
        self.health_extra: Callable[[], dict[str, Any]] | None = None

    # ----------------------------------------------------------- lifecycle
    async def start(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
    ) -> Server:
        self._asks_client_certificates = (
            ssl_context is not None and ssl_context.verify_mode != ssl.CERT_NONE
        )
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
        await self._warn_about_open_doors()
        return self._server

    async def _warn_about_open_doors(self) -> None:
        """Say at start which stations accept anyone and which can never log in."""
        try:
            stations = await self._repo.list_charge_points()
        except StoreError:
            return
        unsecured = [s.id for s in stations if s.security_profile == 0]
        locked = [
            s.id
            for s in stations
            if s.security_profile in (1, 2)
            and s.password_hash is None
            and s.pending_password_hash is None
        ]
        if unsecured:
            log.warning(
                "unsecured charge points (profile 0) accept any client using their id",
                extra={"count": len(unsecured), "cp_ids": unsecured[:20]},
            )
        if locked:
            log.warning(
                "charge points without a password are refused until they get one",
                extra={"count": len(locked), "cp_ids": locked[:20]},
            )
        certified = [s.id for s in stations if s.security_profile == 3]
        if certified and not self._asks_client_certificates:
            log.warning(
                "profile 3 charge points are refused: no client CA (csms serve --client-ca)",
                extra={"count": len(certified), "cp_ids": certified[:20]},
            )

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
        """The chargers connected to this instance."""
        return sorted(self._sessions)

    def is_local(self, cp_id: str) -> bool:
        return cp_id in self._sessions

    async def drop_replaced(self, cp_id: str, where: str) -> None:
        """The charger connected to another instance (``where``) after its connection here:
        this one is old (half-open after a network fault, or closing unseen), and, as a
        second connection here replaces the first, it goes. At once out of the sessions
        (calls go to the newer connection from now on; the charger stays marked connected
        there), then closed (the close handshake of a half-open link waits for its
        timeout)."""
        session = self._sessions.pop(cp_id, None)
        if session is None:
            return
        remote = _remote(session._connection)
        log.warning(
            "charger connected to another instance: its old connection here closed",
            extra={"cp_id": cp_id, "remote": remote, "instance": where},
        )
        await self._audit(cp_id, "replaced", remote, f"newer connection at instance {where}")
        await session._connection.close(code=1000, reason="replaced by a newer connection")

    def is_connected(self, cp_id: str) -> bool:
        """Connected here or, with several instances, to another."""
        if cp_id in self._sessions:
            return True
        return self.remote is not None and self.remote.holder(cp_id) is not None

    def is_accepted(self, cp_id: str) -> bool:
        """Connected and its BootNotification was Accepted (section 4.2)."""
        session = self._sessions.get(cp_id)
        if session is None and self.remote is not None:
            return self.remote.is_accepted(cp_id)
        return session is not None and session.accepted

    async def wait_accepted(self, cp_id: str, timeout_s: float) -> bool:
        """Wait until the connected charger ``cp_id`` is accepted; False when it is not
        connected, disconnects, or ``timeout_s`` passes first."""
        session = self._sessions.get(cp_id)
        if session is None and self.remote is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while self.remote.holder(cp_id) is not None and loop.time() < deadline:
                if self.remote.is_accepted(cp_id):
                    return True
                await asyncio.sleep(0.25)
            return False
        if session is None:
            return False
        if not await session.wait_accepted(timeout_s):
            return False
        return self._sessions.get(cp_id) is session

    # ----------------------------------------------------- the internal API
    async def call(self, cp_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one central-system-initiated OCPP call; return the charge point's answer.

        Raises NotConnectedError or CallFailedError (CALLERROR, timeout, invalid answer).
        """
        session = self._sessions.get(cp_id)
        remote = self.remote if session is None else None
        if session is None and (remote is None or remote.holder(cp_id) is None):
            self.tell_observers(cp_id, action, payload, None)
            raise NotConnectedError(f"charge point {cp_id!r} is not connected")
        answer: dict[str, Any] | None = None
        try:
            if session is None:
                assert remote is not None
                # Held by another instance: sent and answered through it.
                answer = await remote.call(cp_id, action, payload)
            else:
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
            self.tell_observers(cp_id, action, payload, answer)

    def add_call_observer(self, observer: CallObserver) -> None:
        """``observer(cp_id, action, payload, answer)`` runs after every call this central
        system sends; ``answer`` is None when the call failed (timeout, CALLERROR, closed)."""
        self._call_observers.append(observer)

    def remove_call_observer(self, observer: CallObserver) -> None:
        if observer in self._call_observers:
            self._call_observers.remove(observer)

    def tell_observers(
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
        retry_after = self.limiter.retry_after(remote)
        if retry_after is not None:
            # Logged when the limit was reached (_failed), not for every refused attempt.
            response = connection.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "Too many failures\n")
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            return response
        try:
            station = await self._repo.get_charge_point(cp_id)
        except StoreError:
            log.exception("refused: database unavailable", extra={"cp_id": cp_id})
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Database unavailable\n")
        username, password = _basic_credentials(request.headers)
        if station is None:
            if not self._auto_register:
                self._failed("refused: unknown charge point", cp_id, remote)
                await self._audit(cp_id, "refused_unknown", remote)
                return connection.respond(http.HTTPStatus.NOT_FOUND, "Unknown charge point\n")
            return await self._register_on_first_use(connection, cp_id, remote, username, password)
        return await self._authenticate(connection, station, remote, username, password)

    async def _authenticate(
        self,
        connection: ServerConnection,
        station: ChargePointInfo,
        remote: str,
        username: str | None,
        password: str | None,
    ) -> Response | None:
        cp_id = station.id
        if station.security_profile >= 2 and not _is_tls(connection):
            # Counted like a 401: a 403 tells a prober that the id exists.
            self._failed(
                f"refused: security profile {station.security_profile} needs TLS", cp_id, remote
            )
            await self._audit(cp_id, "refused_no_tls", remote)
            return connection.respond(
                http.HTTPStatus.FORBIDDEN, "This charge point must connect over TLS (wss://)\n"
            )
        if station.security_profile == 0:
            # A manager marked it unsecured (lab use): any client naming the id gets in.
            log.info("unsecured charge point admitted", extra={"cp_id": cp_id, "remote": remote})
            return None
        if station.security_profile == 3:
            return await self._check_client_certificate(connection, cp_id, remote)
        if username is None or password is None:
            return await self._unauthorized(connection, cp_id, remote, "no credentials")
        if username != cp_id:
            return await self._unauthorized(connection, cp_id, remote, "username is not the id")
        if station.password_hash is None and station.pending_password_hash is None:
            return await self._unauthorized(connection, cp_id, remote, "no password is set")
        if station.password_hash is not None and await self._key_matches(
            password, station.password_hash
        ):
            return None
        pending = station.pending_password_hash
        if pending is not None and await self._key_matches(password, pending):
            # A rotated key the charger had not confirmed: it uses it, so the old one goes.
            await self._repo.confirm_pending_password(cp_id, pending)
            log.info(
                "charge point logged in with its new key; the old one no longer works",
                extra={"cp_id": cp_id, "remote": remote},
            )
            await self._audit(cp_id, "key_confirmed", remote)
            return None
        return await self._unauthorized(connection, cp_id, remote, "wrong password")

    async def _key_matches(self, password: str, stored: str) -> bool:
        """`verify_charger_password`, remembered for a while when it matches. scrypt takes
        ~20 ms: off the event loop, so other chargers are answered meanwhile."""
        if self.verified_keys.known(password, stored):
            return True
        if not await asyncio.to_thread(verify_charger_password, password, stored):
            return False
        self.verified_keys.add(password, stored)
        return True

    async def _check_client_certificate(
        self, connection: ServerConnection, cp_id: str, remote: str
    ) -> Response | None:
        """Security profile 3: TLS has verified the chain against the client CA already;
        the certificate must name this station (whitepaper: no Basic auth with profile 3)."""
        names = _client_common_names(connection)
        if names is None:
            why = "no client certificate"
        elif names != [cp_id]:
            why = f"client certificate names {names[:3]!r}, not the id"
        else:
            log.info("charge point admitted by its certificate", extra={"cp_id": cp_id})
            return None
        self._failed("refused: client certificate", cp_id, remote, why)
        await self._audit(cp_id, "refused_certificate", remote, why)
        return connection.respond(
            http.HTTPStatus.FORBIDDEN,
            "This charge point must present its client certificate (security profile 3)\n",
        )

    async def _register_on_first_use(
        self,
        connection: ServerConnection,
        cp_id: str,
        remote: str,
        username: str | None,
        password: str | None,
    ) -> Response | None:
        if username is not None and username != cp_id:
            return await self._unauthorized(connection, cp_id, remote, "username is not the id")
        if password is None and not self._auto_register_unsecured:
            return await self._unauthorized(
                connection, cp_id, remote, "auto-registration needs a password"
            )
        # Trust on first use: the password of the first connection becomes its key.
        try:
            await self._repo.add_charge_point(
                cp_id,
                password=password,
                auto_registered=True,
                security_profile=1 if password is not None else 0,
            )
        except ConfigError:
            # Another first connection with this id won the race: it is known now.
            station = await self._repo.get_charge_point(cp_id)
            if station is None:
                raise
            return await self._authenticate(connection, station, remote, username, password)
        log.info(
            "charge point auto-registered",
            extra={"cp_id": cp_id, "remote": remote, "with_password": password is not None},
        )
        await self._audit(
            cp_id, "auto_registered", remote, None if password is not None else "unsecured"
        )
        return None

    async def _unauthorized(
        self, connection: ServerConnection, cp_id: str, remote: str, why: str
    ) -> Response:
        self._failed("refused: authentication failed", cp_id, remote, why)
        await self._audit(cp_id, "refused_auth", remote, why)
        response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="GarageGrid OCPP", charset="UTF-8"'
        return response

    def _failed(self, message: str, cp_id: str, remote: str, why: str | None = None) -> None:
        """A refused login (401, 403) or an unknown id (404): each counts against the address."""
        reached = self.limiter.record(remote)
        extra = {"cp_id": cp_id, "remote": remote} | ({"why": why} if why else {})
        log.warning(message, extra=extra)
        if reached:
            log.warning(
                "too many failed logins: address refused for a while",
                extra={
                    "remote": remote,
                    "failures": self.limiter.max_failures,
                    "window_s": self.limiter.window_s,
                },
            )

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
            **(
                {
                    "meter_writer": {
                        "messages": self.meter_writer.messages,
                        "batches": self.meter_writer.batches,
                        "largest_batch": self.meter_writer.largest_batch,
                        "commit_ms": self.meter_writer.commit_times_ms(),
                    }
                }
                if self.meter_writer is not None
                else {}
            ),
            **(self.health_extra() if self.health_extra is not None else {}),
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
        site = await self._repo.site_config(station.site_id if station is not None else None)
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
            certificate_authority=self.certificate_authority,
            meter_writer=self.meter_writer,
        )
        # Its readings may have been stored by another instance while it was away.
        self._repo.forget_register_tails(cp_id)
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


def _is_tls(connection: ServerConnection) -> bool:
    return connection.transport.get_extra_info("ssl_object") is not None


def _client_common_names(connection: ServerConnection) -> list[str] | None:
    """The subject common names of the client's certificate (TLS verified its chain);
    None without TLS or without a client certificate."""
    ssl_object = connection.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    certificate = ssl_object.getpeercert()
    if not certificate:
        return None
    return [
        str(value)
        for rdn in certificate.get("subject", ())
        for key, value in rdn
        if key == "commonName"
    ]


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


def make_ssl_context(
    certfile: str, keyfile: str | None = None, *, client_ca: str | None = None
) -> ssl.SSLContext:
    """TLS for security profiles 2 and 3: TLS 1.2 or newer only.

    With ``client_ca``, a client may present a certificate and TLS refuses one that this CA
    did not sign; a client without one still gets through the handshake (profile 1 and 2
    stations share the port), and the login refuses a profile 3 station without one.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
        if client_ca is not None:
            context.load_verify_locations(cafile=client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot set up TLS: {exc}") from exc
    return context
