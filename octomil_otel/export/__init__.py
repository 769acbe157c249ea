"""Delivery to the Octomil API: events, the reporter, the span exporter."""

from octomil_otel.export.reporter import TelemetryReporter
from octomil_otel.export.span_exporter import OctomilSpanExporter, OctomilSpanProcessor

__all__ = ["OctomilSpanExporter", "OctomilSpanProcessor", "TelemetryReporter"]
