"""Requests a second of a saturated ``octomil serve echo``, telemetry ON against OFF: both
loaded at once, each on a CPU of its own with its own load.

What: the ON server (``--api-key``, events sent to the minimal Octomil API,
``octomil_otel.receiver``, in a child process) and the OFF server (no key,
``OTEL_SDK_DISABLED=true``) start together, each pinned to one CPU, and are loaded at the same
moment, each by its own ``wrk`` (C connections, ``bench/serve_load.py``'s prompts, every
other request streamed), for S seconds. Each server's ``wrk`` runs on the server's CPU: each
CPU is a box holding one server and the load on it. The receiver (the Octomil API, which in
a deployment runs elsewhere) needs a CPU too: it runs on the ON server's in half the pairs,
on the OFF server's in the other half (with 3 or more CPUs, the ``wrk``\\s and the receiver
run on the others). Each pair of rounds runs on a new pair of processes; from one pair to
the next the servers swap CPUs (one CPU of this machine is at times ~20 % slower than the
other), and every two pairs the receiver changes sides. Per pair: each server's requests
a second and CPU a request (read ``SETTLE_SECONDS`` after the load stops: by then the ON
server has recorded and encoded its last requests; its last POST comes later and is not
counted, ~0.02 % of the round), the receiver's CPU a request of ON, and the events the
receiver got: a ``generation_started`` and a ``generation_completed`` (``generation_failed``
for a request cancelled when the load stopped) for each request ON answered or had in
flight, or the pair is marked: lost events would make ON cheaper. Over the pairs, the
ratio's geometric mean: the design is balanced (every four pairs, ON once on each CPU with
the receiver beside it, once on each without), so what a CPU's speed and the receiver do to
one server cancel in it; its 95 % confidence interval from what is left once those two
effects are fitted (Student's t). The two effects are printed too: the ratio with the
receiver beside ON (every cycle of the stand-in API counted against telemetry) against
beside OFF bounds what the API's placement does.

Why: ``serve_load.py`` loads one server at a time (the machine's speed moves by ~5 % from
one round to the next, so a 2 % difference in requests a second takes a hundred pairs), or
both at once with each client thread's requests alternating between them (both then
answer at one pace). Here each answers at its own pace under the same moment's machine
speed, and a box of its own keeps the scheduler from sharing the CPUs unevenly between them
(with everything unpinned, the share moved the ratio by ±8 %). A server alone on one CPU is
saturated: it answers as many requests as its CPU allows, so the ratio shows every cycle
telemetry adds, its threads' included (with more CPUs, what they do without the GIL would
run beside the server). It is also a different server from an unpinned one: its event loop
and engine thread hand each other the GIL on one CPU, cheaply, and it needs a third less
CPU a request. ``wrk`` (in C) keeps the load's own CPU small. ``--control`` is the A/A run:
both servers OFF.

Needs Linux, 2 or more CPUs, and ``wrk`` (``apt-get install -y wrk``). About 30 s a pair.

Run (from the repo root)::

    .venv/bin/python bench/serve_throughput.py
    .venv/bin/python bench/serve_throughput.py --pairs 40 --seconds 5 --control
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import _common
import serve_load

ON, OFF = serve_load.ON, serve_load.OFF
SETTLE_SECONDS = serve_load.SETTLE_SECONDS
QUIET_SECONDS = 7.0
"""No event at the receiver for this long: the ON server sent all it had (longer than the
reporter's 5 s interval between POSTs of a trickle)."""
_WRK_DONE = re.compile(r"^DONE (\d+) (\d+) (\d+) (\d+) (\d+)$", re.MULTILINE)


@dataclass
class Load:
    """One server's round: what its ``wrk`` counted, and the server's CPU over it."""

    answered: int  # 2xx and 3xx answers
    errors: int  # answers of 400 and more, answers later than wrk's timeout, socket errors
    seconds: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return _common.ratio(self.answered, self.seconds)

    @property
    def cpu_ms_a_request(self) -> float:
        return 1000 * _common.ratio(self.server_cpu, self.answered)


@dataclass
class Pair:
    loads: dict[str, Load]
    cpu_of: dict[str, int]
    receiver_cpus: set[int]
    receiver_cpu: float  # seconds, over the round and the wait for its events
    events_lost: str  # why the ON server's events look incomplete; "" when they do not

    @property
    def rate_ratio(self) -> float:
        return _common.ratio(self.loads[ON].rate, self.loads[OFF].rate)

    @property
    def cpu_added_ms(self) -> float:
        return self.loads[ON].cpu_ms_a_request - self.loads[OFF].cpu_ms_a_request


def wrk_script(model: str, texts: list[str], path: pathlib.Path) -> pathlib.Path:
    """A ``wrk`` script that sends chat completions of ``texts`` in turn, every other one
    streamed (as ``serve_load.py``), and prints its counts as one ``DONE`` line."""
    bodies = [
        json.dumps({
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "stream": i % 2 == 1,
        })
        for i, text in enumerate(texts)
    ]  # fmt: skip
    level = "="  # a Lua long string's level that no body closes early
    while any(f"]{level}]" in body for body in bodies):
        level += "="
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        "local bodies = {" + ", ".join(f"[{level}[{body}]{level}]" for body in bodies) + "}",
        "local i = 0",
        "function request()",
        "  i = i + 1",
        '  return wrk.format(nil, "/v1/chat/completions", nil, bodies[(i % #bodies) + 1])',
        "end",
        "function done(summary, latency, requests)",
        "  local e = summary.errors",
        '  io.write(string.format("DONE %d %d %d %d %d\\n", summary.requests, e.status,',
        "    e.connect + e.read + e.write, e.timeout, summary.duration))",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def wrk(
    url: str, script: pathlib.Path, seconds: int, connections: int, cpus: set[int]
) -> Iterator[subprocess.Popen[str]]:
    """``wrk`` loading ``url`` for ``seconds`` with ``connections`` from one thread, on
    ``cpus`` from its first instruction (this process's affinity, which it inherits, is
    set around its start); killed on the way out if still running."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        process = subprocess.Popen(
            [*argv, "-s", str(script), url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
    finally:
        os.sched_setaffinity(0, mine)
    with process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def wrk_counts(process: subprocess.Popen[str]) -> tuple[int, int, float]:
    """Answers (2xx, 3xx), errors and seconds of one finished ``wrk`` run. wrk counts an
    answer of 400 or more, and one later than its timeout, among its requests too."""
    output, _ = process.communicate()
    match = _WRK_DONE.search(output)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output}")
    requests_, status, socket_errors, timeouts, micros = map(int, match.groups())
    return requests_ - status - timeouts, status + socket_errors + timeouts, micros / 1e6


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Keep every thread process ``pid`` has now on ``cpus`` (``_common.pin`` moves only
    the one ``pid`` names, and the threads it starts later)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def run_pair(
    args: argparse.Namespace,
    cpu_of: dict[str, int],
    load_cpus: dict[str, set[int]],
    receiver_cpus: set[int],
    receiver: _common.ReceiverProcess,
    texts: list[str],
    work: pathlib.Path,
) -> Pair:
    """Start the ON and the OFF server, each on its CPU (``cpu_of``), warm each up alone,
    wait until the receiver is quiet, load both at once, each from ``load_cpus``, the
    receiver on ``receiver_cpus``; stop both (SIGTERM)."""
    pin_threads(receiver.pid, receiver_cpus)
    servers: dict[str, tuple[_common.ServerProcess, str, pathlib.Path]] = {}
    with ExitStack() as stack:
        for name, cpu in cpu_of.items():
            exports = name == ON and not args.control
            server, url = serve_load.echo_server(
                name, exports, receiver.api_key, receiver.url, args.connections, {cpu}
            )
            script = work / ("on.lua" if name == ON else "off.lua")
            servers[name] = (stack.enter_context(server), url, script)
        for server, url, script in servers.values():
            wrk_script(serve_load.served_model(server, url), texts, script)
        for name, (_, url, script) in servers.items():  # imports, first paths, pools
            with wrk(url, script, args.warmup, args.connections, load_cpus[name]) as warming:
                if wrk_counts(warming)[1]:
                    raise RuntimeError(f"{name}: errors while warming up")
        receiver.wait_settled(sys.maxsize, quiet=QUIET_SECONDS, timeout=60.0)
        events_before, receiver_before = receiver.counts(), receiver.cpu_seconds()
        cpu_before = {name: server.cpu_seconds() for name, (server, _, _) in servers.items()}
        running = {}
        for name in random.sample(list(servers), k=2):  # neither wrk always the first
            _, url, script = servers[name]
            running[name] = stack.enter_context(
                wrk(url, script, args.seconds, args.connections, load_cpus[name])
            )
        counts = {name: wrk_counts(process) for name, process in running.items()}
        time.sleep(SETTLE_SECONDS)
        loads = {
            name: Load(*counts[name], server.cpu_seconds() - cpu_before[name])
            for name, (server, _, _) in servers.items()
        }
        receiver.wait_settled(sys.maxsize, quiet=QUIET_SECONDS, timeout=60.0)
        events = {k: n - events_before.get(k, 0) for k, n in receiver.counts().items()}
        receiver_cpu = receiver.cpu_seconds() - receiver_before
    on_log = servers[ON][0].log_text()
    for server, _, _ in servers.values():  # kept when the pair failed: its logs tell why
        shutil.rmtree(server.log_path.parent, ignore_errors=True)
    lost = "" if args.control else events_lost(events, loads[ON].answered, args.connections)
    if "[telemetry] Dropped" in on_log:
        lost += "; the ON server's log reports dropped events"
    return Pair(loads, cpu_of, receiver_cpus, receiver_cpu, lost.lstrip("; "))


def events_lost(events: dict[str, int], answered: int, connections: int) -> str:
    """Why the events of a round look incomplete, or ``""``: each request the ON server
    answered, or had in flight when its load stopped (at most ``connections`` more: wrk
    closes their connections, and they end as cancelled), sends exactly one
    ``generation_started`` and one ``generation_completed`` or ``generation_failed``. A full
    queue drops the oldest events, of any type, without a log line."""
    started = events.get("generation_started", 0)
    ended = events.get("generation_completed", 0) + events.get("generation_failed", 0)
    if started == ended and answered <= started <= answered + connections:
        return ""
    return f"{started} started and {ended} ended requests' events for {answered} answers"


def main() -> int:
    parser = _common.argument_parser(__doc__)
    parser.add_argument(
        "--pairs", type=int, default=20, help="pairs of servers, one round each (4k, >= 8)"
    )
    parser.add_argument("--seconds", type=int, default=5, help="S, each round's load")
    parser.add_argument("--connections", type=int, default=8, help="C, each wrk's")
    parser.add_argument("--words", type=int, default=50, help="words per prompt")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load per new server")
    parser.add_argument("--control", action="store_true", help="an A/A run: both servers OFF")
    args = parser.parse_args()
    if args.pairs < 8 or args.pairs % 4:
        parser.error("--pairs must be a multiple of 4, 8 or more: the design is balanced by 4")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        raise SystemExit("needs Linux and 2 or more CPUs: each server on one of its own")

    texts = serve_load.prompts(64, args.words)
    print(f"load before: {_common.load_average()}")
    if args.control:
        print(f"--control: the server named {ON!r} below has telemetry OFF as well")
    pairs: list[Pair] = []
    with (
        tempfile.TemporaryDirectory(prefix="octomil-bench-serve-throughput-") as work,
        _common.ReceiverProcess("om_bench_serve_throughput") as receiver,
    ):
        for number in range(args.pairs):
            cpu_of = dict(zip((ON, OFF), cpus[:2] if number % 2 == 0 else cpus[1::-1], strict=True))
            load_cpus = {name: set(cpus[2:]) or {cpu} for name, cpu in cpu_of.items()}
            beside = ON if number // 2 % 2 == 0 else OFF  # the receiver's side, on 2 CPUs
            pair = run_pair(
                args, cpu_of, load_cpus, load_cpus[beside], receiver, texts, pathlib.Path(work)
            )
            pairs.append(pair)
            on, off = pair.loads[ON], pair.loads[OFF]
            print(
                f"  pair {number + 1}: ON on CPU {cpu_of[ON]}: {on.rate:,.0f} req/s, "
                f"{on.cpu_ms_a_request:.3f} ms CPU a request; OFF on CPU {cpu_of[OFF]}: "
                f"{off.rate:,.0f} req/s, {off.cpu_ms_a_request:.3f} ms; ratio "
                f"{pair.rate_ratio:.4f}; receiver on CPU "
                f"{', '.join(map(str, sorted(pair.receiver_cpus)))}, "
                f"{1000 * _common.ratio(pair.receiver_cpu, on.answered):.3f} ms a request"
                + (f"; errors {on.errors}, {off.errors}" if on.errors or off.errors else "")
                + (f"; events lost: {pair.events_lost}" if pair.events_lost else ""),
                flush=True,
            )
    report(pairs, args)
    failed = any(p.events_lost or p.loads[ON].errors or p.loads[OFF].errors for p in pairs)
    return 1 if failed else 0


def report(pairs: list[Pair], args: argparse.Namespace) -> None:
    first_cpu = min(pair.cpu_of[ON] for pair in pairs)
    factors = {  # +1 / -1 in every pair, each +1 in half of them: balanced, orthogonal
        "ON on the first CPU": [1 if p.cpu_of[ON] == first_cpu else -1 for p in pairs],
        "the receiver beside ON": [1 if p.receiver_cpus == {p.cpu_of[ON]} else -1 for p in pairs],
    }
    if len(set(map(frozenset, (p.receiver_cpus for p in pairs)))) == 1:  # on CPUs apart
        del factors["the receiver beside ON"]
    receiver_ms = 1000 * _common.ratio(
        sum(p.receiver_cpu for p in pairs), sum(p.loads[ON].answered for p in pairs)
    )
    print(f"\nload after: {_common.load_average()}")
    print(
        f"{len(pairs)} pairs, each server on a CPU of its own with its wrk "
        f"({args.connections} connections), both loaded at once for {args.seconds} s:"
    )
    logs = [math.log(p.rate_ratio) for p in pairs]
    mean, low, high, effects = balanced_mean(logs, factors)
    print(
        f"  req/s ON / OFF: geometric mean {math.exp(mean):.4f} (95 % confidence interval "
        f"{math.exp(low):.4f} to {math.exp(high):.4f}; pairs from "
        f"{min(p.rate_ratio for p in pairs):.4f} to {max(p.rate_ratio for p in pairs):.4f})"
    )
    for name, effect in effects.items():
        print(
            f"    with {name}: {math.exp(mean + effect):.4f}; without: "
            f"{math.exp(mean - effect):.4f}"
        )
    mean, low, high, _ = balanced_mean([p.cpu_added_ms for p in pairs], factors)
    print(
        f"  server CPU ON - OFF: {mean:+.3f} ms a request (95 % confidence interval "
        f"{low:+.3f} to {high:+.3f})"
    )
    for name in (ON, OFF):
        loads = [p.loads[name] for p in pairs]
        print(
            f"  {name}: median {_common.median([load.rate for load in loads]):,.0f} req/s, "
            f"{_common.median([load.cpu_ms_a_request for load in loads]):.3f} ms CPU a request"
        )
    print(f"  the receiver: {receiver_ms:.3f} ms CPU a request of ON")
    lost = sum(bool(p.events_lost) for p in pairs)
    errors = sum(p.loads[ON].errors + p.loads[OFF].errors for p in pairs)
    print(f"  pairs with events lost: {lost}; HTTP errors: {errors}")


def balanced_mean(
    values: list[float], factors: dict[str, list[int]]
) -> tuple[float, float, float, dict[str, float]]:
    """The mean of ``values`` measured under balanced two-level ``factors`` (each a +1 or -1
    per value, as many of each, orthogonal to each other), its 95 % confidence interval from
    the residuals once each factor's effect is fitted, and those effects (half the
    difference between a factor's +1 and -1 values)."""
    n = len(values)
    mean = statistics.fmean(values)
    effects = {
        name: statistics.fmean(v * sign for v, sign in zip(values, signs, strict=True))
        for name, signs in factors.items()
    }
    residuals = [
        v - mean - sum(effects[name] * signs[i] for name, signs in factors.items())
        for i, v in enumerate(values)
    ]
    df = n - 1 - len(factors)
    half = _common.t_975(df) * (sum(r * r for r in residuals) / df) ** 0.5 / n**0.5
    return mean, mean - half, mean + half, effects


if __name__ == "__main__":
    sys.exit(main())
