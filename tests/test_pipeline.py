"""From a recorded generation to events at a real API: the exporter, init(), settings."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

import octomil
import octomil_otel
from octomil_otel import chunk_latencies
from octomil_otel.config import Settings
from octomil_otel.device import device_id
from octomil_otel.export import OctomilSpanExporter, OctomilSpanProcessor, TelemetryReporter
from octomil_otel.generation import Recorder
from octomil_otel.pipeline import (
    DISABLED_MESSAGE,
    OCTOMIL_EXPORT_BATCH_RECORDS,
    OCTOMIL_EXPORT_DELAY_MILLIS,
)

from .conftest import API_KEY, ORG_ID, FakeClock

DEVICE = "a1b2c3d4e5f6"


@pytest.fixture
def pipeline(api, clock: FakeClock, meter_provider):
    """A recorder whose requests go through the Octomil exporter to the real local API."""
    reporter = TelemetryReporter(API_KEY, api.url, device_id=DEVICE)
    processor = BatchSpanProcessor(OctomilSpanExporter(reporter))
    provider = TracerProvider()
    recorder = Recorder(
        provider, meter_provider, octomil_processor=processor, clock=clock, wall_clock=clock.wall
    )

    def flush() -> None:  # a BatchSpanProcessor's force_flush ends at export()
        assert processor.force_flush()
        assert reporter.flush()

    yield flush, recorder
    processor.shutdown()
    provider.shutdown()


def test_exporter_delivers_a_generations_events_field_by_field(api, pipeline, clock):
    flush, recorder = pipeline
    generation = recorder.start(
        model="gemma-1b", engine="mlx", stream=True, request_id="req_7f8a9b0c", input_tokens=47
    )
    for gap in (142.3, 25.0, 26.6):
        clock.advance_ms(gap)
        generation.chunk()
    clock.advance_ms(6.2)
    generation.set_usage(output_tokens=3)
    generation.stop()
    flush()

    trace_id, span_id = api.events[0]["trace_id"], api.events[0]["span_id"]
    assert re.fullmatch("[0-9a-f]{32}", trace_id) and re.fullmatch("[0-9a-f]{16}", span_id)
    common = {
        "device_id": DEVICE,
        "org_id": ORG_ID,
        "model": "gemma-1b",
        "engine": "mlx",
        "request_id": "req_7f8a9b0c",
        "stream": True,
    }
    linked = {**common, "trace_id": trace_id, "span_id": span_id}  # first and last event
    assert api.events == [
        {
            **linked,
            "event_type": "generation_started",
            "timestamp": "2026-02-19T14:32:01.442Z",
            "metrics": {"input_tokens": 47},
        },
        {
            **common,
            "event_type": "chunk_produced",
            "timestamp": "2026-02-19T14:32:01.584Z",
            "metrics": {"chunk_index": 0, "chunk_latency_ms": 142.3},
        },
        {
            **common,
            "event_type": "chunk_produced",
            "timestamp": "2026-02-19T14:32:01.609Z",
            "metrics": {"chunk_index": 1, "chunk_latency_ms": 25.0},
        },
        {
            **common,
            "event_type": "chunk_produced",
            "timestamp": "2026-02-19T14:32:01.635Z",
            "metrics": {"chunk_index": 2, "chunk_latency_ms": 26.6},
        },
        {
            **linked,
            "event_type": "generation_completed",
            "timestamp": "2026-02-19T14:32:01.642Z",
            "metrics": {
                "ttfc_ms": 142.3,
                "throughput_tok_s": 3 / 0.2001,
                "total_duration_ms": 200.1,
                "input_tokens": 47,
                "output_tokens": 3,
                "chunk_latency_avg_ms": (25.0 + 26.6) / 2,
                "chunk_latency_p99_ms": 26.6,
            },
        },
    ]


def test_exporter_500_token_stream_gives_500_chunk_events(api, pipeline, clock):
    flush, recorder = pipeline
    generation = recorder.start(model="tiny", engine="llamacpp", stream=True)
    for _ in range(500):
        clock.advance_ms(2.0)
        generation.chunk()
    generation.set_usage(output_tokens=500)
    generation.stop()
    flush()

    chunks = [e for e in api.events if e["event_type"] == "chunk_produced"]
    assert [e["metrics"]["chunk_index"] for e in chunks] == list(range(500))
    assert {e["metrics"]["chunk_latency_ms"] for e in chunks} == {2.0}
    (completed,) = [e for e in api.events if e["event_type"] == "generation_completed"]
    assert completed["metrics"]["chunk_latency_p99_ms"] == 2.0
    assert completed["metrics"]["throughput_tok_s"] == 500.0


def test_exporter_delivers_the_rest_of_a_batch_around_a_malformed_span(
    api, recorder, octomil_records, caplog
):
    for request_id in ("req_00000001", "req_00000002"):
        generation = recorder.start(model="tiny", engine="echo", request_id=request_id)
        generation.chunk()
        generation.stop()
    first, second = octomil_records.get_finished_spans()
    malformed = ReadableSpan(  # a generation's duration and 3 chunks, but no model
        "chat ?",
        attributes={
            "octomil.total_duration_ms": 1.0,
            "octomil.chunk.latencies_ns": chunk_latencies.pack([1, 2, 3]),
        },
        start_time=1,
        end_time=2,
    )
    other = ReadableSpan("user work", attributes={"http.route": "/"}, start_time=1, end_time=2)
    nameless = _NamelessSpan("?", attributes={"octomil.total_duration_ms": 1.0})  # no times
    reporter = TelemetryReporter(API_KEY, api.url, device_id=DEVICE)
    exporter = OctomilSpanExporter(reporter)

    with caplog.at_level(logging.WARNING, logger="octomil_otel"):
        result = exporter.export([first, malformed, other, object(), nameless, second])
    assert reporter.flush()
    exporter.shutdown()

    assert result is SpanExportResult.FAILURE
    assert reporter.dropped_events == (2 + 3) + 2  # the malformed span's, the nameless one's
    assert [(e["request_id"], e["event_type"]) for e in api.events] == [
        ("req_00000001", "generation_started"),
        ("req_00000001", "chunk_produced"),
        ("req_00000001", "generation_completed"),
        ("req_00000002", "generation_started"),
        ("req_00000002", "chunk_produced"),
        ("req_00000002", "generation_completed"),
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "octomil_otel: could not convert span 'chat ?' to events; dropped it",
        "octomil_otel: could not convert span None to events; dropped it",  # not a span
        "octomil_otel: could not convert span None to events; dropped it",  # its name raises
    ]


class _NamelessSpan(ReadableSpan):
    @property
    def name(self) -> str:
        raise RuntimeError("no name")


class _Unreadable:
    """An attribute value that cannot even be compared."""

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("not comparable")


class _Unmeasurable(str):
    """Latencies text that cannot even be measured."""

    def __len__(self) -> int:
        raise RuntimeError("no length")


def test_exporter_counts_what_it_cannot_encode_and_still_delivers_the_rest(
    api, recorder, octomil_records
):
    generation = recorder.start(model="tiny", engine="echo", request_id="req_00000001")
    generation.chunk()
    generation.stop()
    (good,) = octomil_records.get_finished_spans()
    never_ended = ReadableSpan(  # a generation with 2 chunks, but no end time
        "chat tiny",
        attributes={**good.attributes, "octomil.chunk.latencies_ns": chunk_latencies.pack([1, 2])},
        start_time=good.start_time,
    )
    unreadable = ReadableSpan(  # too malformed to tell how many events it would have made
        "chat ?",
        attributes={"octomil.total_duration_ms": 1.0, "gen_ai.operation.name": _Unreadable()},
        start_time=1,
        end_time=2,
    )
    unmeasurable = ReadableSpan(
        "chat tiny",
        attributes={**good.attributes, "octomil.chunk.latencies_ns": _Unmeasurable("00")},
        start_time=good.start_time,
        end_time=good.end_time,
    )
    reporter = TelemetryReporter(API_KEY, api.url, device_id=DEVICE)
    exporter = OctomilSpanExporter(reporter)

    result = exporter.export([never_ended, unreadable, unmeasurable, good])
    assert reporter.flush()
    exporter.shutdown()

    assert result is SpanExportResult.FAILURE
    # the one never ended, 2 + 2; the unmeasurable one's first and last; none told for
    # the unreadable one
    assert reporter.dropped_events == (2 + 2) + 2
    assert [e["event_type"] for e in api.events] == [
        "generation_started",
        "chunk_produced",
        "generation_completed",
    ]


def test_exporter_export_after_shutdown_fails_and_counts_what_it_drops(
    api, recorder, octomil_records
):
    generation = recorder.start(model="tiny", engine="echo")
    generation.chunk()
    generation.stop()
    reporter = TelemetryReporter(API_KEY, api.url, device_id=DEVICE)
    exporter = OctomilSpanExporter(reporter)
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export(octomil_records.get_finished_spans()) is SpanExportResult.FAILURE
    assert reporter.dropped_events == 3
    assert api.events == []


def test_init_extends_the_users_tracer_provider(
    api, fresh_init, tracer_provider, span_exporter, meter_provider
):
    telemetry = octomil.init(
        api_key=API_KEY,
        api_base=api.url,
        device_id=DEVICE,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    assert telemetry.tracer_provider is tracer_provider

    generation = telemetry.recorder.start(model="tiny", engine="echo")
    generation.chunk()
    generation.stop()
    telemetry.flush()

    assert [s.name for s in span_exporter.get_finished_spans()] == ["chat tiny"]
    assert [e["event_type"] for e in api.events] == [
        "generation_started",
        "chunk_produced",
        "generation_completed",
    ]


def test_init_twice_keeps_the_first(api, fresh_init, tracer_provider, meter_provider, caplog):
    """And says which of the second call's settings are not used (opentelemetry-instrument's
    configurator calls init() before ``octomil serve --api-key`` does)."""
    first = octomil_otel.init(
        api_key=API_KEY, api_base=api.url, device_id=DEVICE,
        tracer_provider=tracer_provider, meter_provider=meter_provider,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="octomil_otel"):
        second = octomil_otel.init(
            api_key="another", api_base=api.url, tracer_provider=tracer_provider
        )
        assert octomil_otel.init() is first
        assert octomil_otel.init(api_key=API_KEY, api_base=api.url + "/") is first  # the same
    assert second is first
    assert [r.getMessage() for r in caplog.records] == [
        "octomil_otel: telemetry was started before (opentelemetry-instrument starts it first); "
        "api_key given here not used: set OCTOMIL_API_KEY in the environment instead"
    ]
    # the test's own processor only: the Octomil one is fed by the recorder, not the provider
    assert len(tracer_provider._active_span_processor._span_processors) == 1


def test_init_without_key_logs_disabled_and_sends_nothing(
    fresh_init, tracer_provider, meter_provider, monkeypatch, caplog
):
    monkeypatch.delenv("OCTOMIL_API_KEY", raising=False)
    with caplog.at_level(logging.INFO, logger="octomil_otel"):
        telemetry = octomil.init(tracer_provider=tracer_provider, meter_provider=meter_provider)

    assert telemetry.reporter is None
    assert [r.getMessage() for r in caplog.records] == [DISABLED_MESSAGE]
    assert DISABLED_MESSAGE == (
        "[telemetry] Disabled: no API key provided, set --api-key or the "
        "OCTOMIL_API_KEY environment variable."
    )


def test_a_key_after_a_first_init_without_one_starts_reporting(
    api, fresh_init, tracer_provider, meter_provider, monkeypatch, caplog
):
    """opentelemetry-instrument's configurator calls init() before the application (or
    ``octomil serve --api-key``) can give the key: the first init() with one reports."""
    monkeypatch.delenv("OCTOMIL_API_KEY", raising=False)
    first = octomil.init(tracer_provider=tracer_provider, meter_provider=meter_provider)
    before = first.recorder.start(model="tiny", engine="echo")
    assert [r.getMessage() for r in caplog.records] == [DISABLED_MESSAGE]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="octomil_otel"):
        second = octomil.init(api_key=API_KEY, api_base=api.url, device_id=DEVICE)
        assert octomil.init(api_key="another", api_base=api.url) is first
    before.stop()  # started before: reported, as its record is made after
    generation = first.recorder.start(model="tiny", engine="echo")
    generation.stop()
    assert first.flush()

    assert second is first
    assert first.reporter is not None and first.reporter.api_base == api.url
    assert [r.getMessage() for r in caplog.records] == [
        f"[telemetry] Initialized: device_id={DEVICE}, api_base={api.url}",
        "octomil_otel: telemetry was started before (opentelemetry-instrument starts it first); "
        "api_key given here not used: set OCTOMIL_API_KEY in the environment instead",
    ]
    assert [e["event_type"] for e in api.events] == [
        "generation_started", "chunk_produced", "generation_completed"
    ] * 2  # fmt: skip


def test_init_takes_key_and_base_from_environment(
    api, fresh_init, tracer_provider, meter_provider, monkeypatch, caplog
):
    monkeypatch.setenv("OCTOMIL_API_KEY", API_KEY)
    monkeypatch.setenv("OCTOMIL_API_BASE", api.url)
    with caplog.at_level(logging.INFO, logger="octomil_otel.telemetry"):
        telemetry = octomil.init(
            device_id=DEVICE, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    assert telemetry.reporter.api_base == api.url
    assert caplog.records[0].getMessage() == (
        f"[telemetry] Initialized: device_id={DEVICE}, api_base={api.url}"
    )


def test_settings_explicit_beats_environment_beats_default(monkeypatch):
    monkeypatch.setenv("OCTOMIL_API_KEY", "env-key")
    monkeypatch.setenv("OCTOMIL_ORG_ID", "org_env")
    monkeypatch.delenv("OCTOMIL_API_BASE", raising=False)
    assert Settings.resolve() == Settings("env-key", "org_env", "https://api.octomil.com")
    assert Settings.resolve(api_key="k", org_id="org_x", api_base="http://h:1/") == Settings(
        "k", "org_x", "http://h:1"
    )
    assert "env-key" not in repr(Settings.resolve())


def test_device_id_is_stable_12_hex():
    first = device_id()
    assert re.fullmatch("[0-9a-f]{12}", first)
    assert device_id() == first


def test_exporter_burst_larger_than_the_queue_loses_nothing(api, clock, meter_provider):
    """One export can carry hundreds of spans; the exporter waits for room, not drops."""
    reporter = TelemetryReporter(API_KEY, api.url, device_id=DEVICE, max_queue_size=100)
    processor = BatchSpanProcessor(OctomilSpanExporter(reporter), schedule_delay_millis=60_000)
    recorder = Recorder(
        TracerProvider(),
        meter_provider,
        octomil_processor=processor,
        clock=clock,
        wall_clock=clock.wall,
    )
    for _ in range(40):
        generation = recorder.start(model="tiny", engine="echo", stream=True)
        for _ in range(48):
            clock.advance_ms(1.0)
            generation.chunk()
        generation.stop()
    assert processor.force_flush()  # one export of 40 spans: 2,000 events into a queue of 100
    assert reporter.flush()
    processor.shutdown()

    assert len(api.events) == 40 * 50
    assert reporter.dropped_events == 0


def test_processor_queue_overflow_drops_the_oldest_requests_and_counts_their_events(
    api, clock, meter_provider
):
    """More requests finishing than the exporter takes: the oldest queued go, counted."""
    exporting, release = threading.Event(), threading.Event()

    class SlowExporter(OctomilSpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            exporting.set()
            release.wait(30)
            return super().export(spans)

    reporter = TelemetryReporter(API_KEY, api.url, device_id=DEVICE)
    processor = OctomilSpanProcessor(
        SlowExporter(reporter), max_queue_size=2, max_export_batch_size=1
    )
    recorder = Recorder(
        TracerProvider(), meter_provider, octomil_processor=processor, clock=clock,
        wall_clock=clock.wall,
    )  # fmt: skip
    ids = []
    for chunks in range(1, 6):  # request k: k chunks, k + 2 events
        generation = recorder.start(model="tiny", engine="echo", stream=True)
        ids.append(generation.request_id)
        for _ in range(chunks):
            clock.advance_ms(1.0)
            generation.chunk()
        generation.stop()
        if chunks == 1:  # the worker holds the first; the queue holds two more
            assert exporting.wait(30)
    release.set()
    assert processor.force_flush()
    processor.shutdown()

    assert reporter.dropped_events == (2 + 2) + (3 + 2)  # requests 2 and 3, the oldest
    assert sorted({e["request_id"] for e in api.events}) == sorted([ids[0], ids[3], ids[4]])
    assert len(api.events) == 3 + 6 + 7


def test_exporter_drops_alone_a_request_that_breaks_the_contract(api, fresh_init, caplog):
    telemetry = octomil.init(api_key=API_KEY, api_base=api.url, device_id=DEVICE)
    with caplog.at_level(logging.WARNING, logger="octomil_otel"):
        octomil.generate(model="echo", prompt="good one")
        octomil.generate(model="", engine="echo", prompt="no model name")  # still answered
        octomil.generate(model="echo", prompt="good two")
        assert telemetry.flush()

    assert [(e["model"], e["event_type"]) for e in api.events] == [
        ("echo", "generation_started"),
        ("echo", "chunk_produced"),
        ("echo", "generation_completed"),
    ] * 2
    assert [r.getMessage() for r in caplog.records] == [
        "octomil_otel: could not convert span 'text_completion ' to events; dropped it"
    ]
    assert telemetry.reporter.dropped_events == 3  # its started, chunk and completed


def test_a_request_is_sent_within_the_processors_delay_without_a_flush(api, fresh_init):
    """Fewer requests than a batch still go: the processor's delay, then the reporter's
    interval, bound how long events wait."""
    octomil.init(api_key=API_KEY, api_base=api.url, device_id=DEVICE, flush_interval_seconds=0.05)
    assert (OCTOMIL_EXPORT_DELAY_MILLIS, OCTOMIL_EXPORT_BATCH_RECORDS) == (1000, 96)
    octomil.generate(model="echo", prompt="one two")
    deadline = time.monotonic() + 20
    while len(api.events) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e["event_type"] for e in api.events] == [
        "generation_started", "chunk_produced", "generation_completed"
    ]  # fmt: skip


def test_flush_and_shutdown_are_bounded_when_the_api_hangs(silent_url, fresh_init):
    telemetry = octomil.init(api_key=API_KEY, api_base=silent_url, org_id=ORG_ID, device_id=DEVICE)
    for _ in range(30):  # more events than the queue holds: the exporter waits for room
        list(octomil.generate(model="echo", prompt=" ".join(["w"] * 200), stream=True))

    started = time.monotonic()
    assert telemetry.flush(timeout_seconds=1.0) is False
    flushed = time.monotonic()
    octomil_otel.shutdown()
    # generous margins on a shared machine; unbounded, these took 10 s and 20 s
    assert flushed - started < 4.0
    assert time.monotonic() - flushed < 13.0


def test_api_key_that_cannot_be_a_header_is_refused_without_echoing_it(api, fresh_init):
    with pytest.raises(ValueError) as refused:
        octomil.init(api_key="SECRETKEY\nX-Injected: 1", api_base=api.url)
    assert str(refused.value) == (
        "api_key must be printable ASCII without spaces: it travels in an HTTP header"
    )


def test_streams_left_open_when_the_program_exits_are_reported_cancelled(api):
    """A stream read in part, and one never read, still open at exit: the interpreter closes
    them only after the exporter stopped, so shutdown ends them first."""
    import subprocess
    import sys

    code = f"""
