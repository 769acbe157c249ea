"""`octomil serve` as a real subprocess on 127.0.0.1, driven by the official openai client
and by raw HTTP; its events checked at a real local Octomil API."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from .conftest import API_KEY, ORG_ID

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

MESSAGES = [{"role": "user", "content": "hello world"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process, self.url = process, url

    def stop(self) -> str:
        """SIGTERM, as a service manager would; the server's log."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        return out


@contextlib.contextmanager
def serve(
    model: str,
    api_url: str | None,
    *args: str,
    env: dict[str, str] | None = None,
    launcher: tuple[str, ...] = (),
) -> Iterator[Server]:
    """``octomil serve model`` reporting to ``api_url`` (none: no key), run by ``launcher``
    (``opentelemetry-instrument``, say) if given."""
    port = free_port()
    command = [*launcher, sys.executable, "-m", "octomil_otel.cli", "serve", model,
               "--port", str(port), "--n-threads", "1", *args]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OCTOMIL_", "OTEL_"))}
    env = {**clean, **(env or {})}
    if api_url is not None:
        command += ["--api-key", API_KEY, "--api-base", api_url]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if requests.get(server.url + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture
def tiny_server(api, tiny_gguf) -> Iterator[Server]:
    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048") as server:
        yield server


def client(server: Server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed")


def events_of(api, request_id: str) -> list[dict]:
    return [e for e in api.events if e["request_id"] == request_id]


def test_chat_with_openai_client_is_reported_field_by_field(api, tiny_server):
    response = client(tiny_server).chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=0
    )
    log = tiny_server.stop()

    assert response.id.startswith("req_")
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 12
    events = events_of(api, response.id)
    assert [e["event_type"] for e in events] == [
        "generation_started",
        "chunk_produced",
        "generation_completed",
    ]
    for event in events:
        assert (event["model"], event["engine"], event["stream"]) == (
            "tiny-llama",
            "llamacpp",
            False,
        )
        assert event["org_id"] == ORG_ID
    assert events[1]["metrics"]["output_tokens"] == 12
    completed = events[2]["metrics"]
    assert completed["input_tokens"] == response.usage.prompt_tokens
    assert completed["output_tokens"] == 12
    assert completed["ttfc_ms"] <= completed["total_duration_ms"]
    assert "[telemetry] Initialized: device_id=" in log
    assert "[telemetry] Flushed" in log


@pytest.mark.parametrize("key_from", ["environment", "arguments"])
def test_under_opentelemetry_instrument_the_server_reports_and_says_so(api, key_from):
    """The configurator starts telemetry before ``octomil serve`` sets up its log, and
    before it reads ``--api-key``: the server reports with the key however it is given, and
    says it is on, once, as the product document tells users to check."""
    instrument = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    env = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    if key_from == "environment":
        env |= {"OCTOMIL_API_KEY": API_KEY, "OCTOMIL_API_BASE": api.url}
    with serve(
        "echo", None if key_from == "environment" else api.url, env=env, launcher=(instrument,)
    ) as server:
        answer = client(server).completions.create(model="echo", prompt="one two")
        log = server.stop()

    told = [line for line in log.splitlines() if line.startswith("[telemetry] Initialized")]
    assert len(told) == 1
    assert told[0].endswith(f", api_base={api.url}")
    assert [e["event_type"] for e in events_of(api, answer.id)] == [
        "generation_started", "chunk_produced", "generation_completed"
    ]  # fmt: skip


def test_chat_stream_with_openai_client_reports_every_chunk(api, tiny_server):
    stream = client(tiny_server).chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=40, temperature=0, stream=True
    )
    chunks = list(stream)
    tiny_server.stop()

    request_id = chunks[0].id
    content = [c for c in chunks if c.choices[0].delta.content]
    assert len(content) == 40
    assert chunks[-1].choices[0].finish_reason == "length"
    events = events_of(api, request_id)
    produced = [e for e in events if e["event_type"] == "chunk_produced"]
    assert [e["metrics"]["chunk_index"] for e in produced] == list(range(40))
    assert events[-1]["event_type"] == "generation_completed"
    assert events[-1]["metrics"]["output_tokens"] == 40
    assert events[-1]["stream"] is True


def test_completions_endpoint_answers_with_usage(api, tiny_server):
    response = client(tiny_server).completions.create(
        model="tiny-llama", prompt="hello world", max_tokens=7
    )
    tiny_server.stop()

    assert response.usage.completion_tokens == 7
    assert response.choices[0].text.strip()
    completed = events_of(api, response.id)[-1]
    assert completed["event_type"] == "generation_completed"
    assert completed["metrics"]["output_tokens"] == 7


