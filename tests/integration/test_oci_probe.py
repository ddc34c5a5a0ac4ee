"""HttpManifestProbe against a real CNCF distribution registry (``docker-registry``): open, behind
htpasswd (Basic) and behind token auth (Bearer, with a loopback token realm); plus a scripted stub
for answers a real registry will not give on demand (5xx, 429, a wrong digest, odd challenges)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from shared.adapters.oci import (
    ACCEPT,
    HttpManifestProbe,
    StaticSiteCredentials,
    credentials_withheld,
    normalize_endpoint,
    parse_www_authenticate,
)
from shared.domain.observations import BasicCredentials, ProbeOutcome
from shared.errors import ConfigurationError, UpstreamRejected, UpstreamUnavailable
from tests.builders import T0
from tests.fakes import FakeClock
from tests.support.registry import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    PushedManifest,
    RegistryHandle,
    StubAnswer,
    StubRequest,
    TokenServer,
    push_image,
    push_index,
    start_registry,
    stub_registry,
)

pytestmark = pytest.mark.timeout(60)

REPO = "edge/app"
USER = "site-token"
# Distinctive, so a leak into a message or a log line cannot be missed.
PASSWORD = "pw-Zq8-never-shown"
WRONG_PASSWORD = "pw-Wr0ng-never-shown"
GOOD = BasicCredentials(USER, PASSWORD)
BAD = BasicCredentials(USER, WRONG_PASSWORD)
UNKNOWN_DIGEST = "sha256:" + "0" * 64


# -- fixtures: one registry of each kind per module ---------------------------------------------


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryHandle]:
    with start_registry(tmp_path_factory.mktemp("open-registry")) as handle:
        yield handle


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryHandle]:
    with start_registry(tmp_path_factory.mktemp("basic-registry"), users={USER: PASSWORD}) as handle:
        yield handle


@pytest.fixture(scope="module")
def basic_image(basic_registry: RegistryHandle) -> PushedManifest:
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return push_image(basic_registry.url, REPO, "v1", headers={"Authorization": auth})


def trusting(server: TokenServer, credentials: BasicCredentials = GOOD) -> BasicCredentials:
    """The site's credentials, listing the token server (on a port of its own) as a realm they may go to."""
    return replace(credentials, token_realms=(server.url,))


def _token_registry(
    workdir: Path, *, token_field: str = "token", expires_in: int | None = 300
) -> tuple[TokenServer, RegistryHandle]:
    server = TokenServer(workdir, users={USER: PASSWORD}, token_field=token_field, expires_in=expires_in)
    try:
        registry = start_registry(workdir / "registry", token_auth=server.registry_auth())
    except BaseException:
        server.stop()
        raise
    return server, registry


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[TokenServer, RegistryHandle, PushedManifest]]:
    """Per test, because tests count the token server's requests (start-up takes ~50 ms)."""
    server, registry = _token_registry(tmp_path)
    try:
        push_token = server.issue([f"repository:{REPO}:pull,push"])
        image = push_image(registry.url, REPO, "v1", headers={"Authorization": f"Bearer {push_token}"})
        server.issued.append(push_token)
        yield server, registry, image
    finally:
        registry.stop()
        server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def probe(clock: FakeClock) -> Iterator[HttpManifestProbe]:
    with HttpManifestProbe(timeout=2.0, clock=clock.now) as instance:
        yield instance


def _assert_no_secret(text: str, *secrets: str) -> None:
    for secret in (PASSWORD, WRONG_PASSWORD, *secrets):
        assert secret not in text
    for credentials in (GOOD, BAD):
        encoded = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        assert encoded not in text


