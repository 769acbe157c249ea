"""`opentelemetry-instrument python app.py`: an app that never imports octomil reports."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_opentelemetry_instrument_sends_events_for_an_unmodified_app(api, tiny_gguf, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP.format(model=str(tiny_gguf)))
    env = {
        **os.environ,
        "OCTOMIL_API_KEY": API_KEY,
        "OCTOMIL_API_BASE": api.url,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    env.pop("OCTOMIL_ORG_ID", None)
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")

    subprocess.run([str(instrument), sys.executable, str(app)], env=env, check=True, timeout=120)

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
