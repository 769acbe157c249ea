"""OTLP forwarding to a real OTLP receiver (oteltap), directly and through a real collector
(rotel): the same requests that reach the Octomil API, as spans and GenAI histograms."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import API_KEY
from .otlp_tap import GunzipRelay, Tap, attributes, free_port

pytest.importorskip("llama_cpp")
pytest.importorskip("oteltap")

APP = """
import llama_cpp
{setup}
llm = llama_cpp.Llama(model_path={model!r}, n_ctx=256, n_threads=1, verbose=False)
llm.create_completion("hello world", max_tokens=5)
for _ in llm.create_completion("hello world", max_tokens=4, stream=True):
    pass
"""
INIT = "import octomil\noctomil.init()"
HISTOGRAMS = {
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "gen_ai.server.time_to_first_token",
    "gen_ai.server.time_per_output_token",
}


def run_app(tmp_path: Path, model: Path, env: dict[str, str], *, setup: str = INIT, via=()):
    app = tmp_path / "app.py"
    app.write_text(APP.format(model=str(model), setup=setup))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OCTOMIL_"))}
    subprocess.run(
        [*via, sys.executable, str(app)],
        env={**clean, "OTEL_METRIC_EXPORT_INTERVAL": "500", **env},
        check=True,
        timeout=120,
    )


def generation_spans(tap: Tap) -> list[dict]:
    return [
        {"name": span.name, **attributes(span)}
        for span in tap.spans
        if span.name.startswith("text_completion")
    ]


def assert_two_requests(tap: Tap) -> list[dict]:
    tap.wait_until(lambda: len(generation_spans(tap)) == 2)
    tap.wait_until(lambda: {m.name for m in tap.metrics} >= HISTOGRAMS)
    spans = sorted(generation_spans(tap), key=lambda s: s["gen_ai.request.stream"])
    for span, stream, tokens in zip(spans, (False, True), (5, 4), strict=True):
        assert span["name"] == "text_completion tiny-llama"
        assert span["gen_ai.provider.name"] == "llamacpp"
        assert span["gen_ai.request.stream"] is stream
        assert span["gen_ai.usage.output_tokens"] == tokens
        assert span["gen_ai.usage.input_tokens"] == 3
    return spans


def test_init_forwards_to_otlp_and_octomil_the_same_requests(api, tiny_gguf, tmp_path):
    with Tap() as tap:
        run_app(
            tmp_path,
            tiny_gguf,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": tap.url,
                "OTEL_SERVICE_NAME": "my-llm-app",
                "OCTOMIL_API_KEY": API_KEY,
                "OCTOMIL_API_BASE": api.url,
            },
        )
        spans = assert_two_requests(tap)
        usage = [m for m in tap.metrics if m.name == "gen_ai.client.token.usage"]
        points = [p for m in usage for p in m.histogram.data_points]
        outputs = [p for p in points if attributes(p)["gen_ai.token.type"] == "output"]
        assert (outputs[-1].count, outputs[-1].sum) == (2, 9)
        assert list(outputs[-1].explicit_bounds)[:3] == [1, 4, 16]

    octomil_ids = {e["request_id"] for e in api.events}
    assert octomil_ids == {s["gen_ai.response.id"] for s in spans}


def test_otlp_alone_over_grpc_through_a_collector(tiny_gguf, tmp_path):
    rotel = Path(sys.executable).with_name("rotel-agent")
    if not rotel.exists():
        import rotel as rotel_package

        rotel = Path(rotel_package.__file__).with_name("rotel-agent")
    grpc_port = free_port()
    with Tap() as tap, GunzipRelay(tap.url) as relay:
        collector = subprocess.Popen(
            [
                str(rotel), "start",
                "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{free_port()}",
                "--exporter", "otlp",
                "--otlp-exporter-endpoint", relay.url,
                "--otlp-exporter-protocol", "http",
            ],
        )  # fmt: skip
        try:
            run_app(
                tmp_path,
                tiny_gguf,
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc_port}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                },
            )
            assert_two_requests(tap)
        finally:
            collector.terminate()
            collector.wait(30)


def test_opentelemetry_instrument_forwards_to_otlp(tiny_gguf, tmp_path):
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    with Tap() as tap:
        run_app(
            tmp_path,
            tiny_gguf,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": tap.url},
            setup="",
            via=(str(instrument),),
        )
        assert_two_requests(tap)


def test_octomil_serve_forwards_to_otlp_without_an_octomil_key():
    import requests

    from .test_serve import serve

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_METRIC_EXPORT_INTERVAL": "500"}
    env["FASTAPI_OTEL_AUTO_CONFIGURE"] = "true"  # would add FastAPI's own exporters: not here
    trace_id, client_span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with Tap() as tap:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = tap.url
        with serve("echo", None, env=env) as server:
            response = requests.post(
                server.url + "/v1/chat/completions",
                json={"model": "echo", "messages": [{"role": "user", "content": "one two"}]},
                headers={"traceparent": f"00-{trace_id}-{client_span_id}-01"},
                timeout=30,
            )
            scraped = requests.get(server.url + "/metrics", timeout=5).text  # through the SDK
            log = server.stop()
        tap.wait_until(lambda: any(s.name == "chat echo" for s in tap.spans))
        # answered whole by an engine that does not time its decoding: no time per token
        whole = HISTOGRAMS - {"gen_ai.server.time_per_output_token"}
        tap.wait_until(lambda: {m.name for m in tap.metrics} >= whole)

    assert "gen_ai.server.time_per_output_token" not in {m.name for m in tap.metrics}
    (count,) = [x for x in scraped.splitlines()
                if x.startswith("gen_ai_client_operation_duration_seconds_count{")]  # fmt: skip
    assert count.endswith(" 1.0")

    # FastAPI's HTTP server span, in the client's trace, parents the request's span; none
    # for the readiness probe (GET /health), none of FastAPI's operation spans, no HTTP
    # metrics
    http, chat = sorted(tap.spans, key=lambda s: s.name)
    assert (http.name, http.kind, chat.name) == ("POST /v1/chat/completions", 2, "chat echo")
    assert {s.trace_id.hex() for s in (http, chat)} == {trace_id}
    assert (http.parent_span_id.hex(), chat.parent_span_id) == (client_span_id, http.span_id)
    assert not any(m.name.startswith("http.") for m in tap.metrics)
    span = attributes(chat)
    assert span["gen_ai.response.id"] == response.json()["id"]
    assert (span["gen_ai.usage.input_tokens"], span["gen_ai.usage.output_tokens"]) == (2, 2)
    assert "[telemetry] Disabled: no API key provided" in log
