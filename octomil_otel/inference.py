"""``octomil.generate``: one call to run a model, recorded as one request.

The same engines and model names as ``octomil serve`` (see ``engines.resolve``); a model is
loaded on first use and kept for the process. With ``octomil.init()`` first, the request is
reported like any other::

    octomil.init(api_key="...")
    response = octomil.generate(model="gemma3-270m", messages=[{"role": "user", "content": "Hi"}])
    print(response.content, response.usage.completion_tokens)

    for chunk in octomil.generate(model="gemma3-270m", messages=[...], stream=True):
        print(chunk.content, end="")
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from octomil_otel import pipeline, semconv
from octomil_otel.engines import base as engines
from octomil_otel.engines.base import Engine, Piece, Request
from octomil_otel.engines.resolve import load, resolve
from octomil_otel.generation import Recorder
from octomil_otel.instrumentation import instrument_installed

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Response:
    content: str
    finish_reason: str
    usage: Usage
    request_id: str
    model: str


@dataclass(frozen=True)
class Chunk:
    content: str
    finish_reason: str | None
    request_id: str


class _Loaded:
    """A loaded engine, for one call or one open stream at a time (engines are not
    thread-safe): a call while another has it waits for its turn."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self.reader: int | None = None
        """The thread that last read the open stream, or runs the call, that has the engine."""

    @contextmanager
    def turn(self) -> Iterator[None]:
        """The engine, once its call or stream before is done. Waiting on the thread that
        last read the stream that has it is most likely waiting for itself forever (a
        stream left open, then another call; though another thread may read it on): after
        ``TELL_AFTER_SECONDS`` a warning says so, and the wait goes on."""
        me = threading.get_ident()
        if not self._lock.acquire(timeout=TELL_AFTER_SECONDS if self.reader == me else -1):
            _logger.warning(
                "octomil.generate: waiting for %s, which a stream this thread read last still "
                "has: read that stream to its end or close() it",
                self.engine.model,
            )
            self._lock.acquire()
        self.reader = me
        try:
            yield
        finally:
            self.reader = None
            self._lock.release()


TELL_AFTER_SECONDS = 5.0


_loaded: dict[tuple[str, str | None], _Loaded] = {}
_loading = threading.Lock()
_default_recorder: Recorder | None = None


def generate(
    model: str,
    messages: list[dict[str, Any]] | None = None,
    *,
    prompt: str | None = None,
    stream: bool = False,
    engine: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: list[str] | None = None,
    seed: int | None = None,
) -> Response | Iterator[Chunk]:
    """Run ``model`` on ``messages`` (a chat) or ``prompt`` (a completion).

    Returns a ``Response`` (``.content``, ``.usage``), or with ``stream=True`` an iterator
    of ``Chunk``s. Raises ``ModelNotFoundError`` for an unknown model (listing those that
    are available) and ``ValueError`` for arguments the engine cannot take. One call or
    open stream at a time has a model: another waits for its turn (a stream, when first
    read), with a warning when the stream it waits for was read last by the same thread.
    """
    if (messages is None) == (prompt is None):
        raise ValueError("pass exactly one of messages= (a chat) and prompt= (a completion)")
    request = Request(
        messages=messages,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=list(stop or ()),
        seed=seed,
    )
    loaded = _load(model, engine)
    loaded.engine.check(request)
    generation = _recorder().start(
        model=loaded.engine.model,
        engine=loaded.engine.name,
        operation=semconv.OPERATION_CHAT
        if messages is not None
        else semconv.OPERATION_TEXT_COMPLETION,
        stream=stream,
    )
    if stream:
        pieces = engines.stream(loaded.engine, generation, request)
        return _chunks(loaded, pieces, generation.request_id)
    with loaded.turn():
        done = engines.complete(loaded.engine, generation, request)
    return Response(
        content=done.text,
        finish_reason=done.finish_reason,
        usage=Usage(done.input_tokens, done.output_tokens),
        request_id=generation.request_id,
        model=loaded.engine.model,
    )


def _chunks(loaded: _Loaded, pieces: Iterator[Piece], request_id: str) -> Iterator[Chunk]:
    try:
        with loaded.turn():  # from the first chunk asked for to the stream's end or close
            for piece in pieces:
                yield Chunk(piece.text, piece.finish_reason, request_id)
                loaded.reader = threading.get_ident()  # who reads on
    finally:
        pieces.close()  # type: ignore[attr-defined]


def _load(model: str, engine: str | None) -> _Loaded:
    with _loading:
        key = (model, engine)
        if key not in _loaded:
            source = resolve(model, engine)
            # the engine's instrumentation reports its token counts into the request
            instrument_installed(
                trace.get_tracer_provider(),
                metrics.get_meter_provider(),
                engines=[source.engine],
            )
            _loaded[key] = _Loaded(load(source))
        return _loaded[key]


def _recorder() -> Recorder:
    global _default_recorder
    telemetry = pipeline.current()
    if telemetry is not None:
        return telemetry.recorder
    if _default_recorder is None:
        _default_recorder = Recorder()
    return _default_recorder
