"""The certificate the site registries of real-registry mode serve TLS with: self-signed for 127.0.0.1
(an IP SAN, as a connected registry's certificate names its service IP), made once per data dir and kept,
renewed when it expires within a week. Clients in the same process (the site check, the syncers, the
agents) trust exactly this certificate; nothing else does."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = timedelta(days=90)
RENEW_WITHIN = timedelta(days=7)


@dataclass(frozen=True)
class LocalCertificate:
    certificate: Path
    key: Path
    expires_at: datetime

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate only."""
        return ssl.create_default_context(cafile=str(self.certificate))


def local_certificate(directory: Path) -> LocalCertificate:
    """The certificate under ``directory`` (``registry.crt``, ``registry.key`` of mode 0600), made when
    missing or close to expiry."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "registry.crt", directory / "registry.key"
    if cert_path.is_file() and key_path.is_file():
        expires = x509.load_pem_x509_certificate(cert_path.read_bytes()).not_valid_after_utc
        if expires - datetime.now(UTC) > RENEW_WITHIN:
            return LocalCertificate(cert_path, key_path, expires)
    return make_certificate(directory, validity=VALIDITY)


def make_certificate(directory: Path, *, validity: timedelta) -> LocalCertificate:
    """A new self-signed certificate for 127.0.0.1, valid for ``validity``, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "registry.crt", directory / "registry.key"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acrsync local connected registry")])
    now = datetime.now(UTC).replace(microsecond=0)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.unlink(missing_ok=True)
    with os.fdopen(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return LocalCertificate(cert_path, key_path, now + validity)
