"""The API commands: `releases`, `release`, `sites` (the list), `site`, `evidence` and `retry`.

Each one calls the status API (``--api-url``/``ACRSYNC_API_URL``, key in ``--api-key``/
``ACRSYNC_API_KEY``) and prints the answer per ``-o``/``--query`` (see :mod:`shared.cli.output`).
Listings print the list itself (``value``), so ``--query "[0].id"`` works as it does with ``az``.

A release is named by its id (32 hex characters) or by an image reference:
``registry/repository:tag``, ``registry/repository@sha256:...`` or ``repository:tag`` (the registry
is then ``ACRSYNC_REGISTRY`` when set, else any: a deployment watches one parent registry). A
reference resolves to the newest matching release.

Exit codes: 0 success, 1 not found or the API failed, 3 bad arguments (also a 400 from the API),
4 API unreachable or unauthorized.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import typer

from shared.cli import views
from shared.cli.app import ExitCode, app, sites_app
from shared.cli.client import API_URL_ENV, DEFAULT_API_URL, ApiClient, ApiError
from shared.cli.output import OnlyShowErrorsOption, Output, OutputOption, QueryOption, error
from shared.domain.names import (
    validate_digest,
    validate_login_server,
    validate_repository,
    validate_site_name,
    validate_tag,
)
from shared.errors import ConfigurationError, InvalidInput

REGISTRY_ENV = "ACRSYNC_REGISTRY"
RELEASE_ID = re.compile(r"[0-9a-fA-F]{32}")
RESOLVE_PAGE_SIZE = 50
RESOLVE_MAX_PAGES = 20
CSV_FORMAT = "csv"

ApiUrlOption = Annotated[str | None, typer.Option("--api-url", help="The acrsync API (env ACRSYNC_API_URL).")]
ApiKeyOption = Annotated[str | None, typer.Option("--api-key", help="The API key (env ACRSYNC_API_KEY).")]
ReleaseArgument = Annotated[
    str,
    typer.Argument(
        metavar="RELEASE",
        help="A release id (32 hex characters) or an image reference: registry/repository:tag, "
        "registry/repository@sha256:..., or repository:tag.",
    ),
]


# -- references -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """``[registry/]repository[:tag][@digest]``; at least one of tag and digest."""

    registry: str | None
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}" if self.registry else self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class Reference:
    """What the user named: a release id, or an image reference to resolve."""

    text: str
    release_id: str | None = None
    image: ImageRef | None = None

    def __str__(self) -> str:
        return str(self.image) if self.image is not None else self.release_id or self.text


def parse_reference(text: str) -> Reference:
    """A release id or an image reference, checked (the OCI grammar for each part).

    The first path component is a registry when it looks like a host (has a ``.`` or a ``:``, or is
    ``localhost``), as Docker reads references.

    Raises:
        InvalidInput: ``INVALID_REFERENCE`` (exit code 3).
    """
    value = text.strip()
    if RELEASE_ID.fullmatch(value):
        return Reference(text, release_id=value.lower())
    try:
        return Reference(text, image=_parse_image(value))
    except InvalidInput as exc:
        raise InvalidInput(
            "INVALID_REFERENCE",
            f"{text[:200]!r} is neither a release id (32 hex characters) nor an image reference "
            f"(registry/repository:tag or registry/repository@sha256:...): {exc.detail}",
        ) from exc


def _parse_image(value: str) -> ImageRef:
    name, at, digest = value.partition("@")
    if at and not digest:
        raise InvalidInput("INVALID_DIGEST", "nothing follows '@'")
    tag: str | None = None
    colon, slash = name.rfind(":"), name.rfind("/")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        validate_tag(tag)
    registry: str | None = None
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, name = validate_login_server(first), rest
    if not name:
        raise InvalidInput("INVALID_REPOSITORY", "the repository is missing")
    validate_repository(name)
    if digest:
        validate_digest(digest)
    if tag is None and not digest:
        raise InvalidInput("MISSING_TAG", "name a tag (repository:tag) or a digest (repository@sha256:...)")
    return ImageRef(registry, name, tag, digest or None)


def default_registry() -> str | None:
    value = os.environ.get(REGISTRY_ENV, "").strip().lower()
    return value or None


def find_release(client: ApiClient, image: ImageRef) -> dict[str, Any] | None:
    """The newest published release matching the image reference, or ``None``.

    Filters by repository and tag or digest on the server; the registry (the reference's, else
    ``ACRSYNC_REGISTRY``, else any) is matched here.

    Raises:
        ApiError, ApiUnreachable.
    """
    registry = image.registry or default_registry()
    params: dict[str, Any] | None = {
        "repository": image.repository,
        "tag": image.tag,
        "digest": image.digest,
        "top": RESOLVE_PAGE_SIZE,
    }
    path = "/api/releases"
    for _ in range(RESOLVE_MAX_PAGES):
        body = client.get_json(path, params=params)
        for item in body.get("value", []):
            if registry is None or str(item.get("registry", "")).lower() == registry:
                return dict(item)
        next_link = body.get("nextLink")
        if not next_link:
            return None
        path, params = str(next_link), None
    return None


class ReleaseNotFound(Exception):
    """No release matches the reference (exit code 1)."""

    def __init__(self, reference: Reference) -> None:
        if reference.image is not None:
            message = f"no release matches {reference} (has its push event arrived yet? `acrsync wait` waits for it)"
        else:
            message = f"release {reference.release_id} does not exist"
        super().__init__(message)


def resolve(client: ApiClient, reference: Reference) -> str:
    """The release id a reference names (an id is taken as it is).

    Raises:
        ReleaseNotFound: no release matches an image reference.
        ApiError, ApiUnreachable.
    """
    if reference.release_id is not None:
        return reference.release_id
    assert reference.image is not None
    found = find_release(client, reference.image)
    if found is None:
        raise ReleaseNotFound(reference)
    return str(found["id"])


# -- plumbing ---------------------------------------------------------------------------------


def open_client(api_url: str | None, api_key: str | None) -> ApiClient:
    """A client for ``--api-url`` (or ``ACRSYNC_API_URL``), checked to be an http(s) URL.

    Raises:
        ConfigurationError: not an http(s) URL (exit code 3).
    """
    url = api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigurationError(f"--api-url (or {API_URL_ENV}) must be an http(s) URL, not {url[:200]!r}")
    return ApiClient(url, api_key)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn an API error answer into a message and an exit code: 400 → 3, anything else (404, 5xx) → 1."""
    try:
        yield
    except ReleaseNotFound as exc:
        error(str(exc))
        raise typer.Exit(ExitCode.FAILED) from exc
    except ApiError as exc:
        error(f"{exc.detail} ({exc.code})")
        raise typer.Exit(ExitCode.USAGE if exc.status == 400 else ExitCode.FAILED) from exc


