"""Instrumentation for `mlx-lm <https://github.com/ml-explore/mlx-lm>`_.

Usage::

    from octomil_otel.instrumentation.mlx import MLXInstrumentor
    MLXInstrumentor().instrument(tracer_provider=..., meter_provider=...)

    model, tokenizer = mlx_lm.load("path/to/model")
    for response in mlx_lm.stream_generate(model, tokenizer, "Hello", max_tokens=64):
        ...

``octomil.init()`` and ``opentelemetry-instrument`` do this for you.

What is wrapped: ``generate`` and ``stream_generate`` both in ``mlx_lm.generate`` and where
``mlx_lm`` re-binds them, right after the application imports ``mlx_lm`` (or at once if it
has), so ``mlx_lm.generate(...)`` and ``from mlx_lm import stream_generate`` are covered
unless that name was bound before instrumentation. ``generate`` loops over
``stream_generate``: the inner stream joins the outer request. A ``GenerationResponse`` with
text is a chunk. The counts are the last response's ``prompt_tokens`` and
``generation_tokens``, less the end-of-generation token that a ``"stop"`` response carries
(the caller never receives it; llama.cpp does not count it either), so the same answer counts
the same on both engines. The last response also gives the request's prompt evaluation
and generation times, as mlx-lm measures them. Its ``peak_memory`` is not the request's (it
is the allocator's peak since the process started or last called
``mx.reset_peak_memory()``), so only ``octomil serve`` and ``octomil.generate``, which reset
it before each request, report it. ``load`` is wrapped only to name the model (the last
part of the path it was loaded from).

Configuration: none of its own; suppression is honoured. Message content is recorded only
as ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks (``content.py``).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import weakref
from collections.abc import Callable, Collection
from types import CodeType
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from octomil_otel import semconv
from octomil_otel.content import Output, collect_output
from octomil_otel.generation import Generation, Recorder, active_generation
from octomil_otel.instrumentation.on_import import OnImportInstrumentor
from octomil_otel.stream import record_stream

_logger = logging.getLogger(__name__)

ENGINE = "mlx"
_instruments = ("mlx-lm >= 0.24",)
_MODULES = ("mlx_lm.generate", "mlx_lm")  # the definitions, then the package's re-binding
_LOADERS = ("mlx_lm.utils", "mlx_lm")
_Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class MLXInstrumentor(OnImportInstrumentor):
    """One span and one set of Octomil events per mlx-lm generation."""

    engine = ENGINE
    module = "mlx_lm"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _wrap(self, **kwargs: Any) -> None:
        recorder = Recorder(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            logger_provider=kwargs.get("logger_provider"),
        )
        # mlx-lm's generate() as defined: one bound before instrumentation stays unwrapped,
        # and its calls into stream_generate are then still one request answered whole
        generate_code = importlib.import_module(_MODULES[0]).generate.__code__
        for name in _MODULES:
            module = importlib.import_module(name)
            wrap_function_wrapper(
                module, "stream_generate", _traced(recorder, stream=True, whole=generate_code)
            )
            wrap_function_wrapper(module, "generate", _traced(recorder, stream=False))
        for name in _LOADERS:
            wrap_function_wrapper(importlib.import_module(name), "load", _named)

    def _unwrap(self) -> None:
        for name in _MODULES:
            module = importlib.import_module(name)
            unwrap(module, "stream_generate")
            unwrap(module, "generate")
        for name in _LOADERS:
            unwrap(importlib.import_module(name), "load")


_names: dict[int, str] = {}


def model_name(model: Any) -> str:
    """The name it was loaded under, else its ``model_type`` (e.g. ``llama``)."""
    return _names.get(id(model)) or str(getattr(model, "model_type", type(model).__name__))


def _named(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    loaded = wrapped(*args, **kwargs)
    path = args[0] if args else kwargs.get("path_or_hf_repo")
    if isinstance(path, (str, os.PathLike)):
        model = loaded[0]
        _names[id(model)] = os.path.basename(os.path.normpath(os.fspath(path)))
        weakref.finalize(model, _names.pop, id(model), None)
    return loaded


def _traced(recorder: Recorder, *, stream: bool, whole: CodeType | None = None) -> _Wrapper:
    """``whole``: the code of a caller whose stream is one request answered whole."""

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        active = active_generation()
        if active is not None:  # generate() -> stream_generate(): report usage to the outer
            if not stream:
                return wrapped(*args, **kwargs)
            return record_stream(active, wrapped(*args, **kwargs), False, _usage, owner=False)

        streamed = stream and not _called_from(whole)
        model = args[0] if args else kwargs.get("model")
        generation = recorder.start(
            model=model_name(model),
            engine=ENGINE,
            operation=semconv.OPERATION_TEXT_COMPLETION,
            stream=streamed,
        )
        generation.set_request_parameters(max_tokens=kwargs.get("max_tokens"))
        if generation.captures_content:
            prompt = _prompt_text(args, kwargs)
            if prompt is not None:
                generation.set_input(prompt=prompt)
        result = generation.call(wrapped, *args, **kwargs)
        if stream:  # an unwrapped generate() reading it is answered whole, when it ends
            chunks, on_end = collect_output(generation, _has_text if streamed else False,
                                            _output, _usage)  # fmt: skip
            return record_stream(generation, result, chunks, on_end)
        if isinstance(result, str):
            generation.set_output(result)
        generation.stop()
        return result

    return traced


def _called_from(code: CodeType | None) -> bool:
    """Whether the Python caller of the wrapped call runs ``code`` (wrapt calls the wrapper
    from C, so the caller is a frame or two up)."""
    frame = sys._getframe(2)
    for _ in range(3):
        if frame is None:
            return False
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def _has_text(response: Any) -> bool:
    return bool(response.text)


def _output(responses: list[Any]) -> Output:
    return "".join(response.text for response in responses), ()


def _prompt_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The prompt as text: mlx-lm takes text or token ids (decoded with the tokenizer)."""
    prompt = args[2] if len(args) > 2 else kwargs.get("prompt")
    if isinstance(prompt, str):
        return prompt
    try:
        tokenizer = args[1] if len(args) > 1 else kwargs["tokenizer"]
        return tokenizer.decode(list(prompt.tolist() if hasattr(prompt, "tolist") else prompt))
    except Exception:  # the engine will say what is wrong with its arguments, not us
        _logger.debug("octomil_otel: could not read the prompt", exc_info=True)
        return None


def _usage(generation: Generation, last: Any, count: int) -> None:
    """Counts, timing and finish reason from the last response: mlx-lm times the prompt
    (``prompt_tokens / prompt_tps``) and the generation after the first token itself."""
    if last is None:
        return
    end_token = last.finish_reason == "stop"
    generation.set_usage(
        input_tokens=last.prompt_tokens, output_tokens=last.generation_tokens - end_token
    )
    generation.set_finish_reason(last.finish_reason)
    generation.add_engine_time(
        prefill_ms=_ms(last.prompt_tokens, last.prompt_tps),
        # one token: nothing generated after it (mlx-lm still times a sliver)
        decode_ms=_ms(last.generation_tokens, last.generation_tps)
        if last.generation_tokens > 1
        else None,
    )


def _ms(tokens: int, tokens_per_second: float) -> float | None:
    return tokens / tokens_per_second * 1000 if tokens_per_second > 0 else None
