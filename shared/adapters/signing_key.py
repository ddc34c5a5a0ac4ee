"""The local secrets under the data dir: the receipt-signing key (one Ed25519 key in a PEM file, mode
0600) and the secret site report tokens derive from.

Created on first use and kept, so receipts signed by ``acrsync dev`` verify against the same public
key across restarts. Several processes may start at once: the key is written to a private temporary
file and published with a hard link, which fails if another process got there first (then its key
is used). The key's bytes never appear in a log or an error message.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.domain.receipts import load_private_key, private_key_pem
from shared.errors import ConfigurationError

logger = logging.getLogger(__name__)
KEY_FILE_NAME = "signing-key.pem"
REPORT_SECRET_FILE_NAME = "report-secret"  # noqa: S105 - a file name


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The key stored at ``path``, creating it (mode 0600) when the file does not exist.

    Raises:
        ConfigurationError: the file exists but is not an Ed25519 private key in PEM, or cannot be written.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    if not _create_private_file(path, private_key_pem(key), "receipt-signing key"):
        return _read(path)  # another process created it first: use theirs
    return key


def load_or_create_report_secret(path: Path) -> bytes:
    """The local secret site report tokens derive from (:mod:`shared.domain.site_tokens`): 32 random
    bytes, hex in a file of mode 0600 at ``path``, created on first use.

    Raises:
        ConfigurationError: the file exists but holds no such secret, or cannot be written.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    if not _create_private_file(path, secrets.token_hex(32).encode(), "site report secret"):
        return _read_secret(path)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    text = path.read_text().strip()
    if len(text) != 64 or any(ch not in "0123456789abcdef" for ch in text):
        raise ConfigurationError(f"{path} does not hold a site report secret (64 hex characters)")
    return text.encode()


def _create_private_file(path: Path, data: bytes, what: str) -> bool:
    """Write ``data`` to ``path`` (mode 0600) unless the file exists; ``False`` when another process
    created it first. A private temporary file published with a hard link: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        logger.info("created a %s at %s", what, path)
        return True
    except OSError as exc:
        raise ConfigurationError(f"cannot create the {what} file {path}: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _read(path: Path) -> Ed25519PrivateKey:
    data = path.read_bytes()
    try:
        return load_private_key(data)
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not an Ed25519 private key ({exc})") from None
