"""The OpenAI request bodies ``octomil serve`` accepts, validated with pydantic.

Fields that change nothing about the answer (``IGNORED_FIELDS``: ``user``, ``metadata``,
``store``...) are accepted and ignored. Every field that changes the answer is declared here
and is honoured, or refused with a 400 naming it: a known field of the wrong type or out of
range; one this server never honours (``n`` or ``best_of`` above 1, ``suffix``); one the
engine cannot honour (``Engine.check``); and any other field, as OpenAI refuses what it does
not know (``unknown_fields``; ``null`` counts as not sent).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from octomil_otel.engines.base import Request


def _unsupported(message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError("unsupported", message, context)


def _only_one(value: int | None) -> int | None:
    if value is not None and value != 1:
        raise _unsupported("only one choice per request is supported")
    return value


def _whole_unicode(value: Any) -> Any:
    """Text UTF-8 can carry (a str, or a list of them): a lone UTF-16 surrogate (half an
    emoji, as a browser cuts it) is a 400 here rather than an error deep in an engine or in
    the answer."""
    for text in value if isinstance(value, list) else (value,):
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise _unsupported(
                    "a lone UTF-16 surrogate at character {at}", at=error.start
                ) from None
    return value


IGNORED_FIELDS = frozenset(
    {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "safety_identifier",
     "prompt_cache_key"}
)  # fmt: skip
"""OpenAI request fields that do not change an answer: accepted and ignored."""


class StreamOptions(BaseModel):
    include_usage: bool = False


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
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[int, float] | None = None  # JSON keys are token ids as strings
    # beyond OpenAI's API, as llama.cpp's own server and front-ends for it send them
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, gt=0)

    _n = field_validator("n")(_only_one)
    _stop_text = field_validator("stop")(_whole_unicode)

    @field_validator("stream", mode="before")
    @classmethod
    def _null_is_not_streamed(cls, value: Any) -> Any:
        return False if value is None else value  # the API defines stream as nullable

    @field_validator("logit_bias")
    @classmethod
    def _bias_in_range(cls, value: dict[int, float] | None) -> dict[int, float] | None:
        for token, bias in (value or {}).items():
            if not -100 <= bias <= 100:
                raise _unsupported("the bias of token {token} is outside -100..100", token=token)
        return value or None

    def unknown_fields(self) -> list[str]:
        """Fields sent that this server does not know and that are not known to change
        nothing: refused, rather than ignored (as OpenAI refuses them). ``null`` is not
        sending a field."""
        extra = self.model_extra or {}
        return [name for name, value in extra.items()
                if value is not None and name not in IGNORED_FIELDS]  # fmt: skip

    @property
    def include_usage(self) -> bool:
        return self.stream and self.stream_options is not None and self.stream_options.include_usage

    def _options(self) -> dict[str, Any]:
        """The ``Request`` fields both endpoints share."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": [] if self.stop is None else [self.stop] if isinstance(self.stop, str)
            else list(self.stop),
            "frequency_penalty": self.frequency_penalty or None,  # 0: no penalty at all
            "presence_penalty": self.presence_penalty or None,
            "top_k": self.top_k,  # 0: every token, as on llama.cpp's own server
            "min_p": self.min_p,  # 0: off
            "repeat_penalty": None if self.repeat_penalty == 1 else self.repeat_penalty,
            "logit_bias": self.logit_bias,
        }  # fmt: skip


class TextPart(BaseModel):
    type: Literal["text"]
    text: str

    _text = field_validator("text")(_whole_unicode)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    _text = field_validator("content")(_whole_unicode)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def to_dict(self) -> dict[str, Any]:
        """Role and text, and what ties a tool conversation together."""
        extra = self.model_extra or {}
        kept = {key: extra[key] for key in ("name", "tool_calls", "tool_call_id") if key in extra}
        return {"role": self.role, "content": self.text(), **kept}


class JSONSchema(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise _unsupported("a json_schema response format needs its json_schema")
        return self

    def to_request(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.json_schema is None:
            return {"type": "json_object"}
        return {"type": "json_object", "schema": self.json_schema.schema_}


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


class ChatCompletionBody(_Body):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    functions: list[Any] | None = None  # the deprecated form of tools
    function_call: Any = None

    @field_validator("functions", "function_call")
    @classmethod
    def _no_legacy_functions(cls, value: Any) -> Any:
        if value is not None:
            raise _unsupported("the deprecated functions API: use tools and tool_choice")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise _unsupported("top_logprobs needs logprobs: true")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _choice_among_tools(
        cls, value: str | NamedToolChoice | None, info: ValidationInfo
    ) -> str | NamedToolChoice | None:
        names = [tool.function.name for tool in info.data.get("tools") or ()]
        if isinstance(value, NamedToolChoice) and value.function.name not in names:
            raise _unsupported("'{name}' is not among the tools", name=value.function.name)
        if value == "required" and len(names) != 1:
            raise _unsupported(
                "'required' needs exactly one tool here (name the function to call instead)"
            )
        return value

    def to_request(self) -> Request:
        tools = [t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None
        tool_choice: str | dict[str, Any] | None = self.tool_choice  # type: ignore[assignment]
        if self.tool_choice == "none":  # no tool may be called: none is offered
            tools = tool_choice = None
        elif self.tool_choice == "required" and tools:  # the one tool there is (validated)
            tool_choice = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        elif isinstance(self.tool_choice, NamedToolChoice):
            tool_choice = self.tool_choice.model_dump()
        return Request(
            messages=[m.to_dict() for m in self.messages],
            **{**self._options(), "max_tokens": self.max_completion_tokens or self.max_tokens},
            response_format=self.response_format.to_request() if self.response_format else None,
            tools=tools,
            tool_choice=tool_choice,
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
        )


class CompletionBody(_Body):
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    best_of: int | None = None
    echo: bool = False  # the prompt before the answer: written by the server, any engine
    suffix: str | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)

    _best_of = field_validator("best_of")(_only_one)

    @field_validator("logprobs")
    @classmethod
    def _not_of_the_prompt(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("echo"):
            raise _unsupported(
                "not with echo: the prompt's own log probabilities are not available"
            )
        return value

    @field_validator("suffix")
    @classmethod
    def _no_insertion(cls, value: str | None) -> str | None:
        if value:  # llama.cpp inserts only with a model trained for it (fill-in-the-middle)
            raise _unsupported("text after the completion (insertion) is not supported")
        return value

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str:
        """A list of one (LangChain's ``OpenAI`` always sends one) is that prompt."""
        _whole_unicode(value)
        if isinstance(value, str):
            return value
        if len(value) != 1:
            raise _unsupported("one prompt per request is supported, got {count}",
                               count=len(value))  # fmt: skip
        return value[0]

    def to_request(self) -> Request:
        return Request(
            prompt=self.prompt,  # type: ignore[arg-type]  # one str, after validation
            **self._options(),
            logprobs=self.logprobs,
        )
