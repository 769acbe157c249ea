"""The histograms and counters each finished request is recorded in.

Which GenAI instruments depends on the conventions the user chose (``semconv``): today's
names by default, the current ones with ``OTEL_SEMCONV_STABILITY_OPT_IN`` holding
``gen_ai_latest_experimental``. The ``octomil.inference.*`` histograms of where the time
went are the same under both. ``Generation`` calls ``Instruments.record`` once per request,
never per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from opentelemetry import metrics

from octomil_otel import semconv


class Outcome(NamedTuple):
    """What the instruments need of one finished request (a tuple: a frozen dataclass took
    ~0.8 us more a request to build).

    ``attributes``: operation, provider and request model; ``latencies_ns``: each chunk's
    latency, the first one the time to it; ``split_ms``: the ``octomil.*_ms`` figures known
    for this request (``semconv.OCTOMIL_QUEUE_MS`` ...), ``peak_memory_bytes`` if known.
    """

    attributes: dict[str, Any]
    error_type: str | None
    stream: bool
    duration_s: float
    latencies_ns: Sequence[int]
    input_tokens: int | None
    output_tokens: int | None
    split_ms: dict[str, float]
    peak_memory_bytes: int | None


class Instruments:
    """Every instrument of one meter, created once per recorder."""

    def __init__(self, meter: metrics.Meter, *, latest: bool) -> None:
        self._genai = _LatestGenAI(meter) if latest else _GenAI(meter)
        self._split = {
            semconv.OCTOMIL_QUEUE_MS: _seconds(
                meter,
                semconv.OCTOMIL_QUEUE_DURATION,
                "Time a request waited for the engine (octomil serve)",
            ),
            semconv.OCTOMIL_PREFILL_MS: _seconds(
                meter,
                semconv.OCTOMIL_PREFILL_DURATION,
                "The engine's prompt evaluation, from its own counters",
            ),
            semconv.OCTOMIL_DECODE_MS: _seconds(
                meter,
                semconv.OCTOMIL_DECODE_DURATION,
                "The engine's generation after the first token, from its counters",
            ),
        }
        self._peak_memory = meter.create_histogram(
            semconv.OCTOMIL_PEAK_MEMORY,
            unit="By",
            description="The engine's peak memory, as it reports it",
            explicit_bucket_boundaries_advisory=semconv.MEMORY_BUCKETS,
        )

    def record(self, outcome: Outcome) -> None:
        attributes = outcome.attributes
        if outcome.error_type is not None:
            attributes = {**attributes, semconv.ERROR_TYPE: outcome.error_type}
        self._genai.record(outcome, attributes)
        for name, ms in outcome.split_ms.items():
            self._split[name].record(ms / 1000, attributes)
        if outcome.peak_memory_bytes is not None:
            self._peak_memory.record(outcome.peak_memory_bytes, attributes)


def _seconds(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    """A duration histogram with the conventions' duration buckets."""
    return meter.create_histogram(
        name,
        unit="s",
        description=description,
        explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS,
    )


