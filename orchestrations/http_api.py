"""The HTTP surface as one ASGI app: served by ``AsgiFunctionApp`` in Azure and by uvicorn locally.

host.json sets ``routePrefix`` to "" so the app sees the same paths in both places (``/api/...``).

Handlers are thin and synchronous (FastAPI runs them in its threadpool): decode and validate, one
service call (:mod:`shared.services.status`, :mod:`shared.services.operations`), map the answer.
Conventions: every error is ``application/problem+json`` with a stable
``code``; reads carry a strong ``ETag`` of their JSON and honour ``If-None-Match`` (304); listings
page with ``value``/``nextLink``; a pending readiness gate answers 202 with ``Retry-After`` and
``Location``; unknown query parameters are refused (``code``, the Azure function key, excepted).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from orchestrations import acr_events, dashboard, governance_api, report_api
from orchestrations.auth import (
    KEY_HEADER,
    KEY_QUERY,
    PRINCIPAL_HEADER,
    WEBHOOK_PREFIX,
    Principal,
    authorize,
    required_role,
)
from orchestrations.conditional import conditional_json, etag_matches, etag_of
from orchestrations.problems import PROBLEM_JSON, install_problem_handlers, problem_responses
from shared.bootstrap import get_services
from shared.domain.gate import MAX_RING_LENGTH, GatePolicy, GateSelection, GateState, parse_site_list
from shared.errors import InvalidInput
from shared.services import bundles, operations, status

RELEASE_ID_PATTERN = r"^[0-9a-f]{32}$"
SITE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
REPOSITORY_PATTERN = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
DIGEST_PATTERN = r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"
MAX_LIST_PARAMETER = 4096  # a comma list of site names; Azure caps the whole URL anyway
MAX_TOKEN_LENGTH = 4096
API_VERSION = "1.0.0"


# -- representations (for the OpenAPI document; handlers return the service views as they are) --


class TagPolicyModel(BaseModel):
    include: list[str]
    exclude: list[str]
    semver_only: bool


class WindowModel(BaseModel):
    opens_at: datetime
    closes_at: datetime


class SiteModel(BaseModel):
    name: str
    ring: str
    critical: bool
    owner: str | None
    repositories: list[str] = Field(description="Approved repositories: exact names or globs.")
    tags: TagPolicyModel = Field(description="The site's tag policy.")
    schedule: str | None = Field(description="Sync schedule (5-field cron, UTC); null for continuous sync.")
    sync_window: str | None = Field(description="ISO 8601 duration of each sync window, e.g. PT3H.")
    message_ttl: str = Field(description="ISO 8601 duration, e.g. P2D.")
    connected_registry: str | None = Field(description="ARM resource id of the site's connected registry.")
    endpoint: str | None = Field(description="The site registry's URL for direct manifest checks.")
    stale_after_windows: int
    next_window: WindowModel = Field(description="The window open now, or the next one to open.")
    connection_state: str | None = Field(
        description="Online, Offline, Syncing, Unhealthy or Unknown (ARM); null in the list and without ARM."
    )


class RepositoryStateModel(BaseModel):
    repository: str
    release_id: str
    digest: str
    tags: list[str]
    state: str
    reason: str | None
    pushed_at: datetime
    expected_ready_at: datetime | None
    synced_at: datetime | None
    verified_at: datetime | None


class SiteDetailModel(SiteModel):
    repositories_state: list[RepositoryStateModel] = Field(
        description="Per repository, the newest release checked at this site and where it stands."
    )


class SiteListModel(BaseModel):
    value: list[SiteModel]


class ReleaseModel(BaseModel):
    id: str = Field(description="32 hex characters, derived from (registry, repository, digest).")
    registry: str
    repository: str
    digest: str
    image: str = Field(description="<registry>/<repository>@<digest>")
    tags: list[str]
    media_type: str | None
    size: int | None
    kind: Literal["IMAGE", "CHART"]
    pushed_at: datetime
    actor: str | None
    withdrawn_at: datetime | None
    counts: dict[str, int] = Field(description="Site rows per state.")


class ReleasePageModel(BaseModel):
    value: list[ReleaseModel]
    nextLink: str | None = Field(default=None, description="The next page (same filters); absent on the last page.")


class ReleaseSiteModel(BaseModel):
    site: str
    ring: str | None = Field(description="null when the site was deleted after the release.")
    critical: bool | None
    state: str
    reason: str | None
    expected_ready_at: datetime | None
    synced_at: datetime | None
    verified_at: datetime | None
    stale_at: datetime | None
    updated_at: datetime
    evidence_source: str | None
    next_check_at: datetime | None


class ReleaseDetailModel(ReleaseModel):
    sites: list[ReleaseSiteModel]


class GateSelectionModel(BaseModel):
    kind: Literal["sites", "ring", "all"]
    sites: list[str] | None
    ring: str | None


class PendingSiteModel(BaseModel):
    site: str
    state: str | None
    reason: str | None
    critical: bool
    expected_ready_at: datetime | None
    next_check_at: datetime | None


class BlockedSiteModel(BaseModel):
    site: str
    state: str | None = Field(description="null for a selected site the release has no row for.")
    reason: str | None = Field(description="The row's reason, or SITE_OUT_OF_SCOPE for an explicit pick.")
    critical: bool


class GateReasonModel(BaseModel):
    code: Literal[
        "TOO_MANY_BLOCKED", "CRITICAL_SITE_BLOCKED", "RELEASE_WITHDRAWN", "NO_SITES_SELECTED", "ROLLBACK_NOT_READY"
    ]
    sites: list[str]


class RollbackCheckModel(BaseModel):
    site: str
    rollback_ready: bool
    reason: str = Field(description="PREVIOUS_PRESENT, or why the site could not roll back (see /rollback).")
    previous_release_id: str | None


class ReadinessModel(BaseModel):
    state: Literal["ready", "pending", "failed"]
    release_id: str
    selection: GateSelectionModel
    min_ready: float
    require_all_critical: bool
    ready: int = Field(description="Selected sites in SYNCED or VERIFIED.")
    total: int = Field(description="Selected sites.")
    required: int = Field(description="How many must be ready: ceil(min_ready * total), at least 1.")
    pending: list[PendingSiteModel]
    blocked: list[BlockedSiteModel] = Field(description="STALE, FAILED, WITHDRAWN and out-of-scope picks.")
    reasons: list[GateReasonModel] = Field(description="Why the gate failed; empty unless state is failed.")
    require_rollback: bool
    rollback_ready: bool = Field(description="Every selected in-scope site could roll back to N-1 (by evidence).")
    rollback: list[RollbackCheckModel] = Field(description="Per selected in-scope site.")


class EvidenceModel(BaseModel):
    id: str
    release_id: str
    site: str
    observed_at: datetime
    recorded_at: datetime
    source: str
    state_from: str | None
    state_to: str | None
    reason: str | None
    observed_digest: str | None
    summary: str
    details: dict[str, str]


class EvidenceListModel(BaseModel):
    release_id: str
    value: list[EvidenceModel]


class DsseSignatureModel(BaseModel):
    keyid: str
    sig: str = Field(description="Base64 Ed25519 signature over the DSSE PAE of payloadType and payload.")


class DsseEnvelopeModel(BaseModel):
    payloadType: str
    payload: str = Field(description="Base64 of the in-toto Statement v1 (canonical JSON).")
    signatures: list[DsseSignatureModel]


class EvidenceBundleModel(BaseModel):
    mediaType: str = Field(description="application/vnd.acrsync.evidence-bundle.v1+json")
    release: dict[str, Any] = Field(description="The release, with its receipt chain head (receipts).")
    keyid: str | None = Field(description="SHA-256 (hex) of the raw Ed25519 public key; null without a key.")
    public_key: str | None = Field(description="The Ed25519 public key (PEM); null without a key.")
    receipts: list[DsseEnvelopeModel] = Field(description="Signed delivery receipts, in sequence order.")


class SigningKeyModel(BaseModel):
    keyid: str
    algorithm: str
    public_key: str = Field(description="PEM (SubjectPublicKeyInfo).")


class SkippedSiteModel(BaseModel):
    site: str
    state: str | None = Field(description="The row's state; null when the site has no row in this release.")


class RetryModel(BaseModel):
    release_id: str
    requested: list[str] = Field(description="The sites the request named or selected.")
    enqueued: list[str] = Field(description="Sites a check was enqueued for.")
    skipped: list[SkippedSiteModel] = Field(description="Sites left alone (ready, withdrawn, out of scope).")


class EventModel(BaseModel):
    specversion: str
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]


class EventPageModel(BaseModel):
    value: list[EventModel]
    nextLink: str | None = Field(default=None, description="Absent when no later event exists yet.")


# -- request checks ---------------------------------------------------------------------------


def reject_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not declare, and repeated ones (``code`` excepted)."""
    route = request.scope.get("route")
    declared = _declared_query(route) if route is not None else set()
    seen: set[str] = set()
    for key, _ in request.query_params.multi_items():
        if key == KEY_QUERY:
            continue
        if key not in declared:
            raise InvalidInput("UNKNOWN_QUERY_PARAMETER", f"unknown query parameter {key[:64]!r}")
        if key in seen:
            raise InvalidInput("DUPLICATE_QUERY_PARAMETER", f"query parameter {key[:64]!r} is given more than once")
        seen.add(key)


