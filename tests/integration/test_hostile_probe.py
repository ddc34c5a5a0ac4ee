"""HttpManifestProbe against hostile site registries (loopback servers from tests/support/hostile_registry.py):
answers dripped a byte at a time, more probes than an endpoint should carry, token realms on
another origin, and a dozen malformed answers. The probe may only raise UpstreamUnavailable
(retry later) or UpstreamRejected (refused, with a short, printable reason) — never anything else,
never hang past its deadline, never hand the site's credentials to another origin."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from dataclasses import replace

import pytest

from shared.adapters.oci import HttpManifestProbe, credentials_withheld
from shared.domain.observations import BasicCredentials, ProbeOutcome
from shared.errors import UpstreamRejected, UpstreamUnavailable
from tests.builders import T0
from tests.fakes import FakeClock
from tests.support.hostile_registry import (
    ANSWERED,
    HUNG_UP,
    IN_FLIGHT,
    Answer,
    BearerScript,
    HostileServer,
    Seen,
    hostile_server,
    token_answer,
)

pytestmark = pytest.mark.timeout(60)

REPO = "edge/app"
DIGEST = "sha256:" + "a" * 64
PASSWORD = "pw-H0stile-never-shown"
GOOD = BasicCredentials("site-token", PASSWORD)
BASIC = "Basic " + base64.b64encode(f"site-token:{PASSWORD}".encode()).decode()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
JSON = ("Content-Type", "application/json")
# What a refusal may quote: enough to say what was wrong, never the registry's whole answer.
MAX_MESSAGE = 400


def present(digest: str = DIGEST) -> Answer:
    return Answer(200, [("Docker-Content-Digest", digest), ("Content-Type", OCI_MANIFEST)])


def finished(server: HostileServer, number: int) -> bool:
    return server.wait_for(lambda s: len(s.seen()) >= number and s.seen()[number - 1].outcome != IN_FLIGHT)


def assert_readable(message: str) -> None:
    assert len(message) <= MAX_MESSAGE, f"{len(message)} characters: {message[:200]}..."
    assert message.isascii() and message.isprintable(), message
    assert PASSWORD not in message and BASIC not in message


# -- a total deadline per probe ------------------------------------------------------------------


def test_a_registry_dripping_its_answer_is_given_up_at_the_probe_deadline() -> None:
    # One byte every few milliseconds: no single read comes near the 2 s timeout.
    drip = replace(present(), drip_seconds=10.0)
    with hostile_server(lambda seen: drip) as server, HttpManifestProbe(timeout=2.0, deadline=0.5) as probe:
        with pytest.raises(UpstreamUnavailable, match="deadline") as caught:
            probe.probe(server.url, REPO, DIGEST)
        assert finished(server, 1)
        [request] = server.seen()
    assert request.outcome == HUNG_UP  # the answer was still dripping when the probe hung up
    assert_readable(str(caught.value))


def test_the_deadline_covers_the_challenge_the_token_and_the_retry_together() -> None:
    script = BearerScript(DIGEST)

    def slowly(seen: Seen) -> Answer:
        return replace(script(seen), drip_seconds=0.6)  # each answer alone is well within the deadline

    with hostile_server(slowly) as server, HttpManifestProbe(timeout=2.0, deadline=1.0) as probe:
        script.realm = f"{server.url}/token"
        with pytest.raises(UpstreamUnavailable, match="deadline"):
            probe.probe(server.url, REPO, DIGEST)
        assert finished(server, 2)
        requests = server.seen()
    assert [(r.method, r.outcome) for r in requests] == [("HEAD", ANSWERED), ("GET", HUNG_UP)]


def test_at_most_two_probes_of_one_endpoint_are_in_flight() -> None:
    release = threading.Event()
    held = replace(present(), hold=release)
    results: list[ProbeOutcome] = []
    errors: list[BaseException] = []
    with hostile_server(lambda seen: held) as server, HttpManifestProbe(timeout=5.0) as probe:

        def run() -> None:
            try:
                results.append(probe.probe(server.url, REPO, DIGEST).outcome)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for thread in threads:
            thread.start()
        assert server.wait_for(lambda s: len(s.seen()) >= 2)
        # Give a third request every chance to arrive while two are held (it must not).
        server.wait_for(lambda s: len(s.seen()) >= 3, limit=1.0)
        release.set()
        for thread in threads:
            thread.join()
        most = server.most_in_flight()
    assert errors == []
    assert results == [ProbeOutcome.PRESENT] * 3
    assert most == 2


# -- credentials go to the site's own origin only ------------------------------------------------


def test_site_credentials_never_reach_a_token_realm_on_another_origin() -> None:
    with hostile_server(lambda seen: token_answer()) as elsewhere:
        script = BearerScript(DIGEST, realm=f"{elsewhere.url}/token")
        with hostile_server(script) as site, HttpManifestProbe(timeout=2.0) as probe:
            seen = probe.probe(site.url, REPO, DIGEST, credentials=GOOD)
            at_site = site.authorizations()
        at_elsewhere = elsewhere.authorizations()
    assert seen.outcome is ProbeOutcome.PRESENT
    assert at_elsewhere == [None]  # the token was asked for anonymously
    assert at_site == [None, "Bearer hostile-token"]


def test_a_realm_on_another_origin_that_wants_credentials_is_refused_without_getting_them() -> None:
    denied = Answer(401, [JSON], b'{"details":"who are you"}')
    with hostile_server(lambda seen: denied) as elsewhere:
        script = BearerScript(DIGEST, realm=f"{elsewhere.url}/token")
        with hostile_server(script) as site, HttpManifestProbe(timeout=2.0) as probe:
            with pytest.raises(UpstreamRejected, match="withheld") as caught:
                probe.probe(site.url, REPO, DIGEST, credentials=GOOD)
        at_elsewhere = elsewhere.authorizations()
    assert at_elsewhere == [None]
    assert_readable(str(caught.value))


def test_a_token_realm_redirecting_to_another_origin_sends_nothing_there() -> None:
    with hostile_server(lambda seen: token_answer()) as elsewhere:
        moved = Answer(307, [("Location", f"{elsewhere.url}/token")])
        script = BearerScript(DIGEST, token=lambda seen: moved)
        with hostile_server(script) as site, HttpManifestProbe(timeout=2.0) as probe:
            script.realm = f"{site.url}/token"
            with pytest.raises(UpstreamRejected, match="307"):
                probe.probe(site.url, REPO, DIGEST, credentials=GOOD)
            at_site = site.authorizations()
        assert elsewhere.seen() == []
    assert at_site == [None, BASIC]  # the same-origin realm did get them: that is what it is for


@pytest.mark.parametrize(
    ("target", "endpoint", "withheld"),
    [
        ("http://127.0.0.1:5000/token", "http://127.0.0.1:5000", None),
        ("http://localhost:5000/token", "http://localhost:5000", None),
        ("http://[::1]:5000/token", "http://[::1]:5000", None),
        ("https://site.example/oauth2/token", "https://site.example:443", None),
        ("https://site.example/v2/a/manifests/x", "https://site.example/prefix", None),
        ("http://site.example/token", "http://site.example", "plain http"),
        ("https://auth.example/token", "https://site.example", "another origin"),
        ("https://site.example:8443/token", "https://site.example", "another origin"),
        ("http://127.0.0.1:5001/token", "http://127.0.0.1:5000", "another origin"),
        ("http://localhost:5000/token", "http://127.0.0.1:5000", "another origin"),
    ],
)
def test_credentials_go_only_to_the_endpoints_origin_and_over_http_only_to_loopback(
    target: str, endpoint: str, withheld: str | None
) -> None:
    reason = credentials_withheld(target, endpoint)
    assert (reason is None) == (withheld is None)
    if withheld is not None:
        assert reason is not None and withheld in reason


# -- hostile answers become refusals with a short reason ----------------------------------------


def _gzip_bomb() -> Answer:
    # 20 MB of JSON whitespace in ~20 KB: decoded, it would be read into memory whole.
    body = gzip.compress(json.dumps({"token": "t"}).encode() + b" " * 20_000_000)
    return Answer(200, [JSON, ("Content-Encoding", "gzip")], body)


HOSTILE_TOKEN_ANSWERS = [
    pytest.param(
        Answer(200, [JSON], b'{"token":"' + b"a" * 70_000 + b'"}'), "larger than 64 KiB", id="token-answer-over-64KiB"
    ),
    pytest.param(
        Answer(200, [JSON], chunks=lambda: (b" " * 65_536 for _ in range(10_000))),
        "larger than 64 KiB",
        id="endless-chunked-token-answer",
    ),
    # A declared length over the cap is refused before a byte of the body is read. (An absurd one, 10**30,
    # never gets this far: the HTTP parser refuses it as a protocol error, which reads as "unreachable".)
    pytest.param(Answer(200, [JSON], b"{}", length=70_000), "larger than 64 KiB", id="declared-length-over-cap"),
    pytest.param(_gzip_bomb(), "encoded", id="gzip-bomb"),
    pytest.param(Answer(200, [("Content-Type", "text/html")], b"<html>sign in</html>"), "not JSON", id="html"),
    pytest.param(Answer(200, [JSON], bytes(range(256)) * 4), "not UTF-8", id="binary"),
    pytest.param(Answer(200, [JSON], b"[" * 60_000), "nested too deeply", id="deeply-nested-json"),
    pytest.param(token_answer(token="t\u00f6ken"), "no usable token", id="non-ascii-token"),
    pytest.param(token_answer({"token": "t" * 10, "expires_in": "soon"}), "expires_in", id="expires-in-text"),
    pytest.param(token_answer({"token": "t", "expires_in": -5}), "expires_in", id="expires-in-negative"),
    pytest.param(Answer(200, [JSON], b'{"token":"t","expires_in":1e999}'), "expires_in", id="expires-in-infinite"),
    pytest.param(Answer(200, [JSON], b'{"token":"t","expires_in":NaN}'), "expires_in", id="expires-in-nan"),
]


@pytest.mark.parametrize(("answer", "reason"), HOSTILE_TOKEN_ANSWERS)
def test_a_hostile_token_answer_is_refused_with_a_short_reason(answer: Answer, reason: str) -> None:
    script = BearerScript(DIGEST, token=lambda seen: answer)
    with hostile_server(script) as site, HttpManifestProbe(timeout=2.0, deadline=10.0) as probe:
        script.realm = f"{site.url}/token"
        with pytest.raises(UpstreamRejected, match=reason) as caught:
            probe.probe(site.url, REPO, DIGEST, credentials=GOOD)
    assert_readable(str(caught.value))


HOSTILE_MANIFEST_ANSWERS = [
    pytest.param(
        Answer(200, [("Docker-Content-Digest", "x" * 8000), ("Content-Type", OCI_MANIFEST)]),
        "malformed Docker-Content-Digest",
        id="digest-header-8000-chars",
    ),
    pytest.param(
        Answer(200, [("Docker-Content-Digest", b"sha256:\xe9\xff\x80"), ("Content-Type", OCI_MANIFEST)]),
        "malformed Docker-Content-Digest",
        id="digest-header-not-ascii",
    ),
    pytest.param(
        Answer(200, [("Docker-Content-Digest", "sha256:" + "1" * 64)]), "different digest", id="another-digest"
    ),
    pytest.param(
        Answer(200, [("Content-Type", "text/" + "h" * 8000)]), "without Docker-Content-Digest", id="content-type-8000"
    ),
    pytest.param(
        Answer(401, [("WWW-Authenticate", 'Bearer realm="ftp://' + "r" * 3000 + '"')]),
        "not an http",
        id="realm-ftp-and-long",
    ),
    pytest.param(
        Answer(401, [("WWW-Authenticate", "Bearer " + 'a="\\",' * 12_000)]),
        "WWW-Authenticate",
        id="challenge-72KB-of-unclosed-quotes",
    ),
]


@pytest.mark.parametrize(("answer", "reason"), HOSTILE_MANIFEST_ANSWERS)
def test_a_hostile_manifest_answer_is_refused_with_a_short_reason(answer: Answer, reason: str) -> None:
    with hostile_server(lambda seen: answer) as site, HttpManifestProbe(timeout=2.0, deadline=10.0) as probe:
        with pytest.raises(UpstreamRejected, match=reason) as caught:
            probe.probe(site.url, REPO, DIGEST, credentials=GOOD)
    assert_readable(str(caught.value))


def test_a_huge_error_answer_from_the_token_endpoint_is_not_read() -> None:
    refused = Answer(401, [JSON], chunks=lambda: (b"x" * 1_048_576 for _ in range(256)))
    script = BearerScript(DIGEST, token=lambda seen: refused)
    with hostile_server(script) as site, HttpManifestProbe(timeout=2.0, deadline=10.0) as probe:
        script.realm = f"{site.url}/token"
        with pytest.raises(UpstreamRejected, match="credentials refused"):
            probe.probe(site.url, REPO, DIGEST, credentials=GOOD)
        assert finished(site, 2)
        token_request = site.seen()[1]
    assert token_request.outcome == HUNG_UP  # 256 MiB offered, and the probe hung up instead of reading them


def test_an_absurd_token_lifetime_is_cached_for_a_day_at_most() -> None:
    clock = FakeClock(T0)
    script = BearerScript(DIGEST, token=lambda seen: token_answer(expires_in=10**20))
    with hostile_server(script) as site, HttpManifestProbe(timeout=2.0, clock=clock.now) as probe:
        script.realm = f"{site.url}/token"
        assert probe.probe(site.url, REPO, DIGEST, credentials=GOOD).outcome is ProbeOutcome.PRESENT
        clock.advance(hours=23)
        probe.probe(site.url, REPO, DIGEST, credentials=GOOD)
        clock.advance(hours=1)
        probe.probe(site.url, REPO, DIGEST, credentials=GOOD)
        methods = [r.method for r in site.seen()]
    # challenge, token, HEAD; the cached token; then (a day later) the token is fetched again
    assert methods == ["HEAD", "GET", "HEAD", "HEAD", "HEAD", "GET", "HEAD"]
