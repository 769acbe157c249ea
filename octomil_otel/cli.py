"""The ``octomil`` command.

``octomil serve MODEL [--api-key KEY]``: an OpenAI-compatible server on
http://127.0.0.1:8080/v1 that reports every request (see ``octomil serve --help``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from octomil_otel.engines.resolve import ENGINES, ModelNotFoundError, models_dir

_logger = logging.getLogger("octomil_otel")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="octomil", description="Octomil: local inference.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible API, with telemetry",
        description="Serve MODEL over an OpenAI-compatible API (/v1/chat/completions, "
        "/v1/completions, /v1/models, /health, /metrics), reporting every request.",
    )
    serve.add_argument(
        "model",
        help="a .gguf file, an MLX model directory, 'echo', a name in the models directory "
        f"(OCTOMIL_MODELS_DIR, now {models_dir()}), or an installed model package such as "
        "gemma3-270m",
    )
    serve.add_argument(
        "--api-key", help="Octomil API key for telemetry (default: OCTOMIL_API_KEY; none: off)"
    )
    serve.add_argument(
        "--api-base", help="Octomil server (default: OCTOMIL_API_BASE or https://api.octomil.com)"
    )
    serve.add_argument("--engine", choices=ENGINES, help="default: from the model")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (%(default)s)")
    serve.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp context (%(default)s)")
    serve.add_argument("--n-threads", type=int, help="CPU threads (default: all cores)")
    serve.add_argument(
        "--max-waiting",
        type=int,
        default=16,
        help="requests that may wait for the engine; more get 429 (%(default)s)",
    )
    serve.add_argument(
        "--queue-timeout",
        type=float,
        default=60.0,
        help="seconds a request may wait for the engine; then 503 (%(default)s)",
    )
    args = parser.parse_args(argv)
    return run_serve(args)


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    import uvicorn
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import REGISTRY, generate_latest

    import octomil_otel
    from octomil_otel.engines.resolve import load, resolve
    from octomil_otel.serve.app import create_app

    try:
        source = resolve(args.model, args.engine)
    except (ModelNotFoundError, ValueError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    telemetry = octomil_otel.init(
        api_key=args.api_key,
        api_base=args.api_base,
        metric_readers=[PrometheusMetricReader()],
        instrument=[source.engine],
    )
    _logger.info("Loading %s (%s) ...", source.name, source.engine)
    try:
        engine = load(source, n_ctx=args.n_ctx, n_threads=args.n_threads)
    except Exception as problem:  # the engine's own error, in one line
        print(f"error: cannot load {source.name}: {problem}", file=sys.stderr)
        octomil_otel.shutdown()
        return 1
    app = create_app(
        engine,
        telemetry.recorder,
        max_waiting=args.max_waiting,
        queue_timeout=args.queue_timeout,
        metrics=lambda: generate_latest(REGISTRY),
        on_shutdown=octomil_otel.shutdown,
    )
    _logger.info(
        "Serving %s (%s) on http://%s:%d/v1", source.name, source.engine, args.host, args.port
    )
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=5, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
