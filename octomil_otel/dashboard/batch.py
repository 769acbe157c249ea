"""An ingest request body as rows, in about one pass in C per batch.

``ingest.typed_events`` decodes and checks the events; a second, shallow decode cuts out
each event's own text, stored as its body. Whatever the fast path refuses goes through
``ingest.check_batch``, which answers with its error (400 naming the event and field,
413), or with the checked events should it accept what the types did not: a bad batch is
refused exactly as the receiver refuses it, and nothing of it is stored.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from msgspec import UNSET, Raw, Struct

from octomil_otel import ingest
from octomil_otel.dashboard.model import Row
from octomil_otel.export.events import parse_timestamp


class _Texts(Struct):
    events: list[Raw]


_TEXTS = msgspec.json.Decoder(_Texts)


def rows_of(raw: bytes, content_encoding: str | None, org_id: str) -> list[Row]:
    """The rows of one request body for ``org_id``, or an ``ingest.BatchError``."""
    text = ingest.uncompressed(raw, content_encoding)
    try:
        pairs = zip(ingest.typed_events(text), _TEXTS.decode(text).events, strict=True)
        return [_fast_row(org_id, event, bytes(body).decode()) for event, body in pairs]
    except (msgspec.DecodeError, ValueError):  # the contract in code answers
        return [row_of(org_id, event) for event in ingest.check_batch(text)]


def row_of(org_id: str, event: dict[str, Any]) -> Row:
    """The row of an event that ``ingest.check_batch`` accepted, stored for ``org_id``: its
    numbers as doubles, as the fast path reads them (an int beyond 64 bits fits no column)."""
    metrics = {
        name: value if isinstance(value, str) else float(value)
        for name, value in (event.get("metrics") or {}).items()
    }
    return _row(
        org_id, event["event_type"], event["timestamp"], event["device_id"], event["model"],
        event["engine"], event.get("request_id"), event.get("stream"), metrics,
        json.dumps(event, separators=(",", ":")),
    )  # fmt: skip


def _fast_row(org_id: str, event: ingest.Event, body: str) -> Row:
    metrics = event.metrics or {}
    stream = None if event.stream is UNSET else event.stream
    return _row(
        org_id, event.event_type, event.timestamp, event.device_id, event.model, event.engine,
        event.request_id or None, stream, metrics, body,
    )  # fmt: skip


def _row(
    org_id: str,
    event_type: str,
    timestamp: str,
    device_id: str,
    model: str,
    engine: str,
    request_id: str | None,
    stream: bool | None,
    metrics: dict[str, Any],
    body: str,
) -> Row:
    get = metrics.get
    return (
        org_id, event_type, parse_timestamp(timestamp), device_id, model, engine, request_id,
        int(get("chunk_index", -1)), stream, get("ttfc_ms"), get("throughput_tok_s"),
        get("total_duration_ms"), get("input_tokens"), get("output_tokens"), get("error_type"),
        get("queue_ms"), get("prefill_ms"), get("decode_ms"), body,
    )  # fmt: skip
