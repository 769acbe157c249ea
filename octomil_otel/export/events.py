"""The documented event: its fields, their checks, and how a finished span becomes events.

``encode`` is pure: the span carries everything (the recorder's complete record of the
request), so the same span always gives the same events, byte for byte.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import numbers
import re
import time
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from octomil_otel import chunk_latencies, semconv

GENERATION_STARTED: Final = "generation_started"
CHUNK_PRODUCED: Final = "chunk_produced"
GENERATION_COMPLETED: Final = "generation_completed"
GENERATION_FAILED: Final = "generation_failed"
EVENT_TYPES: Final = frozenset(
    (GENERATION_STARTED, CHUNK_PRODUCED, GENERATION_COMPLETED, GENERATION_FAILED)
)

# ASCII digits only, and nothing after the end (``$`` would let a trailing newline through);
# ingest's fast path checks the same patterns
REQUEST_ID_PATTERN: Final = r"^req_[0-9a-f]{8,}\Z"
SECOND_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
"""A timestamp's first 19 characters: the date and time of day, to the second."""
TIMESTAMP_PATTERN: Final = SECOND_PATTERN + r"\.[0-9]{3}Z\Z"
HEX_PATTERN: Final = r"^[0-9a-f]+\Z"
DEVICE_ID_PATTERN: Final = r"^[0-9a-f]{12}\Z"
WHOLE_METRICS: Final = ("chunk_index", "input_tokens", "output_tokens")
"""Metrics that count (chunks, tokens): whole numbers, below ``MAX_CHUNK_INDEX``."""
MAX_EVENT_CHARS: Final = 1024 * 1024 - 4096
"""An encoded event's size, at most: a batch's (``_transport.MAX_BATCH_BYTES``, 1 MiB) less
room for its head, the device and org fields, and a chunk's metrics (a chunk's event is at
most ~100 characters longer than its request's first). ``encode`` refuses a request whose
first or last event is longer, so that the API gets all of a request's events or none."""
MAX_CHUNK_INDEX: Final = 2**53
"""Chunk indexes are whole numbers below this: exact as a double and as a database integer."""
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_HEX = re.compile(HEX_PATTERN)
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_TEXT_FIELDS: Final = ("timestamp", "device_id", "org_id", "model", "engine")
_OPTIONAL_FIELDS: Final = frozenset(
    ("timestamp", "device_id", "org_id", "request_id", "stream", "metrics", "trace_id", "span_id")
)
_KNOWN_FIELDS: Final = _OPTIONAL_FIELDS | {"event_type", "model", "engine"}

# span attribute -> metric name in generation_completed, in the order the recorder makes
# them (``generation.summarize``, then the rest): a span and the record of the same request
# give the same text
_COMPLETED_METRICS: Final = (
    (semconv.OCTOMIL_TOTAL_DURATION_MS, "total_duration_ms"),
    (semconv.OCTOMIL_TTFC_MS, "ttfc_ms"),
    (semconv.OCTOMIL_CHUNK_LATENCY_AVG_MS, "chunk_latency_avg_ms"),
    (semconv.OCTOMIL_CHUNK_LATENCY_P99_MS, "chunk_latency_p99_ms"),
    (semconv.OCTOMIL_THROUGHPUT_TOK_S, "throughput_tok_s"),
    (semconv.GEN_AI_USAGE_INPUT_TOKENS, "input_tokens"),
    (semconv.GEN_AI_USAGE_OUTPUT_TOKENS, "output_tokens"),
    # octomil-api.md's extra metrics
    (semconv.OCTOMIL_QUEUE_MS, "queue_ms"),
    (semconv.OCTOMIL_PREFILL_MS, "prefill_ms"),
    (semconv.OCTOMIL_DECODE_MS, "decode_ms"),
    (semconv.OCTOMIL_PEAK_MEMORY_BYTES, "peak_memory_bytes"),
)
METRIC_NAMES: Final = dict(_COMPLETED_METRICS)
"""A span attribute's name as a metric of the events."""
_ATTRIBUTES: Final = {name: key for key, name in _COMPLETED_METRICS}
"""A metric of the events' name as a span attribute."""
_FAILED_METRICS: Final = ("total_duration_ms", "output_tokens", "queue_ms")
"""What of ``generation_completed``'s metrics ``generation_failed`` has, in the same order."""