def _declared_query(route: Any) -> set[str]:
    names: set[str] = set()
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        names.update(field.alias for field in dependant.query_params)
        pending.extend(dependant.dependencies)
    return names


ReleaseId = Annotated[
    str, Path(pattern=RELEASE_ID_PATTERN, description="The release id (32 lower-case hex characters).")
]
SiteName = Annotated[str, Path(pattern=SITE_PATTERN, max_length=63, description="The site name.")]
IfNoneMatch = Annotated[
    str | None, Header(max_length=2048, description="Answer 304 when the representation still has this ETag.")
]
CallerPrincipal = Annotated[Principal | None, Depends(authorize)]

_CONDITIONAL: dict[int | str, dict[str, Any]] = {304: {"description": "Not modified: If-None-Match matched the ETag."}}
_READ_ERRORS = problem_responses(400, 401, 403, 503)
_ITEM_ERRORS = problem_responses(400, 401, 403, 404, 503)

router = APIRouter(prefix="/api", dependencies=[Depends(reject_unknown_query)])


# -- sites ------------------------------------------------------------------------------------


@router.get(
    "/sites",
    operation_id="listSites",
    tags=["sites"],
    response_model=SiteListModel,
    responses={**_CONDITIONAL, **_READ_ERRORS},
)
def list_sites(if_none_match: IfNoneMatch = None) -> Response:
    """Every site, ordered by name, with its next sync window (`connection_state` is null here)."""
    return conditional_json({"value": status.list_sites(get_services())}, if_none_match)


