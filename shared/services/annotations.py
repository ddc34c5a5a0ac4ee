"""Recording a release's runbook fields (owner, approval link, change record, rollback condition, note).

The patch is checked before anything is read, so bad input changes nothing. The change is written to the
release header under its ETag (a lost race re-reads and applies the patch again), kept in the release's
annotation history with who made it and when, and a summary is scheduled so the release checkpoint is
signed again over the new annotations.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from shared.domain.annotations import Annotations, apply_patch, parse_patch
from shared.errors import ConcurrencyConflict, NotFound, ReleaseNotFound
from shared.services.dependencies import Dependencies
from shared.services.rows import MAX_ATTEMPTS
from shared.services.summaries import schedule_summary

logger = logging.getLogger(__name__)
ANONYMOUS = "anonymous"  # who a change is recorded as when the API runs without sign-in (local use)
MAX_ACTOR = 200


def annotate(services: Dependencies, release_id: str, body: Any, *, actor: str | None) -> Annotations | None:
    """Apply the patch ``body`` to the release's annotations; returns them as they now are.

    Raises:
        InvalidInput: ``INVALID_ANNOTATIONS``, ``ANNOTATION_TOO_LONG``, ``INVALID_APPROVAL_URL``.
        ReleaseNotFound: no such release.
        TransientError: the store is unavailable, or the header kept changing.
    """
    patch = parse_patch(body)
    store = services.store
    for _ in range(MAX_ATTEMPTS):
        try:
            header = store.get_release(release_id)
        except NotFound as exc:
            raise ReleaseNotFound(release_id) from exc
        release = header.value
        updated = apply_patch(release.annotations, patch, by=(actor or ANONYMOUS)[:MAX_ACTOR], at=services.clock.now())
        if updated is None:
            return release.annotations  # nothing new: nothing recorded
        try:
            store.replace_release(replace(release, annotations=updated), etag=header.etag)
        except ConcurrencyConflict:
            continue  # a summary or ingest wrote the header meanwhile: patch the fresh one
        schedule_summary(services.queue, services.clock, release_id)
        logger.info("release %s annotated: %s", release_id, ", ".join(sorted(name.value for name in patch)))
        return updated
    raise ConcurrencyConflict(f"release {release_id} kept changing under {MAX_ATTEMPTS} annotation attempts")
