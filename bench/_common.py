"""Shared pieces of the benchmarks in ``bench/``: providers, statistics, tiny models, and
servers run as subprocesses.

Not a benchmark itself. The providers are the real OpenTelemetry SDK, configured the way
an application would (a ``BatchSpanProcessor`` in front of an exporter, histograms read by
a metric reader), except that the exporter throws the spans away: the benchmarks measure
what instrumentation costs the inference loop, not a network.

``ServerProcess`` and ``ReceiverProcess`` are for the benchmarks that talk HTTP to real
servers (``octomil serve``, ``octomil dashboard``, llama-cpp-python's server, the minimal
Octomil API of ``octomil_otel.receiver``), all on 127.0.0.1, always stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
import random
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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


def median_interval(values: Sequence[float], resamples: int = 4000) -> tuple[float, float]:
    """A 95 % interval for the median of ``values`` (percentile bootstrap, a fixed seed)."""
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95 % confidence interval of the mean of ``values`` (Student's t): where the
    mean of many more pairs would be, if each pair's value is independent of the others."""
    n = len(values)
    if n < 4:
        raise ValueError(f"a mean's interval needs 4 or more values, got {n}")
    half = t_975(n - 1) * statistics.stdev(values) / n**0.5
    mean = statistics.fmean(values)
    return mean - half, mean + half