def release_path(release_id: str, suffix: str = "") -> str:
    return f"/api/releases/{quote(release_id, safe='')}{suffix}"


# -- commands ---------------------------------------------------------------------------------


@app.command("releases")
def releases(  # noqa: PLR0917 - typer maps each option to a parameter
    repository: Annotated[str | None, typer.Option(help="Only this repository (exact name).")] = None,
    tag: Annotated[str | None, typer.Option(help="Only releases with this tag.")] = None,
    digest: Annotated[str | None, typer.Option(help="Only this digest (sha256:...).")] = None,
    top: Annotated[int | None, typer.Option(help="Page size (1-200; the API's default is 50).", min=1, max=200)] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow nextLink: every matching release.")] = False,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """List published releases, newest push first (one page unless --all)."""
    out = Output.from_options(output, query, only_show_errors)
    params = {"repository": repository, "tag": tag, "digest": digest, "top": top}
    with api_errors(), open_client(api_url, api_key) as client:
        body = client.get_json("/api/releases", params=params)
        items = list(body.get("value", []))
        next_link = body.get("nextLink")
        while all_pages and next_link:
            body = client.get_json(str(next_link))
            items.extend(body.get("value", []))
            next_link = body.get("nextLink")
    if next_link:
        out.note("note: more releases match; add --all to list every one (or a larger --top)")
    out.emit_view(items, views.releases_rows)


@app.command("release")
def release(  # noqa: PLR0917 - typer maps each option to a parameter
    reference: ReleaseArgument,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """Show a release: its tags, counts per state and one entry per site.

    An image reference resolves to the newest release with that tag (or digest).
    """
    out = Output.from_options(output, query, only_show_errors)
    ref = parse_reference(reference)
    with api_errors(), open_client(api_url, api_key) as client:
        release_id = resolve(client, ref)
        try:
            detail = client.get_json(release_path(release_id))
        except ApiError as exc:
            if exc.status == 404:
                raise ReleaseNotFound(ref) from exc
            raise
    out.emit_view(detail, views.release_rows)


@sites_app.callback(invoke_without_command=True)
def sites(  # noqa: PLR0917 - typer maps each option to a parameter
    ctx: typer.Context,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """List every site (without a subcommand), or import a sites file (`sites import`)."""
    if ctx.invoked_subcommand is not None:
        return
    out = Output.from_options(output, query, only_show_errors)
    with api_errors(), open_client(api_url, api_key) as client:
        body = client.get_json("/api/sites")
    out.emit_view(list(body.get("value", [])), views.sites_rows)


@app.command("site")
def site(  # noqa: PLR0917 - typer maps each option to a parameter
    name: Annotated[str, typer.Argument(help="The site's name.")],
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """Show a site: scope, windows and health, and per repository what it holds and what runs there.

    With `-o table` (or tsv): one row per repository, held and running side by side, then the pull
    errors; json has everything (`running`, `pull_errors`, `health`, `repositories_state`).
    """
    out = Output.from_options(output, query, only_show_errors)
    validate_site_name(name)
    with api_errors(), open_client(api_url, api_key) as client:
        detail = client.get_json(f"/api/sites/{quote(name, safe='')}")
    out.emit_view(detail, views.site_rows)
    if out.format in {"table", "tsv"} and out.query is None and detail.get("pull_errors"):
        out.emit(
            [
                {
                    "image": e["image"],
                    "reason": e["reason"],
                    "count": e["count"],
                    "last seen": views.compact_time(e["last_seen_at"]),
                }
                for e in detail["pull_errors"]
            ]
        )


@sites_app.command("running")
def sites_running(  # noqa: PLR0917 - typer maps each option to a parameter
    repository: Annotated[str | None, typer.Option("--repository", help="Only this repository.")] = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """Per site, the digest running and the release it belongs to (release null: drift)."""
    out = Output.from_options(output, query, only_show_errors)
    if repository is not None:
        validate_repository(repository)
    with api_errors(), open_client(api_url, api_key) as client:
        body = client.get_json("/api/running", params={"repository": repository})
    out.emit_view(list(body.get("value", [])), views.running_rows)


@sites_app.command("report-token")
def sites_report_token(
    name: Annotated[str, typer.Argument(help="The site whose agent reports with it.")],
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Print the site's report token (ACRSYNC_REPORT_TOKEN of its `acrsync agent`); operators only."""
    validate_site_name(name)
    with api_errors(), open_client(api_url, api_key) as client:
        body = client.post_json(f"/api/sites/{quote(name, safe='')}/report-token")
    typer.echo(body["token"])


@app.command("evidence")
def evidence(  # noqa: PLR0917 - typer maps each option to a parameter
    reference: ReleaseArgument,
    site: Annotated[str | None, typer.Option("--site", help="Only this site's evidence.")] = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            envvar="ACRSYNC_OUTPUT",
            show_envvar=True,
            help="Output format: json, jsonc, yaml, tsv, table, none, or csv (the API's CSV as it is).",
        ),
    ] = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """Every evidence record of a release, oldest first: what changed at which site, why, and what proved it."""
    out = Output.from_options(output, query, only_show_errors, extra_formats=(CSV_FORMAT,))
    if out.format == CSV_FORMAT and query is not None:
        raise typer.BadParameter("--query does not apply to -o csv", param_hint="'--query'")
    if site is not None:
        validate_site_name(site)
    ref = parse_reference(reference)
    with api_errors(), open_client(api_url, api_key) as client:
        release_id = resolve(client, ref)
        if out.format == CSV_FORMAT:
            with client.stream(
                "GET", release_path(release_id, "/evidence"), params=_present(format=CSV_FORMAT, site=site)
            ) as response:
                _copy_to_stdout(response)
            return
        body = client.get_json(release_path(release_id, "/evidence"), params={"site": site})
    out.emit(list(body.get("value", [])))


