"""What the current GenAI conventions cost a request, against today's names.

With ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` the recorder records
``gen_ai.client.inference.time_per_output_chunk`` once per chunk after the first (the
conventions define it per chunk), and token counters instead of one histogram: work done
once per request, when it ends, proportional to its chunks. This runs the same requests
(``Recorder`` directly, W chunks each, an SDK MeterProvider with a metric reader, as an
application that exports metrics has) in child processes, default names and current names
alternating, and prints the CPU per request of each (every thread), their difference, and
that difference per chunk.

Run: ``.venv/bin/python bench/conventions_cost.py [--requests 5000] [--words 50] [--rounds 5]``
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

import _common

CHILD = """
import gc, sys, time
n, words = int(sys.argv[1]), int(sys.argv[2])
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from octomil_otel.generation import Recorder
recorder = Recorder(TracerProvider(), MeterProvider(metric_readers=[InMemoryMetricReader()]))
gc.collect()
gc.freeze()
started = time.process_time()
for _ in range(n):
    generation = recorder.start(model="tiny", engine="llamacpp", stream=True, input_tokens=9)
    for _ in range(words):
        generation.chunk()
    generation.set_usage(output_tokens=words)
    generation.stop()
print((time.process_time() - started) / n)
"""
NAMINGS = {"today's names": "", "current names": "gen_ai_latest_experimental"}


def cpu_per_request(opt_in: str, args: object) -> float:
    env = {**_common.server_env(), "OTEL_SEMCONV_STABILITY_OPT_IN": opt_in}
    command = [sys.executable, "-c", CHILD, str(args.requests), str(args.words)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return float(done.stdout)


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="N, per process")
    parser.add_argument("--words", type=int, default=50, help="W: chunks per request")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    seconds: dict[str, list[float]] = {name: [] for name in NAMINGS}
    for round_ in range(args.rounds):
        order = list(NAMINGS) if round_ % 2 == 0 else list(reversed(NAMINGS))
        for name in order:
            seconds[name].append(cpu_per_request(NAMINGS[name], args))

    today, current = (statistics.median(seconds[name]) * 1e6 for name in NAMINGS)
    print(
        f"{args.requests} requests of {args.words} chunks a process, {args.rounds} rounds, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; CPU per request (median):"
    )
    for name in NAMINGS:
        runs = sorted(round(s * 1e6, 1) for s in seconds[name])
        print(f"  {name:14} {statistics.median(seconds[name]) * 1e6:7.1f} us   {runs}")
    difference = current - today
    print(f"  current - today's: {difference:+.1f} us a request, "
          f"{difference / args.words:+.2f} us a chunk ({current / today:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
