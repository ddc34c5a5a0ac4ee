"""What a release weighs, read from the parent registry with ``azure-containerregistry``.

:class:`ParentRegistryContentReader` implements :class:`~shared.ports.ReleaseContentReader`: one
``get_manifest`` by digest, and one more per platform when that is an image index. In Azure the client
signs in with the app's identity (the ``AcrPull`` role on the registry reads manifests, nothing more);
against a loopback registry the tests pass no credential. Errors leave as :class:`UpstreamUnavailable`
(retry later) or :class:`UpstreamRejected` (refused or not there); a manifest that is no image as
``InvalidInput`` from :mod:`shared.domain.content`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from azure.containerregistry import ContainerRegistryClient
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.domain.annotations import image_annotations
from shared.domain.content import INDEX_MEDIA_TYPES, ReleaseContent, platform_digests, release_content
from shared.errors import UpstreamRejected, UpstreamUnavailable

logger = logging.getLogger(__name__)
AUDIENCE = "https://containerregistry.azure.net"
TIMEOUT_SECONDS = 20
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


class ParentRegistryContentReader:
    def __init__(self, endpoint: str, credential: Any = None, **client_options: Any) -> None:
        """``endpoint``: ``https://<login server>``; ``client_options`` go to the SDK client
        (``connection_verify`` for a test registry's certificate)."""
        self._client = ContainerRegistryClient(
            endpoint, credential, audience=AUDIENCE, connection_timeout=TIMEOUT_SECONDS, **client_options
        )

    def close(self) -> None:
        self._client.close()

    def read_content(self, repository: str, digest: str) -> ReleaseContent:
        top = self._manifest(repository, digest)
        if top[0] in INDEX_MEDIA_TYPES:
            manifests = [
                (platform, self._manifest(repository, child)[1]) for platform, child in platform_digests(top[1])
            ]
        else:
            manifests = [("", top[1])]
        # The image's own annotations: its manifest's, and an index's over them.
        content = replace(release_content(manifests), annotations=image_annotations(manifests[0][1], top[1]))
        logger.debug("release %s@%s: %s blobs, %s bytes", repository, digest, len(content.blobs), content.size_bytes)
        return content

    def _manifest(self, repository: str, reference: str) -> tuple[str, Mapping[str, Any]]:
        with _translated(f"read manifest {repository}@{reference[:19]}"):
            found = self._client.get_manifest(repository, reference)
        manifest = found.manifest
        if not isinstance(manifest, Mapping):
            raise UpstreamRejected(f"read manifest {repository}@{reference[:19]}: the answer is not a JSON manifest")
        return str(found.media_type), manifest


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise UpstreamUnavailable(f"{operation}: the parent registry cannot be reached ({type(exc).__name__})") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status in _RETRYABLE:
            raise UpstreamUnavailable(f"{operation}: the parent registry answered {status}") from exc
        raise UpstreamRejected(f"{operation}: the parent registry answered {status}") from exc
