"""What runs at a site: the containers its cluster runs, the pull errors it meets and its health.

A registry holding a digest is not the same as a site running it. Sources tell acrsync what runs:
Container Insights from the cloud (no agent), the site's own reporter (``acrsync agent``), or the
simulation. Each hands over one :class:`SiteObservation` (a snapshot of one moment); the site's
:class:`SiteRuntime` is what acrsync keeps of them: per (repository, digest), the workloads and
pods running it, since when it was first seen and when last, plus the pull errors of a window and
the site's health. The runtime is one bounded document per site (:func:`fit_runtime`).

Plain values and pure functions; the adapters build observations, :mod:`shared.services.workloads`
merges and stores them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from shared.domain.model import Site
from shared.errors import InvalidInput

# What one site's runtime keeps; with the longest names it stays within one stored document.
MAX_RUNNING_IMAGES = 64
MAX_WORKLOADS_PER_IMAGE = 8
MAX_PULL_ERRORS = 32
MAX_MESSAGE_CHARS = 300
MAX_REPORT_IDS = 32
MAX_TAGS_PER_IMAGE = 8
# The stored document's budget (UTF-16 code units), below the stores' 32,000 limit.
RUNTIME_BUDGET = 30_000
# Pull errors older than this are history, not a current problem.
PULL_ERROR_WINDOW = timedelta(hours=24)

_E = TypeVar("_E", bound=StrEnum)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")
# The waiting reasons the kubelet gives a container whose image it cannot pull.
PULL_FAILURE_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "RegistryUnavailable",
        "ImageInspectError",
    }
)
# The Warning event reasons the kubelet records for the same (KubeEvents.Reason).
PULL_FAILURE_EVENT_REASONS = frozenset({"Failed", "BackOff", "InspectFailed", "ErrImageNeverPull"})


class ObservationSource(StrEnum):
    """Who saw what runs at a site."""

    CONTAINER_INSIGHTS = "container-insights"  # Log Analytics: KubePodInventory + ContainerInventory
    SITE_AGENT = "site-agent"  # acrsync agent at the site, through the Kubernetes API
    SIMULATED = "simulated"  # acrsync dev's simulated sites


class ClusterConnectivity(StrEnum):
    """The Arc connected cluster's ``connectivityStatus`` (``UNKNOWN`` when nobody could read it)."""

    CONNECTED = "Connected"
    CONNECTING = "Connecting"
    OFFLINE = "Offline"
    EXPIRED = "Expired"
    AGENT_NOT_INSTALLED = "AgentNotInstalled"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, value: object) -> ClusterConnectivity:
        return _member(cls, value, cls.UNKNOWN)


class DisconnectedPull(StrEnum):
    """Whether the site's registry serves what it should hold without the cloud (manifest + a blob)."""

    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