@router.get(
    "/sites/{site}",
    operation_id="getSite",
    tags=["sites"],
    response_model=SiteDetailModel,
    responses={**_CONDITIONAL, **_ITEM_ERRORS},
)
def get_site(site: SiteName, if_none_match: IfNoneMatch = None) -> Response:
    """One site: its connected registry's state from ARM (best effort: Unknown when ARM cannot say)
    and the newest release of each repository checked there."""
    return conditional_json(status.site_detail(get_services(), site), if_none_match)


# -- releases ---------------------------------------------------------------------------------


@router.get(
    "/releases",
    operation_id="listReleases",
    tags=["releases"],
    response_model=ReleasePageModel,
    responses={**_CONDITIONAL, **_READ_ERRORS},
)
def list_releases(
    *,
    request: Request,
    repository: Annotated[
        str | None, Query(pattern=REPOSITORY_PATTERN, max_length=255, description="Exact repository name.")
    ] = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN, max_length=128, description="A tag of the release.")] = None,
    digest: Annotated[str | None, Query(pattern=DIGEST_PATTERN, max_length=200, description="Exact digest.")] = None,
    top: Annotated[int, Query(ge=1, le=status.MAX_PAGE_SIZE, description="Page size.")] = status.DEFAULT_PAGE_SIZE,
    continuation: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_TOKEN_LENGTH, description="Opaque token from a previous nextLink."),
    ] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Published releases, newest push first, filtered by exact repository, tag and digest."""
    page = status.list_releases(
        get_services(), repository=repository, tag=tag, digest=digest, top=top, continuation=continuation
    )
    body: dict[str, Any] = {"value": page.value}
    if page.continuation is not None:
        body["nextLink"] = _link(request, continuation=page.continuation)
    return conditional_json(body, if_none_match)


@router.get(
    "/releases/{release_id}",
    operation_id="getRelease",
    tags=["releases"],
    response_model=ReleaseDetailModel,
    responses={**_CONDITIONAL, **_ITEM_ERRORS},
)
def get_release(release_id: ReleaseId, if_none_match: IfNoneMatch = None) -> Response:
    """The release with one entry per site (ring and critical from the site catalog)."""
    return conditional_json(status.release_detail(get_services(), release_id), if_none_match)


@router.get(
    "/releases/{release_id}/readiness",
    operation_id="getReadiness",
    tags=["releases"],
    response_model=ReadinessModel,
    responses={
        202: {
            "model": ReadinessModel,
            "description": "Pending: poll Location again after Retry-After seconds.",
            "headers": {
                "Retry-After": {
                    "description": "Seconds until the earliest predicted change among pending sites (10 to 3600).",
                    "schema": {"type": "integer", "minimum": 10, "maximum": 3600},
                },
                "Location": {"description": "This gate's URL, to poll.", "schema": {"type": "string"}},
            },
        },
        **_CONDITIONAL,
        **_ITEM_ERRORS,
    },
)
def get_readiness(
    *,
    release_id: ReleaseId,
    request: Request,
    sites: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_LIST_PARAMETER,
            description="Comma-separated site names (a pick the release does not go to counts as blocked).",
        ),
    ] = None,
    ring: Annotated[
        str | None, Query(min_length=1, max_length=MAX_RING_LENGTH, description="Every in-scope site of a ring.")
    ] = None,
    min_ready: Annotated[
        float,
        Query(gt=0, le=1, allow_inf_nan=False, description="Fraction of selected sites that must be ready."),
    ] = 1.0,
    require_all_critical: Annotated[bool, Query(description="Every selected critical site must be ready too.")] = True,
    require_rollback: Annotated[
        bool, Query(description="Fail (ROLLBACK_NOT_READY) unless every selected site could roll back to N-1.")
    ] = False,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The readiness gate: 200 `ready`, 202 `pending` (Retry-After, Location) or 200 `failed`.

    Selection: `sites` or `ring` (not both), else every in-scope site. Blocked sites are STALE,
    FAILED, WITHDRAWN, or explicit picks the release does not go to. `failed` once the policy can
    no longer be met (too many blocked, a critical site blocked, the release withdrawn, nothing selected).
    """
    selection = GateSelection(sites=parse_site_list(sites) if sites is not None else None, ring=ring)
    policy = GatePolicy(
        min_ready=min_ready, require_all_critical=require_all_critical, require_rollback=require_rollback
    )
    verdict, body = status.readiness(get_services(), release_id, selection, policy)
    if verdict.state is GateState.PENDING:
        headers = {"Retry-After": str(verdict.retry_after), "Location": _link(request)}
        return conditional_json(body, if_none_match, status_code=202, headers=headers)
    return conditional_json(body, if_none_match)


