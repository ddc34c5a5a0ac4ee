"""The CLI's HTTP client for the acrsync API (local or in Azure)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:7071"
API_URL_ENV = "ACRSYNC_API_URL"
API_KEY_ENV = "ACRSYNC_API_KEY"
KEY_HEADER = "x-functions-key"


class ApiUnreachable(Exception):
    """The API could not be reached, or refused our credentials (CLI exit code 4)."""


class ApiConnectionFailed(ApiUnreachable):
    """No answer: the connection failed or timed out (a long wait may try again)."""


class ApiUnauthorized(ApiUnreachable):
    """The API answered 401 or 403: the key (or the caller's role) is wrong; trying again cannot help."""


class ApiError(Exception):
    """The API answered with an error (an RFC 9457 problem, or something else that is not 2xx).

    ``code`` is the problem's stable code (``RELEASE_NOT_FOUND``, ``INVALID_TOP``, ...), or
    ``HTTP_<status>`` when the body was not a problem; ``retry_after`` is the header in seconds.
    """

    def __init__(self, status: int, code: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        code, detail = f"HTTP_{response.status_code}", ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = str(body.get("code") or code)
            detail = str(body.get("detail") or body.get("title") or "")
        if not detail:
            detail = (response.text or response.reason_phrase or "").strip()[:500] or "no detail"
        return cls(response.status_code, code, detail, retry_after=retry_after_of(response))


def retry_after_of(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds only), or ``None``."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class ApiClient:
    """A thin client: base URL, the function key header, JSON in and out. Never prints the key."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {KEY_HEADER: key} if key else {}
        # ``transport`` is for tests that script the API's answers (httpx.MockTransport).
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; 401/403 and connection failures raise :class:`ApiUnreachable`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiConnectionFailed(
                f"cannot reach the acrsync API at {self.base_url} ({type(exc).__name__})"
            ) from exc
        self._check_credentials(response)
        return response

    def get_json(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """GET a JSON document; a non-2xx answer raises :class:`ApiError` (401/403: :class:`ApiUnreachable`)."""
        return self.json_of(self.request("GET", path, params=_without_none(params)))

    def post_json(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """POST without a body; the JSON answer, or :class:`ApiError`."""
        return self.json_of(self.request("POST", path, params=_without_none(params)))

    def patch_json(self, path: str, body: dict[str, Any]) -> Any:
        """PATCH a JSON body; the JSON answer, or :class:`ApiError`."""
        return self.json_of(self.request("PATCH", path, json=body))

    @staticmethod
    def json_of(response: httpx.Response) -> Any:
        """The JSON body of a 2xx answer.

        Raises:
            ApiError: not 2xx, or a body that is not JSON.
        """
        if not response.is_success:
            raise ApiError.from_response(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                response.status_code, "INVALID_RESPONSE", "the API answered with something not JSON"
            ) from exc

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed answer (the body is read by the caller); errors as :meth:`request`.

        Raises:
            ApiError: a non-2xx answer (its body is read first).
        """
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if not response.is_success:
                    response.read()
                self._check_credentials(response)
                if not response.is_success:
                    raise ApiError.from_response(response)
                yield response
        except httpx.HTTPError as exc:
            raise ApiConnectionFailed(
                f"cannot reach the acrsync API at {self.base_url} ({type(exc).__name__})"
            ) from exc

    def _check_credentials(self, response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise ApiUnauthorized(
                f"the acrsync API at {self.base_url} refused the request ({response.status_code}); check the API key"
            )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _without_none(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {key: value for key, value in params.items() if value is not None}
