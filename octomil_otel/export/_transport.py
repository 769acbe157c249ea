"""HTTP to the Octomil API: one session, bounded timeouts, no retries, never traced.

Only the reporter's worker thread calls this; the inference path never waits on it.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from isal import isal_zlib
from opentelemetry.instrumentation.utils import suppress_instrumentation

from octomil_otel.export import _http
from octomil_otel.version import __version__

_logger = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/telemetry/events"
WHOAMI_PATH = "/api/v1/auth/whoami"
MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 1024 * 1024
USER_AGENT = f"octomil-otel/{__version__}"
GZIP_LEVEL = 1
"""An ISA-L gzip level: ~1.5k instructions per chunk event against ~9.7k for zlib's level 1
(and ~19k for its level 5), and a slightly smaller body than zlib's level 1; its level 0
takes ~10 % less time for a body 36 % larger."""
PIECE_EVENTS = 128
"""A body is joined, encoded and compressed this many events at a time (~33 kB), never
whole: a 1,000-event body (~265 kB) written as one text, then as bytes, then read by the
compressor took twice the time (~200 us against ~85) of pieces that stay in the CPU's
caches."""
_GZIP_WBITS = 31  # zlib's way of asking for the gzip format


@dataclass(frozen=True)
class Delivery:
    """What became of one POST: how many events the API took, and why not if it did not."""

    accepted: int
    status: int | None = None
    error: str | None = None

    @property
    def unreachable(self) -> bool:
        """No answer at all: the API is down or hanging, so the rest waiting is dropped too."""
        return self.status is None


class _Client(Protocol):
    def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class Transport:
    """Delivers encoded batches to one ``api_base`` with one key, over one kept-alive
    connection: ``_http.Connection``, or urllib3 through the proxy that the standard
    variables (``HTTPS_PROXY``, ``NO_PROXY``, ...) name for it, read once, here."""

    def __init__(self, api_base: str, api_key: str, timeout_seconds: float) -> None:
        self._api_base = api_base
        self._path = urllib.parse.urlsplit(api_base).path.rstrip("/")
        self._timeouts = (min(timeout_seconds, 3.0), timeout_seconds)  # connect, read
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}
        self._post_headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        self._client: _Client | None = None

    def reset(self) -> None:
        """Forget the connection (after ``fork``, the child must not share the parent's)."""
        self._client = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self._client is None:
            self._client = _client_for(self._api_base, *self._timeouts)
        headers = self._post_headers if body else self._headers
        with suppress_instrumentation():
            return self._client.request(method, self._path + path, headers, body)

    def post_events(self, body: list[str], count: int) -> Delivery:
        """POST one ``{"events": [...]}`` body, given as pieces of ASCII JSON text (see
        ``batches``), gzip-compressed a piece at a time."""
        compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, _GZIP_WBITS)
        data = b"".join([*map(compressor.compress, map(_ascii, body)), compressor.flush()])
        try:
            status, answer = self._request("POST", EVENTS_PATH, data)
        except Exception as error:  # only its type: a message may quote a header
            return Delivery(0, None, type(error).__name__)
        if status // 100 == 2:
            return Delivery(_accepted(answer, count), status)
        return Delivery(0, status, answer[:200].decode("utf-8", "replace"))

    def whoami(self) -> str | None:
        """The org of the key, or ``None`` when the API cannot say right now."""
        try:
            status, answer = self._request("GET", WHOAMI_PATH)
            org_id = json.loads(answer).get("org_id") if status == 200 else None
        except Exception:
            return None
        return org_id if isinstance(org_id, str) and org_id else None


def _client_for(api_base: str, connect_timeout: float, read_timeout: float) -> _Client:
    """A connection to ``api_base``, through the proxy the environment names for it."""
    parts = urllib.parse.urlsplit(api_base)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return _Proxied(api_base, proxy, connect_timeout, read_timeout)
    return _http.Connection(api_base, connect_timeout, read_timeout)


