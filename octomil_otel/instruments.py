"""The histograms and counters each finished request is recorded in.

Which GenAI instruments depends on the conventions the user chose (``semconv``): today's
names by default, the current ones with ``OTEL_SEMCONV_STABILITY_OPT_IN`` holding
``gen_ai_latest_experimental``. The ``octomil.inference.*`` histograms of where the time
went are the same under both. ``Generation`` calls ``Instruments.record`` once per request,
never per chunk.

Requests are recorded many at a time: each instrument gets the values of all of them that
share its attributes in one list, in the order the requests ended (so that a point's sum
adds them in the order one record at a time would). ``octomil serve``'s ``/metrics``
histograms take such a list in one call (``record_all``); an SDK's, a value at a time.
"""

from __future__ import annotations

import logging
import operator
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from opentelemetry import metrics

from octomil_otel import semconv
from octomil_otel.ended_requests import BATCH, ENDED

_logger = logging.getLogger(__name__)


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


_ByError = list[tuple[dict[str, Any], list[Outcome]]]
"""Requests of one set of attributes by those attributes with their error's (``error.type``,
none for those that did not fail), in the order each first ended."""

SETTLE_EVERY = BATCH
"""Each time this many more outcomes are kept, settling them is handed to the recorder's
thread (``ENDED.put``): where requests are recorded at once (a recording span, captured
content), nothing else drains until a scrape, and settling thousands on a request's
thread held the GIL ~15 ms."""


class Instruments:
    """Every instrument of one meter, created once per recorder.

    Args:
        meter: where the instruments are created.
        latest: the current GenAI names, not today's.
        deferred: the meter's readers call ``ENDED.drain()`` before they read (``Drains``):
            ``record`` then keeps each outcome, and each drain records all those kept
            (``settle``), many at a time (callgrind, a served request's five values:
            ~50k instructions one record at a time, ~23k so); else ``record`` records at
            once.
    """

    def __init__(self, meter: metrics.Meter, *, latest: bool, deferred: bool = False) -> None:
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

        self._deferred = deferred

    def record(self, outcome: Outcome) -> None:
        """Record one finished request: now, or (``deferred``) at the next drain."""
        if not self._deferred:
            self._record_all((outcome,))
            return
        _kept.append((self, outcome))
        if len(_kept) % SETTLE_EVERY == 0:
            ENDED.put(settle)

    def _record_all(self, outcomes: Iterable[Outcome]) -> None:
        """By set of attributes (in any key order), in the order the requests ended; and
        by error in each set, which most instruments' attributes carry (``error.type``)."""
        by_set: dict[object, tuple[list[Outcome], dict[str | None, list[Outcome]]]] = {}
        for outcome in outcomes:
            try:
                key: object = frozenset(outcome.attributes.items())
            except TypeError:  # a value that is not hashable: recorded on its own
                key = object()
            same_set = by_set.get(key)
            if same_set is None:
                same_set = by_set[key] = ([], {})
            same_set[0].append(outcome)
            same_error = same_set[1].get(outcome.error_type)
            if same_error is None:
                same_set[1][outcome.error_type] = [outcome]
            else:
                same_error.append(outcome)
        for everyone, by_error in by_set.values():
            try:
                self._record_set(everyone, by_error)
            except Exception:  # a value an instrument refuses: the other sets are recorded
                _logger.debug("octomil_otel: could not record requests", exc_info=True)

    def _record_set(
        self, everyone: list[Outcome], by_error: dict[str | None, list[Outcome]]
    ) -> None:
        plain = everyone[0].attributes
        with_error = [
            (plain if error_type is None else {**plain, semconv.ERROR_TYPE: error_type}, group)
            for error_type, group in by_error.items()
        ]
        self._genai.record(everyone, with_error)
        for attributes, group in with_error:
            for name, histogram in self._split.items():
                _record(
                    histogram,
                    [o.split_ms[name] / 1000 for o in group if name in o.split_ms],
                    attributes,
                )
            _record(
                self._peak_memory,
                [o.peak_memory_bytes for o in group if o.peak_memory_bytes is not None],
                attributes,
            )


_kept: deque[tuple[Instruments, Outcome]] = deque()
"""Every deferred ``Instruments``' outcomes, in the order the requests ended: those of one
meter share its instruments (two recorders on one provider), so they are settled together,
in that order."""
_settling = threading.Lock()  # one settle at a time: values go in in the order kept


def settle() -> None:
    """Record every outcome kept so far; ``ENDED`` calls it after each drain, so that a
    reader that drains sees every request that ended before it."""
    with _settling:
        by_meter: dict[object, tuple[Instruments, list[Outcome]]] = {}
        for _ in range(len(_kept)):
            instruments, outcome = _kept.popleft()
            same = by_meter.get(instruments._genai.duration)  # the meter's and names'
            if same is None:
                by_meter[instruments._genai.duration] = (instruments, [outcome])
            else:
                same[1].append(outcome)
        for instruments, outcomes in by_meter.values():
            instruments._record_all(outcomes)


