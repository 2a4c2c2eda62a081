"""The site CA: charge point certificates for security profile 3 (OCPP 1.6 security
whitepaper, "Update Charge Point Certificate": SignCertificate / CertificateSigned).

Pure apart from reading the CA's files: a CSR (PEM text) and the moment in, a PEM chain
out. A charger may only ask for a certificate in its own name: the CSR's subject common
name must be its charge point identity, the name the server checks at every profile 3
login (csms.ocpp16.server).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from csms.errors import ConfigError, GarageGridError

# A charger certificate lives this long; the charger asks for a new one before it ends
# (whitepaper: the CSMS may trigger SignCertificate with ExtendedTriggerMessage).
CERTIFICATE_LIFETIME = timedelta(days=365)
# Chargers' clocks may trail the CSMS's a little when they first use the certificate.
BACKDATE = timedelta(hours=1)
# RSA keys below this size are refused (whitepaper: RSA 2048 or ECC 224 at least).
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224


class CertificateRequestError(GarageGridError):
    """A CSR this CA does not sign (unreadable, bad signature, weak key, wrong name)."""


def common_names(name: x509.Name) -> list[str]:
    return [str(attr.value) for attr in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def read_csr(pem: str, *, expected_cn: str) -> x509.CertificateSigningRequest:
    """The CSR if this CA may sign it for ``expected_cn``; CertificateRequestError if not."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode("utf-8", "surrogateescape"))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateRequestError("not a PEM certificate signing request") from exc
    try:
        if not csr.is_signature_valid:
            raise CertificateRequestError("the CSR's signature does not verify")
    except (InvalidSignature, UnsupportedAlgorithm) as exc:
        raise CertificateRequestError("the CSR's signature does not verify") from exc
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateRequestError(f"RSA key of {key.key_size} bits is too weak")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < MIN_EC_BITS:
            raise CertificateRequestError(f"EC key of {key.curve.key_size} bits is too weak")
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise CertificateRequestError("unsupported key type")
    names = common_names(csr.subject)
    if names != [expected_cn]:
        raise CertificateRequestError(
            f"the CSR's common name must be the charge point id {expected_cn!r}"
        )
    return csr


@dataclass(frozen=True)
class SiteCA:
    """The CA certificate and key that issue charge point certificates."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, cert_path: str, key_path: str) -> SiteCA:
        try:
            certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"cannot load the site CA ({cert_path}, {key_path}): {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError("the site CA key must be RSA or EC")
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
            raise ConfigError("the site CA key does not belong to its certificate")
        return cls(certificate, key)

    def sign(self, csr: x509.CertificateSigningRequest, now: datetime) -> str:
        """A client certificate for the CSR's subject; the PEM chain (leaf, then the CA)."""
        certificate = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.certificate.subject)
            .public_key(csr.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CERTIFICATE_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(csr.public_key(), rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return (
            certificate.public_bytes(serialization.Encoding.PEM)
            + self.certificate.public_bytes(serialization.Encoding.PEM)
        ).decode("ascii")
