"""Security profile 3 (TLS client certificates) and the 1.6 security extension messages
(issue 10, item 2), with real certificates made at test time.

One site CA signs the server's certificate (127.0.0.1, localhost) and the chargers'; a
second CA, unknown to the server, signs an impostor's. Validity is a fixed span around
now-ish (2020-2099), so nothing depends on the hour the tests run at.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from csms.app import CsmsApp
from csms.store import models as m
from tests.conftest import start_app
from tests.ocpp_client import RawChargePoint, basic_auth_header

NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2099, 1, 1, tzinfo=UTC)
BOOT = {"chargePointVendor": "GarageGrid", "chargePointModel": "TLS3"}


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "GarageGrid test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass
class Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, cn: str) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(
        self, cn: str, *, server: bool = False
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@dataclass
class Pki:
    ca: Issuer
    ca_cert: Path
    ca_key: Path
    server: Path
    tmp: Path
    foreign: Issuer

    def client(self, cn: str, *, foreign: bool = False) -> Path:
        issuer = self.foreign if foreign else self.ca
        cert, key = issuer.issue(cn)
        return _write(self.tmp / f"client-{cn}-{int(foreign)}.pem", cert, key)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = Issuer.new("GarageGrid test site CA")
    ca_cert = tmp_path / "ca.pem"
    ca_cert.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    ca_key = tmp_path / "ca-key.pem"
    ca_key.write_bytes(
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_cert, server_key = ca.issue("localhost", server=True)
    server = _write(tmp_path / "server.pem", server_cert, server_key)
    return Pki(ca, ca_cert, ca_key, server, tmp_path, Issuer.new("Some other CA"))


async def _tls_app(db_url: str, pki: Pki, **overrides: Any) -> CsmsApp:
    return await start_app(
        db_url,
        certfile=str(pki.server),
        keyfile=str(pki.server),
        client_ca=str(pki.ca_cert),
        **overrides,
    )


def _client_context(pki: Pki, client: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if client is not None:
        context.load_cert_chain(str(client))
    return context


async def _connect(
    app: CsmsApp, cp_id: str, pki: Pki, client: Path | None, **kwargs: Any
) -> RawChargePoint:
    ws = await connect(
        f"wss://127.0.0.1:{app.port}/ocpp/{cp_id}",
        ssl=_client_context(pki, client),
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        open_timeout=5,
        **kwargs,
    )
    return RawChargePoint(ws)


async def _refused_status(
    app: CsmsApp, cp_id: str, pki: Pki, client: Path | None, **kwargs: Any
) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await _connect(app, cp_id, pki, client, **kwargs)
    return refused.value.response.status_code


async def _events(app: CsmsApp, cp_id: str) -> list[tuple[str, str | None]]:
    async with app.repository._unit() as s:
        rows = await s.scalars(
            select(m.ConnectionEvent)
            .where(m.ConnectionEvent.charge_point_id == cp_id)
            .order_by(m.ConnectionEvent.id)
        )
        return [(r.event, r.detail) for r in rows]


async def test_profile3_station_logs_in_with_its_certificate_and_no_password(
    db_url: str, pki: Pki
) -> None:
    app = await _tls_app(db_url, pki)
    try:
        await app.repository.add_charge_point("CP3", security_profile=3)
        cp = await _connect(app, "CP3", pki, pki.client("CP3"))
        try:
            assert (await cp.boot(BOOT))["status"] == "Accepted"
        finally:
            await cp.close()
        # A profile 1 station without a certificate shares the port (CERT_OPTIONAL).
        await app.repository.add_charge_point("CP1", password="profile-one-key-0001")
        cp1 = await _connect(
            app,
            "CP1",
            pki,
            None,
            additional_headers=basic_auth_header("CP1", "profile-one-key-0001"),
        )
        try:
            assert (await cp1.boot(BOOT))["status"] == "Accepted"
        finally:
            await cp1.close()
    finally:
        await app.stop()


async def test_profile3_refuses_wrong_name_no_certificate_and_foreign_ca(
    db_url: str, pki: Pki
) -> None:
    app = await _tls_app(db_url, pki)
    try:
        await app.repository.add_charge_point("CP3", security_profile=3)
        # Another station's certificate, from the right CA: the name decides.
        assert await _refused_status(app, "CP3", pki, pki.client("CP4")) == 403
        # No certificate, even with a would-be password: profile 3 takes no password.
        assert (
            await _refused_status(
                app, "CP3", pki, None, additional_headers=basic_auth_header("CP3", "x" * 20)
            )
            == 403
        )
        assert await _events(app, "CP3") == [
            ("refused_certificate", "client certificate names ['CP4'], not the id"),
            ("refused_certificate", "no client certificate"),
        ]
        # Both count toward the address's failure limit like any refused login.
        assert len(app.central.limiter._failures["127.0.0.1"]) == 2
        # The right name from a CA the server does not trust: TLS itself refuses it.
        # (TLS 1.3: the client learns of it when it reads the HTTP answer: none comes.)
        with pytest.raises((ssl.SSLError, InvalidMessage)):
            await _connect(app, "CP3", pki, pki.client("CP3", foreign=True))
        assert app.central.connected_ids() == []
    finally:
        await app.stop()


async def test_profile3_station_over_plain_websocket_is_refused(db_url: str) -> None:
    app = await start_app(db_url)
    try:
        await app.repository.add_charge_point("CP3", security_profile=3)
        with pytest.raises(InvalidStatus) as refused:
            await RawChargePoint.connect(f"ws://127.0.0.1:{app.port}/ocpp/CP3")
        assert refused.value.response.status_code == 403
        assert [e for e, _ in await _events(app, "CP3")] == ["refused_no_tls"]
    finally:
        await app.stop()


async def test_security_event_notification_is_stored_and_acknowledged(
    db_url: str, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await _tls_app(db_url, pki)
    try:
        await app.repository.add_charge_point("CP3", security_profile=3)
        cp = await _connect(app, "CP3", pki, pki.client("CP3"))
        try:
            await cp.boot(BOOT)
            answer = await cp.ok(
                "SecurityEventNotification",
                {
                    "type": "InvalidCentralSystemCertificate",
                    "timestamp": "2026-01-05T15:59:00Z",
                    "techInfo": "chain did not verify",
                },
            )
            assert answer == {}
            # Without techInfo too; and a bad timestamp is a PropertyConstraintViolation.
            assert (
                await cp.ok(
                    "SecurityEventNotification",
                    {"type": "SettingSystemTime", "timestamp": "2026-01-05T16:00:00Z"},
                )
                == {}
            )
            bad = await cp.call(
                "SecurityEventNotification", {"type": "X", "timestamp": "yesterday"}
            )
            assert bad[0] == 4 and bad[2] == "PropertyConstraintViolation"
        finally:
            await cp.close()
        events = await app.repository.security_events("CP3")
        assert [(e["type"], e["tech_info"]) for e in events] == [
            ("SettingSystemTime", None),
            ("InvalidCentralSystemCertificate", "chain did not verify"),
        ]
        assert events[1]["occurred_at"] == datetime(2026, 1, 5, 15, 59, tzinfo=UTC)
    finally:
        await app.stop()
    # A manager sees them with `csms station security-events`.
    from csms.cli import _run, build_parser

    args = build_parser().parse_args(
        ["station", "security-events", "CP3", "--json", "--database-url", db_url]
    )
    assert await _run(args) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["type"] for e in listed] == ["SettingSystemTime", "InvalidCentralSystemCertificate"]


def _csr(cn: str) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(cn)).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


async def test_sign_certificate_is_answered_with_a_certificate_from_the_site_ca(
    db_url: str, pki: Pki
) -> None:
    app = await _tls_app(db_url, pki, ca_cert=str(pki.ca_cert), ca_key=str(pki.ca_key))
    try:
        await app.repository.add_charge_point("CP3", security_profile=3)
        cp = await _connect(app, "CP3", pki, pki.client("CP3"))
        signed: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def certificate_signed(payload: dict[str, Any]) -> dict[str, Any]:
            signed.set_result(payload)
            return {"status": "Accepted"}

        cp.handlers["CertificateSigned"] = certificate_signed
        try:
            await cp.boot(BOOT)
            csr, key = _csr("CP3")
            assert await cp.ok("SignCertificate", {"csr": csr}) == {"status": "Accepted"}
            payload = await asyncio.wait_for(signed, 10)
            # A CSR in another station's name, or not a CSR at all: Rejected, nothing sent.
            other, _ = _csr("CP4")
            assert await cp.ok("SignCertificate", {"csr": other}) == {"status": "Rejected"}
            assert await cp.ok("SignCertificate", {"csr": "garbage"}) == {"status": "Rejected"}
        finally:
            await cp.close()
        chain = x509.load_pem_x509_certificates(payload["certificateChain"].encode())
        leaf = chain[0]
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP3"
        assert leaf.public_key() == key.public_key()
        # Signed by the site CA (verify_directly_issued_by checks the signature and names).
        leaf.verify_directly_issued_by(pki.ca.cert)
        assert chain[1] == pki.ca.cert
        assert (
            ExtendedKeyUsageOID.CLIENT_AUTH
            in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
        assert [action for action, _ in cp.server_calls] == ["CertificateSigned"]
    finally:
        await app.stop()


async def test_sign_certificate_without_a_site_ca_is_rejected(db_url: str) -> None:
    app = await start_app(db_url)
    try:
        await app.repository.add_charge_point("CPX", password="profile-one-key-0002")
        cp = await RawChargePoint.connect(
            f"ws://127.0.0.1:{app.port}/ocpp/CPX", password="profile-one-key-0002"
        )
        try:
            await cp.boot(BOOT)
            csr, _ = _csr("CPX")
            assert await cp.ok("SignCertificate", {"csr": csr}) == {"status": "Rejected"}
            await asyncio.sleep(0.2)
            assert cp.server_calls == []
        finally:
            await cp.close()
    finally:
        await app.stop()


def test_station_set_security_profile_3(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from csms.cli import main

    assert main(["station", "add", "CPZ", "--password", "k" * 20, "--database-url", db_url]) == 0
    assert main(["station", "set", "CPZ", "--security-profile", "3", "--database-url", db_url]) == 0
    assert main(["station", "list", "--json", "--database-url", db_url]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out[out.index("[") :])
    assert [s["security_profile"] for s in listed if s["id"] == "CPZ"] == [3]


def test_serve_options_that_cannot_work_are_refused(tmp_path: Path) -> None:
    from csms.app import ServeConfig
    from csms.errors import ConfigError

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigError, match="--client-ca needs TLS"):
        CsmsApp(ServeConfig(database_url=db_url, client_ca="ca.pem"))
    with pytest.raises(ConfigError, match="both --ca-cert and --ca-key"):
        CsmsApp(ServeConfig(database_url=db_url, ca_cert="ca.pem"))
    with pytest.raises(ConfigError, match="cannot load the site CA"):
        CsmsApp(ServeConfig(database_url=db_url, ca_cert="nope.pem", ca_key="nope.pem"))
