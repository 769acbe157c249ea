"""``octomil serve``'s ``/metrics``: the recorder's histograms without the SDK's cost per record.

Through the OpenTelemetry SDK, one histogram record costs ~78,000 instructions with the
Prometheus reader behind it (opentelemetry-sdk 1.45: each record cleans, copies and hashes
its attributes, and asks the exemplar filter), and a served request records about six: more
than half of all that telemetry added to a request of ``octomil serve echo``
(``bench/callgrind_serve.py``). Here values are appended to their point's queue a list
at a time (``record_all``: ``Instruments`` records many requests at once) and counted many
at a time. The OpenTelemetry Prometheus exporter still writes ``/metrics``: its reader is
handed, at each scrape, the ``MetricsData`` the SDK would have collected (cumulative points
per attribute set, the instruments' own buckets, the same resource and instrumentation
scope), so the series, their names, labels and values are the exporter's.

Used only where nothing else reads the histograms: with OTLP forwarding of metrics, an
SDK MeterProvider set up by the application (``opentelemetry-instrument``) or
``OTEL_SDK_DISABLED``, ``octomil serve`` keeps the SDK (``providers``).
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import os
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import Attributes
from prometheus_client import REGISTRY, CollectorRegistry

from octomil_otel.device import device_id
from octomil_otel.ended_requests import ENDED, Drains
from octomil_otel.export.otlp import exporters, forwarding
from octomil_otel.pipeline import telemetry_resource

_CUMULATIVE = AggregationTemporality.CUMULATIVE
_INFINITY = math.inf  # a module constant: read once per record, not looked up in math
_RECORDS_BEGUN = itertools.count()


def providers(
    resource: Resource | None = None,
) -> tuple[metrics.MeterProvider | None, list[MetricReader]]:
    """What ``init()`` gets for ``/metrics``: ``(meter_provider, metric_readers)``; the
    provider's ``resource`` by default the one ``init()`` gives its own providers.

    The aggregating provider below when nothing but ``/metrics`` reads the histograms;
    otherwise no provider (``init()`` extends or creates the SDK's) and the exporter's own
    reader, added at once to an SDK provider the application set up (unless
    ``OTEL_METRICS_EXPORTER`` gave it one already). With ``OTEL_SDK_DISABLED`` the SDK
    records nothing, and ``/metrics`` has no OpenTelemetry series."""
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):  # the application's: init() adds no reader to it
        if "prometheus" not in (exporters("metrics") or []):  # else the configurator's serves
            current.add_metric_reader(PrometheusMetricReader())
        return None, []
    if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true" or forwarding("metrics"):
        return None, [PrometheusMetricReader()]
    return PrometheusMeterProvider(resource or telemetry_resource(device_id())), []


class PrometheusMeterProvider(metrics.NoOpMeterProvider, Drains):
    """Meters whose histograms and counters aggregate in place, read by the Prometheus
    exporter (into ``prometheus_client``'s default registry) at each scrape, which first
    records the requests that ended before it (``ended_requests``). Other kinds of
    instrument are no-ops: the recorder creates none."""

    def __init__(self, resource: Resource, registry: CollectorRegistry = REGISTRY) -> None:
        self._resource = resource
        self._meters: dict[tuple[str, str | None, str | None], _Meter] = {}
        self._lock = threading.Lock()
        self.reader = _Reader(self, registry)

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> metrics.Meter:
        with self._lock:  # one meter per scope, as the SDK: its instruments are shared
            meter = self._meters.get((name, version, schema_url))
            if meter is None:
                meter = self._meters[name, version, schema_url] = _Meter(
                    InstrumentationScope(name, version, schema_url, attributes)
                )
            return meter

    def metrics_data(self) -> MetricsData | None:
        """What an SDK MeterProvider's reader would collect now: ``None`` before anything
        was recorded (the exporter then writes no ``target_info`` either)."""
        ENDED.drain()
        now = time.time_ns()
        with self._lock:
            meters = list(self._meters.values())
        scopes = []
        for meter in meters:  # its instruments in the order each began to record, as the SDK
            instruments = sorted(meter.instruments(), key=lambda i: i.first_record)
            collected = [m for m in (i.collect(now) for i in instruments) if m]
            if collected:
                scopes.append(ScopeMetrics(meter.scope, collected, meter.scope.schema_url))
        if not scopes:
            return None
        return MetricsData([ResourceMetrics(self._resource, scopes, self._resource.schema_url)])


class _Reader(PrometheusMetricReader):
    """The exporter's reader, fed by the provider above instead of by an SDK collection
    (it is registered with no SDK MeterProvider)."""

    def __init__(self, provider: PrometheusMeterProvider, registry: CollectorRegistry) -> None:
        super().__init__(registry=registry)
        self._provider = provider

    def collect(self, timeout_millis: float = 10_000) -> None:
        self._receive_metrics(self._provider.metrics_data())


class _Meter(metrics.NoOpMeter):
    def __init__(self, scope: InstrumentationScope) -> None:
        super().__init__(scope.name, scope.version, scope.schema_url)
        self.scope = scope
        self._instruments: dict[str, _Histogram | _Counter] = {}
        self._lock = threading.Lock()

    def instruments(self) -> list[_Histogram | _Counter]:
        with self._lock:
            return list(self._instruments.values())

    def _get(self, name: str, create: Any) -> Any:
        with self._lock:  # an instrument created twice is the first one, as in the SDK
            instrument = self._instruments.get(name)
            if instrument is None:
                instrument = self._instruments[name] = create()
            return instrument

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> metrics.Histogram:
        if explicit_bucket_boundaries_advisory is None:
            raise TypeError(f"{name}: the recorder's histograms give their buckets")
        bounds = tuple(explicit_bucket_boundaries_advisory)
        return self._get(name, lambda: _Histogram(name, unit, description, bounds))

    def create_counter(self, name: str, unit: str = "", description: str = "") -> metrics.Counter:
        return self._get(name, lambda: _Counter(name, unit, description))


class _Instrument:
    """Points by attribute set (its items sorted by key, as the SDK tells sets apart), each
    a flat list of numbers. Values are keyed as they are: the recorder's are strings; of
    other types, 1, 1.0 and True would be one series (the SDK keys their types too), and a
    list is refused."""

    def __init__(self, name: str, unit: str, description: str) -> None:
        self.name, self.unit, self.description = name, unit, description
        self._start = time.time_ns()
        self._points: dict[tuple[tuple[str, Any], ...], list[float]] = {}
        self._by_items: dict[tuple[tuple[str, Any], ...], Any] = {}
        """What each instrument keeps of a point, by the attributes' items in the order
        given: a request's attributes come in one order, and sorting them cost more than
        the record."""
        self._lock = threading.Lock()
        self.first_record = math.inf

    def _point(self, items: tuple[tuple[str, Any], ...], empty: list[float]) -> list[float]:
        """The point of an attribute set not seen in this order yet (``empty`` itself if
        the set is new); with the lock held."""
        key = tuple(sorted(items))
        point = self._points.get(key)
        if point is None:
            if not self._points:
                self.first_record = next(_RECORDS_BEGUN)
            point = self._points[key] = empty
        return point

    _SINCE: int
    """Where a point keeps its sum since the last collection; the total so far is next."""

    def collect(self, now: int) -> Metric | None:
        since, total = self._SINCE, self._SINCE + 1
        with self._lock:
            self._settle()
            for point in self._points.values():  # the SDK's order of additions, exactly
                point[total] = point[since] + point[total]
                point[since] = 0
            points = [(dict(key), list(point)) for key, point in self._points.items()]
        if not points:
            return None
        return Metric(self.name, self.description, self.unit, self._data(points, now))

    def _settle(self) -> None:
        """Count what records left waiting; with the lock held."""

    def _data(self, points: list[tuple[dict[str, Any], list[float]]], now: int) -> Any:
        raise NotImplementedError


class _Waiting(deque):  # type: ignore[type-arg]
    """A histogram point's values recorded and not counted yet, in the order recorded."""

    def __init__(self, point: list[float]) -> None:
        super().__init__()
        self.point = point


_WAITING = 256
"""Values a point lets wait, at most, before the record that reaches it counts them."""


class _Histogram(_Instrument, metrics.Histogram):
    """The SDK's explicit-bucket histogram: bucket ``i`` counts values ``<= bounds[i]``
    (and above ``bounds[i-1]``); a negative or non-finite value is ignored, as the SDK does.

    A record appends its values to its point's ``_Waiting``, without the lock (a deque's
    appends need none); a collection, or the record that makes ``_WAITING`` of them, counts
    them in the order recorded, so that a sum is the SDK's to the last bit. The lock, the
    bucket search and the point's updates then run once for many values, at C speed.
    """

    def __init__(self, name: str, unit: str, description: str, bounds: tuple[float, ...]):
        super().__init__(name, unit, description)
        self._bounds = bounds

    _SINCE = 3

    def record(self, amount: float, attributes: Attributes = None, context: Any = None) -> None:
        self.record_all((amount,), attributes)

    def record_all(self, amounts: Sequence[float], attributes: Attributes = None) -> None:
        """``record`` each of ``amounts``, in order, in one call (``Instruments``)."""
        if not amounts:
            return
        # sum: NaN or infinite if any is (or if finite ones overflow: then checked each)
        if not (min(amounts) >= 0 and sum(amounts) < _INFINITY):
            amounts = [amount for amount in amounts if 0 <= amount < _INFINITY]
            if not amounts:
                return
        items = tuple(attributes.items()) if attributes else ()
        waiting = self._by_items.get(items)
        if waiting is None:
            with self._lock:
                self._first(items, amounts[0])
                waiting = self._by_items[items]
            amounts = amounts[1:]
        waiting.extend(amounts)
        if len(waiting) >= _WAITING:
            with self._lock:
                self._count(waiting)

    def _first(self, items: tuple[tuple[str, Any], ...], amount: float) -> None:
        """A value of attributes in an order not seen yet; with the lock held. Counted at
        once, so that no point is ever collected without a value."""
        waiting = self._by_items.get(items)  # another thread's record made it meanwhile
        if waiting is None:
            # count, min, max, sum since the last collection, sum, buckets
            empty = [0, _INFINITY, -_INFINITY, 0, 0] + [0] * (len(self._bounds) + 1)
            point = self._point(items, empty)
            # the set's other orders share its one queue: its values are counted in order
            waiting = next((w for w in self._by_items.values() if w.point is point), None)
            if waiting is None:
                waiting = _Waiting(point)
            self._by_items[items] = waiting
        waiting.append(amount)
        self._count(waiting)

    def _count(self, waiting: _Waiting) -> None:
        """Count a point's waiting values into it; with the lock held. The buckets by the
        values sorted: each bound's count of values at most it is one search."""
        values = [waiting.popleft() for _ in range(len(waiting))]
        if not values:
            return
        point = waiting.point
        point[0] += len(values)
        point[3] = functools.reduce(operator.add, values, point[3])  # in order, as the SDK
        values.sort()  # stable: of equal values (1 and 1.0) the first recorded leads
        low, high = values[0], max(values)
        if low < point[1]:
            point[1] = low
        if high > point[2]:
            point[2] = high
        below = 0
        for bucket, bound in enumerate(self._bounds, 5):
            at_most = bisect_right(values, bound)
            point[bucket] += at_most - below
            below = at_most
        point[-1] += len(values) - below

    def _settle(self) -> None:
        for waiting in self._by_items.values():
            self._count(waiting)

    def _data(self, points: list[tuple[dict[str, Any], list[float]]], now: int) -> Histogram:
        return Histogram(
            [
                HistogramDataPoint(
                    attributes, self._start, now, count, total, buckets, self._bounds, low, high
                )
                for attributes, (count, low, high, _, total, *buckets) in points
            ],
            _CUMULATIVE,
        )


class _Counter(_Instrument, metrics.Counter):
    """A monotonic sum; a negative or non-finite amount is ignored, as the SDK does."""

    _SINCE = 0

    def add(self, amount: float, attributes: Attributes = None, context: Any = None) -> None:
        if not 0 <= amount < _INFINITY:
            return
        items = tuple(attributes.items()) if attributes else ()
        with self._lock:
            point = self._by_items.get(items)
            if point is None:
                point = self._by_items[items] = self._point(items, [0, 0])
            point[0] += amount

    def _data(self, points: list[tuple[dict[str, Any], list[float]]], now: int) -> Sum:
        return Sum(
            [
                NumberDataPoint(attributes, self._start, now, value)
                for attributes, (_, value) in points
            ],
            _CUMULATIVE,
            is_monotonic=True,
        )