def format_timestamp(unix_ns: int) -> str:
    """RFC 3339, UTC, milliseconds and ``Z``: ``2026-02-19T14:32:01.442Z``."""
    unix_ms = unix_ns // 1_000_000
    return _utc_second(unix_ms // 1000) + MILLISECOND_SUFFIXES[unix_ms % 1000]


@functools.lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    """Date and time of day, formatted once per second: a request's events mostly share one
    (``strftime`` per event cost more than all the rest of its encoding)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


MILLISECOND_SUFFIXES: Final = tuple(f".{ms:03d}Z" for ms in range(1000))
"""A timestamp's last 5 characters, ``.000Z`` to ``.999Z``, indexed by the millisecond."""


def parse_timestamp(text: str) -> int:
    """ms since the epoch of a text that matches ``TIMESTAMP_PATTERN``; ``ValueError`` for a
    date or time of day that does not exist (2026-02-30, 25:00)."""
    return _utc_second_ms(text[:19]) + int(text[20:23])


@functools.lru_cache(maxsize=4096)
def _utc_second_ms(text: str) -> int:
    """Parsed once per second, as ``_utc_second`` formats (a request's events share one),
    by datetime's C parser: ``time.strptime`` took 5 us."""
    return (datetime.datetime.fromisoformat(text) - _EPOCH) // _MILLISECOND


_EPOCH: Final = datetime.datetime(1970, 1, 1)
_MICROSECOND: Final = datetime.timedelta(microseconds=1)
_FIRST_NS: Final = (datetime.datetime(1000, 1, 1) - _EPOCH) // _MICROSECOND * 1000
_END_NS: Final = ((datetime.datetime.max - _EPOCH) // _MICROSECOND + 1) * 1000  # year 10000
_MILLISECOND: Final = datetime.timedelta(milliseconds=1)


def is_unicode(text: str) -> bool:
    """Whether ``text`` is Unicode (no lone surrogate, which JSON's ``\\ud800`` can carry):
    what a store can keep and a browser show."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def validate_event(event: object) -> dict[str, Any]:
    """A checked copy of ``event``, or a ``TypeError``/``ValueError`` naming the field.

    Checks what the caller may give (``report()`` fills in the rest): the event type and,
    for the engine events, ``model`` and ``engine``; every present field's type and form
    (``device_id`` 12 lowercase hex characters, ids and times as the contract writes them);
    metrics that are finite, non-negative numbers (``error_type`` is the one text metric),
    the counts of ``WHOLE_METRICS`` whole numbers.
    """
    if not isinstance(event, Mapping):
        raise TypeError(f"event must be a mapping, not {type(event).__name__}")
    unknown = sorted(str(k) for k in event if k not in _KNOWN_FIELDS)
    if unknown:
        raise ValueError(f"event has unknown field {unknown[0]!r}")
    event_type = event.get("event_type")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"event_type must be one of {sorted(EVENT_TYPES)}, got {event_type!r}")
    for name in ("model", "engine"):
        if name not in event:
            raise ValueError(f"{name} is required for {event_type} events")
    for name in _TEXT_FIELDS:
        if name in event and (not isinstance(event[name], str) or not event[name]):
            raise TypeError(f"{name} must be a non-empty str, got {event[name]!r}")
        if name in event and not is_unicode(event[name]):
            raise ValueError(f"{name} must be Unicode text, got {event[name]!r}")
    if "device_id" in event and not _DEVICE_ID.match(event["device_id"]):
        raise ValueError(
            f"device_id must be 12 lowercase hex characters, got {event['device_id']!r}"
        )
    if "timestamp" in event and not _is_timestamp(event["timestamp"]):
        raise ValueError(
            f"timestamp must be RFC 3339 UTC with milliseconds, got {event['timestamp']!r}"
        )
    if "request_id" in event:
        _checked_request_id(event["request_id"])
    for name in ("trace_id", "span_id"):
        if name in event and (not isinstance(event[name], str) or not _HEX.match(event[name])):
            raise ValueError(f"{name} must be lowercase hex, got {event[name]!r}")
    if "stream" in event and not isinstance(event["stream"], bool):
        raise TypeError(f"stream must be a bool, got {event['stream']!r}")
    checked = dict(event)
    if "metrics" in event:
        checked["metrics"] = _validate_metrics(event["metrics"])
    return checked


def _checked_request_id(value: object) -> str:
    if not isinstance(value, str) or not _REQUEST_ID.match(value):
        raise ValueError(f"request_id must be 'req_' and 8 or more lowercase hex, got {value!r}")
    return value


def _is_timestamp(text: str) -> bool:
    if not _TIMESTAMP.match(text):
        return False
    try:
        parse_timestamp(text)
    except ValueError:  # a date or time of day that does not exist
        return False
    return True


def _validate_metrics(metrics: object) -> dict[str, Any]:
    """A checked copy of ``metrics``, numpy's numbers as ints and floats."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, not {type(metrics).__name__}")
    checked = dict(metrics)
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"metrics keys must be str, got {name!r}")
        if not is_unicode(name):
            raise ValueError(f"metrics keys must be Unicode text, got {name!r}")
        if name == "error_type":
            if not isinstance(value, str) or not value:
                raise TypeError(f"metrics.error_type must be a non-empty str, got {value!r}")
            if not is_unicode(value):
                raise ValueError(f"metrics.error_type must be Unicode text, got {value!r}")
            continue
        value = checked[name] = _number(name, value)
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int too large for a double
            finite = False
        if not finite or value < 0:
            raise ValueError(f"metrics.{name} must be finite and non-negative, got {value!r}")
        if name in WHOLE_METRICS and not (float(value).is_integer() and value < MAX_CHUNK_INDEX):
            raise ValueError(f"metrics.{name} must be a whole number below 2**53, got {value!r}")
    return checked


class Record(NamedTuple):
    """One request as its events tell it: what ``write`` makes them from.

    The recorder builds it from its own values (``RecordSpan``); ``record_of`` reads it off
    a span's attributes, checking their types. ``metrics`` holds the numbers of a
    ``generation_completed`` event, by their names in it (``input_tokens`` and
    ``output_tokens`` included): a failed request's event takes some of them.
    """

    operation: str
    model: str
    engine: str
    request_id: str
    stream: bool
    start_ns: int
    end_ns: int
    trace_id: int
    """0 when the request has no valid ids: then neither is sent, as for an invalid one."""
    span_id: int
    latencies: tuple[int, ...]
    """Each chunk's latency, int nanoseconds: its gap, or ``c_0 - t0`` for the first."""
    error_type: str | None
    metrics: dict[str, Any]


_NO_RESOURCE: Final = Resource.get_empty()
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)


