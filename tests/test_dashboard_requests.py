"""The request explorer's query API over real HTTP, on every store: the requests that
ended last, filtered, and one request whole (its chunks, metrics, trace and link)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .dashboards import (
    MINUTE,
    STORES,
    TRACE_URL,
    WALL0_MS,
    Dashboard,
    opened,
    request_events,
    served,
    store_url,
)

ENGINES = {"gemma": "llamacpp", "qwen": "mlx"}
A, B = "aaaaaaaaaaaa", "bbbbbbbbbbbb"
# n, minute it ended (after WALL0), model, device, outcome, chunk latencies (the 1st: TTFC)
REQUESTS = [
    (1, 5, "gemma", A, "completed", (120.0, 20.0, 22.0)),
    (2, 6, "qwen", B, "failed", (80.0,)),
    (3, 7, "gemma", B, "cancelled", (300.0, 25.0)),
    (4, 8, "qwen", A, "completed", (60.0, 20.5, 250.0, 21.0)),
]


def events_of(requests: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [
        event
        for n, minute, model, device, outcome, latencies in requests
        for event in request_events(
            n,
            WALL0_MS + minute * MINUTE,
            model=model,
            engine=ENGINES[model],
            device=device,
            outcome=outcome,
            latencies=latencies,
        )
    ]


@pytest.fixture(params=STORES)
def dashboard(request, tmp_path) -> Iterator[Dashboard]:
    url = store_url(request.param, tmp_path)
    with opened(url) as store, served(store, trace_url=TRACE_URL) as board:
        assert board.post(events_of(REQUESTS)).status_code == 202
        yield board


def listed(n: int) -> dict[str, Any]:
    """Request ``n`` as the list shows it."""
    _, minute, model, device, outcome, latencies = REQUESTS[n - 1]
    completed = outcome == "completed"
    return {
        "request_id": f"req_{n:08x}",
        "ended": WALL0_MS + minute * MINUTE,
        "model": model,
        "engine": ENGINES[model],
        "device_id": device,
        "status": outcome,
        "error_type": {"failed": "RuntimeError", "cancelled": "cancelled"}.get(outcome),
        "ttfc_ms": latencies[0] if completed else None,
        "output_tokens": len(latencies),
        "throughput_tok_s": 40.0 if completed else None,
    }


def ids(answer: dict[str, Any]) -> list[str]:
    return [r["request_id"] for r in answer["requests"]]


def test_request_list_is_the_endings_newest_first(dashboard):
    assert dashboard.query("requests") == {
        "limit": 100,
        "requests": [listed(n) for n in (4, 3, 2, 1)],
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "completed"}, [4, 1]),
        ({"status": "failed"}, [2]),
        ({"status": "cancelled"}, [3]),
        ({"device": B}, [3, 2]),
        ({"model": "gemma"}, [3, 1]),
        ({"engine": "mlx", "status": "completed"}, [4]),
        ({"limit": 2}, [4, 3]),
        ({"from": WALL0_MS + 6 * MINUTE, "to": WALL0_MS + 8 * MINUTE}, [3, 2]),
        ({"model": "gemma", "device": A, "status": "failed"}, []),
    ],
)
def test_request_list_filters(dashboard, params, expected):
    answer = dashboard.query("requests", **params)
    assert ids(answer) == [f"req_{n:08x}" for n in expected]
    assert answer["requests"] == [listed(n) for n in expected]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"status": "done"}, "'status' must be one of completed, failed, cancelled"),
        ({"limit": 0}, "'limit' must be 1 to 1000"),
        ({"limit": 1001}, "'limit' must be 1 to 1000"),
    ],
)
def test_request_list_refuses_bad_parameters(dashboard, params, error):
    response = dashboard.get("/api/v1/query/requests", **params)
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_one_request_has_its_chunks_metrics_trace_and_link(dashboard):
    end = WALL0_MS + 8 * MINUTE
    start = end - 1000
    response = dashboard.get("/api/v1/query/requests/req_00000004")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "request_id": "req_00000004",
        "model": "qwen",
        "engine": "mlx",
        "device_id": A,
        "stream": True,
        "status": "completed",
        "error_type": None,
        "started": start,
        "ended": end,
        "trace_id": f"{4:032x}",
        "span_id": f"{4:016x}",
        "trace_url": 'http://grafana.local/explore?left={"queries":[{"query":"'
        + f"{4:032x}"
        + '"}]}',
        "metrics": {
            "input_tokens": 8,
            "ttfc_ms": 60.0,
            "throughput_tok_s": 40.0,
            "total_duration_ms": 1000.0,
            "output_tokens": 4,
        },
        "chunks": [
            {"index": 0, "ts": start + 60, "latency_ms": 60.0},
            {"index": 1, "ts": start + 80, "latency_ms": 20.5},
            {"index": 2, "ts": start + 330, "latency_ms": 250.0},
            {"index": 3, "ts": start + 351, "latency_ms": 21.0},
        ],
    }


def test_a_failed_request_says_how_it_ended(dashboard):
    detail = dashboard.get("/api/v1/query/requests/req_00000002").json()
    assert (detail["status"], detail["error_type"], detail["ended"]) == (
        "failed",
        "RuntimeError",
        WALL0_MS + 6 * MINUTE,
    )
    assert detail["metrics"] == {"input_tokens": 8, "total_duration_ms": 1000.0, "output_tokens": 1}
    assert detail["chunks"] == [{"index": 0, "ts": detail["started"] + 80, "latency_ms": 80.0}]


def test_an_unknown_request_or_another_orgs_is_404(dashboard):
    missing = dashboard.get("/api/v1/query/requests/req_0000ffff")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "no request 'req_0000ffff' in this org"},
    )
    _, other_key = dashboard.store.create_key(dashboard.store.create_org("other"), "other")
    theirs = dashboard.get("/api/v1/query/requests/req_00000004", key=other_key)
    assert theirs.status_code == 404
    assert dashboard.get("/api/v1/query/requests", key=other_key, **{
        "from": WALL0_MS, "to": WALL0_MS + 60 * MINUTE}).json()["requests"] == []  # fmt: skip


def test_no_trace_link_without_a_trace_id(dashboard):
    untraced = [
        {k: v for k, v in event.items() if k not in ("trace_id", "span_id")}
        for event in request_events(9, WALL0_MS + 9 * MINUTE)
    ]
    assert dashboard.post(untraced).status_code == 202
    detail = dashboard.get("/api/v1/query/requests/req_00000009").json()
    assert (detail["trace_id"], detail["span_id"], detail["trace_url"]) == (None, None, None)


def test_no_trace_link_without_a_template(tmp_path):
    with opened(store_url("sqlite", tmp_path)) as store, served(store) as board:
        assert board.post(request_events(4, WALL0_MS + MINUTE)).status_code == 202
        detail = board.get("/api/v1/query/requests/req_00000004").json()
    assert (detail["trace_id"], detail["trace_url"]) == (f"{4:032x}", None)
