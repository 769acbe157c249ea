"""The one recorder that every inference path goes through.

``Recorder`` holds the tracer and the metric instruments (``instruments.py``);
``Recorder.start()`` opens one ``Generation`` per inference request. Engine
instrumentations, ``octomil serve`` and ``octomil.generate`` only say *when* things happen;
the metric math lives here, once.

Lifecycle::

    generation = recorder.start(model="gemma-1b", engine="llamacpp", stream=True)
    with generation.activate():          # nested engine calls join this request
        stream = engine(...)
    for item in stream:
        generation.chunk()               # the hot path: one clock read, one append
    generation.set_usage(input_tokens=47, output_tokens=128)
    generation.stop()                    # or .fail(exc) / .cancel()

Per chunk only ``chunk()`` runs. Everything else (the documented metrics, span attributes,
status, histograms, ``span.end()``) happens once, in ``_finish``, which runs at most once
whatever ends the request, and never lets a telemetry error reach the caller.

Two records of each request leave ``_record``. The application's span follows the
application's tracing setup: its sampler, the sampling decision of a propagated parent,
its span limits and processors. The Octomil record does not: it is a ``ReadableSpan``
with the same trace and span ids that carries what the recorder holds (``events.Record``,
from which the exporter writes the events), handed straight to the Octomil span processor
(``OctomilSpanProcessor`` on ``OctomilSpanExporter``), so every request is reported,
exactly, whatever that setup.

``_finish`` records at once only what is read at once: the application's recording span,
captured content, histograms of an SDK MeterProvider. When every reader reads later (the
Octomil processor, ``octomil serve``'s ``/metrics``: ``ended_requests.Drains``), the
request is recorded a moment later, with others, off the inference path
(``ended_requests``); when nothing would read it, not at all. Once a request has ended,
its setters change nothing.
"""

from __future__ import annotations

import array
import functools
import heapq
import itertools
import json
import logging
import math
import numbers
import operator
import os
import random
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from opentelemetry import _logs, context, metrics, trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from octomil_otel import chunk_latencies, content, semconv
from octomil_otel.ended_requests import ENDED, Drains
from octomil_otel.export import events
from octomil_otel.instruments import Instruments, Outcome
from octomil_otel.version import __version__

_logger = logging.getLogger(__name__)

_ACTIVE_KEY = context.create_key("octomil-generation")

Clock = Callable[[], int]
T = TypeVar("T")

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_default_octomil_processor: SpanProcessor | None = None


_NOTHING, _LATER, _NOW = 0, 1, 2
"""When a reader of a request's record reads it: not at all (nothing to record for it),
later (a ``Drains``), at once; in that order, so the ``max`` of a request's readers is when
it must be recorded."""


def _when_read(reader: object) -> int:
    if reader is None:
        return _NOTHING
    return _LATER if isinstance(reader, Drains) else _NOW


def set_default_octomil_processor(processor: SpanProcessor | None) -> None:
    """Where the Octomil records of recorders built without one go: ``init()`` sets it, so
    instrumentors that ``opentelemetry-instrument`` loads report too."""
    global _default_octomil_processor
    _default_octomil_processor = processor


_open: dict[Generation, None] = {}
"""Requests started and not yet ended (a dict: ordered, and each add and pop is atomic)."""
if hasattr(os, "register_at_fork"):  # a forked child's shutdown must not end the parent's
    os.register_at_fork(after_in_child=_open.clear)


def cancel_open(processor: SpanProcessor | None) -> None:
    """End as ``cancelled`` every open request whose record goes to ``processor``, before it
    stops: a stream the program left unread when it exits is otherwise closed only at the
    interpreter's teardown, after the processor stopped, and would never be reported. Each
    keeps what its streams counted so far (``before_end``); the streams themselves stay as
    they are, for the program to read on. A request started and never ended
    (``Recorder.start`` without ``stop``) stays open, and is reported, until then."""
    for generation in list(_open):
        if generation._recorder.octomil_processor is processor:
            generation.cancel()


