"""The local receipt-signing key: one Ed25519 key in a PEM file (mode 0600) under the data dir.

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
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(private_key_pem(key))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read(path)  # another process created it first: use theirs
        logger.info("created a receipt-signing key at %s", path)
        return key
    except OSError as exc:
        raise ConfigurationError(f"cannot create the receipt-signing key file {path}: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _read(path: Path) -> Ed25519PrivateKey:
    data = path.read_bytes()
    try:
        return load_private_key(data)
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not an Ed25519 private key ({exc})") from None
