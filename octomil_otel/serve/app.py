"""The OpenAI-compatible HTTP API of ``octomil serve``.

Each request is one ``Generation``, opened when the request arrives, so its TTFC includes
any wait for the engine. The engine is not thread-safe: requests take turns on one engine
thread, at most ``max_waiting`` wait for their turn and none for longer than
``queue_timeout`` (429 and 503 then).

Every request ends, and is reported, exactly once, however its client or the operator
behaves:

* a client that disconnects stops the engine at the next token, streamed or not, and its
  request is ``cancelled``;
* a streamed answer is computed one chunk at a time, as the client reads it; a client that
  stops reading for ``send_timeout`` seconds has its stream closed (``cancelled``), so it
  cannot hold the engine;
* ``begin_shutdown()`` (``octomil serve`` calls it on SIGINT/SIGTERM) stops the running
  request at its next token (``cancelled``; its client gets a 503, or an error event in its
  stream) and fails those waiting for the engine (``error.type`` ``shutdown``, a 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Send

from octomil_otel import semconv
from octomil_otel.engines.base import (
    Cancelled,
    Completion,
    ContextLengthExceeded,
    Engine,
    Piece,
    RequestError,
    ToolCallDelta,
    complete,
    stream,
)
from octomil_otel.engines.base import Request as EngineRequest
from octomil_otel.generation import Generation, Recorder
from octomil_otel.serve.schemas import ChatCompletionBody, CompletionBody

_logger = logging.getLogger(__name__)

SHUTTING_DOWN = "the server is shutting down"


class Overloaded(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ShuttingDown(Exception):
    """The server stopped while the request waited for the engine."""

    def __init__(self) -> None:
        super().__init__(SHUTTING_DOWN)


class EngineSlot:
    """One request at a time on the engine; a bounded number waiting, for a bounded time;
    none once ``close()`` was called."""

    def __init__(self, max_waiting: int, timeout: float) -> None:
        self._semaphore = asyncio.Semaphore(1)
        self._closed = asyncio.Event()
        self._waiting = 0
        self._max_waiting = max_waiting
        self._timeout = timeout

    async def acquire(self) -> None:
        """Raises ``Overloaded`` (too many waiting, waited too long) or ``ShuttingDown``."""
        if self._closed.is_set():
            raise ShuttingDown()
        if self._semaphore.locked() and self._waiting >= self._max_waiting:
            raise Overloaded(f"{self._waiting} requests are already waiting for the engine", 429)
        self._waiting += 1
        acquiring = asyncio.ensure_future(self._semaphore.acquire())
        closed = asyncio.ensure_future(self._closed.wait())
        keep = False
        try:
            await asyncio.wait(
                (acquiring, closed), timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED
            )
            keep = acquiring.done() and not self._closed.is_set()
        finally:  # also when the waiting request itself is cancelled
            self._waiting -= 1
            closed.cancel()
            if not acquiring.cancel() and not acquiring.cancelled() and not keep:
                self._semaphore.release()  # acquired, but not for a request that will run
        if keep:
            return
        if self._closed.is_set():
            raise ShuttingDown()
        raise Overloaded(f"the engine stayed busy for {self._timeout:g} s; try again later", 503)

    def release(self) -> None:
        self._semaphore.release()

    @property
    def running(self) -> int:
        return int(self._semaphore.locked())

    @property
    def waiting(self) -> int:
        return self._waiting

    def close(self) -> None:
        """Fail every waiting request and every later one with ``ShuttingDown``."""
        self._closed.set()


class Server:
    """The app, and how to stop it: ``begin_shutdown()`` may be called from a signal
    handler or any thread, any number of times."""

    def __init__(self, app: FastAPI, begin_shutdown: Callable[[], None]) -> None:
        self.app = app
        self.begin_shutdown = begin_shutdown


def _http_telemetry(recorder: Recorder) -> dict[str, Any]:
    """FastAPI's own OpenTelemetry (its recent releases), as ``octomil serve`` wants it: an
    HTTP server span, which joins a client's ``traceparent`` and parents the request's
    GenAI span, only where spans are exported, and none for probes and scrapes
    (``/health``, ``/metrics``); no spans of FastAPI's internals, no HTTP metrics or logs.
    Left to its defaults it builds four spans a request (the HTTP span, dependencies,
    endpoint, serialization) that nobody sees without OTLP, records two HTTP metrics, and
    wraps every streamed chunk's send: most of what telemetry added to a served request's
    CPU (``bench/serve_load.py``)."""
    if "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {
        "telemetry": {
            "tracer_provider": recorder.tracer_provider,
            "tracing": recorder.spans_observed(),
            "exclude": lambda scope: scope.get("path") in _UNTRACED_PATHS,
            "auto_configure": False,  # FASTAPI_OTEL_AUTO_CONFIGURE: the exporters are init()'s
            "operation_spans": False,
            "metrics": False,
            "logs": False,
        }
    }


_UNTRACED_PATHS = frozenset(("/health", "/metrics"))


def create_app(
    engine: Engine,
    recorder: Recorder,
    *,
    max_waiting: int = 16,
    queue_timeout: float = 60.0,
    send_timeout: float = 30.0,
    cors_origins: Sequence[str] = (),
    metrics: Callable[[], bytes] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> Server:
    """Args:
    engine: the loaded model.
    recorder: where each request is recorded.
    max_waiting, queue_timeout: the bound on waiting for the engine.
    send_timeout: seconds a streamed answer waits for a client that stopped reading.
    cors_origins: the browser origins allowed to call the API (``*``: any), preflight
        ``OPTIONS`` included; none by default.
    metrics: the Prometheus text for ``/metrics``.
    on_shutdown: runs when the server stops, after the engine thread finished.
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octomil-engine")
    slot = EngineSlot(max_waiting, queue_timeout)
    streams: set[_OpenStream] = set()
    stopping = threading.Event()
    stopped = asyncio.Event()  # the same, for the event loop to wait on
    running: set[threading.Event] = set()  # the cancel flag of each non-streamed request
    loop: asyncio.AbstractEventLoop | None = None

    def begin_shutdown() -> None:
        stopping.set()
        for cancel in list(running):
            cancel.set()
        if loop is not None:
            loop.call_soon_threadsafe(slot.close)
            loop.call_soon_threadsafe(stopped.set)

    async def engine_or_stop(work: asyncio.Future[Any], *also: asyncio.Future[Any]) -> bool:
        """Wait for ``work`` on the engine, or ``also``, or the server stopping; whether
        ``work`` is done. Left running, it is the engine's to finish (at its next token, or
        when a long prompt evaluation ends) and report; its result is not waited for."""
        stop = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait((work, stop, *also), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not work.done():
            work.add_done_callback(_retrieved)
        return work.done()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal loop
        loop = asyncio.get_running_loop()
        if stopping.is_set():
            slot.close()
        yield
        begin_shutdown()  # however the server was stopped
        # streams the server cancelled may not have been finalized yet: close them now, so
        # they are reported (as cancelled) before telemetry shuts down
        for open_stream in list(streams):
            open_stream.close()
        executor.shutdown(wait=True)
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(title="octomil serve", lifespan=lifespan, **_http_telemetry(recorder))
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )

    async def on_engine(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    async def answer(
        body: ChatCompletionBody | CompletionBody, operation: str, http: Request
    ) -> Response:
        if body.model != engine.model:
            return error(404, f"model {body.model!r} not found; this server has {engine.model!r}",
                         "invalid_request_error", "model", "model_not_found")  # fmt: skip
        unknown = body.unknown_fields()
        if unknown:
            return error(400, f"request argument not supported here: {unknown[0]}",
                         "invalid_request_error", unknown[0])  # fmt: skip
        request = body.to_request()
        try:
            engine.check(request)
        except RequestError as refused:
            return error(400, str(refused), "invalid_request_error", refused.param)
        generation = recorder.start(
            model=engine.model, engine=engine.name, operation=operation, stream=body.stream
        )
        client_left = asyncio.ensure_future(_disconnected(http))  # while this handler runs
        try:
            return await run(body, operation, request, generation, client_left)
        finally:
            client_left.cancel()

    async def run(
        body: ChatCompletionBody | CompletionBody,
        operation: str,
        request: EngineRequest,
        generation: Generation,
        client_left: asyncio.Future[None],
    ) -> Response:
        waiting = asyncio.ensure_future(slot.acquire())
        await asyncio.wait((waiting, client_left), return_when=asyncio.FIRST_COMPLETED)
        generation.dequeued()  # taken by the engine, refused, or left by its client
        if not waiting.done() or waiting.exception() is not None:
            generation.set_usage(output_tokens=0)  # it never reached the engine: no token
        if not waiting.done():  # the client left the queue: its place, and no engine time
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Overloaded, ShuttingDown):
                await waiting  # gives the place back (or the engine, were it just granted)
            generation.cancel()
            return Response(status_code=499)
        try:
            waiting.result()
        except ShuttingDown as refused:
            generation.fail(refused, error_type=semconv.SHUTDOWN)
            return shutting_down()
        except Overloaded as overloaded:
            generation.fail(overloaded, error_type=semconv.SERVER_OVERLOADED)
            return error(overloaded.status, str(overloaded), "server_overloaded")
        echo = body.prompt if isinstance(body, CompletionBody) and body.echo else ""
        shape = _Shape(operation, generation.request_id, engine.model, echo)
        if not body.stream:
            cancel = threading.Event()
            running.add(cancel)
            if stopping.is_set():
                cancel.set()
            work = asyncio.ensure_future(on_engine(complete, engine, generation, request, cancel))
            try:
                answered = await engine_or_stop(work, client_left)
                cancel.set()  # a no-op once the answer is whole: stops it if the client left
                if not answered and stopping.is_set():
                    return shutting_down()  # now, not after the engine's current step
                done = await work
            except Cancelled:
                return shutting_down() if stopping.is_set() else Response(status_code=499)
            except Exception as failure:
                return engine_error(failure, chat=shape.chat)
            finally:
                cancel.set()  # this handler may itself be cancelled: the engine stops too
                running.discard(cancel)
                slot.release()
            return JSONResponse(shape.whole(done))
        pieces = stream(engine, generation, request)
        open_stream = _OpenStream(pieces, executor, slot, streams)
        first_piece = asyncio.ensure_future(on_engine(next, pieces, None))
        if not await engine_or_stop(first_piece):
            open_stream.close()  # after the engine's step: the request ends cancelled
            return shutting_down()
        try:
            first = first_piece.result()
        except Exception as failure:
            open_stream.close()
            return engine_error(failure, chat=shape.chat)
        return _BoundedStreamingResponse(
            _events(
                shape,
                first,
                pieces,
                on_engine,
                open_stream.close,
                stopping,
                generation if body.include_usage else None,
            ),
            send_timeout=send_timeout,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionBody, http: Request) -> Response:
        return await answer(body, semconv.OPERATION_CHAT, http)

    @app.post("/v1/completions")
    async def completions(body: CompletionBody, http: Request) -> Response:
        return await answer(body, semconv.OPERATION_TEXT_COMPLETION, http)

    served_model = {"id": engine.model, "object": "model", "created": 0, "owned_by": "octomil"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [served_model]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str) -> Response:
        if model != engine.model:
            return error(404, f"model {model!r} not found; this server has {engine.model!r}",
                         "invalid_request_error", "model", "model_not_found")  # fmt: skip
        return JSONResponse(served_model)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The requests on the engine (0 or 1) and waiting for it, as operators poll them."""
        return {
            "status": "stopping" if stopping.is_set() else "ok",
            "model": engine.model,
            "engine": engine.name,
            "requests": {"running": slot.running, "waiting": slot.waiting},
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        body = metrics() if metrics is not None else b""
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = _telling(exc.errors())
        if first.get("type") == "json_invalid":
            return error(400, "the body is not valid JSON", "invalid_request_error")
        location = [str(part) for part in first.get("loc", ()) if not _union_member(part)]
        param = ".".join(location) or None
        message = first.get("msg", "invalid request")
        return error(400, f"{param}: {message}" if param else message,
                     "invalid_request_error", param)  # fmt: skip

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), "invalid_request_error")

    return Server(app, begin_shutdown)


def _telling(errors: Sequence[Any]) -> Any:
    """The error that says most: where a value may take several shapes (a message's text
    or its parts), the one from the shape it took, not "should be a valid string"."""
    return min(errors, key=lambda e: (str(e.get("type", "")).endswith("_type"), -len(e["loc"])))


def _union_member(part: Any) -> bool:
    """A location part that names a union's member (``str``, ``list[TextPart]``), or the
    body itself, rather than a field or an index."""
    return part == "body" or (isinstance(part, str) and ("[" in part or part in _TYPE_NAMES))


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def error(
    status: int, message: str, kind: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    """An error body as OpenAI writes them."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def shutting_down() -> JSONResponse:
    return error(503, SHUTTING_DOWN, "server_error", code=semconv.SHUTDOWN)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Take a finished future's outcome: nobody awaits it any more (the engine already
    reported what became of its request)."""
    if not future.cancelled():
        future.exception()


async def _disconnected(http: Request) -> None:
    """Returns when the client closes its connection (its body was read already)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


