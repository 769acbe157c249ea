"""`octomil serve` and the request shapes real clients send (the openai SDK, LangChain,
LiteLLM, browser front-ends): each honoured exactly, or a 400 naming what it cannot do."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    ("path", "extra", "param", "message"),
    [
        ("/v1/completions", {"prompt": ["a", "b"]}, "prompt",
         "prompt: one prompt per request is supported, got 2"),
        ("/v1/completions", {"prompt": "a", "n": 2}, "n",
         "n: only one choice per request is supported"),
        ("/v1/chat/completions", {"messages": MESSAGES, "n": 3}, "n",
         "n: only one choice per request is supported"),
        ("/v1/completions", {"prompt": "a", "best_of": 2}, "best_of",
         "best_of: only one choice per request is supported"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_a_400_naming_it(server, path, extra, param, message):
    refused = post(server, path, {"model": "tiny-llama", **extra})

    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": None,
    }


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completions"])
def test_include_usage_is_the_whole_answers_usage_and_the_telemetrys(api, server, chat):
    common = {"model": "tiny-llama", "max_tokens": 7, "temperature": 0}
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
