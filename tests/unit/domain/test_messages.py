from __future__ import annotations

import pytest

from shared.domain.messages import JobKind, SiteSyncJob
from shared.errors import InvalidInput

RELEASE = "62fc36f6e95f329acabb3c8680e2e978"


def test_job_round_trips_and_ids_are_deterministic() -> None:
    job = SiteSyncJob(RELEASE, "plant-01")
    assert SiteSyncJob.decode(job.encode()) == job
    assert job.message_id == f"{RELEASE}:plant-01" == SiteSyncJob(RELEASE, "plant-01").message_id
    assert job.session_id == "plant-01"


def test_rechecks_get_distinct_ids_so_duplicate_detection_keeps_them() -> None:
    ids = {SiteSyncJob(RELEASE, "plant-01", JobKind.RECHECK, check=n).message_id for n in range(3)}
    assert len(ids) == 3 and SiteSyncJob(RELEASE, "plant-01").message_id not in ids
    assert all(len(i) <= 128 for i in ids)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"release_id": "x", "site": "Bad Site"}',
        b'{"release_id": "../etc", "site": "plant-01"}',
        b'{"release_id": "abc", "site": "plant-01", "kind": "NOPE"}',
        b'{"release_id": "abc", "site": "plant-01", "check": -1}',
        b'{"release_id": "abc", "site": "plant-01", "schema_version": 99}',
        b"\xff\xfe",
    ],
)
def test_malformed_jobs_get_one_code(body: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        SiteSyncJob.decode(body)
    assert info.value.code == "MALFORMED_JOB"
