"""A generation's record to events, and the event checks, against the document's example."""

from __future__ import annotations

import enum
import fractions
import json
import math

import msgspec
import numpy as np
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, format_span_id, format_trace_id

from octomil_otel import chunk_latencies
from octomil_otel.export.events import (
    RecordSpan,
    encode,
    event_count,
    format_timestamp,
    validate_event,
)

from .conftest import WALL0_NS, decoded_events

DOC_EXAMPLE = {
    "event_type": "generation_completed",
    "timestamp": "2026-02-19T14:32:01.442Z",
    "device_id": "a1b2c3d4e5f6",
    "org_id": "org_abc123",
    "model": "gemma-1b",
    "engine": "mlx",
    "metrics": {
        "ttfc_ms": 142.3,
        "throughput_tok_s": 38.7,
        "total_duration_ms": 1842.1,
        "input_tokens": 47,
        "output_tokens": 128,
        "chunk_latency_avg_ms": 25.8,
        "chunk_latency_p99_ms": 41.2,
    },
    "request_id": "req_7f8a9b0c",
    "stream": True,
}


def finished_span(recorder, clock, octomil_records, *, stream, gaps, output_tokens, end):
    """The Octomil record of one request: what the events are made from."""
    generation = recorder.start(
        model="gemma-1b", engine="mlx", stream=stream, request_id="req_7f8a9b0c", input_tokens=47
    )
    for gap in gaps:
        clock.advance_ms(gap)
        generation.chunk()
    clock.advance_ms(10.0)
    if output_tokens is not None:
        generation.set_usage(output_tokens=output_tokens)
    end(generation)
    (span,) = octomil_records.get_finished_spans()
    return span


def ts(offset_ms: float) -> str:
    return format_timestamp(WALL0_NS + round(offset_ms * 1e6))


def common(span, event_type: str) -> dict:
    """The shared fields; the span's ids on every event but the chunks."""
    shared = {"model": "gemma-1b", "engine": "mlx", "request_id": "req_7f8a9b0c"}
    if event_type == "chunk_produced":
        return shared
    return {
        **shared,
        "trace_id": format_trace_id(span.context.trace_id),
        "span_id": format_span_id(span.context.span_id),
    }