def active_generation() -> Generation | None:
    """The request being recorded in the current context, if any.

    An engine call made inside one (``octomil serve`` around an engine call, or
    ``create_chat_completion`` calling ``create_completion``) must record into it rather
    than open a second span.
    """
    return context.get_value(_ACTIVE_KEY)  # type: ignore[return-value]


def new_request_id() -> str:
    """``req_`` and 16 hex digits: unique, not secret (a ``random`` generator, at a third
    of ``secrets``' cost: it runs for every request)."""
    return "req_" + _ids.randbytes(8).hex()


_ids = random.Random()
"""Request, trace and span ids: a generator of our own, seeded from the OS, so that an
application that seeds ``random`` for its own reasons (``random.seed(0)``) does not give
every run the same ids; reseeded in a forked child, which would otherwise repeat the
parent's."""
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)


def summarize(
    t0: int,
    chunk_times: Sequence[int],
    t_end: int,
    output_tokens: int | None,
) -> tuple[dict[str, float], tuple[int, ...]]:
    """The documented metrics of one request, from monotonic nanosecond readings: by their
    names in ``generation_completed``, and each chunk's latency in int nanoseconds (its gap,
    or ``c_0 - t0`` for the first).

    Follows ``octomil-api.md``: ``ttfc_ms = c_0 - t0``; ``total_duration_ms = t_end - t0``;
    ``throughput_tok_s = output_tokens / (total_duration_ms / 1000)``; the chunk latency
    average and p99 (nearest rank) over the ``n - 1`` gaps between chunks, absent when
    ``n < 2``. Values that cannot be known are left out.
    """
    total_ms = (t_end - t0) / 1e6
    metrics = {"total_duration_ms": total_ms}
    latencies: tuple[int, ...] = ()
    if chunk_times:
        times = list(chunk_times)  # an array's items become int objects here, once
        latencies = tuple(map(operator.sub, times, itertools.chain((t0,), times)))
        metrics["ttfc_ms"] = latencies[0] / 1e6
        gaps = len(latencies) - 1
        if gaps:  # the gaps add up to the first chunk's time to the last's
            metrics["chunk_latency_avg_ms"] = (times[-1] - times[0]) / (gaps * 1e6)
            k = gaps - math.ceil(0.99 * gaps) + 1  # nearest rank: the k-th largest, k small
            after_first = itertools.islice(latencies, 1, None)
            kth_largest = max(after_first) if k == 1 else heapq.nlargest(k, after_first)[-1]
            metrics["chunk_latency_p99_ms"] = kth_largest / 1e6
    if output_tokens is not None and total_ms > 0:
        metrics["throughput_tok_s"] = output_tokens / (total_ms / 1000)
    return metrics, latencies