class ExtensionState(StrEnum):
    """The connected registry Arc extension's provisioning state, or that there is none."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CREATING = "Creating"
    UPDATING = "Updating"
    DELETING = "Deleting"
    CANCELED = "Canceled"
    NOT_INSTALLED = "NotInstalled"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, value: object) -> ExtensionState:
        return _member(cls, value, cls.UNKNOWN)


def _member(kind: type[_E], value: object, default: _E) -> _E:
    """The member whose value is ``value`` whatever its case (ARM's casing varies), else ``default``."""
    text = str(value or "").strip().lower()
    return next((member for member in kind if member.value.lower() == text), default)


# -- image references ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageReference:
    """``[host[:port]/]repository[:tag][@digest]`` split into its parts."""

    host: str | None
    repository: str
    tag: str | None
    digest: str | None


def parse_image_reference(text: str) -> ImageReference:
    """Split an image reference as Kubernetes shows it (``image`` or ``imageID``; a runtime prefix such
    as ``docker-pullable://`` is dropped). The first path component is a host when it has a dot, a
    colon or is ``localhost`` (the distribution reference grammar).

    Raises:
        InvalidInput: ``INVALID_IMAGE_REFERENCE``.
    """
    value = text.strip() if isinstance(text, str) else ""
    value = value.split("://", 1)[1] if "://" in value else value
    if not value or len(value) > 512 or any(ch.isspace() for ch in value):
        raise InvalidInput("INVALID_IMAGE_REFERENCE", "an image reference is a non-empty name without spaces")
    name, _, digest = value.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidInput("INVALID_IMAGE_REFERENCE", "the digest of an image reference is sha256:<64 hex>")
    if _DIGEST.fullmatch(name):  # a bare image id
        return ImageReference(None, "", None, name)
    host: str | None = None
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, name = first, rest
    tag: str | None = None
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
    if not name:
        raise InvalidInput("INVALID_IMAGE_REFERENCE", "an image reference names a repository")
    return ImageReference(host, name, tag or None, digest or None)


def digest_of(image_id: str | None) -> str | None:
    """The ``sha256:`` digest in an ``imageID`` (``repo@sha256:...``, ``sha256:...``), else ``None``."""
    if not image_id:
        return None
    tail = image_id.rsplit("@", 1)[-1].rsplit("://", 1)[-1]
    return tail if _DIGEST.fullmatch(tail) else None


# -- observations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningContainer:
    """One container of one pod, as a source saw it running."""

    namespace: str
    pod: str
    container: str
    image: str  # the reference the pod spec or status names
    digest: str | None  # what the kubelet reports it runs (imageID), when it says
    workload_kind: str | None = None  # the pod's controller: ReplicaSet, DaemonSet, StatefulSet, Job...
    workload_name: str | None = None


@dataclass(frozen=True)
class PullError:
    """One image a site could not pull, with how often and when (one entry per image and reason)."""

    image: str
    reason: str
    message: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    source: ObservationSource | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.image, self.reason

    def merged(self, other: PullError) -> PullError:
        return replace(
            self,
            message=other.message if other.last_seen_at >= self.last_seen_at else self.message,
            count=max(self.count, other.count),
            first_seen_at=min(self.first_seen_at, other.first_seen_at),
            last_seen_at=max(self.last_seen_at, other.last_seen_at),
        )


@dataclass(frozen=True)
class ExtensionHealth:
    """The connected registry Arc extension as ARM shows it."""

    state: ExtensionState
    version: str | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryCluster:
    """An Arc connected cluster that runs the connected registry extension (what discovery matches)."""

    cluster_id: str
    name: str
    extension_name: str


@dataclass(frozen=True)
class DisconnectedPullCheck:
    """One disconnected-pull check at the site: the digest, and whether its manifest and a blob came back."""

    repository: str
    digest: str
    result: DisconnectedPull
    detail: str | None = None


@dataclass(frozen=True)
class SiteObservation:
    """What one source saw at a site at ``observed_at``. ``containers`` is a full snapshot of what
    runs (``None``: this source does not say); the health fields are ``None`` where it does not say."""

    site: str
    source: ObservationSource
    observed_at: datetime
    containers: tuple[RunningContainer, ...] | None = None
    pull_errors: tuple[PullError, ...] = ()
    cluster_connectivity: ClusterConnectivity | None = None
    extension: ExtensionHealth | None = None
    tls_expires_at: datetime | None = None
    disconnected_pull: tuple[DisconnectedPullCheck, ...] | None = None
    report_id: str | None = None


# -- the runtime kept per site -------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A controller running an image at a site, with how many of its pods run it."""

    namespace: str
    kind: str
    name: str
    pods: int


@dataclass(frozen=True)
class RunningImage:
    """One digest of one repository running at a site."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    workloads: tuple[Workload, ...]
    pods: int
    first_seen_at: datetime
    last_seen_at: datetime
    source: ObservationSource
    release_id: str | None = None  # the release acrsync knows for it; None: drift

    @property
    def key(self) -> tuple[str, str]:
        return self.repository, self.digest


@dataclass(frozen=True)
class SiteHealth:
    """What acrsync last learnt about a site beyond its registry's sync state."""

    cluster_connectivity: ClusterConnectivity = ClusterConnectivity.UNKNOWN
    extension: ExtensionHealth | None = None
    tls_expires_at: datetime | None = None
    last_report_at: datetime | None = None
    disconnected_pull: DisconnectedPull = DisconnectedPull.UNKNOWN
    disconnected_pull_checked_at: datetime | None = None
    disconnected_pull_failures: tuple[str, ...] = ()  # "repository@digest: why", for the operator


@dataclass(frozen=True)
class SiteRuntime:
    """Everything acrsync keeps about what runs at one site (one stored document per site)."""

    site: str
    running: tuple[RunningImage, ...] = ()
    pull_errors: tuple[PullError, ...] = ()
    health: SiteHealth = field(default_factory=SiteHealth)
    # The newest snapshot applied per source: an older one (a buffered report) adds to history only.
    snapshots: Mapping[ObservationSource, datetime] = field(default_factory=dict)
    report_ids: tuple[str, ...] = ()  # the newest reports accepted, so a resent one changes nothing
    updated_at: datetime | None = None
    # Running images left out to keep the document within its budget (the fewest pods go first).
    omitted_images: int = 0
    # Keys (announcement_key) of the site events published lately: pull failed, outdated, TLS expiring go out once.
    announced: tuple[str, ...] = ()

    def has_report(self, report_id: str) -> bool:
        return report_id in self.report_ids

    def running_image(self, repository: str, digest: str) -> RunningImage | None:
        return next((image for image in self.running if image.key == (repository, digest)), None)


def announcement_key(event_id: str) -> str:
    """What :attr:`SiteRuntime.announced` keeps of an event id (ids can be long; this is 20 characters)."""
    return hashlib.sha256(event_id.encode()).hexdigest()[:20]


def validate_report_id(text: object) -> str:
    """Raises: InvalidInput ``INVALID_REPORT_ID``."""
    if not isinstance(text, str) or not _REPORT_ID.fullmatch(text):
        raise InvalidInput(
            "INVALID_REPORT_ID", "a report id is 8 to 128 letters, digits, '.', '_', ':' or '-' (a UUID will do)"
        )
    return text


@dataclass
class _Grouped:
    tags: set[str] = field(default_factory=set)
    pods: set[tuple[str, str]] = field(default_factory=set)
    workloads: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)


