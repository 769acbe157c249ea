"""One small module per engine: where to hook and how to read its tokens, nothing more.

The engines are optional: an instrumentor is only loaded when its library is installed.
"""

from __future__ import annotations

import importlib
import logging

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

_logger = logging.getLogger(__name__)

INSTRUMENTORS = (
    ("octomil_otel.instrumentation.llamacpp", "LlamaCppInstrumentor"),
    ("octomil_otel.instrumentation.mlx", "MLXInstrumentor"),
)


def instrument_installed(
    tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider
) -> list[BaseInstrumentor]:
    """Instrument every engine that is installed; the ones that were instrumented now."""
    done = []
    for module, name in INSTRUMENTORS:
        instrumentor: BaseInstrumentor = getattr(importlib.import_module(module), name)()
        conflict = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
        if conflict is not None:
            _logger.debug("octomil_otel: not instrumenting %s: %s", name, conflict)
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            continue
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        done.append(instrumentor)
    return done
