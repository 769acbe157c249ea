"""What the dashboard tests share: a store of either kind, served over real HTTP on
127.0.0.1 with an org and a key, and a request's events written out by hand."""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import uvicorn

from octomil_otel.dashboard.app import create_app
from octomil_otel.dashboard.model import Store
from octomil_otel.dashboard.stores import open_store
from octomil_otel.export.events import format_timestamp

from .conftest import WALL0_NS
from .otlp_tap import free_port

STORES = ["sqlite", "chdb"]
WALL0_MS = WALL0_NS // 1_000_000
MINUTE = 60_000
HOUR = 60 * MINUTE
TRACE_URL = 'http://grafana.local/explore?left={"queries":[{"query":"{trace_id}"}]}'
"""A --trace-url as Grafana's are: JSON, braces and all, around the placeholder."""


def store_url(kind: str, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    pytest.importorskip("chdb")
    return f"chdb://{tmp_path / 'chdb'}"


@dataclass
class Dashboard:
    url: str
    key: str
    org_id: str
    store: Store

    def get(self, path: str, key: str | None = None, **params: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return requests.get(self.url + path, params=params, headers=headers, timeout=30)

    def query(self, name: str, **params: Any) -> dict:
        params.setdefault("from", WALL0_MS - MINUTE)
        params.setdefault("to", WALL0_MS + 60 * MINUTE)
        response = self.get(f"/api/v1/query/{name}", **params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, events: list, key: str | None = None) -> requests.Response:
        return requests.post(
            self.url + "/api/v1/telemetry/events",
            data=gzip.compress(json.dumps({"events": events}).encode()),
            headers={"Authorization": f"Bearer {key or self.key}", "Content-Encoding": "gzip"},
            timeout=30,
        )


@contextlib.contextmanager
def served(store: Store, **options: Any) -> Iterator[Dashboard]:
    """``store``, with a new org and key, behind ``create_app(store, **options)``; the
    app has started (and run its start-up work) when this yields."""
    org_id = store.create_org("test")
    _, key = store.create_key(org_id, "test")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, **options), host="127.0.0.1", port=port,
                       log_level="warning")
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.01)
    try:
        yield Dashboard(f"http://127.0.0.1:{port}", key, org_id, store)
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def opened(url: str) -> Iterator[Store]:
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def stamp(ms: int) -> str:
    return format_timestamp(ms * 1_000_000)


def request_events(
    n: int,
    end_ms: int,
    *,
    model: str = "gemma",
    engine: str = "llamacpp",
    device: str = "aaaaaaaaaaaa",
    outcome: str = "completed",  # completed | failed | cancelled
    latencies: tuple[float, ...] = (100.0, 20.0),
    tok_s: float = 40.0,
    phases: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Request ``n``'s events as an app reports them: started, a chunk per latency (the
    first is the TTFC), its end at ``end_ms``; it started 1 s before. Its request id, trace
    and span ids are ``n`` in hex; ``output_tokens`` is the number of chunks. ``phases``:
    its ``queue_ms`` (on either ending), ``prefill_ms`` and ``decode_ms`` (completed)."""
    start = end_ms - 1000
    common = {"model": model, "engine": engine, "device_id": device,
              "request_id": f"req_{n:08x}", "stream": True}  # fmt: skip
    ids = {"trace_id": f"{n:032x}", "span_id": f"{n:016x}"}
    events = [{**common, **ids, "event_type": "generation_started", "timestamp": stamp(start),
               "metrics": {"input_tokens": 8}}]  # fmt: skip
    at = float(start)
    for index, latency in enumerate(latencies):
        at += latency
        events.append({**common, "event_type": "chunk_produced", "timestamp": stamp(int(at)),
                       "metrics": {"chunk_index": index, "chunk_latency_ms": latency}})  # fmt: skip
    if outcome == "completed":
        end = {"event_type": "generation_completed",
               "metrics": {"ttfc_ms": latencies[0], "throughput_tok_s": tok_s,
                           "total_duration_ms": 1000.0, "input_tokens": 8,
                           "output_tokens": len(latencies)}}  # fmt: skip
    else:
        error = "cancelled" if outcome == "cancelled" else "RuntimeError"
        end = {"event_type": "generation_failed",
               "metrics": {"total_duration_ms": 1000.0, "output_tokens": len(latencies),
                           "error_type": error}}  # fmt: skip
    for name, value in (phases or {}).items():
        if name == "queue_ms" or outcome == "completed":
            end["metrics"][name] = value
    events.append({**common, **ids, **end, "timestamp": stamp(end_ms)})
    return events