import octomil

octomil.init(api_key={API_KEY!r}, api_base={api.url!r}, device_id={DEVICE!r})
stream = octomil.generate(model="echo", prompt="one two three four", stream=True)
for i, chunk in enumerate(stream):
    if i == 1:
        break
never_read = octomil.generate(model="echo", prompt="never read", stream=True)
"""
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)

    by_request: dict[str, list[str]] = {}
    for event in api.events:
        by_request.setdefault(event["request_id"], []).append(event["event_type"])
    ends = [e["metrics"] for e in api.events if e["event_type"] == "generation_failed"]
    assert sorted(by_request.values()) == [
        ["generation_started", "chunk_produced", "chunk_produced", "generation_failed"],
        ["generation_started", "generation_failed"],
    ]
    assert [m["error_type"] for m in ends] == ["cancelled", "cancelled"]


def test_a_forked_childs_shutdown_leaves_the_parents_open_stream_alone(api):
    """The child inherits the parent's open requests; ending them there would report the
    parent's stream twice, once cancelled."""
    import subprocess
    import sys

    code = f"""
import os
import octomil

octomil.init(api_key={API_KEY!r}, api_base={api.url!r}, device_id={DEVICE!r})
stream = octomil.generate(model="echo", prompt="one two three", stream=True)
next(stream)
child = os.fork()
if child == 0:
    octomil.shutdown()
    os._exit(0)
os.waitpid(child, 0)
print(len(list(stream)) + 1)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout == "4\n"  # three words and the finishing chunk
    assert [event["event_type"] for event in api.events] == [
        "generation_started", *["chunk_produced"] * 3, "generation_completed"
    ]  # fmt: skip


def test_init_after_shutdown_records_again(api):
    """The providers the first ``init()`` made stay global but shut down; the second makes
    its own, so its histograms and spans are recorded (a process of its own: global
    providers are set once per process)."""
    import subprocess
    import sys

    code = f"""
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import octomil