def engine_error(failure: Exception, *, chat: bool) -> JSONResponse:
    """The engine refused the request (a ``ValueError``: 400) or failed (500)."""
    if isinstance(failure, RequestError):
        return error(400, str(failure), "invalid_request_error", failure.param)
    if isinstance(failure, ContextLengthExceeded):
        return error(400, str(failure), "invalid_request_error",
                     "messages" if chat else "prompt", "context_length_exceeded")  # fmt: skip
    if isinstance(failure, ValueError):
        return error(400, str(failure), "invalid_request_error")
    _logger.exception("engine error", exc_info=failure)
    return error(500, f"the engine failed: {type(failure).__name__}", "server_error")


def _tool_call_delta(call: ToolCallDelta) -> dict[str, Any]:
    function: dict[str, str] = {"arguments": call.arguments}
    delta: dict[str, Any] = {"index": call.index, "function": function}
    if call.id is not None:
        delta.update(id=call.id, type="function")
    if call.name is not None:
        function["name"] = call.name
    return delta


def _usage(input_tokens: int | None, output_tokens: int | None) -> dict[str, int] | None:
    if input_tokens is None or output_tokens is None:
        return None
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


class _Shape:
    """The OpenAI response and chunk objects of one request."""

    def __init__(self, operation: str, request_id: str, model: str, echo: str = "") -> None:
        """``echo``: text before the answer (a completion's prompt, when it asks for it)."""
        self.chat = operation == semconv.OPERATION_CHAT
        self.echo = echo
        self.head = {
            "id": request_id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": int(time.time()),
            "model": model,
        }

    def whole(self, done: Completion) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": done.finish_reason}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": done.text}
            if done.tool_calls:
                message["content"] = done.text or None
                message["tool_calls"] = [
                    {"id": call.id, "type": "function",
                     "function": {"name": call.name, "arguments": call.arguments}}
                    for call in done.tool_calls
                ]  # fmt: skip
            choice["message"] = message
            choice["logprobs"] = done.logprobs
        else:
            choice.update(text=self.echo + done.text, logprobs=done.logprobs)
        body = {**self.head, "choices": [choice]}
        usage = _usage(done.input_tokens, done.output_tokens)
        if usage is not None:
            body["usage"] = usage
        return body

    def usage_chunk(self, generation: Generation) -> str:
        """``stream_options.include_usage``'s last chunk: no choices, the request's usage
        (``null`` where the engine gave no count), the numbers its telemetry reports."""
        usage = _usage(generation.input_tokens, generation.output_tokens)
        head = {**self.head, "object": "chat.completion.chunk"} if self.chat else self.head
        return f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"

    def chunk(self, piece: Piece, *, first: bool = False) -> str:
        choice: dict[str, Any] = {"index": 0, "finish_reason": piece.finish_reason}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if piece.text or (first and not piece.tool_calls):
                delta["content"] = piece.text
            if piece.tool_calls:
                delta["tool_calls"] = [_tool_call_delta(call) for call in piece.tool_calls]
            choice.update(delta=delta, logprobs=piece.logprobs)
            head = {**self.head, "object": "chat.completion.chunk"}
        else:
            text = self.echo + piece.text if first else piece.text
            choice.update(text=text, logprobs=piece.logprobs)
            head = self.head
        return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"


