"""``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``: the current GenAI names;
without it, today's, unchanged."""

from __future__ import annotations

import pytest

from octomil_otel import semconv
from octomil_otel.generation import Recorder

from .conftest import histogram_points

ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "mlx",
    "gen_ai.request.model": "gemma-1b",
}
LATEST = {
    "gen_ai.client.inference.duration",
    "gen_ai.client.inference.time_to_first_chunk",
    "gen_ai.client.inference.time_per_output_chunk",
    "gen_ai.client.inference.usage.input_tokens",
    "gen_ai.client.inference.usage.output_tokens",
    "gen_ai.client.inference.operation.input_tokens",
    "gen_ai.client.inference.operation.output_tokens",
}
LEGACY = {
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "gen_ai.server.time_to_first_token",
    "gen_ai.server.time_per_output_token",
}


@pytest.fixture
def opted(make_recorder):
    """A recorder created with OTEL_SEMCONV_STABILITY_OPT_IN set to ``opt_in``."""
    return lambda opt_in: make_recorder({"OTEL_SEMCONV_STABILITY_OPT_IN": opt_in})


def stream(recorder: Recorder, clock, gaps_ms=(142.0, 20.0, 30.0), output_tokens=3):
    generation = recorder.start(model="gemma-1b", engine="mlx", stream=True, input_tokens=47)
    for gap in gaps_ms:
        clock.advance_ms(gap)
        generation.chunk()
    clock.advance_ms(8.0)
    generation.set_usage(output_tokens=output_tokens)
    generation.stop()


@pytest.mark.parametrize(
    "opt_in", ["gen_ai_latest_experimental", "http, gen_ai_latest_experimental"]
)
def test_opt_in_records_the_current_metric_names(opted, clock, metric_reader, opt_in):
    stream(opted(opt_in), clock)

    points = histogram_points(metric_reader)
    assert set(points) == LATEST
    (duration,) = points["gen_ai.client.inference.duration"]
    assert (duration.count, duration.sum, dict(duration.attributes)) == (1, 0.2, ATTRS)
    assert tuple(duration.explicit_bounds) == semconv.DURATION_BUCKETS
    (ttfc,) = points["gen_ai.client.inference.time_to_first_chunk"]
    assert (ttfc.count, ttfc.sum, dict(ttfc.attributes)) == (1, 0.142, ATTRS)
    (per_chunk,) = points["gen_ai.client.inference.time_per_output_chunk"]
    assert (per_chunk.count, per_chunk.sum) == (2, 0.05)  # one per chunk after the first
    assert (per_chunk.min, per_chunk.max) == (0.02, 0.03)
    for name, tokens in (("input_tokens", 47), ("output_tokens", 3)):
        (counter,) = points[f"gen_ai.client.inference.usage.{name}"]
        assert counter.value == tokens
        assert dict(counter.attributes) == {**ATTRS, "gen_ai.token.modality": "text"}
        (histogram,) = points[f"gen_ai.client.inference.operation.{name}"]
        assert (histogram.count, histogram.sum, dict(histogram.attributes)) == (1, tokens, ATTRS)
        assert tuple(histogram.explicit_bounds) == semconv.TOKEN_USAGE_BUCKETS


def test_opt_in_counts_a_failed_request_without_usage_as_zero_unknown(opted, metric_reader):
    recorder = opted("gen_ai_latest_experimental")
    recorder.start(model="gemma-1b", engine="mlx").fail(RuntimeError("no"))

    points = histogram_points(metric_reader)
    assert set(points) == LATEST - {
        "gen_ai.client.inference.time_to_first_chunk",
        "gen_ai.client.inference.time_per_output_chunk",
    }
    (counter,) = points["gen_ai.client.inference.usage.output_tokens"]
    assert counter.value == 0
    assert dict(counter.attributes) == {**ATTRS, "gen_ai.token.modality": "unknown"}
    (histogram,) = points["gen_ai.client.inference.operation.output_tokens"]
    assert (histogram.count, histogram.sum) == (1, 0)
    assert dict(histogram.attributes) == {**ATTRS, "error.type": "RuntimeError"}


def test_opt_in_whole_answer_has_no_chunk_metrics(opted, clock, metric_reader, span_exporter):
    recorder = opted("gen_ai_latest_experimental")
    generation = recorder.start(model="gemma-1b", engine="mlx", input_tokens=2)
    clock.advance_ms(40.0)
    generation.set_usage(output_tokens=5)
    generation.stop()

    assert "gen_ai.client.inference.time_to_first_chunk" not in histogram_points(metric_reader)
    (span,) = span_exporter.get_finished_spans()
    assert "gen_ai.response.time_to_first_chunk" not in span.attributes


def test_opt_in_puts_time_to_first_chunk_on_a_streamed_span(opted, clock, span_exporter):
    stream(opted("gen_ai_latest_experimental"), clock)

    (span,) = span_exporter.get_finished_spans()
    assert span.attributes["gen_ai.response.time_to_first_chunk"] == 0.142


@pytest.mark.parametrize("opt_in", [None, "", "http", "gen_ai_latest"])
def test_without_opt_in_the_names_are_todays(opted, clock, metric_reader, span_exporter, opt_in):
    stream(opted(opt_in), clock)

    assert set(histogram_points(metric_reader)) == LEGACY
    (span,) = span_exporter.get_finished_spans()
    assert "gen_ai.response.time_to_first_chunk" not in span.attributes


@pytest.mark.parametrize("opt_in", [None, "gen_ai_latest_experimental"])
def test_embeddings_are_a_span_and_a_duration_but_no_octomil_events(
    opted, clock, metric_reader, span_exporter, octomil_records, opt_in
):
    recorder = opted(opt_in)
    generation = recorder.start(
        model="tiny", engine="llamacpp", operation="embeddings", input_tokens=6
    )
    clock.advance_ms(3.0)
    generation.stop()

    (span,) = span_exporter.get_finished_spans()
    assert span.name == "embeddings tiny"
    assert span.attributes["gen_ai.usage.input_tokens"] == 6
    assert octomil_records.get_finished_spans() == ()
    points = histogram_points(metric_reader)
    attrs = {**ATTRS, "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "llamacpp",
             "gen_ai.request.model": "tiny"}  # fmt: skip
    if opt_in:
        assert set(points) == {
            "gen_ai.client.embeddings.duration",
            "gen_ai.client.embeddings.operation.input_tokens",
        }
        (duration,) = points["gen_ai.client.embeddings.duration"]
        (tokens,) = points["gen_ai.client.embeddings.operation.input_tokens"]
        assert (tokens.count, tokens.sum, dict(tokens.attributes)) == (1, 6, attrs)
    else:
        assert set(points) == {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}
        (duration,) = points["gen_ai.client.operation.duration"]
        (tokens,) = points["gen_ai.client.token.usage"]
        assert (tokens.sum, tokens.attributes["gen_ai.token.type"]) == (6, "input")
    assert (duration.count, duration.sum, dict(duration.attributes)) == (1, 0.003, attrs)
