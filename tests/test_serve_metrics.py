"""``octomil serve``'s ``/metrics`` without the SDK: the same series as through it, exactly."""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import pytest
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from octomil_otel import instruments as instruments_module
from octomil_otel import semconv
from octomil_otel.device import device_id
from octomil_otel.instruments import Instruments, Outcome
from octomil_otel.pipeline import telemetry_resource
from octomil_otel.serve import metrics as serve_metrics
from octomil_otel.serve.metrics import PrometheusMeterProvider, providers

RESOURCE = Resource.create({"service.name": "octomil", "device.id": "0123456789ab"})


def outcomes() -> list[Outcome]:
    """Requests of every shape the recorder reports: streamed or not, failed, with and
    without token counts, engine time, a queue wait and peak memory, on two models."""
    return [
        Outcome(
            attributes={
                semconv.GEN_AI_OPERATION_NAME: ("chat", "text_completion", "embeddings")[i % 3],
                semconv.GEN_AI_PROVIDER_NAME: "llamacpp",
                semconv.GEN_AI_REQUEST_MODEL: f"model-{i % 2}",
            },
            error_type="TimeoutError" if i % 7 == 0 else None,
            stream=i % 2 == 0,
            duration_s=0.0125 * i + 0.0005,
            latencies_ns=[250_000 * (j + 1) for j in range(i % 5)],
            input_tokens=i if i % 6 else None,
            output_tokens=(i % 5) or None,
            split_ms={semconv.OCTOMIL_QUEUE_MS: 0.5 * i}
            | ({semconv.OCTOMIL_DECODE_MS: 2.0 * i} if i % 3 else {}),
            peak_memory_bytes=1e6 * i if i % 4 == 0 else None,
        )
        for i in range(60)
    ]


def exposition(
    provider: metrics.MeterProvider, registry: CollectorRegistry, latest: bool, deferred: bool
) -> str:
    """/metrics after the same requests, and values the SDK ignores, went to ``provider``,
    scraped every seventh request too (a cumulative sum is added up per scrape)."""
    meter = metrics.get_meter("octomil_otel", "1.2.3", provider)
    instruments = Instruments(meter, latest=latest, deferred=deferred)
    for i, outcome in enumerate(outcomes()):
        instruments.record(outcome)
        if i % 7 == 0:
            generate_latest(registry)
    meter = provider.get_meter("octomil_otel", "1.2.3")
    histogram = meter.create_histogram("ignored", unit="s", explicit_bucket_boundaries_advisory=[1])
    counter = meter.create_counter("ignored.count")
    for value in (-1.0, math.nan, math.inf):
        histogram.record(value, {"a": "b"})
        counter.add(value, {"a": "b"})
    return generate_latest(registry).decode()


@pytest.mark.parametrize("deferred", [False, True], ids=["at-once", "at-each-scrape"])
@pytest.mark.parametrize("latest", [False, True], ids=["default-names", "latest-names"])
def test_metrics_are_the_sdk_exporters_series_exactly(latest, deferred):
    """Recorded as each request ends, or (``deferred``, as ``octomil serve`` does) kept and
    recorded many at a time when a scrape drains the ended requests: then the same lines,
    but the series of a batch come by set of attributes, not in the order each set was
    first recorded (the text's order, which Prometheus does not read)."""
    through_sdk, ours = CollectorRegistry(), CollectorRegistry()
    sdk = MeterProvider(
        resource=RESOURCE, metric_readers=[PrometheusMetricReader(registry=through_sdk)]
    )
    expected = exposition(sdk, through_sdk, latest, deferred=False)
    text = exposition(PrometheusMeterProvider(RESOURCE, registry=ours), ours, latest, deferred)

    if deferred:
        assert sorted(text.splitlines()) == sorted(expected.splitlines())
    else:
        assert text == expected
    duration = (
        "gen_ai_client_inference_duration_seconds_count" if latest
        else "gen_ai_client_operation_duration_seconds_count"
    )  # fmt: skip
    counts = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(duration)
    ]
    assert sum(counts) == (40 if latest else 60)  # the latest names count embeddings apart
    assert "ignored" not in text


