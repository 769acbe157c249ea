"""Message content: only when the user asks, only where the mode says, never to Octomil."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from octomil_otel import content
from octomil_otel.generation import Recorder
from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor

from .conftest import API_KEY, only_span
from .otlp_tap import Tap

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "secret plan"}]},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "42"},
]  # fmt: skip
INPUT = [
    {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
    {"role": "user", "parts": [{"type": "text", "content": "secret plan"}]},
    {"role": "assistant",
     "parts": [{"type": "tool_call", "id": "call_1", "name": "lookup", "arguments": {"q": "x"}}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "42"}]},
]  # fmt: skip
OUTPUT = [
    {"role": "assistant", "parts": [{"type": "text", "content": "the answer"}],
     "finish_reason": "stop"},
]  # fmt: skip
OPT_IN = "gen_ai_latest_experimental"


@pytest.fixture
def logs() -> InMemoryLogRecordExporter:
    return InMemoryLogRecordExporter()


@pytest.fixture
def capturing(make_recorder, logs):
    """A recorder created with the capture mode and opt-in given, logging into ``logs``."""
    content._warn_once.cache_clear()
    providers = []

    def make(mode: str | None, opt_in: str | None = OPT_IN) -> Recorder:
        provider = LoggerProvider()
        provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
        providers.append(provider)
        environment = {
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": mode,
            "OTEL_SEMCONV_STABILITY_OPT_IN": opt_in,
        }
        return make_recorder(environment, logger_provider=provider)

    yield make
    for provider in providers:
        provider.shutdown()


def answer(recorder: Recorder) -> None:
    generation = recorder.start(model="tiny", engine="llamacpp", input_tokens=4)
    generation.set_request_parameters(max_tokens=16)
    generation.set_input(MESSAGES)
    generation.set_output("the answer")
    generation.set_finish_reason("stop")
    generation.set_usage(output_tokens=2)
    generation.stop()


@pytest.mark.parametrize(
    ("mode", "on_span", "on_event"),
    [
        ("NO_CONTENT", False, False),
        ("SPAN_ONLY", True, False),
        ("span_only", True, False),
        ("EVENT_ONLY", False, True),
        ("SPAN_AND_EVENT", True, True),
    ],
)
def test_content_goes_where_the_mode_says_and_never_to_octomil(
    capturing, span_exporter, octomil_records, logs, mode, on_span, on_event
):
    answer(capturing(mode))

    span = only_span(span_exporter)
    captured = {k: v for k, v in span.attributes.items() if k.endswith("messages")}
    if on_span:
        assert captured == {
            "gen_ai.input.messages": json.dumps(INPUT),
            "gen_ai.output.messages": json.dumps(OUTPUT),
        }
    else:
        assert captured == {}
    records = [data.log_record for data in logs.get_finished_logs()]
    if on_event:
        (record,) = records
        assert record.event_name == "gen_ai.client.inference.operation.details"
        assert record.trace_id == span.context.trace_id
        assert record.span_id == span.context.span_id
        assert json.loads(json.dumps(dict(record.attributes))) == {  # the SDK keeps tuples
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "llamacpp",
            "gen_ai.request.model": "tiny",
            "gen_ai.request.stream": False,
            "gen_ai.request.max_tokens": 16,
            "gen_ai.response.id": span.attributes["gen_ai.response.id"],
            "gen_ai.response.model": "tiny",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 4,
            "gen_ai.usage.output_tokens": 2,
            "gen_ai.input.messages": INPUT,
            "gen_ai.output.messages": OUTPUT,
        }
    else:
        assert records == []
    (octomil,) = octomil_records.get_finished_spans()
    assert not [key for key in octomil.attributes if "messages" in key]
    assert "secret plan" not in repr(dict(octomil.attributes))


def test_a_failed_request_captures_what_it_had_with_finish_reason_error(capturing, span_exporter):
    recorder = capturing("SPAN_ONLY")
    generation = recorder.start(model="tiny", engine="mlx", operation="text_completion")
    generation.set_input(prompt="tell me")
    generation.set_output("par")
    generation.fail(RuntimeError("out of memory"))

    span = only_span(span_exporter)
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "tell me"}]}
    ]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "par"}],
         "finish_reason": "error"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "opt_in", "warning"),
    [
        (None, OPT_IN, None),
        ("SPAN_AND_EVENT", None,
         "octomil_otel: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT is honoured with "
         "OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental only; no content is captured"),
        ("true", OPT_IN,
         "octomil_otel: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT='true' is not one of "
         "NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT; no content is captured"),
    ],
)  # fmt: skip
def test_no_content_unless_asked_the_documented_way(
    capturing, span_exporter, logs, caplog, mode, opt_in, warning
):
    caplog.set_level(logging.DEBUG)
    recorder = capturing(mode, opt_in)
    capturing(mode, opt_in)  # a second recorder: still one warning
    answer(recorder)

    assert not [k for k in only_span(span_exporter).attributes if k.endswith("messages")]
    assert logs.get_finished_logs() == ()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ([warning] if warning else [])
    assert not [r for r in caplog.records if "secret plan" in r.getMessage()]


llama_cpp = pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def llm(tiny_gguf):
    return llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False)


@pytest.mark.parametrize("stream", [False, True])
def test_llamacpp_chat_content_is_exactly_what_the_caller_sent_and_got(
    llm, tracer_provider, meter_provider, span_exporter, monkeypatch, stream
):
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", OPT_IN)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    instrumentor = LlamaCppInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        messages = [{"role": "user", "content": "hello world"}]
        result = llm.create_chat_completion(messages, max_tokens=6, temperature=0, stream=stream)
        if stream:
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in result)
        else:
            text = result["choices"][0]["message"]["content"]
    finally:
        instrumentor.uninstrument()

    span = only_span(span_exporter)
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello world"}]}
    ]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": text}],
         "finish_reason": "length"},
    ]  # fmt: skip
    assert len(text.split()) == 6


APP = """
import llama_cpp, octomil
octomil.init()
llm = llama_cpp.Llama(model_path={model!r}, n_ctx=256, n_threads=1, verbose=False)
llm.create_completion("secret plan", max_tokens=3)
"""


def any_value(value):
    """An OTLP AnyValue as a plain Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def test_init_sends_content_events_over_otlp_and_nothing_to_octomil(api, tiny_gguf, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP.format(model=str(tiny_gguf)))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OCTOMIL_"))}
    with Tap() as tap:
        subprocess.run(
            [sys.executable, str(app)],
            env={**clean, "OTEL_EXPORTER_OTLP_ENDPOINT": tap.url, "OCTOMIL_API_KEY": API_KEY,
                 "OCTOMIL_API_BASE": api.url, "OTEL_SEMCONV_STABILITY_OPT_IN": OPT_IN,
                 "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "EVENT_ONLY"},
            check=True, timeout=120,
        )  # fmt: skip
        tap.wait_until(lambda: len(tap.logs) == 1 and len(tap.spans) == 1)
        (record,) = tap.logs
        (span,) = tap.spans

    assert record.event_name == "gen_ai.client.inference.operation.details"
    assert record.trace_id == span.trace_id and record.span_id == span.span_id
    captured = {kv.key: any_value(kv.value) for kv in record.attributes}
    assert captured["gen_ai.input.messages"] == [
        {"role": "user", "parts": [{"type": "text", "content": "secret plan"}]}
    ]
    (output,) = captured["gen_ai.output.messages"]
    assert (output["role"], output["finish_reason"]) == ("assistant", "length")
    assert not [kv for kv in span.attributes if kv.key.endswith("messages")]  # EVENT_ONLY
    assert len(api.events) == 3
    assert "secret plan" not in json.dumps(api.events)


@pytest.mark.parametrize("streamed", [False, True])
def test_served_requests_capture_what_the_client_sent_and_got(capturing, span_exporter, streamed):
    from octomil_otel.engines.base import Request, complete, stream
    from octomil_otel.engines.echo import EchoEngine

    recorder = capturing("SPAN_ONLY")
    generation = recorder.start(model="echo", engine="echo", stream=streamed)
    request = Request(messages=[{"role": "user", "content": "one two three"}], max_tokens=2)
    if streamed:
        text = "".join(piece.text for piece in stream(EchoEngine("echo"), generation, request))
    else:
        text = complete(EchoEngine("echo"), generation, request).text

    span = only_span(span_exporter)
    assert text == "one two "
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "one two "}],
         "finish_reason": "length"},
    ]  # fmt: skip
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "one two three"}]}
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_llamacpp_tool_calls_are_captured_streamed_or_not(
    tiny_gguf, tracer_provider, meter_provider, span_exporter, monkeypatch, stream
):
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", OPT_IN)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    llm = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=2048, n_threads=1, verbose=False,
                          chat_format="chatml-function-calling")  # fmt: skip
    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 8}}, "required": ["city"]}}  # fmt: skip
    instrumentor = LlamaCppInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        result = llm.create_chat_completion(
            messages=[{"role": "user", "content": "weather?"}],
            tools=[{"type": "function", "function": weather}],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=30,
            stream=stream,
        )
        if stream:
            deltas = [chunk["choices"][0]["delta"] for chunk in result]
            pieces = [call for delta in deltas for call in delta.get("tool_calls") or ()]
            call_id = pieces[0]["id"]
            arguments = "".join(piece["function"]["arguments"] or "" for piece in pieces)
        else:
            (call,) = result["choices"][0]["message"]["tool_calls"]
            call_id, arguments = call["id"], call["function"]["arguments"]
    finally:
        instrumentor.uninstrument()

    (output,) = json.loads(only_span(span_exporter).attributes["gen_ai.output.messages"])
    (part,) = [part for part in output["parts"] if part["type"] == "tool_call"]
    expected = {"type": "tool_call", "id": call_id, "name": "get_weather"}
    assert {key: part[key] for key in expected} == expected
    try:
        assert part["arguments"] == json.loads(arguments)
    except ValueError:  # cut off by max_tokens: kept as the model wrote it
        assert part["arguments"] == arguments


@pytest.mark.parametrize("streamed", [False, True])
def test_served_tool_calls_are_captured_streamed_or_not(capturing, span_exporter, streamed):
    from octomil_otel.engines.base import Engine, Piece, Request, ToolCallDelta, complete, stream

    class Caller(Engine):
        name = "caller"

        def pieces(self, generation, request):
            yield Piece("", tool_calls=(ToolCallDelta(0, '{"q": ', "call_1", "lookup"),))
            yield Piece("", tool_calls=(ToolCallDelta(0, '"x"}'),))
            yield Piece("", "tool_calls")

    generation = capturing("SPAN_ONLY").start(model="m", engine="caller", stream=streamed)
    request = Request(messages=[{"role": "user", "content": "look up x", "name": "ann"}])
    if streamed:
        list(stream(Caller("m"), generation, request))
    else:
        complete(Caller("m"), generation, request)

    span = only_span(span_exporter)
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "look up x"}], "name": "ann"}
    ]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "finish_reason": "tool_calls", "parts": [
            {"type": "tool_call", "id": "call_1", "name": "lookup", "arguments": {"q": "x"}}]},
    ]  # fmt: skip
