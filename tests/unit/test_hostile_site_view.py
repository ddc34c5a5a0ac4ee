"""Site views never show credentials, even those of an endpoint stored before sites files refused them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.domain.model import Site
from shared.services.status import site_view

NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
SECRET = "s3cr3t-Pa55w0rd"


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (f"https://ci:{SECRET}@plant01.contoso.example:5000/v2", "https://plant01.contoso.example:5000/v2"),
        (f"https://{SECRET}@plant01.contoso.example", "https://plant01.contoso.example"),
        (f"https://ci:{SECRET}@evil@plant01.contoso.example", "https://plant01.contoso.example"),
        (f"http://ci:{SECRET}@[::1]:5000", "http://[::1]:5000"),
        (f"HTTPS://ci:{SECRET}@Plant01.contoso.example", "https://Plant01.contoso.example"),
        ("https://plant01.contoso.example", "https://plant01.contoso.example"),
    ],
)
def test_a_stored_endpoint_is_shown_without_its_credentials(stored: str, shown: str) -> None:
    view = site_view(Site(name="plant-01", repositories=("inspection/*",), endpoint=stored), NOW)
    assert view["endpoint"] == shown
    assert SECRET not in json.dumps(view)


@pytest.mark.parametrize("stored", [f"http://ci:{SECRET}@[::1:5000", f"ci:{SECRET}@plant01.contoso.example:5000"])
def test_an_endpoint_that_does_not_parse_is_not_shown_at_all_when_it_may_hold_credentials(stored: str) -> None:
    view = site_view(Site(name="plant-01", repositories=("inspection/*",), endpoint=stored), NOW)
    assert SECRET not in json.dumps(view)


def test_no_endpoint_stays_null() -> None:
    assert site_view(Site(name="plant-01", repositories=("inspection/*",)), NOW)["endpoint"] is None
