"""What recording costs per streamed chunk, in nanoseconds, next to not recording at all.

What: three loops over the same plain Python generator of N items, each in this process,
alternating, several repeats (min and median reported):

  (a) bare:      ``for item in gen(): pass``
  (b) recorded:  ``for item in record_stream(generation, gen(), is_chunk): pass`` where
                 ``is_chunk`` checks each item, as the llama.cpp instrumentation does,
                 with a real SDK tracer and meter provider behind the generation
  (c) naive:     ``for i in gen(): span.add_event("chunk", {"index": i})`` on a real SDK span

It prints ns/chunk for each, what (b) and (c) add over (a), and the ratios (b)/(a), (c)/(a)
and (c-a)/(b-a). The loop in (b) is timed up to the stream's last item; the generation's
one-time end, ``generation.stop()`` (where the metrics, the span attributes with the
packed chunk latencies, and the histograms are built), runs after the clock stops and is
reported on its own: at the same N (also as a per-chunk total with the loop, next to
(c)), and for a 500-chunk generation (a long streamed answer).

Why: the design puts one clock read and one list append per chunk on the engine's loop
and defers everything else to the end. This measures whether that holds and what it buys
over the obvious way (a span event per chunk), without an engine's own cost in the way.

Run (from the repo root)::

    .venv/bin/python bench/recorder_hot_path.py
    .venv/bin/python bench/recorder_hot_path.py --chunks 200000 --repeats 11 --end-chunks 1 500
"""

from __future__ import annotations

import gc
import platform
import time
from collections.abc import Iterator

import _common
from opentelemetry import trace
from opentelemetry.sdk import version as sdk_version

from octomil_otel.generation import Recorder
from octomil_otel.stream import record_stream

now = time.perf_counter_ns


def source(n: int) -> Iterator[int]:
    """Stands in for an engine's stream: a plain generator, one item per chunk."""
    for i in range(n):  # noqa: UP028  # a loop that yields, like an engine's generator
        yield i


def is_chunk(item: object) -> bool:
    """What the llama.cpp instrumentation does per item: check that it carries output."""
    return item is not None


def run_bare(n: int) -> int:
    gc.collect()
    t0 = now()
    for _item in source(n):
        pass
    return now() - t0


def run_recorded(recorder: Recorder, n: int) -> tuple[int, int]:
    """(loop ns, end ns). ``owner=False`` keeps ``stop()`` out of the timed loop; the
    per-item code of the proxy is the same either way (``owner`` is read only at the end)."""
    generation = recorder.start(model="bench", engine="bench", stream=True)
    stream = record_stream(generation, source(n), is_chunk, owner=False)
    gc.collect()
    t0 = now()
    for _item in stream:
        pass
    loop = now() - t0
    generation.set_usage(input_tokens=8, output_tokens=n)
    t0 = now()
    generation.stop()
    return loop, now() - t0


def run_naive(tracer: trace.Tracer, n: int) -> int:
    span = tracer.start_span("naive")
    gc.collect()
    t0 = now()
    for i in source(n):
        span.add_event("chunk", {"index": i})
    elapsed = now() - t0
    span.end()
    return elapsed


def end_cost(recorder: Recorder, chunks: int, repeats: int) -> list[int]:
    """ns of ``generation.stop()`` for a generation that saw ``chunks`` chunks."""
    times = []
    for _ in range(repeats):
        generation = recorder.start(model="bench", engine="bench", stream=True)
        for _ in range(chunks):
            generation.chunk()
        generation.set_usage(input_tokens=8, output_tokens=chunks)
        t0 = now()
        generation.stop()
        times.append(now() - t0)
    return times


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--chunks", type=int, default=100_000, help="N chunks per loop")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each loop")
    parser.add_argument(
        "--end-chunks",
        type=int,
        nargs="+",
        default=[1, 500],
        help="generation sizes for the stop() cost",
    )
    parser.add_argument("--end-repeats", type=int, default=200, help="stop() calls per size")
    args = parser.parse_args()
    n: int = args.chunks

    providers = _common.make_providers()
    recorder = Recorder(providers.tracer_provider, providers.meter_provider)
    tracer = providers.tracer_provider.get_tracer("bench-naive")

    def run(key: str) -> int:
        if key == "a":
            return run_bare(n)
        if key == "b":
            loop, end = run_recorded(recorder, n)
            ends_b.append(end)
            return loop
        return run_naive(tracer, n)

    ends_b: list[int] = []
    for key in "abc":  # warm-up: imports, caches, the SDK's first span
        run(key)
    ends_b.clear()
    times: dict[str, list[int]] = {key: [] for key in "abc"}
    order = "abc"
    for _ in range(args.repeats):
        for key in order:
            times[key].append(run(key))
        order = order[1:] + order[0]  # rotate, so no loop always runs first

    per_chunk = {key: [t / n for t in ts] for key, ts in times.items()}
    lo = {key: min(v) for key, v in per_chunk.items()}
    mid = {key: _common.median(v) for key, v in per_chunk.items()}

    print(
        f"recorder hot path: N={n:,} chunks, {args.repeats} repeats, alternating; "
        f"Python {platform.python_version()}, opentelemetry-sdk {sdk_version.__version__}"
    )
    labels = {
        "a": "(a) bare generator",
        "b": "(b) record_stream + chunk()",
        "c": "(c) naive span.add_event",
    }
    _common.print_table(
        ["ns/chunk", "min", "median", "added (min)", "added (median)"],
        [
            [labels[k], lo[k], mid[k], lo[k] - lo["a"], mid[k] - mid["a"]]
            if k != "a"
            else [labels[k], lo[k], mid[k], "", ""]
            for k in "abc"
        ],
    )
    print()
    _common.print_table(
        ["ratio", "min", "median"],
        [
            ["(b)/(a)", _common.ratio(lo["b"], lo["a"]), _common.ratio(mid["b"], mid["a"])],
            ["(c)/(a)", _common.ratio(lo["c"], lo["a"]), _common.ratio(mid["c"], mid["a"])],
            [
                "(c-a)/(b-a)",
                _common.ratio(lo["c"] - lo["a"], lo["b"] - lo["a"]),
                _common.ratio(mid["c"] - mid["a"], mid["b"] - mid["a"]),
            ],
        ],
    )
    end_b = _common.median(ends_b)
    print(
        f"\n(b)'s one-time end at N={n:,}, not in (b) above: stop() median "
        f"{end_b / 1e6:,.1f} ms = {end_b / n:,.0f} ns per chunk recorded"
    )
    print(
        f"(b) with its end, added per chunk (median): {mid['b'] - mid['a'] + end_b / n:,.0f} ns"
        f" in total, vs (c) {mid['c'] - mid['a']:,.0f} ns"
    )

    print(f"\nend cost: generation.stop(), {args.end_repeats} calls per size, alternating")
    sizes: list[int] = args.end_chunks
    end_times: dict[int, list[int]] = {size: [] for size in sizes}
    end_cost(recorder, max(sizes), 5)  # warm-up
    rounds = 10
    for _ in range(rounds):
        for size in sizes:
            end_times[size] += end_cost(recorder, size, max(1, args.end_repeats // rounds))
    _common.print_table(
        ["chunks", "min us", "median us", "median ns/chunk"],
        [
            [
                f"{size:,}",
                min(ts) / 1e3,
                _common.median(ts) / 1e3,
                _common.median(ts) / size,
            ]
            for size, ts in end_times.items()
        ],
    )
    providers.shutdown()


if __name__ == "__main__":
    main()
