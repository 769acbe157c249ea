"""``from octomil.telemetry import TelemetryReporter``, as the product document shows."""

from octomil_otel.export.reporter import TelemetryReporter

__all__ = ["TelemetryReporter"]
