"""The local Octomil API and dashboard: this package's exporter sends to it over real HTTP, and
the query API answers exactly what the test computes on its own, on every store."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from octomil_otel.export import OctomilSpanExporter, TelemetryReporter
from octomil_otel.generation import Recorder

from .conftest import FakeClock
from .dashboards import MINUTE, STORES, WALL0_MS, Dashboard, opened, served, store_url
from .otlp_tap import free_port


@pytest.fixture(params=STORES)
def dashboard(request, tmp_path) -> Iterator[Dashboard]:
    with opened(store_url(request.param, tmp_path)) as store, served(store) as board:
        yield board


@dataclass(frozen=True)
class Spec:
    """One request as the test drives it: every number the dashboard must report."""

    minute: int  # when it starts, after WALL0
    device: str
    model: str
    engine: str
    ttfc_ms: float | None  # None: failed before a chunk
    output_tokens: int
    outcome: str = "ok"  # ok | failed | cancelled

    @property
    def throughput(self) -> float:  # every request lasts exactly 1000 ms
        return float(self.output_tokens)


SPECS = [
    Spec(1, "aaaaaaaaaaaa", "gemma", "llamacpp", 100.0, 40),
    Spec(2, "aaaaaaaaaaaa", "gemma", "llamacpp", 300.0, 20),
    Spec(3, "aaaaaaaaaaaa", "qwen", "mlx", 50.0, 64),
    Spec(4, "bbbbbbbbbbbb", "gemma", "llamacpp", 200.0, 10, "failed"),
    Spec(12, "bbbbbbbbbbbb", "qwen", "mlx", 150.0, 32),
    Spec(13, "bbbbbbbbbbbb", "gemma", "llamacpp", 250.0, 5, "cancelled"),
    Spec(14, "aaaaaaaaaaaa", "qwen", "mlx", 700.0, 16),
    Spec(15, "bbbbbbbbbbbb", "gemma", "llamacpp", None, 0, "failed"),
]


def send(dashboard: Dashboard, specs: list[Spec]) -> None:
    """Drive each request through the recorder and this package's exporter, one pipeline
    (one reporter, one device id) per device, over real HTTP."""
    clock = FakeClock()
    pipelines = {}
    for device in sorted({s.device for s in specs}):
        reporter = TelemetryReporter(dashboard.key, dashboard.url, device_id=device)
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OctomilSpanExporter(reporter)))
        pipelines[device] = (
            provider,
            reporter,
            Recorder(provider, clock=clock, wall_clock=clock.wall),
        )
    for spec in specs:
        provider, _, recorder = pipelines[spec.device]
        clock.mono_ns = 5_000_000_000 + spec.minute * MINUTE * 1_000_000
        generation = recorder.start(model=spec.model, engine=spec.engine, stream=True)
        if spec.ttfc_ms is not None:
            clock.advance_ms(spec.ttfc_ms)
            generation.chunk()
        clock.mono_ns = 5_000_000_000 + spec.minute * MINUTE * 1_000_000 + 1_000_000_000
        generation.set_usage(input_tokens=8, output_tokens=spec.output_tokens)
        if spec.outcome == "ok":
            generation.stop()
        elif spec.outcome == "failed":
            generation.fail(RuntimeError("boom"))
        else:
            generation.cancel()
    for provider, reporter, _ in pipelines.values():
        provider.force_flush()
        assert reporter.flush()
        assert reporter.dropped_events == 0
        provider.shutdown()


def nearest_rank(values: list[float], p: int) -> float | None:
    ordered = sorted(values)
    return ordered[math.ceil(p * len(ordered) / 100) - 1] if ordered else None


def end_ms(spec: Spec) -> int:
    return WALL0_MS + spec.minute * MINUTE + 1000


def test_dashboard_query_api_answers_the_exact_aggregates(dashboard):
    send(dashboard, SPECS)
    step = 10 * MINUTE

    ttfc = dashboard.query("ttfc", step=600)
    done = [s for s in SPECS if s.outcome == "ok"]
    by_bucket: dict[int, list[float]] = {}
    for s in done:
        by_bucket.setdefault(end_ms(s) // step * step, []).append(s.ttfc_ms)
    assert ttfc["buckets"] == [
        {"start": start, "count": len(v), "p50": nearest_rank(v, 50),
         "p90": nearest_rank(v, 90), "p99": nearest_rank(v, 99)}
        for start, v in sorted(by_bucket.items())
    ]  # fmt: skip
    assert ttfc["distribution"] == {
        "bounds_ms": [50, 100, 200, 400, 800, 1600, 3200, 6400],
        "counts": [1, 1, 1, 1, 1, 0, 0, 0, 0],  # 50; 100; 150; 300; 700
    }

    volume = dashboard.query("volume", step=600)
    assert volume["totals"] == {
        "requests": 8, "completed": 5, "failed": 2, "cancelled": 1,
        "error_rate": 2 / 8, "cancelled_rate": 1 / 8,
    }  # fmt: skip
    assert [(b["requests"], b["failed"], b["cancelled"]) for b in volume["buckets"]] == [
        (4, 1, 0),
        (4, 1, 1),
    ]

    throughput = dashboard.query("throughput", step=600)
    series = {(s["model"], s["engine"]): s for s in throughput["series"]}
    assert sorted(series) == [("gemma", "llamacpp"), ("qwen", "mlx")]
    assert (series["gemma", "llamacpp"]["requests"], series["gemma", "llamacpp"]["avg_tok_s"]) == (
        2,
        (40 + 20) / 2,
    )
    assert series["qwen", "mlx"]["avg_tok_s"] == (64 + 32 + 16) / 3
    assert series["qwen", "mlx"]["output_tokens"] == 112

    devices = {d["device_id"]: d for d in dashboard.query("devices")["devices"]}
    a = [s for s in SPECS if s.device == "aaaaaaaaaaaa"]
    assert devices["aaaaaaaaaaaa"] == {
        "device_id": "aaaaaaaaaaaa", "requests": 4, "completed": 4, "failed": 0,
        "cancelled": 0, "error_rate": 0.0, "cancelled_rate": 0.0,
        "ttfc_p50": nearest_rank([s.ttfc_ms for s in a], 50),
        "ttfc_p90": nearest_rank([s.ttfc_ms for s in a], 90),
        "ttfc_p99": 700.0,
        "avg_tok_s": (40 + 20 + 64 + 16) / 4,
        "last_seen": end_ms(a[-1]),
    }  # fmt: skip
    b = devices["bbbbbbbbbbbb"]
    assert (b["requests"], b["failed"], b["cancelled"], b["ttfc_p50"]) == (4, 2, 1, 150.0)
    assert b["last_seen"] == end_ms(SPECS[-1])


def test_dashboard_filters_by_model_engine_device_and_time(dashboard):
    send(dashboard, SPECS)
    assert dashboard.query("volume", model="qwen")["totals"]["requests"] == 3
    assert dashboard.query("volume", engine="llamacpp")["totals"]["requests"] == 5
    assert dashboard.query("volume", device="bbbbbbbbbbbb")["totals"]["requests"] == 4
    first_ten = dashboard.query("volume", to=WALL0_MS + 10 * MINUTE)
    assert first_ten["totals"]["requests"] == 4
    assert dashboard.query("ttfc", model="nope")["buckets"] == []
    assert dashboard.query("dimensions", model="qwen") == {
        "models": ["gemma", "qwen"],
        "engines": ["llamacpp", "mlx"],
        "devices": ["aaaaaaaaaaaa", "bbbbbbbbbbbb"],
    }


def completed_event(i: int) -> dict:
    return {
        "event_type": "generation_completed",
        "timestamp": "2026-02-19T14:33:02.442Z",
        "device_id": "aaaaaaaaaaaa",
        "model": "gemma",
        "engine": "llamacpp",
        "request_id": f"req_{i:08x}",
        "stream": True,
        "metrics": {"ttfc_ms": 10.0, "throughput_tok_s": 5.0, "output_tokens": 5},
    }


def test_dashboard_same_batch_twice_is_stored_once(dashboard):
    assert dashboard.post([completed_event(1), completed_event(2)]).status_code == 202
    assert dashboard.post([completed_event(1), completed_event(2)]).status_code == 202
    assert dashboard.post([completed_event(2), completed_event(3)]).status_code == 202
    assert dashboard.query("volume")["totals"]["requests"] == 3


def test_dashboard_bad_batch_is_400_naming_event_and_field_and_stores_nothing(dashboard):
    good = completed_event(1)
    bad = {**good, "request_id": "req_0000bbbb", "metrics": {"ttfc_ms": -5}}
    response = dashboard.post([good, bad])

    assert response.status_code == 400
    assert response.json()["error"].startswith("events[1]: metrics.ttfc_ms must be finite")
    assert dashboard.query("volume")["totals"]["requests"] == 0


def test_dashboard_oversized_batch_is_413(dashboard):
    event = {**completed_event(1), "model": "m" * 2000}
    response = dashboard.post([{**event, "request_id": f"req_{i:08x}"} for i in range(600)])
    assert response.status_code == 413
    assert dashboard.query("volume")["totals"]["requests"] == 0


def test_dashboard_wrong_or_revoked_key_is_401(dashboard):
    assert dashboard.post([completed_event(1)], key="om_wrong").status_code == 401
    assert dashboard.get("/api/v1/query/volume", key="om_wrong").status_code == 401
    key_id, key = dashboard.store.create_key(dashboard.org_id, "second")
    assert dashboard.get("/api/v1/auth/whoami", key=key).json() == {"org_id": dashboard.org_id}
    assert dashboard.store.revoke_key(key_id)
    assert dashboard.get("/api/v1/auth/whoami", key=key).status_code == 401
    assert requests.get(dashboard.url + "/api/v1/query/volume", timeout=10).status_code == 401


def test_dashboard_one_org_never_sees_another(dashboard):
    send(dashboard, SPECS)
    other_org = dashboard.store.create_org("other")
    _, other_key = dashboard.store.create_key(other_org, "other")

    assert dashboard.get("/api/v1/auth/whoami", key=other_key).json() == {"org_id": other_org}
    response = dashboard.get(
        "/api/v1/query/volume", key=other_key, **{"from": WALL0_MS, "to": WALL0_MS + 3_600_000}
    )
    assert response.json()["totals"]["requests"] == 0
    # events sent with the other key are stored under the other org, whatever they claim
    assert (
        dashboard.post(
            [{**completed_event(1), "org_id": dashboard.org_id}], key=other_key
        ).status_code
        == 202
    )
    assert dashboard.query("volume")["totals"]["requests"] == 8


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"from": 10, "to": 5},
        {"step": 0.0001},
        {"step": "inf"},
        {"step": 1e30},
        {"to": 2**63},
        {"from": "2026-02-19T14:32:01.442Zgarbage"},
    ],
)
def test_dashboard_bad_query_parameters_are_400(dashboard, params):
    response = dashboard.get("/api/v1/query/ttfc", **params)
    assert response.status_code == 400, response.text
    if "step" not in params:  # the request list has no buckets
        assert dashboard.get("/api/v1/query/requests", **params).status_code == 400


def test_dashboard_instants_with_an_offset_are_those_instants(dashboard):
    send(dashboard, SPECS[:1])  # ends at 14:33:02.442 UTC
    utc = dashboard.query(
        "volume", **{"from": "2026-02-19T14:30:00Z", "to": "2026-02-19T14:40:00Z"}
    )
    offset = dashboard.query(
        "volume", **{"from": "2026-02-19T16:30:00+02:00", "to": "2026-02-19T16:40:00+02:00"}
    )
    assert utc["totals"]["requests"] == offset["totals"]["requests"] == 1


def test_dashboard_text_with_a_lone_surrogate_is_400_naming_the_field(dashboard):
    good = {"event_type": "generation_started", "timestamp": "2026-02-19T14:32:01.442Z",
            "device_id": "aaaaaaaaaaaa", "model": "gemma", "engine": "llamacpp"}  # fmt: skip
    response = requests.post(
        dashboard.url + "/api/v1/telemetry/events",
        data=b'{"events": [' + json.dumps(good).encode() + b", "
        + json.dumps(good).encode().replace(b'"gemma"', b'"\\ud800"') + b"]}",
        headers={"Authorization": f"Bearer {dashboard.key}"},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 400
    assert "events[1]" in response.text and "model" in response.text
    assert dashboard.query("volume")["totals"]["requests"] == 0


def test_dashboard_gzip_is_read_in_any_case_and_one_member_only(dashboard):
    body = gzip.compress(json.dumps({"events": []}).encode())
    headers = {"Authorization": f"Bearer {dashboard.key}", "Content-Encoding": "GZIP"}
    url = dashboard.url + "/api/v1/telemetry/events"
    assert requests.post(url, data=body, headers=headers, timeout=30).status_code == 202
    twice = requests.post(url, data=body + body, headers=headers, timeout=30)
    assert twice.status_code == 400
    assert "more than one gzip member" in twice.text


def test_octomil_dashboard_first_start_prints_key_then_never_again(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    port = free_port()
    command = [sys.executable, "-m", "octomil_otel.cli", "dashboard", "--port", str(port)]

    def first_lines() -> list[str]:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
        finally:
            process.terminate()
        return process.communicate(timeout=30)[0].splitlines()

    lines = first_lines()
    assert lines[1] == f"OCTOMIL_API_BASE=http://127.0.0.1:{port}"
    key = lines[2].removeprefix("OCTOMIL_API_KEY=")
    assert key.startswith("om_")
    assert lines[3] == f"Open the dashboard: http://127.0.0.1:{port}/?key={key}"
    assert (tmp_path / "octomil" / "events.db").exists()

    again = first_lines()
    assert not any(key in line for line in again)
    assert again[0] == f"Open the dashboard: http://127.0.0.1:{port}/ (with ?key=<key>)"

    listing = subprocess.run(
        [sys.executable, "-m", "octomil_otel.cli", "keys", "list"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (row,) = listing.stdout.splitlines()
    key_id = row.split()[0]
    assert key not in listing.stdout and " active " in row
    subprocess.run(
        [sys.executable, "-m", "octomil_otel.cli", "keys", "revoke", key_id],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    listing = subprocess.run(
        [sys.executable, "-m", "octomil_otel.cli", "keys", "list"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert " revoked " in listing.stdout

    refused = subprocess.run(
        [*command, "--host", "0.0.0.0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no active API key" in refused.stderr


def test_dashboard_phases_are_the_mean_time_per_request_of_each_model(dashboard):
    """From the recorder through the exporter: where each request's time went, per model."""
    clock = FakeClock()
    reporter = TelemetryReporter(dashboard.key, dashboard.url, device_id="aaaaaaaaaaaa")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OctomilSpanExporter(reporter)))
    recorder = Recorder(provider, clock=clock, wall_clock=clock.wall)
    # (model, engine, queue, prefill, decode); every request lasts 1000 ms
    asked = [("gemma", "llamacpp", 30.0, 120.0, 600.0), ("gemma", "llamacpp", 10.0, 80.0, None),
             ("qwen", "mlx", None, None, None)]  # fmt: skip
    for minute, (model, engine, queue, prefill, decode) in enumerate(asked, start=1):
        clock.mono_ns = 5_000_000_000 + minute * MINUTE * 1_000_000
        generation = recorder.start(model=model, engine=engine, stream=True)
        if queue is not None:
            clock.advance_ms(queue)
            generation.dequeued()
        clock.advance_ms(200.0)
        generation.chunk()
        generation.add_engine_time(prefill_ms=prefill, decode_ms=decode)
        clock.mono_ns = 5_000_000_000 + minute * MINUTE * 1_000_000 + 1_000_000_000
        generation.set_usage(input_tokens=8, output_tokens=4)
        generation.stop()
    provider.force_flush()
    assert reporter.flush()
    provider.shutdown()

    assert dashboard.query("phases") == {
        "models": [
            {"model": "gemma", "engine": "llamacpp", "requests": 2, "duration_ms": 1000.0,
             "queue_ms": 20.0, "prefill_ms": 100.0, "decode_ms": 300.0, "other_ms": 580.0},
            {"model": "qwen", "engine": "mlx", "requests": 1, "duration_ms": 1000.0,
             "queue_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "other_ms": 1000.0},
        ]
    }  # fmt: skip
    assert dashboard.query("phases", model="qwen")["models"][0]["model"] == "qwen"


def test_dashboard_a_request_without_an_id_is_counted_but_not_listed(dashboard):
    """Nothing can open it, nor tell a second delivery of it from another request."""
    ended = {"event_type": "generation_completed", "timestamp": "2026-02-19T14:33:01.442Z",
             "device_id": "aaaaaaaaaaaa", "model": "gemma", "engine": "llamacpp",
             "metrics": {"total_duration_ms": 5.0}}  # fmt: skip
    assert dashboard.post([ended]).status_code == 202

    assert dashboard.query("volume")["totals"]["requests"] == 1
    assert dashboard.query("requests")["requests"] == []
