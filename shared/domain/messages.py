"""Message contracts carried by the job queue. Versioned so fields can be added compatibly."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum

from shared.domain.names import validate_site_name
from shared.errors import InvalidInput

SCHEMA_VERSION = 1


class JobKind(StrEnum):
    """Why a site check was enqueued."""

    FANOUT = "FANOUT"  # first check after a push
    RECHECK = "RECHECK"  # rescheduled for the next window
    RETRY = "RETRY"  # an operator asked
    BACKFILL = "BACKFILL"  # the site's scope grew
    RECOVERY = "RECOVERY"  # the sweeper found a row with no job in flight


@dataclass(frozen=True)
class SiteSyncJob:
    """Check one release at one site."""

    release_id: str
    site: str
    kind: JobKind = JobKind.FANOUT
    check: int = 0  # the row's check counter when enqueued; keeps recheck message ids distinct
    schema_version: int = SCHEMA_VERSION

    @property
    def message_id(self) -> str:
        """Deterministic id for duplicate detection (≤ 128 characters, the Service Bus limit).

        A re-sent first job has the same id as the original, so the queue drops it; a recheck or an
        operator retry carries the check counter so the queue keeps it.
        """
        if self.kind is JobKind.FANOUT:
            return f"{self.release_id}:{self.site}"
        return f"{self.release_id}:{self.site}:{self.kind.value.lower()}:{self.check}"

    @property
    def session_id(self) -> str:
        """Jobs of one site run one at a time, in order."""
        return self.site

    def encode(self) -> bytes:
        body = asdict(self)
        body["kind"] = self.kind.value
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, body: bytes | str) -> SiteSyncJob:
        """Parse a job body.

        Raises:
            InvalidInput: ``MALFORMED_JOB`` when the body is not a job of a known schema version.
        """
        try:
            raw = json.loads(body)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            version = raw.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise InvalidInput("MALFORMED_JOB", f"unsupported job schema_version {version!r}")
            release_id, site = raw["release_id"], raw["site"]
            if not isinstance(release_id, str) or not release_id.isalnum() or len(release_id) > 64:
                raise InvalidInput("MALFORMED_JOB", "release_id must be an alphanumeric id")
            validate_site_name(site)
            check = raw.get("check", 0)
            if not isinstance(check, int) or check < 0:
                raise InvalidInput("MALFORMED_JOB", "check must be a non-negative integer")
            return cls(release_id=release_id, site=site, kind=JobKind(raw.get("kind", "FANOUT")), check=check)
        except InvalidInput as exc:
            if exc.code == "MALFORMED_JOB":
                raise
            raise InvalidInput("MALFORMED_JOB", exc.detail) from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput("MALFORMED_JOB", f"job body is not a site-sync job ({type(exc).__name__})") from exc


RELEASE_SUMMARY_TYPE = "release-summary"


@dataclass(frozen=True)
class ReleaseSummaryJob:
    """Recount one release's rows, announce what its sites add up to, and sign a checkpoint.

    Row changes enqueue one per release and summary interval (``interval`` is the interval's
    number since the epoch), scheduled for the interval's end: the queue drops every duplicate of
    the id, so a release whose sites change all at once is summarised once per interval.
    """

    release_id: str
    interval: int
    schema_version: int = SCHEMA_VERSION

    @property
    def message_id(self) -> str:
        return f"{self.release_id}:summary:{self.interval}"

    @property
    def session_id(self) -> str:
        """Summaries of one release run one at a time (site names cannot contain ':')."""
        return f"release:{self.release_id}"

    def encode(self) -> bytes:
        body = {"type": RELEASE_SUMMARY_TYPE, **asdict(self)}
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


Job = SiteSyncJob | ReleaseSummaryJob


def decode_job(body: bytes | str) -> Job:
    """Parse a job body of either kind (a body without ``type`` is a site-sync job).

    Raises:
        InvalidInput: ``MALFORMED_JOB`` when the body is no job of a known kind and schema version.
    """
    try:
        raw = json.loads(body)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("MALFORMED_JOB", f"job body is not JSON ({type(exc).__name__})") from exc
    if not isinstance(raw, dict) or raw.get("type") != RELEASE_SUMMARY_TYPE:
        return SiteSyncJob.decode(body)
    release_id, interval = raw.get("release_id"), raw.get("interval")
    if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise InvalidInput("MALFORMED_JOB", f"unsupported job schema_version {raw.get('schema_version')!r}")
    if not isinstance(release_id, str) or not release_id.isalnum() or len(release_id) > 64:
        raise InvalidInput("MALFORMED_JOB", "release_id must be an alphanumeric id")
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 0:
        raise InvalidInput("MALFORMED_JOB", "interval must be a non-negative integer")
    return ReleaseSummaryJob(release_id, interval)