@router.get(
    "/releases/{release_id}/evidence",
    operation_id="listEvidence",
    tags=["releases"],
    response_model=EvidenceListModel | EvidenceBundleModel,
    responses={
        200: {
            "description": "Evidence records, oldest observation first (JSON, or CSV with a header row), "
            "or the signed delivery receipts as a bundle (format=bundle).",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **_CONDITIONAL,
        **_ITEM_ERRORS,
    },
)
def list_evidence(
    *,
    release_id: ReleaseId,
    format: Annotated[
        Literal["json", "csv", "bundle"], Query(description="json (default), csv or bundle (signed receipts).")
    ] = "json",
    site: Annotated[str | None, Query(pattern=SITE_PATTERN, max_length=63, description="Only this site.")] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Every observation recorded about the release (optionally at one site): what changed, why,
    and the values it relied on."""
    if format == "bundle":
        if site is not None:
            raise InvalidInput("CONFLICTING_SELECTION", "format=bundle covers every site of a release: drop site")
        return conditional_json(bundles.evidence_bundle(get_services(), release_id), if_none_match)
    records = status.list_evidence(get_services(), release_id, site=site)
    if format == "csv":
        text = status.evidence_csv(records)
        name = f"acrsync-evidence-{release_id}" + (f"-{site}" if site else "") + ".csv"
        etag = etag_of(text.encode())
        headers = {"ETag": etag, "Cache-Control": "no-cache", "Content-Disposition": f'attachment; filename="{name}"'}
        if etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        return Response(text, media_type="text/csv; charset=utf-8", headers=headers)
    body = {"release_id": release_id, "value": [status.evidence_view(record) for record in records]}
    return conditional_json(body, if_none_match)


@router.get(
    "/signing-key",
    operation_id="getSigningKey",
    tags=["releases"],
    response_model=SigningKeyModel,
    responses={**_CONDITIONAL, **problem_responses(400, 401, 403, 404, 503)},
)
def get_signing_key(if_none_match: IfNoneMatch = None) -> Response:
    """The public key that verifies signed delivery receipts (404 `SIGNING_KEY_NOT_CONFIGURED` without one)."""
    return conditional_json(bundles.signing_key_view(get_services()), if_none_match)


@router.post(
    "/releases/{release_id}/retry",
    operation_id="retrySites",
    tags=["operations"],
    status_code=202,
    response_model=RetryModel,
    responses={
        202: {
            "description": "Checks enqueued; follow the release at Location.",
            "headers": {"Location": {"description": "The release.", "schema": {"type": "string"}}},
        },
        **_ITEM_ERRORS,
    },
)
def retry(
    *,
    release_id: ReleaseId,
    request: Request,
    principal: CallerPrincipal,
    sites: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_LIST_PARAMETER,
            description="failed (every FAILED row), stale (every STALE row) or comma-separated site names.",
        ),
    ],
    repeatability_request_id: Annotated[
        str | None,
        Header(
            alias="Repeatability-Request-ID",
            min_length=1,
            max_length=128,
            description="Optional client request id; a repeated retry is harmless either way.",
        ),
    ] = None,
) -> Response:
    """Re-enqueue checks: FAILED and STALE rows move to PENDING (reason OPERATOR_RETRY, operator
    evidence); PENDING and WAITING_FOR_WINDOW rows get a fresh check; other rows are skipped."""
    request_spec = operations.RetryRequest.parse(sites)
    result = operations.retry_sites(
        get_services(),
        release_id,
        request_spec,
        actor=principal.name if principal is not None else None,
        request_id=repeatability_request_id,
    )
    body = {
        "release_id": result.release_id,
        "requested": result.requested,
        "enqueued": result.enqueued,
        "skipped": [{"site": s.site, "state": s.state.value if s.state else None} for s in result.skipped],
    }
    headers = {"Location": _absolute(request, f"/api/releases/{release_id}"), "Cache-Control": "no-store"}
    if repeatability_request_id is not None:
        headers["Repeatability-Result"] = "accepted"
    return JSONResponse(body, status_code=202, headers=headers)


# -- events -----------------------------------------------------------------------------------


@router.get(
    "/events",
    operation_id="listEvents",
    tags=["events"],
    response_model=EventPageModel,
    responses={**_CONDITIONAL, **_ITEM_ERRORS},
)
def list_events(
    *,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=status.MAX_EVENTS, description="Page size.")] = 100,
    after: Annotated[
        str | None, Query(min_length=1, max_length=512, description="Only events published after this event id.")
    ] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """acrsync's own events from the local outbox, in publication order (404 OUTBOX_NOT_AVAILABLE
    when they go to an Event Grid topic)."""
    page = status.list_events(get_services(), limit=limit, after=after)
    body: dict[str, Any] = {"value": page.value}
    if page.continuation is not None:
        body["nextLink"] = _link(request, after=page.continuation)
    return conditional_json(body, if_none_match)


# -- helpers ----------------------------------------------------------------------------------


def _link(request: Request, **replace: str) -> str:
    """This request's absolute URL with some query parameters replaced; never the function key."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != KEY_QUERY and k not in replace]
    return str(request.url.replace(query=urlencode([*kept, *replace.items()])))


def _absolute(request: Request, path: str) -> str:
    return str(request.url.replace(path=path, query=""))


# -- the app ----------------------------------------------------------------------------------


def create_app() -> FastAPI:
    app = FastAPI(
        title="acrsync",
        version=API_VERSION,
        summary="Which digest is at which edge site, since when, and what proves it.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # Every route, including ones mounted later (dev routes), passes the credential check;
        # authorize() itself knows which paths are public.
        dependencies=[Depends(authorize)],
    )

    install_problem_handlers(app)
    app.include_router(acr_events.router)
    app.include_router(router)
    app.include_router(governance_api.router, dependencies=[Depends(reject_unknown_query)])
    app.include_router(dashboard.router)
    app.include_router(report_api.router, dependencies=[Depends(reject_unknown_query)])

    @app.get("/api/healthz", tags=["health"], operation_id="healthz")
    def healthz() -> dict[str, Any]:
        """Liveness and the backends this process uses (never secrets)."""
        return {"status": "ok", "backends": get_services().settings.describe()}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_SECURITY_SCHEMES = {
    "functionKey": {
        "type": "apiKey",
        "in": "header",
        "name": KEY_HEADER,
        "description": "Azure function key, or the local ACRSYNC_API_KEY (also accepted as ?code=).",
    },
    "functionKeyQuery": {"type": "apiKey", "in": "query", "name": KEY_QUERY},
    "appServicePrincipal": {
        "type": "apiKey",
        "in": "header",
        "name": PRINCIPAL_HEADER,
        "description": "Set by App Service Authentication (Entra ID); app roles Status.Read and Sync.Operate.",
    },
}


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, adjusted to what the app really answers: errors are problem+json with an
    x-ms-error-code header, 400 replaces FastAPI's 422, and protected operations name their security."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=(
            "Errors are RFC 9457 application/problem+json with a stable `code`, mirrored in `x-ms-error-code`. "
            "Unknown query parameters are refused with 400 UNKNOWN_QUERY_PARAMETER. Reads carry a strong ETag "
            "and honour If-None-Match. nextLink never carries the function key: send it as x-functions-key."
        ),
        routes=app.routes,
    )
    for path, operations_of_path in document.get("paths", {}).items():
        for method, operation in operations_of_path.items():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    _as_problem(response)
            role = required_role(method.upper(), path)
            if role is not None:
                operation["security"] = [{"functionKey": []}, {"functionKeyQuery": []}, {"appServicePrincipal": []}]
                operation["description"] = (
                    operation.get("description", "")
                    + f"\n\nNeeds the app role {role.value} when a principal is present."
                ).strip()
            elif path.startswith(WEBHOOK_PREFIX):
                _document_webhook(method, operation)
            else:
                operation["security"] = []
    components = document.setdefault("components", {})
    schemas = components.get("schemas", {})
    if not _references(document.get("paths", {}), "HTTPValidationError"):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    components["securitySchemes"] = _SECURITY_SCHEMES
    return document


