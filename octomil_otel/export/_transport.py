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

from isal import igzip
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
"""ISA-L's fastest gzip level: ~1.5k instructions per chunk event against ~9.7k for zlib's
level 1 (and ~19k for its level 5), and a slightly smaller body than zlib's level 1."""


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

    def post_events(self, body: str, count: int) -> Delivery:
        """POST one ``{"events": [...]}`` body (ASCII JSON text), gzip-compressed."""
        data = igzip.compress(body.encode("ascii"), compresslevel=GZIP_LEVEL)
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


def batches(texts: list[str], prefix: str = "") -> Iterator[tuple[str, int]]:
    """``{"events": [...]}`` bodies within the API's limits, with their event counts.

    Each event is ``prefix + text``: ASCII JSON (so a length is a size in bytes). A body is
    one ``join``, its head and tail added to its first and last event: the prefix is not
    concatenated per event, and no body-sized text is written twice (``head + body +
    tail`` on a body of ~250 kB took ~330 us, against ~10 us). An event too large to fit
    any batch on its own is left out (the caller counts it).
    """
    head, tail, separator = '{"events":[' + prefix, "]}", "," + prefix
    for start in range(0, len(texts), MAX_BATCH_EVENTS):
        part = texts[start : start + MAX_BATCH_EVENTS]
        ends = part[0], part[-1]
        part[0] = head + part[0]
        part[-1] += tail
        body = separator.join(part)
        if len(body) <= MAX_BATCH_BYTES:  # the usual case: 1,000 events of a few hundred bytes
            yield body, len(part)
        else:
            part[0], part[-1] = ends
            yield from _split(part, head, tail, separator)


def _split(texts: Sequence[str], head: str, tail: str, separator: str) -> Iterator[tuple[str, int]]:
    """Bodies of at most 1 MiB, one event at a time."""
    parts: list[str] = []
    size = len(head) + len(tail)
    for text in texts:
        if len(head) + len(text) + len(tail) > MAX_BATCH_BYTES:
            _logger.debug("[telemetry] an event of %d bytes: over 1 MiB", len(text))
            continue
        if parts and size + len(separator) + len(text) > MAX_BATCH_BYTES:
            yield head + separator.join(parts) + tail, len(parts)
            parts, size = [], len(head) + len(tail)
        size += len(text) + (len(separator) if parts else 0)
        parts.append(text)
    if parts:
        yield head + separator.join(parts) + tail, len(parts)
