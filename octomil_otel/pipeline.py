"""``init()``: the providers, processors and exporters behind one call.

``init()`` extends the TracerProvider and MeterProvider the application already set, and
creates (and sets globally) only what is missing. Without an API key it sends nothing to
Octomil and says so in the log; spans and histograms are recorded all the same for any
other exporter on the providers.

The Octomil exporter's ``BatchSpanProcessor`` is not added to the TracerProvider: every
recorder hands it each request's complete record (``generation.py``), so the application's
sampler, span limits and processors never change which events are sent or what they say.
Its queue and timing are set here, not by the ``OTEL_BSP_*`` variables meant for the
application's spans.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from octomil_otel import semconv
from octomil_otel.config import Settings
from octomil_otel.content import Capture
from octomil_otel.device import device_id as default_device_id
from octomil_otel.device import validate_device_id
from octomil_otel.engines.resolve import ENGINES
from octomil_otel.export.otlp import forwarding, log_exporter
from octomil_otel.export.otlp import metric_reader as otlp_metric_reader
from octomil_otel.export.otlp import span_exporter as otlp_span_exporter
from octomil_otel.export.reporter import TelemetryReporter
from octomil_otel.export.span_exporter import OctomilSpanExporter, OctomilSpanProcessor
from octomil_otel.generation import Recorder, cancel_open, set_default_octomil_processor
from octomil_otel.instrumentation import INSTRUMENTORS, instrument_installed
from octomil_otel.version import __version__

_logger = logging.getLogger("octomil_otel.telemetry")

DISABLED_MESSAGE = (
    "[telemetry] Disabled: no API key provided, set --api-key or the "
    "OCTOMIL_API_KEY environment variable."
)
DEVICE_ID_ATTRIBUTE = "device.id"
DEFAULT_SERVICE_NAME = "octomil"
OCTOMIL_EXPORT_DELAY_MILLIS = 1000
"""How long finished requests wait for the Octomil exporter, at most: the reporter's
``flush_interval_seconds`` then decides when they are sent."""
OCTOMIL_EXPORT_BATCH_RECORDS = 96
"""Finished requests the exporter encodes at once, at most; as many wake it. Encoding holds
the GIL (~20 us a request of 50 chunks), so a batch is a wait for a busy server's event
loop: ~15 ms for 512; for 96, the encoding of ~36 requests fills the reporter's queue
(1,000 events) and waits for it, so ~1 ms at a time, and the reporter then sends full
POSTs of 1,000 events (fewer wake-ups: 0.24 of its time slices a request, against 0.27 to
0.34 for 32). One at a time cost more than it saved: a wake-up of the processor's thread
per request, ~100 us of a served request's CPU (per-thread CPU under
``bench/serve_load.py``'s load)."""
SHUTDOWN_SECONDS = 10.0
"""What ``shutdown()`` may take, at most, to deliver what is left, whatever the API does."""
OCTOMIL_MAX_QUEUED_RECORDS = 8192
"""Finished requests waiting for the Octomil exporter, at most (a few hundred bytes each)."""


