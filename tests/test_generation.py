"""The recorder: spans, documented metrics and histograms, with a controlled clock."""

from __future__ import annotations

import itertools
import json
import math
import struct
import threading

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from octomil_otel import semconv
from octomil_otel.generation import Generation, Recorder, active_generation, summarize
from octomil_otel.stream import record_stream

from .conftest import WALL0_NS, FakeClock, decoded_events, histogram_points, latencies


def run_stream(recorder: Recorder, clock: FakeClock, gaps_ms: list[float], tail_ms: float):
    """A streamed request: first chunk after gaps_ms[0], the rest after each gap."""
    generation = recorder.start(model="gemma-1b", engine="mlx", stream=True, input_tokens=47)
    for gap in gaps_ms:
        clock.advance_ms(gap)
        generation.chunk()
    clock.advance_ms(tail_ms)
    generation.set_usage(output_tokens=len(gaps_ms))
    generation.stop()
    return generation


def test_generation_stream_sets_documented_metrics_on_span(recorder, clock, span_exporter):
    generation = run_stream(recorder, clock, [142.3, 20.0, 30.0, 41.2], tail_ms=10.0)

    (span,) = span_exporter.get_finished_spans()
    assert span.name == "chat gemma-1b"
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert span.start_time == WALL0_NS
    assert span.end_time == WALL0_NS + 243_500_000
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "mlx",
        "gen_ai.request.model": "gemma-1b",
        "gen_ai.request.stream": True,
        "gen_ai.response.id": generation.request_id,
        "gen_ai.response.model": "gemma-1b",
        "gen_ai.usage.input_tokens": 47,
        "gen_ai.usage.output_tokens": 4,
        "octomil.total_duration_ms": 243.5,
        "octomil.ttfc_ms": 142.3,
        "octomil.chunk.latencies_ns": struct.pack(
            "<4q", 142_300_000, 20_000_000, 30_000_000, 41_200_000
        ).hex(),
        "octomil.chunk_latency_avg_ms": 30.4,  # 91.2 ms / 3, from exact nanoseconds
        "octomil.chunk_latency_p99_ms": 41.2,
        "octomil.throughput_tok_s": 4 / 0.2435,
    }
    assert span.events == ()  # the chunk latencies are one attribute, not 4 span events


def test_generation_request_id_is_req_and_hex(recorder):
    generation = recorder.start(model="m", engine="echo")
    assert generation.request_id.startswith("req_")
    assert len(generation.request_id) == 20
    int(generation.request_id[4:], 16)


def test_generation_stream_records_four_histograms(recorder, clock, metric_reader):
    run_stream(recorder, clock, [142.3, 20.0, 30.0, 41.2], tail_ms=10.0)

    points = histogram_points(metric_reader)
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "mlx",
        "gen_ai.request.model": "gemma-1b",
    }
    (duration,) = points["gen_ai.client.operation.duration"]
    assert (duration.count, duration.sum, dict(duration.attributes)) == (1, 0.2435, attrs)
    assert tuple(duration.explicit_bounds) == semconv.DURATION_BUCKETS
    usage = {p.attributes["gen_ai.token.type"]: p for p in points["gen_ai.client.token.usage"]}
    assert (usage["input"].count, usage["input"].sum) == (1, 47)
    assert (usage["output"].count, usage["output"].sum) == (1, 4)
    assert tuple(usage["input"].explicit_bounds) == semconv.TOKEN_USAGE_BUCKETS
    (ttft,) = points["gen_ai.server.time_to_first_token"]
    assert (ttft.count, ttft.sum) == (1, 142.3 / 1000)
    assert tuple(ttft.explicit_bounds) == semconv.TIME_TO_FIRST_TOKEN_BUCKETS
    (tpot,) = points["gen_ai.server.time_per_output_token"]
    assert (tpot.count, tpot.sum) == (1, (243.5 - 142.3) / 1000 / 3)
    assert tuple(tpot.explicit_bounds) == semconv.TIME_PER_OUTPUT_TOKEN_BUCKETS