def test_nothing_before_the_first_record_as_through_the_sdk():
    """No ``target_info`` either: the exporter would keep the first one it wrote, without
    the resource's labels."""
    through_sdk, ours = CollectorRegistry(), CollectorRegistry()
    sdk = MeterProvider(
        resource=RESOURCE, metric_readers=[PrometheusMetricReader(registry=through_sdk)]
    )
    provider = PrometheusMeterProvider(RESOURCE, registry=ours)
    for each in (sdk, provider):
        Instruments(metrics.get_meter("octomil_otel", "1.2.3", each), latest=False)
    assert generate_latest(ours) == generate_latest(through_sdk) == b""

    histogram = provider.get_meter("octomil_otel").create_histogram(
        "late", unit="s", explicit_bucket_boundaries_advisory=[1]
    )
    histogram.record(0.5, {"b": "2", "a": "1"})
    histogram.record(0.5, {"a": "1", "b": "2"})  # the same set, in another order
    lines = generate_latest(ours).decode().splitlines()
    (info,) = [x for x in lines if x.startswith("target_info")]
    labels = [f'{key.replace(".", "_")}="{value}"' for key, value in RESOURCE.attributes.items()]
    assert info == "target_info{" + ",".join(sorted(labels)) + "} 1.0"
    assert [x.rsplit(" ", 1)[1] for x in lines if x.startswith("late_seconds_count")] == ["2.0"]


def test_values_counted_in_batches_sum_as_the_sdk_adds_them_one_by_one():
    """Records wait and are counted many at a time (``_WAITING``), from two attribute
    orders of one set and from another set, interleaved: the sums are the SDK's to the
    last bit (floats of many magnitudes, whose sum depends on the order of additions), as
    are the counts and buckets, before and after a scrape."""
    texts = []
    for provider_of in (
        lambda registry: MeterProvider(
            resource=RESOURCE, metric_readers=[PrometheusMetricReader(registry=registry)]
        ),
        lambda registry: PrometheusMeterProvider(RESOURCE, registry=registry),
    ):
        registry = CollectorRegistry()
        histogram = (
            provider_of(registry)
            .get_meter("octomil_otel")
            .create_histogram(
                "batched", unit="s", explicit_bucket_boundaries_advisory=[1e-3, 1.0, 1e3]
            )
        )
        scrapes = []
        for i in range(3 * serve_metrics._WAITING + 7):
            amount = (i * 7919 % 1000) * 10.0 ** (i % 9 - 4) + 1 / (i + 3)
            attributes = ({"a": "1", "b": "2"}, {"b": "2", "a": "1"}, {"a": "3"})[i % 3]
            histogram.record(amount, attributes)
            if i == 400:
                scrapes.append(generate_latest(registry).decode())
        scrapes.append(generate_latest(registry).decode())
        texts.append(scrapes)

    through_sdk, ours = texts
    assert ours == through_sdk
    count = [line for line in ours[-1].splitlines() if line.startswith("batched_seconds_count")]
    assert [line.rsplit(" ", 1)[1] for line in count] == ["517.0", "258.0"]


