"""A load test of ``octomil serve echo``: telemetry ON (events really exported) against OFF.

What: two ``octomil serve echo`` servers run at once on 127.0.0.1 (the echo engine answers
with the prompt, so the server, not a model, is what is loaded):

  * ON: ``--api-key`` and ``--api-base`` pointing at the minimal Octomil API
    (``octomil_otel.receiver``, in a child process on 127.0.0.1): every request's spans,
    histograms and events are built, and the events are sent over HTTP;
  * OFF: no key and ``OTEL_SDK_DISABLED=true``: the OpenTelemetry SDK hands out no-op
    tracers and meters, so the recorder records nothing and nothing is sent.

Rounds alternate between them (ON OFF, OFF ON, ON OFF, ...), only one server loaded at a
time. A round is N chat completions (prompts of about 50 words; every other one streamed)
sent by C client threads, one ``requests.Session`` each, as fast as answers come. A round
ends when its N requests are done, or ``--round-timeout`` passed. After each ON round the
script waits (untimed) until the receiver has every event, or none came for a while, so no
export of one round runs during the next (with ``--together``, after each round).

Each pair of rounds runs on a new pair of server processes, started and warmed up (the
first of the pair alternates too), as pyperf runs a benchmark in several worker
processes: a process's hash seed and memory layout make it faster or slower for its whole
life: two identical servers kept for a whole run differed by ~0.3 ms a request (three
times the target) in every pair. ``--same-processes`` keeps one pair for all rounds.

How far to trust the difference: this machine's speed moves by ~17 % from one second to the
next (a fixed loop's CPU time, 0.7 s windows), so rounds of one server differ by ~0.45 ms a
request, and the pairs' median ON - OFF moves by ~±0.2 ms from run to run. ``--control`` is
the A/A run that shows it: the ON server has telemetry OFF as well. ``--together`` loads
both servers at once instead, the client's requests alternating between them (the k-th
request to each is the same), so within a round both run at the same moment's speed: the A/A
spread of a round's difference drops from ~0.5 to ~0.2 ms. A whole run's mean difference
still moves by ~±0.08 ms (three A/A runs: +0.098, -0.051, -0.061), so deciding 0.1 ms takes
several runs (ten: ~±0.03). The two servers then share the cores, so what telemetry's
threads cost the other server's caches weighs on OFF as much as on ON (a difference in ON's
own process, the GIL and its threads' hand-offs, is still ON's); each has about C/2 requests
in flight, so latencies are not those of a run in turn; and both answer at one pace by
construction, so req/s is not measured (a run without ``--together`` measures it, or
``serve_throughput.py``: both at once, each at its own pace on a CPU of its own).

It prints, per server, medians over its rounds of requests/s and of the per-round p50 and
p99 latency (request sent to response fully read, [DONE] included for streams), CPU seconds
per 1,000 requests of the server (its threads' run time, in ns, from ``/proc``, read
``SETTLE_SECONDS`` after the round's end, for both servers: by then the ON server has
recorded and encoded the round's last requests, and sent all but its last POST of them, and
the two servers' idle CPU over that window cancels) and of the client, how many cores the
server, the client and the receiver kept busy, and the ratios ON / OFF; the requests/s ratio
and the server CPU a request ON minus OFF within each pair of back-to-back rounds (their
mean, geometric for the ratio, with its 95 % confidence interval; their median with a
bootstrap interval; their range: steadier when the machine's speed drifts over the run, as
a shared machine's does; each round's line shows its CPU a request); then the events
the receiver got against those expected (per request: ``generation_started``, one
``chunk_produced`` per content chunk, streamed or not, and ``generation_completed``), and
the drops the ON server's log reports. Drops by a full queue (``max_queue_size``, 1,000 in
``octomil serve``) are not logged: they show only as events missing at the receiver.

Where each runs (``--pin``): by default (``none``) the scheduler places the servers, the
client threads (this process) and the receiver on any CPU, as the issue that set the targets
measured. ``harness``: the client and the receiver on every CPU but the first, the servers
on every CPU (the receiver stands in for an API that in a deployment runs on another
machine). ``all``: also the servers on the first CPU alone. That is a different server: its
event loop and engine thread, which hand each other the GIL and the chunks 30 to 40 times a
request (``/proc``'s context switch counts), then trade them on one CPU, cheaply; both
servers use a third less CPU a request and answer about twice the requests/s, and the ratios
are not those of a server whose threads the scheduler spreads over several CPUs. The server
is one Python process, so about 1 core busy means it is saturated. Its CPU per request moves
by ~0.45 ms (one standard deviation) between rounds of one server: ``callgrind_serve.py``
counts what telemetry adds to a request exactly. Last, each server's CPU a request by thread
(``/proc``): the event loop, then in the ON server the reporter (thread 2, gzip and POSTs),
the span processor's worker (3, the events' encoding), the engine's thread (4, a request's
chunks and its end) and the recorder's (5, ``ended_requests``: each request's metrics,
histograms and Octomil record); in the OFF server the engine's thread is 2. The threads
telemetry adds show its own cost directly; the difference in the others is what it costs
them (GIL, caches, how much work each wake-up finds), within their noise. That line sums all
rounds (a mean); the table's medians are what the targets are read from. Latencies include
queueing behind the engine (one request at a time on the engine; ``--max-waiting`` may
wait).

Why: ``engine_overhead.py`` shows telemetry's cost next to a real model's decode steps;
this shows it where it is largest relative to the work: a server doing nearly nothing per
token, under concurrent load, with the export really running.

Run (from the repo root; a few minutes on 2 cores)::

    .venv/bin/python bench/serve_load.py
    .venv/bin/python bench/serve_load.py --requests 5000 --concurrency 16 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import _common
import requests

now = time.perf_counter

ON, OFF = "telemetry ON", "telemetry OFF"
_LOG_NAMES = {ON: "serve-on", OFF: "serve-off"}
PINNING = ("none", "harness", "all")  # --pin: who runs on which CPUs
SETTLE_SECONDS = 3.0
"""Both servers idle this long after a round before their CPU is read: longer than a
request's end waits for the recorder's thread (0.5 s) and then for the span processor (1 s),
with room to spare."""
_TEXT = (
    "the quick brown fox jumps over a lazy dog while seven small models answer questions "
    "about tokens latency streams caches threads queues servers clients prompts batches "
    "metrics spans events devices engines and the time to first chunk"
)
WORDS = _TEXT.split()


def prompts(count: int, words: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + "?" for _ in range(count)]


@dataclass
class Round:
    server: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    events_expected: int = 0
    server_cpu: float = 0.0
    thread_cpu: list[float] = field(default_factory=list)  # the server's, threads by start
    client_cpu: float = 0.0
    receiver_cpu: float = 0.0
    first_error: str = ""

    @property
    def rate(self) -> float:
        return _common.ratio(self.requests, self.seconds)


def one_request(
    session: requests.Session, url: str, model: str, prompt: str, stream: bool, timeout: float
) -> int:
    """Send one chat completion and read all of it; the events it should produce."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    with session.post(url, json=body, stream=stream, timeout=timeout) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        if not stream:
            response.json()
            return 3  # started, one chunk (the whole answer), completed
        chunks = 0
        for line in response.iter_lines(chunk_size=None):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":  # read on to the end: the connection is then reused
                continue
            if json.loads(data)["choices"][0].get("delta", {}).get("content"):
                chunks += 1
        return 2 + chunks


