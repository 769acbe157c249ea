"""`octomil serve` and the request shapes real clients send (the openai SDK, LangChain,
LiteLLM, browser front-ends): each honoured exactly, or a 400 naming what it cannot do."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from octomil_otel.receiver import Receiver

from .conftest import API_KEY, ORG_ID
from .test_serve import Server, client, serve

openai = pytest.importorskip("openai")

MESSAGES = [{"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def api() -> Iterator[Receiver]:
    with Receiver({API_KEY: ORG_ID}) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def server(api, tiny_gguf) -> Iterator[Server]:
    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048") as running:
        yield running


def completed(api, request_id: str) -> dict:
    """The request's generation_completed, once the server delivered it (it sends every
    few seconds)."""
    deadline = time.monotonic() + 30
    while True:
        events = [e for e in api.events if e["request_id"] == request_id]
        if events and events[-1]["event_type"] == "generation_completed":
            return events[-1]
        assert time.monotonic() < deadline, events
        time.sleep(0.1)


def post(server: Server, path: str, body: dict) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=60)


def test_stream_null_is_a_whole_answer(server):
    body = {"model": "tiny-llama", "prompt": "hello", "max_tokens": 3, "stream": None}
    answer = post(server, "/v1/completions", body)

    assert answer.status_code == 200
    assert answer.json()["usage"]["completion_tokens"] == 3


def test_a_prompt_list_of_one_is_that_prompt(server):
    listed = client(server).completions.create(
        model="tiny-llama", prompt=["hello world"], max_tokens=5, temperature=0
    )
    plain = client(server).completions.create(
        model="tiny-llama", prompt="hello world", max_tokens=5, temperature=0
    )

    assert len(listed.choices) == 1
    assert listed.choices[0].text == plain.choices[0].text
    assert listed.usage == plain.usage


SERVERS = {"llamacpp": ("server", "tiny-llama"), "mlx": ("mlx_server", "tiny-mlx"),
           "echo": ("echo_server", "echo")}  # fmt: skip


@pytest.mark.parametrize("engine", list(SERVERS))
@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completions"])
def test_include_usage_is_the_whole_answers_usage_and_the_telemetrys(api, request, engine, chat):
    fixture, model = SERVERS[engine]
    server = request.getfixturevalue(fixture)
    common = {"model": model, "max_tokens": 7, "temperature": 0}
    if chat:
        create, common = client(server).chat.completions.create, {**common, "messages": MESSAGES}
    else:
        create, common = client(server).completions.create, {**common, "prompt": "hello world"}
    whole = create(**common)
    chunks = list(create(**common, stream=True, stream_options={"include_usage": True}))

    last = chunks[-1]
    assert last.choices == []
    assert last.usage.model_dump() == whole.usage.model_dump()
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) != (None, None)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    reported = completed(api, last.id)["metrics"]
    assert (reported["input_tokens"], reported["output_tokens"]) == (
        last.usage.prompt_tokens,
        last.usage.completion_tokens,
    )


def test_a_stream_without_include_usage_has_no_usage_chunk(server):
    chunks = list(
        client(server).completions.create(
            model="tiny-llama", prompt="hello", max_tokens=3, stream=True
        )
    )

    assert all(len(chunk.choices) == 1 for chunk in chunks)


def test_a_browser_preflight_is_answered_on_loopback(server):
    preflight = requests.options(
        server.url + "/v1/chat/completions",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
        timeout=10,
    )
    answer = requests.post(
        server.url + "/v1/completions",
        json={"model": "tiny-llama", "prompt": "hi", "max_tokens": 1},
        headers={"Origin": "http://localhost:3000"},
        timeout=30,
    )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-origin"] == "*"


def test_cors_origins_can_be_named(api):
    with serve("echo", api.url, "--cors-origin", "http://app.local") as named:
        allowed, other = (
            requests.options(
                named.url + "/v1/completions",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
                timeout=10,
            )
            for origin in ("http://app.local", "http://elsewhere.local")
        )

    assert (allowed.status_code, allowed.headers["access-control-allow-origin"]) == (
        200,
        "http://app.local",
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


# ---------------------------------------------------------------- sampling and output options


@pytest.fixture(scope="module")
def mlx_server(api, tiny_mlx_dir) -> Iterator[Server]:
    pytest.importorskip("mlx_lm")
    with serve(str(tiny_mlx_dir), api.url) as running:
        yield running


@pytest.fixture(scope="module")
def echo_server(api) -> Iterator[Server]:
    with serve("echo", api.url) as running:
        yield running


@pytest.fixture(scope="module")
def tiny_llama(tiny_gguf):
    """The served model, loaded here too: the reference for what the engine does itself."""
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(str(tiny_gguf), n_ctx=2048, n_threads=1, verbose=False)


def test_a_logit_bias_that_bans_all_tokens_but_one_yields_only_that_one(server, tiny_llama):
    (fox,) = tiny_llama.tokenize(b"fox", add_bos=False)
    bias = {str(token): -100 for token in range(tiny_llama.n_vocab()) if token != fox}
    answer = client(server).completions.create(
        model="tiny-llama", prompt="hello world", max_tokens=5, temperature=0, logit_bias=bias
    )

    assert answer.choices[0].text == " fox fox fox fox fox"


def test_a_logit_bias_on_mlx_too(mlx_server, tiny_mlx_dir):
    vocab = json.loads((tiny_mlx_dir / "tokenizer.json").read_text())["model"]["vocab"]
    bias = {str(token): -100 for token in vocab.values() if token != vocab["Ġfox"]}
    answer = client(mlx_server).completions.create(
        model="tiny-mlx", prompt="hello world", max_tokens=5, temperature=0, logit_bias=bias
    )

    assert answer.choices[0].text.split() == ["fox"] * 5


def test_mlx_through_serve_reports_its_time_split_and_peak_memory(api, mlx_server):
    answer = client(mlx_server).completions.create(
        model="tiny-mlx", prompt="hello world", max_tokens=5, temperature=0, stream=False
    )

    metrics = completed(api, answer.id)["metrics"]
    assert metrics["queue_ms"] >= 0
    assert metrics["prefill_ms"] > 0 and metrics["decode_ms"] > 0
    assert (
        metrics["queue_ms"] + metrics["prefill_ms"] + metrics["decode_ms"]
        <= (metrics["total_duration_ms"])
    )
    assert metrics["peak_memory_bytes"] > 0
    assert isinstance(metrics["peak_memory_bytes"], int)


PENALIZED = {"prompt": "river stone", "max_tokens": 8, "temperature": 0}  # it repeats itself


@pytest.mark.parametrize("penalty", ["presence_penalty", "frequency_penalty"])
def test_penalties_are_llama_cpps_own(server, tiny_llama, penalty):
    served = client(server).completions.create(model="tiny-llama", **PENALIZED, **{penalty: 2.0})
    reference = tiny_llama.create_completion(**PENALIZED, **{penalty: 2.0})
    unpenalized = tiny_llama.create_completion(**PENALIZED)

    assert served.choices[0].text == reference["choices"][0]["text"]
    assert served.choices[0].text != unpenalized["choices"][0]["text"]


@pytest.mark.parametrize("penalty", ["presence_penalty", "frequency_penalty"])
def test_penalties_on_mlx_are_mlx_lms_own(mlx_server, tiny_mlx_dir, penalty):
    import mlx_lm
    from mlx_lm.sample_utils import make_logits_processors

    from octomil_otel.engines.mlx import PENALTY_LAST_N

    served = client(mlx_server).completions.create(model="tiny-mlx", **PENALIZED, **{penalty: 2})
    model, tokenizer = mlx_lm.load(str(tiny_mlx_dir))
    context = penalty.replace("penalty", "context_size")
    processors = make_logits_processors(**{penalty: 2.0, context: PENALTY_LAST_N})
    reference = mlx_lm.generate(model, tokenizer, "river stone", max_tokens=8,
                                logits_processors=processors)  # fmt: skip
    unpenalized = mlx_lm.generate(model, tokenizer, "river stone", max_tokens=8)

    assert served.choices[0].text == reference
    assert reference != unpenalized


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize(
    "tool_choice",
    [{"type": "function", "function": {"name": "get_weather"}}, "required"],
    ids=["named", "required"],
)
def test_a_forced_tool_call_returns_tool_calls(api, server, tool_choice):
    common = {"model": "tiny-llama", "messages": MESSAGES, "temperature": 0, "max_tokens": 40}
    whole = client(server).chat.completions.create(
        **common, tools=[WEATHER], tool_choice=tool_choice
    )
    streamed = list(
        client(server).chat.completions.create(
            **common, tools=[WEATHER], tool_choice=tool_choice, stream=True
        )
    )

    choice = whole.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", None)
    (call,) = choice.message.tool_calls
    assert (call.type, call.function.name) == ("function", "get_weather")
    assert json.loads(call.function.arguments) in ({"city": "Paris"}, {"city": "Rome"})
    deltas = [d for c in streamed for d in c.choices[0].delta.tool_calls or ()]
    assert [d.function.name for d in deltas if d.function.name] == ["get_weather"]
    assert "".join(d.function.arguments for d in deltas) == call.function.arguments
    assert streamed[-1].choices[0].finish_reason == "tool_calls"
    reported = completed(api, streamed[0].id)
    events = [e for e in api.events if e["request_id"] == streamed[0].id]
    produced = [e for e in events if e["event_type"] == "chunk_produced"]
    assert len(produced) == len(deltas) == reported["metrics"]["output_tokens"]


def test_a_json_schema_answer_follows_the_schema(server):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    answer = client(server).chat.completions.create(
        model="tiny-llama",
        messages=MESSAGES,
        temperature=0,
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "ok", "schema": schema}},
    )

    assert answer.choices[0].finish_reason == "stop"
    assert json.loads(answer.choices[0].message.content) in ({"ok": True}, {"ok": False})


def test_a_json_object_answer_parses(api, tiny_gguf, tmp_path):
    """The model that ends on its own, with '}' favoured: JSON mode makes that '{}' and the
    end; without it the same bias would give '}}}}...'."""
    import llama_cpp

    from .tiny_models import write_tiny_gguf

    ending = write_tiny_gguf(tmp_path / "tiny-llama.gguf", end_word="fox")
    vocab = llama_cpp.Llama(str(ending), vocab_only=True, verbose=False)
    (brace,) = [t for t in range(vocab.n_vocab()) if vocab.detokenize([t]) == b"}"]
    common = {"model": "tiny-llama", "messages": MESSAGES, "temperature": 0, "max_tokens": 20,
              "logit_bias": {str(brace): 100}}  # fmt: skip
    with serve(str(ending), api.url) as ending_server:
        json_mode = client(ending_server).chat.completions.create(
            **common, response_format={"type": "json_object"}
        )
        free = client(ending_server).chat.completions.create(**common)

    assert json.loads(json_mode.choices[0].message.content) == {}
    assert free.choices[0].message.content.startswith("}}")


def test_echo_puts_the_prompt_before_the_answer(server):
    common = {"model": "tiny-llama", "prompt": "hello world", "max_tokens": 4, "temperature": 0}
    plain = client(server).completions.create(**common)
    echoed = client(server).completions.create(**common, echo=True)
    streamed = list(client(server).completions.create(**common, echo=True, stream=True))

    assert echoed.choices[0].text == "hello world" + plain.choices[0].text
    assert "".join(c.choices[0].text for c in streamed) == echoed.choices[0].text
    assert echoed.usage == plain.usage


@pytest.mark.parametrize(
    ("served", "path", "extra", "param", "message"),
    [
        ("mlx", "/v1/chat/completions", {"tools": [WEATHER]}, "tools",
         "'tools' is not supported by the mlx engine"),
        ("mlx", "/v1/chat/completions", {"response_format": {"type": "json_object"}},
         "response_format", "'response_format' is not supported by the mlx engine"),
        ("mlx", "/v1/completions", {"stop": ["\n"]}, "stop",
         "'stop' is not supported by the mlx engine"),
        ("echo", "/v1/completions", {"logit_bias": {"1": 5}}, "logit_bias",
         "'logit_bias' is not supported by the echo engine"),
        ("echo", "/v1/completions", {"presence_penalty": 1}, "presence_penalty",
         "'presence_penalty' is not supported by the echo engine"),
        ("echo", "/v1/chat/completions", {"stop": "x"}, "stop",
         "'stop' is not supported by the echo engine"),
        ("llamacpp", "/v1/completions", {"logprobs": 2}, "logprobs", "'logprobs' is not "
         "supported by the llamacpp engine unless the model is loaded for it (octomil serve "
         "--logprobs)"),
        ("llamacpp", "/v1/chat/completions", {"logprobs": True}, "logprobs", "'logprobs' is "
         "not supported by the llamacpp engine unless the model is loaded for it (octomil serve "
         "--logprobs)"),
        ("llamacpp", "/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs",
         "top_logprobs: top_logprobs needs logprobs: true"),
        ("mlx", "/v1/completions", {"logprobs": 0}, "logprobs",
         "'logprobs' is not supported by the mlx engine"),
        ("llamacpp", "/v1/completions", {"suffix": " end."}, "suffix",
         "suffix: text after the completion (insertion) is not supported"),
        ("llamacpp", "/v1/chat/completions", {"tools": [WEATHER], "tool_choice": {
            "type": "function", "function": {"name": "book"}}}, "tool_choice",
         "tool_choice: 'book' is not among the tools"),
        ("llamacpp", "/v1/chat/completions", {"tools": [WEATHER, WEATHER],
            "tool_choice": "required"}, "tool_choice", "tool_choice: 'required' needs exactly "
         "one tool here (name the function to call instead)"),
        ("llamacpp", "/v1/completions", {"prompt": ["a", "b"]}, "prompt",
         "prompt: one prompt per request is supported, got 2"),
        ("llamacpp", "/v1/completions", {"prompt": "a", "n": 2}, "n",
         "n: only one choice per request is supported"),
        ("llamacpp", "/v1/chat/completions", {"messages": MESSAGES, "n": 3}, "n",
         "n: only one choice per request is supported"),
        ("llamacpp", "/v1/completions", {"prompt": "a", "best_of": 2}, "best_of",
         "best_of: only one choice per request is supported"),
        ("llamacpp", "/v1/chat/completions", {"tools": [WEATHER]}, "tool_choice",
         "only a forced tool call is supported: name the function, or use 'required' with "
         "one tool ('none' offers no tool)"),
        ("llamacpp", "/v1/chat/completions", {"tools": [WEATHER], "tool_choice": "auto"},
         "tool_choice", "only a forced tool call is supported: name the function, or use "
         "'required' with one tool ('none' offers no tool)"),
        ("llamacpp", "/v1/chat/completions", {"functions": [WEATHER["function"]]}, "functions",
         "functions: the deprecated functions API: use tools and tool_choice"),
        ("llamacpp", "/v1/completions", {"prompt": "half an emoji \ud83d"}, "prompt",
         "prompt: a lone UTF-16 surrogate at character 14"),
        ("echo", "/v1/chat/completions", {"messages": [{"role": "user", "content": "\ud83d"}]},
         "messages.0.content", "messages.0.content: a lone UTF-16 surrogate at character 0"),
        ("llamacpp", "/v1/completions", {"logit_bias": {"-1": 5}}, "logit_bias",
         "token -1 is not in the model's vocabulary (0..{last})"),
        ("mlx", "/v1/completions", {"logit_bias": {"1000000000": 5}}, "logit_bias",
         "token 1000000000 is not in the model's vocabulary (0..{last})"),
        ("llamacpp", "/v1/completions", {"echo": True, "logprobs": 1}, "logprobs",
         "logprobs: not with echo: the prompt's own log probabilities are not available"),
        ("llamacpp", "/v1/chat/completions", {"reasoning_effort": "high"}, "reasoning_effort",
         "request argument not supported here: reasoning_effort"),
        ("mlx", "/v1/completions", {"tools": [WEATHER]}, "tools",
         "request argument not supported here: tools"),
        ("echo", "/v1/completions", {"top_k": 5}, "top_k",
         "'top_k' is not supported by the echo engine"),
        ("llamacpp", "/v1/chat/completions", {"response_format": {"type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object", "properties": {
                "stars": {"type": "integer", "minimum": 1, "maximum": 5}}}}}},
         "response_format", "'minimum' in a JSON schema is not enforced by llama.cpp"),
        ("llamacpp", "/v1/chat/completions", {"response_format": {"type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object", "properties": {
                "mail": {"type": "string", "format": "email"}}}}}},
         "response_format", "format 'email' in a JSON schema is not enforced by llama.cpp"),
        ("llamacpp", "/v1/chat/completions", {"tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "not": {"required": ["x"]}}}}],
            "tool_choice": "required"}, "tools",
         "'not' in a JSON schema is not enforced by llama.cpp"),
        ("echo", "/v1/chat/completions", {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "ok"}, {"type": "text", "text": "\ud83d"}]}]},
         "messages.0.content.1.text",
         "messages.0.content.1.text: a lone UTF-16 surrogate at character 0"),
        ("llamacpp", "/v1/completions", {"logit_bias": {"1": 101}}, "logit_bias",
         "logit_bias: the bias of token 1 is outside -100..100"),
    ],
)  # fmt: skip
def test_an_option_an_engine_cannot_honour_is_a_400_naming_it(
    request, served, path, extra, param, message
):
    fixture, model = SERVERS[served]
    target = request.getfixturevalue(fixture)
    body = {"model": model, **({"messages": MESSAGES} if "chat" in path else {"prompt": "hi"})}
    refused = post(target, path, {**body, **extra})
    if "{last}" in message:  # the model's last token id
        last = {"llamacpp": tiny_vocabulary, "mlx": mlx_vocabulary}[served](request) - 1
        message = message.format(last=last)

    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": None,
    }


def test_mlx_past_its_context_is_the_clients_context_error(api, mlx_server):
    with pytest.raises(openai.BadRequestError) as refused:
        client(mlx_server).completions.create(model="tiny-mlx", prompt="hello " * 3000)

    assert (refused.value.code, refused.value.param) == ("context_length_exceeded", "prompt")
    message = refused.value.message
    assert "maximum context length is 2048 tokens. However, you requested " in message
    requested = int(message.split("you requested ")[1].split()[0])
    deadline = time.monotonic() + 30  # the server sends every few seconds

    def refusals() -> list[dict]:
        return [
            e
            for e in api.events
            if e["model"] == "tiny-mlx"
            and e["metrics"].get("error_type") == "ContextLengthExceeded"
        ]

    while not refusals():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (failed,) = refusals()
    (started,) = [
        e
        for e in api.events
        if e["event_type"] == "generation_started" and e["request_id"] == failed["request_id"]
    ]
    assert started["metrics"] == {"input_tokens": requested}
    assert failed["metrics"]["error_type"] == "ContextLengthExceeded"
    assert failed["metrics"]["output_tokens"] == 0  # refused before a token


def test_a_seed_makes_mlx_sampling_repeatable(mlx_server):
    def sample(seed: int) -> str:
        answer = client(mlx_server).completions.create(
            model="tiny-mlx", prompt="hello", max_tokens=12, temperature=2, seed=seed
        )
        return answer.choices[0].text

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


@pytest.fixture(scope="module")
def logprobs_server(api, tiny_gguf) -> Iterator[Server]:
    with serve(str(tiny_gguf), api.url, "--n-ctx", "2048", "--logprobs") as running:
        yield running


def test_completion_logprobs_are_llama_cpps_own(logprobs_server, tiny_gguf):
    import llama_cpp

    common = {"prompt": "hello world", "max_tokens": 6, "temperature": 0, "logprobs": 2}
    whole = client(logprobs_server).completions.create(model="tiny-llama", **common)
    streamed = list(
        client(logprobs_server).completions.create(model="tiny-llama", **common, stream=True)
    )
    reference = llama_cpp.Llama(
        str(tiny_gguf), n_ctx=2048, n_threads=1, logits_all=True, verbose=False
    ).create_completion(**common)["choices"][0]["logprobs"]

    logprobs = whole.choices[0].logprobs
    assert "".join(logprobs.tokens) == whole.choices[0].text
    assert logprobs.tokens == reference["tokens"]
    assert logprobs.token_logprobs == pytest.approx(reference["token_logprobs"], rel=1e-6)
    assert all(len(top) >= 2 for top in logprobs.top_logprobs)
    pieces = [c.choices[0].logprobs for c in streamed if c.choices[0].logprobs is not None]
    assert [token for piece in pieces for token in piece.tokens] == logprobs.tokens


def test_chat_logprobs_one_entry_per_token(logprobs_server):
    answer = client(logprobs_server).chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=5, temperature=0,
        logprobs=True, top_logprobs=3,
    )  # fmt: skip

    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens == 5
    assert "".join(entry.token for entry in content) == answer.choices[0].message.content
    assert all(len(entry.top_logprobs) == 3 for entry in content)
    assert all(entry.logprob <= 0 for entry in content)
    assert all(
        [a.logprob for a in entry.top_logprobs]
        == sorted((a.logprob for a in entry.top_logprobs), reverse=True)
        for entry in content
    )
    none = client(logprobs_server).chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=2, logprobs=True
    )
    assert [entry.top_logprobs for entry in none.choices[0].logprobs.content] == [[], []]


def tiny_vocabulary(request) -> int:
    return request.getfixturevalue("tiny_llama").n_vocab()


def mlx_vocabulary(request) -> int:
    directory = request.getfixturevalue("tiny_mlx_dir")
    return json.loads((directory / "config.json").read_text())["vocab_size"]


def test_tool_choice_none_offers_no_tool(server):
    common = {"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 4, "temperature": 0}
    plain = client(server).chat.completions.create(**common)
    none = client(server).chat.completions.create(**common, tools=[WEATHER], tool_choice="none")

    assert none.choices[0].message.content == plain.choices[0].message.content
    assert none.choices[0].message.tool_calls is None


def test_a_tool_call_cut_off_by_max_tokens_finishes_by_length(server):
    common = {"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 5, "temperature": 0,
              "tools": [WEATHER], "tool_choice": "required"}  # fmt: skip
    whole = client(server).chat.completions.create(**common)
    streamed = list(client(server).chat.completions.create(**common, stream=True))

    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5
    assert streamed[-1].choices[0].finish_reason == "length"


def test_neutral_penalties_are_no_option_at_all(echo_server):
    """LangChain's OpenAI class always sends frequency_penalty 0: any engine takes it."""
    answer = client(echo_server).completions.create(
        model="echo", prompt="hello there", frequency_penalty=0, presence_penalty=0
    )

    assert answer.choices[0].text == "hello there"


