"""llama-cpp-python, for real, on a tiny GGUF model: one request, one exact span."""

from __future__ import annotations

import gc

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

from octomil_otel.generation import cancel_open
from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor

from .conftest import decoded_events, latencies, only_span, spans_by_name

llama_cpp = pytest.importorskip("llama_cpp")

PROMPT = "hello world"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def llm(tiny_gguf):
    return llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False, seed=0)


@pytest.fixture
def instrumented(tracer_provider, meter_provider):
    instrumentor = LlamaCppInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield instrumentor
    instrumentor.uninstrument()


def test_completion_records_one_span_with_the_engines_usage(llm, instrumented, span_exporter):
    response = llm.create_completion(PROMPT, max_tokens=12, temperature=0.0)

    span = only_span(span_exporter)
    usage = response["usage"]
    assert span.name == "text_completion tiny-llama"
    assert span.attributes["gen_ai.provider.name"] == "llamacpp"
    assert span.attributes["gen_ai.operation.name"] == "text_completion"
    assert span.attributes["gen_ai.request.stream"] is False
    assert span.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"] == 3
    assert span.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"] == 12
    assert len(latencies(span)) == 1
    events = decoded_events(span)
    assert [e["event_type"] for e in events] == [
        "generation_started",
        "chunk_produced",
        "generation_completed",
    ]
    assert events[1]["metrics"]["output_tokens"] == 12


def test_completion_stream_300_tokens_chunk_for_chunk(llm, instrumented, span_exporter):
    expected = llm.create_completion(PROMPT, max_tokens=300, temperature=0.0)["usage"]
    span_exporter.clear()

    chunks = list(llm.create_completion(PROMPT, max_tokens=300, temperature=0.0, stream=True))

    span = only_span(span_exporter)
    with_text = [c for c in chunks if c["choices"][0]["text"]]
    assert len(with_text) == 300
    assert span.attributes["gen_ai.request.stream"] is True
    assert len(latencies(span)) == 300
    assert span.attributes["gen_ai.usage.input_tokens"] == expected["prompt_tokens"]
    assert span.attributes["gen_ai.usage.output_tokens"] == expected["completion_tokens"] == 300
    events = decoded_events(span)
    produced = [e for e in events if e["event_type"] == "chunk_produced"]
    assert [e["metrics"]["chunk_index"] for e in produced] == list(range(300))
    assert events[-1]["event_type"] == "generation_completed"


def test_chat_completion_is_one_request_not_two(llm, instrumented, span_exporter):
    response = llm.create_chat_completion(messages=MESSAGES, max_tokens=20)

    span = only_span(span_exporter)
    assert span.name == "chat tiny-llama"
    assert span.attributes["gen_ai.usage.input_tokens"] == response["usage"]["prompt_tokens"]
    assert span.attributes["gen_ai.usage.output_tokens"] == 20


def test_chat_completion_stream_counts_content_chunks_and_tokens(llm, instrumented, span_exporter):
    expected = llm.create_chat_completion(messages=MESSAGES, max_tokens=20, temperature=0.0)
    span_exporter.clear()

    chunks = list(
        llm.create_chat_completion(messages=MESSAGES, max_tokens=20, temperature=0.0, stream=True)
    )

    span = only_span(span_exporter)
    content = [c for c in chunks if c["choices"][0]["delta"].get("content")]
    assert len(latencies(span)) == len(content) == 20
    assert span.attributes["gen_ai.usage.input_tokens"] == expected["usage"]["prompt_tokens"]
    assert span.attributes["gen_ai.usage.output_tokens"] == 20
    assert "error.type" not in span.attributes


def test_call_is_one_text_completion(llm, instrumented, span_exporter):
    llm(PROMPT, max_tokens=4)
    assert spans_by_name(span_exporter) == ["text_completion tiny-llama"]


def test_stream_ending_at_end_of_generation_does_not_count_it(llm, instrumented, span_exporter):
    force_eos = {llm.token_eos(): 5000.0}
    expected = llm.create_completion(PROMPT, max_tokens=8, logit_bias=force_eos)["usage"]
    span_exporter.clear()

    list(llm.create_completion(PROMPT, max_tokens=8, logit_bias=force_eos, stream=True))

    span = only_span(span_exporter)
    assert expected["completion_tokens"] == 0
    assert span.attributes["gen_ai.usage.output_tokens"] == 0
    assert "octomil.chunk.latencies_ns" not in span.attributes


def test_stream_closed_early_is_cancelled(llm, instrumented, span_exporter):
    stream = llm.create_completion(PROMPT, max_tokens=50, stream=True)
    for _ in range(5):
        next(stream)
    stream.close()

    span = only_span(span_exporter)
    assert span.attributes["error.type"] == "cancelled"
    assert len(latencies(span)) == 5
    assert decoded_events(span)[-1]["event_type"] == "generation_failed"