def durations(reader):
    data = reader.get_metrics_data()
    return [point.count for rm in data.resource_metrics for sm in rm.scope_metrics
            for metric in sm.metrics if metric.name == "gen_ai.client.operation.duration"
            for point in metric.data.data_points]

for round in range(2):
    reader = InMemoryMetricReader()
    telemetry = octomil.init(api_key={API_KEY!r}, api_base={api.url!r}, metric_readers=[reader])
    octomil.generate(model="echo", prompt="hello there")
    print(durations(reader), telemetry.flush())
    octomil.shutdown()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout == "[1] True\n[1] True\n"
    assert "shutdown" not in done.stderr.lower()
    assert len({event["request_id"] for event in api.events}) == 2


def test_the_setups_own_shutdown_is_the_modules_and_runs_once(api):
    """``telemetry.shutdown()`` on what ``init()`` returned, then the program's exit: nothing
    is stopped twice (the exit used to stop it again: two warnings), and ``init()`` may run
    again in between, as after ``octomil.shutdown()``."""
    import subprocess
    import sys

    code = f"""
import octomil
from octomil_otel import pipeline

first = octomil.init(api_key={API_KEY!r}, api_base={api.url!r}, instrument=["llamacpp"])
octomil.generate(model="echo", prompt="hello there")
first.shutdown()
first.shutdown()
print(first.flush())
print(pipeline.current() is None)
second = octomil.init(api_key={API_KEY!r}, api_base={api.url!r})
print(second is not first)
octomil.generate(model="echo", prompt="hello again")
second.shutdown()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout == "True\nTrue\nTrue\n"
    assert "already uninstrumented" not in done.stderr
    assert "only be called once" not in done.stderr
    assert len({event["request_id"] for event in api.events}) == 2


@pytest.mark.parametrize(
    ("instrument", "error", "message"),
    [("llamacpp", TypeError, "a list of engine names such as \\['llamacpp'\\], got 'llamacpp'"),
     (["llama_cpp"], ValueError, "no engine is named .llama_cpp.; the engines are llamacpp, mlx"),
     (3, TypeError, "got 3")],
    ids=["a-name-alone", "a-name-no-engine-has", "a-number"],
)  # fmt: skip
def test_init_refuses_an_instrument_value_that_would_record_nothing(
    fresh_init, instrument, error, message
):
    """Before, each of these instrumented no engine, without a word."""
    with pytest.raises(error, match=message):
        octomil.init(instrument=instrument)
    assert octomil_otel.pipeline.current() is None


def test_a_multiprocessing_childs_requests_are_sent_as_it_ends(api):
    """multiprocessing ends a forked child with ``os._exit``, not ``atexit``: its requests
    were lost unless it lived longer than the flush interval."""
    import subprocess
    import sys

    code = f"""
import multiprocessing
import octomil

def work():
    for word in ("one two", "three"):
        octomil.generate(model="echo", prompt=word)

if __name__ == "__main__":
    octomil.init(api_key={API_KEY!r}, api_base={api.url!r}, device_id={DEVICE!r})
    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join(30)
    print(child.exitcode)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout == "0\n"
    answers = [e["metrics"] for e in api.events if e["event_type"] == "chunk_produced"]
    assert sorted(m["output_tokens"] for m in answers) == [1, 2]
    assert [e["event_type"] for e in api.events].count("generation_completed") == 2
