"""What the dashboard stores and asks, whatever the database.

An event becomes one ``Row``: the fields every query filters or aggregates on, as columns,
and the whole event as JSON. ``Filters`` is what every query takes; ``Store`` is what a
database backend implements (``sqlite.py``, ``clickhouse.py``).
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

PERCENTILES = (50, 90, 99)
"""Nearest rank: the value at position ceil(p * n / 100) of the n sorted values."""
TTFC_BOUNDS_MS = (50, 100, 200, 400, 800, 1600, 3200, 6400)
"""Upper bounds of the TTFC distribution's buckets; one more bucket holds the rest."""


@dataclass(frozen=True)
class Row:
    org_id: str
    event_type: str
    ts: int  # ms since the epoch, UTC
    device_id: str
    model: str
    engine: str
    request_id: str | None
    chunk_index: int  # -1 when the event is not a chunk
    stream: bool | None
    ttfc_ms: float | None
    throughput_tok_s: float | None
    total_duration_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    error_type: str | None
    body: str  # the whole event, as received


def to_row(org_id: str, event: dict[str, Any]) -> Row:
    """A checked event (see ``export.events.validate_event``) as a row of ``org_id``."""
    metrics = event.get("metrics") or {}
    stamp = event["timestamp"]
    seconds = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    return Row(
        org_id=org_id,
        event_type=event["event_type"],
        ts=seconds * 1000 + int(stamp[20:23]),
        device_id=event["device_id"],
        model=event["model"],
        engine=event["engine"],
        request_id=event.get("request_id"),
        chunk_index=int(metrics.get("chunk_index", -1)),
        stream=event.get("stream"),
        ttfc_ms=metrics.get("ttfc_ms"),
        throughput_tok_s=metrics.get("throughput_tok_s"),
        total_duration_ms=metrics.get("total_duration_ms"),
        input_tokens=metrics.get("input_tokens"),
        output_tokens=metrics.get("output_tokens"),
        error_type=metrics.get("error_type"),
        body=json.dumps({**event, "org_id": org_id}, separators=(",", ":")),
    )


@dataclass(frozen=True)
class Filters:
    """Every query's scope: an org, a time range [start, end) in ms, and optional matches."""

    org_id: str
    start: int
    end: int
    model: str | None = None
    engine: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class Key:
    key_id: str
    org_id: str
    name: str
    created: int
    revoked: bool


class Store(Protocol):
    """A database behind the dashboard. Every method is safe to call from any thread."""

    def create_org(self, name: str) -> str: ...
    def create_key(self, org_id: str, name: str) -> tuple[str, str]:
        """A new key of ``org_id``: (key_id, the key itself, shown once; stored hashed)."""
        ...

    def list_keys(self) -> list[Key]: ...
    def revoke_key(self, key_id: str) -> bool: ...
    def org_of(self, key: str) -> str | None: ...
    def has_orgs(self) -> bool: ...
    def insert(self, rows: list[Row]) -> int:
        """Store the rows whole or not at all; rows already stored (same org, request id,
        event type and chunk index) are skipped. Returns how many were new."""
        ...

    def ttfc(self, filters: Filters, step_ms: int) -> dict[str, Any]: ...
    def throughput(self, filters: Filters, step_ms: int) -> dict[str, Any]: ...
    def volume(self, filters: Filters, step_ms: int) -> dict[str, Any]: ...
    def devices(self, filters: Filters) -> dict[str, Any]: ...
    def dimensions(self, filters: Filters) -> dict[str, Any]: ...
    def close(self) -> None: ...
