"""Evidence: every observation about a release (JSON or CSV), its signed receipts as a bundle, and the
public key that verifies them."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from orchestrations.api.conditional import conditional_json, etag_matches, etag_of
from orchestrations.api.models import EvidenceBundleModel, EvidenceListModel, SigningKeyModel
from orchestrations.api.params import CONDITIONAL, ITEM_ERRORS, SITE_PATTERN, IfNoneMatch, ReleaseId
from shared.bootstrap import get_services
from shared.errors import InvalidInput
from shared.services import bundles, status

router = APIRouter(prefix="/api")


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
        **CONDITIONAL,
        **ITEM_ERRORS,
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
    responses={**CONDITIONAL, **ITEM_ERRORS},
)
def get_signing_key(if_none_match: IfNoneMatch = None) -> Response:
    """The public key that verifies signed delivery receipts (404 `SIGNING_KEY_NOT_CONFIGURED` without one)."""
    return conditional_json(bundles.signing_key_view(get_services()), if_none_match)
