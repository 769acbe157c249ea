"""Instrumentation for `llama-cpp-python <https://github.com/abetlen/llama-cpp-python>`_.

Usage::

    from octomil_otel.instrumentation.llamacpp import LlamaCppInstrumentor
    LlamaCppInstrumentor().instrument(tracer_provider=..., meter_provider=...)

    llm = llama_cpp.Llama(model_path="model.gguf")
    llm.create_chat_completion(messages=[...], stream=True)   # one span, one request

``octomil.init()`` and ``opentelemetry-instrument`` do this for you.

What is wrapped: ``Llama.create_completion`` (which every chat handler calls),
``Llama.__call__`` and ``Llama.create_chat_completion``; a call inside another joins it, so
a chat request is one request, with the request parameters its caller gave. Streamed
responses carry no usage, so for a stream the token counts come from ``Llama.generate``: the
prompt it is given and the tokens it yields (less a final end-of-generation token), which is
exactly what ``usage`` reports for the same call without streaming. llama.cpp's own
performance counters (``llama_perf_context``), read when ``Llama.generate`` starts, yields
its first token and ends, give the time it spent evaluating before the first token
(``prefill_ms``) and after it (``decode_ms``), added up over the passes of one request.
``Llama.create_embedding`` and ``Llama.embed`` are one ``embeddings`` request each, with its
input tokens.

Configuration: none of its own; suppression with
``opentelemetry.instrumentation.utils.suppress_instrumentation()`` is honoured. Message
content is recorded only as ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks
(``content.py``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from octomil_otel import semconv
from octomil_otel.content import Output, collect_output, merge_tool_calls
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
    # calls create_completion with every default spelled out: the caller's are these
    ("__call__", semconv.OPERATION_TEXT_COMPLETION),
)
_EMBEDDINGS = ("create_embedding", "embed")
_PARAMETERS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop",
               "frequency_penalty", "presence_penalty")  # fmt: skip
_Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class LlamaCppInstrumentor(OnImportInstrumentor):
    """One span and one set of Octomil events per llama-cpp-python request."""

    engine = ENGINE
    module = "llama_cpp"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _wrap(self, **kwargs: Any) -> None:
        from llama_cpp import Llama

        recorder = Recorder(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            logger_provider=kwargs.get("logger_provider"),
        )
        # the request that the next Llama.generate call of an instance belongs to
        pending: weakref.WeakKeyDictionary[Llama, Generation] = weakref.WeakKeyDictionary()
        for method, operation in _TARGETS:
            wrapper = _traced(recorder, operation, _positions(getattr(Llama, method)), pending)
            wrap_function_wrapper(Llama, method, wrapper)
        wrap_function_wrapper(Llama, "generate", _counted(pending))
        wrap_function_wrapper(Llama, "create_embedding", _embedding(recorder, reports_usage=True))
        wrap_function_wrapper(Llama, "embed", _embedding(recorder, reports_usage=False))

    def _unwrap(self) -> None:
        from llama_cpp import Llama

        for method, _ in _TARGETS:
            unwrap(Llama, method)
        for method in ("generate", *_EMBEDDINGS):
            unwrap(Llama, method)


def model_name(llm: Llama) -> str:
    """The file name of the GGUF without its extension: stable and readable."""
    return os.path.splitext(os.path.basename(llm.model_path))[0]


def _traced(
    recorder: Recorder,
    operation: str,
    positions: dict[str, int],
    pending: weakref.WeakKeyDictionary[Llama, Generation],
) -> _Wrapper:
    chat = operation == semconv.OPERATION_CHAT
    is_chunk = _is_chat_chunk if chat else _is_completion_chunk
    output_of = _chat_output if chat else _completion_output
    input_name = "messages" if chat else "prompt"

    def traced(wrapped: Callable[..., Any], instance: Llama, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        active = active_generation()
        if active is not None:  # inside a request already: it records, we only count
            _expect_tokens(active, pending, instance)
            return wrapped(*args, **kwargs)

        stream = bool(_argument(args, kwargs, positions, "stream"))
        generation = recorder.start(
            model=model_name(instance), engine=ENGINE, operation=operation, stream=stream
        )
        generation.set_request_parameters(
            **{name: _argument(args, kwargs, positions, name) for name in _PARAMETERS}
        )
        if generation.captures_content:
            first = _argument(args, kwargs, positions, input_name)
            generation.set_input(first if chat else None, None if chat else first)
        _expect_tokens(generation, pending, instance)
        result = generation.call(wrapped, *args, **kwargs)
        if stream:
            chunks, on_end = collect_output(generation, is_chunk, output_of, _stream_finish_reason)
            return record_stream(generation, result, chunks, on_end)
        try:
            usage = result["usage"]
            generation.set_usage(
                input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]
            )
            choice = result["choices"][0]
            generation.set_finish_reason(choice["finish_reason"])
            if generation.captures_content:
                _set_whole_output(generation, choice)
        except (KeyError, IndexError, TypeError):
            _logger.debug("octomil_otel: no usage in llama.cpp's response", exc_info=True)
        generation.stop()
        return result

    return traced


def _expect_tokens(
    generation: Generation, pending: weakref.WeakKeyDictionary[Llama, Generation], llm: Llama
) -> None:
    """``Llama.generate``'s next run on ``llm`` counts its tokens for ``generation``
    (``_counted``); if none runs before the request ends, it generated none."""
    pending[llm] = generation
    generation.before_end(
        functools.partial(_if_none_generated, generation, pending, weakref.ref(llm))
    )


def _if_none_generated(
    generation: Generation,
    pending: weakref.WeakKeyDictionary[Llama, Generation],
    instance: weakref.ref[Llama],
) -> None:
    """A request that ends before ``Llama.generate`` started (which takes it from
    ``pending``: ``_counted``), a prompt too long for the context or a stream never read,
    generated no token: its ``output_tokens`` are known, 0, unless an earlier pass of it
    counted some (a chat handler that calls the model more than once). Weakly: a value of
    ``pending`` that held its key would keep the model alive."""
    llm = instance()
    if llm is not None and pending.get(llm) is generation and generation.output_tokens is None:
        generation.set_usage(output_tokens=0)


def _counted(pending: weakref.WeakKeyDictionary[Llama, Generation]) -> _Wrapper:
    """Token counts and engine time of a request, from ``Llama.generate``: the tokens it
    yields, and llama.cpp's performance counters when it starts, when it yields its first
    token and when it ends."""
    import llama_cpp

    def traced(wrapped: Callable[..., Any], instance: Llama, args: Any, kwargs: Any) -> Any:
        generation = pending.pop(instance, None)
        if generation is None or generation.finished:
            return wrapped(*args, **kwargs)
        prompt_tokens = len(args[0] if args else kwargs["tokens"])
        readings = [_evaluated(instance)]

        def on_end(generation: Generation, last: int | None, count: int) -> None:
            eog = last is not None and llama_cpp.llama_vocab_is_eog(instance._model.vocab, last)
            generation.set_usage(input_tokens=prompt_tokens, output_tokens=count - bool(eog))
            _add_engine_time(generation, [*readings, _evaluated(instance)])

        tokens = _reading_at_first(wrapped(*args, **kwargs), readings, instance)
        return record_stream(generation, tokens, False, on_end, owner=False)

    return traced


def _reading_at_first(tokens: Iterator[int], readings: list[Any], llm: Llama) -> Iterator[int]:
    """``tokens``, with the performance counters read once, as the first one comes."""
    with closing(tokens):  # type: ignore[type-var]
        for token in tokens:
            readings.append(_evaluated(llm))
            yield token
            break
        yield from tokens


def _evaluated(llm: Llama) -> float | None:
    """The ms llama.cpp has spent evaluating in this context so far, by its own counters,
    prompt batches and single tokens together (which kind of batch a token was in says
    nothing of the request's phase: a cached prompt leaves one token to evaluate,
    speculative decoding verifies drafts in batches). ``None`` without the counters.

    A context that keeps every token's logits (``logits_all``, which a draft model and
    ``octomil serve --logprobs`` turn on) evaluates mostly outside what the counters time:
    there, the clock's ms at the same points instead."""
    import llama_cpp

    if getattr(llm, "_logits_all", False):
        return time.perf_counter_ns() / 1e6
    try:
        perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
        return perf.t_p_eval_ms + perf.t_eval_ms
    except Exception:  # a build without the performance API, or a closed model
        _logger.debug("octomil_otel: no llama.cpp performance counters", exc_info=True)
        return None


