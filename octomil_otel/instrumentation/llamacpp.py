"""Instrumentation for `llama-cpp-python <https://github.com/abetlen/llama-cpp-python>`_.

Usage::

    from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor
    LlamaCppInstrumentor().instrument(tracer_provider=..., meter_provider=...)

    llm = llama_cpp.Llama(model_path="model.gguf")
    llm.create_chat_completion(messages=[...], stream=True)   # one span, one request

``octomil.init()`` and ``opentelemetry-instrument`` do this for you.

What is wrapped: ``Llama.create_completion`` (which ``Llama.__call__`` and every chat
handler call) and ``Llama.create_chat_completion``; a call inside another joins it, so a
chat request is one request. Streamed responses carry no usage, so for a stream the token
counts come from ``Llama.generate``: the prompt it is given and the tokens it yields
(less a final end-of-generation token), which is exactly what ``usage`` reports for the
same call without streaming.

Configuration: none of its own; suppression with
``opentelemetry.instrumentation.utils.suppress_instrumentation()`` is honoured. Message
content is never recorded.
"""

from __future__ import annotations

import inspect
import logging
import os
import weakref
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from octomil_otel import semconv
from octomil_otel.generation import Generation, Recorder, active_generation
from octomil_otel.instrumentation.on_import import OnImportInstrumentor
from octomil_otel.stream import record_stream

if TYPE_CHECKING:
    from llama_cpp import Llama

_logger = logging.getLogger(__name__)

ENGINE = "llamacpp"
_instruments = ("llama-cpp-python >= 0.3.0, < 0.4",)
_TARGETS = (
    ("create_completion", semconv.OPERATION_TEXT_COMPLETION),
    ("create_chat_completion", semconv.OPERATION_CHAT),
)
_Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class LlamaCppInstrumentor(OnImportInstrumentor):
    """One span and one set of Octomil events per llama-cpp-python request."""

    engine = ENGINE
    module = "llama_cpp"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _wrap(self, **kwargs: Any) -> None:
        from llama_cpp import Llama

        recorder = Recorder(kwargs.get("tracer_provider"), kwargs.get("meter_provider"))
        # the streaming request that the next Llama.generate call of an instance belongs to
        streams: weakref.WeakKeyDictionary[Llama, Generation] = weakref.WeakKeyDictionary()
        for method, operation in _TARGETS:
            stream_at = _positional_index(getattr(Llama, method), "stream")
            wrapper = _traced(recorder, operation, stream_at, streams)
            wrap_function_wrapper(Llama, method, wrapper)
        wrap_function_wrapper(Llama, "generate", _counted(streams))

    def _unwrap(self) -> None:
        from llama_cpp import Llama

        for method, _ in _TARGETS:
            unwrap(Llama, method)
        unwrap(Llama, "generate")


def model_name(llm: Llama) -> str:
    """The file name of the GGUF without its extension: stable and readable."""
    return os.path.splitext(os.path.basename(llm.model_path))[0]


def _traced(
    recorder: Recorder,
    operation: str,
    stream_at: int,
    streams: weakref.WeakKeyDictionary[Llama, Generation],
) -> _Wrapper:
    is_chunk = _is_chat_chunk if operation == semconv.OPERATION_CHAT else _is_completion_chunk

    def traced(wrapped: Callable[..., Any], instance: Llama, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        stream = bool(kwargs["stream"] if "stream" in kwargs else _arg(args, stream_at))
        active = active_generation()
        if active is not None:  # inside a request already: it records, we only count
            _expect_stream(streams, instance, active if stream else None)
            return wrapped(*args, **kwargs)

        generation = recorder.start(
            model=model_name(instance), engine=ENGINE, operation=operation, stream=stream
        )
        _expect_stream(streams, instance, generation if stream else None)
        result = generation.call(wrapped, *args, **kwargs)
        if stream:
            return record_stream(generation, result, is_chunk)
        try:
            usage = result["usage"]
            generation.set_usage(
                input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]
            )
        except (KeyError, TypeError):
            _logger.debug("octomil_otel: no usage in llama.cpp's response", exc_info=True)
        generation.stop()
        return result

    return traced


def _counted(streams: weakref.WeakKeyDictionary[Llama, Generation]) -> _Wrapper:
    """Token counts of a streamed request, from the tokens ``Llama.generate`` yields."""
    import llama_cpp

    def traced(wrapped: Callable[..., Any], instance: Llama, args: Any, kwargs: Any) -> Any:
        generation = streams.pop(instance, None)
        if generation is None or generation.finished:
            return wrapped(*args, **kwargs)
        prompt_tokens = len(args[0] if args else kwargs["tokens"])

        def on_end(generation: Generation, last: int | None, count: int) -> None:
            eog = last is not None and llama_cpp.llama_vocab_is_eog(instance._model.vocab, last)
            generation.set_usage(input_tokens=prompt_tokens, output_tokens=count - bool(eog))

        return record_stream(generation, wrapped(*args, **kwargs), False, on_end, owner=False)

    return traced


def _expect_stream(
    streams: weakref.WeakKeyDictionary[Llama, Generation],
    llm: Llama,
    generation: Generation | None,
) -> None:
    if generation is None:
        streams.pop(llm, None)
    else:
        streams[llm] = generation


def _is_completion_chunk(chunk: Any) -> bool:
    return bool(chunk["choices"][0]["text"])


def _is_chat_chunk(chunk: Any) -> bool:
    delta = chunk["choices"][0]["delta"]
    return bool(delta.get("content") or delta.get("tool_calls"))


def _positional_index(method: Callable[..., Any], name: str) -> int:
    """Where ``name`` sits among the positional arguments after ``self``."""
    return list(inspect.signature(method).parameters).index(name) - 1


def _arg(args: tuple[Any, ...], index: int) -> Any:
    return args[index] if index < len(args) else None