def _durations(registry: CollectorRegistry) -> dict[str, str]:
    """The operation duration's count by model, as /metrics says it."""
    lines = generate_latest(registry).decode().splitlines()
    return {
        line.split('gen_ai_request_model="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
        for line in lines
        if line.startswith("gen_ai_client_operation_duration_seconds_count{")
    }


def test_the_recorders_thread_settles_kept_outcomes_when_as_many_as_a_batch_wait(monkeypatch):
    """Deferred, with a reader that never drains (an SDK's) and nothing put on ``ENDED``
    (requests recorded at once): nothing until ``SETTLE_EVERY`` are kept, then all of them,
    on the recorder's thread, through the SDK's instruments one value at a time."""
    monkeypatch.setattr(instruments_module, "SETTLE_EVERY", 3)
    registry = CollectorRegistry()
    sdk = MeterProvider(
        resource=RESOURCE, metric_readers=[PrometheusMetricReader(registry=registry)]
    )
    instruments = Instruments(
        metrics.get_meter("octomil_otel", "1.2.3", sdk), latest=False, deferred=True
    )
    chat = outcomes()[1]  # a text completion of model-1, answered
    instruments.record(chat)
    instruments.record(chat._replace(duration_s=0.5))
    assert _durations(registry) == {}

    instruments.record(chat._replace(duration_s=0.25))

    deadline = time.monotonic() + 10
    while _durations(registry) != {"model-1": "3.0"} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _durations(registry) == {"model-1": "3.0"}


def test_two_recorders_on_one_provider_add_in_the_order_requests_ended():
    """Sums the SDK's to the last bit: ``0.255 + 0.495 + 0.449`` in that order is 1.199,
    recorder by recorder 1.1989999999999998."""
    sums = []
    for deferred in (False, True):
        registry = CollectorRegistry()
        provider = (
            PrometheusMeterProvider(RESOURCE, registry=registry)
            if deferred
            else MeterProvider(
                resource=RESOURCE, metric_readers=[PrometheusMetricReader(registry=registry)]
            )
        )
        meter = metrics.get_meter("octomil_otel", "1.2.3", provider)
        first, second = (Instruments(meter, latest=False, deferred=deferred) for _ in range(2))
        chat = outcomes()[1]
        for recorder, duration_s in ((first, 0.255), (second, 0.495), (first, 0.449)):
            recorder.record(chat._replace(duration_s=duration_s))
        (line,) = [
            line
            for line in generate_latest(registry).decode().splitlines()
            if line.startswith("gen_ai_client_operation_duration_seconds_sum{")
        ]
        sums.append(line.rsplit(" ", 1)[1])
    assert sums == ["1.199", "1.199"]


def test_a_child_forked_while_outcomes_are_settled_starts_unlocked_and_empty():
    """The parent's settle, under way on another thread at the fork, neither blocks the
    child's nor counts in it."""
    registry = CollectorRegistry()
    provider = PrometheusMeterProvider(RESOURCE, registry=registry)
    instruments = Instruments(
        metrics.get_meter("octomil_otel", "1.2.3", provider), latest=False, deferred=True
    )
    chat = outcomes()[1]
    instruments.record(chat)  # kept by the parent
    with instruments_module._settling:  # as a settle on the recorder's thread
        pid = os.fork()
        if pid == 0:  # the child: exit 0 if its own request, alone, is counted at once
            signal.alarm(10)
            instruments.record(chat)
            os._exit(0 if _durations(registry) == {"model-1": "1.0"} else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _durations(registry) == {"model-1": "1.0"}  # the parent's own


def test_a_set_of_attributes_no_instrument_takes_loses_only_its_requests():
    """A kept request whose attributes hold a list (which the /metrics histograms refuse)
    is recorded with the others when a scrape drains them: it alone is lost."""
    registry = CollectorRegistry()
    provider = PrometheusMeterProvider(RESOURCE, registry=registry)
    instruments = Instruments(
        metrics.get_meter("octomil_otel", "1.2.3", provider), latest=False, deferred=True
    )
    chat = outcomes()[1]
    listed = {**chat.attributes, semconv.GEN_AI_REQUEST_MODEL: ["a", "list"]}
    other = {**chat.attributes, semconv.GEN_AI_REQUEST_MODEL: "model-9"}
    for attributes in (chat.attributes, listed, other, chat.attributes):
        instruments.record(chat._replace(attributes=attributes))

    assert _durations(registry) == {"model-1": "2.0", "model-9": "1.0"}


def test_records_from_many_threads_are_all_counted():
    registry = CollectorRegistry()
    provider = PrometheusMeterProvider(RESOURCE, registry=registry)
    first = provider.get_meter("octomil_otel").create_histogram(
        "shared", unit="s", explicit_bucket_boundaries_advisory=[0.5]
    )
    again = provider.get_meter("octomil_otel").create_histogram(  # the same instrument
        "shared", unit="s", explicit_bucket_boundaries_advisory=[0.5]
    )

    def record(histogram: metrics.Histogram) -> None:
        for i in range(20_000):
            histogram.record(i % 2, {"k": "v"})

    threads = [threading.Thread(target=record, args=(h,)) for h in (first, again, first, again)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = generate_latest(registry).decode().splitlines()
    bucket = [line for line in lines if line.startswith('shared_seconds_bucket{k="v",le="0.5"')]
    total = [line for line in lines if line.startswith("shared_seconds_count{")]
    assert [line.rsplit(" ", 1)[1] for line in bucket + total] == ["40000.0", "80000.0"]


@pytest.mark.parametrize(
    ("env", "sdk"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}, True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                "OTEL_METRICS_EXPORTER": "none",
            },
            False,
        ),
        ({"OTEL_SDK_DISABLED": "true"}, True),
    ],
    ids=["alone", "otlp", "otlp-metrics", "otlp-but-no-metrics", "sdk-disabled"],
)
def test_serve_keeps_the_sdk_where_something_else_reads_the_histograms(monkeypatch, env, sdk):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                 "OTEL_METRICS_EXPORTER", "OTEL_SDK_DISABLED"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(metrics, "get_meter_provider", metrics.NoOpMeterProvider)

    provider, readers = providers()
    try:
        if sdk:
            assert provider is None
            assert [type(r) for r in readers] == [PrometheusMetricReader]
        else:
            assert isinstance(provider, PrometheusMeterProvider) and readers == []
            provider.get_meter("octomil_otel").create_counter("requests").add(1)
            (scoped,) = provider.metrics_data().resource_metrics  # init()'s resource
            assert scoped.resource.attributes == telemetry_resource(device_id()).attributes
    finally:
        for reader in [*readers, *([provider.reader] if provider else [])]:
            reader.shutdown()  # out of the default registry


