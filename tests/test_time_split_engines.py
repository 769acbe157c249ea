"""Where the time went, on the real engines: llama.cpp's performance counters, mlx-lm's own
timing, and ``octomil serve``'s queue; and what the request asked, on the span."""

from __future__ import annotations

import time

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor
from octomil_otel.instrumentation.mlx import MLXInstrumentor

from .conftest import decoded_events, latencies, only_span

llama_cpp = pytest.importorskip("llama_cpp")

SPLIT = ("octomil.prefill_ms", "octomil.decode_ms")


@pytest.fixture(scope="module")
def llm(tiny_gguf):
    return llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False)


@pytest.fixture
def llamacpp(tracer_provider, meter_provider):
    instrumentor = LlamaCppInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield
    instrumentor.uninstrument()


def assert_consistent(span) -> None:
    """Both figures known and positive; prefill before the first chunk; never more than
    the whole."""
    attributes = span.attributes
    prefill, decode = (attributes[key] for key in SPLIT)
    assert prefill > 0 and decode > 0
    assert prefill <= attributes["octomil.ttfc_ms"]
    assert prefill + decode <= attributes["octomil.total_duration_ms"]
    completed = decoded_events(span)[-1]
    assert completed["metrics"]["prefill_ms"] == prefill
    assert completed["metrics"]["decode_ms"] == decode


@pytest.mark.parametrize("stream", [False, True])
def test_llamacpp_prefill_and_decode_from_its_counters(llm, llamacpp, span_exporter, stream):
    llm.reset()  # no cached prefix: the whole prompt is evaluated
    result = llm.create_completion(
        "one two three four", max_tokens=6, temperature=0.0, seed=7, stop=["zzz"], stream=stream
    )
    if stream:
        chunks = list(result)
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        finish = result["choices"][0]["finish_reason"]

    span = only_span(span_exporter)
    assert_consistent(span)
    assert finish == "length"
    request = {k: v for k, v in span.attributes.items() if k.startswith("gen_ai.request.")}
    assert request == {
        "gen_ai.request.model": "tiny-llama",
        "gen_ai.request.stream": stream,
        "gen_ai.request.max_tokens": 6,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("zzz",),
    }
    assert span.attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert span.attributes["gen_ai.response.model"] == "tiny-llama"
    assert "octomil.queue_ms" not in span.attributes  # nothing waited for the engine


def test_llamacpp_phases_are_split_at_the_first_token_whatever_the_batches(
    tiny_gguf, llamacpp, span_exporter
):
    """A cached prompt leaves one token to evaluate (llama.cpp counts that batch as
    generation), and speculative decoding verifies drafts in batches (counted as prompt
    evaluation): the split is still before and after the first token."""
    llm = llama_cpp.Llama(
        model_path=str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False,
        draft_model=llama_cpp.llama_speculative.LlamaPromptLookupDecoding(num_pred_tokens=4),
    )  # fmt: skip
    prompt = "one two three four five one two three four five one two three"
    llm.create_completion(prompt, max_tokens=2, temperature=0)
    list(llm.create_completion(prompt + " four", max_tokens=40, temperature=0, stream=True))

    cold, warm = span_exporter.get_finished_spans()
    for span in (cold, warm):
        assert_consistent(span)


def test_llamacpp_a_request_of_several_passes_counts_them_all(tiny_gguf, llamacpp, span_exporter):
    """chatml-function-calling answers tool_choice auto with more than one completion."""
    llm = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=2048, n_threads=1, verbose=False,
                          chat_format="chatml-function-calling")  # fmt: skip
    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12}}, "required": ["city"]}}  # fmt: skip
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
    before = perf.t_p_eval_ms + perf.t_eval_ms
    llm.create_chat_completion(
        messages=[{"role": "user", "content": "weather in paris"}],
        tools=[{"type": "function", "function": weather}],
        tool_choice="auto",
        max_tokens=20,
    )
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)

    span = only_span(span_exporter)
    phases = span.attributes["octomil.prefill_ms"] + span.attributes["octomil.decode_ms"]
    assert phases == pytest.approx(perf.t_p_eval_ms + perf.t_eval_ms - before, abs=1e-9)


def test_llamacpp_keeping_every_tokens_logits_times_the_phases_by_the_clock(
    tiny_gguf, llamacpp, span_exporter, monkeypatch
):
    """With logits_all llama.cpp's counters miss most of the evaluation: the prompt's
    evaluation (the first ``Llama.eval``) must still fall within prefill."""
    llm = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False,
                          logits_all=True)  # fmt: skip
    evals: list[float] = []
    plain_eval = llm.eval

    def timed_eval(tokens):
        started = time.perf_counter()
        plain_eval(tokens)
        evals.append((time.perf_counter() - started) * 1000)

    monkeypatch.setattr(llm, "eval", timed_eval)
    llm.create_completion("one two three four five six seven eight " * 8, max_tokens=4)

    span = only_span(span_exporter)
    assert_consistent(span)
    assert span.attributes["octomil.prefill_ms"] >= evals[0]
    assert span.attributes["octomil.decode_ms"] >= sum(evals[1:])


