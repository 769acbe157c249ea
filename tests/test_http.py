"""The reporter's HTTP/1.1 connection against servers that answer every way HTTP allows,
over real sockets on 127.0.0.1: kept alive or not, chunked or not, TLS, slow, and the
transport through a proxy."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from octomil_otel.export import _http, _transport

Answer = Callable[[bytes], bytes]  # a request's bytes -> the response's bytes


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


HANGUP = "hang up"  # in a server's answers: close the connection before reading on


class Server:
    """Accepts connections; answers each request with the next of ``answers``: a function
    of the request, ``None`` (read it, then close without answering), or ``HANGUP`` (close
    the connection before the next request). Records every request and connection."""

    def __init__(self, answers: list, tls: ssl.SSLContext | None = None) -> None:
        self.answers, self.tls = answers, tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.hung_up = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()
                    continue
            with conn:
                self.converse(conn)

    def converse(self, conn: socket.socket) -> None:
        while self.answers:
            if self.answers[0] is HANGUP:
                self.answers.pop(0)
                conn.close()
                self.hung_up.set()
                return
            request = read_request(conn)
            if not request:
                return
            self.requests.append(request)
            reply = self.answers.pop(0)
            if reply is None:
                return
            conn.sendall(reply(request))

    def close(self) -> None:
        self.listener.close()


@contextmanager
def server(*answers, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    running = Server(list(answers), tls)
    try:
        yield running
    finally:
        running.close()


def answer(raw: bytes) -> Answer:
    return lambda request: raw


ACCEPTED = answer(b'HTTP/1.1 202 Accepted\r\nContent-Length: 15\r\n\r\n{"accepted": 3}')
OK = (202, b'{"accepted": 3}')


def connect(url: str, read_timeout: float = 5.0) -> _http.Connection:
    return _http.Connection(url, 3.0, read_timeout)


def test_a_kept_alive_connection_carries_many_requests():
    with server(ACCEPTED, ACCEPTED, ACCEPTED) as api:
        connection = connect(api.url)
        answers = [connection.request("POST", "/e", {"A": "b"}, b"xyz") for _ in range(3)]

    assert answers == [(202, b'{"accepted": 3}')] * 3
    assert api.connections == 1
    assert api.requests[0] == (
        b"POST /e HTTP/1.1\r\nHost: 127.0.0.1:" + api.url.rsplit(":", 1)[1].encode()
        + b"\r\nA: b\r\nContent-Length: 3\r\n\r\nxyz"
    )  # fmt: skip


def test_a_chunked_answer_is_read_whole():
    chunked = answer(
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'6\r\n{"acce\r\n9;ext=1\r\npted": 3}\r\n0\r\nX-Trailer: 1\r\n\r\n'
    )
    with server(chunked, ACCEPTED) as api:
        connection = connect(api.url)
        first = connection.request("GET", "/w", {})
        second = connection.request("GET", "/w", {})

    assert (first, second) == ((202, b'{"accepted": 3}'), (202, b'{"accepted": 3}'))
    assert api.connections == 1


def test_a_connection_the_server_closed_between_requests_is_opened_again():
    with server(ACCEPTED, HANGUP, ACCEPTED) as api:
        connection = connect(api.url)
        first = connection.request("POST", "/e", {}, b"1")
        assert api.hung_up.wait(5)
        second = connection.request("POST", "/e", {}, b"2")

    assert (first, second) == (OK, OK)
    assert api.connections == 2


def test_connection_close_and_an_answer_without_length():
    closing = answer(b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    to_the_end = answer(b"HTTP/1.0 200 OK\r\n\r\nall of it")
    with server(closing, HANGUP, to_the_end, HANGUP, ACCEPTED) as api:
        connection = connect(api.url)
        answers = [connection.request("GET", "/", {}) for _ in range(3)]

    assert answers == [(202, b"ok"), (200, b"all of it"), OK]
    assert api.connections == 3


def test_an_interim_answer_comes_before_the_real_one():
    with server(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + ACCEPTED(b""))) as api:
        assert connect(api.url).request("POST", "/e", {}, b"x") == OK


def test_a_server_that_drops_the_request_is_an_error_and_the_next_one_reconnects():
    with server(None, ACCEPTED) as api:
        connection = connect(api.url)
        with pytest.raises(ConnectionResetError):
            connection.request("POST", "/e", {}, b"1")
        assert connection.request("POST", "/e", {}, b"2") == OK


def test_a_silent_server_times_out():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        connection = connect(f"http://127.0.0.1:{silent.getsockname()[1]}", read_timeout=0.2)
        with pytest.raises(TimeoutError):
            connection.request("POST", "/e", {}, b"x")


@pytest.mark.parametrize(
    "raw",
    [b"SMTP ready\r\n\r\n", b"HTTP/1.1 2xx Huh\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    ids=["not http", "bad status", "bad length", "bad chunk"],
)  # fmt: skip
def test_what_is_not_http_is_a_protocol_error(raw):
    with server(answer(raw)) as api, pytest.raises(_http.ProtocolError):
        connect(api.url).request("GET", "/", {})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def tls_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def test_https_checks_the_certificate(certificate, monkeypatch):
    # not in certifi's bundle
    with (
        server(ACCEPTED, tls=tls_context(certificate)) as api,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        connect(api.url).request("GET", "/", {})
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with server(ACCEPTED, ACCEPTED, tls=tls_context(certificate)) as api:
        connection = connect(api.url)
        assert [connection.request("GET", "/", {}) for _ in range(2)] == [OK, OK]
        assert api.connections == 1  # kept alive over TLS


def test_the_transport_goes_through_the_proxy_the_environment_names(monkeypatch):
    """urllib3 through an HTTP proxy: the request reaches the proxy in absolute form."""
    with server(ACCEPTED) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        transport = _transport.Transport("http://api.invalid/base", "sk-key", 5.0)
        delivery = transport.post_events('{"events":[]}', 3)
        transport.close()

    assert delivery == _transport.Delivery(3, 202)
    assert proxy.requests[0].startswith(b"POST http://api.invalid/base/api/v1/telemetry/events ")
    assert b"\r\nHost: api.invalid\r\n" in proxy.requests[0]
    assert b"\r\nAuthorization: Bearer sk-key\r\n" in proxy.requests[0]
