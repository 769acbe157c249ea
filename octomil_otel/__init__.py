"""OpenTelemetry instrumentation and Octomil telemetry for local LLM inference.

Usage::

    import octomil_otel
    octomil_otel.init(api_key="...")   # or OCTOMIL_API_KEY in the environment

Importing this package has no side effects; ``init()`` sets up the pipeline.
"""

from octomil_otel.export import OctomilSpanExporter, OctomilSpanProcessor, TelemetryReporter
from octomil_otel.generation import Generation, Recorder, active_generation
from octomil_otel.pipeline import Telemetry, init, shutdown
from octomil_otel.version import __version__

__all__ = [
    "Generation",
    "OctomilSpanExporter",
    "OctomilSpanProcessor",
    "Recorder",
    "Telemetry",
    "TelemetryReporter",
    "__version__",
    "active_generation",
    "init",
    "shutdown",
]
