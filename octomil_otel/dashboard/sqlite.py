"""The dashboard's store in one SQLite file (WAL mode): nothing to run, nothing to set up."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from octomil_otel.dashboard import keys as keymaker
from octomil_otel.dashboard.model import PERCENTILES, TTFC_BOUNDS_MS, Filters, Key, Row
from octomil_otel.dashboard.results import devices, throughput, ttfc, volume

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orgs (org_id TEXT PRIMARY KEY, name TEXT NOT NULL, created INTEGER);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY, key_hash TEXT UNIQUE NOT NULL, org_id TEXT NOT NULL,
    name TEXT NOT NULL, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    org_id TEXT NOT NULL, event_type TEXT NOT NULL, ts INTEGER NOT NULL,
    device_id TEXT NOT NULL, model TEXT NOT NULL, engine TEXT NOT NULL,
    request_id TEXT, chunk_index INTEGER NOT NULL, stream INTEGER,
    ttfc_ms REAL, throughput_tok_s REAL, total_duration_ms REAL,
    input_tokens INTEGER, output_tokens INTEGER, error_type TEXT, body TEXT NOT NULL,
    UNIQUE (org_id, request_id, event_type, chunk_index)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (org_id, event_type, ts);
"""
_COLUMNS = (
    "org_id, event_type, ts, device_id, model, engine, request_id, chunk_index, stream, "
    "ttfc_ms, throughput_tok_s, total_duration_ms, input_tokens, output_tokens, error_type, body"
)
_ENDS = "('generation_completed', 'generation_failed')"
_VALUES = attrgetter(*(f.name for f in fields(Row)))  # a Row as a tuple, without deep copies


class SQLiteStore:
    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- orgs and keys -----------------------------------------------------------------

    def create_org(self, name: str) -> str:
        org_id = keymaker.new_org_id()
        with self._lock:
            self._db.execute("INSERT INTO orgs VALUES (?, ?, ?)", (org_id, name, int(time.time())))
        return org_id

    def create_key(self, org_id: str, name: str) -> tuple[str, str]:
        key_id, key = keymaker.new_key()
        with self._lock:
            if not self._db.execute("SELECT 1 FROM orgs WHERE org_id = ?", (org_id,)).fetchone():
                raise ValueError(f"no org {org_id!r}")
            self._db.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, 0)",
                (key_id, keymaker.digest(key), org_id, name, int(time.time())),
            )
        return key_id, key

    def list_keys(self) -> list[Key]:
        rows = self._all(
            "SELECT key_id, org_id, name, created, revoked FROM keys ORDER BY created, key_id"
        )
        return [Key(k, o, n, c, bool(r)) for k, o, n, c, r in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE keys SET revoked = 1 WHERE key_id = ? AND revoked = 0", (key_id,)
            )
        return cursor.rowcount == 1

    def org_of(self, key: str) -> str | None:
        rows = self._all(
            "SELECT org_id FROM keys WHERE key_hash = ? AND revoked = 0", (keymaker.digest(key),)
        )
        return rows[0][0] if rows else None

    def has_orgs(self) -> bool:
        return bool(self._all("SELECT 1 FROM orgs LIMIT 1"))

    # --- events ------------------------------------------------------------------------

    def insert(self, rows: list[Row]) -> int:
        placeholders = ", ".join("?" * 16)
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES ({placeholders})",
                    [_VALUES(row) for row in rows],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    # --- queries -----------------------------------------------------------------------

    def ttfc(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        where, params = _where(
            filters, "event_type = 'generation_completed'", "ttfc_ms IS NOT NULL"
        )
        buckets = self._percentiles(f"(ts / {step_ms}) * {step_ms}", "ttfc_ms", where, params)
        cases = ", ".join(f"SUM(ttfc_ms <= {b})" for b in TTFC_BOUNDS_MS)
        cumulative = self._all(f"SELECT COUNT(*), {cases} FROM events WHERE {where}", params)[0]
        return ttfc(buckets, [int(c or 0) for c in cumulative])

    def throughput(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        where, params = _where(
            filters, "event_type = 'generation_completed'", "throughput_tok_s IS NOT NULL"
        )
        rows = self._all(
            f"SELECT model, engine, (ts / {step_ms}) * {step_ms}, COUNT(*), SUM(throughput_tok_s),"
            f" SUM(output_tokens) FROM events WHERE {where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            params,
        )
        return throughput(rows)

    def volume(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        where, params = _where(filters, f"event_type IN {_ENDS}")
        rows = self._all(
            f"SELECT (ts / {step_ms}) * {step_ms}, COUNT(*),"
            " SUM(event_type = 'generation_failed' AND error_type IS NOT 'cancelled'),"
            " SUM(event_type = 'generation_failed' AND error_type IS 'cancelled')"
            f" FROM events WHERE {where} GROUP BY 1 ORDER BY 1",
            params,
        )
        return volume(rows)

    def devices(self, filters: Filters) -> dict[str, Any]:
        where, params = _where(filters, f"event_type IN {_ENDS}")
        counts = self._all(
            "SELECT device_id, COUNT(*),"
            " SUM(event_type = 'generation_failed' AND error_type IS NOT 'cancelled'),"
            " SUM(event_type = 'generation_failed' AND error_type IS 'cancelled'),"
            " SUM(throughput_tok_s), COUNT(throughput_tok_s), MAX(ts)"
            f" FROM events WHERE {where} GROUP BY 1 ORDER BY 1",
            params,
        )
        where, params = _where(
            filters, "event_type = 'generation_completed'", "ttfc_ms IS NOT NULL"
        )
        percentiles = self._percentiles("device_id", "ttfc_ms", where, params)
        return devices(counts, percentiles)

    def dimensions(self, filters: Filters) -> dict[str, Any]:
        scope = Filters(filters.org_id, filters.start, filters.end)
        where, params = _where(scope, f"event_type IN {_ENDS}")
        out: dict[str, Any] = {}
        for name, column in (("models", "model"), ("engines", "engine"), ("devices", "device_id")):
            rows = self._all(
                f"SELECT DISTINCT {column} FROM events WHERE {where} ORDER BY 1", params
            )
            out[name] = [r[0] for r in rows]
        return out

    def _percentiles(
        self, group: str, value: str, where: str, params: list[Any]
    ) -> list[tuple[Any, ...]]:
        """(group, count, p50, p90, p99) by nearest rank, computed in the database."""
        picks = ", ".join(
            f"MAX(CASE WHEN rn = ({p} * n + 99) / 100 THEN v END)" for p in PERCENTILES
        )
        return self._all(
            f"WITH ranked AS (SELECT {group} AS g, {value} AS v,"
            f" ROW_NUMBER() OVER (PARTITION BY {group} ORDER BY {value}) AS rn,"
            f" COUNT(*) OVER (PARTITION BY {group}) AS n FROM events WHERE {where})"
            f" SELECT g, MAX(n), {picks} FROM ranked GROUP BY g ORDER BY g",
            params,
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _where(filters: Filters, *conditions: str) -> tuple[str, list[Any]]:
    clauses = ["org_id = ?", "ts >= ?", "ts < ?", *conditions]
    params: list[Any] = [filters.org_id, filters.start, filters.end]
    for column, value in (
        ("model", filters.model),
        ("engine", filters.engine),
        ("device_id", filters.device_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(clauses), params