@pytest.mark.parametrize("seed", [-1, 2**32 - 1, 2**70])
@pytest.mark.parametrize("engine", ["llamacpp", "mlx"])
def test_any_int_seed_makes_sampling_repeatable(request, engine, seed):
    fixture, model = SERVERS[engine]
    served = request.getfixturevalue(fixture)
    asked = {"model": model, "prompt": "hello", "max_tokens": 8, "temperature": 2, "seed": seed}

    def sample() -> str:
        return client(served).completions.create(**asked).choices[0].text

    first = sample()
    client(served).completions.create(model=model, prompt="something else", max_tokens=3)
    assert sample() == first  # whatever ran in between (llama.cpp caches prompts)


def test_top_p_zero_is_the_most_likely_token_on_mlx(mlx_server):
    def answer(**sampling: float) -> str:
        asked = {"model": "tiny-mlx", "prompt": "hello", "max_tokens": 8, "seed": 1}
        return client(mlx_server).completions.create(**asked, **sampling).choices[0].text

    assert answer(temperature=1, top_p=0) == answer(temperature=0)


def test_max_waiting_zero_still_serves_an_idle_engine(api):
    with serve("echo", api.url, "--max-waiting", "0") as echo:
        answer = client(echo).completions.create(model="echo", prompt="hi there")

    assert answer.choices[0].text == "hi there"


