"""Message content, captured only when the user asks, the way the official GenAI
instrumentations ask.

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (``NO_CONTENT``, the default;
``SPAN_ONLY``; ``EVENT_ONLY``; ``SPAN_AND_EVENT``) is honoured together with
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``, as in
opentelemetry-python-contrib. Captured content is ``gen_ai.input.messages`` and
``gen_ai.output.messages``, shaped as the conventions' JSON schemas say: a JSON string on
the application's span, structured on a ``gen_ai.client.inference.operation.details`` log
event. It never enters the Octomil events, nor any log line of this package.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from octomil_otel import semconv

if TYPE_CHECKING:
    from octomil_otel.generation import Generation

_logger = logging.getLogger(__name__)

OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: Final = (
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
)
Message = dict[str, Any]
ToolCall = tuple[str, str, str]
"""A tool call: its id, the function's name, its arguments (JSON text)."""
T = TypeVar("T")


class Capture(enum.Enum):
    NO_CONTENT = (False, False)
    SPAN_ONLY = (True, False)
    EVENT_ONLY = (False, True)
    SPAN_AND_EVENT = (True, True)

    @property
    def on_span(self) -> bool:
        return self.value[0]

    @property
    def on_event(self) -> bool:
        return self.value[1]

    @classmethod
    def from_environment(cls, latest: bool) -> Capture:
        """The mode the variable names (any case); ``NO_CONTENT`` without the opt-in or for
        a value it does not know, with a warning saying why."""
        value = os.environ.get(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, "").strip()
        if not value:
            return cls.NO_CONTENT
        mode = cls.__members__.get(value.upper())
        if mode is None:
            _warn_once(
                "octomil_otel: %s=%r is not one of %s; no content is captured",
                OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
                value,
                ", ".join(cls.__members__),
            )
            return cls.NO_CONTENT
        if mode is not cls.NO_CONTENT and not latest:
            _warn_once(
                "octomil_otel: %s is honoured with %s=%s only; no content is captured",
                OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
                semconv.OTEL_SEMCONV_STABILITY_OPT_IN, semconv.GEN_AI_LATEST_EXPERIMENTAL,
            )  # fmt: skip
            return cls.NO_CONTENT
        return mode


@functools.cache
def _warn_once(message: str, *args: object) -> None:
    """Every recorder reads the variables: one warning per process is enough."""
    _logger.warning(message, *args)


def input_messages(
    messages: Iterable[Mapping[str, Any]] | None = None, prompt: object = None
) -> list[Message]:
    """OpenAI-shaped chat messages, or a completion prompt (one user message), as
    ``gen_ai.input.messages``: each a role and its parts (text, tool calls, tool results)."""
    if messages is None:
        text = prompt if isinstance(prompt, str) else json.dumps(prompt, default=str)
        return [{"role": "user", "parts": [_text(text)]}]
    shaped = []
    for message in messages:
        role = message.get("role", "user")
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                      "response": message.get("content")}]  # fmt: skip
        else:
            parts = _content_parts(message.get("content"))
            parts += [_tool_call(call) for call in message.get("tool_calls") or ()]
        shaped.append({"role": role, "parts": parts})
        if message.get("name"):
            shaped[-1]["name"] = message["name"]
    return shaped


def output_messages(
    text: str, finish_reason: str, tool_calls: Iterable[ToolCall] = ()
) -> list[Message]:
    """One answer as ``gen_ai.output.messages``."""
    parts = [_text(text)] if text else []
    parts += [
        _tool_call({"id": i, "function": {"name": n, "arguments": a}}) for i, n, a in tool_calls
    ]
    return [{"role": "assistant", "parts": parts, "finish_reason": finish_reason}]


Output = tuple[str, Sequence[ToolCall]]
"""An answer's text and its tool calls."""


def collect_output(
    generation: Generation,
    is_chunk: Callable[[T], bool] | bool,
    output_of: Callable[[list[T]], Output],
    on_end: Callable[[Generation, T | None, int], None] | None = None,
) -> tuple[Callable[[T], bool] | bool, Callable[[Generation, T | None, int], None] | None]:
    """``record_stream``'s chunk test and end hook, also keeping the stream's items to
    make ``generation``'s output of (``output_of``) when it captures content; unchanged (no
    cost) otherwise."""
    if not generation.captures_content:
        return is_chunk, on_end
    items: list[T] = []

    def chunk(item: T) -> bool:
        items.append(item)
        return is_chunk(item) if callable(is_chunk) else is_chunk

    def end(generation: Generation, last: T | None, count: int) -> None:
        if on_end is not None:
            on_end(generation, last, count)
        generation.set_output(*output_of(items))

    return chunk, end


def merge_tool_calls(deltas: Iterable[tuple[int, str | None, str | None, str]]) -> list[ToolCall]:
    """Whole tool calls, in index order, from their streamed pieces: (index, id, name,
    arguments), the id and name on a call's first piece, its arguments in order."""
    calls: dict[int, list[str]] = {}
    for index, call_id, name, arguments in deltas:
        call = calls.setdefault(index, ["", "", ""])
        call[0], call[1] = call[0] or call_id or "", call[1] or name or ""
        call[2] += arguments or ""
    return [(call[0], call[1], call[2]) for _, call in sorted(calls.items())]


def _content_parts(content: object) -> list[Message]:
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)]
    parts = []
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, Mapping) and part.get("type") == "text":
            parts.append(_text(part.get("text", "")))
        elif isinstance(part, Mapping):
            parts.append({"type": str(part.get("type", "unknown"))})  # e.g. an image: kind only
    return parts


def _text(text: str) -> Message:
    return {"type": "text", "content": text}


def _tool_call(call: Mapping[str, Any]) -> Message:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    with contextlib.suppress(ValueError):  # not JSON: kept as the model wrote it
        arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
    return {"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
            "arguments": arguments}  # fmt: skip
