"""Telemetry: acrsync's own metrics and traces, through the OpenTelemetry API only.

Where they are exported to is the composition root's business: :mod:`shared.adapters.azure_monitor` turns
on Azure Monitor when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set; a laptop run sends nothing anywhere.

Metrics go through the OpenTelemetry API. Until a provider is configured the instruments are no-ops that
start exporting once one is (the API's proxy meter), so the functions below are safe to call anywhere:

=========================== ================= ==================== ==========================================
name                        instrument        dimensions           meaning
=========================== ================= ==================== ==========================================
``acrsync.sync.lag_seconds`` histogram (s)    ``site``, ``result`` push (event time) to SYNCED/VERIFIED
``acrsync.jobs``            counter           ``outcome``          site-sync jobs handled, by outcome
``acrsync.sites.pending``   observable gauge  —                    sites with rows still on their way
``acrsync.sites.stale``     observable gauge  —                    sites with a STALE row
``acrsync.tokens.expiring`` observable gauge  —                    site tokens expired or expiring soon
=========================== ================= ==================== ==========================================

Dimensions stay low-cardinality: a site name is fine at hundreds of sites; a digest or a release id never
is a dimension (logs and traces carry those). ``outcome`` and ``result`` must be short lower-case words
(``succeeded``, ``already-final``, ``verified``); anything else is recorded as ``other``.

Application Insights stores a histogram as min/max/sum/count per export interval, which cannot give
percentiles, so :func:`record_lag` also writes one structured log line per sample (``customDimensions``
``metric``, ``site``, ``result``, ``lag_seconds``) that the workbook's percentile panel reads.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

__all__ = [
    "JOBS",
    "LAG_SECONDS",
    "METER_NAME",
    "SITES_PENDING",
    "SITES_STALE",
    "TOKENS_EXPIRING",
    "AcrsyncMetrics",
    "acrsync_metrics",
    "record_job",
    "record_lag",
    "set_site_gauges",
    "set_tokens_expiring",
    "use_meter_provider",
]

logger = logging.getLogger(__name__)

METER_NAME = "acrsync"
LAG_SECONDS = "acrsync.sync.lag_seconds"
JOBS = "acrsync.jobs"
SITES_PENDING = "acrsync.sites.pending"
SITES_STALE = "acrsync.sites.stale"
TOKENS_EXPIRING = "acrsync.tokens.expiring"

_OTHER = "other"
# A short lower-case word: no digits, so a digest, a release id or a message id can never pass as one.
_LABEL = re.compile(r"[a-z][a-z_-]{0,31}")


def _label(value: object) -> str:
    text = str(value).strip().lower()
    return text if _LABEL.fullmatch(text) else _OTHER


class AcrsyncMetrics:
    """The acrsync instruments on one meter provider (the global one unless given)."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter(METER_NAME)
        self._lock = threading.Lock()
        self._pending: int | None = None
        self._stale: int | None = None
        self._tokens_expiring: int | None = None
        self._lag = meter.create_histogram(
            LAG_SECONDS, unit="s", description="Time from the push to the release reaching a site (synced or verified)"
        )
        self._jobs = meter.create_counter(JOBS, unit="{job}", description="Site-sync jobs handled, by outcome")
        meter.create_observable_gauge(
            SITES_PENDING,
            callbacks=[self._observe_pending],
            unit="{site}",
            description="Sites with at least one release still on its way (set by the sweeper)",
        )
        meter.create_observable_gauge(
            SITES_STALE,
            callbacks=[self._observe_stale],
            unit="{site}",
            description="Sites with at least one STALE release (set by the sweeper)",
        )
        meter.create_observable_gauge(
            TOKENS_EXPIRING,
            callbacks=[self._observe_tokens_expiring],
            unit="{token}",
            description="Site sync and client tokens expired or expiring within the horizon (set by the sweeper)",
        )

    def record_job(self, outcome: str) -> None:
        """One site-sync job handled: ``succeeded``, ``failed``, ``deadlettered`` (or another short word)."""
        self._jobs.add(1, {"outcome": _label(outcome)})

    def record_lag(self, site: str, seconds: float, result: str) -> None:
        """A release reached ``site`` ``seconds`` after its push; ``result`` is ``synced`` or ``verified``.

        Negative lags (clock skew, an edge event that overtook the push) count as 0.
        """
        lag = max(0.0, float(seconds))
        label = _label(result)
        self._lag.record(lag, {"site": site, "result": label})
        logger.info(
            "%s: %.1f s at %s (%s)",
            LAG_SECONDS,
            lag,
            site,
            label,
            extra={"metric": LAG_SECONDS, "site": site, "result": label, "lag_seconds": lag},
        )

    def set_site_gauges(self, pending: int, stale: int) -> None:
        """The sweeper's counts of sites with pending and with stale rows; reported until the next call."""
        if pending < 0 or stale < 0:
            raise ValueError("site counts cannot be negative")
        with self._lock:
            self._pending, self._stale = int(pending), int(stale)

    def set_tokens_expiring(self, count: int) -> None:
        """The sweeper's count of site tokens expired or expiring within the horizon; reported until the next call."""
        if count < 0:
            raise ValueError("token counts cannot be negative")
        with self._lock:
            self._tokens_expiring = int(count)

    def _observe_tokens_expiring(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            value = self._tokens_expiring
        return [] if value is None else [Observation(value)]

    def _observe_pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            value = self._pending
        return [] if value is None else [Observation(value)]

    def _observe_stale(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            value = self._stale
        return [] if value is None else [Observation(value)]


_default_lock = threading.Lock()
_default: AcrsyncMetrics | None = None


def acrsync_metrics() -> AcrsyncMetrics:
    """The process-wide instruments (on the global meter provider), created on first use."""
    global _default  # noqa: PLW0603  # one set of instruments per process
    with _default_lock:
        if _default is None:
            _default = AcrsyncMetrics()
        return _default


def use_meter_provider(meter_provider: MeterProvider | None) -> None:
    """Point the module-level functions at ``meter_provider`` (tests); ``None`` goes back to the global
    provider, with instruments created again on first use."""
    global _default  # noqa: PLW0603
    with _default_lock:
        _default = None if meter_provider is None else AcrsyncMetrics(meter_provider)


def record_job(outcome: str) -> None:
    """See :meth:`AcrsyncMetrics.record_job`."""
    acrsync_metrics().record_job(outcome)


def record_lag(site: str, seconds: float, result: str) -> None:
    """See :meth:`AcrsyncMetrics.record_lag`."""
    acrsync_metrics().record_lag(site, seconds, result)


def set_site_gauges(pending: int, stale: int) -> None:
    """See :meth:`AcrsyncMetrics.set_site_gauges`."""
    acrsync_metrics().set_site_gauges(pending, stale)


_tracer_provider: trace.TracerProvider | None = None


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Send spans to ``provider`` (tests); ``None`` goes back to the global provider."""
    global _tracer_provider  # noqa: PLW0603  # one switch per process, like use_meter_provider
    _tracer_provider = provider


@contextmanager
def traced(name: str, **attributes: object) -> Iterator[None]:
    """A span around one unit of work (an ingest delivery, a site check); a no-op without an SDK.

    Traces may carry release ids and digests (metrics never do): they are per-request, not series.
    """
    tracer = (_tracer_provider or trace.get_tracer_provider()).get_tracer(METER_NAME)
    clean = {key: str(value) for key, value in attributes.items() if value is not None}
    with tracer.start_as_current_span(name, attributes=clean):
        yield


def set_tokens_expiring(count: int) -> None:
    """See :meth:`AcrsyncMetrics.set_tokens_expiring`."""
    acrsync_metrics().set_tokens_expiring(count)