def test_stream_dropped_unread_is_cancelled_having_generated_nothing(
    llm, instrumented, span_exporter
):
    stream = llm.create_completion(PROMPT, max_tokens=5, stream=True)
    del stream
    gc.collect()

    span = only_span(span_exporter)
    assert span.attributes["error.type"] == "cancelled"
    assert span.attributes["gen_ai.usage.output_tokens"] == 0


def test_stream_open_when_telemetry_stops_keeps_the_tokens_generated_so_far(
    llm, instrumented, span_exporter
):
    """``shutdown()`` or the program's exit ends a stream still open (``cancel_open``):
    with the tokens llama.cpp generated until then, and the stream left as it was."""
    stream = llm.create_completion(PROMPT, max_tokens=12, temperature=0.0, stream=True)
    read = [next(stream), next(stream)]

    cancel_open(None)  # the instrumentor's recorder reports to no processor

    span = only_span(span_exporter)
    assert span.attributes["error.type"] == "cancelled"
    assert span.attributes["gen_ai.usage.output_tokens"] == 2
    assert len(latencies(span)) == 2
    ended = decoded_events(span)[-1]
    assert ended["event_type"] == "generation_failed"
    assert ended["metrics"]["output_tokens"] == 2
    rest = list(stream)
    assert sum(bool(c["choices"][0]["text"]) for c in read + rest) == 12
    assert len(span_exporter.get_finished_spans()) == 1


def test_engine_error_reaches_caller_unchanged_and_is_recorded(llm, instrumented, span_exporter):
    too_long = "hello " * 600
    with pytest.raises(ValueError, match="exceed context window"):
        llm.create_completion(too_long, max_tokens=4)

    span = only_span(span_exporter)
    assert span.attributes["error.type"] == "ValueError"
    failed = decoded_events(span)[-1]["metrics"]
    assert failed["error_type"] == "ValueError"
    assert failed["output_tokens"] == 0  # known: the prompt was refused before any token


def test_a_failed_second_pass_keeps_the_tokens_of_the_first(llm, instrumented, span_exporter):
    """A chat handler that calls the model twice (llama-cpp-python's function calling
    does): the second pass refused before a token leaves the first pass's count, not 0."""

    def two_passes(*, llama, **_):
        llama.create_completion(PROMPT, max_tokens=3, temperature=0.0)
        return llama.create_completion("hello " * 600, max_tokens=3)

    llm.chat_handler = two_passes
    try:
        with pytest.raises(ValueError, match="exceed context window"):
            llm.create_chat_completion(messages=MESSAGES)
    finally:
        llm.chat_handler = None

    span = only_span(span_exporter)
    assert span.attributes["error.type"] == "ValueError"
    assert span.attributes["gen_ai.usage.output_tokens"] == 3


def test_stream_engine_error_is_raised_on_first_read(llm, instrumented, span_exporter):
    stream = llm.create_completion("hello " * 600, max_tokens=4, stream=True)
    with pytest.raises(ValueError, match="exceed context window"):
        next(stream)
    span = only_span(span_exporter)
    assert span.attributes["error.type"] == "ValueError"
    assert span.attributes["gen_ai.usage.output_tokens"] == 0


def test_uninstrument_restores_the_original_methods(llm, tracer_provider, meter_provider):
    originals = {m: getattr(llama_cpp.Llama, m) for m in ("create_completion", "generate")}
    instrumentor = LlamaCppInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert llama_cpp.Llama.create_completion is not originals["create_completion"]
    instrumentor.uninstrument()
    for method, original in originals.items():
        assert getattr(llama_cpp.Llama, method) is original


def test_instrument_uninstrument_instrument_gives_1_0_1(
    llm, tracer_provider, meter_provider, span_exporter
):
    counts = []
    instrumentor = LlamaCppInstrumentor()
    for instrument in (True, False, True):
        if instrument:
            instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        else:
            instrumentor.uninstrument()
        span_exporter.clear()
        llm.create_completion(PROMPT, max_tokens=2)
        counts.append(len(span_exporter.get_finished_spans()))
    instrumentor.uninstrument()
    assert counts == [1, 0, 1]


def test_instrument_twice_does_not_double(llm, instrumented, tracer_provider, span_exporter):
    LlamaCppInstrumentor().instrument(tracer_provider=tracer_provider)
    llm.create_completion(PROMPT, max_tokens=2)
    assert len(span_exporter.get_finished_spans()) == 1


def test_suppressed_instrumentation_records_nothing(llm, instrumented, span_exporter):
    with suppress_instrumentation():
        llm.create_completion(PROMPT, max_tokens=2)
        list(llm.create_completion(PROMPT, max_tokens=2, stream=True))
    assert span_exporter.get_finished_spans() == ()


def test_instrumentation_dependencies_name_llama_cpp_python():
    assert LlamaCppInstrumentor().instrumentation_dependencies() == (
        "llama-cpp-python >= 0.3.0, < 0.4",
    )
