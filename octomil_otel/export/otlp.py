"""OTLP forwarding: the same spans and histograms to any OpenTelemetry backend.

Configured the standard way: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT`` / ``..._LOGS_ENDPOINT``, the
last for captured content only),
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default, or ``grpc``; also per
signal), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_METRIC_EXPORT_INTERVAL``, and
``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` set to ``none`` to turn a signal off.
The exporters read the endpoint, header, timeout and compression variables themselves, so
their precedence is the SDK's own; an explicit argument to ``init()`` wins over them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Literal

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import SpanExporter

_logger = logging.getLogger(__name__)

Signal = Literal["traces", "metrics", "logs"]
PROTOCOLS = ("http/protobuf", "grpc")
_HTTP_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}


def exporters(signal: Signal) -> list[str] | None:
    """The exporters ``OTEL_{SIGNAL}_EXPORTER`` names; ``None`` when it is not set."""
    names = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER")
    return None if names is None else [name.strip() for name in names.split(",")]


def forwarding(signal: Signal, endpoint: str | None = None) -> bool:
    """Whether ``signal`` goes to an OTLP endpoint: one is given or configured, and the
    ``OTEL_{SIGNAL}_EXPORTER`` variable, when set, names ``otlp``."""
    named = exporters(signal)
    if named is not None and "otlp" not in named:
        return False
    return bool(
        endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def protocol(signal: Signal, explicit: str | None = None) -> str:
    """Explicit, then ``OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL``, then the generic variable."""
    if explicit is not None:
        if explicit not in PROTOCOLS:
            raise ValueError(f"otlp_protocol must be one of {PROTOCOLS}, got {explicit!r}")
        return explicit
    for variable in (
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        value = os.environ.get(variable, "").strip()
        if value:
            if value in PROTOCOLS:
                return value
            _logger.warning(
                "octomil_otel: %s=%r is not supported; using http/protobuf", variable, value
            )
            break
    return "http/protobuf"


def span_exporter(
    endpoint: str | None = None,
    protocol_name: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> SpanExporter:
    kwargs = _arguments("traces", endpoint, protocol_name, headers)
    if protocol("traces", protocol_name) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(**kwargs)


def metric_reader(
    endpoint: str | None = None,
    protocol_name: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> MetricReader:
    """A periodic reader (``OTEL_METRIC_EXPORT_INTERVAL``, 60 s by default)."""
    kwargs = _arguments("metrics", endpoint, protocol_name, headers)
    if protocol("metrics", protocol_name) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return PeriodicExportingMetricReader(OTLPMetricExporter(**kwargs))


def log_exporter(
    endpoint: str | None = None,
    protocol_name: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> LogRecordExporter:
    """For captured message content as log events (``content.py``), nothing else."""
    kwargs = _arguments("logs", endpoint, protocol_name, headers)
    if protocol("logs", protocol_name) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter(**kwargs)


def _arguments(
    signal: Signal,
    endpoint: str | None,
    protocol_name: str | None,
    headers: Mapping[str, str] | None,
) -> dict[str, object]:
    kwargs: dict[str, object] = {}
    if endpoint:
        if protocol(signal, protocol_name) == "grpc":
            kwargs["endpoint"] = endpoint
        else:  # a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT: the signal's path is appended
            kwargs["endpoint"] = endpoint.rstrip("/") + _HTTP_PATHS[signal]
    if headers is not None:
        kwargs["headers"] = dict(headers)
    return kwargs