class RecordSpan(ReadableSpan):
    """A request's ``Record`` as the Octomil span processor takes it: a finished, sampled
    span with the request's ids, and its attributes (as the application's span has them,
    the latencies a tuple of ints) made from the record only if something reads them: the
    exporter writes the events from ``record`` itself, without reading them back.

    One is built for every request, so it sets only what is its own, not what
    ``ReadableSpan.__init__`` sets (~0.7 us a request, against ~0.28): its name and times
    are read off the record (not assignable), the rest is the same for every record (class
    attributes). ``tests/test_events.py`` checks it reads as the SDK's own span of the same
    values.
    """

    _kind = SpanKind.INTERNAL
    _parent = None
    _events = ()
    _links = ()
    _status = Status(StatusCode.UNSET)
    _resource = _NO_RESOURCE  # ReadableSpan would detect one for each
    _instrumentation_info = None
    _instrumentation_scope = None

    def __init__(
        self, record: Record, context: SpanContext | None = None, *, by_recorder: bool = False
    ) -> None:
        self.record = record
        self._given = context
        """``None``: the record's ids, sampled, made when first read (the Octomil processor
        takes the recorder's records without reading it)."""
        self._made: dict[str, Any] | None = None
        self.by_recorder = by_recorder
        """Built by the recorder (``Generation``, the only one to pass it): all its latencies
        but the first are differences of two ints from its array of chunk times, whose
        type ``write`` does not check again; one built by hand is checked as a span's
        attributes are."""

    @property
    def _name(self) -> str:
        return f"{self.record.operation} {self.record.model}"

    @property
    def _start_time(self) -> int:
        return self.record.start_ns

    @property
    def _end_time(self) -> int:
        return self.record.end_ns

    @property
    def _context(self) -> SpanContext:
        if self._given is None:
            self._given = SpanContext(self.record.trace_id, self.record.span_id, False, _SAMPLED)
        return self._given

    @property  # type: ignore[override]
    def _attributes(self) -> dict[str, Any]:
        if self._made is None:
            self._made = _attributes_of(self.record)
        return self._made

    @_attributes.setter
    def _attributes(self, value: dict[str, Any] | None) -> None:
        self._made = value