def test_generation_non_stream_single_chunk_has_no_gap_metrics(recorder, clock, span_exporter):
    generation = recorder.start(
        model="tiny", engine="llamacpp", operation="text_completion", input_tokens=5
    )
    clock.advance_ms(80.0)
    generation.chunk()
    generation.set_usage(output_tokens=12)
    generation.stop()

    (span,) = span_exporter.get_finished_spans()
    assert span.name == "text_completion tiny"
    assert span.attributes["gen_ai.request.stream"] is False
    assert span.attributes["octomil.ttfc_ms"] == 80.0
    assert span.attributes["octomil.total_duration_ms"] == 80.0
    assert latencies(span) == (80.0,)
    assert span.attributes["octomil.throughput_tok_s"] == 12 / 0.08
    assert "octomil.chunk_latency_avg_ms" not in span.attributes
    assert "octomil.chunk_latency_p99_ms" not in span.attributes


def test_generation_fail_sets_error_type_and_status(recorder, clock, span_exporter, metric_reader):
    generation = recorder.start(model="tiny", engine="llamacpp", stream=True)
    clock.advance_ms(5.0)
    generation.chunk()
    clock.advance_ms(7.0)
    generation.fail(RuntimeError("decode failed"))

    (span,) = span_exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "decode failed"
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["octomil.total_duration_ms"] == 12.0
    assert "gen_ai.usage.output_tokens" not in span.attributes
    points = histogram_points(metric_reader)
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "RuntimeError"
    assert "gen_ai.server.time_to_first_token" not in points


def test_generation_cancel_is_reported_as_cancelled(recorder, span_exporter):
    recorder.start(model="tiny", engine="echo", stream=True).cancel()

    (span,) = span_exporter.get_finished_spans()
    assert span.attributes["error.type"] == "cancelled"
    assert span.status.status_code is StatusCode.ERROR


def test_generation_finishes_once_whatever_is_called_after(recorder, clock, span_exporter):
    generation = recorder.start(model="tiny", engine="echo")
    generation.stop()
    clock.advance_ms(50.0)
    generation.fail(ValueError("late"))
    generation.cancel()
    generation.stop()

    (span,) = span_exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["octomil.total_duration_ms"] == 0.0
    assert generation.finished


def test_a_request_ended_on_two_threads_at_once_is_recorded_once(recorder, span_exporter):
    """A shutdown's ``cancel_open`` ends a request on its thread while the reader's reaches
    the stream's end: the first to end it wins, even while its reports still run."""
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    reporting, release = threading.Event(), threading.Event()

    def slow_report() -> None:  # an engine's usage read, which lets other threads in
        reporting.set()
        release.wait(10)
        generation.set_usage(output_tokens=7)

    generation.before_end(slow_report)
    generation.before_end(lambda: 1 / 0)  # logged; the request still ends
    canceller = threading.Thread(target=generation.cancel)
    canceller.start()
    assert reporting.wait(10)
    generation.stop()  # the reader's end, while the canceller's reports run: too late
    release.set()
    canceller.join(10)

    (span,) = span_exporter.get_finished_spans()
    assert span.attributes["error.type"] == "cancelled"
    assert span.attributes["gen_ai.usage.output_tokens"] == 7
    generation.before_end(lambda: pytest.fail("registered after the end: never run"))
    generation.cancel()


def test_generation_500_chunks_exact_despite_span_event_limit(clock, meter_provider):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # default SpanLimits: 128 events
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = Recorder(provider, meter_provider, clock=clock, wall_clock=clock.wall)
    gaps = [float(1 + i % 7) for i in range(500)]

    run_stream(recorder, clock, gaps, tail_ms=0.0)

    (span,) = exporter.get_finished_spans()
    assert latencies(span) == tuple(gaps)
    assert span.attributes["octomil.chunk_latency_avg_ms"] == sum(gaps[1:]) / 499
    assert span.attributes["octomil.chunk_latency_p99_ms"] == 7.0
    assert span.events == ()


def test_a_chunk_marked_while_the_request_ends_is_left_out(
    tracer_provider, meter_provider, octomil_records
):
    """A stream proxy's marker on another thread may append as the request ends (its client
    left): a chunk counted after the end was read would come after the request's end, and
    the events encode refuses such a record whole."""
    readings = itertools.count(1_000_000, 1_000_000)
    ending: list[Generation] = []

    def clock() -> int:
        reading = next(readings)
        if ending and ending[0].finished:  # the end's reading: the marker appends now
            ending[0].chunk_marker()[0](reading + 1)
        return reading

    processor = SimpleSpanProcessor(octomil_records)
    recorder = Recorder(tracer_provider, meter_provider, octomil_processor=processor, clock=clock)
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    ending.append(generation)
    generation.chunk()
    generation.chunk()
    generation.cancel()

    (record,) = octomil_records.get_finished_spans()
    assert record.attributes["octomil.chunk.latencies_ns"] == (1_000_000, 1_000_000)
    assert [e["event_type"] for e in decoded_events(record)] == [
        "generation_started",
        "chunk_produced",
        "chunk_produced",
        "generation_failed",
    ]