@pytest.mark.parametrize("its_own", [False, True], ids=["no-reader", "prometheus-reader"])
def test_serve_adds_its_reader_to_the_applications_meter_provider(monkeypatch, its_own):
    """Under ``opentelemetry-instrument``: init() keeps the application's SDK provider, and
    /metrics reads it, once: with ``OTEL_METRICS_EXPORTER=prometheus`` the configurator
    gave it a Prometheus reader already."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus" if its_own else "otlp")
    application = MeterProvider(metric_readers=[PrometheusMetricReader()] if its_own else [])
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: application)
    added: list[PrometheusMetricReader] = []

    class Reader(PrometheusMetricReader):  # kept, to be shut down: the provider does not
        def __init__(self) -> None:  # shut down a reader added with add_metric_reader
            super().__init__()
            added.append(self)

    monkeypatch.setattr(serve_metrics, "PrometheusMetricReader", Reader)

    try:
        assert providers(RESOURCE) == (None, [])
        assert len(added) == (0 if its_own else 1)
        histogram = application.get_meter("octomil_otel").create_histogram(
            "instrumented", unit="s", explicit_bucket_boundaries_advisory=[1]
        )
        histogram.record(0.5, {"a": "1"})
        lines = generate_latest(REGISTRY).decode().splitlines()
    finally:
        application.shutdown()  # its readers out of the default registry
        for reader in added:
            reader.shutdown()
    assert [x for x in lines if x.startswith("instrumented_seconds_count")] == [
        'instrumented_seconds_count{a="1",otel_scope_name="octomil_otel",'
        'otel_scope_schema_url="",otel_scope_version=""} 1.0'
    ]
