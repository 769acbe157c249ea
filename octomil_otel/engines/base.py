"""What ``octomil serve`` and ``octomil.generate`` need from an engine, and nothing more.

An engine turns one request into a stream of ``Piece``s (text as it is produced, and the
finish reason at the end). It runs its model inside the request's ``Generation``
(``generation.call``), so the engine instrumentation joins that request and reports the
engine's own token counts into it; an engine with no instrumentation (echo) reports its
counts itself. How a request is timed and ended is ``run``'s job, the same for every engine.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import astuple, dataclass, field
from typing import Any, ClassVar

from octomil_otel.content import Output, collect_output, merge_tool_calls
from octomil_otel.generation import Generation
from octomil_otel.stream import record_stream


@dataclass(frozen=True)
class Request:
    """One inference request, engine-neutral. Exactly one of ``messages`` and ``prompt``.

    The fields after ``seed`` are options (``OPTIONS``) that an engine honours only if it
    names them in ``Engine.options``; a request that sets another is refused.
    ``response_format`` is ``{"type": "json_object"}``, optionally with ``"schema"`` (a JSON
    schema the answer must follow); ``tools`` and ``tool_choice`` are OpenAI's, with
    ``"required"`` already resolved to the one tool it can mean. ``logprobs``: return each
    output token's log probability and those of this many most likely alternatives.
    """

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: int | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


OPTIONS = (
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "top_k",
    "min_p",
    "repeat_penalty",
    "logit_bias",
    "response_format",
    "tools",
    "tool_choice",
    "logprobs",
)
"""The ``Request`` fields an engine may or may not honour."""


class RequestError(ValueError):
    """A request the engine cannot take as it is; ``param`` names the field at fault (a 400
    naming it, in ``octomil serve``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class UnsupportedOption(RequestError):
    """The request sets an option the engine cannot honour."""

    def __init__(self, param: str, engine: str, hint: str = "") -> None:
        super().__init__(f"{param!r} is not supported by the {engine} engine{hint}", param)


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of one tool call: ``id`` and ``name`` on its first piece only, then more of
    its ``arguments`` (JSON text) per piece, as OpenAI streams them."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Piece:
    """``logprobs``: the piece's tokens' log probabilities, shaped as OpenAI's endpoint
    shapes them (chat: ``{"content": [...]}``; completions: ``{"tokens": [...], ...}``)."""

    text: str
    finish_reason: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: dict[str, Any] | None = None


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    input_tokens: int | None
    output_tokens: int | None
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: dict[str, Any] | None = None


class Engine(ABC):
    """A loaded model. Not thread-safe: callers serialize requests."""

    name: ClassVar[str]
    options: frozenset[str] = frozenset()
    """The ``OPTIONS`` it honours."""
    hints: ClassVar[dict[str, str]] = {}
    """option -> how to make the engine honour it, for the refusal's message."""

    def __init__(self, model: str) -> None:
        self.model = model

    def check(self, request: Request) -> None:
        """``UnsupportedOption`` if ``request`` sets an option this engine cannot honour;
        ``RequestError`` for a ``logit_bias`` token this model does not have."""
        defaults = _DEFAULT_REQUEST
        for option in OPTIONS:
            if option not in self.options and getattr(request, option) != getattr(defaults, option):
                raise UnsupportedOption(option, self.name, self.hints.get(option, ""))
        if request.logit_bias:
            vocabulary = self.vocabulary_size()
            for token in request.logit_bias:
                if not 0 <= token < vocabulary:
                    raise RequestError(
                        f"token {token} is not in the model's vocabulary (0..{vocabulary - 1})",
                        "logit_bias",
                    )

    def vocabulary_size(self) -> int:
        """How many token ids the model has: ``logit_bias`` keys must be below it."""
        return 0

    @abstractmethod
    def pieces(self, generation: Generation, request: Request) -> Iterator[Piece]:
        """The output of ``request``, piece by piece, as the engine produces it."""


_DEFAULT_REQUEST = Request()


def _piece_chunk(piece: Piece) -> bool:
    return bool(piece.text or piece.tool_calls)


def _joined_logprobs(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One answer's log probabilities from its pieces': each list is the pieces' lists
    end to end (both OpenAI shapes hold one entry per token in lists)."""
    if not parts:
        return None
    joined = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            if isinstance(value, list):
                joined[key] = joined[key] + value
    return joined


def _tool_calls(deltas: Iterable[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """Whole tool calls from their streamed pieces, in index order."""
    pieces = ((delta.index, delta.id, delta.name, delta.arguments) for delta in deltas)
    return tuple(ToolCall(*call) for call in merge_tool_calls(pieces))


def _output(pieces: list[Piece]) -> Output:
    """A streamed answer's text and tool calls, for captured content."""
    calls = _tool_calls(delta for piece in pieces for delta in piece.tool_calls)
    return "".join(piece.text for piece in pieces), [astuple(call) for call in calls]


def stream(engine: Engine, generation: Generation, request: Request) -> Iterator[Piece]:
    """A streamed request: every piece with text is a chunk; ends ``generation`` once."""
    _set_request_parameters(generation, request)
    is_chunk, on_end = collect_output(generation, _piece_chunk, _output, _stream_end)
    return record_stream(generation, engine.pieces(generation, request), is_chunk, on_end)


def _set_request_parameters(generation: Generation, request: Request) -> None:
    generation.set_input(request.messages, request.prompt)
    generation.set_request_parameters(
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        seed=request.seed,
        stop=request.stop,
        frequency_penalty=request.frequency_penalty,
        presence_penalty=request.presence_penalty,
    )


def _stream_end(generation: Generation, last: Piece | None, count: int) -> None:
    """The finish reason, from the last piece; and 0 output tokens, known, for a stream
    that ended before the engine gave a piece and with no count of its own (closed or
    dropped unread, or refused at its start): by then the engine's stream is closed, so
    a count it or its instrumentation reports has come in."""
    if last is not None:
        generation.set_finish_reason(last.finish_reason)
    elif count == 0 and generation.output_tokens is None:
        generation.set_usage(output_tokens=0)


class ContextLengthExceeded(ValueError):
    """The prompt and the room asked for the answer do not fit the model's context window.
    Worded as OpenAI words it, so client libraries map it to their context-window error."""

    def __init__(self, requested: int, context: int) -> None:
        super().__init__(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{requested} tokens. Please reduce the length of the prompt or the messages."
        )
        self.requested, self.context = requested, context


class Cancelled(Exception):
    """The request was stopped before its end (its client left, or the server is stopping);
    it is reported ``cancelled``."""


def complete(
    engine: Engine,
    generation: Generation,
    request: Request,
    cancel: threading.Event | None = None,
) -> Completion:
    """A request answered whole: one chunk, when the whole answer is there (``stop``).

    ``cancel``, once set, stops the engine at its next piece: the request ends
    ``cancelled`` and ``Cancelled`` is raised.
    """
    _set_request_parameters(generation, request)
    texts: list[str] = []
    deltas: list[ToolCallDelta] = []
    logprobs: list[dict[str, Any]] = []
    finish = "stop"
    pieces = engine.pieces(generation, request)
    try:
        with closing(pieces):
            for piece in pieces:
                if cancel is not None and cancel.is_set():
                    pieces.close()  # first: the engine's counts so far reach the request
                    generation.cancel()
                    raise Cancelled("the request was stopped before its end")
                texts.append(piece.text)
                deltas.extend(piece.tool_calls)
                if piece.logprobs is not None:
                    logprobs.append(piece.logprobs)
                finish = piece.finish_reason or finish
    except BaseException as error:
        generation.fail(error)  # a no-op after cancel(): a request ends once
        raise
    text, tool_calls = "".join(texts), _tool_calls(deltas)
    generation.set_finish_reason(finish)
    generation.set_output(text, [astuple(call) for call in tool_calls])
    generation.stop()
    return Completion(
        text,
        finish,
        generation.input_tokens,
        generation.output_tokens,
        tool_calls,
        _joined_logprobs(logprobs),
    )
