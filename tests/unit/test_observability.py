"""shared/observability.py: the metrics through the OpenTelemetry SDK's in-memory reader; and
shared/adapters/azure_monitor.py: when Azure Monitor gets configured (never for real here: the distro's
configure function is replaced)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import observability
from shared.adapters import azure_monitor
from shared.logs import ContextFilter, log_context

CONNECTION_STRING = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    observability.use_meter_provider(provider)
    yield reader
    observability.use_meter_provider(None)
    provider.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            assert scope.scope.name == observability.METER_NAME
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_jobs_counter_counts_by_outcome(reader: InMemoryMetricReader) -> None:
    observability.record_job("succeeded")
    observability.record_job("succeeded")
    observability.record_job("deadlettered")

    points = _points(reader)["acrsync.jobs"]
    assert {dict(p.attributes)["outcome"]: p.value for p in points} == {"succeeded": 2, "deadlettered": 1}
    assert all(set(p.attributes) == {"outcome"} for p in points)


def test_lag_histogram_has_site_and_result_only(reader: InMemoryMetricReader) -> None:
    observability.record_lag("plant-01", 120.0, "verified")
    observability.record_lag("plant-01", 60.0, "verified")
    observability.record_lag("mine-7", 3600.0, "SYNCED")  # a SyncState value works as the result

    points = {(p.attributes["site"], p.attributes["result"]): p for p in _points(reader)["acrsync.sync.lag_seconds"]}
    assert set(points) == {("plant-01", "verified"), ("mine-7", "synced")}
    assert all(set(p.attributes) == {"site", "result"} for p in points.values())
    plant = points[("plant-01", "verified")]
    assert (plant.count, plant.sum, plant.min, plant.max) == (2, 180.0, 60.0, 120.0)


def test_negative_lag_counts_as_zero(reader: InMemoryMetricReader) -> None:
    observability.record_lag("plant-01", -5.0, "verified")
    (point,) = _points(reader)["acrsync.sync.lag_seconds"]
    assert (point.count, point.sum) == (1, 0.0)


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "a" * 64,  # a digest
        "3f2a9c0e4b1d",  # an id
        "plant-01",  # a site is not an outcome
        "x" * 40,
        "",
    ],
)
def test_unbounded_values_never_become_dimension_values(reader: InMemoryMetricReader, value: str) -> None:
    observability.record_job(value)
    observability.record_lag("plant-01", 1.0, value)
    points = _points(reader)
    assert [dict(p.attributes) for p in points["acrsync.jobs"]] == [{"outcome": "other"}]
    assert [p.attributes["result"] for p in points["acrsync.sync.lag_seconds"]] == ["other"]


def test_site_gauges_report_what_the_sweeper_set_last(reader: InMemoryMetricReader) -> None:
    assert "acrsync.sites.pending" not in _points(reader)  # nothing set yet: no observation, not a false 0

    observability.set_site_gauges(pending=4, stale=1)
    observability.set_site_gauges(pending=3, stale=2)

    points = _points(reader)
    assert [(p.value, dict(p.attributes)) for p in points["acrsync.sites.pending"]] == [(3, {})]
    assert [(p.value, dict(p.attributes)) for p in points["acrsync.sites.stale"]] == [(2, {})]


def test_site_gauges_refuse_negative_counts(reader: InMemoryMetricReader) -> None:
    with pytest.raises(ValueError, match="negative"):
        observability.set_site_gauges(pending=-1, stale=0)


def test_every_instrument_has_its_documented_name(reader: InMemoryMetricReader) -> None:
    observability.record_job("succeeded")
    observability.record_lag("plant-01", 1.0, "synced")
    observability.set_site_gauges(pending=0, stale=0)
    assert set(_points(reader)) == {
        "acrsync.sync.lag_seconds",
        "acrsync.jobs",
        "acrsync.sites.pending",
        "acrsync.sites.stale",
    }


def test_lag_sample_is_also_a_structured_log_line_for_percentiles(
    reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="shared.observability"):
        observability.record_lag("plant-01", 42.5, "verified")
    (record,) = [r for r in caplog.records if getattr(r, "metric", None) == "acrsync.sync.lag_seconds"]
    assert (record.site, record.result, record.lag_seconds) == ("plant-01", "verified", 42.5)  # type: ignore[attr-defined]


# -- configure_observability ----------------------------------------------------------------------------


class _FakeDistro:
    """Stands in for azure.monitor.opentelemetry.configure_azure_monitor and installs a log handler the way
    the distro does (an OpenTelemetry LoggingHandler on the root logger)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.handlers: list[logging.Handler] = []

    def __call__(self, **kwargs: Any) -> None:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

        self.calls.append(kwargs)
        provider = LoggerProvider()
        self.exporter = InMemoryLogRecordExporter()
        provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        handler = LoggingHandler(logger_provider=provider)
        logging.getLogger().addHandler(handler)
        self.handlers.append(handler)


@pytest.fixture
def distro(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeDistro]:
    import azure.monitor.opentelemetry

    fake = _FakeDistro()
    monkeypatch.setattr(azure.monitor.opentelemetry, "configure_azure_monitor", fake)
    monkeypatch.setattr(azure_monitor, "_configured", False)
    monkeypatch.setattr(azure_monitor, "_sdk_already_configured", lambda: False)
    azure_level = logging.getLogger("azure").level
    yield fake
    for handler in fake.handlers:
        logging.getLogger().removeHandler(handler)
    logging.getLogger("azure").setLevel(azure_level)


def test_nothing_is_configured_without_a_connection_string(distro: _FakeDistro) -> None:
    assert azure_monitor.configure_observability({}) is False
    assert azure_monitor.configure_observability({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is False
    assert distro.calls == []


def test_configures_azure_monitor_once_per_process(distro: _FakeDistro) -> None:
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION_STRING}
    assert azure_monitor.configure_observability(env) is True
    assert azure_monitor.configure_observability(env) is False
    assert distro.calls == [{"connection_string": CONNECTION_STRING}]
    assert logging.getLogger("azure").level == logging.WARNING


def test_does_not_configure_over_an_existing_sdk(distro: _FakeDistro, monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. the Functions worker with PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true: twice would double-export
    monkeypatch.setattr(azure_monitor, "_sdk_already_configured", lambda: True)
    assert azure_monitor.configure_observability({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION_STRING}) is False
    assert distro.calls == []


def test_an_installed_sdk_meter_provider_counts_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import metrics

    provider = MeterProvider()
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
    try:
        assert azure_monitor._sdk_already_configured() is True
    finally:
        provider.shutdown()


def test_log_context_fields_reach_the_exported_log_records(distro: _FakeDistro) -> None:
    azure_monitor.configure_observability({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION_STRING})
    (handler,) = distro.handlers
    assert any(isinstance(f, ContextFilter) for f in handler.filters)

    site_logger = logging.getLogger("shared.services.site_check")
    previous = site_logger.level
    site_logger.setLevel(logging.INFO)
    try:
        with log_context(release_id="r-123", site="plant-01"):
            site_logger.info("site check: %s -> %s (%s)", "PENDING", "VERIFIED", "-")
    finally:
        site_logger.setLevel(previous)

    (exported,) = [r for r in distro.exporter.get_finished_logs() if "site check" in str(r.log_record.body)]
    attributes = dict(exported.log_record.attributes or {})
    assert attributes["site"] == "plant-01"
    assert attributes["release_id"] == "r-123"
    assert str(exported.log_record.body) == "site check: PENDING -> VERIFIED (-)"
