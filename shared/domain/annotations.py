"""Release context: the runbook fields people record on a release, and the image's own OCI annotations.

Runbook fields (owner, approval link, change record, rollback condition, note) are set through
``PATCH /api/releases/{id}/annotations`` or ``acrsync annotate``. Each change is kept with who made it
and when (the release's annotation history: the newest :data:`MAX_HISTORY` changes, each naming the
fields it set with the SHA-256 of each new value, so the history stays small whatever the fields hold and
still proves an earlier value when someone shows it), so the record says how the context came to be,
not only what it is now; the release checkpoint signs it. A change that sets nothing new records
nothing. The image's OCI annotations (``org.opencontainers.image.source`` and friends) come from its
manifest, read once with its weight; a registry is not trusted to keep them short or printable.
No I/O here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from shared.errors import InvalidInput

MAX_HISTORY = 30
MAX_IMAGE_ANNOTATION = 512
# Text fields may span lines; nothing else below a space (nor DEL) is accepted or kept.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_ON_ONE_LINE = re.compile(r"[\x00-\x1f\x7f]")


class RunbookField(StrEnum):
    """The runbook fields a release can carry, with their size limit in characters."""

    OWNER = "owner"
    APPROVAL_URL = "approval_url"
    CHANGE_RECORD = "change_record"
    ROLLBACK_CONDITION = "rollback_condition"
    NOTE = "note"

    @property
    def limit(self) -> int:
        return _LIMITS[self]

    @property
    def multiline(self) -> bool:
        return self in (RunbookField.ROLLBACK_CONDITION, RunbookField.NOTE)


_LIMITS = {
    RunbookField.OWNER: 200,
    RunbookField.APPROVAL_URL: 2048,
    RunbookField.CHANGE_RECORD: 200,
    RunbookField.ROLLBACK_CONDITION: 2000,
    RunbookField.NOTE: 4000,
}

# The OCI annotations read into a release, and the names they are shown under.
IMAGE_ANNOTATIONS = {
    "org.opencontainers.image.source": "source",
    "org.opencontainers.image.revision": "revision",
    "org.opencontainers.image.created": "created",
    "org.opencontainers.image.version": "version",
}


@dataclass(frozen=True)
class AnnotationChange:
    """One change: the fields it set, each with the SHA-256 (hex, 16 characters) of its new value
    (``None``: cleared), by whom and when."""

    at: datetime
    by: str
    changed: Mapping[RunbookField, str | None]


def value_digest(value: str) -> str:
    """What the history keeps of a value: enough to recognise it, not the text itself."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Annotations:
    """A release's runbook fields now, and the changes that made them (oldest first, the newest kept)."""

    fields: Mapping[RunbookField, str] = field(default_factory=dict)
    history: tuple[AnnotationChange, ...] = ()

    @property
    def set_by(self) -> str | None:
        return self.history[-1].by if self.history else None

    @property
    def set_at(self) -> datetime | None:
        return self.history[-1].at if self.history else None

    def record(self) -> dict[str, Any]:
        """The fields and the history as JSON (stored so, carried so in an evidence bundle, and signed
        so by the release checkpoint: :func:`shared.domain.evidence_bundles.annotations_digest`)."""
        return {
            "fields": {name.value: value for name, value in sorted(self.fields.items())},
            "history": [
                {
                    "at": change.at.isoformat(),
                    "by": change.by,
                    "changed": {name.value: value for name, value in sorted(change.changed.items())},
                }
                for change in self.history
            ],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Annotations:
        history = tuple(
            AnnotationChange(
                datetime.fromisoformat(item["at"]),
                str(item["by"]),
                {RunbookField(name): value for name, value in (item.get("changed") or {}).items()},
            )
            for item in record.get("history") or ()
        )
        fields = {RunbookField(name): str(value) for name, value in (record.get("fields") or {}).items()}
        return cls(fields, history)


def parse_patch(body: Any) -> dict[RunbookField, str | None]:
    """The fields a patch sets: a JSON object of runbook fields, each a string (``""`` or ``null`` clears it).

    Raises:
        InvalidInput: ``INVALID_ANNOTATIONS`` (not an object, empty, an unknown field, not a string, a control
            character), ``ANNOTATION_TOO_LONG``, ``INVALID_APPROVAL_URL``.
    """
    if not isinstance(body, Mapping) or not body:
        raise InvalidInput("INVALID_ANNOTATIONS", "the body is a JSON object of annotations to set")
    known = {member.value: member for member in RunbookField}
    patch: dict[RunbookField, str | None] = {}
    for key, value in body.items():
        name = known.get(key) if isinstance(key, str) else None
        if name is None:
            shown = str(key)[:40]
            raise InvalidInput("INVALID_ANNOTATIONS", f"{shown!r} is not an annotation: one of {', '.join(known)}")
        if value is not None and not isinstance(value, str):
            raise InvalidInput("INVALID_ANNOTATIONS", f"{name.value} is a string (or null to clear it)")
        patch[name] = _checked(name, value.strip()) if value and value.strip() else None
    return patch


def _checked(name: RunbookField, value: str) -> str:
    if len(value) > name.limit:
        raise InvalidInput("ANNOTATION_TOO_LONG", f"{name.value} is at most {name.limit} characters")
    control = _CONTROL if name.multiline else _CONTROL_ON_ONE_LINE
    if control.search(value):
        raise InvalidInput("INVALID_ANNOTATIONS", f"{name.value} contains a control character")
    if name is RunbookField.APPROVAL_URL:
        _check_url(value)
    return value


def _check_url(value: str) -> None:
    refusal = "approval_url is an absolute http(s) URL without credentials or spaces"
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise InvalidInput("INVALID_APPROVAL_URL", refusal) from exc
    if parts.scheme not in ("https", "http") or not parts.hostname or not port_ok:
        raise InvalidInput("INVALID_APPROVAL_URL", refusal)
    if parts.username is not None or parts.password is not None or any(c.isspace() for c in value):
        raise InvalidInput("INVALID_APPROVAL_URL", refusal)


def apply_patch(
    current: Annotations | None, patch: Mapping[RunbookField, str | None], *, by: str, at: datetime
) -> Annotations | None:
    """The annotations after ``patch``, with the change in the history; ``None`` when nothing changes."""
    before = dict(current.fields) if current else {}
    changed = {name: value for name, value in patch.items() if before.get(name) != value}
    if not changed:
        return None
    after = {**before, **{name: value for name, value in changed.items() if value is not None}}
    for name, value in changed.items():
        if value is None:
            after.pop(name, None)
    recorded = {name: value_digest(value) if value is not None else None for name, value in changed.items()}
    history = (*(current.history if current else ()), AnnotationChange(at, by, recorded))
    return Annotations(after, history[-MAX_HISTORY:])


def image_annotations(*manifests: Mapping[str, Any]) -> dict[str, str]:
    """The known OCI annotations of ``manifests`` (later ones win: an index over its platform manifest),
    under their short names, cut to :data:`MAX_IMAGE_ANNOTATION` characters and stripped of control
    characters."""
    found: dict[str, str] = {}
    for manifest in manifests:
        annotations = manifest.get("annotations")
        if not isinstance(annotations, Mapping):
            continue
        for key, short in IMAGE_ANNOTATIONS.items():
            value = annotations.get(key)
            if isinstance(value, str) and (cleaned := _CONTROL_ON_ONE_LINE.sub("", value).strip()):
                found[short] = cleaned[:MAX_IMAGE_ANNOTATION]
    return found
