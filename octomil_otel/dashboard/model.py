"""What the dashboard stores and asks, whatever the database.

An event becomes one ``Row``: the fields every query filters or aggregates on, as columns,
and the whole event as JSON. ``Filters`` is what every query takes; ``Store`` is what a
database backend implements (``sqlite.py``, ``clickhouse.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

PERCENTILES = (50, 90, 99)
"""Nearest rank: the value at position ceil(p * n / 100) of the n sorted values."""
TTFC_BOUNDS_MS = (50, 100, 200, 400, 800, 1600, 3200, 6400)
"""Upper bounds of the TTFC distribution's buckets; one more bucket holds the rest."""
HOUR_MS = 3_600_000


PHASES = ("queue_ms", "prefill_ms", "decode_ms")
"""Where a request's time went (``octomil-api.md``'s extra metrics), each a column."""
COLUMNS = [
    "org_id", "event_type",
    "ts",  # ms since the epoch, UTC
    "device_id", "model", "engine", "request_id",
    "chunk_index",  # -1 when the event is not a chunk
    "stream", "ttfc_ms", "throughput_tok_s", "total_duration_ms", "input_tokens",
    "output_tokens", "error_type",
    *PHASES,
    "body",  # the event's JSON as received: an org_id in it is the sender's, not the row's
]  # fmt: skip
Row = tuple[
    str, str, int, str, str, str, str | None, int, bool | None, float | None, float | None,
    float | None, float | None, float | None, str | None, float | None, float | None,
    float | None, str,
]  # fmt: skip
"""The values of ``COLUMNS``: a plain tuple, as ``executemany`` takes it (a named tuple
costs a microsecond more per event to make, a tenth of what ingest takes)."""


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
    def insert(self, rows: list[Row]) -> None:
        """Store the rows whole or not at all. An event stored before (same org, request
        id, event type and chunk index) is counted once, however often it arrives."""
        ...

    def drop_before(self, cutoff_ms: int) -> None:
        """Delete the events before the start of the hour ``cutoff_ms`` is in (whole hours:
        what sums them up goes with them)."""
        ...

    def ttfc(self, filters: Filters, step_ms: int) -> dict[str, Any]: ...
    def throughput(self, filters: Filters, step_ms: int) -> dict[str, Any]: ...
    def volume(self, filters: Filters, step_ms: int) -> dict[str, Any]: ...
    def devices(self, filters: Filters) -> dict[str, Any]: ...
    def phases(self, filters: Filters) -> dict[str, Any]:
        """Per model and engine, where a request's time went, on average."""
        ...

    def dimensions(self, filters: Filters) -> dict[str, Any]: ...
    def requests(self, filters: Filters, status: str | None, limit: int) -> dict[str, Any]:
        """The ``limit`` requests that ended last in the range, newest first."""
        ...

    def request(self, org_id: str, request_id: str) -> dict[str, Any] | None:
        """One request of ``org_id``: its ending, metrics and chunks; None if unknown."""
        ...

    def close(self) -> None: ...
