"""The API's representations, for the OpenAPI document.

Handlers return the services' views as they are (no second serialisation); the models describe them, and
refuse fields they do not declare, so ``tests/unit/orchestrations/test_api_package.py`` can validate real
answers against them and a view that grows a field without its model fails a test.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """A representation: exactly the fields documented here."""

    model_config = ConfigDict(extra="forbid")


class TagPolicyModel(Model):
    include: list[str]
    exclude: list[str]
    semver_only: bool


class WindowModel(Model):
    opens_at: datetime
    closes_at: datetime


class TokenModel(Model):
    token: str = Field(description="The token's name.")
    token_id: str = Field(description="Its ARM resource id.")
    role: Literal["sync", "client"]
    status: str | None = Field(description="ARM's enabled or disabled; null when ARM cannot say.")
    state: Literal["ok", "expiring", "expired", "missing", "unknown"]
    expires_at: datetime | None = Field(description="The next password expiry (the last one once all expired).")
    days_left: int | None
    expiring: bool = Field(description="Expiring within the horizon, or expired.")
    checked_at: datetime | None = Field(default=None, description="When the sweeper checked it (lists only).")


class LinkModel(Model):
    bandwidth_bps: float = Field(description="Declared bandwidth in bits per second (`link.bandwidth: 2Mbit/s`).")


class SiteModel(Model):
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
    tokens: dict[str, TokenModel] | None = Field(
        description="The site's sync and client tokens by name: in the list what this instance's sweeper last "
        "found (with checked_at), in one site read from ARM now; null when unknown or without a connected registry."
    )
    cluster_id: str | None = Field(
        description="ARM id of the site's Arc connected cluster (health, Container Insights)."
    )
    log_analytics_workspace_id: str | None = Field(description="Log Analytics workspace of its Container Insights.")
    reporter: bool = Field(description="Whether an acrsync agent at the site sends reports.")
    link: LinkModel | None = Field(description="The site's link as its sites file declares it; null when it does not.")


class RepositoryStateModel(Model):
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


class WorkloadModel(Model):
    namespace: str
    kind: str = Field(description="The pod's controller (ReplicaSet, DaemonSet, StatefulSet, Job...) or Pod.")
    name: str
    pods: int


class RunningImageModel(Model):
    repository: str
    digest: str = Field(description="What the kubelet reports the containers run (imageID).")
    release_id: str | None = Field(description="The release acrsync knows for this digest; null: drift.")
    tags: list[str] = Field(description="The tags the pods' image references name.")
    workloads: list[WorkloadModel]
    pods: int
    first_seen_at: datetime
    last_seen_at: datetime
    source: Literal["container-insights", "site-agent", "simulated"]


class SiteRunningModel(RunningImageModel):
    site: str


class RunningListModel(Model):
    value: list[SiteRunningModel]


class PullErrorModel(Model):
    image: str
    reason: str = Field(description="ErrImagePull, ImagePullBackOff, ... or the Warning event's reason.")
    message: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    source: str | None


class ExtensionModel(Model):
    state: str = Field(description="The connected registry Arc extension's provisioning state, or NotInstalled.")
    version: str | None
    errors: list[str]


class SiteHealthModel(Model):
    cluster_connectivity: str = Field(
        description="Connected, Connecting, Offline, Expired, AgentNotInstalled, Unknown."
    )
    extension: ExtensionModel | None
    tls_expires_at: datetime | None = Field(description="The site registry's TLS certificate expiry.")
    last_report_at: datetime | None = Field(description="When the site's reporter last observed.")
    disconnected_pull: Literal["ok", "failed", "unknown"] = Field(
        description="Whether the site registry served what the site should hold without the cloud."
    )
    disconnected_pull_checked_at: datetime | None
    disconnected_pull_failures: list[str]


class SiteDetailModel(SiteModel):
    repositories_state: list[RepositoryStateModel] = Field(
        description="Per repository, the newest release checked at this site and where it stands (held, not run)."
    )
    running: list[RunningImageModel] = Field(description="What runs at the site, per repository and digest.")
    running_omitted: int = Field(description="Running images left out of a very large site's list.")
    pull_errors: list[PullErrorModel] = Field(description="Images the site could not pull in the last 24 hours.")
    health: SiteHealthModel


class ExpectedDigestModel(Model):
    repository: str
    digest: str
    release_id: str


class ReportAcceptedModel(Model):
    site: str
    duplicate: bool = Field(description="A report with this id was accepted before: nothing changed.")
    running: int = Field(description="Repository digests running at the site after this report.")
    drift: int = Field(description="Of which no release acrsync knows.")
    receipts: int = Field(description="RUNNING receipts signed for first sightings.")
    expected: list[ExpectedDigestModel] = Field(
        description="What the site should hold (the newest release of each repository it holds): the agent "
        "checks these at its registry on its next run."
    )


class ReportTokenModel(Model):
    site: str
    token: str = Field(description="Send as Authorization: Bearer <token> to POST /api/sites/{site}/reports.")


class SiteListModel(Model):
    value: list[SiteModel]


class AnnotationsModel(Model):
    owner: str | None = Field(description="Who owns the release (at most 200 characters).")
    approval_url: str | None = Field(description="The approval's link: an absolute http(s) URL (at most 2,048).")
    change_record: str | None = Field(description="The change record's id (at most 200 characters).")
    rollback_condition: str | None = Field(description="When to roll back (at most 2,000 characters).")
    note: str | None = Field(description="Free text (at most 4,000 characters).")
    set_by: str | None = Field(description="Who made the last change (the caller's principal).")
    set_at: datetime | None = Field(description="When the last change was made.")


class AnnotationsPatchModel(Model):
    """Fields to set; a field left out stays, `null` or `""` clears it."""

    owner: str | None = None
    approval_url: str | None = None
    change_record: str | None = None
    rollback_condition: str | None = None
    note: str | None = None


class AnnotationChangeModel(Model):
    at: datetime
    by: str
    changed: dict[str, str | None] = Field(
        description="The fields this change set, each with the SHA-256 (first 16 hex) of its new value; null: cleared."
    )


class ImageAnnotationsModel(Model):
    source: str | None = Field(default=None, description="org.opencontainers.image.source")
    revision: str | None = Field(default=None, description="org.opencontainers.image.revision")
    created: str | None = Field(default=None, description="org.opencontainers.image.created")
    version: str | None = Field(default=None, description="org.opencontainers.image.version")


class ReleaseModel(Model):
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
    counts_as_of: datetime | None = Field(
        description="When the counts were taken. A listing shows the release's summary, which lags the "
        "rows by up to one summary interval (15 s plus queue latency); a single release counts its rows."
    )
    size_bytes: int | None = Field(
        description="Compressed bytes of every distinct blob (config and layers of every platform), read once from "
        "the parent registry after fan-out; null until then, or with `size_unknown_reason`."
    )
    layers: int | None = Field(description="Distinct layer blobs; null while the size is unknown.")
    platforms: list[str] | None = Field(description="Platforms of an image index (os/architecture[/variant]).")
    size_unknown_reason: str | None = Field(
        description="MANIFEST_UNREADABLE (read again at the next summary), NOT_AN_IMAGE, TOO_LARGE or NOT_READ."
    )
    image_annotations: ImageAnnotationsModel | None = Field(
        description="The image's OCI annotations (read with its weight); null until then."
    )
    annotations: AnnotationsModel = Field(description="The runbook fields recorded on the release.")


class ReleasePageModel(Model):
    value: list[ReleaseModel]
    nextLink: str | None = Field(default=None, description="The next page (same filters); absent on the last page.")


class TransferRateModel(Model):
    bits_per_second: float
    source: Literal["declared", "observed"] = Field(
        description="`declared`: the sites file's link.bandwidth; `observed`: the median of the site's past arrivals."
    )


class ReleaseSiteModel(Model):
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
    running_pods: int = Field(description="Pods running this digest at the site at the last observation.")
    running_since: datetime | None = Field(description="When it was first seen running there (a RUNNING receipt).")
    offline_since: datetime | None = Field(
        description="Set while the site's connected registry is offline (its last activity); "
        "`expected_ready_at` is then null: nothing says when it is back."
    )
    bytes_needed: int | None = Field(
        description="Bytes of the release the site did not hold (its blobs minus those of the repository's "
        "releases the site has received); null until the release is weighed."
    )
    link: TransferRateModel | None = Field(
        description="The link rate the estimate used, and whether it was declared or learned; null when none."
    )


class AdoptionModel(Model):
    holding: int = Field(description="Sites whose registry holds the release (SYNCED or VERIFIED).")
    running: int = Field(description="Sites running it now.")
    ran: int = Field(description="Sites that were ever seen running it.")


class ReleaseDetailModel(ReleaseModel):
    sites: list[ReleaseSiteModel]
    adoption: AdoptionModel
    annotation_history: list[AnnotationChangeModel] = Field(
        description="Every change to the annotations, oldest first (the newest 30 are kept)."
    )


class GateSelectionModel(Model):
    kind: Literal["sites", "ring", "all"]
    sites: list[str] | None
    ring: str | None


class PendingSiteModel(Model):
    site: str
    state: str | None
    reason: str | None
    critical: bool
    expected_ready_at: datetime | None
    next_check_at: datetime | None
    offline_since: datetime | None = Field(description="Set while the site is offline (then no estimate).")


class BlockedSiteModel(Model):
    site: str
    state: str | None = Field(description="null for a selected site the release has no row for.")
    reason: str | None = Field(description="The row's reason, or SITE_OUT_OF_SCOPE for an explicit pick.")
    critical: bool


class GateReasonModel(Model):
    code: Literal[
        "TOO_MANY_BLOCKED",
        "CRITICAL_SITE_BLOCKED",
        "RELEASE_WITHDRAWN",
        "NO_SITES_SELECTED",
        "ROLLBACK_NOT_READY",
        "APPROVAL_MISSING",
    ]
    sites: list[str]


class RollbackCheckModel(Model):
    site: str
    rollback_ready: bool
    reason: str = Field(description="PREVIOUS_PRESENT, or why the site could not roll back (see /rollback).")
    previous_release_id: str | None


class ReadinessModel(Model):
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
    require_running: bool = Field(description="Sites count as ready once they run the digest, not when they hold it.")
    running: int = Field(description="Selected sites seen running the digest.")
    stale: Literal["blocked", "pending"] = Field(description="Whether STALE sites counted as blocked or as pending.")
    expected_ready_at: datetime | None = Field(
        description="When the policy should be met, from the pending sites' expected ready times; null when ready, "
        "failed, or it cannot be told (expected_ready_reason says why)."
    )
    expected_ready_reason: str | None = Field(
        description="Why there is no estimate while pending (e.g. an offline site), or, with an estimate, why it "
        "is later than the next windows (EXCEEDS_WINDOW: sites whose bytes do not fit them)."
    )
    require_rollback: bool
    require_approval: bool = Field(description="Whether the release must carry an approval link.")
    rollback_ready: bool | None = Field(
        description="Every selected in-scope site could roll back to N-1 (by evidence); null unless asked for."
    )
    rollback: list[RollbackCheckModel] | None = Field(
        description="Per selected in-scope site; null unless `rollback=true` or `require_rollback=true`."
    )


class EvidenceModel(Model):
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


class EvidenceListModel(Model):
    release_id: str
    value: list[EvidenceModel]


class DsseSignatureModel(Model):
    keyid: str
    sig: str = Field(description="Base64 Ed25519 signature over the DSSE PAE of payloadType and payload.")


class DsseEnvelopeModel(Model):
    payloadType: str
    payload: str = Field(description="Base64 of the in-toto Statement v1 (canonical JSON).")
    signatures: list[DsseSignatureModel]


class CheckpointSiteModel(Model):
    site: str
    state: str
    sequence: int = Field(description="How many receipts the site's chain holds (0: none yet).")
    head: str | None = Field(description="SHA-256 (hex) of the site's newest receipt envelope; null without one.")


class CheckpointModel(Model):
    envelope: DsseEnvelopeModel = Field(
        description="The signed release checkpoint: an in-toto statement (predicateType "
        "https://acrsync.dev/release-checkpoint/v1) naming the Merkle root (RFC 6962) over sites."
    )
    sites: list[CheckpointSiteModel] = Field(description="The tree's leaves: every site in scope, by name.")


class EvidenceBundleModel(Model):
    mediaType: str = Field(description="application/vnd.acrsync.evidence-bundle.v2+json")
    release: dict[str, Any] = Field(description="The release, counted from its rows.")
    keyid: str = Field(description="SHA-256 (hex) of the raw Ed25519 public key.")
    public_key: str = Field(description="The Ed25519 public key (PEM).")
    checkpoint: CheckpointModel
    annotations: dict[str, Any] | None = Field(
        description="The release's runbook fields and their history ({fields, history}); the checkpoint's "
        "predicate carries their SHA-256 (canonical JSON). null when none were recorded."
    )
    receipts: list[DsseEnvelopeModel] = Field(
        description="Signed delivery receipts of every site up to the head the checkpoint names, by site, "
        "then sequence."
    )
    release_chain_receipts: list[DsseEnvelopeModel] = Field(
        description="Receipts of the per-release chain (releases written before receipts chained per site), "
        "in sequence order; its head is in the checkpoint."
    )


class SigningKeyModel(Model):
    keyid: str
    algorithm: str
    public_key: str = Field(description="PEM (SubjectPublicKeyInfo).")


class SkippedSiteModel(Model):
    site: str
    state: str | None = Field(description="The row's state; null when the site has no row in this release.")
    reason: str | None = Field(description="SITE_OFFLINE: not retried, the site is offline (force=true retries it).")


class RetryModel(Model):
    release_id: str
    requested: list[str] = Field(description="The sites the request named or selected.")
    enqueued: list[str] = Field(description="Sites a check was enqueued for.")
    skipped: list[SkippedSiteModel] = Field(description="Sites left alone (ready, withdrawn, out of scope, offline).")


class EventModel(Model):
    specversion: str
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]


class EventPageModel(Model):
    value: list[EventModel]
    nextLink: str | None = Field(default=None, description="Absent when no later event exists yet.")


# -- governance, rollback and reports ----------------------------------------------------------


class PatternGapModel(Model):
    pattern: str
    overlaps: list[str] = Field(description="Patterns on the other side that cover part of this one.")


class DriftModel(Model):
    site: str
    connected_registry: str | None
    token_id: str | None = Field(description="The sync token whose scope map was compared.")
    status: Literal["ok", "drift", "unknown", "not-applicable"] = Field(
        description="ok (no drift), drift, unknown (no connected registry, sync token or scope map), or "
        "not-applicable (the connected registry syncs with its managed identity: no scope map exists)."
    )
    reason: str | None = Field(description="Why the drift is unknown; null otherwise.")
    approved: list[str] = Field(description="The site's approved repositories (names or globs).")
    granted: list[str] | None = Field(
        description="Repositories the scope map lets the site sync (repositories/<repo>/content/read)."
    )
    over_exposed: list[PatternGapModel] = Field(description="Granted patterns no approved pattern covers.")
    over_exposed_count: int = Field(description="How many granted patterns are over-exposed (ARM has no catalog).")
    missing: list[PatternGapModel] = Field(description="Approved patterns no grant covers: never synced.")
    missing_count: int


class CurrentReleaseModel(Model):
    release_id: str
    digest: str
    tags: list[str]
    state: str | None = Field(description="The site's row for it; null when the site has no row yet.")


class PreviousReleaseModel(Model):
    release_id: str
    digest: str
    tags: list[str]
    state: str = Field(description="SYNCED or VERIFIED: N-1 reached the site.")
    withdrawn_at: datetime | None = Field(description="Set only with reason PREVIOUS_WITHDRAWN.")
    present: bool | None = Field(description="Still at the site; null when a fresh check could not tell.")
    evidence_source: str | None = Field(description="What says so: the latest evidence's source, or oci-probe.")
    observed_at: datetime | None
    probe_error: str | None = Field(description="unreachable or refused when a fresh check failed.")


class RepositoryRollbackModel(Model):
    repository: str
    current: CurrentReleaseModel | None = Field(
        description="The newest release of the repository the site admits that is not withdrawn."
    )
    previous: PreviousReleaseModel | None = Field(
        description="N-1: the newest older release the site admits that is not withdrawn and reached the site."
    )
    rollback_ready: bool
    reason: str = Field(
        description="PREVIOUS_PRESENT, NO_CURRENT_RELEASE, NO_PREVIOUS_RELEASE, PREVIOUS_WITHDRAWN, "
        "PREVIOUS_NOT_PRESENT or PREVIOUS_PRESENCE_UNKNOWN."
    )


class SiteRollbackModel(Model):
    site: str
    value: list[RepositoryRollbackModel]


class ExposureModel(Model):
    repositories_approved: int = Field(description="The site's approved repository patterns.")
    drift: bool | None = Field(description="Its sync scope differs from its approvals; null when unknown.")
    over_exposed: int | None = Field(description="Scope-map patterns no approval covers; null when unknown.")
    missing: int | None = Field(description="Approvals no scope-map pattern covers; null when unknown.")


class SiteReportModel(Model):
    site: str
    ring: str
    critical: bool
    releases_received: int = Field(description="Rows in scope of releases pushed in the period.")
    releases_ready: int = Field(description="Of those, rows SYNCED or VERIFIED now.")
    lag_median_seconds: float | None = Field(description="Push to SYNCED/VERIFIED; null when none arrived.")
    lag_p95_seconds: float | None
    windows_missed: int = Field(description="Rows that went STALE with reason WINDOW_MISSED.")
    stale_incidents: int = Field(description="Evidence records moving a row to STALE.")
    bytes_delivered: int = Field(
        description="Bytes the rows that arrived needed (their bytes_needed), summed; unweighed releases count 0."
    )
    exposure: ExposureModel


class ReportModel(Model):
    since: datetime
    until: datetime
    value: list[SiteReportModel]


# -- dashboard view models ---------------------------------------------------------------------


class MatrixSiteModel(Model):
    name: str
    critical: bool
    offline_since: datetime | None = Field(description="Offline since, by the rows shown; null when not.")
    last_delivery_at: datetime | None = Field(description="The newest arrival (synced or verified) among them.")
    stale: int = Field(description="Releases shown that are STALE at the site.")
    failed: int = Field(description="Releases shown that FAILED at the site.")


class MatrixRingModel(Model):
    name: str
    sites: list[MatrixSiteModel] = Field(description="In sites-file order.")


class RingRollUpModel(Model):
    ring: str
    total: int = Field(description="In-scope sites of the ring (SKIPPED ones left out).")
    ready: int
    pending: int
    stale: int
    failed: int
    withdrawn: int
    running: int


class MatrixCellModel(Model):
    state: str
    reason: str | None = None
    expected_ready_at: datetime | None = None
    offline_since: datetime | None = None
    running_pods: int | None = None
    running_since: datetime | None = None


class MatrixReleaseModel(Model):
    id: str
    repository: str
    tags: list[str]
    digest: str
    pushed_at: datetime
    withdrawn_at: datetime | None
    rings: list[RingRollUpModel] = Field(description="One roll-up per ring, in the order of `rings`.")
    cells: list[MatrixCellModel | None] = Field(
        description="One per site, in the order of `rings[].sites` (null: the release has no row there)."
    )


class MatrixAlertModel(Model):
    site: str
    critical: bool
    offline_since: datetime | None
    stale: int
    failed: int
    reasons: list[str]


class MatrixPageModel(Model):
    shown: int
    top: int
    continuation: str | None = Field(description="Pass as `continuation` for older releases; null on the last page.")


class MatrixModel(Model):
    rings: list[MatrixRingModel] = Field(description="In the order the sites file gives.")
    releases: list[MatrixReleaseModel] = Field(description="Newest push first.")
    alerts: list[MatrixAlertModel] = Field(description="Sites with stale or failed releases shown, critical first.")
    page: MatrixPageModel


class ReleasePageViewModel(Model):
    release: ReleaseDetailModel
    gate: ReadinessModel = Field(description="The default gate: every in-scope site, critical sites required.")
    evidence: list[EvidenceModel] = Field(description="Newest first, at most 100.")
    evidence_total: int
