"""Requests a second of a saturated ``octomil serve echo``, telemetry ON against OFF, both
loaded at once, each alone on a CPU of its own.

What: the ON server (``--api-key``, events sent to the minimal Octomil API,
``octomil_otel.receiver``, in a child process) and the OFF server (no key,
``OTEL_SDK_DISABLED=true``) start together, each pinned to one CPU (the two swapped from
one pair to the next), and are loaded at the same moment, each by its own ``wrk`` (C
connections, ``bench/serve_load.py``'s prompts, every other request streamed), for S
seconds. Each pair of rounds runs on a new pair of processes. Per pair: each server's
requests a second, their ratio, and each server's CPU a request (read ``SETTLE_SECONDS``
after the load stops: by then the ON server has recorded and encoded its last requests).

Why: ``serve_load.py`` loads one server at a time (the machine's speed moves by ~5 % from
one round to the next, so a 2 % difference in requests a second takes many rounds), or
both at once with each client thread's requests alternating between them (both then
answer at one pace). Here each server answers at its own pace, under the same moment's
machine speed, and a CPU of its own keeps the scheduler from sharing the cores unevenly
between them (unpinned, the share moved the ratio by ±8 %). A server alone on one CPU is
saturated: it answers as many requests as its CPU allows, so the ratio shows every CPU
cycle telemetry adds, its threads' included (on more CPUs, the work they do without the
GIL would run beside the server's). That is also a different server from an unpinned one:
its event loop and engine thread hand each other the GIL on one CPU, cheaply, and it needs
a third less CPU a request. ``wrk`` (in C) keeps the load's own CPU small; it and the
receiver run on any CPU. ``--control`` is the A/A run: both servers OFF.

Needs Linux, 2 or more CPUs, and ``wrk`` (``apt-get install -y wrk``). About 15 s a pair.

Run (from the repo root)::

    .venv/bin/python bench/serve_throughput.py
    .venv/bin/python bench/serve_throughput.py --pairs 30 --seconds 5 --control
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass

import _common
import requests
import serve_load

ON, OFF = serve_load.ON, serve_load.OFF
SETTLE_SECONDS = serve_load.SETTLE_SECONDS
_WRK_DONE = re.compile(r"^DONE (\d+) (\d+) (\d+) (\d+) (\d+)$", re.MULTILINE)


@dataclass
class Load:
    """One server's round: what ``wrk`` counted, and the server's CPU over it."""

    requests: int
    errors: int  # non-2xx answers, timeouts, connection and read errors
    seconds: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return _common.ratio(self.requests, self.seconds)

    @property
    def cpu_ms(self) -> float:
        return 1000 * _common.ratio(self.server_cpu, self.requests)


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
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        "local bodies = {" + ", ".join(f"[==[{body}]==]" for body in bodies) + "}",
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


def start_wrk(
    url: str, script: pathlib.Path, seconds: int, connections: int
) -> subprocess.Popen[str]:
    """``wrk`` loading ``url`` for ``seconds`` with ``connections``, from one thread."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    return subprocess.Popen(
        [*argv, "-s", str(script), url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def wrk_counts(process: subprocess.Popen[str]) -> tuple[int, int, float]:
    """Requests answered, errors, seconds of one finished ``wrk`` run."""
    output, _ = process.communicate()
    match = _WRK_DONE.search(output)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output}")
    answered, status, socket_errors, timeouts, micros = map(int, match.groups())
    return answered, status + socket_errors + timeouts, micros / 1e6


