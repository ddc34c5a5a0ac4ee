"""What a release weighs: the blobs its manifest references (config and layers, compressed sizes).

An image index resolves to its platform manifests; every distinct blob counts once, since a site pulls a
blob shared by two platforms (or two releases) once. Parsing only; the parent registry is read behind
:class:`shared.ports.ReleaseContentReader`. No I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.errors import InvalidInput

INDEX_MEDIA_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
# A release's blobs are kept with it; beyond this many it is not an image a site syncs whole.
MAX_BLOBS = 300
MAX_PLATFORMS = 16


class ContentUnknown(StrEnum):
    """Why a release's weight is not known."""

    MANIFEST_UNREADABLE = "MANIFEST_UNREADABLE"  # the parent registry refused or failed the read
    NOT_AN_IMAGE = "NOT_AN_IMAGE"  # an artifact whose manifest has no config and layers to count
    TOO_LARGE = "TOO_LARGE"  # more blobs or platforms than acrsync keeps
    NOT_READ = "NOT_READ"  # nothing here reads the parent registry (a local run without one)


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class ReleaseContent:
    """The distinct blobs of a release (config and layers of every platform), and its platforms."""

    blobs: tuple[Blob, ...]
    platforms: tuple[str, ...] = ()
    layers: int = 0  # layer blobs among them (configs excluded)
    # The image's OCI annotations under short names (source, revision, created, version).
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return sum(blob.size for blob in self.blobs)

    def needed_by(self, held: Iterable[str]) -> int:
        """Bytes a site still needs when it already holds the blobs ``held`` (by digest)."""
        have = set(held)
        return sum(blob.size for blob in self.blobs if blob.digest not in have)


def blobs_of_manifest(manifest: Mapping[str, Any]) -> tuple[list[Blob], int]:
    """The config and layer blobs of one image manifest, and how many of them are layers.

    Raises:
        InvalidInput: ``NOT_AN_IMAGE`` when it has no config or its descriptors are malformed.
    """
    config = manifest.get("config")
    layers = manifest.get("layers")
    if not isinstance(config, Mapping) or not isinstance(layers, list):
        raise InvalidInput(ContentUnknown.NOT_AN_IMAGE.value, "the manifest has no config and layers")
    descriptors = [config, *layers]
    blobs = [_blob(descriptor) for descriptor in descriptors]
    return blobs, len(layers)


def platform_digests(index: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(platform, manifest digest) of every manifest an index lists; attestations are left out.

    Raises:
        InvalidInput: ``NOT_AN_IMAGE``, ``TOO_LARGE``.
    """
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise InvalidInput(ContentUnknown.NOT_AN_IMAGE.value, "the index lists no manifests")
    found = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("digest"), str):
            raise InvalidInput(ContentUnknown.NOT_AN_IMAGE.value, "an index entry has no digest")
        described = entry.get("platform")
        platform: Mapping[str, Any] = described if isinstance(described, Mapping) else {}
        name = "/".join(str(platform.get(key)) for key in ("os", "architecture", "variant") if platform.get(key))
        if name == "unknown/unknown":
            continue  # a build attestation, not something a site runs
        found.append((name or "unknown", entry["digest"]))
    if len(found) > MAX_PLATFORMS:
        raise InvalidInput(ContentUnknown.TOO_LARGE.value, f"more than {MAX_PLATFORMS} platforms")
    return found


def release_content(manifests: Iterable[tuple[str, Mapping[str, Any]]]) -> ReleaseContent:
    """The distinct blobs of (platform, image manifest) pairs, first seen first.

    Raises:
        InvalidInput: ``NOT_AN_IMAGE``, ``TOO_LARGE``.
    """
    seen: dict[str, Blob] = {}
    layer_digests: set[str] = set()
    platforms = []
    for platform, manifest in manifests:
        blobs, _ = blobs_of_manifest(manifest)
        platforms.append(platform)
        for index, blob in enumerate(blobs):
            seen.setdefault(blob.digest, blob)
            if index > 0:
                layer_digests.add(blob.digest)
        if len(seen) > MAX_BLOBS:
            raise InvalidInput(ContentUnknown.TOO_LARGE.value, f"more than {MAX_BLOBS} blobs")
    return ReleaseContent(tuple(seen.values()), tuple(platforms), len(layer_digests))


def synthetic_content(digest: str, *, base_layers: int = 3, own_layers: int = 2) -> ReleaseContent:
    """Deterministic stand-in layers for a simulated release: a base shared by every release of the
    simulation (so a second release needs only its own layers) and layers of its own, sized from its digest."""
    seed = hashlib.sha256(digest.encode()).digest()
    base = [
        Blob(f"sha256:{hashlib.sha256(f'base-{i}'.encode()).hexdigest()}", 30_000_000 + i * 7_000_000)
        for i in range(base_layers)
    ]
    own = [
        Blob(f"sha256:{hashlib.sha256(seed + bytes([i])).hexdigest()}", 2_000_000 + seed[i] * 400_000)
        for i in range(own_layers)
    ]
    config = Blob(f"sha256:{hashlib.sha256(seed + b'config').hexdigest()}", 1_500 + seed[-1])
    annotations = {"source": "https://github.com/contoso/edge-images", "revision": seed.hex()[:40]}
    return ReleaseContent((config, *base, *own), ("linux/amd64",), base_layers + own_layers, annotations)


def _blob(descriptor: Mapping[str, Any]) -> Blob:
    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(ContentUnknown.NOT_AN_IMAGE.value, "a descriptor has no digest or size")
    return Blob(digest, size)
