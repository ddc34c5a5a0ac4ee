"""Real OCI registries for tests: the CNCF distribution registry (Debian ``docker-registry``) on loopback.

* :func:`start_registry` runs ``docker-registry serve`` on a free loopback port with filesystem storage
  in a temp dir, optionally behind htpasswd (Basic) or token (Bearer) authentication.
* :func:`push_image` puts a small image (config blob, one layer blob, manifest by tag) into it through
  the OCI distribution API with ``httpx`` and returns the manifest digest; :func:`push_index` adds an
  image index over pushed manifests.
* :class:`TokenServer` is a loopback token realm for the registry's ``auth: token`` mode: it checks
  Basic credentials, counts requests and signs ES256 JWTs the registry verifies against a self-signed
  certificate (``rootcertbundle``), so the Bearer flow runs against the real registry.
* :class:`StubRegistry` answers with scripted statuses and headers, for what a real registry will not
  do on demand (5xx, 429, odd challenges, a wrong digest).

Needs the Debian packages ``docker-registry`` and ``apache2-utils`` (``htpasswd``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import secrets
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from shared.local.tls import make_certificate
from tests.support.azurite import free_port
from tests.support.process import STOP_TIMEOUT_S, ServerProcess

log = logging.getLogger(__name__)

REGISTRY_BINARY = "docker-registry"
HTPASSWD_BINARY = "htpasswd"
INSTALL_HINT = "apt-get install -y docker-registry apache2-utils"
STARTUP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed; run `{INSTALL_HINT}`")
    return path


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the registry process -----------------------------------------------------------------------


@dataclass
@dataclass
class RegistryHandle(ServerProcess):
    """A running ``docker-registry``; :meth:`stop` ends it (idempotent)."""

    log_name: ClassVar[str] = "registry.log"
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        """``127.0.0.1:<port>``: the endpoint without a scheme."""
        return f"127.0.0.1:{self.port}"


def htpasswd_line(username: str, password: str) -> str:
    """A bcrypt htpasswd entry (the only hash the distribution registry accepts), cost 4 to keep tests fast."""
    result = subprocess.run(
        [_require(HTPASSWD_BINARY), "-nbB", "-C", "4", username, password],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


@dataclass(frozen=True)
class TokenAuth:
    """The registry side of ``auth: token``: where clients get tokens and whose signatures to trust."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


def _config(
    workdir: Path, port: int, *, htpasswd: Path | None, token: TokenAuth | None, tls: tuple[Path, Path] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        # The registry logs at error level only; its log file is there for failed start-ups.
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "cache": {"blobdescriptor": "inmemory"},
            "delete": {"enabled": True},
        },
        # A fixed secret silences the start-up warning about a generated one.
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "acrsync-test", "path": str(htpasswd)}}
    elif token is not None:
        config["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.rootcertbundle),
            }
        }
    return config


def _answers(port: int, scheme: str = "http") -> bool:
    with contextlib.suppress(httpx.HTTPError):
        # /v2/ answers 200 open, 401 behind auth: either means the API is up.
        answer = httpx.get(f"{scheme}://127.0.0.1:{port}/v2/", timeout=0.5, verify=False)
        return answer.status_code in (200, 401)
    return False