@app.command("retry")
def retry(  # noqa: PLR0917 - typer maps each option to a parameter
    reference: ReleaseArgument,
    sites: Annotated[
        str,
        typer.Option("--sites", help="failed (every FAILED site), stale (every STALE site) or site names: a,b."),
    ],
    force: Annotated[bool, typer.Option("--force", help="Retry offline sites too.")] = False,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """Check sites of a release again: FAILED and STALE sites go back to PENDING; prints what was enqueued.
    An offline site is skipped (its check would only find it offline again) unless --force."""
    out = Output.from_options(output, query, only_show_errors)
    ref = parse_reference(reference)
    params = {"sites": sites, **({"force": "true"} if force else {})}
    with api_errors(), open_client(api_url, api_key) as client:
        release_id = resolve(client, ref)
        answer = client.post_json(release_path(release_id, "/retry"), params=params)
    offline = [entry["site"] for entry in answer.get("skipped", []) if entry.get("reason") == "SITE_OFFLINE"]
    if offline:
        out.note(
            f"warning: not retried, offline: {', '.join(offline)} (a check would find them offline again; --force)"
        )
    out.emit(answer)


@app.command("annotate")
def annotate(  # noqa: PLR0917 - typer maps each option to a parameter
    reference: ReleaseArgument,
    owner: Annotated[str | None, typer.Option("--owner", help="Who owns the release.")] = None,
    approval_url: Annotated[
        str | None, typer.Option("--approval-url", help="The approval's link (an absolute http(s) URL).")
    ] = None,
    change_record: Annotated[str | None, typer.Option("--change-record", help="The change record's id.")] = None,
    rollback_condition: Annotated[str | None, typer.Option("--rollback-condition", help="When to roll back.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Free text.")] = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """Record runbook fields on a release; the options given are set (an empty value clears one), the
    others stay. Who and when are recorded with them, and the release checkpoint signs them. Prints the
    release's annotations."""
    out = Output.from_options(output, query, only_show_errors)
    given = {
        "owner": owner,
        "approval_url": approval_url,
        "change_record": change_record,
        "rollback_condition": rollback_condition,
        "note": note,
    }
    body = {name: value for name, value in given.items() if value is not None}
    if not body:
        raise typer.BadParameter(
            "give at least one of --owner, --approval-url, --change-record, --rollback-condition, --note"
        )
    ref = parse_reference(reference)
    with api_errors(), open_client(api_url, api_key) as client:
        release_id = resolve(client, ref)
        try:
            answer = client.patch_json(release_path(release_id, "/annotations"), body)
        except ApiError as exc:
            if exc.status == 404:
                raise ReleaseNotFound(ref) from exc
            raise
    out.emit(answer)


def _present(**params: str | None) -> dict[str, str]:
    return {key: value for key, value in params.items() if value is not None}


def _copy_to_stdout(response: Any) -> None:
    """The body as the API sent it (bytes, CRLF line ends kept) when stdout has a binary buffer."""
    stdout = sys.stdout
    stdout.flush()
    buffer = getattr(stdout, "buffer", None)
    if buffer is not None:
        for chunk in response.iter_bytes():
            buffer.write(chunk)
        buffer.flush()
    else:
        for text in response.iter_text():
            stdout.write(text)
        stdout.flush()
