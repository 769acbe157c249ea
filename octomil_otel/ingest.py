"""The server side of ``POST /api/v1/telemetry/events``: one batch, checked whole.

Shared by the minimal receiver and the dashboard, so both answer exactly as the contract
says: 413 over 1 MiB uncompressed or 1,000 events; 400 naming the event and field.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from octomil_otel.export._transport import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from octomil_otel.export.events import validate_event

_REQUIRED = ("timestamp", "device_id")


class BatchError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_batch(raw: bytes, content_encoding: str | None) -> list[dict[str, Any]]:
    """The checked events of one request body, or a ``BatchError`` with its HTTP status."""
    return check_batch(uncompressed(raw, content_encoding))


def uncompressed(raw: bytes, content_encoding: str | None) -> bytes:
    """The body as JSON text, at most 1 MiB of it, or a ``BatchError``."""
    coding = (content_encoding or "").strip().lower()  # content codings ignore case
    if coding == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:  # at most one byte past the limit: enough to answer 413
            raw = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
        except zlib.error:
            raise BatchError(400, "the body is not gzip") from None
        if inflater.unused_data and len(raw) <= MAX_BATCH_BYTES:  # one member, one batch
            raise BatchError(400, "the body holds more than one gzip member")
    elif coding not in ("", "identity"):
        raise BatchError(400, f"unsupported Content-Encoding {content_encoding!r}")
    if len(raw) > MAX_BATCH_BYTES:
        raise BatchError(413, "the body is over 1 MiB")
    return raw


def check_batch(text: bytes) -> list[dict[str, Any]]:
    """The checked events of an uncompressed body, or a ``BatchError``."""
    try:
        batch = json.loads(text)
    except ValueError as error:
        raise BatchError(400, f"the body is not JSON: {error}") from None
    events = batch.get("events") if isinstance(batch, dict) else None
    if not isinstance(events, list):
        raise BatchError(400, 'the body must be {"events": [...]}')
    if len(events) > MAX_BATCH_EVENTS:
        raise BatchError(413, f"{len(events)} events: at most {MAX_BATCH_EVENTS} per request")
    checked = []
    for index, event in enumerate(events):
        try:
            event = validate_event(event)
            for name in _REQUIRED:
                if name not in event:
                    raise ValueError(f"{name} is required")
        except (TypeError, ValueError) as error:
            raise BatchError(400, f"events[{index}]: {error}") from None
        checked.append(event)
    return checked
