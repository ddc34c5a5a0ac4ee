"""Export to Azure Monitor: logs, traces and metrics to Application Insights through OpenTelemetry.

:func:`configure_observability` turns on ``azure-monitor-opentelemetry`` once per process, and only when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set and no OpenTelemetry SDK is configured yet (the Functions
Python worker configures one itself with ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``; configuring a
second one would export everything twice). Otherwise it does nothing, so a laptop run sends nothing
anywhere. Entra ID ingestion needs no code: the exporter reads ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
(``ClientId=<identity>;Authorization=AAD``, set by infra/app/function.bicep). What gets exported is
:mod:`shared.observability`'s metrics and traces and the log lines with their :mod:`shared.logs` context.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from opentelemetry import metrics

from shared.logs import ContextFilter

logger = logging.getLogger(__name__)

# A platform setting (Functions sets it from the app setting of the same name; infra/app/function.bicep).
CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"

_configure_lock = threading.Lock()
_configured = False


def configure_observability(environ: Mapping[str, str] | None = None) -> bool:
    """Export logs, traces and metrics to Application Insights, once per process.

    Does nothing (and returns False) without ``APPLICATIONINSIGHTS_CONNECTION_STRING``, on every call after
    the first that configured, and when an OpenTelemetry SDK provider is already installed. Returns True
    when this call configured the export.
    """
    global _configured  # noqa: PLW0603  # once per process, by design
    env = os.environ if environ is None else environ
    connection_string = (env.get(CONNECTION_STRING_SETTING) or "").strip()
    with _configure_lock:
        if _configured or not connection_string:
            return False
        if _sdk_already_configured():
            logger.info("OpenTelemetry is already configured in this process; not configuring Azure Monitor again")
            _configured = True
            return False
        # Imported here: the distro pulls in every instrumentation it bundles, which a laptop run never needs.
        from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415

        configure_azure_monitor(connection_string=connection_string)
        _configured = True
    # The Azure SDKs log every HTTP request at INFO; as telemetry that is noise and cost.
    logging.getLogger("azure").setLevel(logging.WARNING)
    _bind_log_context_to_exporter()
    return True


def _sdk_already_configured() -> bool:
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider  # noqa: PLC0415

    return isinstance(metrics.get_meter_provider(), SdkMeterProvider) or isinstance(
        trace.get_tracer_provider(), SdkTracerProvider
    )


def _bind_log_context_to_exporter() -> None:
    """Give the OpenTelemetry log handler the fields bound with :func:`shared.logs.log_context`
    (``release_id``, ``site``, ...), so they arrive as ``customDimensions`` on every trace line."""
    for handler in logging.getLogger().handlers:
        is_otel = type(handler).__module__.startswith("opentelemetry") and type(handler).__name__ == "LoggingHandler"
        if is_otel and not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
