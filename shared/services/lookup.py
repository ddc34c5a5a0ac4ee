"""Reads of what a request names, with the error the API answers when it is missing."""

from __future__ import annotations

from collections.abc import Iterator

from shared.domain.model import Release, Site, SiteSync
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


def recent_site_rows(store: StateStore, site: str, *, pages: int, page_size: int) -> Iterator[SiteSync]:
    """The site's checked rows, newest release first, for at most ``pages`` pages of ``page_size``."""
    continuation: str | None = None
    for _ in range(pages):
        page = store.list_site_syncs_for_site(site, page_size=page_size, continuation=continuation)
        yield from page.items
        continuation = page.continuation
        if continuation is None:
            return
