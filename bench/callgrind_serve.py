"""What telemetry costs a served request, in instructions: the whole ``octomil serve`` process.

What: ``octomil serve echo`` runs under valgrind's callgrind (every thread, from the first
instruction to the exit), telemetry ON (``--api-key``, events exported to the minimal
Octomil API on 127.0.0.1, outside valgrind) or OFF (``OTEL_SDK_DISABLED=true``). A client
outside valgrind sends it N chat completions (``bench/serve_load.py``'s prompts, every other
one streamed, C at a time), then SIGTERM: the ON server exports what is left before it
exits, so every event of every request is counted. Each server runs at two N, and

    per request = (I(N2) - I(N1)) / (N2 - N1)

so start-up, imports and the shutdown cancel; ON minus OFF is what telemetry adds to one
request, its export included. The same for each thread (``--separate-threads=yes``),
numbered in the order they started: the event loop (1), then in the ON server the
reporter (2, which compresses and POSTs), the span processor's worker (3, which encodes
the events), the engine's executor thread (4, where each request's generation ends) and
the recorder's (5, ``ended_requests``: each request's metrics, histograms and Octomil
record, in batches); in the OFF server the executor thread is 2.

Why: ``serve_load.py``'s CPU seconds per request move by more than the difference being
measured (+0.09 to +0.29 ms in runs of the same server); instruction counts repeat to about
1 %, so they show what a change saves, and where the cost is. They do not count the
kernel's work (sockets, wake-ups), and an instruction in a server whose caches are cold
costs more time than one in a micro-benchmark's loop.

Needs valgrind (``apt-get install -y valgrind``). About 2 minutes on 2 cores.

Run (from the repo root)::

    .venv/bin/python bench/callgrind_serve.py
    .venv/bin/python bench/callgrind_serve.py --n1 100 --n2 600 --concurrency 8
"""

from __future__ import annotations

import concurrent.futures
import itertools
import pathlib
import platform
import shutil
import sys
import tempfile

import _common
import serve_load

API_KEY = "om_bench_callgrind_serve"


def instructions(path: pathlib.Path) -> int:
    """The instructions a callgrind profile counted (its ``summary:`` line)."""
    with path.open(encoding="utf-8", errors="replace") as profile:
        for line in profile:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"{path} has no summary line")


def run_server(
    telemetry: bool, n: int, args: object, work: pathlib.Path, api_url: str
) -> tuple[list[int], int]:
    """One server under callgrind for ``n`` requests: instructions per thread, and the
    events those requests should produce."""
    label = f"{'on' if telemetry else 'off'}-{n}"
    port = _common.free_port()
    command = [
        "setarch", platform.machine(), "-R",
        "valgrind", "--tool=callgrind", "--separate-threads=yes",
        f"--callgrind-out-file={work / label}.callgrind", f"--log-file={work / label}.log",
        sys.executable, "-m", "octomil_otel.cli", "serve", "echo", "--port", str(port),
        "--max-waiting", str(2 * args.concurrency),
    ]  # fmt: skip
    env = _common.server_env(PYTHONHASHSEED="0")
    if telemetry:
        command += ["--api-key", API_KEY, "--api-base", api_url]
    else:
        env["OTEL_SDK_DISABLED"] = "true"
    url = f"http://{_common.LOCALHOST}:{port}"
    with _common.ServerProcess(label, command, env=env, stop_timeout=600) as server:
        server.wait_ready(f"{url}/health", timeout=900)
        done = serve_load.run_round(
            label, f"{url}/v1/chat/completions", "echo", serve_load.prompts(64, args.words),
            n, args.concurrency, timeout=300, round_timeout=3600,
        )  # fmt: skip
        if done.requests != n:
            raise SystemExit(f"{label}: {done.requests} of {n} answered; {done.first_error}")
        server.stop()
    threads = sorted(work.glob(f"{label}.callgrind-*"), key=lambda p: int(p.name.rsplit("-")[-1]))
    return [instructions(path) for path in threads], done.events_expected


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--n1", type=int, default=100, help="requests in the short run")
    parser.add_argument("--n2", type=int, default=400, help="requests in the long run")
    parser.add_argument("--concurrency", type=int, default=4, help="C client threads")
    parser.add_argument("--words", type=int, default=50, help="words per prompt")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install -y valgrind")
    work = pathlib.Path(tempfile.mkdtemp(prefix="octomil-callgrind-serve-"))

    with _common.ReceiverProcess(API_KEY) as api:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runs = {
                (telemetry, n): pool.submit(run_server, telemetry, n, args, work, api.url)
                for telemetry in (True, False)
                for n in (args.n1, args.n2)
            }
            results = {key: future.result() for key, future in runs.items()}
        received = api.total()
    expected = sum(results[True, n][1] for n in (args.n1, args.n2))

    def per_request(telemetry: bool) -> list[float]:
        short, long = results[telemetry, args.n1][0], results[telemetry, args.n2][0]
        pairs = itertools.zip_longest(short, long, fillvalue=0)  # a short-lived thread
        return [(b - a) / (args.n2 - args.n1) for a, b in pairs]

    on, off = per_request(True), per_request(False)
    print(f"callgrind, whole `octomil serve echo` process; work in {work}")
    print(f"per request = (I({args.n2}) - I({args.n1})) / {args.n2 - args.n1}; "
          f"{args.concurrency} clients, every other request streamed\n")  # fmt: skip
    rows = [
        [f"thread {i + 1}", on[i] if i < len(on) else "", off[i] if i < len(off) else ""]
        for i in range(max(len(on), len(off)))
    ]
    rows.append(["whole process", sum(on), sum(off)])
    rows.append(["added by telemetry", sum(on) - sum(off), ""])
    _common.print_table(["Ir per request", "telemetry ON", "telemetry OFF"], rows)
    print(f"\nevents the API accepted from the ON servers: {received:,} of {expected:,}")


if __name__ == "__main__":
    main()