def t_975(df: int) -> float:
    """Student's t's 97.5th percentile for ``df`` degrees of freedom (Cornish-Fisher's
    expansion around the normal's 1.96: within 1 % from 3 degrees of freedom on)."""
    z = 1.959964
    terms = ((z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96,
             (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384)  # fmt: skip
    return z + sum(term / df**power for power, term in enumerate(terms, start=1))


def describe(values: Sequence[float], spec: str, *, ratios: bool = False) -> str:
    """One line for a difference measured once per pair of rounds: its mean with the mean's
    95 % confidence interval, its median with a 95 % bootstrap interval, its range; numbers
    formatted by ``spec`` (``".3f"``, ``"+.3f"``). ``ratios``: the values are ratios (ON /
    OFF), averaged as their logarithms (the geometric mean: ON / OFF and OFF / ON then
    agree, and a ratio's spread does not lift it). Intervals from 6 values on."""
    if any(math.isnan(value) for value in values):
        raise ValueError(f"not a number among {values}")
    logs = [math.log(value) for value in values] if ratios else list(values)
    mean = statistics.fmean(logs)
    median = statistics.median(values)
    if len(values) < 6:  # too few: a median's bootstrap covers 95 % from 6 values on
        mean = math.exp(mean) if ratios else mean
        return f"{'geometric ' if ratios else ''}mean {mean:{spec}}, median {median:{spec}}"
    low, high = mean_interval(logs)
    if ratios:
        mean, low, high = math.exp(mean), math.exp(low), math.exp(high)
    median_low, median_high = median_interval(values)
    return (
        f"{'geometric ' if ratios else ''}mean {mean:{spec}} (95 % confidence interval "
        f"{low:{spec}} to {high:{spec}}), median {median:{spec}} (95 % interval "
        f"{median_low:{spec}} to {median_high:{spec}}), from {min(values):{spec}} to "
        f"{max(values):{spec}}"
    )


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


# --- servers as subprocesses: serve_vs_llama_server.py, serve_load.py, dashboard_ingest_query.py

LOCALHOST = "127.0.0.1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


def server_env(**extra: str) -> dict[str, str]:
    """This environment without ``OCTOMIL_*`` and ``OTEL_*``, plus ``extra``: a server then
    reports only where its command line says (never to a default endpoint elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCTOMIL_", "OTEL_"))}
    env["NO_PROXY"] = env["no_proxy"] = LOCALHOST
    env.update(extra)
    return env


def split_cpus() -> tuple[set[int], set[int]] | None:
    """``(server's, everyone else's)``: the first CPU this process may use for the server
    under test, the rest for the load and the stand-ins beside it; ``None`` with fewer than
    two, or where CPU affinity cannot be set (not Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else None


def pin(pid: int, cpus: set[int] | None) -> None:
    """Keep process ``pid`` (``0``: this one) on ``cpus``, from now on: the threads it
    starts later inherit that, the ones it has keep theirs. Nothing for ``None``."""
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


def process_cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` used so far, every thread's, those that ended included; nan
    where it cannot be read.

    In nanoseconds from the process's CPU clock where Linux gives it to another process
    (``clock_gettime`` on ``CPUCLOCK_SCHED``), else in 10 ms ticks from ``/proc``.
    """
    with contextlib.suppress(OSError, OverflowError, AttributeError):
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9  # MAKE_PROCESS_CPUCLOCK
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields_ = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields_[11]) + int(fields_[12])) / _CLOCK_TICKS  # utime, stime


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time each live thread of process ``pid`` used so far, by thread id, in the order
    the threads started, the main thread first (Linux ``/proc``; empty elsewhere).

    Counted in nanoseconds (``schedstat``'s run time) where the kernel keeps them: ``stat``'s
    user and system times count 10 ms ticks, as much as a telemetry thread's work in a
    round of 100 requests. A thread that ended is left out: ``process_cpu_seconds`` counts
    it."""
    threads = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            task = f"/proc/{pid}/task/{tid}"
            with open(f"{task}/stat", encoding="ascii") as stat:
                fields_ = stat.read().rsplit(")", 1)[1].split()
            started = (int(tid) != pid, int(fields_[19]), int(tid))  # ids wrap; start times not
            threads.append((started, int(tid), _thread_cpu_seconds(task, fields_)))
    return {tid: seconds for _, tid, seconds in sorted(threads)}


def _thread_cpu_seconds(task: str, stat_fields: list[str]) -> float:
    with contextlib.suppress(OSError), open(f"{task}/schedstat", encoding="ascii") as schedstat:
        return int(schedstat.read().split()[0]) / 1e9
    return (int(stat_fields[11]) + int(stat_fields[12])) / _CLOCK_TICKS  # utime, stime


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for saying how busy the machine was."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


class ServerProcess:
    """A server run as a subprocess, its output in a log file; ``stop()`` always ends it.

    Use as a context manager (or call ``stop()`` in ``finally``): SIGTERM, up to
    ``stop_timeout`` seconds to finish, then SIGKILL.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stop_timeout: float = 15.0,
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env if env is not None else server_env()
        self.stop_timeout = stop_timeout
        self.cpus = cpus  # where it runs (``pin``); anywhere for None
        self.log_path = temp_dir(name) / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=REPO_ROOT,
            )  # fmt: skip
        pin(self.process.pid, self.cpus)  # Popen returns at exec: no thread started yet
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _check_alive(self) -> None:
        assert self.process is not None, "not started"
        if self.process.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-20:])
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}; its log ends:\n{tail}"
            )

    def wait_ready(self, url: str, timeout: float = 120.0) -> None:
        """Poll ``GET url`` until it answers 200, the process exits, or ``timeout`` passes."""
        import requests

        deadline = time.monotonic() + timeout
        with requests.Session() as session:
            session.trust_env = False  # 127.0.0.1 directly, whatever the proxy variables say
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if session.get(url, timeout=2.0).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not answer {url} within {timeout:g} s")

    def wait_for_line(self, prefix: str, timeout: float = 60.0) -> str:
        """The first line of the log that starts with ``prefix``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_text().splitlines():
                if line.startswith(prefix):
                    return line
            self._check_alive()
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} printed no line starting with {prefix!r}")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; the exit code (None: not started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10.0)
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_RECEIVER_CHILD = """
import json, sys, threading
from collections import Counter
from isal import igzip
from octomil_otel.export.events import EVENT_TYPES
from octomil_otel.receiver import Receiver

seen, lock = Counter(), threading.Lock()
markers = {kind: b'"event_type":"' + kind.encode() + b'"' for kind in EVENT_TYPES}

def count(org_id, body, encoding):
    text = igzip.decompress(body) if encoding == "gzip" else body
    counts = {kind: text.count(marker) for kind, marker in markers.items()}
    with lock:
        seen.update(counts)
    return 202, {"accepted": sum(counts.values())}

receiver = Receiver({sys.argv[1]: "org_bench"}, "127.0.0.1", 0)
receiver.ingest = count
print(receiver.start().url, flush=True)
for line in sys.stdin:
    if line.strip() != "count":
        break
    with lock:
        print(json.dumps({kind: n for kind, n in seen.items() if n}), flush=True)
receiver.stop()
"""


class ReceiverProcess:
    """``octomil_otel.receiver.Receiver`` (the minimal Octomil API: its HTTP, its keys) in a
    child process on 127.0.0.1, so its work does not compete for the benchmark client's GIL.

    It only counts what it accepts, by event type (``counts()``), in each gunzipped body: it
    stands in for an API that in a deployment runs on another machine, and checking each
    event (the tests' receiver does) took ~165 us of this machine's CPU a served request of
    ``serve_load.py``, twice telemetry's own threads, in the ON server's rounds only.
    """

    def __init__(self, api_key: str, cpus: set[int] | None = None) -> None:
        self.api_key = api_key
        self.cpus = cpus  # where it runs (``pin``); anywhere for None
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> ReceiverProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER_CHILD, self.api_key],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=server_env(),
            cwd=REPO_ROOT,
        )  # fmt: skip
        pin(self.process.pid, self.cpus)  # Popen returns at exec: no thread started yet
        self.url = self._read_line(timeout)
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError("the receiver did not answer (exited or hung)")
        return line.strip()

    def counts(self, timeout: float = 30.0) -> dict[str, int]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return dict(json.loads(self._read_line(timeout)))

    def total(self) -> int:
        return sum(self.counts().values())

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def wait_settled(self, expected: int, quiet: float, timeout: float) -> int:
        """Wait until ``expected`` events arrived, or none arrived for ``quiet`` seconds, or
        ``timeout`` passed; return the total."""
        deadline = time.monotonic() + timeout
        total, changed = self.total(), time.monotonic()
        while total < expected and time.monotonic() < deadline:
            time.sleep(0.25)
            now_total = self.total()
            if now_total != total:
                total, changed = now_total, time.monotonic()
            elif time.monotonic() - changed >= quiet:
                break
        return total

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(10.0)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(10.0)

    def __enter__(self) -> ReceiverProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the value at position ceil(p * n / 100) of the n sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[int(rank) - 1]
