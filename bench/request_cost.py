"""What telemetry costs one served request in CPU, every thread and the export included.

What: the path ``octomil serve`` runs for a request, without the HTTP server around it:
``Recorder.start``, the echo engine's pieces through ``engines.base.stream`` (one chunk per
word of a W-word prompt), the end. A child process runs N such requests and prints its CPU
time per request (``time.process_time()``: every thread of it, user and system), measured
from after start-up to after the last event was delivered:

  * ``off``: no-op providers (what ``OTEL_SDK_DISABLED=true`` gives): nothing recorded;
  * ``on``: ``octomil.init(api_key=...)`` with the metrics of ``/metrics``, as ``octomil
    serve`` starts it (``serve.metrics.providers``), reporting to the minimal Octomil API
    (``octomil_otel.receiver``, in another child process, its CPU not counted): the span
    (none is built when nothing would see it), the histograms, the Octomil record, its
    encoding, gzip and POSTs, checked delivered in full.

Rounds alternate off and on; printed are the medians, and on minus off: what telemetry adds
to each request, all of it. ``bench/serve_load.py`` measures the same under HTTP load.

Run: ``.venv/bin/python bench/request_cost.py [--requests 3000] [--words 50] [--rounds 5]``
"""

from __future__ import annotations

import statistics
import subprocess
import sys

import _common

API_KEY = "sk-bench-0123456789abcdef"
CHILD = """
import gc, sys, time
mode, n, words, api = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
import octomil_otel
from octomil_otel.engines.base import Request, stream
from octomil_otel.engines.echo import EchoEngine
from octomil_otel.generation import Recorder
telemetry = None
if mode == "on":  # as octomil serve starts it (cli.run_serve)
    from octomil_otel.serve import metrics
    provider, readers = metrics.providers()
    telemetry = octomil_otel.init(api_key=sys.argv[5], api_base=api, instrument=False,
                                  meter_provider=provider, metric_readers=readers)
    recorder = telemetry.recorder
else:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider
    recorder = Recorder(NoOpTracerProvider(), NoOpMeterProvider())
engine, request = EchoEngine("echo"), Request(prompt=" ".join(["word"] * words))
gc.collect()
gc.freeze()
started = time.process_time()
for _ in range(n):
    generation = recorder.start(model="echo", engine="echo", operation="text_completion",
                                stream=True)
    for piece in stream(engine, generation, request):
        pass
if telemetry is not None:
    assert telemetry.flush(120), "not delivered"
    assert telemetry.reporter.delivered_events == n * (words + 2), "events missing"
print((time.process_time() - started) / n)
"""


def cpu_per_request(mode: str, args: object, api: str) -> float:
    command = [sys.executable, "-c", CHILD, mode, str(args.requests), str(args.words), api, API_KEY]
    done = subprocess.run(
        command, capture_output=True, text=True, env=_common.server_env(), check=True
    )
    return float(done.stdout)


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="N, per process")
    parser.add_argument("--words", type=int, default=50, help="W: chunks per request")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    receiver = _common.ReceiverProcess(API_KEY).start()
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for round_ in range(args.rounds):
            for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                seconds[mode].append(cpu_per_request(mode, args, receiver.url))
    finally:
        receiver.stop()

    off, on = (statistics.median(seconds[mode]) * 1e6 for mode in ("off", "on"))
    print(f"{args.requests} requests of {args.words} chunks a process, {args.rounds} rounds; "
          "CPU per request, every thread (median):")  # fmt: skip
    print(f"  telemetry off {off:7.1f} us   {sorted(round(s * 1e6) for s in seconds['off'])}")
    print(f"  telemetry on  {on:7.1f} us   {sorted(round(s * 1e6) for s in seconds['on'])}")
    print(f"  added by telemetry: {on - off:+.1f} us a request ({on / off:.2f}x)")


if __name__ == "__main__":
    main()
