"""An ingest request body as rows, in about one pass in C per batch.

msgspec decodes the JSON straight into ``_Event`` structs whose types say what
``export.events.validate_event`` says in code: the same fields, required or not, the same
patterns, non-empty texts, finite non-negative metrics. A second, shallow decode cuts out
each event's own text, stored as its body. What a type cannot say (only ``error_type`` is
text, ``chunk_index`` is whole, the date exists) is checked as each row is built.

Whatever this fast path refuses goes through ``ingest.check_batch``, the contract in code,
which answers with its error (400 naming the event and field, 413), or with the checked
events should it accept what the types did not: a bad batch is refused exactly as the
receiver refuses it, and nothing of it is stored.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from octomil_otel import ingest
from octomil_otel.dashboard.model import Row
from octomil_otel.export._transport import MAX_BATCH_EVENTS
from octomil_otel.export.events import (
    CHUNK_PRODUCED,
    GENERATION_COMPLETED,
    GENERATION_FAILED,
    GENERATION_STARTED,
    HEX_PATTERN,
    MAX_CHUNK_INDEX,
    REQUEST_ID_PATTERN,
    TIMESTAMP_PATTERN,
    is_unicode,
    parse_timestamp,
)

_Text = Annotated[str, Meta(min_length=1)]
_Hex = Annotated[str, Meta(pattern=HEX_PATTERN)]
# finite: JSON has no Infinity, and a number beyond the largest double is out of range
_Number = Annotated[float, Meta(ge=0, le=sys.float_info.max)]


class _Event(Struct, forbid_unknown_fields=True):
    event_type: Literal[GENERATION_STARTED, CHUNK_PRODUCED, GENERATION_COMPLETED, GENERATION_FAILED]
    timestamp: Annotated[str, Meta(pattern=TIMESTAMP_PATTERN)]
    device_id: _Text
    model: _Text
    engine: _Text
    org_id: _Text | UnsetType = UNSET
    request_id: Annotated[str, Meta(pattern=REQUEST_ID_PATTERN)] | UnsetType = UNSET
    stream: bool | UnsetType = UNSET
    metrics: dict[str, _Number | _Text] | UnsetType = UNSET
    trace_id: _Hex | UnsetType = UNSET
    span_id: _Hex | UnsetType = UNSET


class _Batch(Struct):
    events: Annotated[list[_Event], Meta(max_length=MAX_BATCH_EVENTS)]


class _Texts(Struct):
    events: list[Raw]


_BATCH = msgspec.json.Decoder(_Batch)
_TEXTS = msgspec.json.Decoder(_Texts)


class _Refused(ValueError):
    """Let through by the types, not by the contract."""


def rows_of(raw: bytes, content_encoding: str | None, org_id: str) -> list[Row]:
    """The rows of one request body for ``org_id``, or an ``ingest.BatchError``."""
    text = ingest.uncompressed(raw, content_encoding)
    try:
        pairs = zip(_BATCH.decode(text).events, _TEXTS.decode(text).events, strict=True)
        return [_fast_row(org_id, event, bytes(body).decode()) for event, body in pairs]
    except (msgspec.DecodeError, ValueError):  # ValueError: _Refused, a date that does not exist
        return [row_of(org_id, event) for event in ingest.check_batch(text)]


def row_of(org_id: str, event: dict[str, Any]) -> Row:
    """The row of an event that ``ingest.check_batch`` accepted, stored for ``org_id``."""
    return _row(
        org_id, event["event_type"], event["timestamp"], event["device_id"], event["model"],
        event["engine"], event.get("request_id"), event.get("stream"),
        event.get("metrics") or {}, json.dumps(event, separators=(",", ":")),
    )  # fmt: skip


def _fast_row(org_id: str, event: _Event, body: str) -> Row:
    metrics = event.metrics or {}
    for name, value in metrics.items():
        if (value.__class__ is str) is not (name == "error_type"):
            raise _Refused(name)
    texts = (event.model, event.engine, event.device_id, metrics.get("error_type", ""))
    if not "".join(texts).isascii() and not all(map(is_unicode, texts)):  # type: ignore[arg-type]
        raise _Refused("text")
    index = metrics.get("chunk_index")
    if index is not None and not (index.is_integer() and index < MAX_CHUNK_INDEX):
        raise _Refused("chunk_index")
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