def running_images(
    site: Site, containers: Iterable[RunningContainer], *, source: ObservationSource, at: datetime
) -> list[RunningImage]:
    """The containers of ``site``'s approved repositories grouped per (repository, digest). A container
    whose runtime does not report a digest yet is not counted (it is not running a known image);
    images of other registries (the repositories the site does not approve) are not acrsync's."""
    grouped: dict[tuple[str, str], _Grouped] = {}
    for container in containers:
        try:
            reference = parse_image_reference(container.image)
        except InvalidInput:
            continue
        digest = container.digest or reference.digest
        if digest is None or not site.approves_repository(reference.repository):
            continue
        entry = grouped.setdefault((reference.repository, digest), _Grouped())
        if reference.tag:
            entry.tags.add(reference.tag)
        entry.pods.add((container.namespace, container.pod))
        workload = (container.namespace, container.workload_kind or "Pod", container.workload_name or container.pod)
        entry.workloads.setdefault(workload, set()).add(container.pod)
    images = []
    for (repository, digest), entry in grouped.items():
        workloads = sorted(
            (Workload(ns, kind, name, len(pods)) for (ns, kind, name), pods in entry.workloads.items()),
            key=lambda w: (-w.pods, w.namespace, w.kind, w.name),
        )[:MAX_WORKLOADS_PER_IMAGE]
        images.append(
            RunningImage(
                repository=repository,
                digest=digest,
                tags=tuple(sorted(entry.tags)),
                workloads=tuple(workloads),
                pods=len(entry.pods),
                first_seen_at=at,
                last_seen_at=at,
                source=source,
            )
        )
    return sorted(images, key=lambda image: image.key)


