"""Read models for the status API: sites, releases, readiness, evidence and the local event outbox.

Every view is a plain JSON-ready ``dict`` (ISO 8601 times, enum values as strings), so the HTTP
layer only maps it to a response and hashes it for the ETag; nothing here knows about HTTP.
Representations do not depend on the time of the request, except a site's ``next_window``, so an
unchanged release answers with an unchanged ETag.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.bootstrap import Services
from shared.domain.gate import GatePolicy, GateSelection, GateSite, GateVerdict, evaluate
from shared.domain.model import Evidence, Release, Site, SiteSync
from shared.domain.names import validate_digest, validate_repository, validate_site_name, validate_tag
from shared.domain.observations import ConnectionState, OutboundEvent
from shared.domain.windows import format_duration, window_at_or_after
from shared.errors import AcrSyncError, InvalidInput, NotFound
from shared.relations import noop as _noop  # noqa: F401  # placeholder removed below