class _FailsOnRequests(SpanProcessor):
    """An application's processor that fails in ``on_start`` for requests' spans only."""

    def on_start(self, span, parent_context=None) -> None:
        if span.name.startswith("chat "):
            raise RuntimeError("a broken processor of the application's")


def test_a_request_whose_span_could_not_start_still_parents_its_nested_spans(meter_provider):
    """The request gets ids of its own, sampled as the SDK sampled its span (it calls
    ``on_start`` only for a span it records), so spans started inside it are recorded under
    it, as the default parent-based sampler follows the flag."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(_FailsOnRequests())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = Recorder(provider, meter_provider)

    generation = recorder.start(model="tiny", engine="echo")
    with generation.activate():
        recorder.tracer.start_span("a tool call").end()
    generation.stop()

    (child,) = exporter.get_finished_spans()
    ids = generation.span.get_span_context()
    assert (child.name, child.parent.trace_id, child.parent.span_id) == (
        "a tool call", ids.trace_id, ids.span_id,
    )  # fmt: skip
    assert ids.trace_flags.sampled


def test_a_latency_past_int64_is_left_off_the_span_alone(
    tracer_provider, meter_provider, span_exporter, metric_reader
):
    """A clock gone wrong after the recorder checked it (a chunk 2**63 ns after the start):
    no latencies on the span, which text cannot hold; the rest is recorded, and the caller
    gets nothing of it."""
    readings = iter([0, 0, 2**63 + 5, 2**63 + 6])  # the check, t0, a chunk, the end
    recorder = Recorder(tracer_provider, meter_provider, clock=lambda: next(readings))
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    generation.chunk()
    generation.stop()

    (span,) = span_exporter.get_finished_spans()
    assert span.name == "chat tiny"
    assert "octomil.chunk.latencies_ns" not in span.attributes
    assert span.attributes["octomil.total_duration_ms"] == (2**63 + 6) / 1e6
    assert span.end_time - span.start_time == 2**63 + 6
    (duration,) = histogram_points(metric_reader)["gen_ai.client.operation.duration"]
    assert duration.count == 1


@pytest.mark.parametrize(
    ("chunks_ms", "total_ms", "tokens", "expected"),
    [
        ([], 10.0, None, ({"total_duration_ms": 10.0}, ())),
        ([], 10.0, 0, ({"total_duration_ms": 10.0, "throughput_tok_s": 0.0}, ())),
        (
            [3.0, 4.0],
            5.0,
            2,
            (
                {
                    "total_duration_ms": 5.0,
                    "ttfc_ms": 3.0,
                    "chunk_latency_avg_ms": 1.0,
                    "chunk_latency_p99_ms": 1.0,
                    "throughput_tok_s": 400.0,
                },
                (3_000_000, 1_000_000),
            ),
        ),
    ],
)
def test_summarize_follows_the_contract(chunks_ms, total_ms, tokens, expected):
    ns = [round(c * 1e6) for c in chunks_ms]
    assert summarize(0, ns, round(total_ms * 1e6), tokens) == expected


@pytest.mark.parametrize(("n_gaps", "rank"), [(1, 1), (99, 99), (100, 99), (101, 100), (200, 198)])
def test_summarize_p99_is_nearest_rank(n_gaps, rank):
    # gaps of 1, 2, ..., n_gaps ms in shuffled order: the p99 is the rank-th smallest
    gaps = [((i * 37) % n_gaps) + 1 for i in range(n_gaps)]
    chunks = [0]
    for gap in gaps:
        chunks.append(chunks[-1] + gap * 1_000_000)
    metrics, _ = summarize(0, chunks, chunks[-1], None)
    assert rank == math.ceil(0.99 * n_gaps)
    assert metrics["chunk_latency_p99_ms"] == float(rank)


def test_generation_ignores_token_counts_that_are_not_counts(recorder, span_exporter):
    generation = recorder.start(model="tiny", engine="echo", input_tokens=-1)
    generation.set_usage(output_tokens=3.5)  # type: ignore[arg-type]
    generation.set_usage(output_tokens=True)  # type: ignore[arg-type]
    generation.stop()

    (span,) = span_exporter.get_finished_spans()
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert "gen_ai.usage.output_tokens" not in span.attributes
    assert "octomil.throughput_tok_s" not in span.attributes


def test_generation_activate_makes_it_current_and_parent(recorder, span_exporter):
    generation = recorder.start(model="tiny", engine="echo")
    assert active_generation() is None
    with generation.activate():
        assert active_generation() is generation
        child = recorder.tracer.start_span("inner")
        child.end()
    assert active_generation() is None
    generation.stop()

    inner, outer = span_exporter.get_finished_spans()
    assert inner.parent.span_id == outer.context.span_id


def test_generation_with_noop_tracer_still_records_histograms(clock):
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    recorder = Recorder(NoOpTracerProvider(), meters, clock=clock, wall_clock=clock.wall)

    run_stream(recorder, clock, [10.0, 5.0], tail_ms=0.0)

    (duration,) = histogram_points(reader)["gen_ai.client.operation.duration"]
    assert (duration.count, duration.sum) == (1, 0.015)


def test_generation_non_recording_span_gets_no_attributes(clock, meter_provider, monkeypatch):
    recorder = Recorder(NoOpTracerProvider(), meter_provider, clock=clock, wall_clock=clock.wall)
    generation = recorder.start(model="tiny", engine="echo")
    calls = []
    monkeypatch.setattr(generation.span, "set_attribute", lambda *a: calls.append(a))
    monkeypatch.setattr(generation.span, "set_attributes", lambda *a: calls.append(a))
    generation.chunk()
    generation.stop()
    assert calls == []


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


def test_generation_call_keeps_an_error_whose_str_raises(recorder, octomil_records):
    generation = recorder.start(model="tiny", engine="echo")

    def engine():
        raise UnprintableError

    with pytest.raises(UnprintableError):
        generation.call(engine)

    (record,) = octomil_records.get_finished_spans()
    assert record.attributes["error.type"] == "UnprintableError"


@pytest.mark.parametrize("wrong", [-1, 1.5, 2**64])
def test_a_clock_that_goes_wrong_after_the_check_never_breaks_the_callers_calls(wrong):
    """Checked when the Recorder is made; a clock that changes later costs the request's
    telemetry, never the caller's items or calls."""
    readings = iter([5_000_000_000] * 2)  # the Recorder's check and the first t0

    def clock() -> int:
        return next(readings, wrong)

    recorder = Recorder(NoOpTracerProvider(), clock=clock)
    streamed = recorder.start(model="m", engine="echo", stream=True)
    assert list(record_stream(streamed, iter("abc"))) == ["a", "b", "c"]
    assert streamed.finished
    whole = recorder.start(model="m", engine="echo")
    whole.chunk()
    whole.stop()
    assert whole.finished