async def _events(
    shape: _Shape,
    first: Piece | None,
    pieces: Iterator[Piece],
    on_engine: Callable[..., Any],
    close: Callable[[], None],
    stopping: threading.Event,
    usage_of: Generation | None,
) -> AsyncIterator[str]:
    """Server-sent events, one chunk computed per chunk sent; ``close`` runs however it ends
    (and ends the request ``cancelled`` if the engine had more to say). With ``usage_of``,
    a last chunk carries that request's usage."""
    try:
        piece, is_first = first, True
        while piece is not None:
            yield shape.chunk(piece, first=is_first)
            if stopping.is_set():
                yield _error_event(SHUTTING_DOWN, semconv.SHUTDOWN)
                return
            piece, is_first = await on_engine(next, pieces, None), False
        if usage_of is not None:  # the stream is exhausted: the request has ended
            yield shape.usage_chunk(usage_of)
        yield "data: [DONE]\n\n"
    except Exception as failure:  # after the headers: the error goes in the stream
        if not isinstance(failure, ValueError):
            _logger.exception("engine error in a stream", exc_info=failure)
        yield _error_event(str(failure), type(failure).__name__)
    finally:
        close()


def _error_event(message: str, code: str) -> str:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return f"data: {json.dumps(body)}\n\n"


