from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.model import MAX_SOURCE_EVENT_IDS, Site, TagPolicy
from shared.domain.names import (
    release_id_for,
    validate_digest,
    validate_login_server,
    validate_repository,
    validate_site_name,
    validate_tag,
)
from shared.domain.states import SyncReason, SyncState
from shared.errors import InvalidInput
from tests.builders import REGISTRY, T0, make_release

DIGEST = "sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560"


@pytest.mark.parametrize("name", ["inspection/camera", "a", "retail/pos-api", "x/y.z/a__b", "foo-----bar"])
def test_valid_repositories(name: str) -> None:
    assert validate_repository(name) == name


@pytest.mark.parametrize("name", ["", "Inspection/camera", "a//b", "/a", "a/", "a..b", "a_-b", "ü", "a" * 256, "a b"])
def test_invalid_repositories_are_refused_with_a_code(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_repository(name)
    assert info.value.code == "INVALID_REPOSITORY"


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "sha256:" + "G" * 64,
        "90fe64c3",
        "sha256" + DIGEST[7:],
        "sha512:" + "a" * 64,
        "",
        "sha256:" + "A" * 64,
    ],
)
def test_invalid_digests(digest: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_digest(digest)
    assert info.value.code == "INVALID_DIGEST"


def test_valid_digest_and_other_algorithms() -> None:
    assert validate_digest(DIGEST) == DIGEST
    assert validate_digest("blake3:" + "0f" * 32)


@pytest.mark.parametrize("tag", ["1.4.2", "latest", "v1.0.0-rc.1", "_x", "a" * 128])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a" * 129, "a:b", "a/b"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(InvalidInput):
        validate_tag(tag)


@pytest.mark.parametrize("name", ["Plant-01", "-plant", "plant-", "a" * 64, "plant_01", ""])
def test_invalid_site_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_site_name(name)


def test_login_server_is_lower_cased() -> None:
    assert validate_login_server("ContosoACR.azurecr.io") == "contosoacr.azurecr.io"
    assert validate_login_server("127.0.0.1:5000") == "127.0.0.1:5000"
    with pytest.raises(InvalidInput):
        validate_login_server("https://contosoacr.azurecr.io")


def test_release_id_is_deterministic_url_safe_and_distinct() -> None:
    one = release_id_for(REGISTRY, "inspection/camera", DIGEST)
    assert one == release_id_for(REGISTRY.upper(), "inspection/camera", DIGEST)
    assert one.isalnum() and len(one) == 32
    assert one != release_id_for(REGISTRY, "inspection/camera2", DIGEST)
    assert one != release_id_for("other.azurecr.io", "inspection/camera", DIGEST)
    assert make_release(digest=DIGEST).release_id == one


def test_release_records_events_once_and_merges_tags() -> None:
    release = make_release(event_id="e1").with_event("e2", frozenset({"stable"})).with_event("e2")
    assert release.source_event_ids == ("e1", "e2")
    assert release.tags == {"1.4.2", "stable"}
    assert release.has_seen_event("e1") and not release.has_seen_event("e3")


def test_release_keeps_only_the_newest_event_ids() -> None:
    release = make_release(event_id="first")
    for i in range(MAX_SOURCE_EVENT_IDS + 5):
        release = release.with_event(f"e{i}")
    assert len(release.source_event_ids) == MAX_SOURCE_EVENT_IDS
    assert release.source_event_ids[-1] == f"e{MAX_SOURCE_EVENT_IDS + 4}"


def test_counters_move_and_refuse_to_go_negative() -> None:
    release = make_release().with_count_moved(None, SyncState.PENDING).with_count_moved(None, SyncState.PENDING)
    release = release.with_count_moved(SyncState.PENDING, SyncState.VERIFIED)
    assert release.counts == {SyncState.PENDING: 1, SyncState.VERIFIED: 1}
    with pytest.raises(InvalidInput):
        release.with_count_moved(SyncState.STALE, SyncState.VERIFIED)


@pytest.mark.parametrize(
    ("patterns", "repository", "approved"),
    [
        (("inspection/*",), "inspection/camera", True),
        (("inspection/*",), "inspection/models/yolo", True),
        (("inspection/*",), "inspection", False),
        (("gateway",), "gateway", True),
        (("gateway",), "gateway-ui", False),
        (("retail/pos-*",), "retail/pos-api", True),
        (("retail/pos-*",), "retail/kiosk", False),
        ((), "anything", False),
    ],
)
def test_site_repository_patterns(patterns: tuple[str, ...], repository: str, approved: bool) -> None:
    assert Site(name="plant-01", repositories=patterns).approves_repository(repository) is approved


@pytest.mark.parametrize(
    ("policy", "tags", "reason"),
    [
        (TagPolicy(exclude=("latest",)), {"latest"}, SyncReason.TAG_NOT_ADMITTED),
        (TagPolicy(exclude=("latest",)), {"latest", "1.2.0"}, None),
        (TagPolicy(semver_only=True), {"nightly"}, SyncReason.TAG_NOT_ADMITTED),
        (TagPolicy(semver_only=True), {"v2.0.1"}, None),
        (TagPolicy(semver_only=True), {"2.0.1-rc.1+build.5"}, None),
        (TagPolicy(include=("1.*",)), {"2.0.0"}, SyncReason.TAG_NOT_ADMITTED),
        (TagPolicy(), set(), None),
    ],
)
def test_site_tag_policy(policy: TagPolicy, tags: set[str], reason: SyncReason | None) -> None:
    site = Site(name="store-0001", repositories=("retail/*",), tag_policy=policy)
    assert site.admits("retail/pos-api", frozenset(tags)) is reason


def test_out_of_scope_repository_wins_over_tags() -> None:
    site = Site(name="mine-07", repositories=("haulage/*",))
    assert site.admits("retail/pos-api", frozenset({"1.0.0"})) is SyncReason.REPO_NOT_IN_SCOPE


def test_site_name_is_validated_on_construction() -> None:
    with pytest.raises(InvalidInput):
        Site(name="Plant 01", message_ttl=timedelta(days=2))
    assert T0.tzinfo is not None