@dataclass(frozen=True)
class RuntimeChange:
    """A runtime after an observation, and what changed that others should hear about."""

    runtime: SiteRuntime
    started: tuple[RunningImage, ...]  # (repository, digest) running that was not before
    stopped: tuple[RunningImage, ...]
    new_pull_errors: tuple[PullError, ...]  # an (image, reason) not among the current errors before


def apply_observation(
    runtime: SiteRuntime, observation: SiteObservation, images: Sequence[RunningImage] | None, *, now: datetime
) -> RuntimeChange:
    """Merge one observation into the runtime.

    ``images`` (the observation's containers as :func:`running_images`) replaces what the same source
    said before when the snapshot is the newest of that source; an older snapshot (a report buffered
    while the uplink was down) only moves the ``first_seen_at`` of images that still run back to when
    it saw them. Other sources' images are kept: the newest snapshot of each source counts. Pull
    errors merge per (image, reason) and drop out after :data:`PULL_ERROR_WINDOW`.
    """
    previous_at = runtime.snapshots.get(observation.source)
    newest = previous_at is None or observation.observed_at >= previous_at
    running, started, stopped = _merged_running(runtime, observation.source, images, newest=newest)
    snapshots = dict(runtime.snapshots)
    if images is not None and newest:
        snapshots[observation.source] = observation.observed_at
    errors, new_errors = _merged_errors(runtime.pull_errors, observation.pull_errors, now)
    report_ids = runtime.report_ids
    if observation.report_id is not None and observation.report_id not in report_ids:
        report_ids = (*report_ids, observation.report_id)[-MAX_REPORT_IDS:]
    updated = replace(
        runtime,
        running=tuple(sorted(running, key=lambda image: image.key)),
        pull_errors=tuple(sorted(errors, key=lambda e: (e.last_seen_at, e.key), reverse=True)),
        health=_merged_health(runtime.health, observation),
        snapshots=snapshots,
        report_ids=report_ids,
        updated_at=now,
        omitted_images=0,
    )
    return RuntimeChange(fit_runtime(updated), tuple(started), tuple(stopped), tuple(new_errors))


def _merged_running(
    runtime: SiteRuntime, source: ObservationSource, images: Sequence[RunningImage] | None, *, newest: bool
) -> tuple[list[RunningImage], list[RunningImage], list[RunningImage]]:
    """What runs after a snapshot of ``source``, and what started and stopped with it."""
    before = {image.key: image for image in runtime.running}
    running = dict(before)
    started: list[RunningImage] = []
    stopped: list[RunningImage] = []
    if images is None:
        return list(running.values()), started, stopped
    if not newest:
        for image in images:
            known = running.get(image.key)
            if known is not None and image.first_seen_at < known.first_seen_at:
                running[image.key] = replace(known, first_seen_at=image.first_seen_at)
        return list(running.values()), started, stopped
    seen = {image.key: image for image in images}
    for key, image in before.items():
        if image.source is source and key not in seen:
            stopped.append(image)
            del running[key]
    for key, image in seen.items():
        known = before.get(key)
        if known is None:
            started.append(image)
            running[key] = image
        else:
            first = min(known.first_seen_at, image.first_seen_at)
            running[key] = replace(image, first_seen_at=first, release_id=image.release_id or known.release_id)
    return list(running.values()), started, stopped


def _merged_errors(
    current: Sequence[PullError], observed: Sequence[PullError], now: datetime
) -> tuple[list[PullError], list[PullError]]:
    """The pull errors of the window after an observation, and those it added."""
    errors = {error.key: error for error in current if now - error.last_seen_at <= PULL_ERROR_WINDOW}
    new_errors = []
    for error in observed:
        if now - error.last_seen_at > PULL_ERROR_WINDOW:
            continue
        known = errors.get(error.key)
        if known is None:
            new_errors.append(error)
            errors[error.key] = error
        else:
            errors[error.key] = known.merged(error)
    return list(errors.values()), new_errors