@dataclass
class Telemetry:
    """What ``init()`` set up; ``shutdown()`` flushes and stops it (also at exit)."""

    recorder: Recorder
    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider
    logger_provider: _logs.LoggerProvider | None
    reporter: TelemetryReporter | None
    instrumentors: list[BaseInstrumentor]
    _span_processor: BatchSpanProcessor | None
    _owns_tracer_provider: bool
    _owns_meter_provider: bool
    _owns_logger_provider: bool
    _settings: Settings
    _stopped: bool = field(default=False, init=False)

    def flush(self, timeout_seconds: float = 10.0) -> bool:
        """Export finished requests and deliver their events, within about
        ``timeout_seconds``; ``False`` if that was not enough. After ``shutdown()`` nothing
        waits: ``True``."""
        if self._stopped or self._span_processor is None or self.reporter is None:
            return True
        deadline = time.monotonic() + timeout_seconds
        with self._span_processor.span_exporter.bounded(timeout_seconds):
            exported = self._span_processor.force_flush(int(timeout_seconds * 1000))
        remaining = max(0.0, deadline - time.monotonic())
        return self.reporter.flush(remaining) and exported

    def shutdown(self) -> None:
        """Flush and stop, once: the same as ``octomil_otel.shutdown()`` while this is the
        current setup (``init()`` may then run again, and the exit stops nothing twice)."""
        global _telemetry
        with _lock:
            if self._stopped:
                return
            self._stopped = True
            if _telemetry is self:
                _telemetry = None
        cancel_open(self._span_processor)  # first: their spans and histograms go out too
        for instrumentor in self.instrumentors:
            instrumentor.uninstrument()
        if self._owns_tracer_provider and isinstance(self.tracer_provider, TracerProvider):
            self.tracer_provider.shutdown()
            _retired.add(self.tracer_provider)
        if self._span_processor is not None:
            set_default_octomil_processor(None)
            with self._span_processor.span_exporter.bounded(SHUTDOWN_SECONDS):
                self._span_processor.shutdown()
        if self._owns_meter_provider and isinstance(self.meter_provider, MeterProvider):
            self.meter_provider.shutdown()
            _retired.add(self.meter_provider)
        if self._owns_logger_provider and isinstance(self.logger_provider, LoggerProvider):
            self.logger_provider.shutdown()
            _retired.add(self.logger_provider)


_lock = threading.Lock()
_telemetry: Telemetry | None = None
_retired: weakref.WeakSet[Any] = weakref.WeakSet()
"""Providers of ours that ``shutdown()`` shut down. They stay the global ones (OpenTelemetry
sets a global provider once per process), so an ``init()`` after ``shutdown()`` makes new
ones for itself rather than extend those, which would record nothing."""


