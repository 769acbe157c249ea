"""`opentelemetry-instrument python app.py`: an app that never imports octomil reports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import API_KEY, ORG_ID

pytest.importorskip("llama_cpp")

APP = """
import llama_cpp

llm = llama_cpp.Llama(model_path={model!r}, n_ctx=256, n_threads=1, verbose=False)
llm.create_completion("hello world", max_tokens=5)
for _ in llm.create_chat_completion(
    messages=[{{"role": "user", "content": "hi"}}], max_tokens=3, stream=True
):
    pass
"""


MANY = """
import llama_cpp

llm = llama_cpp.Llama(model_path={model!r}, n_ctx=256, n_threads=1, verbose=False)
for i in range(20):
    for _ in llm.create_completion(f"request {{i}}", max_tokens=4, stream=True):
        pass
"""


def run_instrumented(
    app_text: str,
    api,
    tmp_path: Path,
    *,
    before: Callable[[], None] | None = None,
    **env: str,
) -> None:
    """Run ``app_text`` under ``opentelemetry-instrument``; ``before`` runs in the child
    before Python starts (a resource limit, say)."""
    app = tmp_path / "app.py"
    app.write_text(app_text)
    env = {
        **os.environ,
        "OCTOMIL_API_KEY": API_KEY,
        "OCTOMIL_API_BASE": api.url,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    env.pop("OCTOMIL_ORG_ID", None)
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    subprocess.run(
        [str(instrument), sys.executable, str(app)],
        env=env,
        preexec_fn=before,
        check=True,
        timeout=120,
    )


def test_opentelemetry_instrument_sends_events_for_an_unmodified_app(api, tiny_gguf, tmp_path):
    run_instrumented(APP.format(model=str(tiny_gguf)), api, tmp_path)

    requests = {}
    for event in api.events:
        requests.setdefault(event["request_id"], []).append(event)
    assert len(requests) == 2
    completion, chat = sorted(requests.values(), key=lambda events: events[0]["stream"])
    assert [e["event_type"] for e in completion] == [
        "generation_started",
        "chunk_produced",
        "generation_completed",
    ]
    assert completion[-1]["metrics"]["output_tokens"] == 5
    assert completion[-1]["model"] == "tiny-llama"
    assert completion[-1]["engine"] == "llamacpp"
    assert [e["event_type"] for e in chat] == [
        "generation_started",
        *["chunk_produced"] * 3,
        "generation_completed",
    ]
    assert chat[-1]["metrics"]["output_tokens"] == 3
    assert {e["org_id"] for e in api.events} == {ORG_ID}


def test_opentelemetry_instrument_with_a_ratio_sampler_reports_every_request(
    api, tiny_gguf, tmp_path
):
    run_instrumented(
        MANY.format(model=str(tiny_gguf)),
        api,
        tmp_path,
        OTEL_TRACES_SAMPLER="traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.1",
    )

    requests = {}
    for event in api.events:
        requests.setdefault(event["request_id"], []).append(event["event_type"])
    assert (
        list(requests.values())
        == [["generation_started", *["chunk_produced"] * 4, "generation_completed"]] * 20
    )
    completed = [e for e in api.events if e["event_type"] == "generation_completed"]
    assert [e["metrics"]["output_tokens"] for e in completed] == [4] * 20