class _Proxied:
    """urllib3's ``ProxyManager``: an http API in absolute form to the proxy, an https one
    through a ``CONNECT`` tunnel; one connection."""

    def __init__(
        self, api_base: str, proxy: str, connect_timeout: float, read_timeout: float
    ) -> None:
        import certifi
        import urllib3

        tls = {"ca_certs": os.environ.get("SSL_CERT_FILE") or certifi.where()}
        self._manager = urllib3.ProxyManager(proxy, num_pools=1, maxsize=1, **tls)
        parts = urllib.parse.urlsplit(api_base)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)

    def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        response = self._manager.urlopen(
            method, self._origin + target, body=body or None, headers=headers, retries=False,
            timeout=self._timeout, redirect=False,
        )  # fmt: skip
        return response.status, response.data

    def close(self) -> None:
        self._manager.clear()


def _accepted(data: bytes, count: int) -> int:
    try:
        accepted = json.loads(data).get("accepted", count)
    except (ValueError, AttributeError):
        return count
    return accepted if isinstance(accepted, int) and 0 <= accepted <= count else count


def encode(event: dict[str, Any]) -> str:
    """Compact JSON, ASCII only (so its length is its size in bytes); NaN and inf refused."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False)


def batches(texts: list[str], prefix: str = "") -> Iterator[tuple[list[str], int]]:
    """``{"events": [...]}`` bodies within the API's limits, with their event counts.

    Each event is ``prefix + text``: ASCII JSON (so a length is a size in bytes). A body
    comes in pieces (``PIECE_EVENTS`` events each) that make it when concatenated: each
    piece one ``join``, the body's head and tail added to its first and last event, so the
    prefix is not concatenated per event. An event too large to fit any batch on its own
    is left out (the caller counts it).
    """
    head, tail, separator = '{"events":[' + prefix, "]}", "," + prefix
    for start in range(0, len(texts), MAX_BATCH_EVENTS):
        part = texts[start : start + MAX_BATCH_EVENTS]
        pieces = _pieces(part, head, tail, separator)
        if sum(map(len, pieces)) <= MAX_BATCH_BYTES:  # usual: 1,000 events of a few hundred bytes
            yield pieces, len(part)
        else:
            yield from _split(texts[start : start + MAX_BATCH_EVENTS], head, tail, separator)


def _split(
    texts: Sequence[str], head: str, tail: str, separator: str
) -> Iterator[tuple[list[str], int]]:
    """Bodies of at most 1 MiB, one event at a time."""
    parts: list[str] = []
    size = len(head) + len(tail)
    for text in texts:
        if len(head) + len(text) + len(tail) > MAX_BATCH_BYTES:
            _logger.warning("[telemetry] Dropped an event of %d bytes: over 1 MiB", len(text))
            continue
        if parts and size + len(separator) + len(text) > MAX_BATCH_BYTES:
            yield _pieces(parts, head, tail, separator), len(parts)
            parts, size = [], len(head) + len(tail)
        size += len(text) + (len(separator) if parts else 0)
        parts.append(text)
    if parts:
        yield _pieces(parts, head, tail, separator), len(parts)


def _pieces(texts: list[str], head: str, tail: str, separator: str) -> list[str]:
    """``head + separator.join(texts) + tail`` in pieces of ``PIECE_EVENTS`` events, each
    after the first starting with its separator (one ``join`` each, no text copied twice).
    ``texts`` is changed (its ends)."""
    texts[0] = head + texts[0]
    texts[-1] += tail
    pieces = [separator.join(texts[:PIECE_EVENTS])]
    pieces += [
        separator.join(["", *texts[start : start + PIECE_EVENTS]])
        for start in range(PIECE_EVENTS, len(texts), PIECE_EVENTS)
    ]
    return pieces


def _ascii(text: str) -> bytes:
    """A piece's bytes; ``UnicodeEncodeError`` for text that is not ASCII, whose length
    would not be its size (``batches`` counts characters)."""
    return text.encode("ascii")