class _BoundedStreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` whose client must keep reading: a send still waiting after
    ``send_timeout`` seconds (the client's socket full, its reader stopped) ends the stream,
    which closes the engine stream and frees the engine; the connection is then closed.

    One watchdog per stream, waking every quarter of the timeout (so a stall ends within
    1.25 times it), rather than a timer around each send: that cost ~8 us a chunk."""

    def __init__(self, content: AsyncIterator[str], *, send_timeout: float, **kwargs: Any):
        super().__init__(content, **kwargs)
        self._send_timeout = send_timeout

    async def stream_response(self, send: Send) -> None:
        sending_since: float | None = None  # while a send waits: since when
        stalled = False

        async def tracked(message: Message) -> None:
            nonlocal sending_since
            sending_since = time.monotonic()
            await send(message)
            sending_since = None

        async with anyio.create_task_group() as group:

            async def respond() -> None:
                await StreamingResponse.stream_response(self, tracked)
                group.cancel_scope.cancel()  # done: the watchdog too

            group.start_soon(respond)
            while not stalled:
                await anyio.sleep(self._send_timeout / 4)
                waited = 0.0 if sending_since is None else time.monotonic() - sending_since
                if waited > self._send_timeout:
                    stalled = True
                    group.cancel_scope.cancel()
        if stalled:
            _logger.warning(
                "closing a stream whose client read nothing for %g s", self._send_timeout
            )
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


class _OpenStream:
    """A streamed answer until it is closed: then the engine stream is closed on the engine
    thread (a no-op if it ended) and the engine is free for the next request, once."""

    def __init__(
        self,
        pieces: Iterator[Piece],
        executor: ThreadPoolExecutor,
        slot: EngineSlot,
        registry: set[_OpenStream],
    ) -> None:
        self._pieces, self._executor, self._slot = pieces, executor, slot
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        registry.add(self)

    def close(self) -> None:
        """Never awaits: it may run in a cancelled task or a finalizer."""
        if self not in self._registry:
            return
        self._registry.discard(self)

        def release(_: Future[Any]) -> None:
            self._loop.call_soon_threadsafe(self._slot.release)

        self._executor.submit(self._pieces.close).add_done_callback(release)  # type: ignore[attr-defined]
