"""Every attribute, metric and event name this package emits, in one place.

The ``gen_ai.*`` names are the OpenTelemetry GenAI semantic conventions. They are spelled
out here rather than imported from ``opentelemetry.semconv._incubating``, which has marked
them deprecated (they moved to the semantic-conventions-genai repository): a future
``opentelemetry-semantic-conventions`` release may drop them, and the names we put on the
wire must not change with it. Names the conventions lack carry the ``octomil.`` prefix.
"""

from __future__ import annotations

from typing import Final

# --- GenAI semantic conventions: span attributes -----------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
ERROR_TYPE: Final = "error.type"

OPERATION_CHAT: Final = "chat"
OPERATION_TEXT_COMPLETION: Final = "text_completion"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# --- GenAI semantic conventions: metrics, with the conventions' bucket advice ------------
GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: Final = "gen_ai.server.time_to_first_token"
GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: Final = "gen_ai.server.time_per_output_token"

DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_USAGE_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
    67108864,
)  # fmt: skip
TIME_TO_FIRST_TOKEN_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TIME_PER_OUTPUT_TOKEN_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip

# --- Octomil: the documented metrics that the conventions have no name for ---------------
OCTOMIL_TTFC_MS: Final = "octomil.ttfc_ms"
OCTOMIL_TOTAL_DURATION_MS: Final = "octomil.total_duration_ms"
OCTOMIL_THROUGHPUT_TOK_S: Final = "octomil.throughput_tok_s"
OCTOMIL_CHUNK_LATENCY_AVG_MS: Final = "octomil.chunk_latency_avg_ms"
OCTOMIL_CHUNK_LATENCY_P99_MS: Final = "octomil.chunk_latency_p99_ms"
OCTOMIL_CHUNK_LATENCIES_NS: Final = "octomil.chunk.latencies_ns"
"""Every chunk's latency, in order: the exact data behind ``chunk_produced``, as bytes
(see ``chunk_latencies``).

One attribute rather than a span event per chunk: a span keeps at most
``SpanLimits.max_events`` events (128 by default), and building each costs more than the
whole hot path of a chunk.
"""

CANCELLED: Final = "cancelled"
"""``error.type`` of a request stopped before its end: its consumer closed or dropped the
stream, its client left, or the server stopped while it ran."""
SHUTDOWN: Final = "shutdown"
"""``error.type`` of a request that waited for the engine while the server stopped."""
