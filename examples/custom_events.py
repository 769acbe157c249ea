"""Custom events straight to the Octomil API with ``TelemetryReporter``.

Run:
    OCTOMIL_API_KEY=<key> python examples/custom_events.py
"""

import os

from octomil.telemetry import TelemetryReporter

reporter = TelemetryReporter(
    api_key=os.environ["OCTOMIL_API_KEY"],
    api_base=os.environ.get("OCTOMIL_API_BASE", "https://api.octomil.com"),
    flush_interval_seconds=5.0,
    max_queue_size=1000,
)
reporter.report(
    {
        "event_type": "generation_completed",
        "model": "gemma-1b",
        "engine": "mlx",
        "metrics": {
            "ttfc_ms": 150.0,
            "throughput_tok_s": 35.2,
            "total_duration_ms": 2100.0,
            "input_tokens": 52,
            "output_tokens": 200,
        },
    }
)
reporter.flush()  # deliver now
print(f"delivered {reporter.delivered_events}, dropped {reporter.dropped_events}")
reporter.shutdown()
