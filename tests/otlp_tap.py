"""A real OTLP receiver for tests: oteltap (http/protobuf) in a background event loop."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from oteltap import OtelTapHttpProtobufReceiver, OtelTapHttpProtobufReceiverSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tap:
    """Collects every span, metric and log record that arrives at ``url`` (an OTLP/HTTP
    endpoint)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spans: list[Any] = []
        self.metrics: list[Any] = []
        self.logs: list[Any] = []
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Tap:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("oteltap did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    async def _run(self) -> None:
        settings = OtelTapHttpProtobufReceiverSettings(http_port=self.port)
        async with OtelTapHttpProtobufReceiver(settings) as receiver:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            tasks = [
                asyncio.create_task(self._collect(receiver.stream_traces(), self.spans)),
                asyncio.create_task(self._collect(receiver.stream_metrics(), self.metrics)),
                asyncio.create_task(self._collect(receiver.stream_logs(), self.logs)),
            ]
            self._started.set()
            await self._stop.wait()
            for task in tasks:
                task.cancel()

    @staticmethod
    async def _collect(stream: Any, into: list[Any]) -> None:
        async for item in stream:
            into.append(item)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for OTLP data")
            time.sleep(0.05)


def attributes(item: Any) -> dict[str, Any]:
    """An OTLP KeyValue list as a dict of plain values."""
    out = {}
    for kv in item.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


class GunzipRelay:
    """Forwards OTLP/HTTP requests to ``target`` decompressed: rotel always sends gzip,
    which oteltap does not read."""

    def __init__(self, target: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = urllib.request.Request(
                    target + self.path,
                    data=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, payload = response.status, response.read()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GunzipRelay:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
