"""The receiver's ingest (``ingest.check_batch``, shared with the dashboard): its fast path
accepts exactly what the contract accepts, giving the same events, and refuses the rest
with the contract's own error, storing nothing of the batch."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import sys

import pytest
import requests

from octomil_otel import ingest
from octomil_otel.export._transport import EVENTS_PATH
from octomil_otel.export.events import validate_event

from .conftest import API_KEY, ORG_ID
from .test_dashboard_ingest import SENDABLE
from .test_events import DOC_EXAMPLE

CHUNK = {
    "event_type": "chunk_produced",
    "timestamp": "2026-02-19T14:32:01.300Z",
    "device_id": "a1b2c3d4e5f6",
    "model": "gemma-1b",
    "engine": "llamacpp",
    "request_id": "req_7f8a9b0c",
    "stream": True,
    "metrics": {"chunk_index": 0, "chunk_latency_ms": 142.3},
}
ACCEPTED = [
    DOC_EXAMPLE,
    CHUNK,
    {**CHUNK, "model": "gemma-ü 模型", "metrics": {"chunk_index": 1, "chunk_latency_ms": -0.0}},
    {**CHUNK, "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"},
    {**CHUNK, "event_type": "generation_started", "metrics": {"peak_memory_bytes": 2**70}},
    {
        **CHUNK,
        "event_type": "generation_failed",
        "metrics": {"error_type": "MemoryError ü", "total_duration_ms": 5},
    },
    {**CHUNK, "event_type": "generation_completed", "stream": False, "metrics": {}},
    {k: v for k, v in CHUNK.items() if k not in ("request_id", "stream", "metrics")},
]
"""Events the contract accepts: every optional field, non-ASCII texts, -0.0, an int
beyond 64 bits, empty metrics, none."""


def post(url: str, body: bytes, encoding: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    return requests.post(url + EVENTS_PATH, data=body, headers=headers, timeout=30)


def refused(api, response: requests.Response) -> tuple[int, dict]:
    """The answer to a batch the receiver refused, having checked it kept nothing of it."""
    assert api.events == []
    return response.status_code, response.json()


def test_x_gzip_is_gzip(api):
    body = gzip.compress(json.dumps({"events": [CHUNK]}).encode())
    assert post(api.url, body, "x-gzip").json() == {"accepted": 1}


def test_accepted_events_are_stored_as_the_contract_checks_them(api):
    body = json.dumps({"events": ACCEPTED}).encode()
    # the latency as the exporter writes it: integer nanoseconds with an exponent
    body = body.replace(b'"chunk_latency_ms": 142.3', b'"chunk_latency_ms": 142300000e-6', 1)

    response = post(api.url, gzip.compress(body), "gzip")

    assert (response.status_code, response.json()) == (202, {"accepted": len(ACCEPTED)})
    expected = [{**validate_event(event), "org_id": ORG_ID} for event in ACCEPTED]
    assert api.events == expected
    assert [type(e.get("metrics", {}).get("peak_memory_bytes")) for e in api.events][4] is int
    assert api.events[2]["metrics"]["chunk_latency_ms"].hex() == "-0x0.0p+0"
    assert ingest.check_batch(body) == ingest._check_in_code(body)  # the two paths agree


@pytest.mark.parametrize(("change", "error", "message"), SENDABLE)
def test_a_bad_event_is_refused_whole_with_the_contracts_error(api, change, error, message):
    bad = [1] if change is None else {**DOC_EXAMPLE, **change}
    with pytest.raises(error) as expected:
        validate_event(json.loads(json.dumps(bad)))

    response = post(api.url, json.dumps({"events": [CHUNK, bad]}).encode())

    assert refused(api, response) == (
        400,
        {"error": f"events[1]: {expected.value}"},
    )
    assert message in str(expected.value)


def test_a_lone_surrogate_is_refused_as_text_the_api_cannot_keep(api):
    body = json.dumps({"events": [{**CHUNK, "model": "\ud800"}]}).encode()
    assert b"\\ud800" in body

    response = post(api.url, body)

    assert refused(api, response) == (
        400,
        {"error": "events[0]: model must be Unicode text, got '\\ud800'"},
    )


@pytest.mark.parametrize(
    "change",
    [
        {"request_id": ""},
        {"request_id": "req_7f8a9b0c "},
        {"timestamp": "2026-02-19T14:32:01.30Z"},
        {"timestamp": "2026-02-19T14:32:01.3000Z"},
        {"timestamp": "2026-02-19T14:32:01,300Z"},
        {"timestamp": "2026-02-19T14:32:01.30\u0663Z"},
    ],
)
def test_an_id_or_second_seen_earlier_in_the_batch_vouches_for_nothing_else(api, change):
    """The fast path matches each request id and each second once per batch: an event
    that shares them with a good one is still checked whole."""
    bad = {**CHUNK, **change}
    with pytest.raises(ValueError) as expected:
        validate_event(bad)

    response = post(api.url, json.dumps({"events": [CHUNK, CHUNK, bad]}).encode())

    assert refused(api, response) == (
        400,
        {"error": f"events[2]: {expected.value}"},
    )


def raw_post(url: str, head: str, body: bytes = b"") -> tuple[int, dict]:
    """One POST over a raw socket, headers as given (``requests`` checks them), and the
    answer; the client sends nothing after ``body``, and asks the server to close."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}"
            f"\r\nConnection: close\r\n{head}\r\n\r\n".encode()
            + body
        )
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize(
    ("head", "status", "error"),
    [
        ("Content-Length: abc", 400, "Content-Length must be a whole number, got 'abc'"),
        ("Content-Length: -1", 400, "Content-Length must be a whole number, got '-1'"),
        (f"Content-Length: {ingest.MAX_BODY_BYTES + 1}", 413, "the body is over 1 MiB"),
        (f"Content-Length: 1{'0' * 5000}", 413, "the body is over 1 MiB"),
        ("Content-Length: 2\r\nContent-Length: 3", 400, "Content-Length is given more than once"),
        ("Transfer-Encoding: chunked", 411, "Content-Length is required: a chunked body"),
    ],
)
def test_a_body_of_no_or_too_great_a_length_is_refused_unread(api, head, status, error):
    answer_status, answer = raw_post(api.url, head)
    assert (answer_status, answer["error"][: len(error)]) == (status, error)
    assert api.events == []