def _document_webhook(method: str, operation: dict[str, Any]) -> None:
    """The ingress answers problems too, and 401 when the local API key is set."""
    responses = operation.setdefault("responses", {})
    if method == "options":
        responses["200"] = {
            "description": "Handshake accepted: WebHook-Allowed-Origin names the origin that asked.",
            "headers": {"WebHook-Allowed-Origin": {"schema": {"type": "string"}}},
        }
    statuses = ("400", "401") if method == "options" else ("400", "401", "404")
    for status_code in statuses:
        responses[status_code] = {"description": "Problem."}
        _as_problem(responses[status_code])
    operation["security"] = [{"functionKey": []}, {"functionKeyQuery": []}, {}]


def _as_problem(response: dict[str, Any]) -> None:
    content = response.get("content", {})
    schema = content.pop("application/json", {}).get("schema") or {"$ref": "#/components/schemas/Problem"}
    content[PROBLEM_JSON] = {"schema": schema}
    response["content"] = content
    response.setdefault("headers", {})["x-ms-error-code"] = {
        "description": "The problem's stable code.",
        "schema": {"type": "string"},
    }


def _references(value: Any, name: str) -> bool:
    if isinstance(value, dict):
        return any(_references(item, name) for item in value.values())
    if isinstance(value, list):
        return any(_references(item, name) for item in value)
    return isinstance(value, str) and value.endswith("/" + name)


asgi_app = create_app()
