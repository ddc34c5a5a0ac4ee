"""The CLI's HTTP client for the acrsync API (local or in Azure)."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:7071"
API_URL_ENV = "ACRSYNC_API_URL"
API_KEY_ENV = "ACRSYNC_API_KEY"


class ApiUnreachable(Exception):
    """The API could not be reached, or refused our credentials (CLI exit code 4)."""


class ApiClient:
    """A thin client: base URL, the function key header, JSON in and out. Never prints the key."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = (base_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"x-functions-key": key} if key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; 401/403 and connection failures raise :class:`ApiUnreachable`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiUnreachable(f"cannot reach the acrsync API at {self.base_url} ({type(exc).__name__})") from exc
        if response.status_code in (401, 403):
            raise ApiUnreachable(
                f"the acrsync API at {self.base_url} refused the request ({response.status_code}); check the API key"
            )
        return response

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