def _merged_health(health: SiteHealth, observation: SiteObservation) -> SiteHealth:
    changes: dict[str, object] = {}
    if observation.cluster_connectivity is not None:
        changes["cluster_connectivity"] = observation.cluster_connectivity
    if observation.extension is not None:
        changes["extension"] = observation.extension
    if observation.tls_expires_at is not None:
        changes["tls_expires_at"] = observation.tls_expires_at
    if observation.source is ObservationSource.SITE_AGENT:
        last = health.last_report_at
        changes["last_report_at"] = observation.observed_at if last is None else max(last, observation.observed_at)
    checks = observation.disconnected_pull
    checked = health.disconnected_pull_checked_at
    if checks is not None and (checked is None or observation.observed_at >= checked):
        failures = tuple(
            f"{check.repository}@{check.digest}: {check.detail or check.result.value}"[:MAX_MESSAGE_CHARS]
            for check in checks
            if check.result is DisconnectedPull.FAILED
        )
        if failures:
            result = DisconnectedPull.FAILED
        elif checks and all(check.result is DisconnectedPull.OK for check in checks):
            result = DisconnectedPull.OK
        else:
            result = DisconnectedPull.UNKNOWN
        changes.update(
            disconnected_pull=result,
            disconnected_pull_checked_at=observation.observed_at,
            disconnected_pull_failures=failures[:MAX_PULL_ERRORS],
        )
    return replace(health, **changes) if changes else health  # type: ignore[arg-type]


