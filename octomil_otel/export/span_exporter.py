"""``OctomilSpanExporter``: finished generation records become documented events.

It runs on a ``BatchSpanProcessor`` like any exporter, encodes each generation with the
pure ``events.encode`` and hands the events to a ``TelemetryReporter``, so spans and
``reporter.report()`` share one queue, one worker and one HTTP client. Spans that are not
generations are ignored; a span that cannot be encoded is dropped alone (logged), the rest
of its batch is delivered (its events counted in the reporter's ``dropped_events``).

Its processor is not one of the TracerProvider's: the recorder hands it every request's
complete record (``Generation``), sampled or not, whatever the span limits, so the events
never depend on the application's tracing setup. Usage::

    reporter = TelemetryReporter(api_key="...")
    recorder = Recorder(octomil_processor=OctomilSpanProcessor(OctomilSpanExporter(reporter)))
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from octomil_otel.ended_requests import ENDED, Drains
from octomil_otel.export import events
from octomil_otel.export.reporter import TelemetryReporter

_logger = logging.getLogger(__name__)

SUBMIT_WAIT_SECONDS = 10.0
"""How long one export may wait for room in the reporter's queue before the oldest events
are dropped: a burst of spans is delivered instead of overflowing the queue, and a dead
API still cannot hold the span processor's thread for long."""


class OctomilSpanExporter(SpanExporter):
    """Args:
    reporter: the delivery path; shut down with this exporter.
    """

    def __init__(self, reporter: TelemetryReporter) -> None:
        self.reporter = reporter
        self._shutdown = False
        self._deadline: float | None = None  # time.monotonic() by which a flush must end

    @contextmanager
    def bounded(self, timeout_seconds: float) -> Iterator[None]:
        """Exports and a shutdown within this block wait for the queue only up to
        ``timeout_seconds`` from now (a ``BatchSpanProcessor`` cannot pass its own)."""
        self._deadline = time.monotonic() + timeout_seconds
        try:
            yield
        finally:
            self._deadline = None

    def _wait_seconds(self, longest: float) -> float:
        if self._deadline is None:
            return longest
        return max(0.0, min(longest, self._deadline - time.monotonic()))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _logger.warning("octomil_otel: export called after shutdown")
            self.reporter.count_dropped(sum(map(events.event_count, spans)))
            return SpanExportResult.FAILURE
        encoded: list[str] = []
        result = SpanExportResult.SUCCESS
        for span in spans:
            try:
                encoded += events.encode(span)
            except Exception:
                _logger.warning(
                    "octomil_otel: could not convert span %r to events; dropped it",
                    _name_of(span),
                    exc_info=True,
                )
                self.reporter.count_dropped(events.event_count(span))
                result = SpanExportResult.FAILURE
        self.reporter.submit(encoded, wait_seconds=self._wait_seconds(SUBMIT_WAIT_SECONDS))
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.reporter.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self.reporter.shutdown(self._wait_seconds(10.0))


def _name_of(span: object) -> object:
    """A span's name for a log line: ``None`` for one whose name cannot even be read (not a
    span at all), which is dropped alone like any other."""
    try:
        return span.name  # type: ignore[attr-defined]
    except Exception:
        return None


class OctomilSpanProcessor(BatchSpanProcessor, Drains):
    """A ``BatchSpanProcessor`` whose overflow is counted in the reporter's
    ``dropped_events``, and which records the requests that ended before a flush or its
    shutdown (``ended_requests``) before it exports.

    When more requests finish than the exporter encodes (a burst of thousands a second),
    the processor's queue drops its oldest record, as the reporter's queue drops its oldest
    event; the SDK only logs that, so this counts the record's events (``event_count``)
    where the reporter counts its own losses. Not exact at one edge: a record the worker
    takes for export at the instant a request ends on a full queue is counted, though it
    is delivered (the SDK exposes no drop hook), and two threads ending requests then may
    count one record's events for another's.
    """

    def __init__(self, exporter: OctomilSpanExporter, **options: int) -> None:
        super().__init__(exporter, **options)
        self._reporter = exporter.reporter
        batch_processor = getattr(self, "_batch_processor", None)  # the SDK's, 1.33 and later
        self._queue: deque[ReadableSpan] | None = getattr(batch_processor, "_queue", None)
        """The SDK's: the oldest record at its right end."""
        self._emit: Callable[[ReadableSpan], None] | None = getattr(batch_processor, "emit", None)
        """Queues a span for export: what ``on_end`` calls once it read that the span is
        sampled, which a ``RecordSpan`` always is (and it then need not make its context)."""

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._queue
        if queue is not None and len(queue) == queue.maxlen:
            with suppress(IndexError):  # the worker emptied it meanwhile
                self._reporter.count_dropped(events.event_count(queue[-1]))
        if self._emit is not None and type(span) is events.RecordSpan:
            self._emit(span)
        else:
            super().on_end(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ENDED.drain()
        return super().force_flush(timeout_millis)

    def shutdown(self) -> None:
        ENDED.drain()
        super().shutdown()
