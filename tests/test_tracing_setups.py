"""Every request reported, exactly, whatever the application's tracing setup.

The application's sampler, a propagated unsampled parent, span limits and a failing span
processor change what the application's spans hold, never which Octomil events are sent
or what they say (``shared/spec/octomil-api.md``, "Every request, whatever the tracing
setup"). Each test runs ``octomil.generate`` on the echo engine against a real API on
127.0.0.1 and checks every event of every request.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict

import pytest
from opentelemetry import context
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import octomil
from octomil_otel import chunk_latencies

from .conftest import API_KEY, ORG_ID, histogram_points

DEVICE = "a1b2c3d4e5f6"
REQUESTS = 50


def run_requests(count: int = REQUESTS) -> dict[str, str]:
    """``count`` echo requests, every other one streamed; request id -> the answer."""
    answers = {}
    for i in range(count):
        messages = [{"role": "user", "content": f"tell me about request {i}"}]
        if i % 2:
            response = octomil.generate(model="echo", messages=messages)
            answers[response.request_id] = response.content
        else:
            chunks = list(octomil.generate(model="echo", messages=messages, stream=True))
            answers[chunks[0].request_id] = "".join(c.content for c in chunks)
    return answers


def assert_every_request_reported(api, answers: dict[str, str]) -> dict[str, list[dict]]:
    """Each request's events, checked field by field: started, one chunk per output token
    when streamed (one in all when not), completed with 5 input and 5 output tokens."""
    by_request: dict[str, list[dict]] = defaultdict(list)
    for event in api.events:
        by_request[event["request_id"]].append(event)
    assert set(by_request) == set(answers)
    for request_id, events in by_request.items():
        stream = events[0]["stream"]
        assert [e["event_type"] for e in events] == [
            "generation_started",
            *["chunk_produced"] * (5 if stream else 1),
            "generation_completed",
        ]
        assert answers[request_id].startswith("tell me about request")
        for event in events:
            assert {k: event[k] for k in ("device_id", "org_id", "model", "engine")} == {
                "device_id": DEVICE,
                "org_id": ORG_ID,
                "model": "echo",
                "engine": "echo",
            }
        chunks = [e["metrics"] for e in events[1:-1]]
        assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
        completed = events[-1]["metrics"]
        assert (completed["input_tokens"], completed["output_tokens"]) == (5, 5)
        assert completed["ttfc_ms"] == chunks[0]["chunk_latency_ms"]
        # the span's ids on the first and last (none where the span could not even start)
        assert (events[0].get("trace_id"), events[0].get("span_id")) == (
            events[-1].get("trace_id"),
            events[-1].get("span_id"),
        )
    return by_request


def start(api, tracer_provider, meter_provider):
    return octomil.init(
        api_key=API_KEY,
        api_base=api.url,
        device_id=DEVICE,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        instrument=False,
    )


def test_ratio_sampler_in_code_keeps_every_requests_events(
    api, fresh_init, span_exporter, meter_provider, metric_reader
):
    provider = TracerProvider(sampler=TraceIdRatioBased(0.1))
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    telemetry = start(api, provider, meter_provider)

    answers = run_requests()
    assert telemetry.flush()

    by_request = assert_every_request_reported(api, answers)
    # the application's spans still follow its sampler, exactly
    bound = TraceIdRatioBased.get_bound_for_rate(0.1)
    sampled = {
        events[0]["trace_id"]
        for events in by_request.values()
        if int(events[0]["trace_id"], 16) & TraceIdRatioBased.TRACE_ID_LIMIT < bound
    }
    assert {f"{s.context.trace_id:032x}" for s in span_exporter.get_finished_spans()} == sampled
    assert len(sampled) < REQUESTS
    # and the histograms count every request
    (duration,) = histogram_points(metric_reader)["gen_ai.client.operation.duration"]
    assert duration.count == REQUESTS


def test_sampler_that_records_nothing_keeps_every_requests_events(
    api, fresh_init, span_exporter, meter_provider
):
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    telemetry = start(api, provider, meter_provider)

    answers = run_requests(10)
    assert telemetry.flush()

    assert_every_request_reported(api, answers)
    assert span_exporter.get_finished_spans() == ()


def test_propagated_unsampled_parent_keeps_every_requests_events(
    api, fresh_init, tracer_provider, span_exporter, meter_provider
):
    telemetry = start(api, tracer_provider, meter_provider)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = TraceContextTextMapPropagator().extract(
        {"traceparent": f"00-{trace_id}-b7ad6b7169203331-00"}  # a gateway chose not to trace
    )
    token = context.attach(parent)
    try:
        answers = run_requests(10)
    finally:
        context.detach(token)
    assert telemetry.flush()

    assert_every_request_reported(api, answers)
    linked = [e for e in api.events if e["event_type"] != "chunk_produced"]
    assert {e["trace_id"] for e in linked} == {trace_id}
    assert span_exporter.get_finished_spans() == ()


def test_a_provider_with_no_processor_builds_no_span_and_keeps_the_ids(
    api, fresh_init, span_exporter, meter_provider
):
    """``octomil serve`` and ``init()`` without OTLP: nothing would see a span, so none is
    built; every event keeps its request's own trace and span ids, in a propagated trace."""
    provider = TracerProvider()
    telemetry = start(api, provider, meter_provider)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = TraceContextTextMapPropagator().extract(
        {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
    )
    answers = run_requests(6)
    token = context.attach(parent)
    try:
        answers |= run_requests(4)
    finally:
        context.detach(token)
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))  # seen from now on
    answers |= run_requests(2)
    assert telemetry.flush()

    by_request = assert_every_request_reported(api, answers)
    ids = [(events[0]["trace_id"], events[0]["span_id"]) for events in by_request.values()]
    assert len(set(ids)) == 12 and all(int(t, 16) and int(s, 16) for t, s in ids)
    assert [t for t, _ in ids[6:10]] == [trace_id] * 4
    spans = span_exporter.get_finished_spans()
    assert [(f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in spans] == ids[10:]


def test_span_limits_do_not_truncate_the_events(api, fresh_init, span_exporter, meter_provider):
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2))
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    telemetry = start(api, provider, meter_provider)

    answers = run_requests(10)
    assert telemetry.flush()

    assert_every_request_reported(api, answers)
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 10
    assert {len(span.attributes) for span in spans} == {2}  # the application's limit holds


