"""llama.cpp through llama-cpp-python, for ``octomil serve`` and ``octomil.generate``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from octomil_otel.engines.base import (
    OPTIONS,
    ContextLengthExceeded,
    Engine,
    Piece,
    Request,
    RequestError,
    ToolCallDelta,
)
from octomil_otel.engines.json_schema_grammar import check_schema
from octomil_otel.generation import Generation

# llama-cpp-python's words for a prompt that does not fit (a ValueError)
_CONTEXT_EXCEEDED = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class LlamaCppEngine(Engine):
    """Args:
    model_path: the ``.gguf`` file.
    model: the name it is served under.
    chat_format: for a model without a chat template: one of ``chat_formats.FORMATTERS``
        or of llama-cpp-python's own.
    n_ctx, n_threads: context length and CPU threads (all cores when omitted).
    logprobs: keep the logits of every token, which log probabilities need: n_ctx times
        the vocabulary size times 4 bytes of memory (4 GiB for Gemma 3 at n_ctx 4096).
    """

    name = "llamacpp"
    hints = {"logprobs": " unless the model is loaded for it (octomil serve --logprobs)"}

    def __init__(
        self,
        model_path: str,
        model: str,
        *,
        chat_format: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        logprobs: bool = False,
    ) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import chat_formatter_to_chat_completion_handler

        from octomil_otel.engines.chat_formats import FORMATTERS

        super().__init__(model)
        ours = FORMATTERS.get(chat_format or "")

        def load(context: int) -> llama_cpp.Llama:
            return llama_cpp.Llama(
                model_path=model_path,
                n_ctx=context,
                n_threads=n_threads or os.cpu_count(),
                chat_format=None if ours else chat_format,
                chat_handler=chat_formatter_to_chat_completion_handler(ours) if ours else None,
                logits_all=logprobs,
                verbose=False,
            )

        self.llm = load(n_ctx)
        if self.llm.n_ctx() > n_ctx:  # llama.cpp's smallest context (256) is larger: loaded
            # for it, or llama-cpp-python's token buffer keeps n_ctx, and a prompt between the
            # two fails inside numpy rather than as too long for the context
            made = self.llm.n_ctx()
            self.llm.close()
            self.llm = load(made)
        self.options = frozenset(OPTIONS) if logprobs else frozenset(OPTIONS) - {"logprobs"}

    def vocabulary_size(self) -> int:
        return int(self.llm.n_vocab())

    def check(self, request: Request) -> None:
        """Also: tools only with a forced call, and JSON schemas the grammar enforces.

        llama-cpp-python constrains the answer to a named tool's arguments; left to choose
        (``auto``), a model's tool calls would come back as plain text, which no client
        reads as a call. A schema its grammar cannot express (``minimum``, ``not``, a bad
        ``$ref``...) it would replace with "any JSON", silently: refused here instead.
        """
        super().check(request)
        if request.tools and not isinstance(request.tool_choice, dict):
            raise RequestError(
                "only a forced tool call is supported: name the function, or use 'required' "
                "with one tool ('none' offers no tool)",
                "tool_choice",
            )
        if request.response_format and "schema" in request.response_format:
            check_schema(request.response_format["schema"], "response_format")
        if isinstance(request.tool_choice, dict):
            name = request.tool_choice["function"]["name"]
            for tool in request.tools or ():
                if tool["function"]["name"] == name and tool["function"].get("parameters"):
                    check_schema(tool["function"]["parameters"], "tools")

    def pieces(self, generation: Generation, request: Request) -> Iterator[Piece]:
        options: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "stop": request.stop or None,
            # llama.cpp's seeds are uint32, and 0xFFFFFFFF (what -1 wraps to) means "random"
            "seed": None if request.seed is None else request.seed % 0xFFFFFFFF,
        }
        optional = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "logit_bias")
        optional += ("top_k", "min_p", "repeat_penalty")
        if request.is_chat:
            optional += ("response_format", "tools", "tool_choice")
        for name in optional:
            if getattr(request, name) is not None:
                options[name] = getattr(request, name)
        if request.seed is not None:  # the same evaluation each time, not a cached prefix's
            self.llm.reset()  # (its logits differ in the last bits, enough to change a sample)
        if request.logprobs is not None and request.is_chat:
            options.update(logprobs=True, top_logprobs=request.logprobs)
        elif request.logprobs is not None:
            options["logprobs"] = request.logprobs
        try:
            if request.messages is not None:
                chunks = generation.call(
                    self.llm.create_chat_completion,
                    messages=request.messages,
                    stream=True,
                    **options,
                )
                with closing(chunks):
                    yield from _chat_pieces(chunks, request.max_tokens, request.logprobs)
            else:
                chunks = generation.call(
                    self.llm.create_completion, request.prompt, stream=True, **options
                )
                with closing(chunks):
                    for chunk in chunks:
                        choice = chunk["choices"][0]
                        yield Piece(
                            choice["text"],
                            choice.get("finish_reason"),
                            logprobs=choice.get("logprobs"),
                        )
        except ValueError as error:
            too_long = _CONTEXT_EXCEEDED.search(str(error))
            if too_long is None:
                raise
            requested, context = map(int, too_long.groups())
            generation.set_usage(input_tokens=requested)  # llama.cpp's count of the prompt
            raise ContextLengthExceeded(requested, context) from error


def _chat_pieces(
    chunks: Iterator[dict[str, Any]], max_tokens: int | None, top: int | None
) -> Iterator[Piece]:
    """Chat chunks as pieces; a tool call's id and name only on its first piece (llama-cpp-
    python repeats them on every chunk, which clients that merge deltas would concatenate),
    a call cut off at ``max_tokens`` finished by ``length`` (it says ``tool_calls``), and
    ``top`` alternatives per token exactly, as chat's ``top_logprobs`` asks (llama-cpp-python
    adds the sampled token, as the completions API may)."""
    named: set[int] = set()
    call_tokens = 0  # a forced call's pieces: one token each
    for chunk in chunks:
        choice = chunk["choices"][0]
        delta = choice["delta"]
        calls = []
        for call in delta.get("tool_calls") or ():
            first = call["index"] not in named
            if not first and not call["function"]["arguments"]:
                continue  # the end of the completion under the call: no token, no piece
            named.add(call["index"])
            calls.append(
                ToolCallDelta(
                    call["index"],
                    call["function"]["arguments"] or "",
                    call["id"] if first else None,
                    call["function"]["name"] if first else None,
                )
            )
        call_tokens += len(calls)
        finish = choice.get("finish_reason")
        if finish == "tool_calls" and max_tokens is not None and call_tokens >= max_tokens:
            finish = "length"
        logprobs = choice.get("logprobs")
        if logprobs and top is not None:
            logprobs = {**logprobs, "content": [_top(entry, top) for entry in logprobs["content"]]}
        yield Piece(delta.get("content") or "", finish, tuple(calls), logprobs)


def _top(entry: dict[str, Any], n: int) -> dict[str, Any]:
    ranked = sorted(entry["top_logprobs"], key=lambda alternative: -alternative["logprob"])
    return {**entry, "top_logprobs": ranked[:n]}
