"""Ingest into the dashboard, beyond what test_dashboard.py covers: its fast decoder
refuses exactly what the contract refuses, with the contract's own error, and stores
nothing of such a batch; and two writers sharing one database, at the same time, store
every event once."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from octomil_otel.dashboard.batch import row_of
from octomil_otel.dashboard.model import Filters
from octomil_otel.export.events import validate_event
from octomil_otel.ingest import MAX_BODY_BYTES

from .dashboards import (
    HOUR,
    MINUTE,
    STORES,
    WALL0_MS,
    Dashboard,
    opened,
    request_events,
    served,
    store_url,
)
from .test_events import BAD_CHANGES, DOC_EXAMPLE

SENDABLE = [c for c in BAD_CHANGES if c[0] is None or "object" not in repr(c[0])]
"""Every bad change that JSON can carry (NaN and Infinity it does, as Python writes them)."""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Iterator[Dashboard]:
    """One store for every bad batch: none of them may store anything."""
    url = store_url("sqlite", tmp_path_factory.mktemp("ingest"))
    with opened(url) as store, served(store) as board:
        yield board


def stored_requests(dashboard: Dashboard) -> int:
    span = {"from": 0, "to": 2 * WALL0_MS}
    return dashboard.query("volume", **span)["totals"]["requests"]


@pytest.mark.parametrize(("change", "error", "message"), SENDABLE)
def test_a_bad_event_is_refused_as_the_contract_says(dashboard, change, error, message):
    bad = [1] if change is None else {**DOC_EXAMPLE, **change}
    with pytest.raises(error) as expected:  # what the contract says of it, as the server reads it
        validate_event(json.loads(json.dumps(bad)))
    assert message in str(expected.value)

    response = dashboard.post([DOC_EXAMPLE, bad])

    assert (response.status_code, response.json()) == (
        400,
        {"error": f"events[1]: {expected.value}"},
    )
    assert stored_requests(dashboard) == 0


@pytest.mark.parametrize("missing", ["timestamp", "device_id"])
def test_an_event_without_time_or_device_is_refused(dashboard, missing):
    response = dashboard.post([{k: v for k, v in DOC_EXAMPLE.items() if k != missing}])
    assert (response.status_code, response.json()) == (
        400,
        {"error": f"events[0]: {missing} is required"},
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"events": [DOC_EXAMPLE] * 1001}, 413, "1001 events: at most 1000 per request"),
        ({"events": {"0": DOC_EXAMPLE}}, 400, 'the body must be {"events": [...]}'),
        ([DOC_EXAMPLE], 400, 'the body must be {"events": [...]}'),
    ],
)
def test_a_bad_body_is_refused(dashboard, body, status, error):
    response = requests.post(
        dashboard.url + "/api/v1/telemetry/events",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {dashboard.key}"},
        timeout=30,
    )
    assert (response.status_code, response.json()) == (status, {"error": error})


def test_whole_numbers_beyond_64_bits_are_stored_and_beyond_a_double_refused(dashboard):
    """The fast decoder reads metrics as doubles, as the contract checks them (a count, of
    tokens or chunks, is a whole number below 2**53: a duration is not)."""
    huge = {**DOC_EXAMPLE, "request_id": "req_0000aaaa", "metrics": {"total_duration_ms": 10**300}}
    assert dashboard.post([huge]).status_code == 202
    beyond = {
        **DOC_EXAMPLE,
        "request_id": "req_0000bbbb",
        "metrics": {"total_duration_ms": 10**400},
    }
    response = dashboard.post([beyond])
    assert response.status_code == 400
    assert response.json()["error"].startswith(
        "events[0]: metrics.total_duration_ms must be finite"
    )


def raw_post(dashboard: Dashboard, body: Any) -> requests.Response:
    return requests.post(
        dashboard.url + "/api/v1/telemetry/events",
        data=body,
        headers={"Authorization": f"Bearer {dashboard.key}"},
        timeout=30,
    )


def test_a_batch_read_by_the_contract_in_code_stores_what_the_fast_path_would(dashboard):
    """A byte-order mark sends a batch down the slow path: its numbers are stored as the
    fast path stores them (an int beyond 64 bits fits no integer column)."""
    huge = {**DOC_EXAMPLE, "request_id": "req_0000cccc", "metrics": {"total_duration_ms": 2**64}}
    body = json.dumps({"events": [huge]}).encode()

    before = stored_requests(dashboard)
    assert raw_post(dashboard, "\ufeff".encode() + body).status_code == 202
    assert stored_requests(dashboard) == before + 1


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            b'{"events":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            400,
            "the body nests too deeply to be a batch of events",
        ),
        (
            b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b',"events":[]}',
            400,
            "the body nests too deeply to be a batch of events",
        ),
        (b"x" * (MAX_BODY_BYTES + 1), 413, "the body is over 1 MiB"),
        ((b"x" * 65536 for _ in range(20)), 413, "the body is over 1 MiB"),  # chunked
    ],
)
def test_a_body_too_deep_or_too_long_is_refused(dashboard, body, status, error):
    before = stored_requests(dashboard)
    response = raw_post(dashboard, body)
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert stored_requests(dashboard) == before


# --- two writers -----------------------------------------------------------------------


def shared_requests() -> list[dict[str, Any]]:
    """40 requests of 7 events, every tenth failed and every tenth cancelled, ending 7 s
    apart from WALL0 on."""
    outcomes = {3: "failed", 7: "cancelled"}
    return [
        event
        for n in range(1, 41)
        for event in request_events(
            n,
            WALL0_MS + n * 7000,
            outcome=outcomes.get(n % 10, "completed"),
            latencies=(50.0, 10.0, 10.0, 10.0, 10.0),
        )
    ]


@pytest.mark.parametrize("kind", STORES)
def test_two_writers_sharing_a_database_store_each_event_once(kind, tmp_path):
    events = shared_requests()
    batches = [events[i : i + 60] for i in range(0, len(events), 60)]  # cutting requests apart
    url = store_url(kind, tmp_path)
    with opened(url) as first, opened(url) as second:
        org_id = first.create_org("shared")
        start = threading.Barrier(2)

        def write(store, order) -> None:
            start.wait()
            for batch in order:
                store.insert([row_of(org_id, event) for event in batch])

        writers = [
            threading.Thread(target=write, args=(first, batches)),
            threading.Thread(target=write, args=(second, batches[::-1])),
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(120)

        scope = Filters(org_id, WALL0_MS - HOUR, WALL0_MS + HOUR)
        for store in (first, second):
            assert store.volume(scope, HOUR)["totals"] == {
                "requests": 40, "completed": 32, "failed": 4, "cancelled": 4,
                "error_rate": 0.1, "cancelled_rate": 0.1,
            }  # fmt: skip
            assert [b["requests"] for b in store.volume(scope, MINUTE)["buckets"]] == [
                sum(1 for n in range(1, 41) if (WALL0_MS + n * 7000) // MINUTE == minute)
                for minute in sorted({(WALL0_MS + n * 7000) // MINUTE for n in range(1, 41)})
            ]
            listed = store.requests(scope, None, 1000)["requests"]
            assert [r["request_id"] for r in listed] == [f"req_{n:08x}" for n in range(40, 0, -1)]
        for n in range(1, 41):
            detail = first.request(org_id, f"req_{n:08x}")
            assert [c["index"] for c in detail["chunks"]] == [0, 1, 2, 3, 4], n


def test_a_client_leaving_mid_body_stores_nothing_and_logs_no_error(dashboard, caplog):
    before = stored_requests(dashboard)
    host, port = dashboard.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"POST /api/v1/telemetry/events HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {dashboard.key}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"events": ['
        )
    # nothing to wait on but the log itself: an error is logged within milliseconds
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not caplog.records:
        time.sleep(0.05)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert stored_requests(dashboard) == before
