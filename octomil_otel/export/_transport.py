"""HTTP to the Octomil API: one session, bounded timeouts, no retries, never traced.

Only the reporter's worker thread calls this; the inference path never waits on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from isal import igzip
from opentelemetry.instrumentation.utils import suppress_instrumentation

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


class Transport:
    """Delivers encoded batches to one ``api_base`` with one key."""

    def __init__(self, api_base: str, api_key: str, timeout_seconds: float) -> None:
        self._api_base = api_base
        self._timeout = (min(timeout_seconds, 3.0), timeout_seconds)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": USER_AGENT,
        }
        self._session: requests.Session | None = None

    def _http(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
        return self._session

    def reset(self) -> None:
        """Forget the connection pool (after ``fork``, the child must not share sockets)."""
        self._session = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def post_events(self, body: str, count: int) -> Delivery:
        """POST one ``{"events": [...]}`` body (ASCII JSON text), gzip-compressed."""
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        try:
            with suppress_instrumentation():
                response = self._http().post(
                    self._api_base + EVENTS_PATH,
                    data=igzip.compress(body.encode("ascii"), compresslevel=GZIP_LEVEL),
                    headers=headers,
                    timeout=self._timeout,
                )
        except requests.RequestException as error:
            return Delivery(0, None, type(error).__name__)
        if response.status_code // 100 == 2:
            return Delivery(_accepted(response, count), response.status_code)
        return Delivery(0, response.status_code, response.text[:200])

    def whoami(self) -> str | None:
        """The org of the key, or ``None`` when the API cannot say right now."""
        try:
            with suppress_instrumentation():
                response = self._http().get(
                    self._api_base + WHOAMI_PATH, headers=self._headers, timeout=self._timeout
                )
            org_id = response.json().get("org_id") if response.status_code == 200 else None
        except (requests.RequestException, ValueError, AttributeError):
            return None
        return org_id if isinstance(org_id, str) and org_id else None


def _accepted(response: requests.Response, count: int) -> int:
    try:
        accepted = response.json().get("accepted", count)
    except (ValueError, AttributeError):
        return count
    return accepted if isinstance(accepted, int) and 0 <= accepted <= count else count


def encode(event: dict[str, Any]) -> str:
    """Compact JSON, ASCII only (so its length is its size in bytes); NaN and inf refused."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False)


def batches(texts: Sequence[str], prefix: str = "") -> Iterator[tuple[str, int]]:
    """``{"events": [...]}`` bodies within the API's limits, with their event counts.

    Each event is ``prefix + text``: ASCII JSON (so a length is a size in bytes). The prefix
    is written by ``join``, not by a concatenation per event. An event too large to fit any
    batch on its own is left out (the caller counts it).
    """
    head, tail, separator = '{"events":[' + prefix, "]}", "," + prefix
    for start in range(0, len(texts), MAX_BATCH_EVENTS):
        part = texts[start : start + MAX_BATCH_EVENTS]
        size = len(head) + len(tail) + sum(map(len, part)) + len(separator) * (len(part) - 1)
        if size <= MAX_BATCH_BYTES:  # the usual case: 1,000 events of a few hundred bytes
            yield head + separator.join(part) + tail, len(part)
        else:
            yield from _split(part, head, tail, separator)


def _split(texts: Sequence[str], head: str, tail: str, separator: str) -> Iterator[tuple[str, int]]:
    """Bodies of at most 1 MiB, one event at a time."""
    parts: list[str] = []
    size = len(head) + len(tail)
    for text in texts:
        if len(head) + len(text) + len(tail) > MAX_BATCH_BYTES:
            _logger.warning("[telemetry] Dropped an event of %d bytes: over 1 MiB", len(text))
            continue
        if parts and size + len(separator) + len(text) > MAX_BATCH_BYTES:
            yield head + separator.join(parts) + tail, len(parts)
            parts, size = [], len(head) + len(tail)
        size += len(text) + (len(separator) if parts else 0)
        parts.append(text)
    if parts:
        yield head + separator.join(parts) + tail, len(parts)