def _tokens(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    """A per-operation token histogram with the conventions' token buckets."""
    return meter.create_histogram(
        name,
        unit="{token}",
        description=description,
        explicit_bucket_boundaries_advisory=semconv.TOKEN_USAGE_BUCKETS,
    )


class _GenAI:
    """The names of the main repository's last GenAI release: the default."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = _seconds(
            meter, semconv.GEN_AI_CLIENT_OPERATION_DURATION, "GenAI operation duration"
        )
        self.token_usage = meter.create_histogram(
            semconv.GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=semconv.TOKEN_USAGE_BUCKETS,
        )
        self.time_to_first_token = meter.create_histogram(
            semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
            unit="s",
            description="Time to generate first token for successful responses",
            explicit_bucket_boundaries_advisory=semconv.TIME_TO_FIRST_TOKEN_BUCKETS,
        )
        self.time_per_output_token = meter.create_histogram(
            semconv.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
            unit="s",
            description="Time per output token generated after the first token",
            explicit_bucket_boundaries_advisory=semconv.TIME_PER_OUTPUT_TOKEN_BUCKETS,
        )

    def record(self, outcome: Outcome, attributes: dict[str, Any]) -> None:
        self.duration.record(outcome.duration_s, attributes)
        for token_type, count in (
            (semconv.TOKEN_TYPE_INPUT, outcome.input_tokens),
            (semconv.TOKEN_TYPE_OUTPUT, outcome.output_tokens),
        ):
            if count is not None:
                self.token_usage.record(
                    count, {**attributes, semconv.GEN_AI_TOKEN_TYPE: token_type}
                )
        if not outcome.latencies_ns or outcome.error_type is not None:
            return
        ttfc_s = outcome.latencies_ns[0] / 1e9
        self.time_to_first_token.record(ttfc_s, attributes)
        if outcome.output_tokens is None or outcome.output_tokens < 2:
            return
        # after the first token: as the caller saw it come, or (answered whole, when the
        # first token is not seen) as the engine's counters timed it, if they did
        if outcome.stream:
            decode_s = outcome.duration_s - ttfc_s
        elif semconv.OCTOMIL_DECODE_MS in outcome.split_ms:
            decode_s = outcome.split_ms[semconv.OCTOMIL_DECODE_MS] / 1000
        else:
            return
        self.time_per_output_token.record(decode_s / (outcome.output_tokens - 1), attributes)


class _LatestGenAI:
    """The current names (semantic-conventions-genai, see ``semconv``)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = _seconds(
            meter,
            semconv.GEN_AI_CLIENT_INFERENCE_DURATION,
            "GenAI client inference operation duration",
        )
        self.time_to_first_chunk = _seconds(
            meter,
            semconv.GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK,
            "Time to receive the first chunk of a streamed response",
        )
        self.time_per_output_chunk = _seconds(
            meter,
            semconv.GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK,
            "Time from the end of the previous chunk to the end of this one",
        )
        self.input_tokens = meter.create_counter(
            semconv.GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS,
            unit="{token}",
            description="The number of input (prompt) tokens used",
        )
        self.output_tokens = meter.create_counter(
            semconv.GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS,
            unit="{token}",
            description="The number of output (completion) tokens used",
        )
        self.operation_input_tokens = _tokens(
            meter,
            semconv.GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS,
            "Input (prompt) tokens of one inference operation",
        )
        self.operation_output_tokens = _tokens(
            meter,
            semconv.GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS,
            "Output (completion) tokens of one inference operation",
        )
        self.embeddings_duration = _seconds(
            meter,
            semconv.GEN_AI_CLIENT_EMBEDDINGS_DURATION,
            "GenAI client embeddings operation duration",
        )
        self.embeddings_input_tokens = _tokens(
            meter,
            semconv.GEN_AI_CLIENT_EMBEDDINGS_OPERATION_INPUT_TOKENS,
            "Input tokens of one embeddings operation",
        )

    def record(self, outcome: Outcome, attributes: dict[str, Any]) -> None:
        if attributes[semconv.GEN_AI_OPERATION_NAME] == semconv.OPERATION_EMBEDDINGS:
            self.embeddings_duration.record(outcome.duration_s, attributes)
            if outcome.input_tokens is not None:
                self.embeddings_input_tokens.record(outcome.input_tokens, attributes)
            return
        self.duration.record(outcome.duration_s, attributes)
        # every request, failed ones too; a count the engine did not give is 0 ("unknown"
        # on the counters, which, like the chunk metrics, carry no error.type)
        plain = outcome.attributes
        for counter, histogram, count in (
            (self.input_tokens, self.operation_input_tokens, outcome.input_tokens),
            (self.output_tokens, self.operation_output_tokens, outcome.output_tokens),
        ):
            modality = semconv.TOKEN_MODALITY_TEXT
            if count is None:
                count, modality = 0, semconv.TOKEN_MODALITY_UNKNOWN
            counter.add(count, {**plain, semconv.GEN_AI_TOKEN_MODALITY: modality})
            histogram.record(count, attributes)
        if not outcome.stream or not outcome.latencies_ns:
            return
        self.time_to_first_chunk.record(outcome.latencies_ns[0] / 1e9, plain)
        record = self.time_per_output_chunk.record
        for latency_ns in outcome.latencies_ns[1:]:
            record(latency_ns / 1e9, plain)