CASES = {
    "stream completed": dict(
        stream=True,
        gaps=[142.3, 20.0, 41.2],
        output_tokens=3,
        end=lambda g: g.stop(),
        expected=lambda c: [
            ("generation_started", ts(0), {"input_tokens": 47}),
            ("chunk_produced", ts(142.3), {"chunk_index": 0, "chunk_latency_ms": 142.3}),
            ("chunk_produced", ts(162.3), {"chunk_index": 1, "chunk_latency_ms": 20.0}),
            ("chunk_produced", ts(203.5), {"chunk_index": 2, "chunk_latency_ms": 41.2}),
            (
                "generation_completed",
                ts(213.5),
                {
                    "ttfc_ms": 142.3,
                    "throughput_tok_s": 3 / 0.2135,
                    "total_duration_ms": 213.5,
                    "input_tokens": 47,
                    "output_tokens": 3,
                    "chunk_latency_avg_ms": (20.0 + 41.2) / 2,
                    "chunk_latency_p99_ms": 41.2,
                },
            ),
        ],
    ),
    "non-stream completed": dict(
        stream=False,
        gaps=[300.0],
        output_tokens=128,
        end=lambda g: g.stop(),
        expected=lambda c: [
            ("generation_started", ts(0), {"input_tokens": 47}),
            (
                "chunk_produced",
                ts(300.0),
                {"chunk_index": 0, "chunk_latency_ms": 300.0, "output_tokens": 128},
            ),
            (
                "generation_completed",
                ts(310.0),
                {
                    "ttfc_ms": 300.0,
                    "throughput_tok_s": 128 / 0.31,
                    "total_duration_ms": 310.0,
                    "input_tokens": 47,
                    "output_tokens": 128,
                },
            ),
        ],
    ),
    "stream failed after one chunk": dict(
        stream=True,
        gaps=[50.0],
        output_tokens=1,
        end=lambda g: g.fail(MemoryError()),
        expected=lambda c: [
            ("generation_started", ts(0), {"input_tokens": 47}),
            ("chunk_produced", ts(50.0), {"chunk_index": 0, "chunk_latency_ms": 50.0}),
            (
                "generation_failed",
                ts(60.0),
                {"total_duration_ms": 60.0, "output_tokens": 1, "error_type": "MemoryError"},
            ),
        ],
    ),
    "stream cancelled before a chunk": dict(
        stream=True,
        gaps=[],
        output_tokens=None,
        end=lambda g: g.cancel(),
        expected=lambda c: [
            ("generation_started", ts(0), {"input_tokens": 47}),
            (
                "generation_failed",
                ts(10.0),
                {"total_duration_ms": 10.0, "error_type": "cancelled"},
            ),
        ],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_encode_gives_the_documented_events(recorder, clock, octomil_records, case):
    span = finished_span(
        recorder,
        clock,
        octomil_records,
        stream=case["stream"],
        gaps=case["gaps"],
        output_tokens=case["output_tokens"],
        end=case["end"],
    )

    events = decoded_events(span)

    expected = [
        {
            "event_type": event_type,
            "timestamp": timestamp,
            **common(span, event_type),
            "stream": case["stream"],
            "metrics": metrics,
        }
        for event_type, timestamp, metrics in case["expected"](clock)
    ]
    assert events == expected


def test_encode_completed_has_the_documents_fields(recorder, clock, octomil_records):
    span = finished_span(
        recorder, clock, octomil_records, stream=True, gaps=[1.0, 2.0], output_tokens=2,
        end=lambda g: g.stop(),
    )  # fmt: skip
    completed = decoded_events(span)[-1]
    documented = set(DOC_EXAMPLE) - {"device_id", "org_id"}  # the reporter fills these in
    assert set(completed) == documented | {"trace_id", "span_id"}
    assert set(completed["metrics"]) == set(DOC_EXAMPLE["metrics"])


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [(0, 1), (1, 0), (-1, 1), (1 << 128, 1), (1, 1 << 64), (True, 1)],
    ids=["zero-trace", "zero-span", "negative", "trace-too-large", "span-too-large", "bool"],
)
def test_encode_leaves_out_ids_that_are_not_valid(
    recorder, clock, octomil_records, trace_id, span_id
):
    span = finished_span(
        recorder, clock, octomil_records, stream=True, gaps=[1.0], output_tokens=1,
        end=lambda g: g.stop(),
    )  # fmt: skip
    record = ReadableSpan(
        span.name,
        context=SpanContext(trace_id, span_id, is_remote=False),
        attributes=span.attributes,
        start_time=span.start_time,
        end_time=span.end_time,
    )

    events = decoded_events(record)
    assert [validate_event(e) for e in events] == events  # the API takes every one
    assert [("trace_id" in e, "span_id" in e) for e in events] == [(False, False)] * 3
    assert {e["request_id"] for e in events} == {span.attributes["gen_ai.response.id"]}


def test_encode_ignores_other_spans(tracer_provider, span_exporter):
    tracer_provider.get_tracer("user").start_span("user work").end()
    (span,) = span_exporter.get_finished_spans()
    assert decoded_events(span) == []


def test_validate_event_accepts_the_documents_example():
    assert validate_event(DOC_EXAMPLE) == DOC_EXAMPLE


BAD_CHANGES = [
    (None, TypeError, "event must be a mapping, not list"),
    ({"event_type": "generation_done"}, ValueError, "event_type must be one of"),
    ({"model": None}, TypeError, "model must be a non-empty str"),
    ({"engine": 3}, TypeError, "engine must be a non-empty str"),
    ({"colour": "red"}, ValueError, "unknown field 'colour'"),
    ({"timestamp": "2026-02-19 14:32:01"}, ValueError, "timestamp must be RFC 3339"),
    ({"request_id": "7f8a9b0c"}, ValueError, "request_id must be 'req_'"),
    ({"stream": "yes"}, TypeError, "stream must be a bool"),
    ({"trace_id": "XYZ"}, ValueError, "trace_id must be lowercase hex"),
    ({"metrics": [1, 2]}, TypeError, "metrics must be a mapping"),
    ({"metrics": {"ttfc_ms": math.nan}}, ValueError, "metrics.ttfc_ms must be finite"),
    ({"metrics": {"ttfc_ms": math.inf}}, ValueError, "metrics.ttfc_ms must be finite"),
    ({"metrics": {"output_tokens": -1}}, ValueError, "metrics.output_tokens must be finite"),
    ({"metrics": {"ttfc_ms": "fast"}}, TypeError, "metrics.ttfc_ms must be a number"),
    ({"metrics": {"ttfc_ms": True}}, TypeError, "metrics.ttfc_ms must be a number"),
    ({"metrics": {"ttfc_ms": object()}}, TypeError, "metrics.ttfc_ms must be a number"),
    ({"metrics": {"error_type": 5}}, TypeError, "metrics.error_type must be a non-empty"),
    ({"metrics": {"\ud800x": 1}}, ValueError, "metrics keys must be Unicode text"),
    ({"timestamp": "2026-02-19T14:32:01.442Z\n"}, ValueError, "timestamp must be RFC 3339"),
    ({"timestamp": "2026-02-30T14:32:01.442Z"}, ValueError, "timestamp must be RFC 3339"),
    ({"timestamp": "2026-02-19T25:32:01.442Z"}, ValueError, "timestamp must be RFC 3339"),
    ({"timestamp": "\u0662026-02-19T14:32:01.442Z"}, ValueError, "timestamp must be RFC 3339"),
    ({"request_id": "req_7f8a9b0c\n"}, ValueError, "request_id must be 'req_'"),
    ({"span_id": "0f\n"}, ValueError, "span_id must be lowercase hex"),
    ({"metrics": {"chunk_index": 2.5}}, ValueError, "metrics.chunk_index must be a whole"),
    ({"metrics": {"chunk_index": 2**53}}, ValueError, "metrics.chunk_index must be a whole"),
    ({"metrics": {"input_tokens": 2.5}}, ValueError, "metrics.input_tokens must be a whole"),
    ({"metrics": {"output_tokens": 2**53}}, ValueError, "metrics.output_tokens must be a whole"),
    ({"device_id": "XYZ"}, ValueError, "device_id must be 12 lowercase hex characters"),
    ({"device_id": "A1B2C3D4E5F6"}, ValueError, "device_id must be 12 lowercase hex characters"),
    ({"device_id": "a1b2c3d4e5f6\n"}, ValueError, "device_id must be 12 lowercase hex"),
]
"""Changes to DOC_EXAMPLE that make it wrong, and the error that says so."""


@pytest.mark.parametrize(("change", "error", "message"), BAD_CHANGES)
def test_validate_event_names_the_wrong_field(change, error, message):
    event = [1] if change is None else {**DOC_EXAMPLE, **change}
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate_event(event)


@pytest.mark.parametrize("missing", ["event_type", "model", "engine"])
def test_validate_event_requires_type_model_engine(missing):
    event = {k: v for k, v in DOC_EXAMPLE.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        validate_event(event)


def test_format_timestamp_is_rfc3339_millis_utc():
    assert format_timestamp(WALL0_NS) == "2026-02-19T14:32:01.442Z"
    assert format_timestamp(WALL0_NS + 999_999) == "2026-02-19T14:32:01.442Z"
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"


def test_encode_escapes_names_with_quotes_percent_signs_and_non_ascii(recorder, octomil_records):
    model = 'qwen "2.5" 100% \u00fcber \U0001f999'
    generation = recorder.start(model=model, engine="llamacpp", stream=True)
    generation.chunk()
    generation.chunk()
    generation.stop()
    (span,) = octomil_records.get_finished_spans()

    texts = encode(span)
    assert all(text.isascii() for text in texts)
    assert [e["model"] for e in decoded_events(span)] == [model] * 4


def test_encode_reads_the_applications_span_as_the_record(recorder, octomil_records, span_exporter):
    """With no limits and sampling on, the application's span says what the record says,
    and more: the response's attributes are the span's alone. Its chunk latencies are text
    (``chunk_latencies``), the record's the ints themselves."""
    generation = recorder.start(model="gemma-1b", engine="mlx", stream=True, input_tokens=3)
    generation.chunk()
    generation.set_usage(output_tokens=1)
    generation.stop()
    (record,) = octomil_records.get_finished_spans()
    (span,) = span_exporter.get_finished_spans()

    assert encode(record) == encode(span)
    latencies = record.attributes["octomil.chunk.latencies_ns"]
    assert latencies == (0,)
    assert {**record.attributes, "octomil.chunk.latencies_ns": chunk_latencies.pack(latencies)} == {
        k: v for k, v in span.attributes.items() if k != "gen_ai.response.model"
    }


def test_encode_chunk_timestamps_cross_seconds_exactly(recorder, clock, octomil_records):
    gaps_ms = [0.0, 557.999, 0.001, 1000.0, 2500.5, 0.25]  # from .442 s: .442, 1.000, 1.000 ...
    generation = recorder.start(model="tiny", engine="llamacpp", stream=True)
    for gap in gaps_ms:
        clock.advance_ms(gap)
        generation.chunk()
    generation.stop()
    (span,) = octomil_records.get_finished_spans()

    chunks = [e for e in decoded_events(span) if e["event_type"] == "chunk_produced"]
    offsets = [sum(gaps_ms[: i + 1]) for i in range(len(gaps_ms))]
    assert [e["timestamp"] for e in chunks] == [
        format_timestamp(WALL0_NS + round(offset * 1e6)) for offset in offsets
    ]
    assert [e["timestamp"] for e in chunks] == [
        "2026-02-19T14:32:01.442Z",
        "2026-02-19T14:32:01.999Z",
        "2026-02-19T14:32:02.000Z",
        "2026-02-19T14:32:03.000Z",
        "2026-02-19T14:32:05.500Z",
        "2026-02-19T14:32:05.500Z",
    ]
    assert [e["metrics"]["chunk_latency_ms"] for e in chunks] == gaps_ms


@pytest.mark.parametrize("stream", [True, False])
def test_encode_writes_one_chunk_as_the_first_of_many(recorder, clock, octomil_records, stream):
    """One chunk is encoded without the maps that write many: byte for byte the same event."""
    span = finished_span(
        recorder, clock, octomil_records, stream=stream, gaps=[999.9996], output_tokens=2,
        end=lambda g: g.stop(),
    )  # fmt: skip
    (latency,) = span.attributes["octomil.chunk.latencies_ns"]
    two = _record_with(span, **{"octomil.chunk.latencies_ns": chunk_latencies.pack([latency, 7])})

    one_chunk, two_chunks = encode(span)[1], encode(two)[1]

    assert one_chunk == two_chunks
    assert json.loads("{" + one_chunk)["timestamp"] == "2026-02-19T14:32:02.441Z"


def test_validate_event_refuses_an_int_too_large_for_a_double():
    event = {**DOC_EXAMPLE, "metrics": {"output_tokens": 10**400}}
    with pytest.raises(ValueError, match=r"metrics\.output_tokens must be finite"):
        validate_event(event)


def _record_with(span, *, start_time=None, end_time=None, **attributes):
    """``span``'s record with some attributes, and its start or end time, replaced."""
    return ReadableSpan(
        span.name,
        context=span.context,
        attributes={**span.attributes, **attributes},
        start_time=span.start_time if start_time is None else start_time,
        end_time=span.end_time if end_time is None else end_time,
    )


def _one_chunk_stream(recorder, octomil_records):
    """The record of a streamed request of one chunk."""
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    generation.chunk()
    generation.stop()
    (span,) = octomil_records.get_finished_spans()
    return span


@pytest.mark.parametrize(
    ("attribute", "value", "error"),
    [
        ("octomil.ttfc_ms", -0.5, ValueError),  # the API refuses the batch it is in
        ("octomil.ttfc_ms", math.nan, ValueError),
        ("octomil.total_duration_ms", math.inf, ValueError),
        ("gen_ai.usage.output_tokens", 10**400, OverflowError),
        ("octomil.queue_ms", "12", TypeError),
        ("octomil.ttfc_ms", True, TypeError),  # JSON's true: the API refuses the batch
        ("octomil.total_duration_ms", msgspec.Raw(b"1e999"), TypeError),  # written as it is
        ("octomil.total_duration_ms", enum.Enum("Unit", {"FAST": 12}).FAST, TypeError),
        ("gen_ai.usage.input_tokens", -1, ValueError),  # on generation_started
        ("error.type", "\ud800", ValueError),  # no JSON the API can store
        ("error.type", "", TypeError),
    ],
)
def test_encode_refuses_a_metric_the_api_would_refuse(
    recorder, octomil_records, attribute, value, error
):
    generation = recorder.start(model="tiny", engine="echo", stream=True, input_tokens=3)
    generation.chunk()
    generation.stop()
    (span,) = octomil_records.get_finished_spans()

    with pytest.raises(error):
        encode(_record_with(span, **{attribute: value}))


def test_encode_writes_numbers_of_a_subclass_as_their_value(recorder, clock, octomil_records):
    """numpy's float64 (a float) as an engine may report a time, an int subclass as a count."""

    class Tokens(int):
        pass

    class Milliseconds(float):
        pass

    generation = recorder.start(model="tiny", engine="echo", input_tokens=Tokens(3))
    clock.advance_ms(2.0)
    generation.chunk()
    generation.add_engine_time(prefill_ms=Milliseconds(1.5))
    generation.stop()
    (span,) = octomil_records.get_finished_spans()

    started, _, completed = [json.loads("{" + text) for text in encode(span)]
    assert started["metrics"] == {"input_tokens": 3}
    assert completed["metrics"]["prefill_ms"] == 1.5


def test_numpy_numbers_are_recorded_and_reported_as_their_value(recorder, clock, octomil_records):
    """What an application computes with numpy (``np.sum``, a ``float32`` timing)."""
    generation = recorder.start(model="tiny", engine="echo", input_tokens=np.int64(3))
    clock.advance_ms(2.0)
    generation.chunk()
    generation.set_usage(output_tokens=np.int32(1))
    generation.add_engine_time(prefill_ms=np.float32(1.5), decode_ms=np.float64(0.25))
    generation.set_peak_memory(np.uint64(4096))
    generation.stop()
    (span,) = octomil_records.get_finished_spans()

    started, _, completed = [json.loads("{" + text) for text in encode(span)]
    assert started["metrics"] == {"input_tokens": 3}
    assert {k: completed["metrics"][k] for k in ("output_tokens", "prefill_ms", "decode_ms")} == {
        "output_tokens": 1, "prefill_ms": 1.5, "decode_ms": 0.25,
    }  # fmt: skip
    assert completed["metrics"]["peak_memory_bytes"] == 4096

    checked = validate_event(
        {"event_type": "generation_completed", "model": "m", "engine": "e",
         "metrics": {"output_tokens": np.int64(7), "ttfc_ms": np.float32(0.5)}}
    )  # fmt: skip
    assert checked["metrics"] == {"output_tokens": 7, "ttfc_ms": 0.5}
    assert [type(v) for v in checked["metrics"].values()] == [int, float]
    with pytest.raises(ValueError, match=r"^metrics.ttfc_ms must be finite, got Fraction"):
        validate_event(
            {"event_type": "generation_completed", "model": "m", "engine": "e",
             "metrics": {"ttfc_ms": fractions.Fraction(10**400, 3)}}
        )  # fmt: skip


def test_encode_writes_each_metric_as_the_double_it_is(recorder, octomil_records):
    generation = recorder.start(model="tiny", engine="echo")
    generation.chunk()
    generation.stop()
    (span,) = octomil_records.get_finished_spans()
    values = {"octomil.ttfc_ms": 1e16, "octomil.total_duration_ms": 1e-7, "octomil.queue_ms": 0.1}

    (completed,) = [
        text for text in encode(_record_with(span, **values)) if "generation_completed" in text
    ]
    assert '"ttfc_ms":1e16' in completed and '"total_duration_ms":1e-7' in completed
    metrics = json.loads("{" + completed)["metrics"]
    assert (metrics["ttfc_ms"], metrics["total_duration_ms"], metrics["queue_ms"]) == (
        1e16, 1e-7, 0.1,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("attributes", "end_before_start", "error", "message"),
    [
        ({"gen_ai.request.stream": "no"}, False, TypeError, "gen_ai.request.stream must be a bool"),
        ({"error.type": "E" * 2**20}, False, ValueError, "an event over the API's 1 MiB"),
        ({"gen_ai.request.model": "m" * 2**20}, False, ValueError, "an event over the API's 1 MiB"),
        ({}, True, ValueError, "ends before it starts"),
        ({"octomil.chunk.latencies_ns": (1.5,)}, False, TypeError, "must be int nanoseconds"),
        ({"octomil.chunk.latencies_ns": [1]}, False, TypeError, "a tuple of ints or packed text"),
        ({"octomil.chunk.latencies_ns": (2**63,)}, False, ValueError, "past int64"),
        ({"octomil.chunk.latencies_ns": (2**62, 2**62)}, False, ValueError, "adding up past"),
        ({"octomil.chunk.latencies_ns": (10**9,)}, False, ValueError, "after the request's end"),
        ({"gen_ai.usage.output_tokens": 2.5}, False, ValueError, "output_tokens must be a whole"),
        ({"gen_ai.usage.input_tokens": 2**53}, False, ValueError, "input_tokens must be a whole"),
    ],
    ids=[
        "stream-not-a-bool", "error-type-over-1-MiB", "model-over-1-MiB", "end-before-start",
        "latency-not-an-int", "latencies-a-list", "latency-past-int64",
        "latencies-adding-up-past-int64", "chunk-after-the-end", "tokens-not-whole",
        "tokens-past-2**53",
    ],
)  # fmt: skip
def test_encode_refuses_a_request_the_api_would_get_in_part(
    recorder, octomil_records, attributes, end_before_start, error, message
):
    """All of a request's events or none: not a request whose end the API would refuse or
    the reporter drop, nor one whose events would contradict each other."""
    span = _one_chunk_stream(recorder, octomil_records)
    end_time = span.start_time - 1 if end_before_start else None
    record = _record_with(span, end_time=end_time, **attributes)

    with pytest.raises(error, match=message):
        encode(record)


def test_a_record_with_a_latency_not_an_int_is_refused_alone(recorder, octomil_records):
    """A ``RecordSpan`` built by hand is checked as a span's attributes are: a bool latency
    would write ``Truee-6``, which the API refuses with the batch it is in."""
    record_span = _one_chunk_stream(recorder, octomil_records)
    bad = RecordSpan(record_span.record._replace(latencies=(True,)), record_span.context)

    with pytest.raises(TypeError, match="chunk latencies must be int nanoseconds"):
        encode(bad)
    assert [json.loads("{" + text)["event_type"] for text in encode(record_span)] == [
        "generation_started", "chunk_produced", "generation_completed",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("start_ns", "gaps_ns", "error", "message"),
    [(5_000_000_000, (5_000_000, -2_000_000), ValueError, "a negative chunk latency"),
     (5_000_000_000, (5_000_000, 2**63), ValueError, "adding up past int64"),
     (5_000_000_000, (3 * 2**61, 3 * 2**61), ValueError, "adding up past int64"),
     (fractions.Fraction(10_000_000_001, 2), (5_000_000, 1), TypeError,
      "chunk latencies must be int nanoseconds")],
    ids=["went-back", "jumped-past-int64", "jumped-twice", "a-fraction-at-the-start"],
)  # fmt: skip
def test_a_clock_gone_wrong_has_its_request_refused_alone(
    recorder, octomil_records, clock, start_ns, gaps_ns, error, message
):
    """The recorder's latencies but the first are differences of ints from its array of
    chunk times, not checked for their type again. A clock that went back between two
    chunks, or read a Fraction at the start (``1/2e-6``: not JSON), still makes a latency
    the API would refuse with the batch it is in; one that jumped makes latencies adding up
    past int64 (chunk times are unsigned 64-bit), which the span's packed attribute cannot
    hold: a request of 292 years. The recorder checks only its clock's first reading."""
    clock.mono_ns = start_ns
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    clock.mono_ns = 5_000_000_000
    for gap_ns in gaps_ns:
        clock.mono_ns += gap_ns
        generation.chunk()
    clock.advance_ms(10)
    generation.stop()
    (span,) = octomil_records.get_finished_spans()

    assert span.by_recorder
    with pytest.raises(error, match=message):
        encode(span)


def test_a_record_reads_as_the_sdks_span_of_the_same_values(recorder, octomil_records):
    """``RecordSpan`` sets none of what ``ReadableSpan.__init__`` would: every part of it a
    reader can read (``to_json`` reads them all, the dropped counts aside) is what the
    SDK's own span of the same name, ids, times and attributes holds, so a new SDK that
    adds to its spans shows here."""
    record_span = _one_chunk_stream(recorder, octomil_records)
    sdk_span = ReadableSpan(
        "chat tiny",
        context=record_span.context,
        start_time=record_span.record.start_ns,
        end_time=record_span.record.end_ns,
        attributes=dict(record_span.attributes),
        resource=Resource.get_empty(),
    )

    assert record_span.to_json() == sdk_span.to_json()
    assert (record_span.start_time, record_span.end_time) == (
        sdk_span.start_time,
        sdk_span.end_time,
    )  # to the nanosecond: to_json writes microseconds
    assert vars(sdk_span).keys() - vars(record_span).keys() <= {
        name for name in vars(sdk_span) if hasattr(RecordSpan, name)
    }
    dropped = ("dropped_attributes", "dropped_events", "dropped_links")
    assert [getattr(record_span, name) for name in dropped] == [0, 0, 0]


@pytest.mark.parametrize(
    "ids", [(-1, 5), (5, -1), (1 << 128, 5), (5, 1 << 64), (5, 0), (True, True), (1.5, 5)]
)
def test_a_record_with_ids_not_valid_is_sent_without_them(recorder, octomil_records, ids):
    """A ``RecordSpan`` built by hand, with ids no W3C context has: its events are sent,
    without the optional ids, and each is one the API takes."""
    record_span = _one_chunk_stream(recorder, octomil_records)
    trace_id, span_id = ids
    odd = RecordSpan(
        record_span.record._replace(trace_id=trace_id, span_id=span_id), record_span.context
    )

    sent = [validate_event(json.loads("{" + text)) for text in encode(odd)]

    assert [event["event_type"] for event in sent] == [
        "generation_started", "chunk_produced", "generation_completed",
    ]  # fmt: skip
    assert not any("trace_id" in event or "span_id" in event for event in sent)


@pytest.mark.parametrize("stream", [1, "yes", 0, ""])
def test_a_stream_flag_not_a_bool_is_told_by_its_truth(
    recorder, octomil_records, span_exporter, stream
):
    """``Recorder.start(stream=1)``: the events, the record and the application's span all
    say the same bool, rather than the events be refused for it."""
    generation = recorder.start(model="tiny", engine="echo", stream=stream)
    generation.chunk()
    generation.stop()
    (record,) = octomil_records.get_finished_spans()
    (span,) = span_exporter.get_finished_spans()

    assert generation.stream is bool(stream)
    assert record.attributes["gen_ai.request.stream"] is bool(stream)
    assert span.attributes["gen_ai.request.stream"] is bool(stream)
    assert {json.loads("{" + text)["stream"] for text in encode(record)} == {bool(stream)}


def test_event_count_reads_latencies_as_the_record_or_a_span_holds_them(
    recorder, clock, octomil_records
):
    """What a dropped record counts as lost: its latencies are ints on the recorder's
    record, text on a span."""
    span = finished_span(
        recorder, clock, octomil_records, stream=True, gaps=[1.0, 2.0, 3.0], output_tokens=3,
        end=lambda g: g.stop(),
    )  # fmt: skip
    latencies = span.attributes["octomil.chunk.latencies_ns"]
    as_text = _record_with(span, **{"octomil.chunk.latencies_ns": chunk_latencies.pack(latencies)})

    as_list = _record_with(span, **{"octomil.chunk.latencies_ns": list(latencies)})

    assert len(latencies) == 3
    assert event_count(span) == event_count(as_text) == len(encode(span)) == 5
    assert encode(as_text) == encode(span)
    assert event_count(as_list) == 5  # refused by encode: its 5 events are what is lost


def test_the_largest_event_encode_writes_fits_a_batch():
    from octomil_otel.export import _transport, events

    assert events.MAX_EVENT_CHARS + 4096 == _transport.MAX_BATCH_BYTES


@pytest.mark.parametrize(
    ("start_ns", "latency_ns"),
    [
        (253402300800 * 10**9, 0),  # 10000-01-01: the API reads four-digit years
        (-30610224000 * 10**9 - 1, 0),  # just before 1000-01-01
        (253402300799 * 10**9, 2 * 10**9),  # a chunk after 9999
    ],
    ids=["start-after-9999", "start-before-1000", "chunk-after-9999"],
)
def test_encode_refuses_a_time_the_api_cannot_read(recorder, octomil_records, start_ns, latency_ns):
    span = _one_chunk_stream(recorder, octomil_records)
    record = _record_with(
        span,
        start_time=start_ns,
        end_time=start_ns,
        **{"octomil.chunk.latencies_ns": chunk_latencies.pack([latency_ns])},
    )

    with pytest.raises(ValueError, match="outside the years 1000 to 9999"):
        encode(record)
