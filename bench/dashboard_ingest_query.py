"""The local dashboard (``octomil dashboard``) on SQLite and on ClickHouse (chDB), side by side.

What: two dashboards run at once on 127.0.0.1, one with ``--db sqlite:////tmp/...`` and one
with ``--db chdb:///tmp/...`` (ClickHouse in-process through chDB; fresh databases). Each
prints its first key (``OCTOMIL_API_KEY=...``) on its first start. Then:

1. Ingest over HTTP, end to end, onto empty stores: the first ``--http-events`` generated
   events are POSTed to ``/api/v1/telemetry/events`` in batches of ``--batch`` (gzip,
   ``Authorization: Bearer``), one request at a time, to one dashboard, then to the other,
   the bodies built before the clock starts. Rate:
   events / total time of the POSTs. Against it, the limit: the same rows (built before
   the clock starts) through each store's ``insert()`` in this process, in the same
   batches, onto fresh stores; printed as the ratio HTTP / in-process.
2. Bulk load, to save time: the dashboards are stopped and all but the last
   ``--http-tail`` of the remaining events go straight through each store's ``insert()``
   in this process, ``--load-batch`` rows at a time. No HTTP, no JSON, no checks: printed
   as its own line, not an ingest rate.
3. Ingest over HTTP again, onto the nearly full stores (the dashboards restarted on the same
   databases): the last ``--http-tail`` events, as in 1; the in-process limit measured
   after the queries, onto a copy of the stores made before this phase.
4. Queries over all ``--events`` stored: every view of the query API (``ttfc``,
   ``throughput``, ``volume``, ``devices``, ``dimensions``, the request list ``requests``)
   over the whole 24 h range, without and with a ``model`` filter, and one request
   (``requests/{id}``, the newest); one untimed call each, then ``--repeats`` timed calls
   alternating the two dashboards; the median latency of the whole HTTP GET. It also says
   whether the two stores gave the same answer (floats compared to 9 significant digits).

The events are generated (seeded) as an app's requests would produce them: per request a
``generation_started``, its ``chunk_produced`` events (1 to 16 when streamed, 70% of
requests; 1 when not) and a ``generation_completed`` (94%) or ``generation_failed`` (4% an
error, 2% cancelled), over ``--models`` models, 3 engines and 20 devices, the requests'
start times spread uniformly over the 24 h before the run, stored in time order. About
8.1 events per request: 1,000,000 events are about 123,000 requests.

Each timed phase starts with ``os.sync()``, so the files the previous one wrote go to the
disk before, not during it, and waits for a quiet machine (90% idle; ClickHouse merges
what it took in the background for a while), at most 2 minutes.

Why: the README says ClickHouse is for "more than one machine holds"; this measures where
each store stands at a million events, on this machine, through the same HTTP API the page
uses. No thresholds: numbers depend on the machine and on what else runs on it.

Run (from the repo root; defaults: 1,000,000 events, 200,000 of them over HTTP; about ten
minutes on 2 cores; the databases in a temporary directory, deleted at the end)::

    .venv/bin/python bench/dashboard_ingest_query.py
    .venv/bin/python bench/dashboard_ingest_query.py --events 200000 --http-events 200000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import _common
import requests

now = time.perf_counter

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MODELS = ("gemma3-270m", "gemma-3-1b", "llama-3.2-1b", "qwen2.5-0.5b", "phi-3.5-mini")
ENGINES = ("llamacpp", "mlx", "echo")
VIEWS = ("ttfc", "throughput", "volume", "devices", "dimensions", "requests", "requests/{id}")
STORES = ("sqlite", "chdb")
EVENTS_PATH = "/api/v1/telemetry/events"
EVENTS_PER_REQUEST = 8.1  # the generator's average, measured


# --- the events ------------------------------------------------------------------------


def _stamp(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def generate_events(
    seed: int, models: int, start_ms: int, end_ms: int, count: int
) -> Iterator[dict[str, Any]]:
    """A seeded stream of events, request by request, in order of start time: the start
    times advance by random gaps that spread ``count`` events (about ``count / 8.1``
    requests) over ``[start_ms, end_ms - 1 min)``; past the end they start over."""
    rng = random.Random(seed)
    devices = [f"{rng.getrandbits(48):012x}" for _ in range(20)]
    names = MODELS[:models]
    speed = {m: rng.uniform(20, 120) for m in names}  # tok/s by model
    span = end_ms - 60_000 - start_ms
    mean_gap = span / max(1.0, count / EVENTS_PER_REQUEST)
    t = float(start_ms)
    while True:
        t += rng.expovariate(1 / mean_gap)
        if t >= start_ms + span:
            t = start_ms + (t - start_ms) % span
        begin = int(t)
        model, engine, device = rng.choice(names), rng.choice(ENGINES), rng.choice(devices)
        stream = rng.random() < 0.7
        common = {
            "model": model,
            "engine": engine,
            "device_id": device,
            "request_id": f"req_{rng.getrandbits(64):016x}",
            "stream": stream,
            "trace_id": f"{rng.getrandbits(128):032x}",
            "span_id": f"{rng.getrandbits(64):016x}",
        }
        input_tokens = rng.randint(8, 400)
        ttfc = rng.lognormvariate(4.8, 0.6)  # ms, median ~120
        outcome = rng.random()
        chunks = rng.randint(1, 16) if stream else 1
        if outcome >= 0.94:  # failed or cancelled: part of the chunks
            chunks = rng.randint(0, chunks)
        tok_s = max(1.0, rng.gauss(speed[model], speed[model] / 8))
        output_tokens = rng.randint(chunks, chunks * 8) if chunks else 0
        decode_ms = 1000 * output_tokens / tok_s
        yield {
            "event_type": "generation_started",
            "timestamp": _stamp(begin),
            **common,
            "metrics": {"input_tokens": input_tokens},
        }
        elapsed = ttfc
        latencies = []
        for index in range(chunks):
            latency = ttfc if index == 0 else decode_ms / max(1, chunks - 1)
            elapsed += 0 if index == 0 else latency
            latencies.append(latency)
            metrics: dict[str, Any] = {"chunk_index": index, "chunk_latency_ms": latency}
            if not stream:
                metrics["output_tokens"] = output_tokens
            yield {
                "event_type": "chunk_produced",
                "timestamp": _stamp(begin + int(elapsed)),
                **common,
                "metrics": metrics,
            }
        total = elapsed + rng.uniform(0.1, 2.0)
        end = {"timestamp": _stamp(begin + int(total)), **common}
        if outcome < 0.94:
            ordered = sorted(latencies)
            yield {
                "event_type": "generation_completed",
                **end,
                "metrics": {
                    "ttfc_ms": ttfc,
                    "throughput_tok_s": tok_s,
                    "total_duration_ms": total,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "chunk_latency_avg_ms": sum(latencies) / len(latencies),
                    "chunk_latency_p99_ms": ordered[-1],
                },
            }
        else:
            error = "cancelled" if outcome >= 0.98 else rng.choice(("RuntimeError", "ValueError"))
            yield {
                "event_type": "generation_failed",
                **end,
                "metrics": {
                    "total_duration_ms": total,
                    "output_tokens": output_tokens,
                    "error_type": error,
                },
            }


def take(events: Iterator[dict[str, Any]], count: int, size: int) -> list[list[dict]]:
    """The next ``count`` events of ``events``, in lists of at most ``size``."""
    out = []
    while count > 0:
        out.append([next(events) for _ in range(min(size, count))])
        count -= len(out[-1])
    return out


# --- the dashboards --------------------------------------------------------------------


@dataclass
class Phase:
    """Events stored in one phase of the run, and the time that took (the measured part)."""

    events: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return _common.ratio(self.events, self.seconds)


@dataclass
class Dashboard:
    name: str
    db: str
    port: int
    key: str = ""
    org_id: str = ""
    server: _common.ServerProcess | None = None
    session: requests.Session = field(default_factory=requests.Session)
    phases: dict[str, Phase] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{_common.LOCALHOST}:{self.port}"

    def start(self, stack: ExitStack) -> None:
        argv = [sys.executable, "-m", "octomil_otel.cli", "dashboard",
                "--port", str(self.port), "--db", self.db]  # fmt: skip
        self.server = _common.ServerProcess(f"dashboard-{self.name}", argv)
        stack.enter_context(self.server)
        self.session.trust_env = False  # straight to 127.0.0.1
        self.server.wait_ready(f"{self.url}/", timeout=120)
        if not self.key:  # the first start prints it
            self.key = self.server.wait_for_line("OCTOMIL_API_KEY=", 30).split("=", 1)[1]
        self.session.headers["Authorization"] = f"Bearer {self.key}"
        if not self.org_id:
            self.org_id = self.get("/api/v1/auth/whoami")["org_id"]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(self.url + path, params=params, timeout=300)
        if response.status_code != 200:
            raise RuntimeError(f"{self.name} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def post_events(self, body: bytes, count: int, phase: str) -> None:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        start = now()
        response = self.session.post(
            self.url + EVENTS_PATH, data=body, headers=headers, timeout=120
        )
        self.count(phase, count, now() - start)
        if response.status_code != 202 or response.json().get("accepted") != count:
            raise RuntimeError(f"{self.name} ingest: HTTP {response.status_code} {response.text}")

    def count(self, phase: str, events: int, seconds: float) -> None:
        done = self.phases.setdefault(phase, Phase())
        done.events += events
        done.seconds += seconds


def _rounded(value: Any) -> Any:
    """For comparing answers: floats to 9 significant digits, everywhere in the JSON."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


