"""The OpenAI request bodies ``octomil serve`` accepts, validated with pydantic.

Fields that change nothing about the answer (``user``, ``metadata``, ``store``...) are
accepted and ignored, as OpenAI clients send many. A field that would change the answer is
honoured, or refused: a known field of the wrong type or out of range, or one this server
cannot honour (``n`` above 1), is a 400 naming it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from octomil_otel.engines.base import Request


class StreamOptions(BaseModel):
    include_usage: bool = False


def _only_one(value: int | None) -> int | None:
    if value is not None and value != 1:
        raise PydanticCustomError("unsupported", "only one choice per request is supported")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None

    @field_validator("stream", mode="before")
    @classmethod
    def _null_is_not_streamed(cls, value: Any) -> Any:
        return False if value is None else value  # the API defines stream as nullable

    _n = field_validator("n")(_only_one)

    @property
    def include_usage(self) -> bool:
        return self.stream and self.stream_options is not None and self.stream_options.include_usage

    def _stop(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatCompletionBody(_Body):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def to_request(self) -> Request:
        return Request(
            messages=[{"role": m.role, "content": m.text()} for m in self.messages],
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self._stop(),
            seed=self.seed,
        )


class CompletionBody(_Body):
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    best_of: int | None = None

    _best_of = field_validator("best_of")(_only_one)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str:
        """A list of one (LangChain's ``OpenAI`` always sends one) is that prompt."""
        if isinstance(value, str):
            return value
        if len(value) != 1:
            raise PydanticCustomError(
                "unsupported", "one prompt per request is supported, got {count}",
                {"count": len(value)},
            )  # fmt: skip
        return value[0]

    def to_request(self) -> Request:
        return Request(
            prompt=self.prompt,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self._stop(),
            seed=self.seed,
        )
