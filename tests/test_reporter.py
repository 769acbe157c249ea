"""TelemetryReporter against a real HTTP API on 127.0.0.1, and against dead or broken ones."""

from __future__ import annotations

import calendar
import concurrent.futures
import gzip
import json
import logging
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from octomil_otel.export import _transport
from octomil_otel.export.reporter import TelemetryReporter

from .conftest import API_KEY, ORG_ID

DEVICE = "0123456789ab"


def event(i: int = 0, **extra) -> dict:
    return {
        "event_type": "generation_completed",
        "model": "gemma-1b",
        "engine": "mlx",
        "request_id": f"req_{i:08x}",
        "metrics": {"ttfc_ms": 150.0, "output_tokens": i},
        **extra,
    }


@pytest.fixture
def reporters() -> Iterator[list[TelemetryReporter]]:
    """Reporters made by a test, shut down after it however it ends."""
    made: list[TelemetryReporter] = []
    yield made
    for reporter in made:
        reporter.shutdown(timeout_seconds=2.0)


@pytest.fixture
def make_reporter(reporters):
    def make(api_base: str, **kwargs) -> TelemetryReporter:
        kwargs.setdefault("device_id", DEVICE)
        kwargs.setdefault("flush_interval_seconds", 60.0)
        reporter = TelemetryReporter(API_KEY, api_base, **kwargs)
        reporters.append(reporter)
        return reporter

    return make


@pytest.fixture
def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_reporter_delivers_event_with_filled_fields(api, make_reporter):
    reporter = make_reporter(api.url)
    reporter.report(event(7, stream=True, timestamp="2026-02-19T14:32:01.442Z"))

    assert reporter.flush() is True

    assert api.events == [
        {
            **event(7),
            "stream": True,
            "timestamp": "2026-02-19T14:32:01.442Z",
            "device_id": DEVICE,
            "org_id": ORG_ID,
        }
    ]
    assert (reporter.delivered_events, reporter.dropped_events) == (1, 0)