def _exception_text(exc: BaseException) -> str:
    """The exception and everything chained to it, as a traceback would show them."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


# -- open registry: presence and absence ---------------------------------------------------------


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_pushed_manifest_is_present_with_its_digest_and_media_type(
    open_registry: RegistryHandle, probe: HttpManifestProbe, media_type: str
) -> None:
    image = push_image(open_registry.url, REPO, f"m-{media_type[-9:-5]}", media_type=media_type)

    seen = probe.probe(open_registry.url + "/", REPO, image.digest)

    assert seen.outcome is ProbeOutcome.PRESENT
    assert seen.status_code == 200
    assert seen.digest == image.digest
    assert seen.media_type == media_type
    assert seen.endpoint == open_registry.url
    assert seen.observed_at == T0
    assert seen.evidence_details()["Docker-Content-Digest"] == image.digest


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_pushed_index_is_present_as_an_index(
    open_registry: RegistryHandle, probe: HttpManifestProbe, media_type: str
) -> None:
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    child = push_image(open_registry.url, "edge/multi", "child", media_type=child_type)
    index = push_index(open_registry.url, "edge/multi", "latest", [child], media_type=media_type)

    seen = probe.probe(open_registry.url, "edge/multi", index.digest)

    assert (seen.outcome, seen.digest, seen.media_type) == (ProbeOutcome.PRESENT, index.digest, media_type)


def test_unknown_digest_is_absent(open_registry: RegistryHandle, probe: HttpManifestProbe) -> None:
    push_image(open_registry.url, REPO, "other")

    seen = probe.probe(open_registry.url, REPO, UNKNOWN_DIGEST)

    assert (seen.outcome, seen.status_code, seen.digest, seen.media_type) == (ProbeOutcome.ABSENT, 404, None, None)


def test_unknown_repository_is_absent(open_registry: RegistryHandle, probe: HttpManifestProbe) -> None:
    image = push_image(open_registry.url, REPO, "known")

    seen = probe.probe(open_registry.url, "edge/never-pushed", image.digest)

    assert seen.outcome is ProbeOutcome.ABSENT
    assert seen.status_code == 404


def test_endpoint_without_scheme_means_https(open_registry: RegistryHandle, probe: HttpManifestProbe) -> None:
    # The loopback registry speaks plain http, so an https attempt fails at the TLS handshake.
    with pytest.raises(UpstreamUnavailable, match=f"https://{open_registry.netloc}/v2/"):
        probe.probe(open_registry.netloc, REPO, UNKNOWN_DIGEST)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("myreg.example.com", "https://myreg.example.com"),
        ("myreg.example.com:5000/", "https://myreg.example.com:5000"),
        ("http://127.0.0.1:8080//", "http://127.0.0.1:8080"),
        ("HTTPS://Site-A.example.com", "https://site-a.example.com"),
    ],
)
def test_endpoint_is_normalized(endpoint: str, expected: str) -> None:
    assert normalize_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["https://user:secret-in-url@host", "ftp://host", "https://host/?x=1", "http://"])
def test_endpoint_that_is_not_a_registry_address_is_rejected(endpoint: str) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        normalize_endpoint(endpoint)
    assert "secret-in-url" not in _exception_text(caught.value)


@pytest.mark.parametrize(
    ("repository", "digest"),
    [("../etc", UNKNOWN_DIGEST), ("Edge/App", UNKNOWN_DIGEST), (REPO, "sha256:abc?x=1"), (REPO, "latest")],
)
def test_repository_and_digest_are_validated_before_any_request(repository: str, digest: str) -> None:
    with stub_registry(lambda request: StubAnswer(404)) as stub, HttpManifestProbe(timeout=1.0) as probe:
        with pytest.raises(UpstreamRejected, match="not a valid"):
            probe.probe(stub.url, repository, digest)
        assert stub.seen() == []


# -- Basic authentication (htpasswd on the real registry) ----------------------------------------


def test_basic_without_credentials_is_rejected(
    basic_registry: RegistryHandle, basic_image: PushedManifest, probe: HttpManifestProbe
) -> None:
    with pytest.raises(UpstreamRejected, match="credentials required"):
        probe.probe(basic_registry.url, REPO, basic_image.digest)


def test_basic_with_a_wrong_password_is_rejected_without_echoing_it(
    basic_registry: RegistryHandle,
    basic_image: PushedManifest,
    probe: HttpManifestProbe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    with pytest.raises(UpstreamRejected, match="credentials refused") as caught:
        probe.probe(basic_registry.url, REPO, basic_image.digest, credentials=BAD)

    _assert_no_secret(_exception_text(caught.value))
    _assert_no_secret(caplog.text)


def test_basic_with_the_right_credentials_is_present(
    basic_registry: RegistryHandle,
    basic_image: PushedManifest,
    probe: HttpManifestProbe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    first = probe.probe(basic_registry.url, REPO, basic_image.digest, credentials=GOOD)
    # The second probe sends the credentials up front; the answer must be the same.
    second = probe.probe(basic_registry.url, REPO, basic_image.digest, credentials=GOOD)
    absent = probe.probe(basic_registry.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)

    assert first.outcome is second.outcome is ProbeOutcome.PRESENT
    assert first.digest == basic_image.digest
    assert absent.outcome is ProbeOutcome.ABSENT
    _assert_no_secret(caplog.text)
    assert not [r for r in caplog.records if r.name.startswith("shared.") and r.levelno > logging.DEBUG]


def test_remembered_basic_credentials_that_stop_working_are_refused(
    basic_registry: RegistryHandle, basic_image: PushedManifest, probe: HttpManifestProbe
) -> None:
    probe.probe(basic_registry.url, REPO, basic_image.digest, credentials=GOOD)

    with pytest.raises(UpstreamRejected, match="credentials refused"):
        probe.probe(basic_registry.url, REPO, basic_image.digest, credentials=BAD)


# -- Bearer authentication (token auth on the real registry) -------------------------------------


def test_bearer_flow_against_the_real_registry(
    token_registry: tuple[TokenServer, RegistryHandle, PushedManifest],
    probe: HttpManifestProbe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, registry, image = token_registry
    caplog.set_level(logging.DEBUG)

    seen = probe.probe(registry.url, REPO, image.digest, credentials=trusting(server))

    assert (seen.outcome, seen.digest, seen.media_type) == (ProbeOutcome.PRESENT, image.digest, OCI_MANIFEST)
    [request] = server.token_requests()
    assert (request.username, request.service, request.scopes) == (
        USER,
        TokenServer.SERVICE,
        [f"repository:{REPO}:pull"],
    )
    _assert_no_secret(caplog.text, *server.issued)


def test_bearer_token_is_fetched_once_for_two_probes(
    token_registry: tuple[TokenServer, RegistryHandle, PushedManifest], probe: HttpManifestProbe
) -> None:
    server, registry, image = token_registry

    first = probe.probe(registry.url, REPO, image.digest, credentials=trusting(server))
    second = probe.probe(registry.url, REPO, UNKNOWN_DIGEST, credentials=trusting(server))

    assert (first.outcome, second.outcome) == (ProbeOutcome.PRESENT, ProbeOutcome.ABSENT)
    assert len(server.token_requests()) == 1


def test_bearer_token_is_fetched_again_after_it_expires(
    token_registry: tuple[TokenServer, RegistryHandle, PushedManifest], probe: HttpManifestProbe, clock: FakeClock
) -> None:
    server, registry, image = token_registry  # the server states expires_in=300

    probe.probe(registry.url, REPO, image.digest, credentials=trusting(server))
    clock.advance(seconds=290)
    probe.probe(registry.url, REPO, image.digest, credentials=trusting(server))
    assert len(server.token_requests()) == 1
    clock.advance(seconds=10)
    probe.probe(registry.url, REPO, image.digest, credentials=trusting(server))

    assert len(server.token_requests()) == 2


def test_bearer_tokens_are_not_shared_between_credentials(
    token_registry: tuple[TokenServer, RegistryHandle, PushedManifest], probe: HttpManifestProbe
) -> None:
    server, registry, image = token_registry
    probe.probe(registry.url, REPO, image.digest, credentials=trusting(server))

    with pytest.raises(UpstreamRejected, match="credentials refused"):
        probe.probe(registry.url, REPO, image.digest, credentials=trusting(server, BAD))

    assert [r.status for r in server.token_requests()] == [200, 401]


def test_bearer_with_a_wrong_password_is_rejected_without_echoing_it(
    token_registry: tuple[TokenServer, RegistryHandle, PushedManifest],
    probe: HttpManifestProbe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, registry, image = token_registry
    caplog.set_level(logging.DEBUG)

    with pytest.raises(UpstreamRejected, match="credentials refused") as caught:
        probe.probe(registry.url, REPO, image.digest, credentials=trusting(server, BAD))

    _assert_no_secret(_exception_text(caught.value), *server.issued)
    _assert_no_secret(caplog.text, *server.issued)


def test_bearer_without_credentials_asks_anonymously_and_is_rejected(
    token_registry: tuple[TokenServer, RegistryHandle, PushedManifest], probe: HttpManifestProbe
) -> None:
    server, registry, image = token_registry

    with pytest.raises(UpstreamRejected, match="credentials required"):
        probe.probe(registry.url, REPO, image.digest)

    assert [(r.username, r.status) for r in server.token_requests()] == [(None, 401)]


def test_access_token_field_and_the_default_lifetime(tmp_path: Path, clock: FakeClock) -> None:
    server, registry = _token_registry(tmp_path, token_field="access_token", expires_in=None)
    try:
        push_token = server.issue([f"repository:{REPO}:pull,push"])
        image = push_image(registry.url, REPO, "v1", headers={"Authorization": f"Bearer {push_token}"})
        with HttpManifestProbe(timeout=2.0, clock=clock.now) as probe:
            assert (
                probe.probe(registry.url, REPO, image.digest, credentials=trusting(server)).outcome
                is ProbeOutcome.PRESENT
            )
            clock.advance(seconds=50)  # within the spec's default 60 s lifetime
            probe.probe(registry.url, REPO, image.digest, credentials=trusting(server))
            assert len(server.token_requests()) == 1
            clock.advance(seconds=10)
            probe.probe(registry.url, REPO, image.digest, credentials=trusting(server))
            assert len(server.token_requests()) == 2
    finally:
        registry.stop()
        server.stop()


# -- Bearer details on a scripted registry -------------------------------------------------------


class BearerStub:
    """A registry and its token realm on one stub server: a token is valid until ``revoke``."""

    SCOPE = "repository:edge/app:pull,push"

    def __init__(self, *, digest: str = UNKNOWN_DIGEST, token_body: dict[str, object] | None = None) -> None:
        self.url = ""
        self.digest = digest
        self.token_body = token_body
        self.issued = 0
        self.valid: set[str] = set()

    def revoke(self) -> None:
        self.valid.clear()

    def __call__(self, request: StubRequest) -> StubAnswer:
        if request.path.startswith("/token"):
            self.issued += 1
            token = f"tok{self.issued}"
            self.valid.add(token)
            body = self.token_body if self.token_body is not None else {"access_token": token, "expires_in": 600}
            return StubAnswer(200, {"Content-Type": "application/json"}, json.dumps(body).encode())
        if request.authorization and request.authorization.removeprefix("Bearer ") in self.valid:
            return StubAnswer(200, {"Docker-Content-Digest": self.digest, "Content-Type": OCI_MANIFEST})
        # Commas and colons inside quotes, an escaped quote, odd spacing and an extra parameter.
        challenge = (
            f'Bearer realm="{self.url}/token" , service="stub\\"registry" ,scope="{self.SCOPE}",error="invalid_token"'
        )
        return StubAnswer(401, {"WWW-Authenticate": challenge})


def test_bearer_challenge_with_commas_in_quotes_is_answered_and_reused() -> None:
    script = BearerStub()
    with stub_registry(script) as stub, HttpManifestProbe(timeout=2.0) as probe:
        script.url = stub.url

        first = probe.probe(stub.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)
        second = probe.probe(stub.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)

        requests = stub.seen()
    assert first.outcome is second.outcome is ProbeOutcome.PRESENT
    # HEAD (401), token, HEAD with the token; then the remembered token straight away.
    assert [r.method for r in requests] == ["HEAD", "GET", "HEAD", "HEAD"]
    token_request = requests[1].path
    assert "service=stub%22registry" in token_request
    assert "scope=repository%3Aedge%2Fapp%3Apull%2Cpush" in token_request
    assert requests[1].authorization == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert requests[3].authorization == "Bearer tok1"


def test_a_revoked_remembered_token_is_replaced_once() -> None:
    script = BearerStub()
    with stub_registry(script) as stub, HttpManifestProbe(timeout=2.0) as probe:
        script.url = stub.url
        probe.probe(stub.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)
        script.revoke()

        seen = probe.probe(stub.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)

        assert seen.outcome is ProbeOutcome.PRESENT
        assert script.issued == 2
        assert stub.seen()[-1].authorization == "Bearer tok2"


@pytest.mark.parametrize("body", [{"expires_in": 60}, {"token": ""}, {"token": "a b"}, ["tok"]])
def test_a_token_answer_without_a_usable_token_is_rejected(body: object) -> None:
    script = BearerStub(token_body=body)  # type: ignore[arg-type]
    with stub_registry(script) as stub, HttpManifestProbe(timeout=2.0) as probe:
        script.url = stub.url
        with pytest.raises(UpstreamRejected, match="no usable token"):
            probe.probe(stub.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)


def test_credentials_are_not_sent_to_an_http_realm_of_an_https_registry() -> None:
    assert "plain http" in (credentials_withheld("http://elsewhere.example/token", "https://site.example") or "")
    assert "plain http" in (
        credentials_withheld("http://site.example/token", "https://site.example", ["http://site.example"]) or ""
    )


# -- statuses and transport failures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (StubAnswer(503, {"Retry-After": "7"}), UpstreamUnavailable, r"503 \(Retry-After: 7\)"),
        (StubAnswer(429), UpstreamUnavailable, "429"),
        (StubAnswer(500), UpstreamUnavailable, "500"),
        (StubAnswer(403), UpstreamRejected, "403"),
        (StubAnswer(302, {"Location": "https://elsewhere.example/"}), UpstreamRejected, "302"),
        (StubAnswer(401), UpstreamRejected, "unsupported authentication challenge"),
        (StubAnswer(401, {"WWW-Authenticate": "Negotiate abc=="}), UpstreamRejected, r"\(negotiate\)"),
        (
            StubAnswer(200, {"Docker-Content-Digest": "sha256:" + "1" * 64, "Content-Type": OCI_MANIFEST}),
            UpstreamRejected,
            "different digest",
        ),
        (StubAnswer(200, {"Content-Type": "text/html"}), UpstreamRejected, "without Docker-Content-Digest"),
    ],
)
def test_status_translation(answer: StubAnswer, error: type[Exception], message: str) -> None:
    with stub_registry(lambda request: answer) as stub, HttpManifestProbe(timeout=2.0) as probe:
        with pytest.raises(error, match=message):
            probe.probe(stub.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)


def test_200_without_digest_but_with_a_manifest_type_is_present() -> None:
    with stub_registry(lambda request: StubAnswer(200, {"Content-Type": f"{OCI_INDEX}; charset=utf-8"})) as stub:
        with HttpManifestProbe(timeout=2.0) as probe:
            seen = probe.probe(stub.url, REPO, UNKNOWN_DIGEST)
        [request] = stub.seen()
    assert (seen.outcome, seen.digest, seen.media_type) == (ProbeOutcome.PRESENT, None, OCI_INDEX)
    assert request.method == "HEAD"
    assert request.path == f"/v2/{REPO}/manifests/{UNKNOWN_DIGEST}"


def test_accept_lists_every_manifest_type() -> None:
    assert ACCEPT.split(", ") == [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST]


def test_basic_answer_refused_after_authenticating_is_rejected() -> None:
    challenge = StubAnswer(401, {"WWW-Authenticate": 'Basic realm="site, with comma"'})
    with stub_registry(lambda request: challenge) as stub, HttpManifestProbe(timeout=2.0) as probe:
        with pytest.raises(UpstreamRejected, match="credentials refused") as caught:
            probe.probe(stub.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)
        assert [r.authorization is not None for r in stub.seen()] == [False, True]
    _assert_no_secret(_exception_text(caught.value))


def test_stopped_registry_is_unavailable_within_the_timeout(tmp_path: Path) -> None:
    registry = start_registry(tmp_path)
    registry.stop()
    with HttpManifestProbe(timeout=2.0) as probe:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="ConnectError"):
            probe.probe(registry.url, REPO, UNKNOWN_DIGEST, credentials=GOOD)
        assert time.monotonic() - started < 2.0


def test_a_registry_that_never_answers_times_out() -> None:
    # A listening socket nobody accepts from: the connection opens, the answer never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with HttpManifestProbe(timeout=0.3) as probe:
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable, match="timed out"):
                probe.probe(f"http://127.0.0.1:{port}", REPO, UNKNOWN_DIGEST)
            assert time.monotonic() - started < 1.5


# -- WWW-Authenticate parsing --------------------------------------------------------------------


def test_parse_bearer_with_colons_and_commas_in_quotes() -> None:
    [challenge] = parse_www_authenticate(
        'Bearer realm="https://reg.example/oauth2/token",service="reg.example",'
        'scope="repository:team/app:pull,push repository:team/lib:pull"'
    )
    assert challenge.scheme == "bearer"
    assert dict(challenge.params) == {
        "realm": "https://reg.example/oauth2/token",
        "service": "reg.example",
        "scope": "repository:team/app:pull,push repository:team/lib:pull",
    }


def test_parse_several_challenges_escapes_case_and_token68() -> None:
    challenges = parse_www_authenticate(
        [
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", BASIC Realm="simple, really"',
            "Negotiate abc==, Bearer realm=https://r.example/token,scope=repository:a:pull",
        ]
    )
    assert [c.scheme for c in challenges] == ["newauth", "basic", "negotiate", "bearer"]
    assert dict(challenges[0].params) == {"realm": "apps", "type": "1", "title": 'Login to "apps"'}
    assert dict(challenges[1].params) == {"realm": "simple, really"}
    assert challenges[2].token68 == "abc=="
    assert dict(challenges[3].params) == {"realm": "https://r.example/token", "scope": "repository:a:pull"}


@pytest.mark.parametrize("header", ["", " , ,", '"junk"', "="])
def test_parse_garbage_yields_no_challenge(header: str) -> None:
    assert parse_www_authenticate(header) == []


def test_parse_skips_garbage_between_challenges() -> None:
    challenges = parse_www_authenticate(', "junk", Basic realm="r",, Bearer realm="b" ,')
    assert [(c.scheme, dict(c.params)) for c in challenges] == [("basic", {"realm": "r"}), ("bearer", {"realm": "b"})]


# -- StaticSiteCredentials -----------------------------------------------------------------------


def test_site_credentials_from_environ() -> None:
    env = {"ACRSYNC_SITE_CREDENTIALS": json.dumps({"site-a": {"username": USER, "password": PASSWORD}})}

    credentials = StaticSiteCredentials.from_environ(env)

    assert credentials.get_credentials("site-a") == GOOD
    assert credentials.get_credentials("site-b") is None
    assert PASSWORD not in repr(credentials)
    assert PASSWORD not in repr(credentials.get_credentials("site-a"))


@pytest.mark.parametrize("value", [None, "", "   "])
def test_site_credentials_unset_means_none(value: str | None) -> None:
    env = {} if value is None else {"ACRSYNC_SITE_CREDENTIALS": value}
    assert StaticSiteCredentials.from_environ(env).get_credentials("site-a") is None


@pytest.mark.parametrize(
    "value",
    [
        f'{{"site-a": {{"username": "{USER}", "password": "{PASSWORD}"}}',  # truncated JSON
        f'["{PASSWORD}"]',
        f'{{"site-a": "{PASSWORD}"}}',
        f'{{"site-a": {{"username": "", "password": "{PASSWORD}"}}}}',
        f'{{"site-a": {{"username": "{USER}"}}, "x": "{PASSWORD}"}}',
    ],
)
def test_site_credentials_malformed_names_the_setting_never_the_value(value: str) -> None:
    with pytest.raises(ConfigurationError, match="ACRSYNC_SITE_CREDENTIALS") as caught:
        StaticSiteCredentials.from_environ({"ACRSYNC_SITE_CREDENTIALS": value})
    _assert_no_secret(_exception_text(caught.value))