def _attributes_of(record: Record) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        semconv.GEN_AI_OPERATION_NAME: record.operation,
        semconv.GEN_AI_PROVIDER_NAME: record.engine,
        semconv.GEN_AI_REQUEST_MODEL: record.model,
        semconv.GEN_AI_REQUEST_STREAM: record.stream,
        semconv.GEN_AI_RESPONSE_ID: record.request_id,
    }
    attributes.update(outcome_attributes(record.metrics, record.error_type))
    if record.latencies:
        attributes[semconv.OCTOMIL_CHUNK_LATENCIES_NS] = record.latencies
    return attributes


def outcome_attributes(metrics: Mapping[str, Any], error_type: str | None) -> dict[str, Any]:
    """A request's metrics (by their names in the events) and its error as span attributes:
    the Octomil record's and the application's span's alike."""
    attributes = {_ATTRIBUTES[name]: value for name, value in metrics.items()}
    if error_type is not None:
        attributes[semconv.ERROR_TYPE] = error_type
    return attributes


def _generation_attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    """A span's attributes if it is a request that generated (embeddings are recorded, but
    are not generations); ``None`` for any other span."""
    attributes = span.attributes or {}
    if (
        semconv.OCTOMIL_TOTAL_DURATION_MS in attributes
        and attributes.get(semconv.GEN_AI_OPERATION_NAME) != semconv.OPERATION_EMBEDDINGS
    ):
        return attributes
    return None


def event_count(span: ReadableSpan) -> int:
    """How many events ``encode`` makes of ``span``: two and one per chunk, or none. For a
    span ``encode`` refuses, the events lost with it: never raises (0 for a span too
    malformed to tell)."""
    try:
        if type(span) is RecordSpan:
            return 2 + len(span.record.latencies)
        attributes = _generation_attributes(span)
        if attributes is None:
            return 0
        latencies = attributes.get(semconv.OCTOMIL_CHUNK_LATENCIES_NS, "")
        if type(latencies) is str:
            return 2 + len(latencies) // chunk_latencies.HEX_DIGITS
        return 2 + (len(latencies) if isinstance(latencies, (tuple, list)) else 0)
    except Exception:
        return 0


def encode(span: ReadableSpan) -> list[str]:
    """The documented events of one finished generation span, encoded; ``[]`` for any other.

    A ``RecordSpan`` (the recorder's) is written from its ``record``; any other span from
    its attributes (``record_of``), read and checked.

    Raises:
        KeyError, TypeError, ValueError, OverflowError, struct.error: as ``record_of`` and
        ``write``; the exporter drops that span alone.
    """
    if type(span) is RecordSpan:
        return write(span.record, by_recorder=span.by_recorder)
    record = record_of(span)
    return [] if record is None else write(record)


