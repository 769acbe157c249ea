"""One kept-alive HTTP/1.1 connection for the reporter's requests, and nothing more.

Why not a client library: the reporter POSTs a few hundred events at a time, about once
per ten served requests, and a client's per-request machinery is most of what that costs.
Measured in one process against the local API (``bench/http_post_cost.py``), a 500-event
POST costs 3.4 times the CPU through urllib3 and 2.1 times through ``http.client`` that it
costs here (~790, ~490 and ~230 us); at ten served requests a POST, urllib3's share was
~50 us of every request.

What it does: one request at a time on one connection, ``http`` or ``https`` (certificates
and host name checked, against ``SSL_CERT_FILE`` if set, else certifi's bundle); reads a
response by ``Content-Length``, chunked, or to the connection's end; reconnects when the
server closed the kept-alive connection between two requests, never retries a request that
was sent. Through a proxy the transport uses urllib3 instead (``_transport.py``).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import urllib.parse

import certifi

MAX_HEAD_BYTES = 64 * 1024
_READ_SIZE = 64 * 1024


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this reads it."""


class Connection:
    """Requests to one origin (``scheme://host[:port]``), one at a time, on one socket.

    Args:
        origin: the API's base URL; only its scheme, host and port are used.
        connect_timeout, read_timeout: seconds, for connecting and for each wait for data.
    """

    def __init__(self, origin: str, connect_timeout: float, read_timeout: float) -> None:
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {origin!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self._port == (443 if parts.scheme == "https" else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if default_port else f"{host}:{self._port}"
        self._tls = (
            ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())
            if parts.scheme == "https"
            else None
        )
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request and read its whole answer: ``(status, body)``.

        Raises ``OSError`` (refused, reset, timed out, TLS) or ``ProtocolError``; the
        connection is closed then, and the next request opens a new one.
        """
        if self._sock is not None and self._closed_by_peer(self._sock):
            self.close()
        if self._sock is None:
            self._sock = self._connect()
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self._sock.sendall(head + body)
            status, keep_alive, data = self._read_response(method)
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        return status, data

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer = None, b""

    def _closed_by_peer(self, sock: socket.socket) -> bool:
        """Whether the server closed the kept-alive connection since the last answer (or
        sent what no request asked for): it cannot carry the next request then. TLS 1.3
        session tickets arriving late are read and are no reason."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            sock.settimeout(0)
            try:
                sock.recv(1)  # b"": the end; anything else: bytes no request asked for
                return True
            finally:
                sock.settimeout(self._read_timeout)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False  # only TLS records with no data in them
        except (OSError, ValueError):
            return True

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self._host, self._port), self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
            sock.settimeout(self._read_timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def _read_response(self, method: str) -> tuple[int, bool, bytes]:
        while True:  # 1xx answers come before the real one
            head = self._read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
            status_line, *header_lines = head.split(b"\r\n")
            version, _, rest = status_line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
            status = int(code)
            if status >= 200:
                break
        headers: dict[bytes, bytes] = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
        if method == "HEAD" or status in (204, 304):
            return status, keep_alive, b""
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return status, keep_alive, self._read_chunked()
        if b"content-length" in headers:
            try:
                length = int(headers[b"content-length"])
            except ValueError:
                raise ProtocolError("a Content-Length that is not a number") from None
            return status, keep_alive, self._read_exactly(length)
        return status, False, self._read_to_end()

    def _recv(self) -> bytes:
        assert self._sock is not None
        data = self._sock.recv(_READ_SIZE)
        if not data:
            raise ConnectionResetError("the server closed the connection mid-answer")
        return data

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            if len(self._buffer) > limit:
                raise ProtocolError(f"no {marker!r} within {limit} bytes")
            self._buffer += self._recv()
        found, self._buffer = self._buffer[:end], self._buffer[end + len(marker) :]
        return found

    def _read_exactly(self, length: int) -> bytes:
        while len(self._buffer) < length:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:length], self._buffer[length:]
        return data

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size_line = self._read_until(b"\r\n", MAX_HEAD_BYTES)
            try:
                size = int(size_line.split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError(f"a bad chunk size: {size_line[:40]!r}") from None
            if size == 0:
                while self._read_until(b"\r\n", MAX_HEAD_BYTES):  # trailers, then a blank line
                    pass
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            if self._read_exactly(2) != b"\r\n":
                raise ProtocolError("a chunk not followed by CRLF")

    def _read_to_end(self) -> bytes:
        assert self._sock is not None
        parts = [self._buffer]
        while data := self._sock.recv(_READ_SIZE):
            parts.append(data)
        self._buffer = b""
        return b"".join(parts)
