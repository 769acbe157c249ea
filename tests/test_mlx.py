"""mlx-lm, for real (the CPU build), on a tiny model directory: one request, one span."""

from __future__ import annotations

import importlib

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

from octomil_otel.instrumentation.mlx import MLXInstrumentor

from .conftest import decoded_events, latencies, only_span, spans_by_name

mlx_lm = pytest.importorskip("mlx_lm")
generate_module = importlib.import_module("mlx_lm.generate")

PROMPT = "hello world"


@pytest.fixture
def instrumented(tracer_provider, meter_provider):
    instrumentor = MLXInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield instrumentor
    instrumentor.uninstrument()


@pytest.fixture
def loaded(instrumented, tiny_mlx_dir):
    return mlx_lm.load(str(tiny_mlx_dir))


def test_stream_generate_records_every_token(loaded, span_exporter):
    model, tokenizer = loaded
    responses = list(mlx_lm.stream_generate(model, tokenizer, PROMPT, max_tokens=50))

    span = only_span(span_exporter)
    assert span.name == "text_completion tiny-mlx"
    assert span.attributes["gen_ai.provider.name"] == "mlx"
    assert span.attributes["gen_ai.request.stream"] is True
    assert len(latencies(span)) == len(responses) == 50
    assert span.attributes["gen_ai.usage.input_tokens"] == responses[-1].prompt_tokens
    assert span.attributes["gen_ai.usage.output_tokens"] == 50


def test_generate_is_one_request_with_the_inner_streams_usage(loaded, span_exporter):
    model, tokenizer = loaded
    expected = list(generate_module.stream_generate(model, tokenizer, PROMPT, max_tokens=30))
    span_exporter.clear()

    text = mlx_lm.generate(model, tokenizer, prompt=PROMPT, max_tokens=30)

    span = only_span(span_exporter)
    assert text == "".join(r.text for r in expected)
    assert span.attributes["gen_ai.request.stream"] is False
    assert span.attributes["gen_ai.usage.input_tokens"] == expected[-1].prompt_tokens
    assert span.attributes["gen_ai.usage.output_tokens"] == 30
    assert len(latencies(span)) == 1
    produced = [e for e in decoded_events(span) if e["event_type"] == "chunk_produced"]
    assert produced[0]["metrics"]["output_tokens"] == 30


def test_names_imported_after_instrument_are_covered(loaded, span_exporter):
    from mlx_lm import generate, stream_generate

    model, tokenizer = loaded
    list(stream_generate(model, tokenizer, PROMPT, max_tokens=3))
    generate(model, tokenizer, prompt=PROMPT, max_tokens=3)
    assert spans_by_name(span_exporter) == ["text_completion tiny-mlx"] * 2


def test_stream_closed_early_is_cancelled(loaded, span_exporter):
    model, tokenizer = loaded
    stream = mlx_lm.stream_generate(model, tokenizer, PROMPT, max_tokens=40)
    for _ in range(4):
        next(stream)
    stream.close()

    span = only_span(span_exporter)
    assert span.attributes["error.type"] == "cancelled"
    assert span.attributes["gen_ai.usage.output_tokens"] == 4
    assert len(latencies(span)) == 4


def test_engine_error_reaches_caller_unchanged(loaded, span_exporter):
    model, tokenizer = loaded
    stream = mlx_lm.stream_generate(model, tokenizer, PROMPT, max_tokens=0)
    with pytest.raises(ValueError, match="Maximum number of tokens must be non-zero"):
        next(stream)
    assert only_span(span_exporter).attributes["error.type"] == "ValueError"


def test_generate_engine_error_is_recorded(loaded, span_exporter):
    model, tokenizer = loaded
    with pytest.raises(ValueError, match="Maximum number of tokens must be non-zero"):
        mlx_lm.generate(model, tokenizer, prompt=PROMPT, max_tokens=0)
    assert spans_by_name(span_exporter) == ["text_completion tiny-mlx"]
    assert only_span(span_exporter).attributes["error.type"] == "ValueError"


def test_uninstrument_restores_every_binding(tracer_provider, meter_provider):
    names = [(m, f) for m in (generate_module, mlx_lm) for f in ("generate", "stream_generate")]
    originals = {(m, f): getattr(m, f) for m, f in names}
    instrumentor = MLXInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert all(getattr(m, f) is not originals[(m, f)] for m, f in names)
    instrumentor.uninstrument()
    assert all(getattr(m, f) is originals[(m, f)] for m, f in names)


def test_suppressed_instrumentation_records_nothing(loaded, span_exporter):
    model, tokenizer = loaded
    with suppress_instrumentation():
        mlx_lm.generate(model, tokenizer, prompt=PROMPT, max_tokens=3)
    assert span_exporter.get_finished_spans() == ()


def test_model_loaded_before_instrument_is_named_by_type(
    tiny_mlx_dir, tracer_provider, meter_provider, span_exporter
):
    model, tokenizer = mlx_lm.load(str(tiny_mlx_dir))
    instrumentor = MLXInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        mlx_lm.generate(model, tokenizer, prompt=PROMPT, max_tokens=2)
    finally:
        instrumentor.uninstrument()
    assert spans_by_name(span_exporter) == ["text_completion llama"]


def test_generate_bound_before_instrumentation_is_still_one_request_answered_whole(
    loaded, span_exporter
):
    unwrapped_generate = generate_module.generate.__wrapped__  # as `from mlx_lm import generate`
    model, tokenizer = loaded  # before init() leaves it

    text = unwrapped_generate(model, tokenizer, prompt=PROMPT, max_tokens=5)

    span = only_span(span_exporter)
    assert text
    assert span.attributes["gen_ai.request.stream"] is False
    assert span.attributes["gen_ai.usage.output_tokens"] == 5
    assert len(latencies(span)) == 1