def main() -> int:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--pairs", type=int, default=10, help="pairs of servers, one round each")
    parser.add_argument("--seconds", type=int, default=5, help="S, each round's load")
    parser.add_argument("--connections", type=int, default=8, help="C, each wrk's")
    parser.add_argument("--words", type=int, default=50, help="words per prompt")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load per new server")
    parser.add_argument("--control", action="store_true", help="an A/A run: both servers OFF")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        raise SystemExit("needs Linux and 2 or more CPUs: each server on one of its own")

    texts = serve_load.prompts(64, args.words)
    api_key = "om_bench_serve_throughput"
    work = _common.temp_dir("serve-throughput")
    print(f"load before: {_common.load_average()}")
    if args.control:
        print(f"--control: the server named {ON!r} below has telemetry OFF as well")
    pairs: list[dict[str, Load]] = []
    with _common.ReceiverProcess(api_key) as receiver:
        for pair in range(args.pairs):
            cpu_of = dict(zip((ON, OFF), cpus[:2] if pair % 2 == 0 else cpus[1::-1], strict=True))
            loads = run_pair(args, cpu_of, receiver, texts, work / str(pair))
            pairs.append(loads)
            on, off = loads[ON], loads[OFF]
            print(
                f"  pair {pair + 1}: {ON} on CPU {cpu_of[ON]}: {on.rate:,.0f} req/s, "
                f"{on.cpu_ms:.3f} ms CPU a request; {OFF} on CPU {cpu_of[OFF]}: "
                f"{off.rate:,.0f} req/s, {off.cpu_ms:.3f} ms; ratio "
                f"{_common.ratio(on.rate, off.rate):.4f}"
                + (f"; errors {on.errors}, {off.errors}" if on.errors or off.errors else ""),
                flush=True,
            )
    report(pairs, args)
    return 1 if any(load.errors for loads in pairs for load in loads.values()) else 0


def run_pair(
    args: argparse.Namespace,
    cpu_of: dict[str, int],
    receiver: _common.ReceiverProcess,
    texts: list[str],
    work: pathlib.Path,
) -> dict[str, Load]:
    """Start the ON and the OFF server, each on its CPU, warm each up alone, wait until the
    receiver has had no event for 2 s, load both at once; stop both (SIGTERM)."""
    work.mkdir()
    with ExitStack() as stack:
        servers: dict[str, tuple[_common.ServerProcess, str, pathlib.Path]] = {}
        for name, cpu in cpu_of.items():
            exports = name == ON and not args.control
            port = _common.free_port()
            argv = [sys.executable, "-m", "octomil_otel.cli", "serve", "echo"]
            argv += ["--port", str(port), "--max-waiting", str(4 * args.connections)]
            if exports:
                argv += ["--api-key", receiver.api_key, "--api-base", receiver.url]
            env = _common.server_env(**({} if exports else {"OTEL_SDK_DISABLED": "true"}))
            label = "on" if name == ON else "off"
            server = _common.ServerProcess(f"throughput-{label}", argv, env=env, cpus={cpu})
            stack.enter_context(server)
            stack.callback(shutil.rmtree, server.log_path.parent, ignore_errors=True)
            servers[name] = (server, f"http://{_common.LOCALHOST}:{port}", work / f"{label}.lua")
        for server, url, script in servers.values():
            server.wait_ready(f"{url}/health", timeout=60)
            model = requests.get(f"{url}/health", timeout=5).json()["model"]
            wrk_script(model, texts, script)
        for _, url, script in servers.values():  # imports, first paths, pools
            wrk_counts(start_wrk(url, script, args.warmup, args.connections))
        receiver.wait_settled(sys.maxsize, quiet=2.0, timeout=30.0)
        before = {name: server.cpu_seconds() for name, (server, _, _) in servers.items()}
        order = list(servers)
        random.shuffle(order)  # neither wrk always the first to start
        running = {
            name: start_wrk(servers[name][1], servers[name][2], args.seconds, args.connections)
            for name in order
        }
        counts = {name: wrk_counts(process) for name, process in running.items()}
        time.sleep(SETTLE_SECONDS)
        return {
            name: Load(*counts[name], server.cpu_seconds() - before[name])
            for name, (server, _, _) in servers.items()
        }


def report(pairs: list[dict[str, Load]], args: argparse.Namespace) -> None:
    rates = [_common.ratio(p[ON].rate, p[OFF].rate) for p in pairs]
    added = [p[ON].cpu_ms - p[OFF].cpu_ms for p in pairs]
    print(f"\nload after: {_common.load_average()}")
    print(
        f"{len(pairs)} pairs, each server alone on one CPU, both loaded at once for "
        f"{args.seconds} s by wrk ({args.connections} connections each):"
    )
    print(f"  req/s ON / OFF: {_common.spread(rates, '.4f')}")
    print(f"  server CPU ON - OFF ms a request: {_common.spread(added, '+.3f')}")
    for name in (ON, OFF):
        print(
            f"  {name}: median {_common.median([p[name].rate for p in pairs]):,.0f} req/s, "
            f"{_common.median([p[name].cpu_ms for p in pairs]):.3f} ms CPU a request"
        )


if __name__ == "__main__":
    sys.exit(main())