def test_mlx_stops_at_the_end_of_its_context(mlx_server):
    answer = client(mlx_server).completions.create(
        model="tiny-mlx", prompt="hello " * 2040, max_tokens=200, temperature=0
    )

    assert 2040 < answer.usage.prompt_tokens < 2048
    assert answer.usage.total_tokens == 2048  # the model's positions, all used
    assert answer.choices[0].finish_reason == "length"


@pytest.mark.parametrize("engine", ["llamacpp", "mlx"])
def test_top_k_one_is_the_most_likely_token(request, engine):
    fixture, model = SERVERS[engine]
    served = request.getfixturevalue(fixture)

    def answer(**sampling: float) -> str:
        asked = {"model": model, "prompt": "hello", "max_tokens": 8, "seed": 3}
        return client(served).completions.create(**asked, **sampling).choices[0].text

    assert answer(temperature=2, extra_body={"top_k": 1}) == answer(temperature=0)


def test_repeat_penalty_is_llama_cpps_own(server, tiny_llama):
    served = client(server).completions.create(
        model="tiny-llama", **PENALIZED, extra_body={"repeat_penalty": 1.5}
    )
    reference = tiny_llama.create_completion(**PENALIZED, repeat_penalty=1.5)

    assert served.choices[0].text == reference["choices"][0]["text"]
    assert served.choices[0].text != tiny_llama.create_completion(**PENALIZED)["choices"][0]["text"]


