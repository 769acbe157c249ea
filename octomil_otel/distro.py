"""The ``opentelemetry-instrument`` hooks: an unmodified program reports to Octomil.

``OCTOMIL_API_KEY=... opentelemetry-instrument python app.py`` loads, through entry points:

* ``OctomilDistro`` (``opentelemetry_distro``), which sets defaults for the SDK;
* ``OctomilConfigurator`` (``opentelemetry_configurator``), which sets up the SDK from the
  standard ``OTEL_*`` variables as the OpenTelemetry SDK's own configurator does, then
  extends its TracerProvider with the Octomil exporter (``octomil_otel.init``);
* ``LlamaCppInstrumentor`` and ``MLXInstrumentor`` (``opentelemetry_instrumentor``).

No opentelemetry-distro is needed. Where several configurators are installed,
``OTEL_PYTHON_CONFIGURATOR=octomil`` picks this one.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from octomil_otel import semconv
from octomil_otel.content import Capture
from octomil_otel.device import device_id
from octomil_otel.export.otlp import forwarding
from octomil_otel.pipeline import DEVICE_ID_ATTRIBUTE, init


class OctomilDistro(BaseDistro):
    """Defaults for the SDK's configurator: OTLP (http/protobuf) for each signal whose
    endpoint is configured (logs only for captured content events), no exporter otherwise;
    the user's own settings win."""

    def _configure(self, **kwargs: Any) -> None:
        for signal in ("traces", "metrics"):
            os.environ.setdefault(
                f"OTEL_{signal.upper()}_EXPORTER", "otlp" if forwarding(signal) else "none"
            )
        events = Capture.from_environment(semconv.latest_experimental()).on_event
        os.environ.setdefault(
            "OTEL_LOGS_EXPORTER", "otlp" if events and forwarding("logs") else "none"
        )
        os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")


class OctomilConfigurator(_OTelSDKConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        attributes = dict(kwargs.pop("resource_attributes", None) or {})
        attributes.setdefault(DEVICE_ID_ATTRIBUTE, device_id())
        super()._configure(resource_attributes=attributes, **kwargs)
        init(instrument=False)  # the instrumentors are opentelemetry-instrument's to load
