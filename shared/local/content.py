"""What a release weighs, where no Azure registry answers: deterministic stand-in layers for simulated
sites, and an honest "not read" for the real-registries mode (its parent serves plain HTTP, which the
Azure SDK's client refuses to send credentials over)."""

from __future__ import annotations

from shared.domain.content import ReleaseContent, synthetic_content
from shared.errors import UpstreamRejected


class SyntheticContentReader:
    """Simulated releases weigh what :func:`shared.domain.content.synthetic_content` says: a base shared
    by every release and layers of its own."""

    def read_content(self, repository: str, digest: str) -> ReleaseContent:
        return synthetic_content(digest)


class UnreadContentReader:
    def read_content(self, repository: str, digest: str) -> ReleaseContent:
        raise UpstreamRejected("release sizes are not read from the local parent registry (plain HTTP)")
