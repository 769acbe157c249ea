"""HTTP to the Octomil API: one session, bounded timeouts, no retries, never traced.

Only the reporter's worker thread calls this; the inference path never waits on it.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from opentelemetry.instrumentation.utils import suppress_instrumentation

from octomil_otel.version import __version__

_logger = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/telemetry/events"
WHOAMI_PATH = "/api/v1/auth/whoami"
MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 1024 * 1024
USER_AGENT = f"octomil-otel/{__version__}"


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

    def post_events(self, body: bytes, count: int) -> Delivery:
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        try:
            with suppress_instrumentation():
                response = self._http().post(
                    self._api_base + EVENTS_PATH,
                    data=gzip.compress(body, compresslevel=5),
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


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()


def batches(encoded: Sequence[bytes]) -> Iterator[tuple[bytes, int]]:
    """``{"events": [...]}`` bodies within the API's limits, with their event counts.

    An event too large to fit any batch on its own is left out (the caller counts it).
    """
    head, tail = b'{"events":[', b"]}"
    parts: list[bytes] = []
    size = len(head) + len(tail)
    for item in encoded:
        if len(head) + len(item) + len(tail) > MAX_BATCH_BYTES:
            _logger.warning("[telemetry] Dropped an event of %d bytes: over 1 MiB", len(item))
            continue
        if parts and (len(parts) >= MAX_BATCH_EVENTS or size + len(item) + 1 > MAX_BATCH_BYTES):
            yield head + b",".join(parts) + tail, len(parts)
            parts, size = [], len(head) + len(tail)
        parts.append(item)
        size += len(item) + 1
    if parts:
        yield head + b",".join(parts) + tail, len(parts)
