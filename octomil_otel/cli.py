"""The ``octomil`` command.

``octomil serve MODEL [--api-key KEY]``: an OpenAI-compatible server on
http://127.0.0.1:8080/v1 that reports every request (see ``octomil serve --help``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from octomil_otel.engines.resolve import ENGINES, ModelNotFoundError, models_dir
from octomil_otel.extras import EXTRAS, MissingExtraError, require

if TYPE_CHECKING:
    from octomil_otel.dashboard.model import Store

_logger = logging.getLogger("octomil_otel")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
HANGUP = getattr(signal, "SIGHUP", None)  # not on Windows
SHUTDOWN_GRACE_SECONDS = 5
"""After SIGINT/SIGTERM, how long answers in flight may take to reach their clients."""


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
    serve.add_argument("--port", type=_port, default=8080, help="port (%(default)s)")
    serve.add_argument(
        "--n-ctx",
        type=_positive(int),
        default=4096,
        help="llama.cpp context; llama.cpp makes 256 at least (%(default)s)",
    )
    serve.add_argument("--n-threads", type=_positive(int), help="CPU threads (default: all cores)")
    serve.add_argument(
        "--logprobs",
        action="store_true",
        help="llama.cpp: load the model so it can return log probabilities (logprobs, "
        "top_logprobs); costs n-ctx x vocabulary x 4 bytes of memory",
    )
    serve.add_argument(
        "--max-waiting",
        type=_at_least_zero,
        default=16,
        help="requests that may wait for the engine; more get 429 (%(default)s)",
    )
    serve.add_argument(
        "--queue-timeout",
        type=_positive(float),
        default=60.0,
        help="seconds a request may wait for the engine; then 503 (%(default)s)",
    )
    serve.add_argument(
        "--send-timeout",
        type=_positive(float),
        default=30.0,
        help="seconds a streamed answer's next chunk may wait for the client to take what "
        "was sent (a client that stopped reading); then the stream is closed and reported "
        "cancelled (%(default)s)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        metavar="ORIGIN",
        help="a browser origin allowed to call the API, e.g. http://localhost:3000 (repeat "
        "for more; '*' for any). Default: any origin when listening on a loopback address, "
        "none otherwise",
    )
    serve.set_defaults(run=run_serve)

    from octomil_otel.dashboard.stores import default_url

    dashboard = commands.add_parser(
        "dashboard",
        help="the local Octomil API and Monitoring Dashboard",
        description="Receive events as the Octomil API does, store them, and show them: "
        "the ingest API, a JSON query API and the dashboard page, in one process.",
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address (%(default)s)")
    dashboard.add_argument("--port", type=_port, default=8090, help="port (%(default)s)")
    db_help = "sqlite:////absolute/path.db or clickhouse://user:password@host:8123/db (%(default)s)"
    dashboard.add_argument("--db", default=default_url(), help=db_help)
    dashboard.add_argument(
        "--trace-url",
        type=_trace_url,
        metavar="TEMPLATE",
        help="link each request to its trace in your tracing backend: a URL with {trace_id} "
        "where the trace id goes, e.g. 'http://grafana.local/explore?...{trace_id}' "
        "(default: no link)",
    )
    dashboard.add_argument(
        "--retention-days",
        type=_retention_days,
        metavar="N",
        help="delete events older than N days, at start and then hourly (default: keep all)",
    )
    dashboard.set_defaults(run=run_dashboard)

    keys = commands.add_parser("keys", help="API keys of the local dashboard")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="a new key, shown once")
    create.add_argument("--org", help="its org id (default: the first org; see keys list)")
    create.add_argument("--new-org", metavar="NAME", help="create a new org for it")
    create.add_argument("--name", default="cli", help="a label for the key (%(default)s)")
    listing = keys_commands.add_parser("list", help="the keys (their ids, never the keys)")
    revoke = keys_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    for command in (create, listing, revoke):
        command.add_argument("--db", default=default_url(), help=db_help)
        command.set_defaults(run=run_keys)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except MissingExtraError as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


MAX_RETENTION_DAYS = 36_500
"""A hundred years: more would reach before 1970, where no event is."""


def _retention_days(text: str) -> int:
    try:
        days = _positive(int)(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if days > MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_RETENTION_DAYS}, got {text}")
    return int(days)


def _at_least_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _trace_url(text: str) -> str:
    from octomil_otel.dashboard.traces import checked_template

    try:
        return checked_template(text)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port, 0 to 65535, got {text}")
    return value


def run_dashboard(args: argparse.Namespace) -> int:
    require("octomil dashboard", "dashboard")
    import uvicorn

    from octomil_otel.dashboard.app import create_app

    store = _open_store(args.db)
    if store is None:
        return 2
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{shown_host}:{args.port}"
    if not store.has_orgs():
        org_id = store.create_org("default")
        _, key = store.create_key(org_id, "first start")
        print("A new org and API key. Report to this dashboard with:", flush=True)
        print(f"OCTOMIL_API_BASE={base}")
        print(f"OCTOMIL_API_KEY={key}")
        print(f"Open the dashboard: {base}/?key={key}", flush=True)
    else:
        print(f"Open the dashboard: {base}/ (with ?key=<key>)")
        print(f"Keys: octomil keys list --db {args.db}", flush=True)
    if args.host not in _LOOPBACK and all(key.revoked for key in store.list_keys()):
        print(
            f"error: refusing to listen on {args.host} with no active API key: "
            "create one with octomil keys create, or listen on 127.0.0.1",
            file=sys.stderr,
        )
        store.close()
        return 2
    app = create_app(store, trace_url=args.trace_url, retention_days=args.retention_days)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    store.close()
    return 0


def run_keys(args: argparse.Namespace) -> int:
    store = _open_store(args.db)
    if store is None:
        return 2
    try:
        if args.keys_command == "list":
            for key in store.list_keys():
                state = "revoked" if key.revoked else "active"
                print(f"{key.key_id}  {key.org_id}  {state:<7}  {key.name}")
            return 0
        if args.keys_command == "revoke":
            if store.revoke_key(args.key_id):
                print(f"revoked {args.key_id}")
                return 0
            print(f"error: no active key {args.key_id!r}", file=sys.stderr)
            return 1
        if args.new_org:
            org_id = store.create_org(args.new_org)
        elif args.org:
            org_id = args.org
        else:
            orgs = sorted({k.org_id for k in store.list_keys()})
            org_id = orgs[0] if orgs else store.create_org("default")
        try:
            key_id, key = store.create_key(org_id, args.name)
        except ValueError as problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        print(f"{key_id} of {org_id}; the key (shown once):")
        print(f"OCTOMIL_API_KEY={key}")
        return 0
    finally:
        store.close()


def _open_store(url: str) -> Store | None:
    """The store at ``url``, or ``None`` after a one-line error (a bad URL, a locked file)."""
    from octomil_otel.dashboard.stores import open_store

    try:
        return open_store(url)
    except MissingExtraError:
        raise
    except Exception as problem:
        print(f"error: cannot open {url}: {problem}", file=sys.stderr)
        return None


def _cors_origins(args: argparse.Namespace) -> list[str]:
    """As asked; else any origin on loopback (what local servers do), none elsewhere."""
    if args.cors_origins is not None:
        return args.cors_origins
    return ["*"] if args.host in _LOOPBACK else []


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from octomil_otel.engines.resolve import load, resolve

    try:
        source = resolve(args.model, args.engine)
    except (ModelNotFoundError, ValueError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    engine_extra = (source.engine,) if source.engine in EXTRAS else ()
    require(f"octomil serve {args.model}", "serve", *engine_extra)
    import uvicorn
    from prometheus_client import REGISTRY, generate_latest

    import octomil_otel
    from octomil_otel import pipeline
    from octomil_otel.serve import metrics
    from octomil_otel.serve.app import create_app

    meter_provider, metric_readers = metrics.providers()
    before = pipeline.current()  # opentelemetry-instrument's, started before this log was set
    reported_before = before is not None and before.reporter is not None
    telemetry = octomil_otel.init(
        api_key=args.api_key,
        api_base=args.api_base,
        meter_provider=meter_provider,
        metric_readers=metric_readers,
        instrument=[source.engine],
    )
    if reported_before and telemetry.reporter is not None:
        telemetry.reporter.log_initialized()
    _logger.info("Loading %s (%s) ...", source.name, source.engine)
    try:
        engine = load(source, n_ctx=args.n_ctx, n_threads=args.n_threads, logprobs=args.logprobs)
    except Exception as problem:  # the engine's own error, in one line
        print(f"error: cannot load {source.name}: {problem}", file=sys.stderr)
        octomil_otel.shutdown()
        return 1
    served = create_app(
        engine,
        telemetry.recorder,
        max_waiting=args.max_waiting,
        queue_timeout=args.queue_timeout,
        send_timeout=args.send_timeout,
        cors_origins=_cors_origins(args),
        metrics=lambda: generate_latest(REGISTRY),
        on_shutdown=octomil_otel.shutdown,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            served.begin_shutdown()  # at the signal: stop the engine, fail those waiting
            if sig == HANGUP:  # once: uvicorn raises it again when all is flushed
                signal.signal(HANGUP, signal.SIG_DFL)
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            """As uvicorn's, but a second signal (its "force exit": no waiting for the
            connections to close) still shuts the application down, once, which reports the
            requests it stopped and flushes telemetry: uvicorn would skip that, and then
            raise the first signal again, killing the process before any exit handler."""
            await super().shutdown(sockets)
            done = getattr(self.lifespan, "shutdown_event", None)  # uvicorn's LifespanOn
            if self.force_exit and not (done is not None and done.is_set()):
                await self.lifespan.shutdown()

    _logger.info(
        "Serving %s (%s) on http://%s:%d/v1", source.name, source.engine, args.host, args.port
    )
    config = uvicorn.Config(
        served.app,
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        log_level="info",
    )
    server = Server(config)
    if HANGUP is not None:  # the terminal or SSH session went away: stop as for SIGTERM
        signal.signal(HANGUP, server.handle_exit)
    # what start-up built lives as long as the server: out of the collector's sight, the
    # full collections that load brings every few seconds no longer walk it (they took
    # ~50 ms; ~20 ms with it frozen, the rest being the requests' own garbage)
    gc.collect()
    gc.freeze()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stopped as asked, not a crash
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
