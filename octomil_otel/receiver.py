"""A minimal local Octomil API: the ingest contract on a stdlib HTTP server, events in memory.

For demos and tests on one machine: it answers ``POST /api/v1/telemetry/events`` and
``GET /api/v1/auth/whoami`` exactly as ``octomil-api.md`` says (401 for an unknown key, 400
naming the event and field, 413 over 1 MiB, 202 with the count), and keeps what it
accepted. Run it with ``python -m octomil_otel.receiver --api-key KEY --port 8090``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from octomil_otel.export._transport import EVENTS_PATH, WHOAMI_PATH
from octomil_otel.ingest import Batch, BatchError, check_length, parse_batch


class Receiver:
    """Accepts events for the keys it knows; ``events`` holds what it stored, in order.

    Args:
        api_keys: key -> org id.
        host, port: where to listen; port 0 picks a free one (see ``url``).
    """

    def __init__(self, api_keys: dict[str, str], host: str = "127.0.0.1", port: int = 0):
        self.api_keys = dict(api_keys)
        self.requests: list[dict[str, Any]] = []  # method, path, headers of every request
        self._events: list[dict[str, Any]] = []
        self._batches: deque[tuple[str, Batch]] = deque()  # accepted, not yet decoded
        self._lock = threading.RLock()
        self._server = _Server((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event it accepted, in order, a dict each with the key's ``org_id``: the
        list itself (clear it to forget them). The batches accepted since the last read
        are decoded into it on this read, not before."""
        with self._lock:
            while self._batches:
                org_id, batch = self._batches[0]
                events = batch.events()
                for event in events:
                    event["org_id"] = org_id
                self._events += events
                self._batches.popleft()
            return self._events

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ingest(self, org_id: str, body: bytes, encoding: str | None) -> tuple[int, dict]:
        """Validate one batch and store it whole, or nothing of it."""
        try:
            batch = parse_batch(body, encoding)
        except BatchError as error:
            return error.status, {"error": str(error)}
        with self._lock:
            self._batches.append((org_id, batch))
        return HTTPStatus.ACCEPTED, {"accepted": batch.count}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that left or stalled (``_Handler.timeout``) is no error of the server's:
        no traceback for it."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


_DRAINED_BYTES = 64 * 1024 * 1024
"""A body refused for its length is read and dropped up to this size; a longer one is not read."""


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30.0  # seconds a connection may stall, in a request or between them
        wbufsize = -1  # an answer's head and body in one write: one packet, one read

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _org(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
            return receiver.api_keys.get(key) if key else None

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _length(self) -> int:
            """The body's length; ``BatchError`` for a body this server does not read."""
            if "Transfer-Encoding" in self.headers:
                raise BatchError(411, "Content-Length is required: a chunked body is not read")
            lengths = set(self.headers.get_all("Content-Length", []))
            if len(lengths) > 1:
                raise BatchError(400, "Content-Length is given more than once, differently")
            return check_length(next(iter(lengths), None))

        def _refuse_unread(self, error: BatchError) -> None:
            """Answer, then close the connection: the body is not read as a batch. A body
            of known length up to ``_DRAINED_BYTES`` is read and dropped first, so that a
            client that sends it all before reading (``http.client``) gets the answer."""
            self.close_connection = True
            if error.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:  # its length is known
                digits = self.headers.get("Content-Length", "").strip().lstrip("0")
                left = int(digits) if len(digits) <= 9 else _DRAINED_BYTES + 1
                while 0 < left <= _DRAINED_BYTES and (piece := self.rfile.read(min(left, 65536))):
                    left -= len(piece)
            self._reply(error.status, {"error": str(error)})

        def _note(self) -> None:
            with receiver._lock:
                receiver.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers)}
                )

        def do_GET(self) -> None:
            self._note()
            if (
                self.headers.get("Content-Length", "0") != "0"
                or "Transfer-Encoding" in self.headers
            ):
                self.close_connection = True  # its body is unread: not the next request
            org = self._org()
            if self.path != WHOAMI_PATH:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})
            elif org is None:
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "invalid API key"})
            else:
                self._reply(HTTPStatus.OK, {"org_id": org})

        def do_POST(self) -> None:
            self._note()
            try:
                length = self._length()
            except BatchError as error:
                self._refuse_unread(error)
                return
            raw = self.rfile.read(length)
            if len(raw) < length:  # the client stopped sending: the batch may be cut
                self.close_connection = True
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "the body ended before its length"})
                return
            org = self._org()
            if self.path != EVENTS_PATH:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            if org is None:
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "invalid API key"})
                return
            self._reply(*receiver.ingest(org, raw, self.headers.get("Content-Encoding")))

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--api-key", required=True, help="the key to accept")
    parser.add_argument("--org-id", default="org_local")
    args = parser.parse_args(argv)
    receiver = Receiver({args.api_key: args.org_id}, args.host, args.port)
    print(f"Receiving events on {receiver.url}", flush=True)
    receiver._server.serve_forever()


if __name__ == "__main__":
    main()