def test_models_and_health(tiny_server):
    assert [m.id for m in client(tiny_server).models.list()] == ["tiny-llama"]
    retrieved = client(tiny_server).models.retrieve("tiny-llama")
    assert retrieved.model_dump(exclude_none=True) == {
        "id": "tiny-llama",
        "object": "model",
        "created": 0,
        "owned_by": "octomil",
    }
    with pytest.raises(openai.NotFoundError) as missing:
        client(tiny_server).models.retrieve("gpt-4o")
    assert missing.value.body["code"] == "model_not_found"
    assert requests.get(tiny_server.url + "/health", timeout=5).json() == {
        "status": "ok",
        "model": "tiny-llama",
        "engine": "llamacpp",
        "requests": {"running": 0, "waiting": 0},
    }


def test_sse_framing_ends_with_done(tiny_server):
    response = requests.post(
        tiny_server.url + "/v1/chat/completions",
        json={"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 3, "stream": True},
        timeout=30,
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    payloads = [json.loads(f[len("data: ") :]) for f in frames[:-2]]
    assert all(f.startswith("data: ") for f in frames[:-1])
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"
    assert {p["object"] for p in payloads} == {"chat.completion.chunk"}


@pytest.mark.parametrize(
    ("body", "status", "param", "message"),
    [
        ("{not json", 400, None, "the body is not valid JSON"),
        ({"model": "tiny-llama"}, 400, "messages", "messages: Field required"),
        ({"model": "tiny-llama", "messages": MESSAGES, "max_tokens": "many"}, 400, "max_tokens",
         "max_tokens: Input should be a valid integer"),
        ({"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 0}, 400, "max_tokens",
         "max_tokens: Input should be greater than or equal to 1"),
        ({"model": "tiny-llama", "messages": [{"role": "bot", "content": "x"}]}, 400,
         "messages.0.role", "messages.0.role: Input should be"),
        ({"model": "gpt-9", "messages": MESSAGES}, 404, "model", "model 'gpt-9' not found"),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_shaped_errors(api, tiny_server, body, status, param, message):
    data = body if isinstance(body, str) else json.dumps(body)
    response = requests.post(
        tiny_server.url + "/v1/chat/completions",
        data=data,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    tiny_server.stop()

    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"].startswith(message)
    assert error["param"] == param
    assert api.events == []


def test_context_overflow_is_a_400_and_reported_failed(api, tiny_server):
    response = requests.post(
        tiny_server.url + "/v1/completions",
        json={"model": "tiny-llama", "prompt": "hello " * 3000, "stream": True},
        timeout=30,
    )
    tiny_server.stop()

    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "This model's maximum context length is 2048 tokens. However, you requested "
        "3002 tokens. Please reduce the length of the prompt or the messages.",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": "context_length_exceeded",
    }
    started, failed = api.events
    assert started["event_type"] == "generation_started"
    assert started["metrics"] == {"input_tokens": 3002}  # llama.cpp's count, in its refusal
    assert failed["event_type"] == "generation_failed"
    assert failed["metrics"]["error_type"] == "ContextLengthExceeded"
    assert failed["metrics"]["output_tokens"] == 0  # refused before a token


def test_a_context_below_llama_cpps_smallest_is_llama_cpps_smallest(api, tiny_gguf):
    """llama.cpp makes 256 tokens of context at least: asked for 64, the server has 256,
    and a prompt of 101 tokens is answered, not failed inside llama-cpp-python."""
    with serve(str(tiny_gguf), api.url, "--n-ctx", "64") as server:
        answer = requests.post(
            server.url + "/v1/completions",
            json={"model": "tiny-llama", "prompt": "hello " * 99, "max_tokens": 3},
            timeout=30,
        )
        refused = requests.post(
            server.url + "/v1/completions",
            json={"model": "tiny-llama", "prompt": "hello " * 300},
            timeout=30,
        )
        server.stop()

    assert answer.status_code == 200
    assert answer.json()["usage"] == {
        "prompt_tokens": 101, "completion_tokens": 3, "total_tokens": 104
    }  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    assert refused.json()["error"]["message"].startswith(
        "This model's maximum context length is 256 tokens. However, you requested 302 tokens."
    )


def test_chat_past_the_context_window_is_the_clients_context_error(api, tiny_server):
    with pytest.raises(openai.BadRequestError) as refused:
        client(tiny_server).chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "hello " * 3000}]
        )
    tiny_server.stop()

    assert (refused.value.code, refused.value.param) == ("context_length_exceeded", "messages")
    assert "maximum context length is 2048 tokens" in refused.value.message
    (failed,) = [e for e in api.events if e["event_type"] == "generation_failed"]
    assert failed["metrics"]["error_type"] == "ContextLengthExceeded"


def test_client_disconnect_mid_stream_is_cancelled_and_stops_the_engine(api, tiny_server):
    body = json.dumps(
        {"model": "tiny-llama", "prompt": "hello", "max_tokens": 2000, "stream": True}
    ).encode()
    with socket.create_connection(("127.0.0.1", int(tiny_server.url.rsplit(":", 1)[1]))) as s:
        s.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data: " not in received:
            received += s.recv(4096)
    # the engine is free again: a new request is answered
    after = client(tiny_server).completions.create(model="tiny-llama", prompt="hi", max_tokens=2)
    tiny_server.stop()

    assert after.usage.completion_tokens == 2
    (failed,) = [e for e in api.events if e["event_type"] == "generation_failed"]
    assert failed["metrics"]["error_type"] == "cancelled"
    assert failed["metrics"]["output_tokens"] < 2000


def test_unknown_model_is_a_one_line_error_and_exit_2(tmp_path):
    env = {**os.environ, "OCTOMIL_MODELS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "octomil_otel.cli", "serve", "gemma-1b"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: model 'gemma-1b' not found; available: echo")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unloadable_model_is_a_one_line_error_and_exit_1(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf")
    result = subprocess.run(
        [sys.executable, "-m", "octomil_otel.cli", "serve", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "error: cannot load broken:" in result.stderr


def test_prometheus_metrics_carry_the_genai_histograms(tiny_server):
    client(tiny_server).completions.create(model="tiny-llama", prompt="hi", max_tokens=3)
    text = requests.get(tiny_server.url + "/metrics", timeout=5).text

    labels = 'gen_ai_operation_name="text_completion",gen_ai_provider_name="llamacpp"'
    for name in (
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_server_time_to_first_token_seconds_count",
        "gen_ai_server_time_per_output_token_seconds_count",
    ):
        (line,) = [x for x in text.splitlines() if x.startswith(name + "{")]
        assert labels in line and 'gen_ai_request_model="tiny-llama"' in line
        assert line.endswith(" 1.0")
    usage = [x for x in text.splitlines() if x.startswith("gen_ai_client_token_usage_sum{")]
    assert any('gen_ai_token_type="output"' in x and x.endswith(" 3.0") for x in usage)


def test_each_request_says_where_its_time_went(api, tiny_server):
    response = client(tiny_server).completions.create(
        model="tiny-llama", prompt="one two three", max_tokens=5, temperature=0
    )
    text = requests.get(tiny_server.url + "/metrics", timeout=5).text
    tiny_server.stop()

    (completed,) = [
        e for e in events_of(api, response.id) if e["event_type"] == "generation_completed"
    ]
    metrics = completed["metrics"]
    assert 0 <= metrics["queue_ms"] <= metrics["ttfc_ms"]
    assert 0 < metrics["prefill_ms"] <= metrics["ttfc_ms"] - metrics["queue_ms"]
    assert metrics["decode_ms"] > 0
    assert (
        metrics["queue_ms"] + metrics["prefill_ms"] + metrics["decode_ms"]
        <= metrics["total_duration_ms"]
    )
    assert "peak_memory_bytes" not in metrics  # llama.cpp does not report it
    for name in ("queue", "prefill", "decode"):
        metric = f"octomil_inference_{name}_duration_seconds_count"
        (line,) = [x for x in text.splitlines() if x.startswith(metric + "{")]
        assert 'gen_ai_request_model="tiny-llama"' in line and line.endswith(" 1.0")


def test_prometheus_metrics_under_the_current_conventions_are_the_dashboards(api, tiny_gguf):
    """The series names collector-config's Grafana dashboard reads, from a real exporter."""
    from .test_collector_config import METRICS, dashboard, exprs, vector_selectors

    env = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}
    with serve(str(tiny_gguf), api.url, env=env) as server:
        openai_client = client(server)
        openai_client.completions.create(model="tiny-llama", prompt="hi", max_tokens=3)
        list(openai_client.completions.create(model="tiny-llama", prompt="hi", max_tokens=3,
                                              stream=True))  # fmt: skip
        text = requests.get(server.url + "/metrics", timeout=5).text

    exported = {line.split("{")[0] for line in text.splitlines() if not line.startswith("#")}
    read = {name for expr in exprs(dashboard()) for name, _ in vector_selectors(expr)}
    current = {name for name in read if "gen_ai_client_inference" in name or "octomil" in name}
    assert current <= exported
    assert not [name for name in exported if name.startswith("gen_ai_server_")]
    assert read <= METRICS
    (line,) = [x for x in text.splitlines()
               if x.startswith("gen_ai_client_inference_usage_output_tokens_total{")
               and 'gen_ai_token_modality="text"' in x]  # fmt: skip
    assert line.endswith(" 6.0")
