"""Reads of what a request names, with the error the API answers when it is missing."""

from __future__ import annotations

from shared.domain.model import Release, Site
from shared.errors import NotFound, ReleaseNotFound, SiteNotFound
from shared.ports import StateStore


def require_release(store: StateStore, release_id: str) -> Release:
    """Raises: ReleaseNotFound."""
    try:
        return store.get_release(release_id).value
    except NotFound as exc:
        raise ReleaseNotFound(release_id) from exc


def require_site(store: StateStore, name: str) -> Site:
    """Raises: SiteNotFound."""
    try:
        return store.get_site(name)
    except NotFound as exc:
        raise SiteNotFound(name) from exc
