"""An answer that ends on the end-of-generation token counts what the caller received, the
same on both engines and on every call path: the engine's own calls, ``octomil.generate``
and ``octomil serve``.

The models are the tiny ones with one word declared the end token: the word the same
weights say fourth, so every answer is three words and then the end token.
"""

from __future__ import annotations

import pytest

import octomil
import octomil_otel
from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor
from octomil_otel.instrumentation.mlx import MLXInstrumentor

from .conftest import decoded_events, latencies, only_span
from .test_serve import serve
from .tiny_models import write_tiny_gguf, write_tiny_mlx_model

PROMPT = "hello world"
MAX_TOKENS = 20


def _three_then_end(words: list[str]) -> tuple[list[str], str]:
    """The first three words, and the fourth as the end word (it must not come earlier)."""
    assert len(words) == 4 and words[3] not in words[:3], words
    return words[:3], words[3]


@pytest.fixture(scope="module")
def ending_gguf(tiny_gguf, tmp_path_factory):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(tiny_gguf), n_ctx=256, n_threads=1, verbose=False)
    text = llm.create_completion(PROMPT, max_tokens=4, temperature=0)["choices"][0]["text"]
    words, end = _three_then_end(text.split())
    path = tmp_path_factory.mktemp("ending") / "ending-llama.gguf"
    return write_tiny_gguf(path, end_word=end), words


@pytest.fixture(scope="module")
def ending_mlx(tiny_mlx_dir, tmp_path_factory):
    mlx_lm = pytest.importorskip("mlx_lm")
    model, tokenizer = mlx_lm.load(str(tiny_mlx_dir))
    text = "".join(r.text for r in mlx_lm.stream_generate(model, tokenizer, PROMPT, max_tokens=4))
    words, end = _three_then_end(text.split())
    path = tmp_path_factory.mktemp("ending") / "ending-mlx"
    return write_tiny_mlx_model(path, end_word=end), words


@pytest.fixture(params=["llamacpp", "mlx"])
def ending(request):
    """(engine, model path, the three words of the answer)."""
    fixture = "ending_gguf" if request.param == "llamacpp" else "ending_mlx"
    path, words = request.getfixturevalue(fixture)
    return request.param, path, words


@pytest.fixture
def instrumented(tracer_provider, meter_provider):
    instrumentors = [LlamaCppInstrumentor(), MLXInstrumentor()]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield
    for instrumentor in instrumentors:
        instrumentor.uninstrument()


def assert_counted(events: list[dict], *, stream: bool) -> None:
    """Three output tokens; three chunks streamed, or one for the whole answer."""
    chunks = 3 if stream else 1
    assert [e["event_type"] for e in events] == [
        "generation_started",
        *["chunk_produced"] * chunks,
        "generation_completed",
    ]
    assert [e["metrics"]["chunk_index"] for e in events[1:-1]] == list(range(chunks))
    assert events[-1]["metrics"]["output_tokens"] == 3


