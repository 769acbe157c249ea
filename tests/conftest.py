"""Shared fixtures: in-memory providers, a controlled clock, a real local API."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import octomil_otel
from octomil_otel import chunk_latencies
from octomil_otel.export import events
from octomil_otel.generation import Recorder
from octomil_otel.receiver import Receiver

API_KEY = "sk-test-0123456789abcdef"
ORG_ID = "org_abc123"
WALL0_NS = 1_771_511_521_442_000_000  # 2026-02-19T14:32:01.442Z


class FakeClock:
    """Monotonic and wall clocks that move only when a test says so."""

    def __init__(self) -> None:
        self.mono_ns = 5_000_000_000

    def __call__(self) -> int:
        return self.mono_ns

    def wall(self) -> int:
        return WALL0_NS + (self.mono_ns - 5_000_000_000)

    def advance_ms(self, ms: float) -> None:
        self.mono_ns += round(ms * 1_000_000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(span_limits=SpanLimits())
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[metric_reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def octomil_records() -> InMemorySpanExporter:
    """Where the recorder fixture's Octomil records (the events' source) go."""
    return InMemorySpanExporter()


@pytest.fixture
def make_recorder(
    tracer_provider: TracerProvider,
    meter_provider: MeterProvider,
    clock: FakeClock,
    octomil_records: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Recorder]:
    """A recorder on the test's providers and clock, created under ``environment`` (a
    variable set to ``None`` is removed): recorders read their settings when created."""

    def make(environment: dict[str, str | None] | None = None, **kwargs: Any) -> Recorder:
        for name, value in (environment or {}).items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return Recorder(
            tracer_provider,
            meter_provider,
            octomil_processor=SimpleSpanProcessor(octomil_records),
            clock=clock,
            wall_clock=clock.wall,
            **kwargs,
        )

    return make


@pytest.fixture
def recorder(make_recorder: Callable[..., Recorder]) -> Recorder:
    return make_recorder()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """An API that accepts connections (the kernel does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def fresh_init() -> Iterator[None]:
    """No ``init()`` before the test, and none left after it."""
    octomil_otel.shutdown()
    yield
    octomil_otel.shutdown()


@pytest.fixture
def generate_cleanup(fresh_init) -> Iterator[None]:
    """``octomil.generate`` keeps its models loaded and their engines instrumented: after
    the test, neither is left for the next one."""
    from octomil_otel import inference
    from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor
    from octomil_otel.instrumentation.mlx import MLXInstrumentor

    yield
    inference._loaded.clear()
    LlamaCppInstrumentor().uninstrument()
    MLXInstrumentor().uninstrument()


@pytest.fixture
def api() -> Iterator[Receiver]:
    """A real Octomil API on 127.0.0.1 that knows one key."""
    with Receiver({API_KEY: ORG_ID}) as receiver:
        yield receiver


def histogram_points(reader: InMemoryMetricReader) -> dict[str, list]:
    """Metric name -> its histogram data points."""
    data = reader.get_metrics_data()
    points: dict[str, list] = {}
    if data is None:
        return points
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory):
    from .tiny_models import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def tiny_mlx_dir(tmp_path_factory: pytest.TempPathFactory):
    from .tiny_models import write_tiny_mlx_model

    return write_tiny_mlx_model(tmp_path_factory.mktemp("mlx") / "tiny-mlx")


def latencies(span) -> tuple[float, ...]:
    """Every chunk's latency recorded on a generation span (text) or an Octomil record (the
    ints themselves), in milliseconds."""
    recorded = span.attributes.get("octomil.chunk.latencies_ns", "")
    ns = chunk_latencies.unpack(recorded) if type(recorded) is str else recorded
    return tuple(n / 1e6 for n in ns)


def decoded_events(span) -> list[dict]:
    """The documented events ``events.encode`` makes of a span, as the API would parse them
    (without ``device_id`` and ``org_id``, which the reporter adds)."""
    return [json.loads("{" + text) for text in events.encode(span)]


def only_span(exporter: InMemorySpanExporter):
    (span,) = exporter.get_finished_spans()
    return span


def spans_by_name(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]