class Recorder:
    """Tracer and metric instruments for one pair of providers.

    The GenAI names it records under are chosen when it is created, from
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` (``semconv.latest_experimental``).

    Args:
        tracer_provider: where spans go; the global provider when omitted.
        meter_provider: where histograms go; the global provider when omitted.
        logger_provider: where captured content goes as log events (only when
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for events); the
            global provider when omitted.
        octomil_processor: gets every request's complete record (the Octomil events); the
            one ``init()`` set up when omitted, none before it.
        clock: monotonic nanoseconds, for every duration; ``TypeError`` if it does not
            return a non-negative int below 2**63 (chunk times are kept as 64-bit integers
            in an array, not as an object per chunk).
        wall_clock: Unix-epoch nanoseconds, for span and event timestamps; ``TypeError``
            the same.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        logger_provider: _logs.LoggerProvider | None = None,
        octomil_processor: SpanProcessor | None = None,
        clock: Clock = time.perf_counter_ns,
        wall_clock: Clock = time.time_ns,
    ) -> None:
        for name, reading in (("clock", clock()), ("wall_clock", wall_clock())):
            if not isinstance(reading, int) or not 0 <= reading < 2**63:
                raise TypeError(
                    f"{name} must return non-negative int nanoseconds below 2**63, got {reading!r}"
                )
        self._octomil_processor = octomil_processor
        self.clock = clock
        self.wall_clock = wall_clock
        self._tracer_provider = tracer_provider
        self.tracer = trace.get_tracer("octomil_otel", __version__, tracer_provider)
        meter = metrics.get_meter("octomil_otel", __version__, meter_provider)
        self.latest = semconv.latest_experimental()
        self.capture = content.Capture.from_environment(self.latest)
        histograms = (  # a NoOpMeterProvider's, or the SDK's with OTEL_SDK_DISABLED
            _NOTHING
            if type(meter) is metrics.NoOpMeter
            else _when_read(meter_provider or metrics.get_meter_provider())
        )
        self.instruments = Instruments(meter, latest=self.latest, deferred=histograms == _LATER)
        captured = _NOTHING if self.capture is content.Capture.NO_CONTENT else _NOW
        self._records_read = max(histograms, captured)  # by the readers fixed here
        self.logger = (
            _logs.get_logger("octomil_otel", __version__, logger_provider)
            if self.capture.on_event
            else None
        )

    @property
    def tracer_provider(self) -> trace.TracerProvider | None:
        """The provider given; ``None``: the global one, whichever it is when used."""
        return self._tracer_provider

    def spans_observed(self) -> bool:
        """Whether a span started now reaches anything: ``False`` only for the SDK's
        TracerProvider with no span processor at all (``octomil serve`` and ``init()``
        without OTLP), where building a span would cost a request ~17 us for nothing."""
        provider = self._tracer_provider or trace.get_tracer_provider()
        active = getattr(provider, "_active_span_processor", None)
        processors = getattr(active, "_span_processors", None)
        return processors is None or len(processors) > 0

    @property
    def octomil_processor(self) -> SpanProcessor | None:
        if self._octomil_processor is not None:
            return self._octomil_processor
        return _default_octomil_processor

    def start(
        self,
        *,
        model: str,
        engine: str,
        operation: str = semconv.OPERATION_CHAT,
        stream: bool = False,
        request_id: str | None = None,
        input_tokens: int | None = None,
    ) -> Generation:
        """Open the span of one request, now: this is its ``t0``."""
        return Generation(
            self,
            model=model,
            engine=engine,
            operation=operation,
            stream=stream,
            request_id=request_id or new_request_id(),
            input_tokens=input_tokens,
        )


class Generation:
    """One inference request: its span, its chunk clock and, at the end, its metrics.

    Not thread-safe by design: a request is driven by one caller at a time. ``stop``,
    ``fail`` and ``cancel`` may each be called any number of times, from any thread (a
    shutdown's ``cancel_open`` may end a request while its stream is read); only the
    first counts.
    """

    __slots__ = (
        "_attributes",
        "_before_end",
        "_chunk_times",
        "_clock",
        "_dequeued",
        "_ending",
        "_engine_ms",
        "_finish_reason",
        "_finished",
        "_input_messages",
        "_input_tokens",
        "_output",
        "_output_tokens",
        "_peak_memory_bytes",
        "_recorder",
        "_request",
        "_t0",
        "_wall0",
        "request_id",
        "span",
        "stream",
    )

    def __init__(
        self,
        recorder: Recorder,
        *,
        model: str,
        engine: str,
        operation: str,
        stream: bool,
        request_id: str,
        input_tokens: int | None,
    ) -> None:
        self._recorder = recorder
        self._clock = recorder.clock
        self._t0 = recorder.clock()
        self._wall0 = recorder.wall_clock()
        # unsigned: "Q" takes an int without the argument parser that "q" goes through
        self._chunk_times = array.array("Q")
        self._finished = False
        self._ending = False  # stop, fail or cancel called: the first one ends it
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._dequeued: int | None = None
        self._engine_ms: dict[str, float] = {}
        self._peak_memory_bytes: int | None = None
        self._before_end: list[Callable[[], None]] | None = None
        self._finish_reason: str | None = None
        self._request: dict[str, Any] = {}
        self._input_messages: list[content.Message] | None = None
        self._output: tuple[str, tuple[tuple[str, str, str], ...]] | None = None
        self.request_id = request_id
        self.stream = bool(stream)  # the span's, the record's and the events' alike
        self._attributes = {
            semconv.GEN_AI_OPERATION_NAME: operation,
            semconv.GEN_AI_PROVIDER_NAME: engine,
            semconv.GEN_AI_REQUEST_MODEL: model,
        }
        self.span = (
            self._start_span(recorder.tracer, f"{operation} {model}")
            if recorder.spans_observed()
            else _unobserved_span()
        )
        self.set_usage(input_tokens=input_tokens)
        _open[self] = None

    def _start_span(self, tracer: trace.Tracer, name: str) -> trace.Span:
        try:
            return tracer.start_span(
                name,
                kind=SpanKind.INTERNAL,
                attributes=self._span_attributes(),
                start_time=self._wall0,
            )
        except Exception:  # an application's span processor failed in on_start
            _logger.debug("octomil_otel: could not start the span", exc_info=True)
            # the events' ids, as where no processor is; sampled, as the SDK sampled it:
            # it calls on_start only for a span it records, and spans nested in it follow
            return _unobserved_span(_SAMPLED)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def input_tokens(self) -> int | None:
        return self._input_tokens

    @property
    def output_tokens(self) -> int | None:
        return self._output_tokens

    def chunk(self) -> None:
        """Mark that one output chunk reached the caller, now."""
        try:
            self._chunk_times.append(self._clock())
        except Exception:  # a clock gone wrong since the Recorder checked it
            _logger.debug("octomil_otel: could not record a chunk", exc_info=True)

    def chunk_marker(self) -> tuple[Callable[[int], None], Clock]:
        """``chunk()`` in two C calls, for stream proxies: ``mark(clock())`` per chunk."""
        return self._chunk_times.append, self._clock

    def before_end(self, report: Callable[[], None]) -> None:
        """Run ``report()`` once, as this request ends (``stop``, ``fail`` or ``cancel``,
        maybe on another thread), before what it recorded is read: what a stream of it has
        counted so far (an engine's usage), which the stream records as it ends, when the
        request ends first (the process stopping: ``cancel_open``), or what an engine's
        wrapper knows only then. Not run if the request is ending already; an exception is
        logged."""
        if self._ending:
            return
        if self._before_end is None:
            self._before_end = []
        self._before_end.append(report)

    def set_usage(
        self, *, input_tokens: int | None = None, output_tokens: int | None = None
    ) -> None:
        """Token counts from the engine's own usage report or tokenizer.

        A count that is not a non-negative int is ignored (and logged): a wrong number is
        worse than a missing one.
        """
        if self._finished:
            return
        if input_tokens is not None:
            self._input_tokens = _token_count("input_tokens", input_tokens, self._input_tokens)
        if output_tokens is not None:
            self._output_tokens = _token_count("output_tokens", output_tokens, self._output_tokens)

    def set_request_parameters(self, **parameters: Any) -> None:
        """What the caller asked for (``max_tokens``, ``temperature``, ``top_p``, ``top_k``,
        ``seed``, ``stop``, ``frequency_penalty``, ``presence_penalty``), as
        ``gen_ai.request.*`` on the span; ``None`` and values of the wrong type are left
        out. Only the application's span (and captured content's event) carries them."""
        for name, value in parameters.items():
            if value is None:  # most of them, in most requests
                continue
            attribute = _request_attribute(name, value)
            if attribute is not None:
                self._request[attribute[0]] = attribute[1]
        if self._request and self.span.is_recording():
            with suppress(Exception):  # an application's span may refuse them
                self.span.set_attributes(self._request)

    def set_finish_reason(self, reason: str | None) -> None:
        """Why the engine stopped (``stop``, ``length``, ...): ``gen_ai.response.finish_reasons``
        unless the request fails or is cancelled (then ``error``)."""
        if isinstance(reason, str) and reason and not self._finished:
            self._finish_reason = reason

    @property
    def captures_content(self) -> bool:
        """Whether the user asked for message content: callers skip gathering it if not."""
        return self._recorder.capture is not content.Capture.NO_CONTENT

    def set_input(self, messages: Any = None, prompt: Any = None) -> None:
        """The request's chat messages (OpenAI's shape) or completion prompt, kept only when
        content is captured."""
        if self.captures_content:
            try:
                self._input_messages = content.input_messages(messages, prompt)
            except Exception:  # a shape we do not know: no content rather than a failure
                _logger.debug("octomil_otel: could not read the input messages", exc_info=True)

    def set_output(self, text: str, tool_calls: Sequence[tuple[str, str, str]] = ()) -> None:
        """The answer's text and tool calls (id, name, arguments), kept only when content
        is captured."""
        if self.captures_content:
            self._output = (text, tuple(tool_calls))

    def dequeued(self) -> None:
        """The request stops waiting for the engine now, taken by it or not (refused, left
        by its client): the time since it started is its ``queue_ms``."""
        if self._dequeued is None and not self._finished:
            self._dequeued = self._clock()

    def add_engine_time(
        self, *, prefill_ms: float | None = None, decode_ms: float | None = None
    ) -> None:
        """Time the engine spent on this request by its own counters: evaluating the prompt
        before the first token, and generating after it. Added up over the engine passes of
        one request (a chat handler may run several). A value that is not a finite
        non-negative number is ignored; the two are capped, when the request ends, so that
        they never add up to more than its duration less its queue."""
        if self._finished:
            return
        for key, value in ((semconv.OCTOMIL_PREFILL_MS, prefill_ms),
                           (semconv.OCTOMIL_DECODE_MS, decode_ms)):  # fmt: skip
            measure = _measure(value)
            if measure is not None:
                self._engine_ms[key] = self._engine_ms.get(key, 0.0) + measure

    def set_peak_memory(self, peak_bytes: float) -> None:
        """The engine's peak memory during this request, in bytes (the largest given)."""
        measure = _measure(peak_bytes)
        if measure is not None and not self._finished:
            self._peak_memory_bytes = max(round(measure), self._peak_memory_bytes or 0)

    @contextmanager
    def activate(self) -> Iterator[Generation]:
        """Make this request current: its span is the parent, nested engine calls join it."""
        ctx = context.set_value(_ACTIVE_KEY, self, trace.set_span_in_context(self.span))
        token = context.attach(ctx)
        try:
            yield self
        finally:
            context.detach(token)

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run the engine call inside this request: current while it runs; if it raises,
        the error is recorded and re-raised untouched."""
        with self.activate():
            try:
                return fn(*args, **kwargs)
            except BaseException as error:
                self.fail(error)
                raise

    def stop(self) -> None:
        """The request finished normally. One answered whole (not streamed) and not
        chunked by its caller is one chunk, now: the whole answer reached the caller; none
        if it is empty (0 output tokens: it carries only a finish reason) or embeddings."""
        if not self._end_now():
            return
        if not (
            self.stream
            or self._chunk_times
            or self._output_tokens == 0
            or self._attributes[semconv.GEN_AI_OPERATION_NAME] == semconv.OPERATION_EMBEDDINGS
        ):
            self.chunk()
        self._finish(None, None)

    def fail(self, error: BaseException, *, error_type: str | None = None) -> None:
        """The request failed with ``error``; the caller gets it untouched. Recorded as
        ``error_type``, by default the error's class name."""
        if not self._end_now():
            return
        try:
            description = str(error)
        except Exception:  # an exception whose __str__ fails is still the caller's to get
            description = type(error).__qualname__
        self._finish(error_type or type(error).__qualname__, description)

    def cancel(self) -> None:
        """The consumer closed or dropped the stream before its end."""
        if self._end_now():
            self._finish(semconv.CANCELLED, "stream closed before its end")

    def _end_now(self) -> bool:
        """Whether this call ends the request (the first ``stop``, ``fail`` or ``cancel``,
        whichever thread calls it): then the ``before_end`` reports run first, once, the
        setters still open to them."""
        if self._ending:
            return False
        self._ending = True  # nothing between the check and this line lets a thread in
        reports, self._before_end = self._before_end, None  # no cycle kept
        for report in reports or ():
            try:
                report()
            except Exception:  # the request still ends
                _logger.debug("octomil_otel: a report before the end failed", exc_info=True)
        return True

    def _finish(self, error_type: str | None, description: str | None) -> None:
        self._finished = True
        _open.pop(self, None)
        try:
            # counted before the end is read: a chunk a stream proxy's marker appends from
            # another thread meanwhile is left out, and every chunk counted is before the end
            chunks = len(self._chunk_times)
            t_end = self._clock()
            processor = self._recorder.octomil_processor  # the one now, even if recorded later
            when = max(
                self._recorder._records_read,
                _when_read(processor),
                _NOW if self.span.is_recording() else _NOTHING,
            )
        except Exception:  # telemetry must never reach the caller
            _logger.debug("octomil_otel: could not record generation", exc_info=True)
            with suppress(Exception):
                self.span.end()
            return
        if when == _LATER:
            ENDED.put(
                functools.partial(self._record, t_end, chunks, error_type, description, processor)
            )
        elif when == _NOW:
            self._record(t_end, chunks, error_type, description, processor)

    def _span_attributes(self) -> dict[str, Any]:
        return {
            **self._attributes,
            semconv.GEN_AI_REQUEST_STREAM: self.stream,
            semconv.GEN_AI_RESPONSE_ID: self.request_id,
        }

    def _record(
        self,
        t_end: int,
        chunks: int,
        error_type: str | None,
        description: str | None,
        processor: SpanProcessor | None,
    ) -> None:
        """Never raises: telemetry must never reach the caller (a failure is logged)."""
        try:
            recorder = self._recorder
            event_metrics, latencies = summarize(
                self._t0, self._chunk_times[:chunks], t_end, self._output_tokens
            )
            total_ms = event_metrics["total_duration_ms"]
            if self._input_tokens is not None:
                event_metrics["input_tokens"] = self._input_tokens
            if self._output_tokens is not None:
                event_metrics["output_tokens"] = self._output_tokens
            split_ms = self._split_ms(total_ms)
            for key, ms in split_ms.items():
                event_metrics[events.METRIC_NAMES[key]] = ms
            if self._peak_memory_bytes is not None:
                event_metrics["peak_memory_bytes"] = self._peak_memory_bytes
            end_time = self._wall0 + (t_end - self._t0)

            operation = self._attributes[semconv.GEN_AI_OPERATION_NAME]
            if processor is not None and operation != semconv.OPERATION_EMBEDDINGS:
                # first: no application processor can stand in its way. ``event_metrics``
                # is the record's from here on: read, never changed
                processor.on_end(
                    self._octomil_record(event_metrics, latencies, error_type, end_time)
                )

            span = self.span
            recording = span.is_recording()
            captured = self.captures_content
            final: dict[str, Any] = {}  # the application's span's, and captured content's
            response: dict[str, Any] = {}
            if recording or captured:
                final = events.outcome_attributes(event_metrics, error_type)
                response = self._response_attributes(error_type, event_metrics)
            if captured:  # before the span ends: it may carry the content
                self._record_content(error_type, end_time, {**final, **response})
            # every chunk's latency in one attribute, not a span event per chunk: an event
            # costs ~8 us to build (bench/recorder_hot_path.py) and the SDK keeps only the
            # last 128 of a span's events anyway
            if recording and latencies:  # as text: what an SDK checks and exports cheaply
                with suppress(struct.error):  # past int64 (a clock gone wrong): left off
                    final[semconv.OCTOMIL_CHUNK_LATENCIES_NS] = chunk_latencies.pack(latencies)
            try:
                if recording:
                    span.set_attributes(final)
                    span.set_attributes(response)
                    if error_type is not None:
                        span.set_status(Status(StatusCode.ERROR, description))
                span.end(end_time=end_time)
            except Exception:  # an application's span processor failed in on_end
                _logger.debug("octomil_otel: could not end the span", exc_info=True)

            recorder.instruments.record(
                Outcome(  # by position, as the record
                    self._attributes,
                    error_type,
                    self.stream,
                    total_ms / 1000,
                    latencies,
                    self._input_tokens,
                    self._output_tokens,
                    split_ms,
                    self._peak_memory_bytes,
                )
            )
        except Exception:
            _logger.debug("octomil_otel: could not record generation", exc_info=True)
            with suppress(Exception):
                self.span.end()

    def _record_content(
        self, error_type: str | None, end_time: int, outcome: dict[str, Any]
    ) -> None:
        """The captured messages, where the capture mode says: the application's span (JSON
        text), a log event (structured, with the request's GenAI attributes from
        ``outcome``), or both. Never the Octomil record."""
        messages: dict[str, Any] = {}
        if self._input_messages is not None:
            messages[semconv.GEN_AI_INPUT_MESSAGES] = self._input_messages
        if self._output is not None:
            finish = semconv.FINISH_REASON_ERROR if error_type else self._finish_reason or "stop"
            messages[semconv.GEN_AI_OUTPUT_MESSAGES] = content.output_messages(
                self._output[0], finish, self._output[1]
            )
        capture = self._recorder.capture
        if capture.on_span and self.span.is_recording():
            self.span.set_attributes({key: json.dumps(value) for key, value in messages.items()})
        logger = self._recorder.logger
        if capture.on_event and logger is not None:
            attributes = {**self._span_attributes(), **self._request}
            attributes.update((k, v) for k, v in outcome.items() if k in _EVENT_OUTCOME)
            logger.emit(
                event_name=semconv.GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS,
                timestamp=end_time,
                context=trace.set_span_in_context(self.span),
                attributes={**attributes, **messages},
            )

    def _split_ms(self, total_ms: float) -> dict[str, float]:
        """``queue_ms``, ``prefill_ms``, ``decode_ms`` where known; prefill and decode capped
        so that they add up to no more than the request's duration less its queue."""
        split: dict[str, float] = {}
        room = total_ms
        if self._dequeued is not None:
            split[semconv.OCTOMIL_QUEUE_MS] = (self._dequeued - self._t0) / 1e6
            room -= split[semconv.OCTOMIL_QUEUE_MS]
        for key in (semconv.OCTOMIL_PREFILL_MS, semconv.OCTOMIL_DECODE_MS):
            if key in self._engine_ms:
                split[key] = min(self._engine_ms[key], max(room, 0.0))
                room -= split[key]
        return split

    def _response_attributes(
        self, error_type: str | None, event_metrics: dict[str, Any]
    ) -> dict[str, Any]:
        """The application's span only: the response's model and finish reason, and under
        the current conventions the time to the first chunk of a stream, in seconds."""
        attributes: dict[str, Any] = {}
        embeddings = self._attributes[semconv.GEN_AI_OPERATION_NAME] == semconv.OPERATION_EMBEDDINGS
        if embeddings:  # nothing generated: no finish reason, no response model
            return attributes
        if error_type is not None:
            attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = (semconv.FINISH_REASON_ERROR,)
        else:
            attributes[semconv.GEN_AI_RESPONSE_MODEL] = self._attributes[
                semconv.GEN_AI_REQUEST_MODEL
            ]
            if self._finish_reason is not None:
                attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = (self._finish_reason,)
        ttfc_ms = event_metrics.get("ttfc_ms")
        if self._recorder.latest and self.stream and ttfc_ms is not None:
            attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc_ms / 1000
        return attributes

    def _octomil_record(
        self,
        event_metrics: dict[str, Any],
        latencies: tuple[int, ...],
        error_type: str | None,
        end_time: int,
    ) -> events.RecordSpan:
        """The request as the Octomil exporter reads it: every fact of it, no limits, with
        the application's span's ids (zero when it has none) and always sampled."""
        ids = self.span.get_span_context()
        trace_id, span_id = ids.trace_id, ids.span_id
        attributes = self._attributes
        return events.RecordSpan(
            events.Record(  # by position: keywords took twice as long (~1 us)
                attributes[semconv.GEN_AI_OPERATION_NAME],
                attributes[semconv.GEN_AI_REQUEST_MODEL],
                attributes[semconv.GEN_AI_PROVIDER_NAME],
                self.request_id,
                self.stream,
                self._wall0,
                end_time,
                trace_id,
                span_id,
                latencies,
                error_type,
                event_metrics,
            ),
            by_recorder=True,
        )