def init(
    api_key: str | None = None,
    org_id: str | None = None,
    api_base: str | None = None,
    *,
    device_id: str | None = None,
    flush_interval_seconds: float = 5.0,
    max_queue_size: int = 1000,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    otlp_headers: Mapping[str, str] | None = None,
    metric_readers: Sequence[MetricReader] = (),
    instrument: bool | Iterable[str] | None = True,
) -> Telemetry:
    """Start telemetry for this process; a second call returns the first one's result,
    which starts reporting to Octomil then if the first had no API key and this one has
    (``opentelemetry-instrument`` starts telemetry before ``octomil serve --api-key``).

    Args:
        api_key: the Octomil API key; ``OCTOMIL_API_KEY`` when omitted.
        org_id: ``OCTOMIL_ORG_ID`` when omitted, else resolved from the key.
        api_base: ``OCTOMIL_API_BASE`` when omitted, else https://api.octomil.com.
        device_id: overrides the id derived from the hostname and MAC address.
        flush_interval_seconds, max_queue_size: as for ``TelemetryReporter``.
        tracer_provider, meter_provider: providers to extend instead of the global ones.
        otlp_endpoint, otlp_protocol, otlp_headers: forward spans and histograms over OTLP;
            when omitted, the standard ``OTEL_EXPORTER_OTLP_*`` variables decide. Providers
            the application set up itself are left to it unless an endpoint is given here.
        metric_readers: more readers for the MeterProvider that ``init()`` creates (for
            example a Prometheus reader).
        instrument: instrument every installed engine (llama-cpp-python, mlx-lm), or only
            those named in a list or any iterable (``["llamacpp"]``; ``"echo"`` has nothing
            to instrument), or none (``False``, ``None``); ``TypeError`` or ``ValueError``
            for anything else (a name alone, not in a list; a name no engine has). Each
            is instrumented when the application imports it (at once if it has):
            ``init()`` imports no engine, and an engine that cannot be instrumented is
            logged, never raised.
    """
    global _telemetry
    engines = _engines_named(instrument)
    with _lock:
        settings = Settings.resolve(api_key=api_key, org_id=org_id, api_base=api_base)
        device = default_device_id() if device_id is None else validate_device_id(device_id)
        if _telemetry is not None:
            if _telemetry.reporter is None and settings.api_key is not None:
                _telemetry.reporter, _telemetry._span_processor = _report_to_octomil(
                    settings.api_key, settings, device, flush_interval_seconds, max_queue_size
                )
                _telemetry._settings = settings
                return _telemetry
            _warn_unused(
                _telemetry._settings, settings, api_key=api_key, org_id=org_id, api_base=api_base
            )
            return _telemetry
        resource = telemetry_resource(device)
        otlp_args = (otlp_endpoint, otlp_protocol, otlp_headers)

        tracer_provider, owns_tracer = _tracer_provider(tracer_provider, resource)

        def readers() -> list[MetricReader]:  # created only with a MeterProvider of our own
            otlp = [otlp_metric_reader(*otlp_args)] if forwarding("metrics", otlp_endpoint) else []
            return [*metric_readers, *otlp]

        meter_provider, owns_meter = _meter_provider(
            meter_provider, lambda: MeterProvider(resource=resource, metric_readers=readers())
        )
        if not owns_meter and (metric_readers or otlp_endpoint):
            _logger.warning(
                "octomil_otel: the application's MeterProvider is kept; its readers decide "
                "where histograms go (OTLP forwarding and metric_readers are not added)"
            )
        if (owns_tracer or otlp_endpoint) and forwarding("traces", otlp_endpoint):
            _add_processor(tracer_provider, BatchSpanProcessor(otlp_span_exporter(*otlp_args)))
        logger_provider, owns_logger = _logger_provider(
            resource, lambda: log_exporter(*otlp_args), otlp_endpoint
        )

        reporter = processor = None
        if settings.api_key is None:
            _logger.warning(DISABLED_MESSAGE)
        else:
            reporter, processor = _report_to_octomil(
                settings.api_key, settings, device, flush_interval_seconds, max_queue_size
            )

        _telemetry = Telemetry(
            recorder=Recorder(tracer_provider, meter_provider, logger_provider=logger_provider),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
            reporter=reporter,
            instrumentors=instrument_installed(
                tracer_provider,
                meter_provider,
                logger_provider,
                engines,
            ),
            _span_processor=processor,
            _owns_tracer_provider=owns_tracer,
            _owns_meter_provider=owns_meter,
            _owns_logger_provider=owns_logger,
            _settings=settings,
        )
        atexit.register(shutdown)
        multiprocessing.util.register_after_fork(_telemetry, _stop_as_the_child_ends)
        return _telemetry


def _report_to_octomil(
    api_key: str,
    settings: Settings,
    device: str,
    flush_interval_seconds: float,
    max_queue_size: int,
) -> tuple[TelemetryReporter, OctomilSpanProcessor]:
    """The Octomil reporter and its span processor, made the one every recorder without
    its own hands its records to (``set_default_octomil_processor``)."""
    reporter = TelemetryReporter(
        api_key,
        settings.api_base,
        flush_interval_seconds,
        max_queue_size,
        device,
        org_id=settings.org_id,
    )
    processor = OctomilSpanProcessor(
        OctomilSpanExporter(reporter),
        max_queue_size=OCTOMIL_MAX_QUEUED_RECORDS,
        schedule_delay_millis=OCTOMIL_EXPORT_DELAY_MILLIS,
        max_export_batch_size=OCTOMIL_EXPORT_BATCH_RECORDS,
        export_timeout_millis=30_000,
    )
    set_default_octomil_processor(processor)
    return reporter, processor


def _stop_as_the_child_ends(telemetry: Telemetry) -> None:
    """In a child that ``multiprocessing`` forked: shut telemetry down as the child ends.
    Such a child exits by ``os._exit`` after ``multiprocessing``'s own finalizers, never
    running ``atexit``, so the requests it made would never be sent."""
    multiprocessing.util.Finalize(None, shutdown, exitpriority=0)