def test_llamacpp_engine_calls(instrumented, ending_gguf, span_exporter):
    import llama_cpp

    path, words = ending_gguf
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, verbose=False)
    streamed = list(
        llm.create_completion(PROMPT, max_tokens=MAX_TOKENS, temperature=0, stream=True)
    )
    assert "".join(c["choices"][0]["text"] for c in streamed).split() == words
    assert streamed[-1]["choices"][0]["finish_reason"] == "stop"
    span = only_span(span_exporter)
    assert span.attributes["gen_ai.usage.output_tokens"] == 3
    assert len(latencies(span)) == 3
    assert_counted(decoded_events(span), stream=True)

    span_exporter.clear()
    whole = llm.create_completion(PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    assert whole["usage"]["completion_tokens"] == 3
    assert_counted(decoded_events(only_span(span_exporter)), stream=False)


def test_mlx_engine_calls(instrumented, ending_mlx, span_exporter):
    import mlx_lm

    path, words = ending_mlx
    model, tokenizer = mlx_lm.load(str(path))
    responses = list(mlx_lm.stream_generate(model, tokenizer, PROMPT, max_tokens=MAX_TOKENS))
    assert "".join(r.text for r in responses).split() == words
    assert (responses[-1].text, responses[-1].finish_reason) == ("", "stop")
    assert responses[-1].generation_tokens == 4  # mlx-lm counts the end token; we do not
    span = only_span(span_exporter)
    assert span.attributes["gen_ai.usage.output_tokens"] == 3
    assert len(latencies(span)) == 3
    assert_counted(decoded_events(span), stream=True)

    span_exporter.clear()
    text = mlx_lm.generate(model, tokenizer, prompt=PROMPT, max_tokens=MAX_TOKENS)
    assert text.split() == words
    assert_counted(decoded_events(only_span(span_exporter)), stream=False)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_octomil_generate(
    ending, stream, generate_cleanup, tracer_provider, meter_provider, span_exporter
):
    engine, path, words = ending
    octomil.init(tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False)
    result = octomil.generate(
        model=str(path), prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, stream=stream
    )
    if stream:
        chunks = list(result)
        assert "".join(c.content for c in chunks).split() == words
        assert chunks[-1].finish_reason == "stop"
    else:
        assert result.content.split() == words
        assert (result.finish_reason, result.usage.completion_tokens) == ("stop", 3)
    octomil_otel.shutdown()
    span = only_span(span_exporter)
    assert span.attributes["gen_ai.provider.name"] == engine
    assert_counted(decoded_events(span), stream=stream)


def test_octomil_serve(ending, api):
    import requests

    engine, path, words = ending
    body = {"model": path.stem if engine == "llamacpp" else path.name, "prompt": PROMPT}
    body.update(max_tokens=MAX_TOKENS, temperature=0)
    with serve(str(path), api.url) as server:
        whole = requests.post(f"{server.url}/v1/completions", json=body, timeout=60).json()
        streamed = requests.post(
            f"{server.url}/v1/completions", json={**body, "stream": True}, timeout=60
        )
        sse = [line for line in streamed.text.splitlines() if line.startswith("data: {")]
        server.stop()

    assert whole["choices"][0]["text"].split() == words
    assert (whole["choices"][0]["finish_reason"], whole["usage"]["completion_tokens"]) == (
        "stop",
        3,
    )
    assert len(sse) > 0
    by_request: dict[str, list[dict]] = {}
    for event in api.events:
        by_request.setdefault(event["request_id"], []).append(event)
    assert len(by_request) == 2
    whole_events = by_request.pop(whole["id"])
    (streamed_events,) = by_request.values()
    assert {e["engine"] for e in whole_events + streamed_events} == {engine}
    assert_counted(whole_events, stream=False)
    assert_counted(streamed_events, stream=True)


@pytest.fixture(params=["llamacpp", "mlx"])
def silent(request, tmp_path_factory):
    """A model whose first word is its end token: every answer is empty."""
    llama = request.param == "llamacpp"
    _, words = request.getfixturevalue("ending_gguf" if llama else "ending_mlx")
    target = tmp_path_factory.mktemp("silent") / ("silent-llama.gguf" if llama else "silent-mlx")
    write = write_tiny_gguf if llama else write_tiny_mlx_model
    return write(target, end_word=words[0])


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_an_empty_answer_has_no_chunk_on_any_path(
    silent, stream, generate_cleanup, tracer_provider, meter_provider, span_exporter
):
    octomil.init(tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False)
    result = octomil.generate(
        model=str(silent), prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, stream=stream
    )
    text = "".join(c.content for c in result) if stream else result.content
    octomil_otel.shutdown()

    assert text == ""
    events = decoded_events(only_span(span_exporter))
    assert [e["event_type"] for e in events] == ["generation_started", "generation_completed"]
    assert events[-1]["metrics"]["output_tokens"] == 0
