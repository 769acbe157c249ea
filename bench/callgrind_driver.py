"""One streamed run of N chunks, plain or instrumented, for ``bench/callgrind_chunk.sh``.

What: the process that valgrind's callgrind counts instructions of. It streams exactly N
chunks, one way, and exits; ``callgrind_chunk.sh`` runs it for two values of N and takes
the difference, so everything that does not grow with N (interpreter start-up, imports,
model load, warm-up, provider set-up and shutdown) cancels out.

Sources (``--source``):

  * ``engine``: llama-cpp-python on a GGUF (``--gguf``, else the tests' tiny model, written
    to a temporary directory), ``n_threads=1``: a warm-up completion, then one
    ``create_completion(..., stream=True, temperature=0, max_tokens=N)``, consumed. The tiny
    model never reaches EOS, so that is N chunks; the driver checks it.
  * ``python``: a plain Python generator of N items, no engine: what remains is our cost.

Modes (``--mode``):

  * ``plain``: the loop alone (``for item in stream: pass``);
  * ``instrumented``: with ``engine``, ``LlamaCppInstrumentor`` is instrumented before the
    warm-up; with ``python``, the generator goes through ``record_stream(generation, gen,
    is_chunk)`` with ``is_chunk`` checking each item, and the generation ends with
    ``stop()`` when the stream is exhausted, as with an engine;
  * ``hot`` (``python`` only): as ``instrumented`` but the generation is never stopped, so
    only the per-chunk path is counted and not the one-time end's per-chunk work (the span
    events and latencies it builds for every chunk);
  * ``naive`` (``python`` only): the obvious alternative for comparison, a generator that
    re-yields each item after ``span.add_event("chunk", {"index": i})`` on a real SDK span.

Providers are the real SDK (``bench/_common.py``), with the batch span processor's export
interval made long so that a run valgrind slows down does not get more timer wake-ups.

Why: instruction counts are nearly deterministic, so they resolve per-chunk costs that
wall-clock timing on a busy machine cannot. Not meant to be run on its own except to try it:

    .venv/bin/python bench/callgrind_driver.py --source python --mode instrumented --chunks 1000
"""

from __future__ import annotations

import collections
import gc
import itertools
import pathlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import _common
from opentelemetry.trace import Span

from octomil_otel.generation import Recorder
from octomil_otel.stream import record_stream

EXPORT_INTERVAL_MS = 3_600_000.0  # one hour: the export thread stays asleep until shutdown
PROMPT = "hello world"


def source(n: int) -> Iterator[int]:
    for i in range(n):  # noqa: UP028  # a loop that yields, like an engine's generator
        yield i


def is_chunk(item: object) -> bool:
    """What the llama.cpp instrumentation does per item: check that it carries output."""
    return item is not None


def consume(stream: Iterable[Any]) -> int:
    """Not measured: warm-ups."""
    return sum(1 for _item in stream)


def measured(stream: Iterable[Any]) -> int:
    """Exhaust ``stream`` in the one region callgrind counts, and return its length.

    ``deque(..., maxlen=0)`` runs CPython's ``consume_iterator``, which nothing else here
    calls: ``callgrind_chunk.sh`` collects only inside it (``--toggle-collect``). Counting
    goes through ``zip`` with ``itertools.count``, in C, the same in every mode. Before it,
    a full collection and ``gc.freeze()``, so that whether a full collection of the
    start-up heap lands inside the region does not depend on start-up details.
    """
    gc.collect()
    gc.freeze()
    counter = itertools.count()
    collections.deque(zip(stream, counter, strict=False), maxlen=0)
    return next(counter)


def add_events(span: Span, stream: Iterable[Any]) -> Iterator[Any]:
    for index, item in enumerate(stream):
        span.add_event("chunk", {"index": index})
        yield item


def run_python(mode: str, n: int) -> int:
    if mode == "plain":
        return measured(source(n))
    providers = _common.make_providers(schedule_delay_millis=EXPORT_INTERVAL_MS)
    if mode == "naive":
        tracer = providers.tracer_provider.get_tracer("bench-naive")
        consume(add_events(tracer.start_span("warm-up"), source(3)))
        span = tracer.start_span("naive")
        count = measured(add_events(span, source(n)))
        span.end()
        providers.shutdown()
        return count
    recorder = Recorder(providers.tracer_provider, providers.meter_provider)
    consume(record_stream(recorder.start(model="warm-up", engine="bench"), source(3), is_chunk))
    generation = recorder.start(model="bench", engine="bench", stream=True)
    count = measured(record_stream(generation, source(n), is_chunk, owner=mode == "instrumented"))
    if mode == "instrumented" and not generation.finished:
        raise SystemExit("the generation did not end with its stream")
    providers.shutdown()
    return count


def run_engine(mode: str, n: int, gguf: pathlib.Path | None) -> int:
    import llama_cpp

    from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor

    path = gguf or _common.tiny_gguf()
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=max(512, n + 64), n_threads=1, verbose=False, seed=0
    )
    providers = _common.make_providers(schedule_delay_millis=EXPORT_INTERVAL_MS)
    if mode == "instrumented":
        LlamaCppInstrumentor().instrument(
            tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
        )

    def stream(tokens: int) -> Iterable[Any]:
        return llm.create_completion(PROMPT, max_tokens=tokens, stream=True, temperature=0)

    consume(stream(4))  # warm-up: first-call costs, and the prompt's KV cache
    count = measured(stream(n)) - 1  # N chunks of text, then one that ends the stream
    providers.tracer_provider.force_flush()
    if mode == "instrumented" and providers.exporter.exported != 2:
        raise SystemExit(f"expected 2 spans, exported {providers.exporter.exported}")
    providers.shutdown()
    return count


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--source", choices=["engine", "python"], required=True)
    parser.add_argument("--mode", choices=["plain", "instrumented", "hot", "naive"], required=True)
    parser.add_argument("--chunks", type=int, required=True, help="N: chunks to stream")
    parser.add_argument("--gguf", type=pathlib.Path, default=None, help="engine: the model")
    args = parser.parse_args()
    if args.source == "engine":
        if args.mode in ("hot", "naive"):
            parser.error(f"--mode {args.mode} is for --source python")
        count = run_engine(args.mode, args.chunks, args.gguf)
    else:
        count = run_python(args.mode, args.chunks)
    if count != args.chunks:
        sys.exit(f"streamed {count} chunks, expected {args.chunks}")
    print(f"{args.source} {args.mode}: {count} chunks", file=sys.stderr)


if __name__ == "__main__":
    main()
