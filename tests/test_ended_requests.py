"""Requests recorded after their end, off the inference path: when, where, and that a
flush, a scrape and a shutdown still see every one, exactly."""

from __future__ import annotations

import collections
import contextlib
import threading

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

from octomil_otel import ended_requests, generation
from octomil_otel.ended_requests import EndedRequests
from octomil_otel.export import OctomilSpanExporter, OctomilSpanProcessor, TelemetryReporter
from octomil_otel.generation import Recorder
from octomil_otel.serve.metrics import PrometheusMeterProvider
from octomil_otel.version import __version__

from .conftest import API_KEY

DEVICE = "a1b2c3d4e5f6"


class ThreadNoting(OctomilSpanProcessor):
    """Notes the thread each record reaches it on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[str] = []
        self.first = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        self.threads.append(threading.current_thread().name)
        self.first.set()
        super().on_end(span)


@pytest.fixture
def served(api, clock):
    """``octomil serve``'s readers: the Octomil processor and ``/metrics``' provider."""
    reporter = TelemetryReporter(API_KEY, api.url, device_id=DEVICE)
    processor = ThreadNoting(OctomilSpanExporter(reporter), schedule_delay_millis=60_000)
    registry = CollectorRegistry()
    meters = PrometheusMeterProvider(Resource.create({}), registry=registry)
    recorder = Recorder(
        TracerProvider(), meters, octomil_processor=processor, clock=clock, wall_clock=clock.wall
    )
    yield recorder, processor, reporter, registry
    processor.shutdown()


def one_request(recorder: Recorder, clock, chunks: int = 3) -> str:
    request = recorder.start(model="tiny", engine="echo", stream=True, input_tokens=5)
    for _ in range(chunks):
        clock.advance_ms(10.0)
        request.chunk()
    request.set_usage(output_tokens=chunks)
    request.stop()
    return request.request_id


def sample(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(
        name,
        {
            "gen_ai_operation_name": "chat",
            "gen_ai_provider_name": "echo",
            "gen_ai_request_model": "tiny",
            "otel_scope_name": "octomil_otel",
            "otel_scope_schema_url": "",
            "otel_scope_version": __version__,
        },
    )


def test_a_request_read_later_is_recorded_on_the_recorders_thread(served, clock):
    recorder, processor, _, _ = served
    one_request(recorder, clock)
    assert processor.first.wait(10)
    assert processor.threads == ["octomil-recorder"]


def test_a_flush_right_after_requests_delivers_every_one_exactly(api, served, clock):
    recorder, processor, reporter, _ = served
    ids = [one_request(recorder, clock, chunks) for chunks in (1, 2, 3)]
    assert processor.force_flush()  # at once: before the recorder's thread woke
    assert reporter.flush()

    assert [(e["request_id"], e["event_type"]) for e in api.events] == [
        (ids[0], "generation_started"),
        (ids[0], "chunk_produced"),
        (ids[0], "generation_completed"),
        (ids[1], "generation_started"),
        *[(ids[1], "chunk_produced")] * 2,
        (ids[1], "generation_completed"),
        (ids[2], "generation_started"),
        *[(ids[2], "chunk_produced")] * 3,
        (ids[2], "generation_completed"),
    ]
    completed = [e for e in api.events if e["event_type"] == "generation_completed"]
    assert [e["metrics"]["output_tokens"] for e in completed] == [1, 2, 3]


def test_a_scrape_right_after_a_request_counts_it(served, clock):
    recorder, _, _, registry = served
    one_request(recorder, clock)
    one_request(recorder, clock)
    assert sample(registry, "gen_ai_client_operation_duration_seconds_count") == 2.0
    assert sample(registry, "gen_ai_client_operation_duration_seconds_sum") == pytest.approx(0.06)


def test_a_shutdown_right_after_a_request_delivers_it(api, served, clock):
    recorder, processor, reporter, _ = served
    request_id = one_request(recorder, clock, chunks=2)
    processor.shutdown()

    assert [e["request_id"] for e in api.events] == [request_id] * 4
    assert reporter.dropped_events == 0


def test_setters_after_the_end_change_nothing(api, served, clock):
    recorder, processor, reporter, _ = served
    request = recorder.start(model="tiny", engine="echo", stream=True, input_tokens=5)
    clock.advance_ms(10.0)
    request.chunk()
    request.set_usage(output_tokens=1)
    request.set_finish_reason("stop")
    mark, read_clock = request.chunk_marker()  # a stream proxy's, still marking after
    request.stop()
    clock.advance_ms(10.0)
    request.chunk()
    mark(read_clock())
    request.set_usage(input_tokens=50, output_tokens=9)
    request.set_finish_reason("length")
    request.add_engine_time(prefill_ms=1.0, decode_ms=2.0)
    request.set_peak_memory(1e9)
    request.dequeued()
    assert processor.force_flush() and reporter.flush()

    completed = api.events[-1]
    assert [e["event_type"] for e in api.events] == [
        "generation_started",
        "chunk_produced",
        "generation_completed",
    ]
    assert completed["metrics"] == {
        "ttfc_ms": 10.0,
        "throughput_tok_s": 100.0,
        "total_duration_ms": 10.0,
        "input_tokens": 5,
        "output_tokens": 1,
    }
    assert (request.input_tokens, request.output_tokens) == (5, 1)


def test_nothing_is_recorded_when_nothing_would_read_it(monkeypatch, clock, meter_provider):
    summaries: list[int] = []
    summarize = generation.summarize
    monkeypatch.setattr(generation, "summarize", lambda *a: summaries.append(1) or summarize(*a))
    for meters in (NoOpMeterProvider(), meter_provider):  # read by nothing, then at once
        recorder = Recorder(NoOpTracerProvider(), meters, clock=clock, wall_clock=clock.wall)
        one_request(recorder, clock)
    assert summaries == [1]  # the second request's, recorded before stop() returned


def test_records_are_made_in_the_order_put_and_one_that_raises_stops_none(monkeypatch):
    monkeypatch.setattr(ended_requests, "DELAY_SECONDS", 60.0)
    queue = EndedRequests()
    made: list[int] = []

    def fails() -> None:
        raise RuntimeError("a bug of ours")

    for record in (lambda: made.append(1), fails, lambda: made.append(2)):
        queue.put(record)
    queue.drain()
    assert made == [1, 2]


def test_past_the_limit_a_request_is_recorded_at_once_on_its_own_thread(monkeypatch):
    monkeypatch.setattr(ended_requests, "DELAY_SECONDS", 60.0)
    monkeypatch.setattr(ended_requests, "MAX_WAITING", 3)
    queue = EndedRequests()
    made: list[tuple[int, str]] = []
    for i in range(5):
        queue.put(lambda i=i: made.append((i, threading.current_thread().name)))
    assert made == [(3, "MainThread"), (4, "MainThread")]
    queue.drain()
    assert [i for i, _ in made] == [3, 4, 0, 1, 2]


def busy_queue(monkeypatch) -> tuple[EndedRequests, list[str], threading.Event]:
    """A queue whose thread is in the middle of a record ("slow") until the event is set."""
    monkeypatch.setattr(ended_requests, "BATCH", 1)
    queue = EndedRequests()
    making, release = threading.Event(), threading.Event()
    made: list[str] = []

    def slow() -> None:
        making.set()
        release.wait(30)
        made.append("slow")

    queue.put(slow)
    assert making.wait(10)  # the thread is in it
    return queue, made, release


def test_past_the_limit_a_request_never_waits_for_the_thread(monkeypatch):
    monkeypatch.setattr(ended_requests, "MAX_WAITING", 2)
    queue, made, release = busy_queue(monkeypatch)
    queue.put(lambda: made.append("waiting 1"))
    queue.put(lambda: made.append("waiting 2"))
    ender = threading.Thread(target=queue.put, args=(lambda: made.append("past"),))
    ender.start()
    ender.join(10)
    assert not ender.is_alive() and made == ["past"]
    release.set()
    queue.drain()
    assert made == ["past", "slow", "waiting 1", "waiting 2"]


def test_a_drain_waits_for_the_records_the_thread_is_making(monkeypatch):
    queue, made, release = busy_queue(monkeypatch)
    drained = threading.Thread(target=lambda: (queue.drain(), made.append("drained")))
    drained.start()
    drained.join(0.2)
    assert drained.is_alive() and made == []
    release.set()
    drained.join(10)
    assert made == ["slow", "drained"]


def test_requests_ending_at_once_wake_the_thread(monkeypatch):
    """Two requests end at once: both appended before either counts the queue. One of them
    is still the first, and the thread records both within the delay, unasked."""
    monkeypatch.setattr(ended_requests, "DELAY_SECONDS", 0.2)
    queue = EndedRequests()
    both_appended = threading.Barrier(2, timeout=1.0)

    class Racing(collections.deque):
        def append(self, item) -> None:
            super().append(item)
            with contextlib.suppress(threading.BrokenBarrierError):  # the other waits its turn
                both_appended.wait()

    queue._waiting = Racing()
    made = threading.Semaphore(0)
    enders = [threading.Thread(target=queue.put, args=(made.release,)) for _ in range(2)]
    for ender in enders:
        ender.start()
    for ender in enders:
        ender.join(10)
    assert made.acquire(timeout=5) and made.acquire(timeout=5)


def test_a_thread_that_cannot_start_leaves_requests_recorded_on_their_own(monkeypatch, caplog):
    start = threading.Thread.start

    def refused(thread: threading.Thread) -> None:
        if thread.name == "octomil-recorder":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refused)
    queue = EndedRequests()
    made: list[tuple[int, str]] = []
    for i in range(2):
        queue.put(lambda i=i: made.append((i, threading.current_thread().name)))
    assert made == [(0, "MainThread"), (1, "MainThread")]
    assert [r.getMessage() for r in caplog.records] == [
        "octomil_otel: could not start the recorder's thread; requests are recorded on "
        "their own threads"
    ]