def start_registry(
    workdir: Path | str,
    *,
    users: Mapping[str, str] | None = None,
    token_auth: TokenAuth | None = None,
    tls: tuple[Path, Path] | None = None,
) -> RegistryHandle:
    """Start ``docker-registry serve`` on a free loopback port and wait until its API answers.

    Args:
        workdir: an empty directory for the config, storage and log.
        users: username → password for htpasswd (Basic) authentication.
        token_auth: token (Bearer) authentication instead; see :class:`TokenServer`.
        tls: a certificate and key file: the registry answers https (see :func:`self_signed_certificate`).

    Raises:
        RuntimeError: the binaries are missing, or the registry did not come up (with its log).
    """
    if users is not None and token_auth is not None:
        raise ValueError("choose htpasswd users or token auth, not both")
    binary = _require(REGISTRY_BINARY)
    base = Path(workdir)
    htpasswd: Path | None = None
    if users is not None:
        htpasswd = base / "htpasswd"
        htpasswd.write_text("".join(htpasswd_line(name, password) + "\n" for name, password in users.items()))
    last_log = ""
    for attempt in range(1, START_ATTEMPTS + 1):
        attempt_dir = base / f"attempt-{attempt}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config_path = attempt_dir / "config.yml"
        # JSON is YAML, so no YAML writer is needed.
        config_path.write_text(json.dumps(_config(attempt_dir, port, htpasswd=htpasswd, token=token_auth, tls=tls)))
        log_file = (attempt_dir / "registry.log").open("wb")
        process = subprocess.Popen(
            [binary, "serve", str(config_path)],
            cwd=attempt_dir,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        scheme = "https" if tls is not None else "http"
        handle = RegistryHandle(process=process, port=port, workdir=attempt_dir, _logs=[log_file], scheme=scheme)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port, scheme):
                log.info("docker-registry listening on %s", handle.url)
                return handle
            time.sleep(0.05)
        exited = process.poll() is not None
        handle.stop()
        last_log = handle.stderr_text()
        if not exited:
            raise RuntimeError(f"docker-registry did not answer within {STARTUP_TIMEOUT_S:.0f} s; log:\n{last_log}")
        if "address already in use" not in last_log:
            raise RuntimeError(f"docker-registry exited during start-up; log:\n{last_log}")
        log.warning("docker-registry lost its port (attempt %s); retrying on another", attempt)
    raise RuntimeError(f"docker-registry exited during start-up {START_ATTEMPTS} times; last log:\n{last_log}")


def self_signed_certificate(directory: Path, *, days: int) -> tuple[Path, Path, datetime]:
    """A certificate for ``127.0.0.1`` (IP SAN) valid for ``days``, as a connected registry's
    self-signed one would be: the certificate file, the key file and its ``notAfter``."""
    made = make_certificate(directory, validity=timedelta(days=days))
    return made.certificate, made.key, made.expires_at


# -- pushing images through the distribution API ------------------------------------------------


@dataclass(frozen=True)
class PushedManifest:
    digest: str
    media_type: str
    size: int


def _upload_blob(client: httpx.Client, base: str, repository: str, data: bytes) -> str:
    """Monolithic upload: POST opens the session, PUT with ``?digest=`` sends the bytes and closes it."""
    digest = sha256_digest(data)
    opened = client.post(f"{base}/v2/{repository}/blobs/uploads/")
    if opened.status_code != 202:
        raise RuntimeError(f"blob upload refused: {opened.status_code} {opened.text}")
    location = httpx.URL(base).join(opened.headers["location"])  # may be relative
    done = client.put(
        location.copy_merge_params({"digest": digest}),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if done.status_code != 201:
        raise RuntimeError(f"blob upload failed: {done.status_code} {done.text}")
    return digest


def _put_manifest(
    client: httpx.Client, base: str, repository: str, reference: str, manifest: Mapping[str, Any]
) -> PushedManifest:
    body = json.dumps(manifest, separators=(",", ":")).encode()
    media_type = str(manifest["mediaType"])
    response = client.put(
        f"{base}/v2/{repository}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
    )
    if response.status_code != 201:
        raise RuntimeError(f"manifest upload failed: {response.status_code} {response.text}")
    digest = sha256_digest(body)
    if response.headers.get("docker-content-digest") != digest:
        raise RuntimeError(f"registry stored the manifest as {response.headers.get('docker-content-digest')}")
    return PushedManifest(digest=digest, media_type=media_type, size=len(body))


def push_image(
    base_url: str,
    repository: str,
    tag: str,
    *,
    media_type: str = OCI_MANIFEST,
    headers: Mapping[str, str] | None = None,
    verify: bool | ssl.SSLContext = True,
) -> PushedManifest:
    """Push a tiny single-layer image (OCI or Docker schema 2) and return its manifest's digest.

    The layer is random bytes, so every push yields a new digest; the registry does not unpack layers.
    ``headers`` carries an ``Authorization`` for registries behind authentication.
    """
    docker = media_type == DOCKER_MANIFEST
    layer = secrets.token_bytes(64)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
        }
    ).encode()
    with httpx.Client(headers=dict(headers or {}), timeout=10.0, verify=verify) as client:
        config_digest = _upload_blob(client, base_url, repository, config)
        layer_digest = _upload_blob(client, base_url, repository, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {"mediaType": DOCKER_LAYER if docker else OCI_LAYER, "digest": layer_digest, "size": len(layer)}
            ],
        }
        return _put_manifest(client, base_url, repository, tag, manifest)