def run_round(
    server: str,
    url: str,
    model: str,
    texts: list[str],
    count: int,
    concurrency: int,
    timeout: float,
    round_timeout: float,
) -> Round:
    """``count`` requests from ``concurrency`` threads; stops early at ``round_timeout``."""
    target = {server: (url, model)}
    return run_together(target, texts, count, concurrency, timeout, round_timeout)[server]


def run_together(
    targets: dict[str, tuple[str, str]],
    texts: list[str],
    count: int,
    concurrency: int,
    timeout: float,
    round_timeout: float,
) -> dict[str, Round]:
    """``count`` requests to each of ``targets`` (server: (url, model)) from ``concurrency``
    threads, the servers' turns alternating: the k-th request to each carries the same
    prompt, streamed or not alike; stops early at ``round_timeout``."""
    names = list(targets)
    results = {name: Round(name) for name in names}
    lock = threading.Lock()
    next_index = 0
    deadline = time.monotonic() + round_timeout

    def worker() -> None:
        nonlocal next_index
        mine = {name: Round(name) for name in names}
        with requests.Session() as session:
            session.trust_env = False  # straight to 127.0.0.1
            while time.monotonic() < deadline:
                with lock:
                    index, next_index = next_index, next_index + 1
                k, turn = divmod(index, len(names))
                if k >= count:
                    break
                result, (url, model) = mine[names[turn]], targets[names[turn]]
                start = now()
                try:
                    result.events_expected += one_request(
                        session, url, model, texts[k % len(texts)], k % 2 == 0, timeout
                    )
                except Exception as problem:  # counted, the first one shown
                    result.errors += 1
                    result.first_error = (
                        result.first_error or f"{type(problem).__name__}: {problem}"
                    )
                    continue
                result.latencies_ms.append((now() - start) * 1000)
        with lock:
            for name, result in results.items():
                result.latencies_ms.extend(mine[name].latencies_ms)
                result.events_expected += mine[name].events_expected
                result.errors += mine[name].errors
                result.first_error = result.first_error or mine[name].first_error

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start = now()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + timeout + 5)
    seconds = now() - start
    for result in results.values():
        result.seconds = seconds
        result.requests = len(result.latencies_ms)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = _common.argument_parser(__doc__)
    parser.add_argument(
        "--requests", type=int, default=2000, help="N, per round (per server with --together)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="C client threads")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--words", type=int, default=50, help="words per prompt")
    parser.add_argument(
        "--warmup", type=int, default=200, help="untimed requests per server and process"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--round-timeout", type=float, default=300.0, help="seconds per round")
    parser.add_argument(
        "--pin", choices=PINNING, default="none",
        help="harness: this client and the receiver on every CPU but the first; all: also the "
        "servers on the first alone (Linux, 2 or more CPUs)",
    )  # fmt: skip
    parser.add_argument(
        "--same-processes", action="store_true",
        help="one ON and one OFF server process for all rounds, not a new pair for each pair "
        "of rounds (each process's own speed then weighs on every pair)",
    )  # fmt: skip
    parser.add_argument(
        "--together", action="store_true",
        help="load both servers at once, the client's requests alternating between them: "
        "each round compares them under the same moment's machine speed",
    )  # fmt: skip
    parser.add_argument(
        "--control", action="store_true",
        help="an A/A run: the ON server has telemetry OFF too, so the figures show what the "
        "measure moves by between two identical servers",
    )  # fmt: skip
    args = parser.parse_args(argv)

    texts = prompts(64, args.words)
    api_key = "om_bench_serve_load"
    cpus = _common.split_cpus() if args.pin != "none" else None
    server_cpus, other_cpus = cpus or (None, None)
    if cpus and args.pin == "harness":  # set, else they would inherit this process's
        server_cpus = server_cpus | other_cpus
    _common.pin(0, other_cpus)  # before the client threads start: they inherit it
    print(f"load before: {_common.load_average()}")
    print(f"CPUs: servers {_cpus(server_cpus)}, client and receiver {_cpus(other_cpus)}")
    if args.control:
        print(f"--control: the server named {ON!r} below has telemetry OFF as well")

    rounds: list[Round] = []
    with ExitStack() as stack:
        receiver = stack.enter_context(_common.ReceiverProcess(api_key, other_cpus))
        pair_of_servers = PairOfServers(args, api_key, receiver.url, server_cpus, texts)
        stack.callback(pair_of_servers.stop)
        expected_total = 0
        for pair in range(args.rounds):
            order = (ON, OFF) if pair % 2 == 0 else (OFF, ON)  # who goes first: each, in turn
            if pair == 0 or not args.same_processes:
                expected_total += pair_of_servers.start(order)
                receiver.wait_settled(expected_total, quiet=7.0, timeout=30.0)
            turns = [order] if args.together else [(name,) for name in order]
            for names in turns:
                servers = {name: pair_of_servers.servers[name] for name in names}
                cpu_before = {name: proc.cpu_seconds() for name, (proc, _, _) in servers.items()}
                threads_before = {
                    name: _common.thread_cpu_seconds(proc.pid)
                    for name, (proc, _, _) in servers.items()
                }
                client_before = time.process_time()
                receiver_before = receiver.cpu_seconds()
                results = run_together(
                    {name: (f"{url}/v1/chat/completions", model)
                     for name, (_, url, model) in servers.items()},
                    texts, args.requests, args.concurrency, args.timeout, args.round_timeout,
                )  # fmt: skip
                time.sleep(SETTLE_SECONDS)
                client_cpu = time.process_time() - client_before
                receiver_cpu = receiver.cpu_seconds() - receiver_before
                for name, result in results.items():
                    server = servers[name][0]
                    result.server_cpu = server.cpu_seconds() - cpu_before[name]
                    result.thread_cpu = [  # in the order the threads started
                        seconds - threads_before[name].get(tid, 0.0)
                        for tid, seconds in _common.thread_cpu_seconds(server.pid).items()
                    ]
                    result.client_cpu = client_cpu / len(results)  # each server's share
                    rounds.append(result)
                    if pair_of_servers.exports(name):
                        result.receiver_cpu = receiver_cpu
                        expected_total += result.events_expected
                    print(
                        f"  round {len(rounds)}: {name:<13} {result.requests:,} ok, "
                        f"{result.errors} errors in {result.seconds:.3f} s "
                        f"({result.rate:,.1f} req/s; server CPU "
                        f"{1000 * _cpu_a_request(result):.2f} ms a request)"
                        + (f"; first error: {result.first_error}" if result.errors else ""),
                        flush=True,
                    )
                if any(map(pair_of_servers.exports, names)):
                    receiver.wait_settled(expected_total, quiet=7.0, timeout=60.0)
        before_shutdown = receiver.total()
        pair_of_servers.stop()  # SIGTERM: the ON server flushes what is queued
        received = receiver.wait_settled(expected_total, quiet=3.0, timeout=15.0)
        by_type = receiver.counts()
    print(f"load after: {_common.load_average()}")
    report(rounds, args, cpus is not None)
    report_threads(rounds)
    on_log = pair_of_servers.on_logs
    flushed = sum(int(n) for n in re.findall(r"\[telemetry\] Flushed (\d+) events", on_log))
    dropped = sum(int(n) for n in re.findall(r"\[telemetry\] Dropped (\d+) events", on_log))
    print()
    share = f"{_common.ratio(received, expected_total):.1%}" if expected_total else "--control"
    print(
        f"events at the receiver: {received:,} of {expected_total:,} expected "
        f"({share}; warm-up included), "
        f"{before_shutdown:,} of them before the last ON server's shutdown flush; "
        f"by type: {by_type}"
    )
    print(
        f"ON servers' logs: {flushed:,} events flushed (accepted by the receiver), {dropped:,} "
        f"reported dropped; events lost to a full queue are not logged: "
        f"{expected_total - received:,} missing at the receiver"
    )
    return 0


def echo_server(
    name: str, exports: bool, api_key: str, api_base: str, clients: int, cpus: set[int] | None
) -> tuple[_common.ServerProcess, str]:
    """``octomil serve echo`` (not started yet) and its URL: telemetry ON, sending its events
    to ``api_base``, if it ``exports``; else OFF (no key, ``OTEL_SDK_DISABLED=true``: the SDK
    hands out no-op tracers and meters). Room for every request of ``clients`` to wait."""
    port = _common.free_port()
    waiting = str(max(16, 2 * clients))  # no 429 from the clients
    argv = [sys.executable, "-m", "octomil_otel.cli", "serve", "echo", "--max-waiting", waiting]
    argv += ["--port", str(port)]
    if exports:
        argv += ["--api-key", api_key, "--api-base", api_base]
        env = _common.server_env()
    else:
        env = _common.server_env(OTEL_SDK_DISABLED="true")
    server = _common.ServerProcess(_LOG_NAMES[name], argv, env=env, cpus=cpus)
    return server, f"http://{_common.LOCALHOST}:{port}"


def served_model(server: _common.ServerProcess, url: str) -> str:
    """Wait until ``server`` answers ``/health``; the model it serves."""
    server.wait_ready(f"{url}/health", timeout=60)
    with requests.Session() as session:
        session.trust_env = False  # 127.0.0.1 directly, whatever the proxy variables say
        return str(session.get(f"{url}/health", timeout=5).json()["model"])


class PairOfServers:
    """The ON and the OFF ``octomil serve echo``, started and warmed up together: a new
    pair for each pair of rounds unless ``--same-processes`` (why: the module's docstring)."""

    def __init__(
        self,
        args: argparse.Namespace,
        api_key: str,
        api_base: str,
        cpus: set[int] | None,
        texts: list[str],
    ) -> None:
        self.args, self.api_key, self.api_base, self.cpus, self.texts = (
            args, api_key, api_base, cpus, texts,
        )  # fmt: skip
        self.servers: dict[str, tuple[_common.ServerProcess, str, str]] = {}
        self.on_logs = ""  # the logs of every ON server stopped so far

    def exports(self, name: str) -> bool:
        """Whether server ``name`` sends events to the receiver."""
        return name == ON and not self.args.control

    def start(self, order: tuple[str, str]) -> int:
        """Stop the running pair, start a new one in ``order``, warm it up; the events the
        warm-up sends."""
        self.stop()
        for name in order:
            self.servers[name] = self._started(name)
        for name in order:
            self.servers[name] = self._ready(name)
        expected = 0
        for name, (_, url, model) in self.servers.items():  # imports, first paths, pools
            warm = run_round(
                name, f"{url}/v1/chat/completions", model, self.texts, self.args.warmup,
                self.args.concurrency, self.args.timeout, self.args.round_timeout,
            )  # fmt: skip
            if self.exports(name):
                expected += warm.events_expected
        return expected

    def _started(self, name: str) -> tuple[_common.ServerProcess, str, str]:
        server, url = echo_server(
            name, self.exports(name), self.api_key, self.api_base, self.args.concurrency,
            self.cpus,
        )  # fmt: skip
        return server.start(), url, ""

    def _ready(self, name: str, attempts: int = 3) -> tuple[_common.ServerProcess, str, str]:
        """Server ``name`` answering, and the model it serves; started again on another port
        when another process took its port between ``free_port`` and the server's bind (a
        run of 80 pairs once died of it)."""
        server, url, _ = self.servers[name]
        for _ in range(attempts - 1):
            try:
                return server, url, served_model(server, url)
            except RuntimeError as error:  # it exited
                if "address already in use" not in str(error).lower():
                    raise
            self._retire(name, server)
            server, url, _ = self.servers[name] = self._started(name)
        return server, url, served_model(server, url)

    def stop(self) -> None:
        """SIGTERM both (the ON server flushes what it holds); keep the ON server's log."""
        servers, self.servers = self.servers, {}
        with ExitStack() as stack:  # each stopped, whatever another's stop raises
            for name, (server, _, _) in servers.items():
                stack.callback(self._retire, name, server)

    def _retire(self, name: str, server: _common.ServerProcess) -> None:
        try:
            server.stop()
        finally:
            if name == ON:
                self.on_logs += server.log_text()
            shutil.rmtree(server.log_path.parent, ignore_errors=True)


def _cpus(cpus: set[int] | None) -> str:
    return "any" if cpus is None else ", ".join(map(str, sorted(cpus)))


def report_threads(rounds: list[Round]) -> None:
    """Each server's CPU a request by thread, over all its rounds: where telemetry's cost is."""
    print("\nserver CPU ms a request by thread, all rounds (threads in the order they started):")
    for name in (ON, OFF):
        mine = [r for r in rounds if r.server == name]
        requests_ = sum(r.requests for r in mine)
        if not requests_:
            continue
        totals: list[float] = []
        for r in mine:
            totals += [0.0] * (len(r.thread_cpu) - len(totals))
            for i, seconds in enumerate(r.thread_cpu):
                totals[i] += seconds
        cells = [
            f"{'event loop' if i == 0 else f'thread {i + 1}'} {1000 * seconds / requests_:.3f}"
            for i, seconds in enumerate(totals)
        ]
        print(f"  {name}: " + ", ".join(cells))


def _cpu_a_request(result: Round) -> float:
    """The server's CPU seconds a request in one round."""
    return _common.ratio(result.server_cpu, result.requests)


def report(rounds: list[Round], args: argparse.Namespace, pinned: bool) -> None:
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for name in (ON, OFF):
        mine = [r for r in rounds if r.server == name]
        if not mine:
            continue
        summary[name] = {
            **({} if args.together else {"req/s": _common.median([r.rate for r in mine])}),
            "p50 ms": _common.median([_common.percentile(r.latencies_ms, 50) for r in mine]),
            "p99 ms": _common.median([_common.percentile(r.latencies_ms, 99) for r in mine]),
            "server CPU s / 1k req": _common.median([1000 * _cpu_a_request(r) for r in mine]),
            "client CPU s / 1k req": _common.median(
                [1000 * _common.ratio(r.client_cpu, r.requests) for r in mine]
            ),
            "server CPU, cores busy": _common.median(
                [_common.ratio(r.server_cpu, r.seconds) for r in mine]
            ),
            "client CPU, cores busy": _common.median(
                [_common.ratio(r.client_cpu, r.seconds) for r in mine]
            ),
            "receiver CPU, cores busy": _common.median(
                [_common.ratio(r.receiver_cpu, r.seconds) for r in mine]
            ),
        }
    metrics = list(next(iter(summary.values())))
    for metric in metrics:
        on, off = summary.get(ON, {}).get(metric), summary.get(OFF, {}).get(metric)
        ratio = _common.ratio(on, off) if on is not None and off is not None else ""
        rows.append([metric, "" if on is None else on, "" if off is None else off, ratio])
    rows.append(
        ["errors", *(sum(r.errors for r in rounds if r.server == n) for n in (ON, OFF)), ""]
    )
    print()
    print(
        f"medians over {args.rounds} rounds per server of {args.requests:,} requests, "
        f"{args.concurrency} client threads"
        + (" between both servers (req/s: paced alike, not measured)" if args.together else "")
        + ", half streamed:"
    )
    _common.print_table([" ", ON, OFF, "ON / OFF"], rows)
    pairs = [  # (ON, OFF), back to back
        sorted(pair, key=lambda r: r.server != ON)
        for pair in zip(rounds[::2], rounds[1::2], strict=True)
    ]
    if pairs:
        cpu_added_ms = [1000 * (_cpu_a_request(on) - _cpu_a_request(off)) for on, off in pairs]
        if args.together:
            within = "within each round (both servers at once: the same moment's machine speed):"
        else:
            rate_ratios = [_common.ratio(on.rate, off.rate) for on, off in pairs]
            within = (
                "within each pair of back-to-back rounds (the machine's speed drifts between "
                f"pairs): req/s ON / OFF {_common.describe(rate_ratios, '.3f', ratios=True)};"
            )
        print(f"{within} server CPU ON - OFF ms a request {_common.describe(cpu_added_ms, '+.3f')}")
    where = (
        "run on CPUs apart from the first (--pin)"
        if pinned
        else f"share the {os.cpu_count()} cores with the server (cores busy, above)"
    )
    print(
        "note: the client threads (this process) and the receiver (the Octomil API, a child "
        f"process; busy only while the ON server exports, and with its own CPU in a real "
        f"deployment) {where}; "
        "the server is one Python process, so about 1 core busy means it is saturated. "
        "Server CPU per request is the steadier measure of telemetry's cost."
    )


if __name__ == "__main__":
    sys.exit(main())