def test_reporter_fills_timestamp_now_and_leaves_out_what_was_not_given(api, make_reporter):
    reporter = make_reporter(api.url)
    minimal = {"event_type": "generation_started", "model": "m", "engine": "echo"}
    before = time.time()
    reporter.report(minimal)
    reporter.flush()

    (stored,) = api.events
    assert set(stored) == {"event_type", "model", "engine", "timestamp", "device_id", "org_id"}
    sent = calendar.timegm(time.strptime(stored["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 1 <= sent <= time.time()


def test_reporter_sends_auth_user_agent_and_gzip(api, make_reporter):
    reporter = make_reporter(api.url)
    reporter.report(event())
    reporter.flush()

    post = next(r for r in api.requests if r["method"] == "POST")
    assert post["path"] == "/api/v1/telemetry/events"
    assert post["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert post["headers"]["User-Agent"].startswith("octomil-otel/")
    assert post["headers"]["Content-Encoding"] == "gzip"
    assert post["headers"]["Content-Type"] == "application/json"


def test_reporter_org_id_explicit_is_not_resolved(api, make_reporter):
    reporter = make_reporter(api.url, org_id="org_mine")
    reporter.report(event())
    reporter.flush()

    assert [r["path"] for r in api.requests] == ["/api/v1/telemetry/events"]
    assert reporter.org_id == "org_mine"


def test_reporter_org_id_from_environment(api, make_reporter, monkeypatch):
    monkeypatch.setenv("OCTOMIL_ORG_ID", "org_env")
    assert make_reporter(api.url).org_id == "org_env"


def test_reporter_org_id_resolved_once_from_key(api, make_reporter):
    reporter = make_reporter(api.url)
    for i in range(3):
        reporter.report(event(i))
        reporter.flush()

    paths = [r["path"] for r in api.requests]
    assert paths.count("/api/v1/auth/whoami") == 1
    assert reporter.org_id == ORG_ID


def test_reporter_connection_refused_drops_and_counts(refused_url, make_reporter):
    reporter = make_reporter(refused_url)
    for i in range(3):
        reporter.report(event(i))

    assert reporter.flush(timeout_seconds=10.0) is True
    assert (reporter.delivered_events, reporter.dropped_events, reporter.queue_size) == (0, 3, 0)


def test_a_dead_apis_drops_are_told_at_once_then_together_and_add_up(
    refused_url, make_reporter, caplog
):
    """The first drop is told at once; the worker's later drops within the flush interval
    in one line, at the latest by ``flush()``: not a line per POST, nor a first line that
    reads as the total."""

    def dropped(total: int) -> None:
        deadline = time.monotonic() + 10
        while reporter.dropped_events < total and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reporter.dropped_events == total

    def told() -> list[int]:
        found = (DROPPED.fullmatch(r.getMessage()) for r in caplog.records)
        return [int(match[1]) for match in found if match]

    reporter = make_reporter(refused_url, max_queue_size=2)  # the worker wakes at each event
    with caplog.at_level(logging.WARNING, logger="octomil_otel.telemetry"):
        reporter.report(event(0))
        dropped(1)
        for i in range(1, 6):  # five more POSTs, each refused
            reporter.report(event(i))
            dropped(i + 1)
        before_flush = told()
        assert reporter.flush() is True

    assert before_flush == [1]
    assert told() == [1, 5]


def test_drops_for_another_reason_are_told_apart(api, make_reporter, caplog):
    """Each line gives the reason of the drops it counts: when the API fails another way,
    what was dropped the way before is told at once, then the new way's."""
    answers = iter([500, 500, 503, 503, 503])
    api.ingest = lambda org, body, encoding: (next(answers), {"error": "nope"})
    reporter = make_reporter(api.url, max_queue_size=2)  # the worker wakes at each event
    with caplog.at_level(logging.WARNING, logger="octomil_otel.telemetry"):
        for i in range(5):
            reporter.report(event(i))
            deadline = time.monotonic() + 10
            while reporter.dropped_events < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert reporter.flush() is True

    found = (DROPPED.fullmatch(r.getMessage()) for r in caplog.records)
    assert [match[0] for match in found if match] == [
        "[telemetry] Dropped 1 events: HTTP 500",
        "[telemetry] Dropped 1 events: HTTP 500",
        "[telemetry] Dropped 1 events: HTTP 503",
        "[telemetry] Dropped 2 events: HTTP 503",
    ]
    assert reporter.dropped_events == 5


DROPPED = re.compile(r"\[telemetry\] Dropped (\d+) events: \S.*")


def test_reporter_silent_api_flush_and_shutdown_are_bounded(silent_url, make_reporter):
    reporter = make_reporter(silent_url, timeout_seconds=0.5)
    reporter.report(event())
    started = time.monotonic()

    reporter.flush(timeout_seconds=30.0)
    reporter.report(event(1))
    reporter.shutdown(timeout_seconds=30.0)

    # the bound is the HTTP timeout (0.5 s per request), not the flush/shutdown timeout
    assert time.monotonic() - started < 15.0
    assert reporter.dropped_events == 2


def test_reporter_flush_returns_false_when_its_timeout_passes_first(silent_url, make_reporter):
    reporter = make_reporter(silent_url, timeout_seconds=5.0)
    reporter.report(event())
    assert reporter.flush(timeout_seconds=0.2) is False


@pytest.mark.parametrize("status", [500, 503, 429, 400])
def test_reporter_error_answers_drop_the_batch(api, make_reporter, status):
    api.ingest = lambda org, body, encoding: (status, {"error": "nope"})
    reporter = make_reporter(api.url)
    reporter.report(event())

    assert reporter.flush() is True
    assert (reporter.delivered_events, reporter.dropped_events) == (0, 1)
    assert [r["path"] for r in api.requests].count("/api/v1/telemetry/events") == 1


def test_reporter_wrong_key_is_401_dropped_and_logged_without_key(api, reporters, caplog):
    wrong_key = "sk-wrong-key-9876543210"
    reporter = TelemetryReporter(wrong_key, api.url, device_id=DEVICE)
    reporters.append(reporter)
    with caplog.at_level(logging.DEBUG):
        reporter.report(event())
        reporter.flush()

    assert reporter.dropped_events == 1
    assert "rejected the API key (401)" in caplog.text
    assert wrong_key not in caplog.text


def test_reporter_never_logs_the_key_at_debug(api, refused_url, silent_url, reporters, caplog):
    with caplog.at_level(logging.DEBUG):
        for url in (api.url, refused_url, silent_url):
            reporter = TelemetryReporter(API_KEY, url, device_id=DEVICE, timeout_seconds=0.3)
            reporters.append(reporter)
            reporter.report(event())
            reporter.flush()
            reporter.shutdown()
    assert caplog.records
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in (record.exc_text or "")


@pytest.fixture
def stalled_reporter(api, make_reporter):
    """A reporter with a queue of 10 whose worker is held inside its first POST (of event
    0) until the test calls the returned ``release``."""
    entered, release = threading.Event(), threading.Event()
    ingest = api.ingest

    def gated(org, body, encoding):
        entered.set()
        release.wait(10)
        return ingest(org, body, encoding)

    api.ingest = gated
    reporter = make_reporter(api.url, max_queue_size=10)
    reporter.report(event(0))
    reporter.flush(timeout_seconds=0.0)  # wake the worker: it waits inside the first POST
    assert entered.wait(10)
    return reporter, release.set


def test_reporter_full_queue_drops_exactly_the_oldest(api, stalled_reporter):
    reporter, release = stalled_reporter
    for i in range(1, 16):
        reporter.report(event(i))
    assert (reporter.queue_size, reporter.dropped_events) == (10, 5)

    release()
    assert reporter.flush() is True
    delivered = [e["metrics"]["output_tokens"] for e in api.events]
    assert delivered == [0, *range(6, 16)]
    assert (reporter.delivered_events, reporter.dropped_events) == (11, 5)


def test_reporter_eight_threads_lose_nothing_below_the_bound(api, make_reporter):
    reporter = make_reporter(api.url, max_queue_size=5000, flush_interval_seconds=0.05)

    def work(thread: int) -> None:
        for i in range(250):
            reporter.report(event(thread * 1000 + i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reporter.flush() is True

    got = sorted(e["metrics"]["output_tokens"] for e in api.events)
    assert got == sorted(t * 1000 + i for t in range(8) for i in range(250))
    assert (reporter.delivered_events, reporter.dropped_events) == (2000, 0)


def test_reporter_splits_batches_at_1000_events(api, make_reporter):
    sizes = []
    ingest = api.ingest

    def counting(org, body, encoding):
        sizes.append(len(json.loads(gzip.decompress(body))["events"]))
        return ingest(org, body, encoding)

    api.ingest = counting
    reporter = make_reporter(api.url, max_queue_size=2500)
    for i in range(2500):
        reporter.report(event(i))
    reporter.flush()

    assert sum(sizes) == len(api.events) == 2500
    assert max(sizes) == 1000  # the worker may wake at half full: batch sizes vary


def test_reporter_wakes_early_when_half_full(api, make_reporter):
    reporter = make_reporter(api.url, max_queue_size=10, flush_interval_seconds=3600)
    for i in range(5):
        reporter.report(event(i))
    deadline = time.monotonic() + 10
    while len(api.events) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(api.events) == 5


def test_reporter_flushes_on_its_interval(api, make_reporter):
    reporter = make_reporter(api.url, flush_interval_seconds=0.1)
    reporter.report(event())
    deadline = time.monotonic() + 10
    while not api.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(api.events) == 1


def test_reporter_sleeps_while_nothing_is_queued(api, make_reporter):
    """An idle process is not woken every interval: the worker drains only after an event
    is queued, once for one event."""
    reporter = make_reporter(api.url, flush_interval_seconds=0.02)
    drains = []
    drain = reporter._drain
    reporter._drain = lambda: drains.append(1) or drain()
    time.sleep(0.3)  # fifteen intervals, nothing queued
    assert drains == []
    reporter.report(event())
    deadline = time.monotonic() + 10
    while not api.events and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert (len(api.events), len(drains)) == (1, 1)


def test_reporter_logs_initialized_and_flushed_lines(api, make_reporter, caplog):
    with caplog.at_level(logging.INFO, logger="octomil_otel.telemetry"):
        reporter = make_reporter(api.url)
        for i in range(3):
            reporter.report(event(i))
        reporter.flush()

    lines = [r.getMessage() for r in caplog.records]
    assert f"[telemetry] Initialized: device_id={DEVICE}, api_base={api.url}" in lines
    assert "[telemetry] Flushed 3 events (queue_size=0)" in lines


@pytest.fixture
def held_posts(api):
    """Each POST to ``api`` waits until the test lets it go (``proceed.release()``); the
    test sees it start (``posted.get()``)."""
    posted, proceed = queue.Queue(), threading.Semaphore(0)
    ingest = api.ingest

    def gated(org, body, encoding):
        posted.put(None)
        proceed.acquire(timeout=10)
        return ingest(org, body, encoding)

    api.ingest = gated
    return posted, proceed


def _flushed(caplog) -> list[int]:
    return [int(r.getMessage().split()[2]) for r in caplog.records if "Flushed" in r.getMessage()]


@pytest.mark.parametrize(
    ("interval", "told"),
    [
        (60.0, ["Flushed 1 events (queue_size=2)", "Flushed 3 events (queue_size=0)"]),
        (
            0.1,  # each POST held longer: each told
            [
                "Flushed 1 events (queue_size=2)",
                "Flushed 2 events (queue_size=1)",
                "Flushed 1 events (queue_size=0)",
            ],
        ),
    ],
)
def test_deliveries_while_more_waits_are_told_in_one_line(
    api, make_reporter, caplog, held_posts, interval, told
):
    """The first delivery is told at once; one after which more waits is told with the
    next, in one line, once nothing waits, unless ``flush_interval_seconds`` passed since
    the last line: each POST is held (0.2 s) until the test lets it go."""
    posted, proceed = held_posts
    with caplog.at_level(logging.INFO, logger="octomil_otel.telemetry"):
        reporter = make_reporter(api.url, max_queue_size=10, flush_interval_seconds=interval)
        reporter.report(event(0))
        reporter.flush(timeout_seconds=0.0)  # wake the worker: POST 1, of event 0
        posted.get(timeout=10)
        reporter.report(event(1))
        reporter.report(event(2))
        time.sleep(0.2)
        proceed.release()
        posted.get(timeout=10)  # POST 2, of events 1 and 2
        reporter.report(event(3))
        time.sleep(0.2)
        proceed.release()  # event 3 waits
        posted.get(timeout=10)  # POST 3, of event 3
        time.sleep(0.2)
        proceed.release()
        assert reporter.flush() is True

    lines = [r.getMessage() for r in caplog.records if "Flushed" in r.getMessage()]
    assert lines == [f"[telemetry] {line}" for line in told]
    assert len(api.events) == 4


def test_a_flush_that_returns_has_its_deliveries_told(api, make_reporter, caplog, held_posts):
    """A delivery after which more waits is not told by the worker at once (a report came
    during its POST), but ``flush()`` tells it before it returns."""
    posted, proceed = held_posts
    with caplog.at_level(logging.INFO, logger="octomil_otel.telemetry"):
        reporter = make_reporter(api.url, max_queue_size=10)
        reporter.report(event(0))
        assert reporter.flush(timeout_seconds=0.0) is False  # wakes the worker: POST 1
        posted.get(timeout=10)
        proceed.release()  # the first delivery is told at once
        assert reporter.flush() is True
        assert _flushed(caplog) == [1]

        reporter.report(event(1))
        with concurrent.futures.ThreadPoolExecutor(1) as another_thread:
            flushed = another_thread.submit(reporter.flush)
            posted.get(timeout=10)  # POST 2, of event 1
            reporter.report(event(2))  # waits during POST 2: the worker does not tell it
            proceed.release()
            assert flushed.result(timeout=10) is True
            assert _flushed(caplog) == [1, 1]

        posted.get(timeout=10)  # POST 3, of event 2
        proceed.release()
        assert reporter.flush() is True
    assert _flushed(caplog) == [1, 1, 1]


def test_a_shutdown_that_gives_up_tells_what_was_delivered(api, make_reporter, caplog, held_posts):
    """2,500 events in 3 POSTs: the first two delivered (the second not told by the
    worker: more waits), the third held past ``shutdown``'s timeout. The log still tells
    the 2,000 delivered, as ``bench/serve_load.py`` counts them."""
    posted, proceed = held_posts
    completed = (
        '"event_type":"generation_completed","timestamp":"2026-02-19T14:32:01.442Z",'
        '"model":"m","engine":"echo"}'
    )
    with caplog.at_level(logging.INFO, logger="octomil_otel.telemetry"):
        reporter = make_reporter(api.url, max_queue_size=3000)
        reporter.submit([completed] * 2500)  # taken by the worker at once
        for _ in range(2):
            posted.get(timeout=10)
            proceed.release()
        posted.get(timeout=10)  # the third, held
        reporter.shutdown(timeout_seconds=0.5)
        assert (reporter.delivered_events, sum(_flushed(caplog))) == (2000, 2000)
        proceed.release()


def test_reporter_shutdown_flushes_and_is_idempotent(api, make_reporter):
    reporter = make_reporter(api.url)
    reporter.report(event())
    reporter.shutdown()
    reporter.shutdown()

    assert len(api.events) == 1
    reporter.report(event(1))
    assert reporter.dropped_events == 1
    assert reporter.flush() is True


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"api_key": ""}, ValueError, "api_key is required"),
        ({"api_key": None}, ValueError, "api_key is required"),
        ({"api_base": "ftp://x"}, ValueError, "api_base must be an http"),
        ({"flush_interval_seconds": 0}, ValueError, "flush_interval_seconds must be a positive"),
        ({"flush_interval_seconds": "5"}, TypeError, "flush_interval_seconds must be a number"),
        ({"max_queue_size": 0}, ValueError, "max_queue_size must be at least 1"),
        ({"max_queue_size": 1.5}, TypeError, "max_queue_size must be an int"),
        ({"device_id": "ABC"}, ValueError, "device_id must be 12 lowercase hex"),
    ],
)
def test_reporter_constructor_rejects_bad_arguments(kwargs, error, message):
    arguments = {"api_key": API_KEY, "api_base": "http://127.0.0.1:9", **kwargs}
    with pytest.raises(error, match=message):
        TelemetryReporter(**arguments)


def test_reporter_report_rejects_malformed_event_and_keeps_queue(api, make_reporter):
    reporter = make_reporter(api.url)
    with pytest.raises(ValueError, match="event_type"):
        reporter.report({"event_type": "oops", "model": "m", "engine": "e"})
    with pytest.raises(TypeError, match=r"metrics\.ttfc_ms must be a number"):
        reporter.report(event(metrics={"ttfc_ms": [1]}))
    assert reporter.queue_size == 0


def test_reporter_uses_environment_api_base(api, reporters, monkeypatch):
    monkeypatch.setenv("OCTOMIL_API_BASE", api.url + "/")
    reporter = TelemetryReporter(API_KEY, device_id=DEVICE)
    reporters.append(reporter)
    assert reporter.api_base == api.url


def test_reporter_default_api_base_is_octomil(reporters, monkeypatch):
    monkeypatch.delenv("OCTOMIL_API_BASE", raising=False)
    reporter = TelemetryReporter(API_KEY, device_id=DEVICE)
    reporters.append(reporter)
    assert reporter.api_base == "https://api.octomil.com"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_reporter_works_in_a_forked_child(api, make_reporter):
    reporter = make_reporter(api.url)
    reporter.report(event(1))
    reporter.flush()

    pid = os.fork()
    if pid == 0:  # the child: report, flush, exit without pytest's teardown
        code = 1
        try:
            reporter.report(event(2))
            code = 0 if reporter.flush(timeout_seconds=10) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert [e["metrics"]["output_tokens"] for e in api.events] == [1, 2]


def test_reporter_flushes_at_interpreter_exit(api, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        "from octomil.telemetry import TelemetryReporter\n"
        f"r = TelemetryReporter(api_key={API_KEY!r}, api_base={api.url!r},"
        " flush_interval_seconds=3600)\n"
        "r.report({'event_type': 'generation_completed', 'model': 'm', 'engine': 'echo'})\n"
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)

    assert [(e["event_type"], e["model"]) for e in api.events] == [("generation_completed", "m")]


def post_gzip(api, body: dict):
    import requests

    return requests.post(
        api.url + "/api/v1/telemetry/events",
        data=gzip.compress(json.dumps(body).encode()),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Encoding": "gzip"},
        timeout=5,
    )


def test_receiver_rejects_a_bad_batch_whole(api):
    good = {**event(1), "timestamp": "2026-02-19T14:32:01.442Z", "device_id": DEVICE}
    bad = {**good, "metrics": {"ttfc_ms": -1}}
    response = post_gzip(api, {"events": [good, bad]})
    assert response.status_code == 400
    assert "events[1]" in response.json()["error"]
    assert api.events == []


def test_receiver_answers_413_over_1_mib_uncompressed(api):
    padding = "x" * (1024 * 1024)
    response = post_gzip(api, {"events": [], "padding": padding})
    assert response.status_code == 413
    assert api.events == []


def test_reporter_event_over_1_mib_is_dropped_counted_and_told_why(api, make_reporter, caplog):
    reporter = make_reporter(api.url)
    reporter.report(event(1, model="m" * (1024 * 1024)))
    reporter.report(event(2))

    with caplog.at_level(logging.WARNING, logger="octomil_otel"):
        assert reporter.flush() is True
    assert [e["metrics"]["output_tokens"] for e in api.events] == [2]
    assert (reporter.delivered_events, reporter.dropped_events) == (1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "[telemetry] Dropped 1 events: an event over the API's 1 MiB"
    ]  # the reason was empty


def test_batches_prefix_each_event_and_split_at_1000():
    texts = [f'"n":{i}}}' for i in range(2500)]
    bodies = list(_transport.batches(texts, '{"device_id":"d",'))

    assert [count for _, count in bodies] == [1000, 1000, 500]
    parsed = [e for body, _ in bodies for e in json.loads(body)["events"]]
    assert parsed == [{"device_id": "d", "n": i} for i in range(2500)]


def test_batches_split_at_1_mib_and_leave_out_an_event_over_it(caplog):
    big = '"x":"' + "a" * 400_000 + '"}'
    huge = '"x":"' + "a" * (1024 * 1024) + '"}'
    with caplog.at_level(logging.DEBUG, logger="octomil_otel"):
        bodies = list(_transport.batches([big, big, huge, big, '"x":"b"}'], "{"))

    assert [count for _, count in bodies] == [2, 2]
    assert all(len(body) <= 1024 * 1024 for body, _ in bodies)
    assert [len(e["x"]) for body, _ in bodies for e in json.loads(body)["events"]] == [
        400_000, 400_000, 400_000, 1,
    ]  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == [
        f"[telemetry] an event of {len(huge)} bytes: over 1 MiB"
    ]  # a debug line: the reporter tells the drop


def test_reporter_mixes_exporter_events_and_reported_events_in_order(api, make_reporter):
    sent = []
    ingest = api.ingest

    def keeping(org, body, encoding):  # as sent: the receiver stores the key's org
        sent.extend(json.loads(gzip.decompress(body))["events"])
        return ingest(org, body, encoding)

    api.ingest = keeping
    reporter = make_reporter(api.url)
    reporter.submit(
        ['"event_type":"generation_started","timestamp":"2026-02-19T14:32:01.442Z",'
         '"model":"m","engine":"echo"}']
    )  # fmt: skip
    reporter.report(event(1, org_id="org_other", device_id="fedcba987654"))
    reporter.report(event(2))
    assert reporter.flush()

    assert len(api.events) == 3
    assert [(e["event_type"], e["device_id"], e["org_id"]) for e in sent] == [
        ("generation_started", DEVICE, ORG_ID),
        ("generation_completed", "fedcba987654", "org_other"),
        ("generation_completed", DEVICE, ORG_ID),
    ]


def test_reporter_submit_past_a_full_queue_keeps_the_newest(api, stalled_reporter):
    reporter, release = stalled_reporter
    for i in range(1, 4):
        reporter.report(event(i))
    reporter.submit(
        [
            '"event_type":"generation_completed","timestamp":"2026-02-19T14:32:01.442Z",'
            f'"model":"m","engine":"echo","metrics":{{"output_tokens":{i}}}}}'
            for i in range(100, 112)
        ]
    )  # 3 queued + 12 new into room for 10: the 5 oldest go, 3 queued and 2 new
    assert (reporter.queue_size, reporter.dropped_events) == (10, 5)

    release()
    assert reporter.flush() is True
    delivered = [e["metrics"]["output_tokens"] for e in api.events]
    assert delivered == [0, *range(102, 112)]
    assert (reporter.delivered_events, reporter.dropped_events) == (11, 5)
