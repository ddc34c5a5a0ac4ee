"""shared/domain/governance.py: pattern containment, scope drift, the notificationsList grammar and
token expiry, as pure functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.governance import (
    Coverage,
    ExpiryState,
    PatternGap,
    TokenRole,
    assess_token,
    compute_drift,
    notification_coverage,
    parse_notification,
    pattern_contains,
    patterns_overlap,
)
from shared.domain.inventory import TokenState, registry_of, validate_registry_id
from shared.domain.observations import TokenPassword
from shared.errors import InvalidInput
from tests.fakes import FIXTURES

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
HORIZON = timedelta(days=30)
APPROVED = ("inspection/camera", "inspection/model-runtime")
VARIANTS = json.loads((FIXTURES / "arm" / "lists" / "notifications-lists.json").read_text())


# -- containment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("inspection/camera", "inspection/camera", True),
        ("inspection/*", "inspection/camera", True),
        ("inspection/*", "inspection/new/nested", True),  # ACR's a/* covers nested repositories
        ("inspection/*", "inspection", False),
        ("*", "anything/at/all", True),
        ("*", "inspection/*", True),
        ("inspection/*", "inspection/edge/*", True),
        ("inspection/edge/*", "inspection/*", False),
        ("inspection/*", "*", False),
        ("inspection/cam*", "inspection/camera/*", True),  # a literal-prefix glob from a sites file
        ("inspection/camera", "inspection/*", False),
        ("inspection/c?mera", "inspection/camera", True),  # a name against a general glob: exact
        ("inspection/c?mera", "inspection/c*", False),  # general globs: never assumed to contain
        ("base/python", "base/node", False),
    ],
)
def test_pattern_containment(outer: str, inner: str, expected: bool) -> None:
    assert pattern_contains(outer, inner) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("inspection/*", "inspection/camera", True),
        ("inspection/camera", "inspection/*", True),
        ("*", "retail/pos", True),
        ("inspection/*", "retail/*", False),
        ("inspection/camera", "inspection/model-runtime", False),
        ("inspection/c?mera", "inspection/c*", True),  # general globs sharing a literal lead may overlap
    ],
)
def test_pattern_overlap(first: str, second: str, expected: bool) -> None:
    assert patterns_overlap(first, second) is expected


# -- scope drift -------------------------------------------------------------------------------


def test_no_drift_when_the_scope_map_grants_exactly_what_is_approved() -> None:
    drift = compute_drift(["inspection/*", "base/python"], ["inspection/*", "base/python"])
    assert not drift.drifted
    assert drift.over_exposed == () and drift.missing == ()


def test_narrower_grants_inside_an_approved_wildcard_are_not_over_exposed() -> None:
    drift = compute_drift(["inspection/*"], ["inspection/camera", "inspection/model-runtime"])
    assert drift.over_exposed == ()
    # ... but the site can never receive a new inspection/ repository: the wildcard is missing.
    assert drift.missing == (PatternGap("inspection/*", ("inspection/camera", "inspection/model-runtime")),)


def test_an_over_broad_scope_map_is_over_exposed() -> None:
    drift = compute_drift(APPROVED, ["*"])
    assert drift.over_exposed == (PatternGap("*", APPROVED),)
    assert drift.missing == ()  # "*" grants everything approved
    assert drift.drifted


def test_drift_both_ways_with_wildcards() -> None:
    drift = compute_drift(["inspection/*", "retail/pos"], ["inspection/camera", "base/*", "retail/*"])
    assert [gap.pattern for gap in drift.over_exposed] == ["base/*", "retail/*"]
    assert drift.over_exposed[1].overlaps == ("retail/pos",)
    assert drift.over_exposed[0].overlaps == ()
    assert [gap.pattern for gap in drift.missing] == ["inspection/*"]
    assert drift.missing[0].overlaps == ("inspection/camera",)


def test_exact_names_missing_and_granted() -> None:
    drift = compute_drift(["inspection/camera", "inspection/lidar"], ["inspection/camera", "inspection/radar"])
    assert drift.missing == (PatternGap("inspection/lidar"),)
    assert drift.over_exposed == (PatternGap("inspection/radar"),)


def test_an_empty_scope_map_misses_everything() -> None:
    drift = compute_drift(["inspection/*"], [])
    assert drift.missing == (PatternGap("inspection/*"),) and drift.over_exposed == ()


def test_repeated_patterns_count_once() -> None:
    drift = compute_drift(["a/b", "a/b"], ["c/*", "c/*"])
    assert len(drift.missing) == 1 and len(drift.over_exposed) == 1


# -- notificationsList -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest", "action"),
    [
        ("*:*", "*", None, None, "*"),
        ("*:*:*", "*", "*", None, "*"),
        ("*@*:*", "*", None, "*", "*"),
        ("path/to/repo:*", "path/to/repo", None, None, "*"),
        ("path/to/repo:myTag:*", "path/to/repo", "myTag", None, "*"),
        ("path/to/repo/*:push", "path/to/repo/*", None, None, "push"),
        ("hello-world:*:*", "hello-world", "*", None, "*"),
        ("sample/repo/*:1.0:*", "sample/repo/*", "1.0", None, "*"),
        ("inspection/camera:DELETE", "inspection/camera", None, None, "delete"),
        (
            "path/to/repo@sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560:delete",
            "path/to/repo",
            None,
            "sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560",
            "delete",
        ),
    ],
)
def test_the_notification_grammar(text: str, repository: str, tag: str | None, digest: str | None, action: str) -> None:
    rule = parse_notification(text)
    assert (rule.repository, rule.tag, rule.digest, rule.action) == (repository, tag, digest, action)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "inspection/camera",  # no action
        ":push",
        "inspection/camera:pull",
        "Inspection/Camera:push",  # repository names are lower case
        "inspection/cam*:push",  # the only wildcards are * and a trailing /*
        "inspection/camera::push",  # an empty tag
        "inspection/camera@:push",
        "inspection/camera@md5:push",
        "inspection/camera:bad tag:push",
    ],
)
def test_malformed_notifications_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_notification(text)
    assert caught.value.code == "INVALID_NOTIFICATION"


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("covers-wildcard", Coverage.FULL),
        ("covers-exact", Coverage.FULL),
        ("everything", Coverage.FULL),
        ("all-tags", Coverage.FULL),
        ("all-digests", Coverage.FULL),
        ("delete-only", Coverage.NONE),
        ("other-repositories", Coverage.NONE),
        ("empty", Coverage.NONE),
    ],
)
def test_coverage_of_the_fixture_variants(variant: str, expected: Coverage) -> None:
    coverage = notification_coverage(VARIANTS[variant], APPROVED)
    assert coverage.invalid == ()
    assert dict(coverage.per_pattern) == dict.fromkeys(APPROVED, expected)


@pytest.mark.parametrize("variant", ["one-tag-only", "one-digest-only"])
def test_a_tag_or_digest_narrows_coverage_to_partial(variant: str) -> None:
    coverage = notification_coverage(VARIANTS[variant], APPROVED)
    assert dict(coverage.per_pattern) == {
        "inspection/camera": Coverage.PARTIAL,
        "inspection/model-runtime": Coverage.FULL,
    }


def test_an_approved_wildcard_covered_by_some_repositories_only_is_partial() -> None:
    coverage = notification_coverage(["inspection/camera:push"], ["inspection/*"])
    assert coverage.patterns(Coverage.PARTIAL) == ["inspection/*"]


def test_malformed_entries_are_reported_and_the_rest_still_count() -> None:
    coverage = notification_coverage([*VARIANTS["malformed"], "inspection/*:push"], APPROVED)
    assert len(coverage.invalid) == 3
    assert all("INVALID_NOTIFICATION" not in message and ":" in message for message in coverage.invalid)
    assert coverage.patterns(Coverage.FULL) == list(APPROVED)


# -- token expiry ------------------------------------------------------------------------------


def token(*expiries: datetime | None, status: str = "enabled") -> TokenState:
    passwords = tuple(TokenPassword(f"password{i + 1}", expiry) for i, expiry in enumerate(expiries))
    return TokenState(token_id="/x/tokens/plant-01", name="plant-01", status=status, passwords=passwords)


def test_a_token_far_from_expiry_is_ok() -> None:
    judged = assess_token(token(NOW + timedelta(days=200)), TokenRole.SYNC, NOW, HORIZON)
    assert (judged.state, judged.days_left, judged.expiring) == (ExpiryState.OK, 200, False)


def test_the_earliest_valid_password_decides() -> None:
    judged = assess_token(
        token(NOW - timedelta(days=3), NOW + timedelta(days=10, hours=5), NOW + timedelta(days=300)),
        TokenRole.CLIENT,
        NOW,
        HORIZON,
    )
    assert judged.state is ExpiryState.EXPIRING and judged.expiring
    assert judged.expires_at == NOW + timedelta(days=10, hours=5) and judged.days_left == 10
    assert judged.role is TokenRole.CLIENT


def test_the_horizon_is_inclusive() -> None:
    assert assess_token(token(NOW + HORIZON), TokenRole.SYNC, NOW, HORIZON).state is ExpiryState.EXPIRING
    assert assess_token(token(NOW + HORIZON + timedelta(seconds=1)), TokenRole.SYNC, NOW, HORIZON).expiring is False


def test_a_token_whose_passwords_all_expired_is_expired_since_the_last_one() -> None:
    judged = assess_token(token(NOW - timedelta(days=40), NOW - timedelta(hours=1)), TokenRole.SYNC, NOW, HORIZON)
    assert judged.state is ExpiryState.EXPIRED and judged.expiring
    assert judged.expires_at == NOW - timedelta(hours=1) and judged.days_left == -1


def test_a_password_without_expiry_keeps_the_token_usable() -> None:
    assert assess_token(token(None, NOW - timedelta(days=1)), TokenRole.SYNC, NOW, HORIZON).state is ExpiryState.OK
    assert assess_token(token(None, None), TokenRole.SYNC, NOW, HORIZON).expires_at is None
    assert assess_token(token(), TokenRole.SYNC, NOW, HORIZON).state is ExpiryState.OK


def test_the_arm_status_is_carried_as_is() -> None:
    assert assess_token(token(status="disabled"), TokenRole.SYNC, NOW, HORIZON).status == "disabled"


# -- ids ---------------------------------------------------------------------------------------

REGISTRY_ID = (
    "/subscriptions/6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43/resourceGroups/rg-contoso-registry"
    "/providers/Microsoft.ContainerRegistry/registries/contosoacr"
)


def test_registry_ids() -> None:
    assert validate_registry_id(REGISTRY_ID + "/") == REGISTRY_ID
    assert registry_of(REGISTRY_ID + "/connectedRegistries/plant-01") == REGISTRY_ID.lower()
    for bad in ("", "contosoacr", REGISTRY_ID + "/connectedRegistries/plant-01", REGISTRY_ID.replace("6d1b", "zz")):
        with pytest.raises(InvalidInput) as caught:
            validate_registry_id(bad)
        assert caught.value.code == "INVALID_REGISTRY_ID"