def record_of(span: ReadableSpan) -> Record | None:
    """The ``Record`` of a generation span, from its attributes; ``None`` for any other.

    Raises:
        KeyError, TypeError, ValueError, struct.error: the span lacks a field (its start or
        end time included), or holds one of a type the contract refuses (a non-bool stream,
        latencies neither a tuple nor packed text).
    """
    attributes = _generation_attributes(span)
    if attributes is None:
        return None
    start_ns, end_ns = span.start_time, span.end_time
    if start_ns is None or end_ns is None:
        raise ValueError("a generation span without its start or end time")
    stream = attributes.get(semconv.GEN_AI_REQUEST_STREAM, False)
    if type(stream) is not bool:
        raise TypeError(f"{semconv.GEN_AI_REQUEST_STREAM} must be a bool, got {stream!r}")
    context = span.context
    trace_id, span_id = (context.trace_id, context.span_id) if context is not None else (0, 0)
    return Record(
        operation=attributes.get(semconv.GEN_AI_OPERATION_NAME, ""),
        model=attributes[semconv.GEN_AI_REQUEST_MODEL],
        engine=attributes[semconv.GEN_AI_PROVIDER_NAME],
        request_id=attributes[semconv.GEN_AI_RESPONSE_ID],
        stream=stream,
        start_ns=start_ns,
        end_ns=end_ns,
        trace_id=trace_id,
        span_id=span_id,
        latencies=_latencies(attributes.get(semconv.OCTOMIL_CHUNK_LATENCIES_NS, ())),
        error_type=attributes.get(semconv.ERROR_TYPE),
        metrics={name: attributes[key] for key, name in _COMPLETED_METRICS if key in attributes},
    )


def write(record: Record, *, by_recorder: bool = False) -> list[str]:
    """A request's documented events, encoded.

    Each event is JSON text *without its opening brace* and without ``device_id`` and
    ``org_id``: the reporter prepends ``{"device_id":...,"org_id":...,`` when it sends
    (the org may be resolved only then). All text is ASCII, so its length is its size.

    Written straight from the record, not through a dict per event: a 500-token stream is
    500 ``chunk_produced`` events, and the fields they share (model, engine, request id,
    stream) are serialized once per request, model and engine once per process; each chunk
    adds a timestamp, its index and its latency. ``trace_id`` and ``span_id`` (optional in
    the contract) are on the request's first and last event, not on each chunk:
    ``request_id`` ties those to them.

    ``by_recorder``: the record is the recorder's own (``RecordSpan.by_recorder``): of its
    latencies only the first, from the clock's reading at the request's start, can be of
    another type than int, and only its type is checked; the range of all is (a clock can
    go back, or jump).

    Raises:
        KeyError, TypeError, ValueError, OverflowError: a value the contract refuses (a
        metric that is negative, not finite or not a number; a latency not an int or
        negative, latencies adding up past int64; an end before its start or its last
        chunk; a time outside the years 1000 to 9999; a first or last event over
        ``MAX_EVENT_CHARS``).
    """
    start_ns, end_ns, latencies, metrics = (
        record.start_ns, record.end_ns, record.latencies, record.metrics
    )  # fmt: skip
    if end_ns < start_ns:
        raise ValueError(f"a generation span that ends before it starts: {start_ns}, {end_ns}")
    if latencies:  # a bool would write ``Truee-6``, a Fraction ``1/2e-6``: the batch refused
        kinds = {type(latencies[0])} if by_recorder else set(map(type, latencies))
        if not kinds <= _INT:
            raise TypeError(f"chunk latencies must be int nanoseconds, got {latencies!r}")
        if min(latencies) < 0:
            raise ValueError(f"a negative chunk latency: {latencies}")
    total_ns = sum(latencies)
    if total_ns >= chunk_latencies.LONGEST_NS:  # none negative: each one at most their sum
        raise ValueError(f"chunk latencies adding up past int64: {latencies}")
    last_chunk_ns = start_ns + total_ns  # the start the earliest: nothing is < 0
    if not (start_ns >= _FIRST_NS and end_ns < _END_NS and last_chunk_ns < _END_NS):
        times = (start_ns, end_ns, last_chunk_ns)  # what the API reads
        raise ValueError(f"a timestamp outside the years 1000 to 9999: {times} ns")
    if last_chunk_ns > end_ns:
        raise ValueError(f"a chunk after the request's end: {last_chunk_ns}, {end_ns}")
    # ',"model":...,"stream":true': every event's fields after its timestamp. Checked here:
    # a request that breaks the contract is dropped alone, rather than have the API refuse
    # the whole batch it is in
    fields = _model_fields(record.model, record.engine)
    fields += (
        f',"request_id":"{_checked_request_id(record.request_id)}"'
        f',"stream":{"true" if record.stream else "false"}'
    )
    link = fields  # the first and last events' fields: with the span's ids, not on chunks
    trace_id, span_id = record.trace_id, record.span_id
    if _is_id(trace_id, 128) and _is_id(span_id, 64):
        link += (  # bytes' hex: half the instructions of a format spec
            f',"trace_id":"{trace_id.to_bytes(16, "big").hex()}"'
            f',"span_id":"{span_id.to_bytes(8, "big").hex()}"'
        )

    input_tokens = metrics.get("input_tokens")
    started = "" if input_tokens is None else _member("input_tokens", input_tokens)
    events = [
        f'"event_type":"{GENERATION_STARTED}","timestamp":"{format_timestamp(start_ns)}"'
        f'{link},"metrics":{{{started}}}}}'
    ]
    if latencies:
        output_tokens = None if record.stream else metrics.get("output_tokens")
        events += _chunk_events(start_ns, latencies, fields, output_tokens)

    error_type = record.error_type
    if error_type is None:
        event_type = GENERATION_COMPLETED
        numbers = _numbers(metrics)
    else:
        event_type = GENERATION_FAILED
        final = {name: metrics[name] for name in _FAILED_METRICS if name in metrics}
        _validate_metrics({"error_type": error_type})  # text the API takes
        numbers = _numbers(final)[:-1] + ("," if final else "")
        numbers += f'"error_type":{_json(error_type)}}}'
    events.append(
        f'"event_type":"{event_type}","timestamp":"{format_timestamp(end_ns)}"'
        f'{link},"metrics":{numbers}}}'
    )
    if max(len(events[0]), len(events[-1])) > MAX_EVENT_CHARS:  # a chunk's: within the room
        raise ValueError("an event over the API's 1 MiB: the request would have no end")
    return events