def _unobserved_span(flags: TraceFlags = _NOT_SAMPLED) -> trace.Span:
    """A span no processor would see: only its ids, in the trace of the current span (a
    propagated parent's), for the Octomil record and for spans nested inside it, which
    its ``flags`` say whether to sample."""
    parent = trace.get_current_span().get_span_context()
    trace_id = parent.trace_id if parent.is_valid else _ids.getrandbits(128) or 1
    span_id = _ids.getrandbits(64) or 1
    return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags))


_REQUEST_PARAMETERS: dict[str, tuple[str, type]] = {  # name -> attribute, its type
    "max_tokens": (semconv.GEN_AI_REQUEST_MAX_TOKENS, int),
    "temperature": (semconv.GEN_AI_REQUEST_TEMPERATURE, float),
    "top_p": (semconv.GEN_AI_REQUEST_TOP_P, float),
    "top_k": (semconv.GEN_AI_REQUEST_TOP_K, int),
    "seed": (semconv.GEN_AI_REQUEST_SEED, int),
    "stop": (semconv.GEN_AI_REQUEST_STOP_SEQUENCES, tuple),
    "frequency_penalty": (semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY, float),
    "presence_penalty": (semconv.GEN_AI_REQUEST_PRESENCE_PENALTY, float),
}


