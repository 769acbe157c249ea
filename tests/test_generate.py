"""`octomil.generate`: one call, recorded once, on echo and on real tiny models."""

from __future__ import annotations

import logging
import time

import pytest

import octomil
from octomil_otel.engines.resolve import ModelNotFoundError

from .conftest import latencies, only_span, spans_by_name

MESSAGES = [{"role": "user", "content": "hello world"}]


@pytest.fixture(autouse=True)
def telemetry(generate_cleanup, tracer_provider, meter_provider):
    return octomil.init(
        tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False
    )


def test_generate_echo_returns_content_and_usage(span_exporter):
    response = octomil.generate(model="echo", messages=MESSAGES)

    assert response.content == "hello world"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (2, 2)
    assert response.usage.total_tokens == 4
    span = only_span(span_exporter)
    assert span.name == "chat echo"
    assert span.attributes["gen_ai.response.id"] == response.request_id
    assert span.attributes["gen_ai.usage.output_tokens"] == 2


def test_generate_echo_stream_yields_chunks(span_exporter):
    chunks = list(octomil.generate(model="echo", prompt="one two three", stream=True))

    assert [c.content for c in chunks] == ["one ", "two ", "three", ""]
    assert chunks[-1].finish_reason == "stop"
    span = only_span(span_exporter)
    assert span.name == "text_completion echo"
    assert len(latencies(span)) == 3


def test_generate_gguf_is_one_request_with_the_engines_usage(tiny_gguf, span_exporter):
    response = octomil.generate(model=str(tiny_gguf), messages=MESSAGES, max_tokens=9)

    assert response.usage.completion_tokens == 9
    assert response.model == "tiny-llama"
    assert spans_by_name(span_exporter) == ["chat tiny-llama"]
    assert only_span(span_exporter).attributes["gen_ai.usage.output_tokens"] == 9


def test_generate_gguf_stream_counts_every_chunk(tiny_gguf, span_exporter):
    chunks = list(
        octomil.generate(model=str(tiny_gguf), prompt="hello", max_tokens=25, stream=True)
    )

    assert len([c for c in chunks if c.content]) == 25
    span = only_span(span_exporter)
    assert span.attributes["gen_ai.usage.output_tokens"] == 25
    assert len(latencies(span)) == 25


def test_generate_mlx_directory(tiny_mlx_dir, span_exporter):
    pytest.importorskip("mlx_lm")
    response = octomil.generate(model=str(tiny_mlx_dir), prompt="hello", max_tokens=6)

    assert response.usage.completion_tokens == 6
    span = only_span(span_exporter)
    assert span.name == "text_completion tiny-mlx"
    assert span.attributes["gen_ai.provider.name"] == "mlx"


def test_generate_unknown_model_lists_what_is_available(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTOMIL_MODELS_DIR", str(tmp_path))
    (tmp_path / "mine.gguf").write_bytes(b"")
    expected = r"model 'gemma-1b' not found; available: echo, mine"
    with pytest.raises(ModelNotFoundError, match=expected):
        octomil.generate(model="gemma-1b", messages=MESSAGES)


def test_generate_needs_exactly_one_of_messages_and_prompt():
    with pytest.raises(ValueError, match=r"exactly one of messages= .* and prompt="):
        octomil.generate(model="echo", messages=MESSAGES, prompt="x")
    with pytest.raises(ValueError, match="exactly one"):
        octomil.generate(model="echo")


def test_a_call_waiting_for_a_stream_this_thread_left_open_says_so(
    span_exporter, monkeypatch, caplog
):
    """The open stream has the model until it ends or closes; a call on the thread that
    read it last waits for it, most likely forever, so a warning says why. Another thread
    closing it (as a pool's other thread may read it on) ends the wait."""
    import threading

    from octomil_otel import inference

    monkeypatch.setattr(inference, "TELL_AFTER_SECONDS", 0.2)
    stream = octomil.generate(model="echo", prompt="one two three", stream=True)
    assert next(stream).content == "one "

    def close_once_told() -> None:
        deadline = time.monotonic() + 10
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        stream.close()

    with caplog.at_level(logging.WARNING, logger="octomil_otel"):
        closer = threading.Thread(target=close_once_told)
        closer.start()
        answer = octomil.generate(model="echo", prompt="later")
    closer.join(10)

    assert answer.content == "later"
    assert [r.getMessage() for r in caplog.records] == [
        "octomil.generate: waiting for echo, which a stream this thread read last still has: "
        "read that stream to its end or close() it"
    ]
    errors = [span.attributes.get("error.type") for span in span_exporter.get_finished_spans()]
    assert errors == ["cancelled", None]  # the stream closed, then the call


def test_calls_from_other_threads_wait_their_turn_without_a_word(span_exporter, caplog):
    """A thread that read a stream before another thread read it on is not waiting for
    itself (a thread pool's threads take turns at one request's stream): its call, and
    another thread's, wait silently for the stream to end."""
    import threading

    stream = octomil.generate(model="echo", prompt="one two three", stream=True)
    assert next(stream).content == "one "
    read_on = threading.Thread(target=lambda: next(stream))
    read_on.start()
    read_on.join(10)
    answers: list[str] = []
    with caplog.at_level(logging.WARNING, logger="octomil_otel"):
        waiting = threading.Thread(
            target=lambda: answers.append(octomil.generate(model="echo", prompt="x").content)
        )
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and answers == []
        finish = threading.Thread(target=lambda: answers.append(str(len(list(stream)))))
        finish.start()
        answers.append(octomil.generate(model="echo", prompt="y").content)  # the first reader
        waiting.join(10)
        finish.join(10)

    assert sorted(answers) == ["2", "x", "y"]  # "three" and the finishing chunk
    assert caplog.records == []
    assert spans_by_name(span_exporter) == ["text_completion echo"] * 3


@pytest.mark.parametrize("model", ["echo", "gguf"])
def test_a_stream_closed_unread_has_0_output_tokens_as_on_the_engines_own_path(
    span_exporter, tiny_gguf, model
):
    """As ``create_completion(stream=True).close()`` on llama.cpp itself: the engine never
    generated, so 0 is known (it was left out)."""
    name = "echo" if model == "echo" else str(tiny_gguf)
    octomil.generate(model=name, prompt="one two", stream=True).close()

    span = only_span(span_exporter)
    assert span.attributes["error.type"] == "cancelled"
    assert span.attributes["gen_ai.usage.output_tokens"] == 0