def fit_runtime(runtime: SiteRuntime) -> SiteRuntime:
    """The runtime within its bounds (:data:`RUNTIME_BUDGET`): strings cut, then the images with the
    fewest pods, the oldest pull errors and the smallest workloads left out until it fits; how many
    images were left out is kept (``omitted_images``)."""
    cut = MAX_MESSAGE_CHARS
    running = sorted(runtime.running, key=lambda image: (-image.pods, image.key))
    running = [
        replace(
            image,
            tags=tuple(tag[:128] for tag in image.tags[:MAX_TAGS_PER_IMAGE]),
            workloads=image.workloads[:MAX_WORKLOADS_PER_IMAGE],
        )
        for image in running
    ]
    errors = [
        replace(error, message=error.message[:cut], image=error.image[:cut], reason=error.reason[:64])
        for error in runtime.pull_errors[:MAX_PULL_ERRORS]
    ]
    keep = min(len(running), MAX_RUNNING_IMAGES)
    workloads_each = MAX_WORKLOADS_PER_IMAGE

    def build() -> SiteRuntime:
        kept = [replace(image, workloads=image.workloads[:workloads_each]) for image in running[:keep]]
        return replace(
            runtime,
            running=tuple(sorted(kept, key=lambda image: image.key)),
            pull_errors=tuple(errors),
            omitted_images=runtime.omitted_images + len(runtime.running) - keep,
        )

    fitted = build()
    while runtime_size(fitted) > RUNTIME_BUDGET:
        if workloads_each > 2:
            workloads_each -= 2
        elif len(errors) > MAX_PULL_ERRORS // 4:
            errors = errors[: len(errors) // 2]
        elif keep > 0:
            keep = keep * 3 // 4
        else:
            break
        fitted = build()
    return fitted


# -- documents -----------------------------------------------------------------------------------


def runtime_to_doc(runtime: SiteRuntime) -> dict[str, Any]:
    """The one stored form of a site runtime (every store adapter keeps this document)."""
    health = runtime.health
    return {
        "site": runtime.site,
        "running": [
            {
                "repository": image.repository,
                "digest": image.digest,
                "tags": list(image.tags),
                "workloads": [[w.namespace, w.kind, w.name, w.pods] for w in image.workloads],
                "pods": image.pods,
                "first_seen_at": _iso(image.first_seen_at),
                "last_seen_at": _iso(image.last_seen_at),
                "source": image.source.value,
                "release_id": image.release_id,
            }
            for image in runtime.running
        ],
        "pull_errors": [
            [
                e.image,
                e.reason,
                e.message,
                e.count,
                _iso(e.first_seen_at),
                _iso(e.last_seen_at),
                e.source.value if e.source else None,
            ]
            for e in runtime.pull_errors
        ],
        "health": {
            "cluster_connectivity": health.cluster_connectivity.value,
            "extension": (
                {
                    "state": health.extension.state.value,
                    "version": health.extension.version,
                    "errors": list(health.extension.errors),
                }
                if health.extension is not None
                else None
            ),
            "tls_expires_at": _iso(health.tls_expires_at),
            "last_report_at": _iso(health.last_report_at),
            "disconnected_pull": health.disconnected_pull.value,
            "disconnected_pull_checked_at": _iso(health.disconnected_pull_checked_at),
            "disconnected_pull_failures": list(health.disconnected_pull_failures),
        },
        "snapshots": {source.value: _iso(at) for source, at in runtime.snapshots.items()},
        "report_ids": list(runtime.report_ids),
        "updated_at": _iso(runtime.updated_at),
        "omitted_images": runtime.omitted_images,
        "announced": list(runtime.announced),
    }


def runtime_from_doc(doc: Mapping[str, Any]) -> SiteRuntime:
    health = doc.get("health") or {}
    assert isinstance(health, dict)
    extension = health.get("extension")
    return SiteRuntime(
        site=str(doc["site"]),
        running=tuple(
            RunningImage(
                repository=item["repository"],
                digest=item["digest"],
                tags=tuple(item["tags"]),
                workloads=tuple(Workload(*w) for w in item["workloads"]),
                pods=int(item["pods"]),
                first_seen_at=_parse(item["first_seen_at"]),  # type: ignore[arg-type]
                last_seen_at=_parse(item["last_seen_at"]),  # type: ignore[arg-type]
                source=ObservationSource(item["source"]),
                release_id=item.get("release_id"),
            )
            for item in doc.get("running") or []
        ),
        pull_errors=tuple(
            PullError(
                image,
                reason,
                message,
                int(count),
                _parse(first),  # type: ignore[arg-type]
                _parse(last),  # type: ignore[arg-type]
                ObservationSource(source) if source else None,
            )
            for image, reason, message, count, first, last, source in doc.get("pull_errors") or []
        ),
        health=SiteHealth(
            cluster_connectivity=ClusterConnectivity.parse(health.get("cluster_connectivity")),
            extension=(
                ExtensionHealth(
                    ExtensionState.parse(extension.get("state")),
                    extension.get("version"),
                    tuple(extension.get("errors") or ()),
                )
                if isinstance(extension, dict)
                else None
            ),
            tls_expires_at=_parse(health.get("tls_expires_at")),
            last_report_at=_parse(health.get("last_report_at")),
            disconnected_pull=DisconnectedPull(health.get("disconnected_pull") or DisconnectedPull.UNKNOWN.value),
            disconnected_pull_checked_at=_parse(health.get("disconnected_pull_checked_at")),
            disconnected_pull_failures=tuple(health.get("disconnected_pull_failures") or ()),
        ),
        snapshots={
            ObservationSource(source): _parse(at)  # type: ignore[misc]
            for source, at in (doc.get("snapshots") or {}).items()
        },
        report_ids=tuple(doc.get("report_ids") or ()),
        updated_at=_parse(doc.get("updated_at")),
        omitted_images=int(doc.get("omitted_images") or 0),
        announced=tuple(doc.get("announced") or ()),
    )


def runtime_size(runtime: SiteRuntime) -> int:
    """The stored document's length in UTF-16 code units (the stores' document limit counts these)."""
    text = json.dumps(runtime_to_doc(runtime), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return len(text.encode("utf-16-le")) // 2


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _parse(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


# -- site reports (what acrsync agent sends) -----------------------------------------------------

REPORT_SCHEMA = "https://acrsync.dev/site-report/v1"
MAX_REPORT_PODS = 2000
MAX_CONTAINERS_PER_POD = 32
MAX_REPORT_CHECKS = 64
# A report may be this old when it arrives (buffered at the site while the uplink was down) ...
MAX_REPORT_AGE = timedelta(days=7)
# ... and this far ahead of acrsync's clock (the site's clock drifts).
MAX_CLOCK_SKEW = timedelta(minutes=10)
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_AGENT = ObservationSource.SITE_AGENT


def parse_site_report(site: str, document: object, *, now: datetime) -> SiteObservation:
    """The observation a site's reporter sends (``POST /api/sites/{site}/reports``), validated whole
    before anything is stored. Shape (``schema`` :data:`REPORT_SCHEMA`)::

        {"schema": ..., "id": "<uuid>", "site": "<site>", "observed_at": "<RFC 3339>",
         "pods": [{"namespace", "name", "controller": {"kind", "name"} | null,
                   "containers": [{"name", "image", "image_id", "waiting_reason", "message"}]}],
         "registry": {"tls_expires_at": "<RFC 3339>" | null,
                      "checks": [{"repository", "digest", "result": "ok" | "failed", "detail"}]} | null}

    Raises:
        InvalidInput: ``INVALID_REPORT`` naming the first field that is wrong (``INVALID_REPORT_ID``
            for the id, ``SITE_MISMATCH`` when the body names another site, ``REPORT_TOO_OLD`` /
            ``REPORT_FROM_THE_FUTURE`` for its time).
    """
    if not isinstance(document, dict):
        raise InvalidInput("INVALID_REPORT", "a site report is a JSON object")
    if document.get("schema") != REPORT_SCHEMA:
        raise InvalidInput("INVALID_REPORT", f"schema must be {REPORT_SCHEMA!r}")
    report_id = validate_report_id(document.get("id"))
    if document.get("site") != site:
        named = str(document.get("site"))[:64]
        raise InvalidInput("SITE_MISMATCH", f"the report is about site {named!r}, not {site!r}")
    observed_at = _report_time(document.get("observed_at"), "observed_at")
    if observed_at > now + MAX_CLOCK_SKEW:
        raise InvalidInput("REPORT_FROM_THE_FUTURE", "observed_at is ahead of acrsync's clock by more than 10 minutes")
    if observed_at < now - MAX_REPORT_AGE:
        raise InvalidInput("REPORT_TOO_OLD", "observed_at is more than 7 days ago; such a report is not kept")
    pods = document.get("pods")
    if not isinstance(pods, list) or len(pods) > MAX_REPORT_PODS:
        raise InvalidInput("INVALID_REPORT", f"pods must be a list of at most {MAX_REPORT_PODS}")
    containers: list[RunningContainer] = []
    errors: dict[tuple[str, str], PullError] = {}
    for index, pod in enumerate(pods):
        _read_pod(pod, f"pods[{index}]", observed_at, containers, errors)
    tls_expires_at, checks = _read_registry(document.get("registry"))
    return SiteObservation(
        site=site,
        source=ObservationSource.SITE_AGENT,
        observed_at=observed_at,
        containers=tuple(containers),
        pull_errors=tuple(errors.values()),
        tls_expires_at=tls_expires_at,
        disconnected_pull=checks,
        report_id=report_id,
    )


def _read_pod(
    pod: object,
    where: str,
    observed_at: datetime,
    containers: list[RunningContainer],
    errors: dict[tuple[str, str], PullError],
) -> None:
    """One pod of a report: its running containers into ``containers``, its pull failures into ``errors``."""
    if not isinstance(pod, dict):
        raise InvalidInput("INVALID_REPORT", f"{where} is not an object")
    namespace = _name(pod.get("namespace"), f"{where}.namespace")
    pod_name = _name(pod.get("name"), f"{where}.name")
    controller = pod.get("controller")
    kind = name = None
    if controller is not None:
        if not isinstance(controller, dict):
            raise InvalidInput("INVALID_REPORT", f"{where}.controller is not an object")
        kind = _text(controller.get("kind"), f"{where}.controller.kind", 63)
        name = _name(controller.get("name"), f"{where}.controller.name")
    items = pod.get("containers")
    if not isinstance(items, list) or len(items) > MAX_CONTAINERS_PER_POD:
        raise InvalidInput("INVALID_REPORT", f"{where}.containers must be a list of at most {MAX_CONTAINERS_PER_POD}")
    for number, item in enumerate(items):
        at = f"{where}.containers[{number}]"
        if not isinstance(item, dict):
            raise InvalidInput("INVALID_REPORT", f"{at} is not an object")
        image = _text(item.get("image"), f"{at}.image", 512)
        try:
            parse_image_reference(image)
        except InvalidInput as exc:
            raise InvalidInput("INVALID_REPORT", f"{at}.image: {exc.detail}") from exc
        image_id = item.get("image_id")
        if image_id is not None and not isinstance(image_id, str):
            raise InvalidInput("INVALID_REPORT", f"{at}.image_id must be a string or null")
        reason = item.get("waiting_reason")
        if reason is not None:
            reason = _text(reason, f"{at}.waiting_reason", 64)
        if reason in PULL_FAILURE_REASONS:
            raw_message = item.get("message")
            message = raw_message if isinstance(raw_message, str) else ""
            known = errors.get((image, reason))
            errors[(image, reason)] = (
                PullError(image, reason, message[:MAX_MESSAGE_CHARS], 1, observed_at, observed_at, _AGENT)
                if known is None
                else replace(known, count=known.count + 1)
            )
            continue
        container = _name(item.get("name"), f"{at}.name")
        containers.append(RunningContainer(namespace, pod_name, container, image, digest_of(image_id), kind, name))


def _read_registry(registry: object) -> tuple[datetime | None, tuple[DisconnectedPullCheck, ...] | None]:
    """A report's ``registry`` section: the TLS certificate's expiry and the disconnected-pull checks."""
    if registry is None:
        return None, None
    if not isinstance(registry, dict):
        raise InvalidInput("INVALID_REPORT", "registry is not an object")
    tls_expires_at = None
    if registry.get("tls_expires_at") is not None:
        tls_expires_at = _report_time(registry["tls_expires_at"], "registry.tls_expires_at")
    raw_checks = registry.get("checks")
    if raw_checks is None:
        return tls_expires_at, None
    if not isinstance(raw_checks, list) or len(raw_checks) > MAX_REPORT_CHECKS:
        raise InvalidInput("INVALID_REPORT", f"registry.checks must be a list of at most {MAX_REPORT_CHECKS}")
    return tls_expires_at, tuple(_check(item, f"registry.checks[{n}]") for n, item in enumerate(raw_checks))


def _check(item: object, where: str) -> DisconnectedPullCheck:
    if not isinstance(item, dict):
        raise InvalidInput("INVALID_REPORT", f"{where} is not an object")
    repository = _text(item.get("repository"), f"{where}.repository", 256)
    digest = item.get("digest")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidInput("INVALID_REPORT", f"{where}.digest must be sha256:<64 hex>")
    result = item.get("result")
    if result not in {DisconnectedPull.OK.value, DisconnectedPull.FAILED.value}:
        raise InvalidInput("INVALID_REPORT", f"{where}.result must be 'ok' or 'failed'")
    detail = item.get("detail")
    if detail is not None:
        detail = _text(detail, f"{where}.detail", 10_000)[:MAX_MESSAGE_CHARS]
    return DisconnectedPullCheck(repository, digest, DisconnectedPull(result), detail)


def _report_time(value: object, where: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput("INVALID_REPORT", f"{where} must be an RFC 3339 time with its offset")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput("INVALID_REPORT", f"{where} must be an RFC 3339 time with its offset") from exc
    if at.tzinfo is None:
        raise InvalidInput("INVALID_REPORT", f"{where} must carry its UTC offset")
    return at.astimezone(UTC)


def _text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or any(ch < " " for ch in value):
        raise InvalidInput("INVALID_REPORT", f"{where} must be text of 1 to {limit} printable characters")
    return value


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInput("INVALID_REPORT", f"{where} must be a Kubernetes name (lower-case, digits, '-', '.')")
    return value
