"""What a streamed chunk costs all in: every instruction of the whole process, export included.

What: ``bench/all_in_driver.py`` runs under valgrind's callgrind with collection on from the
first instruction to the last, on every thread: the application's, the span processor's,
the reporter's. The instrumented program calls ``octomil.init(api_key=...)`` and delivers
its events, encoded, gzip-compressed and POSTed, to a real Octomil API on 127.0.0.1 (the
minimal ``octomil_otel.receiver`` in a child process, outside valgrind) before it exits;
the plain program is the same without ``init``. Each runs at two generation lengths, and

    all-in per chunk = (I_instr(N2) - I_instr(N1) - (I_plain(N2) - I_plain(N1))) / (N2 - N1)

so start-up, imports, model load, ``init`` and everything a request costs once cancel, and
what is left is what each chunk adds: the hot path, and building, encoding, compressing
and sending its ``chunk_produced`` event. Instruction counts move with nothing but the
process's memory layout (CPython's allocator), so every configuration runs under several
layouts (``--heaps``: how many objects of every small size the driver keeps alive before
the stream) and the median is the figure; the spread is printed too.

Sources (``--source``): ``engine``, llama-cpp-python on the tests' tiny GGUF (the figure the
README publishes, next to the ~5.6M instructions a token of that model costs in the whole
process), and ``python``, a bare generator through ``record_stream`` (our cost without an
engine's noise).

Why: ``callgrind_chunk.sh`` counts only the consuming loop; this counts what a user's
process really spends, threads and export included.

Caveat: with the engine, the figure moves with the heap more than with our code. What our
code runs is about 5k of it (``--separate-threads=yes`` splits the count by thread). The
engine's own instructions sit on levels about 25-30k a chunk apart, in the plain program
too (5,561k to 5,605k a chunk on 2026-12-01, moved by nothing but the lengths of the
arguments and of the working directory): llama-cpp-python makes ~4,600
``PyObject_Malloc``/``Free`` calls a token, and in some heaps some of them meet a pool that
was full (callgrind's line counts in ``obmalloc.c``: the lines that link such a pool back
count 359 instructions a token in most plain runs, 533 to 1,982 in instrumented ones), and
glibc's ``_int_malloc`` costs 15 to 30 instructions more a call. Which level a run lands on
depends on where each size class stands in its pools when the stream starts, and on what
other threads allocate during the stream. So the driver delivers the warm-up request's
events before the measured stream starts (a request's cost, which the two lengths cancel
anyway; encoded beside the stream, they put most layouts on the high level), and the
layouts are live heaps, not lengths of an ignored argument: with those, all the layouts of
one build could land on one level (2026-12-01: one build +25.4k to +36.9k over five, another
-10.7k to +25.6k, the two a few micro-optimizations apart), so that the level of a build,
not its work, made the figure. Kept objects of every size class sample the levels in both
programs alike. In an application that streams while other requests are exported, the
engine's level moves the same way: that is the allocator's, not work our code does, and no
figure here isolates it. Read ``callgrind_annotate`` on the kept profiles (the work
directory is printed) before reading a change into it.

Needs valgrind (``apt-get install -y valgrind``) and a llama-cpp-python built without
AVX-512 (``scripts/setup.sh``). The defaults take about 15 minutes on 2 cores (2026-12-01).

Run (from the repo root)::

    .venv/bin/python bench/callgrind_all_in.py
    .venv/bin/python bench/callgrind_all_in.py --source python --n1 200 --n2 2200
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

import _common
from all_in_driver import API_KEY

DRIVER = pathlib.Path(__file__).with_name("all_in_driver.py")
DEFAULT_N = {"engine": (64, 576), "python": (200, 4200)}


def count_instructions(work: pathlib.Path, label: str, driver_args: list[str]) -> int:
    """Run the driver under callgrind; the instructions of the whole process."""
    log = work / f"{label}.log"
    env = {
        **_common.server_env(),
        "OMP_WAIT_POLICY": "PASSIVE",
        "GOMP_SPINCOUNT": "0",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    }
    command = [
        "setarch", platform.machine(), "-R",
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={work / label}.callgrind",
        f"--log-file={log}", sys.executable, str(DRIVER), *driver_args,
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, cwd=_common.REPO_ROOT)
    found = re.search(r"Collected : (\d+)", log.read_text()) if log.exists() else None
    if run.returncode != 0 or found is None:
        raise SystemExit(f"run {label} failed:\n{run.stdout}{run.stderr}")
    return int(found.group(1))


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--source", choices=["engine", "python", "all"], default="all")
    parser.add_argument("--n1", type=int, help="chunks in the short run (default per source)")
    parser.add_argument("--n2", type=int, help="chunks in the long run (default per source)")
    parser.add_argument(
        "--heaps", default="0,1500,3000,4500,6000,7500,9000", help="layouts: objects kept"
    )
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes at a time")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install -y valgrind")
    heaps = [int(h) for h in args.heaps.split(",")]
    sources = ["engine", "python"] if args.source == "all" else [args.source]
    work = pathlib.Path(tempfile.mkdtemp(prefix="octomil-callgrind-"))

    with _common.ReceiverProcess(API_KEY) as api:
        gguf = _common.tiny_gguf(work)
        runs = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for src in sources:
                n1, n2 = args.n1 or DEFAULT_N[src][0], args.n2 or DEFAULT_N[src][1]
                for heap in heaps:
                    for mode in ("plain", "instrumented"):
                        for n in (n1, n2):
                            label = f"{src}-{mode}-{n}-heap{heap}"
                            driver_args = [
                                "--source", src, "--mode", mode, "--chunks", str(n),
                                "--gguf", str(gguf), "--api-base", api.url, "--heap", str(heap),
                            ]  # fmt: skip
                            runs[src, mode, n, heap] = pool.submit(
                                count_instructions, work, label, driver_args
                            )
        counts = {key: future.result() for key, future in runs.items()}
        received = api.total()

    print(f"callgrind, whole process, every thread; {os.cpu_count()} cores; work in {work}")
    print("per chunk = (I(N2) - I(N1)) / (N2 - N1); all-in = instrumented - plain\n")
    rows = []
    for src in sources:
        n1, n2 = args.n1 or DEFAULT_N[src][0], args.n2 or DEFAULT_N[src][1]
        added = []
        for heap in heaps:
            per = {
                mode: (counts[src, mode, n2, heap] - counts[src, mode, n1, heap]) / (n2 - n1)
                for mode in ("plain", "instrumented")
            }
            added.append(per["instrumented"] - per["plain"])
            rows.append((src, heap, n1, n2, *map(round, (*per.values(), added[-1]))))
        rows.append((src, "median", n1, n2, "", "", round(statistics.median(added))))
    _common.print_table(
        ["source", "heap", "N1", "N2", "plain Ir/chunk", "instr. Ir/chunk", "all-in added"],
        rows,
    )
    print(f"\nevents the API accepted from the instrumented runs: {received}")


if __name__ == "__main__":
    main()
