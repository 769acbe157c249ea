"""One whole program, plain or with ``octomil.init``, for ``bench/callgrind_all_in.py``.

What: the process whose every instruction, on every thread, valgrind's callgrind counts. It
streams one request of exactly N chunks and exits:

  * ``--source engine``: llama-cpp-python on a GGUF (``--gguf``), ``n_threads=1``: a warm-up
    completion of 4 tokens, then ``create_completion(..., stream=True, max_tokens=N)``,
    consumed (the tests' tiny model never reaches EOS, so that is N chunks);
  * ``--source python``: a plain Python generator of N items; instrumented, it goes through
    ``record_stream`` on ``init()``'s recorder, as an engine's stream does.

``--mode instrumented`` first runs ``octomil.init(api_key=..., api_base=--api-base,
instrument=["llamacpp"])``, the way an application turns telemetry on, and before exiting
waits for ``Telemetry.flush()``: the events are encoded, compressed and POSTed to the API
at ``--api-base`` (a real one, on 127.0.0.1) inside the counted process, and the driver
checks that the API accepted every one. ``--mode plain`` is the same program without
``init`` (it imports ``octomil`` too). Before the measured stream, the instrumented program
waits until the warm-up request's events are delivered, both modes collect and freeze the
start-up heap (``settle_heap``), then keep ``--heap`` objects of every small size alive
(``fill_pools``): where each of the allocator's size classes stands in its pools when the
stream starts, the layout that the engine's own count depends on.

Not meant to be run on its own except to try it::

    .venv/bin/python bench/all_in_driver.py --source python --mode plain --chunks 100
"""

from __future__ import annotations

import gc
import pathlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import _common

API_KEY = "sk-bench-0123456789abcdef"
DEVICE = "0123456789ab"
WARM_UP_TOKENS = 4


def source(n: int) -> Iterator[int]:
    for i in range(n):  # noqa: UP028  # a loop that yields, like an engine's generator
        yield i


def settle_heap() -> None:
    """Collect, then freeze, what start-up made (imports, the model, ``init``).

    Otherwise a full collection traverses those hundreds of thousands of objects (millions
    of instructions) whenever the count of new objects happens to cross the threshold, and
    under valgrind that depends on how often the background threads woke up, that is on
    how slowly the run went: the same program then counted 11k or 85k per chunk."""
    gc.collect()
    gc.freeze()


def fill_pools(objects: int) -> list[bytes]:
    """``objects`` bytes objects of each size pymalloc serves in turn (34 to 512 bytes with
    their header: one in ~30 in each of its size classes from 48 bytes up, so that 10,000
    fill a pool of 16 KiB of each), to be kept alive: they move where the next allocation of
    each class lands, as a program's live objects do."""
    return [b"x" * (i % 479 + 1) for i in range(objects)]


def consume(stream: Iterable[Any]) -> int:
    return sum(1 for _item in stream)


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--source", choices=["engine", "python"], required=True)
    parser.add_argument("--mode", choices=["plain", "instrumented"], required=True)
    parser.add_argument("--chunks", type=int, required=True, help="N: chunks to stream")
    parser.add_argument("--gguf", type=pathlib.Path, help="engine: the model")
    parser.add_argument("--api-base", default="", help="instrumented: the Octomil API")
    parser.add_argument("--heap", type=int, default=0, help="objects kept before the stream")
    args = parser.parse_args()

    # both modes import it: the heaps that generation starts from then differ by what
    # init() made, not by a few hundred modules (the engine's ~4,600 allocations a token
    # cost more or less with the heap they land in)
    import octomil

    telemetry = None
    if args.mode == "instrumented":
        telemetry = octomil.init(
            api_key=API_KEY, api_base=args.api_base, device_id=DEVICE, instrument=["llamacpp"]
        )
    if args.source == "engine":
        import llama_cpp

        llm = llama_cpp.Llama(
            model_path=str(args.gguf), n_ctx=max(512, args.chunks + 64), n_threads=1,
            verbose=False, seed=0,
        )  # fmt: skip

        def stream(tokens: int) -> Iterable[Any]:
            return llm.create_completion("hello world", max_tokens=tokens, stream=True)

        consume(stream(WARM_UP_TOKENS))
        # the warm-up's export is a request's cost, which the two lengths cancel; run
        # beside the measured stream, what it allocates moved the engine's own
        # allocations to another level in some heaps (see callgrind_all_in.py)
        if telemetry is not None and not telemetry.flush(60.0):
            sys.exit("the warm-up's events were not delivered within 60 s")
        settle_heap()
        kept = fill_pools(args.heap)
        count = consume(stream(args.chunks)) - 1  # N chunks of text, then the final one
        expected_events = (WARM_UP_TOKENS + 2) + (args.chunks + 2)
    else:
        settle_heap()
        kept = fill_pools(args.heap)
        if telemetry is None:
            count = consume(source(args.chunks))
        else:
            from octomil_otel.stream import record_stream

            generation = telemetry.recorder.start(model="bench", engine="echo", stream=True)
            count = consume(record_stream(generation, source(args.chunks)))
        expected_events = args.chunks + 2
    del kept
    if count != args.chunks:
        sys.exit(f"streamed {count} chunks, expected {args.chunks}")
    if telemetry is not None:
        if not telemetry.flush(60.0):
            sys.exit("the events were not all delivered within 60 s")
        delivered = telemetry.reporter.delivered_events
        telemetry.shutdown()
        if delivered != expected_events:
            sys.exit(f"the API accepted {delivered} events, expected {expected_events}")
    print(f"{args.source} {args.mode}: {count} chunks", file=sys.stderr)


if __name__ == "__main__":
    main()
