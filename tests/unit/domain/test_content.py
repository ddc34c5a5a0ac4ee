"""What a release weighs, from its manifests: distinct blobs, platforms, and what is no image."""

from __future__ import annotations

import pytest

from shared.domain.content import Blob, platform_digests, release_content, synthetic_content
from shared.errors import InvalidInput

D = "sha256:" + "a" * 64


def manifest(*layers: tuple[str, int], config: tuple[str, int] = ("sha256:" + "c" * 64, 1_200)) -> dict[str, object]:
    return {
        "config": {"digest": config[0], "size": config[1]},
        "layers": [{"digest": digest, "size": size} for digest, size in layers],
    }


def test_blobs_shared_between_platforms_count_once() -> None:
    base = ("sha256:" + "b" * 64, 30_000_000)
    content = release_content(
        [
            ("linux/amd64", manifest(base, ("sha256:" + "1" * 64, 2_000))),
            ("linux/arm64", manifest(base, ("sha256:" + "2" * 64, 3_000))),
        ]
    )
    assert content.size_bytes == 1_200 + 30_000_000 + 2_000 + 3_000  # one config, digest-shared with both
    assert (content.layers, content.platforms) == (3, ("linux/amd64", "linux/arm64"))
    assert content.needed_by([base[0]]) == 1_200 + 5_000


@pytest.mark.parametrize(
    "bad",
    [
        {"layers": []},
        {"config": {"digest": D, "size": 1}},
        manifest((D, -1)),
        manifest((D, True)),
        {"config": "x", "layers": []},
    ],  # type: ignore[arg-type]
)
def test_a_manifest_that_is_no_image_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as refused:
        release_content([("", bad)])
    assert refused.value.code == "NOT_AN_IMAGE"


def test_an_index_lists_platforms_without_attestations_and_is_bounded() -> None:
    index = {
        "manifests": [
            {"digest": D, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"digest": "sha256:" + "e" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
        ]
    }
    assert platform_digests(index) == [("linux/arm/v7", D)]
    with pytest.raises(InvalidInput) as refused:
        platform_digests(
            {"manifests": [{"digest": D, "platform": {"os": "linux", "architecture": str(i)}} for i in range(17)]}
        )
    assert refused.value.code == "TOO_LARGE"


def test_simulated_releases_share_a_base_and_weigh_the_same_every_time() -> None:
    one, two = synthetic_content("sha256:" + "1" * 64), synthetic_content("sha256:" + "2" * 64)
    assert one == synthetic_content("sha256:" + "1" * 64)
    shared = set(one.blobs) & set(two.blobs)
    assert len(shared) == 3 and all(isinstance(blob, Blob) for blob in shared)
    assert two.needed_by(blob.digest for blob in one.blobs) == two.size_bytes - sum(blob.size for blob in shared)