def _latencies(value: object) -> tuple[int, ...]:
    """Chunk latencies as the recorder's record holds them (a tuple of int nanoseconds, not
    packed and unpacked again on the way to the events) or as a span carries them (text,
    ``chunk_latencies``); ``TypeError`` for anything else."""
    if type(value) is tuple:  # its items are checked by ``write``, as a record's
        return value
    if type(value) is str:
        return chunk_latencies.unpack(value)
    raise TypeError(f"chunk latencies must be a tuple of ints or packed text, got {value!r}")


_INT: Final = frozenset((int,))


@functools.lru_cache(maxsize=256)
def _model_fields(model: str, engine: str) -> str:
    """``,"model":...,"engine":...``: checked and encoded once per model and engine."""
    validate_event({"event_type": GENERATION_STARTED, "model": model, "engine": engine})
    return "," + _json({"model": model, "engine": engine})[1:-1]


def _numbers(metrics: dict[str, Any]) -> str:
    """An event's numeric metrics as JSON, refused (``ValueError``) if one is negative or
    not finite, as the API would refuse the batch it is in. msgspec writes a float in a
    fifth of the time ``repr`` takes (the shortest text that reads back the same, as
    ``repr``; ``1e16`` for ``1e+16``)."""
    if not set(map(type, metrics.values())) <= _NUMBER_TYPES:  # numpy's float64, a bool
        metrics = {name: _number(name, value) for name, value in metrics.items()}
    values = metrics.values()
    if values and (not all(map(math.isfinite, values)) or min(values) < 0):
        raise ValueError(f"a metric is negative or not finite: {metrics}")
    for name in WHOLE_METRICS:  # the API refuses a batch with a fraction of a token
        count = metrics.get(name)
        if count is not None and not (float(count).is_integer() and count < MAX_CHUNK_INDEX):
            raise ValueError(f"metrics.{name} must be a whole number below 2**53, got {count}")
    return _encode_numbers(metrics).decode("ascii")