def test_a_length_may_have_zeros_in_front(api):
    body = json.dumps({"events": [CHUNK]}).encode()
    assert raw_post(api.url, f"Content-Length: {'0' * 5000}{len(body)}", body) == (
        202,
        {"accepted": 1},
    )


def test_a_client_that_sends_a_long_body_before_reading_gets_the_413(api):
    """``http.client`` (urllib's) sends the whole body first: it is read and dropped, so
    the answer reaches the client rather than a broken pipe."""
    host, port = api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(
        "POST",
        EVENTS_PATH,
        body=b"x" * (4 * ingest.MAX_BODY_BYTES),
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())) == (
        413,
        {"error": "the body is over 1 MiB"},
    )
    assert response.getheader("Connection") == "close"
    connection.close()


@pytest.mark.parametrize("cut", [4, 8, 100_000])
def test_a_gzip_body_cut_short_is_refused(api, cut):
    """Without its trailer, gzip's integrity check never runs: the batch may be cut."""
    whole = gzip.compress(json.dumps({"events": [CHUNK]}).encode())
    response = post(api.url, whole[: max(0, len(whole) - cut)], "gzip")
    assert refused(api, response) == (
        400,
        {"error": "the body is not gzip: it is cut short"},
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"events":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b',"events":[]}',  # a field it skips
        json.dumps({"events": [{**CHUNK, "metrics": {}}]})
        .encode()
        .replace(b'"metrics": {}', b'"metrics": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ],
)
def test_a_body_nested_too_deeply_is_refused(api, body):
    response = post(api.url, body)
    assert refused(api, response) == (
        400,
        {"error": "the body nests too deeply to be a batch of events"},
    )


def test_a_body_that_ends_before_its_length_is_refused(api):
    body = json.dumps({"events": [CHUNK]}).encode()
    answer = raw_post(api.url, f"Content-Length: {len(body) + 50}", body)
    assert answer == (400, {"error": "the body ended before its length"})
    assert api.events == []


def test_bytes_that_are_not_utf8_are_refused_even_in_a_field_no_one_reads(api):
    body = b'{"x":"\xff","events":' + json.dumps([CHUNK]).encode() + b"}"
    with pytest.raises(ingest.BatchError) as expected:
        ingest._check_in_code(body)

    response = post(api.url, body)

    assert refused(api, response) == (400, {"error": str(expected.value)})
    assert str(expected.value).startswith("the body is not JSON")


def test_a_batch_accepted_by_the_contract_in_code_is_kept_the_same(api):
    """A byte-order mark sends a batch past the fast path (``json.loads`` reads it): the
    receiver keeps the same events, read as many times as wanted."""
    body = "\ufeff".encode() + json.dumps({"events": ACCEPTED}).encode()

    response = post(api.url, body)

    assert (response.status_code, response.json()) == (202, {"accepted": len(ACCEPTED)})
    expected = [{**validate_event(event), "org_id": ORG_ID} for event in ACCEPTED]
    assert api.events == expected
    assert api.events == expected


def test_what_was_accepted_reads_whole_at_any_depth_of_the_readers_stack(api):
    """A field no event has, nested deep, is skipped when the batch is checked: reading
    the events later, from a deeper stack than the server's, decodes only the events."""
    deep = b'{"x":' + b"[" * 800 + b"]" * 800 + b',"events":' + json.dumps([CHUNK]).encode() + b"}"
    assert post(api.url, deep).status_code == 202

    def read(depth: int) -> list:
        return read(depth - 1) if depth else api.events

    expected = [{**CHUNK, "org_id": ORG_ID}]
    assert read(sys.getrecursionlimit() - 800) == expected
    assert api.events == expected


def test_a_batch_gives_fresh_events_on_each_call():
    """What one caller changes in its events is not what the next caller gets."""
    for body in (  # the fast path, and the contract in code (a byte-order mark)
        json.dumps({"events": [DOC_EXAMPLE]}).encode(),
        "\ufeff".encode() + json.dumps({"events": [DOC_EXAMPLE]}).encode(),
    ):
        text = bytearray(body)
        batch = ingest.accept_batch(text)
        text[:] = b" " * len(text)  # the caller's buffer, reused
        first = batch.events()
        first[0]["metrics"]["ttfc_ms"] = -1
        assert batch.events() == [DOC_EXAMPLE]