_EVENT_OUTCOME = frozenset(
    (
        semconv.ERROR_TYPE,
        semconv.GEN_AI_USAGE_INPUT_TOKENS,
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
        semconv.GEN_AI_RESPONSE_MODEL,
        semconv.GEN_AI_RESPONSE_FINISH_REASONS,
    )
)
"""What the details event carries of a request's outcome, besides its messages."""


def _request_attribute(name: str, value: object) -> tuple[str, Any] | None:
    """``name=value`` as its ``gen_ai.request.*`` attribute, in the conventions' type (a
    double for an int temperature, a list for one stop string); ``None`` if it is not one."""
    key, kind = _REQUEST_PARAMETERS[name]
    if kind is tuple:
        stops = [value] if isinstance(value, str) else value
        if isinstance(stops, (list, tuple)) and stops and all(isinstance(x, str) for x in stops):
            return key, tuple(stops)
    elif (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (kind is float or isinstance(value, int))
    ):
        return key, kind(value)
    return None


def _measure(value: object) -> float | None:
    """A finite, non-negative real number (numpy's included) as a float; ``None`` for
    anything else, a bool and an int too large for a double included."""
    if value.__class__ is float:  # the usual case, without the ABC checks below
        return value if 0 <= value < math.inf else None  # type: ignore[operator,return-value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        measure = float(value)
    except OverflowError:
        return None
    return measure if math.isfinite(measure) and measure >= 0 else None


def _token_count(name: str, value: object, current: int | None) -> int | None:
    if value.__class__ is int and value >= 0:  # type: ignore[operator]  # engines call this
        return value  # type: ignore[return-value]  # per token: no ABC check for an int
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)  # numpy's int64 as an int
    _logger.debug("octomil_otel: ignoring %s=%r: not a non-negative int", name, value)
    return current