def _engines_named(instrument: object) -> Collection[str]:
    """The engines ``init(instrument=...)`` asks for. ``TypeError`` or ``ValueError`` for a
    value that names none by mistake (``"llamacpp"`` rather than ``["llamacpp"]``, a name
    no engine has), which would otherwise leave every request unrecorded without a word."""
    if instrument is True:
        return tuple(INSTRUMENTORS)
    if instrument is False or instrument is None:
        return ()
    if isinstance(instrument, (str, bytes)) or not isinstance(instrument, Iterable):
        raise TypeError(
            "instrument must be True, False or a list of engine names such as "
            f"['llamacpp'], got {instrument!r}"
        )
    names = tuple(instrument)
    unknown = [name for name in names if name not in ENGINES]
    if unknown:
        raise ValueError(
            f"instrument: no engine is named {unknown[0]!r}; the engines are {', '.join(ENGINES)}"
        )
    return names


def _warn_unused(running: Settings, asked: Settings, **given: str | None) -> None:
    """A second ``init()`` keeps the first setup; say so when it was asked for another key,
    org or API base (``opentelemetry-instrument`` starts telemetry before the application,
    and before ``octomil serve --api-key``)."""
    unused = [
        name
        for name, value in given.items()
        if value is not None and getattr(asked, name) != getattr(running, name)
    ]
    if not unused:
        _logger.debug("octomil_otel: init() already ran; keeping the first setup")
        return
    _logger.warning(
        "octomil_otel: telemetry was started before (opentelemetry-instrument starts it "
        "first); %s given here not used: set %s in the environment instead",
        ", ".join(unused),
        ", ".join(f"OCTOMIL_{name.upper()}" for name in unused),
    )


def current() -> Telemetry | None:
    """What ``init()`` set up, if it ran."""
    return _telemetry


def shutdown() -> None:
    """Flush and stop what ``init()`` started; ``init()`` may then run again."""
    telemetry = _telemetry
    if telemetry is not None:
        telemetry.shutdown()


def telemetry_resource(device: str) -> Resource:
    """What ``init()`` says its telemetry comes from: ``device.id`` and the distro;
    ``service.name`` from the environment, else octomil."""
    resource = Resource.create(
        {
            DEVICE_ID_ATTRIBUTE: device,
            "telemetry.distro.name": "octomil-otel",
            "telemetry.distro.version": __version__,
        }
    )
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    return resource


def _add_processor(provider: trace.TracerProvider, processor: BatchSpanProcessor) -> None:
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(processor)
    else:
        _logger.warning(
            "octomil_otel: the TracerProvider %r is not the OpenTelemetry SDK's; "
            "no spans can be exported from it",
            type(provider).__name__,
        )


def _tracer_provider(
    explicit: trace.TracerProvider | None, resource: Resource
) -> tuple[trace.TracerProvider, bool]:
    if explicit is not None:
        return explicit, False
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider) and current not in _retired:
        return current, False
    provider = TracerProvider(resource=resource)
    if current not in _retired:
        trace.set_tracer_provider(provider)
    return provider, True


def _logger_provider(
    resource: Resource, exporter: Callable[[], Any], otlp_endpoint: str | None
) -> tuple[_logs.LoggerProvider | None, bool]:
    """Where captured content goes as log events, only when the user asked for events: the
    application's LoggerProvider, else one of ours sending them over OTLP, else none."""
    if not Capture.from_environment(semconv.latest_experimental()).on_event:
        return None, False
    current = _logs.get_logger_provider()
    if isinstance(current, LoggerProvider) and current not in _retired:
        return current, False
    if not forwarding("logs", otlp_endpoint):
        _logger.warning(
            "octomil_otel: message content is captured as events, but no LoggerProvider is "
            "set and no OTLP endpoint is configured: they go nowhere"
        )
        return None, False
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter()))
    if current not in _retired:
        _logs.set_logger_provider(provider)
    return provider, True


def _meter_provider(
    explicit: metrics.MeterProvider | None, create: Callable[[], MeterProvider]
) -> tuple[metrics.MeterProvider, bool]:
    if explicit is not None:
        return explicit, False
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider) and current not in _retired:
        return current, False
    provider = create()
    if current not in _retired:
        metrics.set_meter_provider(provider)
    return provider, True