def test_a_clock_that_is_not_int_nanoseconds_is_refused_when_the_recorder_is_made():
    """Refused up front (chunk times are 64-bit integers), not in a caller's stream."""
    refused = "must return non-negative int nanoseconds below 2\\*\\*63, got"
    with pytest.raises(TypeError, match=rf"^clock {refused} 1\.5$"):
        Recorder(NoOpTracerProvider(), clock=lambda: 1.5)
    with pytest.raises(TypeError, match=rf"^wall_clock {refused} 2\.5$"):
        Recorder(NoOpTracerProvider(), wall_clock=lambda: 2.5)
    with pytest.raises(TypeError, match=rf"^clock {refused} -1$"):
        Recorder(NoOpTracerProvider(), clock=lambda: -1)


def test_ids_stay_unique_when_the_application_seeds_random_and_across_fork():
    """An application that seeds ``random`` (``random.seed(0)``, for its own results) must
    not give every run, or every forked worker, the same request and trace ids: ours,
    where no span processor would see a span (the SDK's own spans take ids from its
    ``IdGenerator``, the application's to choose)."""
    import os
    import random

    from opentelemetry.sdk.trace import TracerProvider

    recorder = Recorder(TracerProvider())
    assert not recorder.spans_observed()

    def ids() -> tuple[str, int]:
        random.seed(0)
        generation = recorder.start(model="tiny", engine="echo")
        generation.cancel()
        return generation.request_id, generation.span.get_span_context().trace_id

    first, second = ids(), ids()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, json.dumps(ids()).encode())
        os._exit(0)
    os.waitpid(child, 0)
    in_child = tuple(json.loads(os.read(read, 1000)))
    os.close(read)
    os.close(write)

    assert len({first[0], second[0], in_child[0]}) == 3
    assert len({first[1], second[1], in_child[1]}) == 3