def _after_fork_in_child() -> None:
    """As ``ENDED``: the parent records what it kept; the child starts empty, unlocked."""
    global _settling
    _kept.clear()
    _settling = threading.Lock()


ENDED.settle_after_drain(settle)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _record(histogram: metrics.Histogram, values: list[float], attributes: dict[str, Any]) -> None:
    """``values`` with ``attributes``, in order: in one call where the histogram takes a
    list (``octomil serve``'s ``/metrics``), else one at a time."""
    if values:
        record_all: Callable[[list[float], dict[str, Any]], None] | None = getattr(
            histogram, "record_all", None
        )
        if record_all is not None:
            record_all(values, attributes)
        else:
            for value in values:
                histogram.record(value, attributes)


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

    def record(self, everyone: list[Outcome], with_error: _ByError) -> None:
        """``everyone``: requests of one set of attributes; ``with_error``: the same, by
        those attributes with their error's."""
        for attributes, group in with_error:
            _record(self.duration, [o.duration_s for o in group], attributes)
            for token_type, counts in (
                (semconv.TOKEN_TYPE_INPUT, [o.input_tokens for o in group]),
                (semconv.TOKEN_TYPE_OUTPUT, [o.output_tokens for o in group]),
            ):
                known = [count for count in counts if count is not None]
                if known:
                    typed = {**attributes, semconv.GEN_AI_TOKEN_TYPE: token_type}
                    _record(self.token_usage, known, typed)
            if group[0].error_type is not None:
                continue
            chunked = [o for o in group if o.latencies_ns]
            _record(
                self.time_to_first_token, [o.latencies_ns[0] / 1e9 for o in chunked], attributes
            )
            _record(
                self.time_per_output_token,
                [s for s in map(_time_per_output_token, chunked) if s is not None],
                attributes,
            )


def _time_per_output_token(outcome: Outcome) -> float | None:
    """After the first token: as the caller saw it come, or (answered whole, when the
    first token is not seen) as the engine's counters timed it, if they did."""
    if outcome.output_tokens is None or outcome.output_tokens < 2:
        return None
    if outcome.stream:
        decode_s = outcome.duration_s - outcome.latencies_ns[0] / 1e9
    elif semconv.OCTOMIL_DECODE_MS in outcome.split_ms:
        decode_s = outcome.split_ms[semconv.OCTOMIL_DECODE_MS] / 1000
    else:
        return None
    return decode_s / (outcome.output_tokens - 1)


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

    def record(self, everyone: list[Outcome], with_error: _ByError) -> None:
        """As ``_GenAI.record``."""
        plain = everyone[0].attributes
        if plain[semconv.GEN_AI_OPERATION_NAME] == semconv.OPERATION_EMBEDDINGS:
            for attributes, group in with_error:
                _record(self.embeddings_duration, [o.duration_s for o in group], attributes)
                _record(
                    self.embeddings_input_tokens,
                    [o.input_tokens for o in group if o.input_tokens is not None],
                    attributes,
                )
            return
        for attributes, group in with_error:
            _record(self.duration, [o.duration_s for o in group], attributes)
        # every request, failed ones too; a count the engine did not give is 0 ("unknown"
        # on the counters, which, like the chunk metrics, carry no error.type)
        text = {**plain, semconv.GEN_AI_TOKEN_MODALITY: semconv.TOKEN_MODALITY_TEXT}
        unknown = {**plain, semconv.GEN_AI_TOKEN_MODALITY: semconv.TOKEN_MODALITY_UNKNOWN}
        for counter, histogram, count_of in (
            (self.input_tokens, self.operation_input_tokens, _INPUT_TOKENS),
            (self.output_tokens, self.operation_output_tokens, _OUTPUT_TOKENS),
        ):
            for count in map(count_of, everyone):
                if count is None:
                    counter.add(0, unknown)
                else:
                    counter.add(count, text)
            for attributes, group in with_error:
                _record(histogram, [count_of(o) or 0 for o in group], attributes)
        streamed = [o for o in everyone if o.stream and o.latencies_ns]
        _record(self.time_to_first_chunk, [o.latencies_ns[0] / 1e9 for o in streamed], plain)
        _record(
            self.time_per_output_chunk,
            [latency_ns / 1e9 for o in streamed for latency_ns in o.latencies_ns[1:]],
            plain,
        )


_INPUT_TOKENS = operator.attrgetter("input_tokens")
_OUTPUT_TOKENS = operator.attrgetter("output_tokens")
