"""Chat templates for models whose GGUF carries none, written as the model's own template
behaves.

llama-cpp-python's built-in ``gemma`` format drops ``system`` (and ``developer`` and
``tool``) messages without a word, so a system prompt silently does nothing. Gemma 3's own
template (its ``tokenizer_config.json`` on the Hub) puts the system text at the head of the
first user turn; this does the same, and refuses what that template refuses instead of
dropping it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llama_cpp.llama_chat_format import ChatFormatterResponse

from octomil_otel.engines.base import RequestError

END_OF_TURN = "<end_of_turn>"


def gemma3(messages: list[dict[str, Any]], **_: Any) -> ChatFormatterResponse:
    """Gemma 3's turns: ``<start_of_turn>user|model\\n{text}<end_of_turn>\\n``, the system or
    developer text (first message only) then a blank line leading the first user turn,
    users and the model alternating, and the model's turn opened for the answer.

    A system message alone is the first user turn. Raises ``RequestError`` (``messages``)
    for a ``tool`` message, tool calls, a system message after the first, and turns that
    do not alternate: the template has no place for them.
    """
    prefix = ""
    if messages and messages[0]["role"] in ("system", "developer"):
        prefix = _text(messages[0]) + "\n\n"
        messages = messages[1:] or [{"role": "user", "content": ""}]
    turns = []
    for index, message in enumerate(messages):
        role = message["role"]
        if role not in ("user", "assistant") or message.get("tool_calls"):
            what = "tool calls" if role == "assistant" else f"a {role!r} message here"
            raise RequestError(
                f"Gemma 3 has no place for {what} (a system message may only come first; "
                "there is no tool role)",
                "messages",
            )
        if (role == "user") != (index % 2 == 0):
            raise RequestError("Gemma 3 needs user and assistant turns to alternate", "messages")
        text = (prefix if index == 0 else "") + _text(message).strip()
        turns.append(f"<start_of_turn>{'user' if role == 'user' else 'model'}\n{text}")
    prompt = "".join(f"{turn}{END_OF_TURN}\n" for turn in turns) + "<start_of_turn>model\n"
    return ChatFormatterResponse(prompt=prompt, stop=END_OF_TURN)


def _text(message: dict[str, Any]) -> str:
    return str(message.get("content") or "")


FORMATTERS: dict[str, Callable[..., ChatFormatterResponse]] = {"gemma3": gemma3}
"""Our formats by name; any other name is one of llama-cpp-python's own."""
