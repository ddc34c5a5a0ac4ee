"""One queued job, whichever kind: a site check or a release summary."""

from __future__ import annotations

from shared.domain.messages import Job, ReleaseSummaryJob
from shared.services.dependencies import Dependencies
from shared.services.site_check import check_site
from shared.services.summaries import summarize_release


def run_job(services: Dependencies, job: Job) -> None:
    """Run a decoded job (:func:`shared.domain.messages.decode_job`).

    Raises:
        TransientError: a backend is unavailable; redeliver.
    """
    if isinstance(job, ReleaseSummaryJob):
        summarize_release(services, job.release_id)
    else:
        check_site(services, job)