HTTP_FIRST, FIRST_IN_PROCESS = "http-first", "first-in-process"
BULK = "bulk"
HTTP_TAIL, TAIL_IN_PROCESS = "http-tail", "tail-in-process"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events stored in all")
    parser.add_argument(
        "--http-events", type=int, default=100_000, help="of them, first, over HTTP"
    )
    parser.add_argument(
        "--http-tail", type=int, default=100_000, help="of them, last, over HTTP again"
    )
    parser.add_argument("--batch", type=int, default=500, help="events per POST")
    parser.add_argument("--load-batch", type=int, default=10_000, help="events per bulk insert")
    parser.add_argument(
        "--models", type=int, default=4, choices=range(2, 6), help="models in the events"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per query")
    parser.add_argument("--seed", type=int, default=1, help="of the generated events")
    parser.add_argument("--keep", action="store_true", help="keep the databases (path printed)")
    args = parser.parse_args(argv)
    first = min(args.http_events, args.events)
    tail = min(args.http_tail, args.events - first)
    bulk = args.events - first - tail

    work = _common.temp_dir("dashboard")
    dashboards = {name: Dashboard(name, _db_url(name, work / "stored"), _common.free_port())
                  for name in STORES}  # fmt: skip
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - DAY_MS
    events = generate_events(args.seed, args.models, start_ms, end_ms, args.events)
    print(f"load before: {_common.load_average()}")
    print(f"databases in {work}")
    try:
        first_batches = take(events, first, args.batch)
        with ExitStack() as stack:
            for dashboard in dashboards.values():
                dashboard.start(stack)
            http_ingest(dashboards, first_batches, HTTP_FIRST)
            for dashboard in dashboards.values():
                dashboard.stop()
        in_process(dashboards, first_batches, FIRST_IN_PROCESS, work / "first")
        if bulk > 0:
            print(f"{BULK}: {bulk:,} events in-process, insert() of {args.load_batch:,} rows ...",
                  flush=True)  # fmt: skip
            for part in _chunks(take(events, bulk, args.load_batch), 20):
                in_process(dashboards, part, BULK, None)
                print(f"  {dashboards['sqlite'].phases[BULK].events:,} inserted", flush=True)
        tail_batches = take(events, tail, args.batch)
        if tail_batches:  # the stores as they are now, for the in-process limit after
            shutil.copytree(work / "stored", work / "tail", symlinks=True)  # chdb: links
        with ExitStack() as stack:
            for dashboard in dashboards.values():
                dashboard.start(stack)
            if tail_batches:
                http_ingest(dashboards, tail_batches, HTTP_TAIL)
            print("querying ...", flush=True)
            _settle()
            results = run_queries(dashboards, start_ms, end_ms, MODELS[0], args.repeats)
        if tail_batches:
            in_process(dashboards, tail_batches, TAIL_IN_PROCESS, work / "tail")
        print(f"load after: {_common.load_average()}")
        report(dashboards, results, args)
    finally:
        for dashboard in dashboards.values():
            dashboard.stop()
            dashboard.session.close()
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _db_url(name: str, directory: pathlib.Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    return (
        f"sqlite:///{directory / 'events.db'}"
        if name == "sqlite"
        else f"chdb://{directory / 'chdb'}"
    )


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _settle(idle: float = 0.9, longest: float = 120.0) -> None:
    """Before a timed phase: the files written so far go to the disk now, not during it,
    and ClickHouse's merges of what it took (in its dashboard, or in this process) end
    first: wait until the machine is ``idle`` (a share of all cores, over a second), for at
    most ``longest`` seconds (Linux; elsewhere, only the sync)."""
    os.sync()
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        before = _cpu_times()
        if before is None:
            return
        time.sleep(1.0)
        after = _cpu_times()
        total, unused = (a - b for a, b in zip(after, before, strict=True))
        if total and unused / total >= idle:
            return
    print(f"  (the machine was still busy after {longest:.0f} s: measuring anyway)")


def _cpu_times() -> tuple[int, int] | None:
    """All cores' time so far, and the part idle or waiting for the disk (/proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields_ = [int(f) for f in stat.readline().split()[1:]]
    except OSError:
        return None
    return sum(fields_), fields_[3] + fields_[4]


def http_ingest(dashboards: dict[str, Dashboard], batches: list[list[dict]], phase: str) -> None:
    """POST ``batches`` to each dashboard, one at a time, one dashboard after the other
    (ClickHouse merges what it took in the background: not while the other one takes its
    share); the bodies built (gzip) before the clock starts."""
    built = now()
    bodies = [(gzip.compress(json.dumps({"events": b}).encode(), 6), len(b)) for b in batches]
    count = sum(n for _, n in bodies)
    print(
        f"{phase}: {count:,} events over HTTP, in {len(bodies):,} gzip bodies of "
        f"{sum(len(b) for b, _ in bodies) / len(bodies) / 1024:.0f} KiB on average "
        f"(built in {now() - built:.1f} s, untimed) ...",
        flush=True,
    )
    for name in STORES:
        _settle()
        for body, batch_count in bodies:
            dashboards[name].post_events(body, batch_count, phase)


def in_process(
    dashboards: dict[str, Dashboard],
    batches: list[list[dict]],
    phase: str,
    where: pathlib.Path | None,
) -> None:
    """``insert()`` ``batches`` into each store in this process, one store after the other,
    timing only ``insert()`` (the rows are built before). ``where``: into the stores there
    (new ones, or a copy made before), deleted after; None: into the dashboards' own."""
    from octomil_otel.dashboard.batch import row_of
    from octomil_otel.dashboard.stores import open_store

    if where is not None:
        onto = "a copy of the stores made before" if where.exists() else "empty stores"
        print(f"{phase}: {sum(map(len, batches)):,} events in-process, insert() of "
              f"{len(batches[0]):,} rows, onto {onto} ...", flush=True)  # fmt: skip
    _settle()
    for name in STORES:  # one at a time: chdb runs one database per process
        dashboard = dashboards[name]
        store = open_store(_db_url(name, where) if where is not None else dashboard.db)
        try:
            for batch in batches:
                rows = [row_of(dashboard.org_id, event) for event in batch]
                start = now()
                store.insert(rows)
                dashboard.count(phase, len(rows), now() - start)
        finally:
            store.close()
    if where is not None:
        shutil.rmtree(where, ignore_errors=True)


@dataclass
class QueryResult:
    view: str
    filtered: bool
    ms: dict[str, list[float]] = field(default_factory=dict)
    same: bool = True


def run_queries(
    dashboards: dict[str, Dashboard], start_ms: int, end_ms: int, model: str, repeats: int
) -> list[QueryResult]:
    results = []
    for view in VIEWS:
        for filtered in (False, True):
            params = {"from": start_ms, "to": end_ms, **({"model": model} if filtered else {})}
            path = f"/api/v1/query/{view}"
            if view == "requests/{id}":  # the newest request (no range, no filter)
                if filtered:
                    continue
                newest = dashboards["sqlite"].get("/api/v1/query/requests", **params, limit=1)
                path, params = f"/api/v1/query/requests/{newest['requests'][0]['request_id']}", {}
            result = QueryResult(view, filtered, {name: [] for name in STORES})
            answers = {name: d.get(path, **params) for name, d in dashboards.items()}  # untimed
            result.same = _rounded(answers["sqlite"]) == _rounded(answers["chdb"])
            for repeat in range(repeats):
                for name in STORES if repeat % 2 == 0 else STORES[::-1]:
                    start = now()
                    dashboards[name].get(path, **params)
                    result.ms[name].append((now() - start) * 1000)
            results.append(result)
    return results


def report(
    dashboards: dict[str, Dashboard], results: list[QueryResult], args: argparse.Namespace
) -> None:
    def rates(label: str, phase: str) -> list[object]:
        sqlite, chdb = (dashboards[name].phases[phase].rate for name in STORES)
        return [label, sqlite, chdb, _common.ratio(chdb, sqlite), ""]

    def ratios(label: str, http: str, reference: str) -> list[object]:
        return [label, *(_common.ratio(dashboards[name].phases[http].rate,
                                       dashboards[name].phases[reference].rate)
                          for name in STORES), "", ""]  # fmt: skip

    phases = dashboards["sqlite"].phases
    stored = sum(phases[p].events for p in (HTTP_FIRST, BULK, HTTP_TAIL) if p in phases)
    print(f"\nevents stored in each: {stored:,}")
    rows: list[list[object]] = []
    ingests = (
        (HTTP_FIRST, FIRST_IN_PROCESS, "onto an empty store"),
        (HTTP_TAIL, TAIL_IN_PROCESS, "onto the full store"),
    )
    for http, reference, label in ingests:
        if http in phases:
            rows += [
                rates(f"HTTP ingest {label}, events/s ({phases[http].events:,})", http),
                rates("  in-process insert() of the same rows, same batches", reference),
                ratios("  HTTP / in-process", http, reference),
            ]
    if BULK in phases:
        rows.append(rates(f"bulk load: in-process insert() of {args.load_batch:,} rows", BULK))
    for result in results:
        median = {name: _common.median(result.ms[name]) for name in STORES}
        label = f"query {result.view}{' model=' + MODELS[0] if result.filtered else ''}, ms"
        rows.append([label, median["sqlite"], median["chdb"],
                     _common.ratio(median["chdb"], median["sqlite"]),
                     "yes" if result.same else "NO"])  # fmt: skip
    print(f"\nover 24 h, {args.models} models, 3 engines, 20 devices; ingest {args.batch} events"
          f" a POST (gzip), one at a time; query latency: median of {args.repeats} HTTP GETs"
          " after one untimed call")  # fmt: skip
    _common.print_table([" ", "sqlite", "chdb", "chdb / sqlite", "same answer"], rows)
    print("events/s and HTTP / in-process: higher is better; ms: lower is better.")


if __name__ == "__main__":
    sys.exit(main())
