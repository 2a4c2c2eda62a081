"""Security profile 2: the same server over TLS (1.2 or newer) when a certificate is given."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.conftest import start_app
from tests.ocpp_client import basic_auth_header


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_wss_with_basic_auth(db_url: str, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    app = await start_app(db_url, certfile=str(cert), keyfile=str(key))
    try:
        await app.repository.add_charge_point("TLS1", password="tls-password-0001")
        client_ctx = ssl.create_default_context(cafile=str(cert))
        async with connect(
            f"wss://127.0.0.1:{app.port}/ocpp/TLS1",
            ssl=client_ctx,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth_header("TLS1", "tls-password-0001"),
        ) as ws:
            await ws.send(
                '[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
            )
            answer = await ws.recv()
            assert '"Accepted"' in str(answer)
        # A client that does not trust the certificate is refused by TLS itself.
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(
                f"wss://127.0.0.1:{app.port}/ocpp/TLS1", ssl=ssl.create_default_context()
            ):
                pass
    finally:
        await app.stop()
