"""Every attribute, metric and event name this package emits, in one place.

The ``gen_ai.*`` names are the OpenTelemetry GenAI semantic conventions. They are spelled
out here rather than imported from ``opentelemetry.semconv._incubating``, which has marked
them deprecated (they moved to the semantic-conventions-genai repository): a future
``opentelemetry-semantic-conventions`` release may drop them, and the names we put on the
wire must not change with it. Names the conventions lack carry the ``octomil.`` prefix.

Two sets of GenAI names: those of the main repository's last GenAI release (the default,
so no user's dashboard breaks) and, with ``OTEL_SEMCONV_STABILITY_OPT_IN`` holding
``gen_ai_latest_experimental``, the current ones, as the official instrumentations switch.
The current ones follow open-telemetry/semantic-conventions-genai at commit
024a4f944a1291fcb627c9c47da69e79868dd15e (docs/gen-ai/client-inference.md,
gen-ai-token-metrics.md, client-embeddings.md).
"""

from __future__ import annotations

import os
from typing import Final

OTEL_SEMCONV_STABILITY_OPT_IN: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
GEN_AI_LATEST_EXPERIMENTAL: Final = "gen_ai_latest_experimental"


def latest_experimental() -> bool:
    """Whether the user opted in to the current GenAI names (a comma-separated list, as
    every OpenTelemetry instrumentation reads it). Read when a recorder is created."""
    opted_in = os.environ.get(OTEL_SEMCONV_STABILITY_OPT_IN, "").split(",")
    return GEN_AI_LATEST_EXPERIMENTAL in map(str.strip, opted_in)


# --- GenAI semantic conventions: span attributes -----------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
ERROR_TYPE: Final = "error.type"

OPERATION_CHAT: Final = "chat"
OPERATION_TEXT_COMPLETION: Final = "text_completion"
OPERATION_EMBEDDINGS: Final = "embeddings"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
FINISH_REASON_ERROR: Final = "error"
"""``gen_ai.response.finish_reasons`` of a request that failed or was cancelled."""

# --- current conventions only (the opt-in above) ------------------------------------------
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_TOKEN_MODALITY: Final = "gen_ai.token.modality"
TOKEN_MODALITY_TEXT: Final = "text"
TOKEN_MODALITY_UNKNOWN: Final = "unknown"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS: Final = "gen_ai.client.inference.operation.details"
GEN_AI_CLIENT_INFERENCE_DURATION: Final = "gen_ai.client.inference.duration"
GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.inference.time_to_first_chunk"
GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK: Final = (
    "gen_ai.client.inference.time_per_output_chunk"
)
GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS: Final = "gen_ai.client.inference.usage.input_tokens"
GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS: Final = "gen_ai.client.inference.usage.output_tokens"
GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS: Final = (
    "gen_ai.client.inference.operation.input_tokens"
)
GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS: Final = (
    "gen_ai.client.inference.operation.output_tokens"
)
GEN_AI_CLIENT_EMBEDDINGS_DURATION: Final = "gen_ai.client.embeddings.duration"
GEN_AI_CLIENT_EMBEDDINGS_OPERATION_INPUT_TOKENS: Final = (
    "gen_ai.client.embeddings.operation.input_tokens"
)

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
"""Every chunk's latency, in order: the exact data behind ``chunk_produced``, as
hexadecimal text on the application's span (see ``chunk_latencies``), as a tuple of int
nanoseconds on the Octomil record, which no SDK checks or exports.

One attribute rather than a span event per chunk: a span keeps at most
``SpanLimits.max_events`` events (128 by default), and building each costs more than the
whole hot path of a chunk.
"""

OCTOMIL_QUEUE_MS: Final = "octomil.queue_ms"
OCTOMIL_PREFILL_MS: Final = "octomil.prefill_ms"
OCTOMIL_DECODE_MS: Final = "octomil.decode_ms"
OCTOMIL_PEAK_MEMORY_BYTES: Final = "octomil.peak_memory_bytes"
"""Where a request's time went (``octomil-api.md``, extra metrics): the wait for the engine
in ``octomil serve`` (until it took the request, or the request stopped waiting), the
engine's prompt evaluation and its generation after the first token, from the engine's own
counters; and the engine's peak memory. Left out when not known, never 0 for unknown."""

# histograms of the same, both conventions
OCTOMIL_QUEUE_DURATION: Final = "octomil.inference.queue.duration"
OCTOMIL_PREFILL_DURATION: Final = "octomil.inference.prefill.duration"
OCTOMIL_DECODE_DURATION: Final = "octomil.inference.decode.duration"
OCTOMIL_PEAK_MEMORY: Final = "octomil.inference.peak_memory"
MEMORY_BUCKETS: Final = tuple(float(1 << power) for power in range(20, 41, 2))
"""1 MiB to 1 TiB, by fourfold steps."""

CANCELLED: Final = "cancelled"
"""``error.type`` of a request stopped before its end: its consumer closed or dropped the
stream, its client left, or the server stopped while it ran."""
SHUTDOWN: Final = "shutdown"
"""``error.type`` of a request that waited for the engine while the server stopped."""
SERVER_OVERLOADED: Final = "server_overloaded"
"""``error.type`` of a request refused while others waited for the engine, or that waited
longer than allowed."""