def _add_engine_time(generation: Generation, readings: list[Any]) -> None:
    """Prefill: what was evaluated before the first token; decode: after it. A phase in
    which the counters saw nothing evaluated (an exact prompt cache hit, a one-token answer,
    a context made with ``no_perf``) has no figure; timed by the clock, each has one."""
    if None in readings:
        return
    start, *first, end = readings
    boundary = first[0] if first else end
    phases = {}
    for name, (before, after) in (("prefill_ms", (start, boundary)),
                                  ("decode_ms", (boundary, end))):  # fmt: skip
        if after > before:  # with no_perf the times stay 0
            phases[name] = after - before
    generation.add_engine_time(**phases)


def _embedding(recorder: Recorder, *, reports_usage: bool) -> _Wrapper:
    """One ``embeddings`` request, with its input tokens: from ``create_embedding``'s usage
    (``reports_usage``), or from ``embed``, asked for its count and answering as its caller
    asked."""

    def traced(wrapped: Callable[..., Any], instance: Llama, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled() or active_generation() is not None:
            return wrapped(*args, **kwargs)
        generation = recorder.start(
            model=model_name(instance), engine=ENGINE, operation=semconv.OPERATION_EMBEDDINGS
        )
        if reports_usage:
            result = generation.call(wrapped, *args, **kwargs)
            input_tokens = result["usage"]["prompt_tokens"]
        else:  # embed(input, normalize, truncate, return_count)
            asked = kwargs.get("return_count", args[3] if len(args) > 3 else False)
            embeddings, input_tokens = generation.call(
                wrapped, *args[:3], **{**kwargs, "return_count": True}
            )
            result = (embeddings, input_tokens) if asked else embeddings
        generation.set_usage(input_tokens=input_tokens)
        generation.stop()
        return result

    return traced


def _stream_finish_reason(generation: Generation, last: Any, count: int) -> None:
    if last is not None:
        generation.set_finish_reason(last["choices"][0].get("finish_reason"))


def _set_whole_output(generation: Generation, choice: dict[str, Any]) -> None:
    message = choice.get("message")
    if message is None:  # a text completion
        generation.set_output(choice["text"])
        return
    calls = [
        (call["id"], call["function"]["name"], call["function"]["arguments"])
        for call in message.get("tool_calls") or ()
    ]
    generation.set_output(message.get("content") or "", calls)


def _completion_output(chunks: list[Any]) -> Output:
    return "".join(chunk["choices"][0]["text"] for chunk in chunks), ()


def _chat_output(chunks: list[Any]) -> Output:
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    calls = merge_tool_calls(
        (call["index"], call.get("id"), call["function"].get("name"),
         call["function"].get("arguments"))
        for delta in deltas
        for call in delta.get("tool_calls") or ()
    )  # fmt: skip
    return "".join(delta.get("content") or "" for delta in deltas), calls


def _is_completion_chunk(chunk: Any) -> bool:
    return bool(chunk["choices"][0]["text"])


def _is_chat_chunk(chunk: Any) -> bool:
    delta = chunk["choices"][0]["delta"]
    return bool(delta.get("content") or delta.get("tool_calls"))


def _positions(method: Callable[..., Any]) -> dict[str, int]:
    """Where each parameter sits among the positional arguments after ``self``."""
    return {name: index - 1 for index, name in enumerate(inspect.signature(method).parameters)}


def _argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], positions: dict[str, int], name: str
) -> Any:
    """The caller's value of ``name`` (``None`` if not given)."""
    if name in kwargs:
        return kwargs[name]
    index = positions.get(name, len(args))
    return args[index] if index < len(args) else None
