"""A site's link: the rate it moves bytes at, and what it still has to move of a release.

Kept apart from the window arithmetic (:mod:`shared.domain.transfers`) so a row can carry its transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RateSource(StrEnum):
    """Where a link rate comes from."""

    DECLARED = "declared"  # the sites file's link.bandwidth
    OBSERVED = "observed"  # learned from the site's past arrivals


@dataclass(frozen=True)
class LinkRate:
    bits_per_second: float
    source: RateSource

    @property
    def bytes_per_second(self) -> float:
        return self.bits_per_second / 8


@dataclass(frozen=True)
class Transfer:
    """What one site still needs of a release, and the rate its link moves it at (kept with the row)."""

    blobs: tuple[int, ...]  # compressed sizes of the blobs the site does not hold yet, in manifest order
    rate: LinkRate | None = None

    @property
    def bytes_needed(self) -> int:
        return sum(self.blobs)