def push_layers(
    base_url: str,
    repository: str,
    tag: str,
    layers: Sequence[bytes],
    *,
    architecture: str = "amd64",
    verify: bool | ssl.SSLContext = True,
) -> PushedManifest:
    """Push an OCI image made of exactly ``layers`` (a registry stores a blob pushed twice once)."""
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(x) for x in layers]},
        }
    ).encode()
    with httpx.Client(timeout=10.0, verify=verify) as client:
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": _upload_blob(client, base_url, repository, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": OCI_LAYER,
                    "digest": _upload_blob(client, base_url, repository, layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
        return _put_manifest(client, base_url, repository, tag, manifest)


def push_index(
    base_url: str,
    repository: str,
    tag: str,
    manifests: Sequence[PushedManifest],
    *,
    media_type: str = OCI_INDEX,
    headers: Mapping[str, str] | None = None,
    platforms: Sequence[str] | None = None,
    verify: bool | ssl.SSLContext = True,
) -> PushedManifest:
    """Push an image index (or Docker manifest list) over manifests already in ``repository``."""
    index = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.size,
                "platform": {"architecture": architecture, "os": "linux"},
            }
            for m, architecture in zip(manifests, platforms or ["amd64"] * len(manifests), strict=True)
        ],
    }
    with httpx.Client(headers=dict(headers or {}), timeout=10.0, verify=verify) as client:
        return _put_manifest(client, base_url, repository, tag, index)


# -- loopback HTTP servers ----------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True


class LoopbackServer:
    """A stdlib HTTP server on a free loopback port, served from a daemon thread until :meth:`stop`."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], server_class: type[ThreadingHTTPServer] = _QuietServer
    ) -> None:
        self._server = server_class(("127.0.0.1", 0), handler)
        self._server.owner = self  # type: ignore[attr-defined]  # handlers reach their server's state
        # A short poll interval keeps shutdown (which waits for the next poll) from costing 0.5 s a server.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name=type(self).__name__, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STOP_TIMEOUT_S)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's parameter name
        log.debug("%s: %s", type(self).__name__, format % args)

    def _send(self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _basic_user(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    with contextlib.suppress(ValueError):
        username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        return username, password
    return None


# -- the token realm ----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenRequest:
    """One request the token server saw (the password is never kept)."""

    username: str | None
    service: str | None
    scopes: list[str]
    status: int


class _TokenHandler(_Handler):
    def do_GET(self) -> None:
        server: TokenServer = self.server.owner  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        scopes = query.get("scope", [])
        service = query["service"][0] if query.get("service") else None
        user = _basic_user(self.headers.get("Authorization"))
        if url.path != "/token":
            status = 404
        elif user is None:
            status = 200 if server.anonymous else 401
        else:
            status = 200 if server.users.get(user[0]) == user[1] else 401
        with server.lock:
            server.requests.append(TokenRequest(user[0] if user else None, service, scopes, status))
        if status != 200:
            self._send(status, {"Content-Type": "application/json"}, b'{"details":"denied"}')
            return
        token = server.issue(scopes, subject=user[0] if user else "")
        with server.lock:
            server.issued.append(token)
        document: dict[str, Any] = {server.token_field: token, "issued_at": datetime.now(UTC).isoformat()}
        if server.expires_in is not None:
            document["expires_in"] = server.expires_in
        self._send(200, {"Content-Type": "application/json"}, json.dumps(document).encode())


class TokenServer(LoopbackServer):
    """A token realm (distribution token spec) for a registry running with ``auth: token``.

    Grants every action a scope asks for to a known user (and to anyone when ``anonymous``); the
    registry itself enforces the scope. Tokens are ES256 JWTs whose ``x5c`` header carries the
    self-signed certificate written to :attr:`rootcertbundle`.

    Args:
        workdir: where the certificate bundle is written.
        users: username → password accepted with Basic authentication.
        token_field: ``token`` or ``access_token``, the field the answer carries the token in.
        expires_in: seconds stated in the answer; ``None`` leaves the field out.
    """

    SERVICE = "acrsync-test-registry"
    ISSUER = "acrsync-test-issuer"

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str],
        anonymous: bool = False,
        token_field: str = "token",
        expires_in: int | None = 300,
    ) -> None:
        self.users = dict(users)
        self.anonymous = anonymous
        self.token_field = token_field
        self.expires_in = expires_in
        self.lock = threading.Lock()
        self.requests: list[TokenRequest] = []
        self.issued: list[str] = []  # every token handed out, so tests can look for leaks
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acrsync test token issuer")])
        now = datetime.now(UTC)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.rootcertbundle = Path(workdir) / "token-root.pem"
        self.rootcertbundle.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))
        super().__init__(_TokenHandler)

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def registry_auth(self) -> TokenAuth:
        return TokenAuth(realm=self.realm, service=self.SERVICE, issuer=self.ISSUER, rootcertbundle=self.rootcertbundle)

    def token_requests(self) -> list[TokenRequest]:
        with self.lock:
            return list(self.requests)

    def issue(self, scopes: Sequence[str], *, subject: str = "", lifetime_s: int = 300) -> str:
        """A signed token granting every requested ``type:name:actions`` scope."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        claims = {
            "iss": self.ISSUER,
            "sub": subject,
            "aud": self.SERVICE,
            "exp": now + lifetime_s,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self._certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")],
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        # JOSE wants the raw 64-byte r || s, not the DER signature cryptography produces.
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


