"""Where a request's time went: queue, prefill, decode, peak memory, recorded once."""

from __future__ import annotations

import json

import pytest

from octomil_otel import semconv
from octomil_otel.export import events

from .conftest import histogram_points

SPLIT = ("octomil.queue_ms", "octomil.prefill_ms", "octomil.decode_ms", "octomil.peak_memory_bytes")


def test_queue_prefill_decode_and_peak_memory_reach_span_events_and_histograms(
    recorder, clock, span_exporter, octomil_records, metric_reader
):
    generation = recorder.start(model="tiny", engine="llamacpp", stream=True, input_tokens=9)
    clock.advance_ms(30.0)  # waiting for the engine
    generation.dequeued()
    clock.advance_ms(12.0)
    generation.chunk()
    clock.advance_ms(8.0)
    generation.chunk()
    generation.set_usage(output_tokens=2)
    generation.add_engine_time(prefill_ms=10.0, decode_ms=7.25)
    generation.add_engine_time(prefill_ms=0.5)  # a second engine pass of the same request
    generation.set_peak_memory(794380.0)
    generation.set_peak_memory(100.0)  # the largest stays
    generation.stop()

    (span,) = span_exporter.get_finished_spans()
    split = {key: span.attributes[key] for key in SPLIT if key in span.attributes}
    assert split == {
        "octomil.queue_ms": 30.0,
        "octomil.prefill_ms": 10.5,
        "octomil.decode_ms": 7.25,
        "octomil.peak_memory_bytes": 794380,
    }
    (record,) = octomil_records.get_finished_spans()
    completed = json.loads("{" + events.encode(record)[-1])
    assert completed["event_type"] == "generation_completed"
    assert {k: completed["metrics"][k] for k in ("queue_ms", "prefill_ms", "decode_ms")} == {
        "queue_ms": 30.0,
        "prefill_ms": 10.5,
        "decode_ms": 7.25,
    }
    assert completed["metrics"]["peak_memory_bytes"] == 794380
    assert completed["metrics"]["total_duration_ms"] == 50.0

    points = histogram_points(metric_reader)
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "llamacpp",
        "gen_ai.request.model": "tiny",
    }
    for name, seconds in (
        ("octomil.inference.queue.duration", 0.030),
        ("octomil.inference.prefill.duration", 0.0105),
        ("octomil.inference.decode.duration", 0.00725),
    ):
        (point,) = points[name]
        assert (point.count, point.sum, dict(point.attributes)) == (1, seconds, attrs)
        assert tuple(point.explicit_bounds) == semconv.DURATION_BUCKETS
    (memory,) = points["octomil.inference.peak_memory"]
    assert (memory.count, memory.sum) == (1, 794380)


def test_unknown_figures_are_left_out_never_zero(recorder, clock, span_exporter, metric_reader):
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    clock.advance_ms(5.0)
    generation.chunk()
    generation.add_engine_time(prefill_ms=float("nan"), decode_ms=-1.0)
    generation.add_engine_time(prefill_ms=10**400)  # too large for a double: ignored too
    generation.set_peak_memory(True)
    generation.set_peak_memory(10**400)
    generation.stop()

    (span,) = span_exporter.get_finished_spans()
    assert not [key for key in SPLIT if key in span.attributes]
    assert not [name for name in histogram_points(metric_reader) if "octomil.inference" in name]


def test_prefill_and_decode_never_add_up_to_more_than_the_duration(recorder, clock, span_exporter):
    generation = recorder.start(model="tiny", engine="llamacpp")
    clock.advance_ms(4.0)
    generation.dequeued()
    clock.advance_ms(10.0)
    generation.add_engine_time(prefill_ms=7.0, decode_ms=5.0)  # counters ran 2 ms over
    generation.stop()

    (span,) = span_exporter.get_finished_spans()
    assert span.attributes["octomil.total_duration_ms"] == 14.0
    assert span.attributes["octomil.queue_ms"] == 4.0
    assert span.attributes["octomil.prefill_ms"] == 7.0
    assert span.attributes["octomil.decode_ms"] == 3.0


def test_a_failed_request_reports_its_queue_time_only(recorder, clock, octomil_records):
    generation = recorder.start(model="tiny", engine="llamacpp", stream=True)
    clock.advance_ms(2.0)
    generation.dequeued()
    generation.add_engine_time(prefill_ms=1.0)
    clock.advance_ms(3.0)
    generation.fail(RuntimeError("boom"))

    (record,) = octomil_records.get_finished_spans()
    failed = json.loads("{" + events.encode(record)[-1])
    assert failed["event_type"] == "generation_failed"
    assert failed["metrics"] == {
        "total_duration_ms": 5.0,
        "queue_ms": 2.0,
        "error_type": "RuntimeError",
    }


@pytest.mark.parametrize(
    ("end", "finish_reasons"),
    [("stop", ("length",)), ("fail", ("error",)), ("cancel", ("error",))],
)
def test_request_parameters_model_and_finish_reason_on_the_span(
    recorder, span_exporter, end, finish_reasons
):
    generation = recorder.start(model="tiny", engine="llamacpp", operation="text_completion")
    generation.set_request_parameters(
        max_tokens=8, temperature=0.5, top_p=1, top_k=40, seed=-3, stop="\n",
        frequency_penalty=0.25, presence_penalty=None,
    )  # fmt: skip
    generation.set_finish_reason("length")
    getattr(generation, end)(*((RuntimeError("x"),) if end == "fail" else ()))

    (span,) = span_exporter.get_finished_spans()
    request = {k: v for k, v in span.attributes.items() if k.startswith("gen_ai.request.")}
    assert request == {
        "gen_ai.request.model": "tiny",
        "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 8,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 1,
        "gen_ai.request.top_k": 40,
        "gen_ai.request.seed": -3,
        "gen_ai.request.stop_sequences": ("\n",),
        "gen_ai.request.frequency_penalty": 0.25,
    }
    assert span.attributes["gen_ai.response.finish_reasons"] == finish_reasons
    assert ("gen_ai.response.model" in span.attributes) == (end == "stop")


@pytest.mark.parametrize("decode_ms", [40.0, None])
def test_a_whole_answers_time_per_output_token_is_the_engines_decode(
    recorder, clock, metric_reader, decode_ms
):
    generation = recorder.start(model="tiny", engine="llamacpp", input_tokens=3)
    clock.advance_ms(100.0)
    generation.set_usage(output_tokens=5)
    generation.add_engine_time(prefill_ms=20.0, decode_ms=decode_ms)
    generation.stop()

    points = histogram_points(metric_reader)
    if decode_ms is None:  # the first token was not seen: no time after it either
        assert "gen_ai.server.time_per_output_token" not in points
    else:
        (per_token,) = points["gen_ai.server.time_per_output_token"]
        assert (per_token.count, per_token.sum) == (1, 0.040 / 4)
