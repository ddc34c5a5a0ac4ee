"""Request parameters every router shares, and the request checks that go with them.

One definition per parameter (its pattern, length and description), so every route that takes a release id,
a site name or ``If-None-Match`` validates and documents it the same way; a bad value answers 400 with the
code :data:`orchestrations.api.problems.PARAMETER_CODES` gives its name.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Header, Path, Query, Request

from orchestrations.api.auth import KEY_QUERY, Principal, authorize
from orchestrations.api.problems import problem_responses
from shared.errors import InvalidInput

RELEASE_ID_PATTERN = r"^[0-9a-f]{32}$"
SITE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
REPOSITORY_PATTERN = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
DIGEST_PATTERN = r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"
MAX_LIST_PARAMETER = 4096  # a comma list of site names; Azure caps the whole URL anyway
MAX_TOKEN_LENGTH = 4096

ReleaseId = Annotated[
    str, Path(pattern=RELEASE_ID_PATTERN, description="The release id (32 lower-case hex characters).")
]
SiteName = Annotated[str, Path(pattern=SITE_PATTERN, max_length=63, description="The site name.")]
Repository = Annotated[
    str | None, Query(pattern=REPOSITORY_PATTERN, max_length=255, description="An exact repository name.")
]
IfNoneMatch = Annotated[
    str | None, Header(max_length=2048, description="Answer 304 when the representation still has this ETag.")
]
CallerPrincipal = Annotated[Principal | None, Depends(authorize)]

CONDITIONAL: dict[int | str, dict[str, Any]] = {304: {"description": "Not modified: If-None-Match matched the ETag."}}
READ_ERRORS = problem_responses(400, 401, 403, 503)
ITEM_ERRORS = problem_responses(400, 401, 403, 404, 503)


def reject_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not declare, and repeated ones (``code`` excepted)."""
    route = request.scope.get("route")
    declared = _declared_query(route) if route is not None else set()
    seen: set[str] = set()
    for key, _ in request.query_params.multi_items():
        if key == KEY_QUERY:
            continue
        if key not in declared:
            raise InvalidInput("UNKNOWN_QUERY_PARAMETER", f"unknown query parameter {key[:64]!r}")
        if key in seen:
            raise InvalidInput("DUPLICATE_QUERY_PARAMETER", f"query parameter {key[:64]!r} is given more than once")
        seen.add(key)


def _declared_query(route: Any) -> set[str]:
    names: set[str] = set()
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        names.update(field.alias for field in dependant.query_params)
        pending.extend(dependant.dependencies)
    return names


def link(request: Request, **replace: str) -> str:
    """This request's absolute URL with some query parameters replaced; never the function key."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != KEY_QUERY and k not in replace]
    return str(request.url.replace(query=urlencode([*kept, *replace.items()])))


def absolute(request: Request, path: str) -> str:
    return str(request.url.replace(path=path, query=""))
