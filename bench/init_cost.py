"""What ``octomil.init()`` adds to an application's start-up, measured whole.

An application that uses llama.cpp, in a venv where mlx-lm (and so transformers) is
installed too. Each run is a fresh process; the plain and the instrumented program run
alternately, RUNS times each:

* plain: ``import llama_cpp``, then exit;
* instrumented: the same, then ``import octomil`` and ``octomil.init(api_key=...)``
  reporting to a local Octomil API (``octomil_otel.receiver`` on 127.0.0.1).

Printed: the median wall time of each whole process (interpreter start to exit, atexit's
flush included) and their difference, which is everything ``init()`` costs the start-up,
its import included; and, inside the instrumented process, the median time of
``import octomil`` and of the ``init()`` call alone. The instrumented child also checks that
``init()`` imported no engine.

Usage: ``.venv/bin/python bench/init_cost.py [--runs 15]``
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from _common import ReceiverProcess, argument_parser, server_env

API_KEY = "sk-bench-init"
ENGINES = ("llama_cpp", "mlx_lm", "transformers")
PLAIN = "import llama_cpp\n"
INSTRUMENTED = f"""
import json, sys, time
import llama_cpp
started = time.perf_counter()
import octomil
imported = time.perf_counter()
octomil.init(api_key={API_KEY!r})
done = time.perf_counter()
print(json.dumps({{
    "import_s": imported - started,
    "init_s": done - imported,
    "engines_imported_by_init": [m for m in {ENGINES[1:]!r} if m in sys.modules],
}}))
"""


def run(code: str, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--runs", type=int, default=15, help="processes of each kind")
    args = parser.parse_args()

    receiver = ReceiverProcess(API_KEY).start()
    env = {**server_env(), "OCTOMIL_API_BASE": receiver.url}
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
    env.pop("OCTOMIL_API_KEY", None)
    try:
        run(PLAIN, env)  # warm the page cache for both
        plain, instrumented, inside = [], [], []
        for _ in range(args.runs):
            plain.append(run(PLAIN, env)[0])
            seconds, out = run(INSTRUMENTED, env)
            instrumented.append(seconds)
            inside.append(json.loads(out))
    finally:
        receiver.stop()

    imported = sorted({m for r in inside for m in r["engines_imported_by_init"]})
    plain_ms = statistics.median(plain) * 1000
    instrumented_ms = statistics.median(instrumented) * 1000
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} runs of each")
    print(f"plain process (import llama_cpp):        {plain_ms:8.1f} ms")
    print(f"instrumented process (+ octomil.init()): {instrumented_ms:8.1f} ms")
    print(f"added by octomil, whole process:         {instrumented_ms - plain_ms:+8.1f} ms")
    import_ms = statistics.median(r["import_s"] for r in inside) * 1000
    init_ms = statistics.median(r["init_s"] for r in inside) * 1000
    print(f"  of which import octomil:               {import_ms:8.1f} ms")
    print(f"  of which the init() call:              {init_ms:8.1f} ms")
    print(f"engines imported by init(): {', '.join(imported) or 'none'}")


if __name__ == "__main__":
    main()
