"""The server side of ``POST /api/v1/telemetry/events``: one batch, checked whole.

Shared by the minimal receiver and the dashboard, so both answer exactly as the contract
says: 413 over 1 MiB uncompressed or 1,000 events; 400 naming the event and field.

A batch is checked in about one pass in C: msgspec decodes it into ``Event`` structs whose
types say most of what ``export.events.validate_event`` says in code (the same fields,
required or not, non-empty texts, finite non-negative metrics). The rest is checked over
the whole batch by C-level maps, the patterns included: a request's events share its id
and mostly one second, so each id and each second is matched once, not once per event.
Whatever that refuses goes through ``validate_event``, the contract in code, which answers
with its error; a bad batch is refused whole. An accepted batch (``Batch``) keeps the text
of its events and decodes them when asked.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import operator
import re
import sys
import zlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from octomil_otel.export._transport import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from octomil_otel.export.events import (
    CHUNK_PRODUCED,
    DEVICE_ID_PATTERN,
    GENERATION_COMPLETED,
    GENERATION_FAILED,
    GENERATION_STARTED,
    HEX_PATTERN,
    MAX_CHUNK_INDEX,
    MILLISECOND_SUFFIXES,
    REQUEST_ID_PATTERN,
    SECOND_PATTERN,
    WHOLE_METRICS,
    parse_timestamp,
    validate_event,
)

_REQUIRED = ("timestamp", "device_id")
MAX_BODY_BYTES = MAX_BATCH_BYTES + 64 * 1024
"""A longer body is refused unread: gzip's framing adds well under 64 KiB to a 1 MiB batch."""
_Text = Annotated[str, Meta(min_length=1)]
_Hex = Annotated[str, Meta(pattern=HEX_PATTERN)]
# finite: JSON has no Infinity, and a number beyond the largest double is out of range
_Number = Annotated[float, Meta(ge=0, le=sys.float_info.max)]
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_SECOND = re.compile(SECOND_PATTERN + r"\Z")
_MILLISECONDS = frozenset(MILLISECOND_SUFFIXES)


class Event(Struct, forbid_unknown_fields=True):
    """One stored event as its types check it (``typed_events``)."""

    event_type: Literal[GENERATION_STARTED, CHUNK_PRODUCED, GENERATION_COMPLETED, GENERATION_FAILED]
    timestamp: str  # its pattern: _check
    device_id: Annotated[str, Meta(pattern=DEVICE_ID_PATTERN)]
    model: _Text
    engine: _Text
    org_id: _Text | UnsetType = UNSET
    request_id: str | UnsetType = UNSET  # its pattern: _check
    stream: bool | UnsetType = UNSET
    metrics: dict[str, _Number | _Text] | UnsetType = UNSET
    trace_id: _Hex | UnsetType = UNSET
    span_id: _Hex | UnsetType = UNSET


class _Typed(Struct):
    events: Annotated[list[Event], Meta(max_length=MAX_BATCH_EVENTS)]


class _EventsText(Struct):
    events: msgspec.Raw


_TYPED = msgspec.json.Decoder(_Typed)
_EVENTS_TEXT = msgspec.json.Decoder(_EventsText)
_DICTS = msgspec.json.Decoder(list[dict[str, Any]])


class BatchError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Refused(ValueError):
    """Let through by the types, not by the contract."""


def parse_batch(raw: bytes, content_encoding: str | None) -> Batch:
    """The batch of one request body, or a ``BatchError`` with its HTTP status."""
    return accept_batch(uncompressed(raw, content_encoding))


def check_length(content_length: str | None) -> int:
    """The body's declared size in bytes, checked before it is read: ``BatchError`` 400
    for a ``Content-Length`` that is not a whole number, 413 for a body longer than any
    gzip of a 1 MiB batch can be (``MAX_BODY_BYTES``)."""
    text = (content_length or "0").strip()
    if not (text.isascii() and text.isdigit()):
        raise BatchError(400, f"Content-Length must be a whole number, got {content_length!r}")
    digits = text.lstrip("0") or "0"  # as many zeros in front as a client likes
    if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:
        raise BatchError(413, "the body is over 1 MiB")
    return int(digits)


def uncompressed(raw: bytes, content_encoding: str | None) -> bytes:
    """The body as JSON text, at most 1 MiB of it, or a ``BatchError``."""
    coding = (content_encoding or "").strip().lower()  # content codings ignore case
    if coding in ("gzip", "x-gzip"):  # the same coding (RFC 9110)
        inflater = zlib.decompressobj(wbits=31)
        try:  # at most one byte past the limit: enough to answer 413
            raw = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
        except zlib.error:
            raise BatchError(400, "the body is not gzip") from None
        if len(raw) <= MAX_BATCH_BYTES:  # whole: not cut short, one member, one batch
            if not inflater.eof:
                raise BatchError(400, "the body is not gzip: it is cut short")
            if inflater.unused_data:
                raise BatchError(400, "the body holds more than one gzip member, or bytes after it")
    elif coding not in ("", "identity"):
        raise BatchError(400, f"unsupported Content-Encoding {content_encoding!r}")
    if len(raw) > MAX_BATCH_BYTES:
        raise BatchError(413, "the body is over 1 MiB")
    return raw


