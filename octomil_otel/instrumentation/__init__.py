"""One small module per engine: where to hook and how to read its tokens, nothing more.

The engines are optional: an instrumentor is only loaded when its library is installed,
and it wraps its engine only when the application imports it (``on_import.py``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Collection

from opentelemetry import _logs, metrics, trace
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

_logger = logging.getLogger(__name__)

# engine -> where its instrumentor is
INSTRUMENTORS = {
    "llamacpp": ("octomil_otel.instrumentation.llamacpp", "LlamaCppInstrumentor"),
    "mlx": ("octomil_otel.instrumentation.mlx", "MLXInstrumentor"),
}


def instrument_installed(
    tracer_provider: trace.TracerProvider,
    meter_provider: metrics.MeterProvider,
    logger_provider: _logs.LoggerProvider | None = None,
    engines: Collection[str] = tuple(INSTRUMENTORS),
) -> list[BaseInstrumentor]:
    """Instrument those of ``engines`` that are installed and not instrumented yet;
    returns their instrumentors. Imports no engine: each is wrapped when the application
    imports it, or now if it has."""
    done = []
    for engine in engines:
        if engine not in INSTRUMENTORS:
            continue
        module, name = INSTRUMENTORS[engine]
        instrumentor: BaseInstrumentor = getattr(importlib.import_module(module), name)()
        conflict = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
        if conflict is not None:
            # not installed: nothing to say; installed in a version we do not know: say so
            level = logging.DEBUG if conflict.found is None else logging.WARNING
            _logger.log(
                level, "octomil_otel: not instrumenting %s, its requests are not recorded: %s",
                engine, conflict,
            )  # fmt: skip
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            continue
        instrumentor.instrument(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
        )
        done.append(instrumentor)
    return done
