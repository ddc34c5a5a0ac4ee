"""Copying one manifest and everything it references between two OCI registries (distribution API, ``httpx``).

:class:`RegistryMirror` copies what a connected registry's sync copies: one manifest from a source
registry to a destination, by digest, with its tags. An image manifest (OCI or Docker schema 2) brings
its config and layer blobs; an image index (OCI) or manifest list (Docker) brings every child manifest
first, each with its blobs. Order keeps the destination consistent at every step, as registries
require: blobs before the manifest that references them, children before their index, the manifest
by digest before its tags.

* Blobs: ``HEAD`` at the destination skips what is already there; otherwise the blob is streamed from
  the source (spooled to memory, or to a temp file when large), its digest and size checked, and
  uploaded monolithically (``POST`` opens the upload, one ``PUT ?digest=`` closes it). Non-distributable
  (foreign) layers, which live at the URLs their descriptor names, are not copied, as registries do.
* Manifests: fetched with the four manifest media types in ``Accept``, checked against their digest,
  and ``PUT`` byte for byte (so the digest never changes) with their own media type: children by
  digest, the copied manifest by each of its tags (by digest when it has none). A manifest the
  destination already holds by digest is not walked again (a registry accepts a manifest only once
  what it references is present), and only its missing tags are written. Each reference is written
  once: a registry re-links a manifest on every ``PUT``, and the distribution registry's filesystem
  storage does that in place, so a by-digest read racing with a second ``PUT`` of the same manifest
  can briefly answer 404 — which a site check would take for "absent".

It also lists what a registry holds (``/v2/_catalog``, ``/v2/<repo>/tags/list``, following ``Link``
pages) and resolves tags to digests, which is what a sync pass needs to find what is missing.

Errors: unreachable, throttled or failing registries raise :class:`UpstreamUnavailable` (retry later);
anything else unexpected (a refused upload, a digest mismatch, an unsupported manifest type) raises
:class:`UpstreamRejected`. Registries are addressed without credentials (the local dev registries
are open).
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Self

import httpx

from shared.adapters.oci import ACCEPT, MANIFEST_MEDIA_TYPES, normalize_endpoint
from shared.domain.names import validate_digest, validate_repository, validate_tag
from shared.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Layers that registries do not store: the descriptor's ``urls`` say where they live.
NON_DISTRIBUTABLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
USER_AGENT = "acrsync-mirror/1"
# Manifests are small; registries commonly refuse more than 4 MiB.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Blobs up to this size are spooled in memory on their way from source to destination.
SPOOL_IN_MEMORY_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
PAGE_SIZE = 1000
MAX_PAGES = 10_000
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class CopyReport:
    """What one :meth:`RegistryMirror.copy` did."""

    repository: str
    digest: str
    media_type: str
    tags: tuple[str, ...]
    manifests_copied: int
    manifests_present: int
    blobs_copied: int
    blobs_present: int
    bytes_copied: int


@dataclass
class _Progress:
    manifests_copied: int = 0
    manifests_present: int = 0
    blobs_copied: int = 0
    blobs_present: int = 0
    bytes_copied: int = 0
    blobs_seen: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Manifest:
    body: bytes
    media_type: str
    digest: str


class RegistryMirror:
    """Copies manifests with their blobs between registries; one ``httpx.Client``, safe to share across threads.

    Args:
        timeout: seconds for each connect, read, write and pool wait.
        transport: an ``httpx`` transport, for tests.
        verify: what to trust on https (the site registries' own certificate in real-registry mode).
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        verify: bool | ssl.SSLContext = True,
    ) -> None:
        self._client = httpx.Client(
            timeout=timeout,
            transport=transport,
            verify=verify,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,  # blob GETs may redirect to the storage backend
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- copying -------------------------------------------------------------------------------

    def copy(
        self, source: str, destination: str, repository: str, reference: str, *, tags: Iterable[str] = ()
    ) -> CopyReport:
        """Copy the manifest ``reference`` (a digest or a tag) of ``repository`` and all it references,
        and point ``tags`` at it in the destination (without tags it is stored by digest).

        Raises:
            UpstreamUnavailable: a registry is unreachable, throttled or failing.
            UpstreamRejected: a request was refused, content did not match its digest, or a manifest
                has a media type other than the four OCI and Docker image types.
        """
        src, dst = normalize_endpoint(source), normalize_endpoint(destination)
        repository = _checked(validate_repository, repository)
        wanted_tags = tuple(dict.fromkeys(_checked(validate_tag, tag) for tag in tags))
        progress = _Progress()
        manifest = self._copy_manifest(src, dst, repository, _reference(reference), progress, tags=wanted_tags)
        log.debug(
            "copied %s@%s (%s manifests, %s blobs, %s bytes)",
            repository,
            manifest.digest,
            progress.manifests_copied,
            progress.blobs_copied,
            progress.bytes_copied,
        )
        return CopyReport(
            repository=repository,
            digest=manifest.digest,
            media_type=manifest.media_type,
            tags=wanted_tags,
            manifests_copied=progress.manifests_copied,
            manifests_present=progress.manifests_present,
            blobs_copied=progress.blobs_copied,
            blobs_present=progress.blobs_present,
            bytes_copied=progress.bytes_copied,
        )

    def _copy_manifest(
        self, src: str, dst: str, repository: str, reference: str, progress: _Progress, *, tags: tuple[str, ...] = ()
    ) -> _Manifest:
        manifest = self._get_manifest(src, repository, reference)
        if self.resolve(dst, repository, manifest.digest) == manifest.digest:
            progress.manifests_present += 1
            for tag in tags:
                if self.resolve(dst, repository, tag) != manifest.digest:
                    self._put_manifest(dst, repository, tag, manifest)
            return manifest
        document = _json_object(manifest.body, f"manifest {repository}@{manifest.digest}")
        if manifest.media_type in INDEX_MEDIA_TYPES:
            for child in _descriptors(document, "manifests", manifest.digest):
                child_type = child.get("mediaType")
                if child_type not in MANIFEST_MEDIA_TYPES:
                    raise UpstreamRejected(
                        f"index {repository}@{manifest.digest} references a {child_type!r} manifest; "
                        "only OCI and Docker image manifests and indexes can be copied"
                    )
                self._copy_manifest(src, dst, repository, _descriptor_digest(child), progress)
        else:
            config = document.get("config")
            if not isinstance(config, dict):
                raise UpstreamRejected(f"manifest {repository}@{manifest.digest} has no config descriptor")
            for blob in [config, *_descriptors(document, "layers", manifest.digest)]:
                if blob.get("mediaType") in NON_DISTRIBUTABLE_MEDIA_TYPES and blob.get("urls"):
                    continue
                self._copy_blob(src, dst, repository, blob, progress)
        for target in tags or (manifest.digest,):
            self._put_manifest(dst, repository, target, manifest)
        progress.manifests_copied += 1
        return manifest

    def _get_manifest(self, base: str, repository: str, reference: str) -> _Manifest:
        url = f"{base}/v2/{repository}/manifests/{reference}"
        operation = f"GET {url}"
        with _translated(operation):
            response = self._client.get(url, headers={"Accept": ACCEPT})
        if response.status_code != 200:
            raise _status_error(operation, response)
        body = response.content
        if len(body) > MAX_MANIFEST_BYTES:
            raise UpstreamRejected(f"{operation}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        declared = (response.headers.get("content-type") or "").split(";", 1)[0].strip()
        media_type = declared if declared in MANIFEST_MEDIA_TYPES else None
        if media_type is None:
            # Some registries answer application/json; the manifest then names its own type.
            named = _json_object(body, operation).get("mediaType")
            media_type = named if isinstance(named, str) else None
        if media_type not in MANIFEST_MEDIA_TYPES:
            raise UpstreamRejected(
                f"{operation}: {media_type or declared or 'untyped'!r} is not an OCI or Docker image manifest or index"
            )
        algorithm = reference.split(":", 1)[0] if ":" in reference else "sha256"
        digest = _digest_of(body, algorithm)
        if ":" in reference and digest != reference:
            raise UpstreamRejected(f"{operation}: the content's digest is {digest}")
        reported = (response.headers.get("docker-content-digest") or "").strip()
        if reported.split(":", 1)[0] == algorithm and reported != digest:
            raise UpstreamRejected(f"{operation}: Docker-Content-Digest {reported!r} does not match the content")
        return _Manifest(body=body, media_type=media_type, digest=digest)

    def _put_manifest(self, base: str, repository: str, reference: str, manifest: _Manifest) -> None:
        url = f"{base}/v2/{repository}/manifests/{reference}"
        operation = f"PUT {url}"
        with _translated(operation):
            response = self._client.put(url, content=manifest.body, headers={"Content-Type": manifest.media_type})
        if response.status_code not in (200, 201):
            raise _status_error(operation, response)
        stored = response.headers.get("docker-content-digest")
        if stored is not None and stored.strip() != manifest.digest:
            raise UpstreamRejected(f"{operation}: the registry stored the manifest as {stored.strip()!r}")

    def _copy_blob(self, src: str, dst: str, repository: str, descriptor: dict[str, Any], progress: _Progress) -> None:
        digest = _descriptor_digest(descriptor)
        if digest in progress.blobs_seen:
            return
        if self._blob_present(dst, repository, digest):
            progress.blobs_present += 1
            progress.blobs_seen.add(digest)
            return
        size = descriptor.get("size")
        expected_size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
            length = self._download_blob(src, repository, digest, expected_size, spool)
            spool.seek(0)
            self._upload_blob(dst, repository, digest, length, spool)
        progress.blobs_copied += 1
        progress.bytes_copied += length
        progress.blobs_seen.add(digest)

    def _blob_present(self, base: str, repository: str, digest: str) -> bool:
        url = f"{base}/v2/{repository}/blobs/{digest}"
        operation = f"HEAD {url}"
        with _translated(operation):
            response = self._client.head(url)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise _status_error(operation, response)

    def _download_blob(
        self, base: str, repository: str, digest: str, expected_size: int | None, sink: IO[bytes]
    ) -> int:
        url = f"{base}/v2/{repository}/blobs/{digest}"
        operation = f"GET {url}"
        hasher = _HASHES.get(digest.split(":", 1)[0], hashlib.sha256)()
        length = 0
        with _translated(operation), self._client.stream("GET", url) as response:
            if response.status_code != 200:
                response.read()
                raise _status_error(operation, response)
            for chunk in response.iter_bytes(CHUNK_BYTES):
                hasher.update(chunk)
                sink.write(chunk)
                length += len(chunk)
                if expected_size is not None and length > expected_size:
                    raise UpstreamRejected(f"{operation}: the blob is larger than the {expected_size} bytes declared")
        if f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}" != digest:
            raise UpstreamRejected(f"{operation}: the content does not match its digest")
        if expected_size is not None and length != expected_size:
            raise UpstreamRejected(f"{operation}: {length} bytes where the descriptor says {expected_size}")
        return length

    def _upload_blob(self, base: str, repository: str, digest: str, length: int, source: IO[bytes]) -> None:
        """Monolithic upload: ``POST`` opens the session, one ``PUT ?digest=`` sends the bytes and closes it."""
        start_url = f"{base}/v2/{repository}/blobs/uploads/"
        operation = f"POST {start_url}"
        with _translated(operation):
            opened = self._client.post(start_url, headers={"Content-Length": "0"})
        if opened.status_code != 202 or not opened.headers.get("location"):
            raise _status_error(operation, opened)
        location = httpx.URL(base).join(opened.headers["location"])  # may be relative
        if location.host != httpx.URL(base).host or location.port != httpx.URL(base).port:
            raise UpstreamRejected(f"{operation}: the registry sent the upload to another host {location.host!r}")
        target = location.copy_merge_params({"digest": digest})
        operation = f"PUT {base}/v2/{repository}/blobs/uploads/<session>"
        with _translated(operation):
            done = self._client.put(
                target,
                content=_chunks(source),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
            )
        if done.status_code != 201:
            raise _status_error(operation, done)

    # -- reading what a registry holds ---------------------------------------------------------

    def resolve(self, registry: str, repository: str, reference: str) -> str | None:
        """The digest a tag (or digest) names in ``repository``, or ``None`` when the registry has no such manifest.

        Raises:
            UpstreamUnavailable, UpstreamRejected: as :meth:`copy`.
        """
        base = normalize_endpoint(registry)
        repository = _checked(validate_repository, repository)
        url = f"{base}/v2/{repository}/manifests/{_reference(reference)}"
        operation = f"HEAD {url}"
        with _translated(operation):
            response = self._client.head(url, headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _status_error(operation, response)
        reported = response.headers.get("docker-content-digest")
        if reported is None:
            raise UpstreamRejected(f"{operation}: answered without Docker-Content-Digest")
        return _checked(validate_digest, reported.strip())

    def repositories(self, registry: str) -> list[str]:
        """Every repository in the registry's catalog (all pages)."""
        base = normalize_endpoint(registry)
        return self._paged(base, f"{base}/v2/_catalog?n={PAGE_SIZE}", "repositories", missing_ok=False)

    def tags(self, registry: str, repository: str) -> list[str]:
        """Every tag of ``repository`` (all pages); none when the repository does not exist."""
        base = normalize_endpoint(registry)
        repository = _checked(validate_repository, repository)
        return self._paged(base, f"{base}/v2/{repository}/tags/list?n={PAGE_SIZE}", "tags", missing_ok=True)

    def _paged(self, base: str, first: str, key: str, *, missing_ok: bool) -> list[str]:
        values: list[str] = []
        url: str | None = first
        for _ in range(MAX_PAGES):
            if url is None:
                return values
            operation = f"GET {url}"
            with _translated(operation):
                response = self._client.get(url, headers={"Accept": "application/json"})
            if response.status_code == 404 and missing_ok:
                return values
            if response.status_code != 200:
                raise _status_error(operation, response)
            page = _json_object(response.content, operation).get(key) or []
            if not isinstance(page, list) or not all(isinstance(value, str) for value in page):
                raise UpstreamRejected(f"{operation}: {key!r} is not a list of names")
            values.extend(page)
            following = response.links.get("next", {}).get("url")
            url = str(httpx.URL(base).join(following)) if following else None
        raise UpstreamRejected(f"GET {first}: more than {MAX_PAGES} pages")


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    while chunk := source.read(CHUNK_BYTES):
        yield chunk


def _digest_of(body: bytes, algorithm: str) -> str:
    factory = _HASHES.get(algorithm)
    if factory is None:
        raise UpstreamRejected(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{factory(body).hexdigest()}"


def _reference(reference: str) -> str:
    """A tag or a digest, checked before it goes into a URL path."""
    if ":" in reference:
        return _checked(validate_digest, reference)
    return _checked(validate_tag, reference)


def _checked(validate: Any, value: str) -> str:
    try:
        checked: str = validate(value)
    except InvalidInput as exc:
        raise UpstreamRejected(exc.detail) from exc
    return checked


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UpstreamRejected(f"{what}: not JSON") from exc
    if not isinstance(document, dict):
        raise UpstreamRejected(f"{what}: not a JSON object")
    return document


def _descriptors(document: dict[str, Any], key: str, digest: str) -> list[dict[str, Any]]:
    items = document.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UpstreamRejected(f"manifest {digest}: {key!r} is not a list of descriptors")
    return items


def _descriptor_digest(descriptor: dict[str, Any]) -> str:
    digest = descriptor.get("digest")
    if not isinstance(digest, str):
        raise UpstreamRejected("a descriptor has no digest")
    return _checked(validate_digest, digest)


def _status_error(operation: str, response: httpx.Response) -> UpstreamUnavailable | UpstreamRejected:
    status = response.status_code
    if status in (408, 429) or status >= 500:
        return UpstreamUnavailable(f"{operation}: answered {status}")
    return UpstreamRejected(f"{operation}: answered {status}")


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Turn ``httpx`` exceptions raised inside into the acrsync tree; messages name the operation."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamUnavailable(f"{operation}: timed out ({type(exc).__name__})") from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
        raise UpstreamRejected(f"{operation}: refused by the client ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"{operation}: {type(exc).__name__}: {str(exc)[:200]}") from exc
