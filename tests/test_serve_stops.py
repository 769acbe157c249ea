"""`octomil serve` when requests end early: a client that gives up, a client that stops
reading, an operator that stops the server. Each request is reported exactly once, and
the engine is never held by a request nobody waits for.

The model never stops on its own (the tiny models never emit their end token), so a
request runs until ``max_tokens`` unless something stops it.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest
import requests

from .test_serve import client, events_of, serve

LONG = {"model": "tiny-llama", "prompt": "hello", "max_tokens": 2000}  # about 2 s here


def finals(api) -> dict[str, dict]:
    """request id -> its final event (there must be exactly one per request)."""
    by_request: dict[str, list[dict]] = {}
    for event in api.events:
        if event["event_type"] in ("generation_completed", "generation_failed"):
            by_request.setdefault(event["request_id"], []).append(event)
    assert all(len(events) == 1 for events in by_request.values()), by_request
    return {request_id: events[0] for request_id, events in by_request.items()}


def wait_for_health(server, running: int, waiting: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        requests_now = requests.get(server.url + "/health", timeout=5).json()["requests"]
        if requests_now == {"running": running, "waiting": waiting}:
            return
        assert time.monotonic() < deadline, requests_now
        time.sleep(0.02)


def test_a_client_that_gives_up_on_a_whole_answer_stops_its_generation(api, tiny_gguf):
    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048") as server:
        with pytest.raises(requests.ReadTimeout):
            requests.post(server.url + "/v1/completions", json=LONG, timeout=0.5)
        wait_for_health(server, running=0, waiting=0)  # the engine is free again
        after = client(server).completions.create(model="tiny-llama", prompt="hi", max_tokens=2)
        server.stop()

    assert after.usage.completion_tokens == 2
    ended = finals(api)
    assert ended[after.id]["event_type"] == "generation_completed"
    (given_up,) = [e for request_id, e in ended.items() if request_id != after.id]
    assert given_up["event_type"] == "generation_failed"
    assert given_up["metrics"]["error_type"] == "cancelled"
    assert 0 < given_up["metrics"]["output_tokens"] < 2000
    assert given_up["stream"] is False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_stop_signal_cancels_the_running_request_and_fails_those_waiting(
    api, tiny_gguf, stop_signal
):
    answers: list[requests.Response] = []

    def ask() -> None:
        answers.append(requests.post(server.url + "/v1/completions", json=LONG, timeout=60))

    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048") as server:
        askers = [threading.Thread(target=ask) for _ in range(3)]
        askers[0].start()
        wait_for_health(server, running=1, waiting=0)
        for asker in askers[1:]:
            asker.start()
        wait_for_health(server, running=1, waiting=2)
        server.process.send_signal(stop_signal)
        log, _ = server.process.communicate(timeout=30)
        for asker in askers:
            asker.join()

    assert server.process.returncode == -stop_signal
    assert [a.status_code for a in answers] == [503] * 3
    assert [a.json()["error"]["code"] for a in answers] == ["shutdown"] * 3
    ended = finals(api)
    assert len(ended) == 3
    kinds = sorted(e["metrics"]["error_type"] for e in ended.values())
    assert kinds == ["cancelled", "shutdown", "shutdown"]
    for waited in [
        e["metrics"] for e in ended.values() if e["metrics"]["error_type"] == "shutdown"
    ]:
        assert 0 < waited["queue_ms"] <= waited["total_duration_ms"]  # all of it in the queue
        assert waited["output_tokens"] == 0  # known: it never reached the engine
    (cancelled,) = [e for e in ended.values() if e["metrics"]["error_type"] == "cancelled"]
    assert 0 < cancelled["metrics"]["output_tokens"] < 2000
    assert "[telemetry] Flushed" in log


def test_sigterm_ends_a_stream_in_flight_with_an_error_event(api, tiny_gguf):
    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048") as server:
        response = requests.post(
            server.url + "/v1/completions", json={**LONG, "stream": True}, stream=True, timeout=30
        )
        lines = (line for line in response.iter_lines() if line)
        first = json.loads(next(lines).removeprefix(b"data: "))
        server.process.send_signal(signal.SIGTERM)
        rest = list(lines)
        server.process.communicate(timeout=30)

    assert server.process.returncode == -signal.SIGTERM
    last = json.loads(rest[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == "shutdown"
    (ended,) = finals(api).values()
    assert ended["request_id"] == first["id"]
    assert ended["metrics"]["error_type"] == "cancelled"
    chunks_sent = 1 + len(rest) - 1  # the first, then all but the error event
    produced = [e for e in events_of(api, first["id"]) if e["event_type"] == "chunk_produced"]
    assert len(produced) == ended["metrics"]["output_tokens"] == chunks_sent


def test_a_client_that_stops_reading_a_stream_loses_it_and_frees_the_engine(api):
    words = "word " * 2_000_000  # 10 MB: far more than the socket buffers hold
    body = json.dumps(
        {"model": "echo", "prompt": words, "max_tokens": 2_000_000, "stream": True}
    ).encode()
    with serve("echo", api.url, "--send-timeout", "1") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            stalled.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            stalled.recv(1)  # the stream began; then this client reads nothing more
            after = client(server).completions.create(model="echo", prompt="hi there")
        server.stop()

    assert after.choices[0].text == "hi there"
    ended = finals(api)
    assert ended[after.id]["event_type"] == "generation_completed"
    (stalled_request,) = [e for request_id, e in ended.items() if request_id != after.id]
    assert stalled_request["metrics"]["error_type"] == "cancelled"
    assert 0 < stalled_request["metrics"]["output_tokens"] < 2_000_000


def keep_the_engine_busy(server) -> threading.Thread:
    """A long request, running (its client waits for the answer on this thread)."""
    running = threading.Thread(
        target=requests.post,
        args=(server.url + "/v1/completions",),
        kwargs={"json": {**LONG, "max_tokens": 1500}, "timeout": 60},
    )
    running.start()
    wait_for_health(server, running=1, waiting=0)
    return running


def test_a_client_that_leaves_the_queue_gives_up_its_place_and_costs_no_engine_time(api, tiny_gguf):
    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048", "--max-waiting", "1") as server:
        running = keep_the_engine_busy(server)
        with pytest.raises(requests.ReadTimeout):  # waits behind the running one, then leaves
            requests.post(server.url + "/v1/completions", json=LONG, timeout=0.5)
        wait_for_health(server, running=1, waiting=0)  # its place is free again
        running.join()
        after = client(server).completions.create(model="tiny-llama", prompt="hi", max_tokens=2)
        server.stop()

    ended = finals(api)
    assert len(ended) == 3
    left = [e for e in ended.values() if e["event_type"] == "generation_failed"]
    assert [e["metrics"]["error_type"] for e in left] == ["cancelled"]
    assert left[0]["metrics"]["output_tokens"] == 0  # known: it never reached the engine
    assert 0 < left[0]["metrics"]["queue_ms"] <= left[0]["metrics"]["total_duration_ms"]
    assert ended[after.id]["metrics"]["output_tokens"] == 2


def test_a_request_refused_while_others_wait_is_server_overloaded(api, tiny_gguf):
    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048", "--max-waiting", "0") as server:
        running = keep_the_engine_busy(server)
        refused = requests.post(server.url + "/v1/completions", json=LONG, timeout=30)
        running.join()
        server.stop()

    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "server_overloaded"
    (failed,) = [e for e in finals(api).values() if e["event_type"] == "generation_failed"]
    assert failed["metrics"]["error_type"] == "server_overloaded"
    assert failed["metrics"]["output_tokens"] == 0
    assert 0 <= failed["metrics"]["queue_ms"] <= failed["metrics"]["total_duration_ms"]


def test_a_second_signal_while_stopping_still_reports_every_request(api, tiny_gguf):
    """SIGTERM, then Ctrl-C before the server is done stopping: uvicorn then stops waiting
    for connections, and used to skip the application's shutdown as well, so nothing queued
    was ever sent (and SIGTERM raised again killed the process before any exit handler)."""
    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048") as server:
        done = client(server).completions.create(model="tiny-llama", prompt="hi", max_tokens=3)
        response = requests.post(
            server.url + "/v1/completions", json={**LONG, "stream": True}, stream=True, timeout=30
        )
        lines = (line for line in response.iter_lines() if line)
        first = json.loads(next(lines).removeprefix(b"data: "))
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        server.process.send_signal(signal.SIGINT)
        log, _ = server.process.communicate(timeout=30)
        response.close()

    ended = finals(api)
    assert sorted(ended) == sorted([done.id, first["id"]])
    assert ended[done.id]["event_type"] == "generation_completed"
    assert ended[done.id]["metrics"]["output_tokens"] == 3
    assert ended[first["id"]]["metrics"]["error_type"] == "cancelled"
    produced = [e for e in events_of(api, first["id"]) if e["event_type"] == "chunk_produced"]
    assert len(produced) == ended[first["id"]]["metrics"]["output_tokens"] > 0
    assert "[telemetry] Flushed" in log
    assert "Traceback" not in log
    assert log.count("Waiting for application shutdown.") == 1
