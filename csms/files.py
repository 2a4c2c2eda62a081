"""A small HTTP file endpoint for Firmware Management (OCPP 1.6 sections 5.8, 5.16).

UpdateFirmware gives a charger a URI to download its firmware from; GetDiagnostics a
directory URI to upload its diagnostics file to. `csms serve --files-port PORT` serves
both from ``--files-dir`` (default ``./garagegrid-files``):

    GET  /firmware/<name>                  the file firmware/<name>
    PUT  /diagnostics/<cp_id>/<name>       stored as diagnostics/<cp_id>/<name>
    POST /diagnostics/<cp_id>/<name>       the same; a multipart/form-data body is unpacked
                                           (its first file part is stored)

It listens on 127.0.0.1 unless ``--files-host`` says otherwise: it has no
authentication, so expose it only to the chargers' network. Names are one path segment
of letters, digits, ``.-_``; an upload is at most ``MAX_UPLOAD_BYTES``; an existing file
is replaced. Standard library only (``http.server`` in a thread of its own).
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from csms.errors import ConfigError

log = logging.getLogger("csms.files")

MAX_UPLOAD_BYTES: Final = 64 * 1024 * 1024
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_name(name: str) -> str | None:
    """``name`` if it is one harmless path segment, else None."""
    return name if _NAME.match(name) and ".." not in name else None


def firmware_dir(root: Path) -> Path:
    return root / "firmware"


def diagnostics_dir(root: Path, cp_id: str) -> Path:
    return root / "diagnostics" / cp_id


def _first_file_part(content_type: str, body: bytes) -> bytes | None:
    """The first file of a multipart/form-data body (None if there is none)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_filename() is not None or part.get_content_disposition() == "form-data":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _FileServer
    server_version = "GarageGrid-files"

    def log_message(self, format: str, *args: object) -> None:
        log.info(
            "files request", extra={"request": format % args, "remote": self.client_address[0]}
        )

    def _answer(self, status: HTTPStatus, text: str = "") -> None:
        body = (text or status.phrase).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _segments(self) -> list[str]:
        return [unquote(p) for p in urlsplit(self.path).path.split("/") if p]

    def do_GET(self) -> None:
        parts = self._segments()
        if len(parts) != 2 or parts[0] != "firmware" or safe_name(parts[1]) is None:
            self._answer(HTTPStatus.NOT_FOUND)
            return
        path = firmware_dir(self.server.root) / parts[1]
        if not path.is_file():
            self._answer(HTTPStatus.NOT_FOUND)
            return
        data = path.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        self._upload()

    def do_POST(self) -> None:
        self._upload()

    def _upload(self) -> None:
        parts = self._segments()
        if (
            len(parts) != 3
            or parts[0] != "diagnostics"
            or safe_name(parts[1]) is None
            or safe_name(parts[2]) is None
        ):
            self._answer(HTTPStatus.NOT_FOUND, "upload to /diagnostics/<chargePointId>/<file>")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(HTTPStatus.LENGTH_REQUIRED)
            return
        if not 0 <= length <= MAX_UPLOAD_BYTES:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        body = self.rfile.read(length)
        content_type = self.headers.get("Content-Type", "")
        if self.command == "POST" and content_type.lower().startswith("multipart/form-data"):
            unpacked = _first_file_part(content_type, body)
            if unpacked is None:
                self._answer(HTTPStatus.BAD_REQUEST, "no file in the multipart body")
                return
            body = unpacked
        folder = diagnostics_dir(self.server.root, parts[1])
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / parts[2]
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(body)
        tmp.replace(target)
        log.info(
            "diagnostics file stored",
            extra={"cp_id": parts[1], "file": parts[2], "bytes": len(body)},
        )
        self._answer(HTTPStatus.CREATED)


class _FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path) -> None:
        self.root = root
        super().__init__(address, _Handler)


class FileEndpoint:
    """The endpoint, started and stopped by `csms.app.CsmsApp`."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root
        self._address = (host, port)
        self._server: _FileServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        firmware_dir(self.root).mkdir(parents=True, exist_ok=True)
        (self.root / "diagnostics").mkdir(parents=True, exist_ok=True)
        try:
            self._server = _FileServer(self._address, self.root)
        except OSError as exc:
            raise ConfigError(f"cannot serve files on {self._address}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="csms-files", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