class FailingProcessor(SpanProcessor):
    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span, parent_context=None) -> None:
        if self.where == "on_start":
            raise RuntimeError("a broken processor of the application's")

    def on_end(self, span) -> None:
        if self.where == "on_end":
            raise RuntimeError("a broken processor of the application's")


@pytest.mark.parametrize("where", ["on_start", "on_end"])
def test_failing_application_processor_changes_neither_answers_nor_events(
    api, fresh_init, meter_provider, where
):
    provider = TracerProvider()
    provider.add_span_processor(FailingProcessor(where))
    telemetry = start(api, provider, meter_provider)

    answers = run_requests(10)
    assert telemetry.flush()

    assert sorted(answers.values()) == sorted(f"tell me about request {i}" for i in range(10))
    reported = assert_every_request_reported(api, answers)
    for events in reported.values():  # ids even where the span could not start
        first, last = events[0], events[-1]
        assert (len(first["trace_id"]), len(first["span_id"])) == (32, 16)
        assert (first["trace_id"], first["span_id"]) == (last["trace_id"], last["span_id"])


def test_console_exporter_writes_every_span_with_its_chunk_latencies(
    api, fresh_init, meter_provider
):
    """The SDK's console exporter writes a span as JSON, and cannot write ``bytes``: a
    span attribute of them lost its whole batch."""
    out = io.StringIO()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out)))
    telemetry = start(api, provider, meter_provider)

    answers = run_requests(4)
    assert telemetry.flush()

    by_request = assert_every_request_reported(api, answers)
    decoder, text, spans = json.JSONDecoder(), out.getvalue(), []
    while text.strip():
        span, end = decoder.raw_decode(text.lstrip())
        spans.append(span)
        text = text.lstrip()[end:]
    assert len(spans) == 4
    for span in spans:
        events = by_request[span["attributes"]["gen_ai.response.id"]]
        packed = span["attributes"]["octomil.chunk.latencies_ns"]
        assert [float(f"{ns}e-6") for ns in chunk_latencies.unpack(packed)] == [
            e["metrics"]["chunk_latency_ms"] for e in events[1:-1]
        ]