def test_llamacpp_without_its_counters_reports_no_phases(tiny_gguf, llamacpp, span_exporter):
    llm = llama_cpp.Llama(
        model_path=str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False, no_perf=True
    )
    llm.create_completion("one two three", max_tokens=4)

    span = only_span(span_exporter)
    assert [key for key in SPLIT if key in span.attributes] == []
    assert "prefill_ms" not in decoded_events(span)[-1]["metrics"]


def test_llamacpp_a_one_token_answer_has_no_decode(llm, llamacpp, span_exporter):
    llm.reset()
    llm.create_completion("one two three", max_tokens=1)

    span = only_span(span_exporter)
    assert span.attributes["octomil.prefill_ms"] > 0
    assert "octomil.decode_ms" not in span.attributes


def test_llamacpp_chat_positional_arguments_are_the_callers(llm, llamacpp, span_exporter):
    llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=3, top_k=5)

    span = only_span(span_exporter)
    assert span.attributes["gen_ai.request.max_tokens"] == 3
    assert span.attributes["gen_ai.request.top_k"] == 5
    assert "gen_ai.request.temperature" not in span.attributes  # not given: not recorded
    assert_consistent(span)


@pytest.fixture(scope="module")
def embedder(tiny_gguf):
    return llama_cpp.Llama(
        model_path=str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False, embedding=True
    )


def test_llamacpp_embeddings_are_an_embeddings_span(embedder, llamacpp, span_exporter):
    response = embedder.create_embedding(["hello world", "one two three"])
    vectors = embedder.embed("hello world")
    vectors_counted, count = embedder.embed("one two three", return_count=True)

    spans = span_exporter.get_finished_spans()
    assert [span.name for span in spans] == ["embeddings tiny-llama"] * 3
    tokens = [span.attributes["gen_ai.usage.input_tokens"] for span in spans]
    each = [len(embedder.tokenize(text.encode())) for text in ("hello world", "one two three")]
    assert tokens == [sum(each), each[0], each[1]]
    assert response["usage"]["prompt_tokens"] == sum(each)
    assert count == each[1]
    with suppress_instrumentation():  # what the engine answers on its own
        assert vectors == embedder.embed("hello world")
        assert vectors_counted == embedder.embed("one two three")
    for span in spans:
        assert span.attributes["gen_ai.operation.name"] == "embeddings"
        assert latencies(span) == ()
        assert decoded_events(span) == []  # embeddings are not generations: no events


def test_llamacpp_embeddings_on_a_generation_model_fail_as_the_engine_says(
    llm, llamacpp, span_exporter
):
    with pytest.raises(RuntimeError, match="embedding=True"):
        llm.embed("hello")

    span = only_span(span_exporter)
    assert span.name == "embeddings tiny-llama"
    assert span.attributes["error.type"] == "RuntimeError"


@pytest.fixture
def mlx_loaded(tracer_provider, meter_provider, tiny_mlx_dir):
    mlx_lm = pytest.importorskip("mlx_lm")
    instrumentor = MLXInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield mlx_lm, *mlx_lm.load(str(tiny_mlx_dir))
    instrumentor.uninstrument()


def test_mlx_prefill_decode_and_peak_memory_from_its_responses(mlx_loaded, span_exporter):
    mlx_lm, model, tokenizer = mlx_loaded
    responses = list(mlx_lm.stream_generate(model, tokenizer, "one two three", max_tokens=5))

    span = span_exporter.get_finished_spans()[0]
    assert_consistent(span)
    last = responses[-1]
    assert span.attributes["octomil.prefill_ms"] == pytest.approx(
        last.prompt_tokens / last.prompt_tps * 1000, abs=1e-9
    )
    assert len(responses) == 5

    list(mlx_lm.stream_generate(model, tokenizer, "one two three", max_tokens=1))
    one_token = span_exporter.get_finished_spans()[-1]
    assert "octomil.decode_ms" not in one_token.attributes  # nothing generated after it
    assert one_token.attributes["octomil.prefill_ms"] > 0

    # mlx-lm's peak_memory is the process's since the last reset, not this request's: only
    # octomil serve and octomil.generate, which reset it per request, report it
    assert "octomil.peak_memory_bytes" not in span.attributes
    assert span.attributes["gen_ai.request.max_tokens"] == 5
    assert span.attributes["gen_ai.response.finish_reasons"] == (last.finish_reason,)


def test_llamacpp_call_records_only_the_parameters_its_caller_gave(llm, llamacpp, span_exporter):
    """``Llama.__call__`` passes every default on to create_completion."""
    llm("hello", max_tokens=2, temperature=1)

    span = only_span(span_exporter)
    request = {k: v for k, v in span.attributes.items() if k.startswith("gen_ai.request.")}
    assert request == {
        "gen_ai.request.model": "tiny-llama",
        "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 2,
        "gen_ai.request.temperature": 1.0,
    }
    assert isinstance(request["gen_ai.request.temperature"], float)
    assert span.name == "text_completion tiny-llama"