_NUMBER_TYPES: Final = frozenset((int, float))


def _is_id(value: object, bits: int) -> bool:
    """A valid trace or span id (W3C Trace Context: not zero) of ``bits`` bits: written as
    exactly its hex digits. Another (negative, too large: only a span built by hand holds
    one) is left out of the events, as the optional field it is, rather than have the API
    refuse the whole batch."""
    return type(value) is int and 0 < value < 1 << bits


def _member(name: str, value: object) -> str:
    """``"name":value``, one token count: an int below 2**53 (the usual case) written as its
    digits, without ``_numbers``' checks of every type; any other value through them."""
    if type(value) is int and 0 <= value < MAX_CHUNK_INDEX:
        return f'"{name}":{value}'
    return _numbers({name: value})[1:-1]


def _number(name: str, value: object) -> int | float:
    """A real number of any type (numpy's ``int64``, ``float32``, ``float64``) as an int or a
    float; ``TypeError`` for anything else, a bool included (the API refuses ``true`` as a
    metric)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"metrics.{name} must be a number, got {value!r}")
    try:
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    except OverflowError:  # a Fraction too large for a double
        raise ValueError(f"metrics.{name} must be finite, got {value!r}") from None


def _chunk_events(
    start_ns: int,
    latencies: tuple[int, ...],
    fields: str,
    output_tokens: object,
) -> list[str]:
    """One ``chunk_produced`` per chunk: one f-string each, of parts that are text already;
    an answer given whole (``output_tokens`` not ``None``) has its output tokens on it.

    This runs once per output token, so little runs per chunk: the parts the same for all
    of a request's chunks are made once, a second's text once per second (a long answer
    spans a few seconds, not one per chunk), a millisecond's and an index's (with the key
    after it) are looked up; only the latency is written per chunk, as integer nanoseconds
    with an exponent (``142300000e-6``): JSON's own number syntax, parsed to the same double
    as ``142.3`` (both round the exact decimal once), without a float-to-text conversion.
    callgrind: ~2.8k instructions a chunk, against ~4.1k for the same parts joined by
    C-level ``map``/``zip``/``join`` over six iterators, whose setup cost more than the loop.
    """
    usage = "" if output_tokens is None else "," + _member("output_tokens", output_tokens)
    metrics, tail = f'"{fields},"metrics":{{"chunk_index":', f"e-6{usage}}}}}"
    second, ns = divmod(start_ns, 1_000_000_000)  # ns: since that second
    head, milliseconds = _CHUNK_HEAD + _utc_second(second), MILLISECOND_SUFFIXES
    events = []
    for index, latency in zip(_indexes(len(latencies)), latencies, strict=False):  # indexes: enough
        ns += latency
        if ns >= 1_000_000_000:  # a later second: ns from its start again
            seconds, ns = divmod(ns, 1_000_000_000)
            second += seconds
            head = _CHUNK_HEAD + _utc_second(second)
        events.append(f"{head}{milliseconds[ns // 1_000_000]}{metrics}{index}{latency}{tail}")
    return events


_CHUNK_HEAD: Final = f'"event_type":"{CHUNK_PRODUCED}","timestamp":"'


_INDEXES: tuple[str, ...] = ()


def _indexes(n: int) -> tuple[str, ...]:
    """``0,"chunk_latency_ms":``, ``1,"chunk_latency_ms":``, ... at least up to ``n - 1``: the
    chunk indexes and the key after them, written once per process (up to the longest answer
    yet, doubling) rather than once per chunk."""
    global _INDEXES
    indexes = _INDEXES
    if len(indexes) < n:  # a race only builds the same tuple twice
        count = max(n, 2 * len(indexes), 1024)
        indexes = _INDEXES = tuple(f'{i},"chunk_latency_ms":' for i in range(count))
    return indexes


_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_encode_numbers = msgspec.json.Encoder().encode
