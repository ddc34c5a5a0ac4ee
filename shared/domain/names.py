"""Validation of the names and references acrsync accepts: OCI repositories, tags, digests, sites.

The rules follow the OCI distribution specification (repository name grammar, digest grammar) and
the connected-registry naming rules for sites. Every check raises :class:`InvalidInput` with a stable
code so HTTP, CLI and queue callers can report the same problem the same way.
"""

from __future__ import annotations

import hashlib
import re

from shared.errors import InvalidInput

# OCI distribution spec: path components separated by "/", each lower-case alphanumerics joined by
# ".", "_", "__" or runs of "-".
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_KNOWN_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_SITE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LOGIN_SERVER = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::[0-9]{1,5})?")
MAX_REPOSITORY_LENGTH = 255
# The longest known digest (sha512) is 135 characters; a longer one is refused before any pattern runs.
MAX_DIGEST_LENGTH = 256


def validate_repository(name: str) -> str:
    """Return ``name`` if it is a valid OCI repository name, else raise ``InvalidInput(INVALID_REPOSITORY)``."""
    if not isinstance(name, str) or len(name) > MAX_REPOSITORY_LENGTH or not _REPOSITORY.fullmatch(name):
        raise InvalidInput("INVALID_REPOSITORY", f"{_shown(name)} is not a valid OCI repository name")
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid OCI tag, else raise ``InvalidInput(INVALID_TAG)``."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise InvalidInput("INVALID_TAG", f"{_shown(tag)} is not a valid OCI tag")
    return tag


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``algorithm:encoded`` (hex of the right length for sha256/384/512).

    Raises:
        InvalidInput: ``INVALID_DIGEST`` naming what is wrong.
    """
    if isinstance(digest, str) and len(digest) > MAX_DIGEST_LENGTH:
        raise InvalidInput("INVALID_DIGEST", f"a digest of {len(digest)} characters; the limit is {MAX_DIGEST_LENGTH}")
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise InvalidInput("INVALID_DIGEST", f"{_shown(digest)} is not a digest of the form algorithm:hex")
    algorithm, encoded = match.groups()
    expected = _KNOWN_DIGEST_LENGTHS.get(algorithm)
    if expected is not None and (len(encoded) != expected or not re.fullmatch(r"[a-f0-9]+", encoded)):
        raise InvalidInput("INVALID_DIGEST", f"a {algorithm} digest needs {expected} lower-case hex characters")
    return digest


def validate_site_name(name: str) -> str:
    """Return ``name`` if it is a site slug (lower-case letters, digits, inner hyphens, 1–63 chars)."""
    if not isinstance(name, str) or not _SITE.fullmatch(name):
        raise InvalidInput("INVALID_SITE_NAME", f"{_shown(name)} is not a site name (a-z, 0-9, inner '-', ≤ 63)")
    return name


def validate_login_server(host: str) -> str:
    """Return the lower-cased registry login server (host[:port]) or raise ``InvalidInput(INVALID_REGISTRY)``."""
    lowered = host.lower() if isinstance(host, str) else host
    if not isinstance(lowered, str) or not _LOGIN_SERVER.fullmatch(lowered):
        raise InvalidInput("INVALID_REGISTRY", f"{_shown(host)} is not a registry login server")
    return lowered


def release_id_for(registry: str, repository: str, digest: str) -> str:
    """The deterministic, URL- and Table-key-safe id of the release (registry, repository, digest).

    128 bits of SHA-256 in hex: stable across processes and backends, so redelivered events and
    re-pushes of the same digest always land on the same release.
    """
    material = f"{registry.lower()}\n{repository}\n{digest}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
