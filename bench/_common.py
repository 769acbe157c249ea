"""Shared pieces of the benchmarks in ``bench/``: providers, statistics, tiny models.

Not a benchmark itself. The providers are the real OpenTelemetry SDK, configured the way
an application would (a ``BatchSpanProcessor`` in front of an exporter, histograms read by
a metric reader), except that the exporter throws the spans away: the benchmarks measure
what instrumentation costs the inference loop, not a network.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # for ``tests.tiny_models`` and an uninstalled package
    sys.path.insert(0, str(REPO_ROOT))


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows the script's docstring and every default."""
    return argparse.ArgumentParser(description=doc, formatter_class=_HelpFormatter)


class DiscardingSpanExporter(SpanExporter):
    """Accepts every batch and keeps nothing; counts spans, so a run can show they arrived."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


@dataclass
class Providers:
    """A real SDK tracer provider and meter provider, and what sits behind them."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: DiscardingSpanExporter
    metric_reader: InMemoryMetricReader

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def make_providers(*, schedule_delay_millis: float | None = None) -> Providers:
    """SDK ``TracerProvider`` + ``BatchSpanProcessor`` over a discarding exporter, and an
    SDK ``MeterProvider`` with an ``InMemoryMetricReader``.

    ``schedule_delay_millis``: the batch processor's export interval (SDK default 5 s when
    omitted). The instruction-counting driver makes it long, so a run that valgrind slows
    down does not also collect more timer wake-ups of the export thread.
    """
    exporter = DiscardingSpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_millis)
    )
    metric_reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metric_reader])
    return Providers(tracer_provider, meter_provider, exporter, metric_reader)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def temp_dir(prefix: str) -> pathlib.Path:
    """A fresh temporary directory (left for the OS to clean: the models are ~0.5 MB)."""
    return pathlib.Path(tempfile.mkdtemp(prefix=f"octomil-bench-{prefix}-"))


def tiny_gguf(directory: pathlib.Path | None = None) -> pathlib.Path:
    """Write the tests' tiny llama GGUF (greedy decoding never reaches EOS) and return it."""
    from tests.tiny_models import write_tiny_gguf

    directory = directory or temp_dir("gguf")
    return write_tiny_gguf(directory / "tiny-llama.gguf")


def tiny_mlx_model(directory: pathlib.Path | None = None) -> pathlib.Path:
    """Write the tests' tiny mlx-lm model directory and return it."""
    from tests.tiny_models import write_tiny_mlx_model

    directory = directory or temp_dir("mlx")
    return write_tiny_mlx_model(directory / "tiny-mlx")


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as aligned columns: the first left-aligned, the rest right-aligned."""
    cells = [[str(c) for c in header], *([_fmt(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        first, *rest = row
        line = first.ljust(widths[0])
        line += "".join("  " + c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))
        print(line.rstrip())


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