# -- a scripted registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class StubAnswer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class StubRequest:
    method: str
    path: str
    authorization: str | None


class _StubHandler(_Handler):
    def _answer(self) -> None:
        server: StubRegistry = self.server.owner  # type: ignore[attr-defined]
        request = StubRequest(self.command, self.path, self.headers.get("Authorization"))
        with server.lock:
            server.requests.append(request)
        answer = server.respond(request)
        self._send(answer.status, answer.headers, answer.body)

    do_GET = _answer
    do_HEAD = _answer


class StubRegistry(LoopbackServer):
    """A loopback server answering every request with ``respond(request)``; records the requests."""

    def __init__(self, respond: Callable[[StubRequest], StubAnswer]) -> None:
        self.respond = respond
        self.lock = threading.Lock()
        self.requests: list[StubRequest] = []
        super().__init__(_StubHandler)

    def seen(self) -> list[StubRequest]:
        with self.lock:
            return list(self.requests)


@contextlib.contextmanager
def stub_registry(respond: Callable[[StubRequest], StubAnswer]) -> Iterator[StubRegistry]:
    server = StubRegistry(respond)
    try:
        yield server
    finally:
        server.stop()


def oci_layout(
    directory: Path, tag: str, layers: Sequence[bytes], *, annotations: Mapping[str, str] | None = None
) -> Path:
    """An OCI image layout on disk (what a build writes with ``--output type=oci``): one image of exactly
    ``layers`` under ``tag``, with ``annotations`` on its manifest, for skopeo to copy."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes, media_type: str) -> dict[str, Any]:
        digest = sha256_digest(data)
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(x) for x in layers]},
        }
    ).encode()
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": put(config, OCI_CONFIG),
        "layers": [put(layer, OCI_LAYER) for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    descriptor = put(json.dumps(manifest).encode(), OCI_MANIFEST)
    descriptor["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    return directory


def skopeo(*args: str) -> str:
    """Run skopeo (Debian's package) and return its standard output."""
    binary = shutil.which("skopeo")
    if binary is None:
        raise RuntimeError("skopeo is not installed (scripts/bootstrap --test installs it)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"skopeo {args[0]} failed: {done.stderr.strip()[:500]}")
    return done.stdout


def skopeo_push(layout: Path, tag: str, base_url: str, repository: str) -> str:
    """Copy the layout's ``tag`` into the registry at ``base_url`` (its own certificate not checked, as a
    test registry's); returns the manifest digest the registry holds."""
    host = urlsplit(base_url).netloc
    skopeo("copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{host}/{repository}:{tag}")
    return str(skopeo_inspect(base_url, repository, tag)["Digest"])


def skopeo_inspect(base_url: str, repository: str, tag: str, *, raw: bool = False) -> dict[str, Any]:
    host = urlsplit(base_url).netloc
    extra = ["--raw"] if raw else []
    return dict(json.loads(skopeo("inspect", *extra, "--tls-verify=false", f"docker://{host}/{repository}:{tag}")))