def test_zero_min_p_turns_it_off_on_llama_cpp(server):
    def answer(**sampling: float) -> str:
        asked = {"model": "tiny-llama", "prompt": "hello", "max_tokens": 8, "temperature": 2,
                 "seed": 5}  # fmt: skip
        return client(server).completions.create(**asked, extra_body=sampling).choices[0].text

    assert answer(min_p=0) == answer(min_p=1e-9) != answer()  # llama.cpp's default: 0.05


def test_a_null_field_is_no_field(server):
    answer = post(server, "/v1/chat/completions", {
        "model": "tiny-llama", "messages": MESSAGES, "max_tokens": 2,
        "reasoning_effort": None, "modalities": None,
    })  # fmt: skip

    assert answer.status_code == 200


def test_fields_that_change_nothing_are_accepted(server):
    answer = client(server).chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=2, user="u-1", store=False,
        metadata={"team": "a"}, parallel_tool_calls=False,
    )  # fmt: skip

    assert answer.usage.completion_tokens == 2


def test_a_recursive_schema_is_refused_not_loosened(server):
    node = {"$defs": {"Node": {"type": "object", "required": ["value", "children"],
            "properties": {"value": {"type": "integer"},
                           "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
            "$ref": "#/$defs/Node"}  # fmt: skip
    refused = post(server, "/v1/chat/completions", {
        "model": "tiny-llama", "messages": MESSAGES,
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": node}},
    })  # fmt: skip

    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "response_format"
    assert refused.json()["error"]["message"].startswith(
        "a JSON schema llama.cpp's grammar cannot enforce (KeyError: "
    )
