"""RegistryMirror against two in-memory OCI registries (an ``httpx.MockTransport``) that enforce what
real registries enforce: digests match content, a manifest is accepted only once what it references
is there. The copy between real ``docker-registry`` processes is covered in tests/e2e."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from shared.errors import UpstreamRejected, UpstreamUnavailable
from shared.local.mirror import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryMirror,
)

SOURCE, DEST = "http://source.test", "http://dest.test"
REPO = "inspection/camera"
_PATH = re.compile(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs|tags)/(?P<ref>.*)$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class MemoryRegistry:
    """Just enough of the distribution API, with its consistency rules."""

    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_with: int | None = None
    tamper: set[str] = field(default_factory=set)  # blob digests served with other bytes
    page_size: int | None = None

    def add_blob(self, repo: str, data: bytes) -> dict[str, Any]:
        self.blobs[(repo, digest_of(data))] = data
        return {"digest": digest_of(data), "size": len(data)}

    def add_manifest(self, repo: str, document: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
        body = json.dumps(document).encode()
        digest = digest_of(body)
        self.manifests[(repo, digest)] = (document["mediaType"], body)
        if tag:
            self.tags[(repo, tag)] = digest
        return {"mediaType": document["mediaType"], "digest": digest, "size": len(body)}

    def image(self, repo: str, *, docker: bool = False, tag: str | None = None, layer: bytes = b"") -> dict[str, Any]:
        config = self.add_blob(repo, json.dumps({"os": "linux", "build": uuid.uuid4().hex}).encode())
        layer_descriptor = self.add_blob(repo, layer or uuid.uuid4().bytes)
        document = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_descriptor}],
        }
        return self.add_manifest(repo, document, tag)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if self.fail_with is not None:
            return httpx.Response(self.fail_with)
        if path == "/v2/_catalog":
            names = sorted({repo for repo, _ in self.manifests})
            return self._page(request, names, "repositories", "/v2/_catalog")
        match = _PATH.match(path)
        if match is None:
            return httpx.Response(404)
        repo, kind, ref = match["repo"], match["kind"], match["ref"]
        if kind == "tags":
            names = sorted(tag for (r, tag) in self.tags if r == repo)
            if not names:
                return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
            return self._page(request, names, "tags", f"/v2/{repo}/tags/list", {"name": repo})
        if kind == "manifests":
            return self._manifest(request, repo, ref)
        return self._blob(request, repo, ref)

    def _page(
        self, request: httpx.Request, names: list[str], key: str, path: str, extra: dict[str, Any] | None = None
    ) -> httpx.Response:
        last = request.url.params.get("last")
        remaining = [name for name in names if last is None or name > last]
        size = self.page_size or len(remaining) or 1
        page, rest = remaining[:size], remaining[size:]
        headers = {"Link": f'<{path}?n={size}&last={page[-1]}>; rel="next"'} if rest else {}
        return httpx.Response(200, json={**(extra or {}), key: page}, headers=headers)

    def _manifest(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        if request.method == "PUT":
            body = request.content
            digest = digest_of(body)
            if ref.startswith("sha256:") and ref != digest:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
            document = json.loads(body)
            needed = [(d["digest"], "manifest") for d in document.get("manifests", [])]
            needed += [(d["digest"], "blob") for d in [document.get("config"), *document.get("layers", [])] if d]
            for wanted, what in needed:
                store: dict[tuple[str, str], Any] = self.manifests if what == "manifest" else self.blobs
                if (repo, wanted) not in store:
                    return httpx.Response(400, json={"errors": [{"code": f"MANIFEST_{what.upper()}_UNKNOWN"}]})
            self.manifests[(repo, digest)] = (request.headers["content-type"], body)
            if not ref.startswith("sha256:"):
                self.tags[(repo, ref)] = digest
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        digest = self.tags.get((repo, ref), ref)
        found = self.manifests.get((repo, digest))
        if found is None:
            return httpx.Response(404)
        media_type, body = found
        headers = {"Content-Type": media_type, "Docker-Content-Digest": digest}
        return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)

    def _blob(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        if ref.startswith("uploads/"):
            session = ref.removeprefix("uploads/")
            if request.method == "POST":
                session = str(uuid.uuid4())
                self.uploads[session] = repo
                return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{session}?_state=x"})
            data, digest = request.read(), request.url.params["digest"]
            if self.uploads.pop(session, None) != repo or digest_of(data) != digest:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
            self.blobs[(repo, digest)] = data
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        data = self.blobs.get((repo, ref))
        if data is None:
            return httpx.Response(404)
        if ref in self.tamper:
            data = bytes(reversed(data))  # same size, other bytes
        return httpx.Response(200, content=b"" if request.method == "HEAD" else data)


@pytest.fixture
def source() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
def dest() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
def mirror(source: MemoryRegistry, dest: MemoryRegistry) -> Iterator[RegistryMirror]:
    registries = {"source.test": source, "dest.test": dest}
    transport = httpx.MockTransport(lambda request: registries[request.url.host].handle(request))
    with RegistryMirror(transport=transport) as client:
        yield client


def writes(registry: MemoryRegistry) -> list[tuple[str, str]]:
    return [(method, path) for method, path in registry.requests if method in ("POST", "PUT")]


def test_an_image_is_copied_blobs_first_then_each_tag_once(
    mirror: RegistryMirror, source: MemoryRegistry, dest: MemoryRegistry
) -> None:
    image = source.image(REPO, tag="1.5.0")
    report = mirror.copy(SOURCE, DEST, REPO, "1.5.0", tags=["1.5.0", "stable"])
    assert (report.digest, report.media_type, report.tags) == (image["digest"], OCI_MANIFEST, ("1.5.0", "stable"))
    assert (report.manifests_copied, report.blobs_copied, report.blobs_present) == (1, 2, 0)
    assert dest.manifests[(REPO, image["digest"])] == source.manifests[(REPO, image["digest"])]  # byte for byte
    assert dest.tags == {(REPO, "1.5.0"): image["digest"], (REPO, "stable"): image["digest"]}
    # blobs first; then the manifest once per tag, never again by digest (a registry re-links on every PUT)
    puts = [path for method, path in writes(dest) if method == "PUT"]
    assert puts[2:] == [f"/v2/{REPO}/manifests/1.5.0", f"/v2/{REPO}/manifests/stable"]
    assert all("/blobs/uploads/" in path for path in puts[:2])


@pytest.mark.parametrize(("index_type", "docker"), [(OCI_INDEX, False), (DOCKER_MANIFEST_LIST, True)])
def test_an_index_brings_every_child_and_each_shared_blob_once(
    mirror: RegistryMirror, source: MemoryRegistry, dest: MemoryRegistry, index_type: str, docker: bool
) -> None:
    shared_layer = b"the same base layer"
    children = [source.image(REPO, docker=docker, layer=layer) for layer in (shared_layer, b"other", shared_layer)]
    index = source.add_manifest(REPO, {"schemaVersion": 2, "mediaType": index_type, "manifests": children}, "2.0.0")
    report = mirror.copy(SOURCE, DEST, REPO, index["digest"], tags=["2.0.0"])
    assert report.media_type == index_type and report.manifests_copied == 4
    assert all((REPO, child["digest"]) in dest.manifests for child in children)
    uploads = [path for method, path in writes(dest) if method == "POST"]
    assert len(uploads) == report.blobs_copied == len({d for (_, d) in source.blobs})
    assert dest.tags[(REPO, "2.0.0")] == index["digest"]


def test_what_the_destination_holds_is_not_copied_again(
    mirror: RegistryMirror, source: MemoryRegistry, dest: MemoryRegistry
) -> None:
    image = source.image(REPO, tag="1.0.0")
    config_digest = json.loads(source.manifests[(REPO, image["digest"])][1])["config"]["digest"]
    dest.blobs[(REPO, config_digest)] = source.blobs[(REPO, config_digest)]
    first = mirror.copy(SOURCE, DEST, REPO, "1.0.0")
    assert (first.blobs_copied, first.blobs_present) == (1, 1)
    assert dest.tags == {} and (REPO, image["digest"]) in dest.manifests  # no tags asked for: by digest
    dest.requests.clear()
    again = mirror.copy(SOURCE, DEST, REPO, image["digest"], tags=["1.0.0"])
    assert (again.manifests_copied, again.manifests_present, again.blobs_copied) == (0, 1, 0)
    assert writes(dest) == [("PUT", f"/v2/{REPO}/manifests/1.0.0")]  # only the missing tag
    dest.requests.clear()
    mirror.copy(SOURCE, DEST, REPO, "1.0.0", tags=["1.0.0"])
    assert writes(dest) == []


def test_content_that_does_not_match_its_digest_is_refused_and_nothing_is_published(
    mirror: RegistryMirror, source: MemoryRegistry, dest: MemoryRegistry
) -> None:
    image = source.image(REPO, tag="1.0.0")
    layer = json.loads(source.manifests[(REPO, image["digest"])][1])["layers"][0]["digest"]
    source.tamper.add(layer)
    with pytest.raises(UpstreamRejected, match="does not match its digest"):
        mirror.copy(SOURCE, DEST, REPO, "1.0.0", tags=["1.0.0"])
    assert not dest.manifests and not dest.tags


def test_non_distributable_layers_stay_where_their_urls_say(
    mirror: RegistryMirror, source: MemoryRegistry, dest: MemoryRegistry
) -> None:
    config = source.add_blob(REPO, b"{}")
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": digest_of(b"windows base layer"),
        "size": 18,
        "urls": ["https://mcr.example/layer"],
    }
    document = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config, "layers": [foreign]}
    # a real registry accepts a manifest whose foreign layers it does not hold
    source.blobs[(REPO, foreign["digest"])] = b"windows base layer"
    manifest = source.add_manifest(REPO, document, "ltsc")
    dest.blobs[(REPO, foreign["digest"])] = b"windows base layer"  # lets the in-memory check pass
    dest.requests.clear()
    report = mirror.copy(SOURCE, DEST, REPO, "ltsc")
    assert report.digest == manifest["digest"] and report.blobs_copied == 1
    assert ("HEAD", f"/v2/{REPO}/blobs/{foreign['digest']}") not in dest.requests


def test_only_the_four_image_manifest_types_are_copied(mirror: RegistryMirror, source: MemoryRegistry) -> None:
    source.add_manifest(
        REPO, {"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"}, "old"
    )
    with pytest.raises(UpstreamRejected, match="not an OCI or Docker image manifest"):
        mirror.copy(SOURCE, DEST, REPO, "old")


def test_a_failing_registry_is_unavailable_and_a_bad_reference_never_reaches_the_url(
    mirror: RegistryMirror, source: MemoryRegistry
) -> None:
    source.fail_with = 503
    with pytest.raises(UpstreamUnavailable, match="503"):
        mirror.copy(SOURCE, DEST, REPO, "1.0.0")
    source.requests.clear()
    with pytest.raises(UpstreamRejected):
        mirror.copy(SOURCE, DEST, "../etc", "1.0.0")
    with pytest.raises(UpstreamRejected):
        mirror.copy(SOURCE, DEST, REPO, "sha256:../../x")
    assert source.requests == []


def test_catalog_and_tags_follow_link_pages_and_resolve_names_digests(
    mirror: RegistryMirror, source: MemoryRegistry
) -> None:
    source.page_size = 2
    digests = {name: source.image(name, tag="1.0.0")["digest"] for name in ("a/one", "b/two", "c/three")}
    for tag in ("1.1.0", "2.0.0"):
        source.tags[("a/one", tag)] = digests["a/one"]
    assert mirror.repositories(SOURCE) == ["a/one", "b/two", "c/three"]
    assert mirror.tags(SOURCE, "a/one") == ["1.0.0", "1.1.0", "2.0.0"]
    assert mirror.tags(SOURCE, "not/there") == []
    assert mirror.resolve(SOURCE, "b/two", "1.0.0") == digests["b/two"]
    assert mirror.resolve(SOURCE, "b/two", "9.9.9") is None
