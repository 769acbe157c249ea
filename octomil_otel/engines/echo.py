"""The built-in echo engine: answers with the prompt, needs no model.

For trying the whole pipeline without a model, and for load tests of ``octomil serve``.
Its tokenizer is its own and simple: a token is a run of non-space characters with the
spaces after it, so token counts are exact for it as for any engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from octomil_otel.engines.base import Engine, Piece, Request
from octomil_otel.generation import Generation

_TOKEN = re.compile(r"\s*\S+\s*|\s+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


class EchoEngine(Engine):
    name = "echo"

    def pieces(self, generation: Generation, request: Request) -> Iterator[Piece]:
        if request.messages is not None:
            prompt = "\n".join(str(m.get("content") or "") for m in request.messages)
            users = [m for m in request.messages if m.get("role") == "user"]
            answer = str(users[-1].get("content") or "") if users else prompt
        else:
            prompt = answer = request.prompt or ""
        tokens = tokenize(answer)
        limit = request.max_tokens if request.max_tokens is not None else len(tokens)
        generation.set_usage(input_tokens=len(tokenize(prompt)), output_tokens=0)
        for count, token in enumerate(tokens[:limit], 1):
            generation.set_usage(output_tokens=count)
            yield Piece(token)
        yield Piece("", "length" if limit < len(tokens) else "stop")