def typed_events(text: bytes) -> list[Event]:
    """The events of an uncompressed body that the contract accepts, as structs.

    Raises:
        msgspec.DecodeError, ValueError: the body may break the contract.
    """
    if not text.isascii():
        text.decode()  # UnicodeDecodeError: msgspec does not read a field it skips
    try:
        events = _TYPED.decode(text).events
    except RecursionError:  # even in a field it skips
        raise _Refused("nesting") from None
    _check(events)
    return events


def _check(events: list[Event]) -> None:
    """What the types cannot say, by C-level ``map``s over the batch where it can: its
    events share few request ids and seconds, each matched once here.

    Every text is Unicode already: msgspec refuses a lone surrogate and invalid UTF-8.
    """
    timestamps = list(map(_TIMESTAMP_OF, events))
    if not _MILLISECONDS.issuperset(map(_MILLISECOND_OF, timestamps)):
        raise _Refused("timestamp")
    if not all(map(_is_second, set(map(_SECOND_OF, timestamps)))):
        raise _Refused("timestamp")
    request_ids = set(map(_REQUEST_ID_OF, events))
    request_ids.discard(UNSET)  # type: ignore[arg-type]
    if not all(map(_REQUEST_ID.match, request_ids)):
        raise _Refused("request_id")
    all_metrics = list(filter(None, map(_METRICS_OF, events)))
    values = itertools.chain.from_iterable(map(dict.values, all_metrics))
    if any(map(operator.contains, all_metrics, _ERROR_TYPE)) or str in map(type, values):
        for name, value in itertools.chain.from_iterable(map(dict.items, all_metrics)):
            if (value.__class__ is str) is not (name == "error_type"):
                raise _Refused(name)  # only error_type is text, and it is
    for name in WHOLE_METRICS:
        counts = list(filter(_IS_NOT_NONE, map(dict.get, all_metrics, itertools.repeat(name))))
        if counts and not (all(map(float.is_integer, counts)) and max(counts) < MAX_CHUNK_INDEX):
            raise _Refused(name)


_TIMESTAMP_OF = operator.attrgetter("timestamp")
_REQUEST_ID_OF = operator.attrgetter("request_id")
_METRICS_OF = operator.attrgetter("metrics")
_SECOND_OF = operator.itemgetter(slice(None, 19))
_MILLISECOND_OF = operator.itemgetter(slice(19, None))
_ERROR_TYPE = itertools.repeat("error_type")
_IS_NOT_NONE = functools.partial(operator.is_not, None)


@functools.lru_cache(maxsize=4096)
def _is_second(text: str) -> bool:
    """Whether ``text`` is a timestamp's date and time of day that exists (no 2026-02-30,
    no 25:00), to the second."""
    if _SECOND.match(text) is None:
        return False
    try:
        parse_timestamp(text + MILLISECOND_SUFFIXES[0])
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch the contract accepts: ``count`` events, decoded by ``events()`` when wanted.

    Held as the text of its events, a batch is one object for the garbage collector to
    walk, not two per event (a receiver that keeps what it accepts spent a third of its
    time there).
    """

    count: int
    text: msgspec.Raw | None = None  # the events' array, accepted by the fast path
    checked: list[dict[str, Any]] | None = None  # accepted by the contract in code

    def events(self) -> list[dict[str, Any]]:
        """A dict per event, as ``validate_event`` returns them (numbers as JSON wrote
        them): fresh on each call."""
        if self.checked is not None:
            return copy.deepcopy(self.checked)
        return _DICTS.decode(self.text)  # type: ignore[arg-type]


def accept_batch(text: bytes) -> Batch:
    """The batch of an uncompressed body, or a ``BatchError``. Whatever in the body could
    fail to decode (nesting too deep for the stack) fails here, not in ``events()``."""
    text = bytes(text)  # a caller's bytearray may change later
    try:
        count = len(typed_events(text))
        return Batch(count, text=_EVENTS_TEXT.decode(text).events)
    except (msgspec.DecodeError, ValueError):
        checked = _check_in_code(text)
        return Batch(len(checked), checked=checked)


def check_batch(text: bytes) -> list[dict[str, Any]]:
    """The checked events of an uncompressed body, as ``validate_event`` returns them (a
    dict each, numbers as JSON wrote them), or a ``BatchError``."""
    return accept_batch(text).events()


def _check_in_code(text: bytes) -> list[dict[str, Any]]:
    """``check_batch`` by ``validate_event``, one event at a time: its errors name the
    event and the field."""
    try:
        batch = json.loads(text)
    except ValueError as error:
        raise BatchError(400, f"the body is not JSON: {error}") from None
    except RecursionError:  # no event nests deeper than its metrics
        raise BatchError(400, "the body nests too deeply to be a batch of events") from None
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
