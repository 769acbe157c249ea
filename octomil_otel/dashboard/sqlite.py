"""The dashboard's store in one SQLite file (WAL mode): nothing to run, nothing to set up.

Written for ingest: besides the table, an event writes one index entry (its identity,
which makes a second delivery a no-op and finds a request's events), and an ending event
also a covering index entry and its rollups (``rollups.py``). The views and the request
list read those; only one request's detail reads the table.
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from octomil_otel.dashboard import facts, results, rollups
from octomil_otel.dashboard import keys as keymaker
from octomil_otel.dashboard.model import (
    COLUMNS,
    HOUR_MS,
    PHASES,
    TTFC_BOUNDS_MS,
    Filters,
    Key,
    Row,
)
from octomil_otel.dashboard.queries import Params, Rows, SQLQueries, within

SCHEMA_VERSION = 2
"""``PRAGMA user_version``: 0 for a file made before rollups (or a new one), 1 before the
time split's columns; an older file is migrated."""
_TABLES = (
    """CREATE TABLE IF NOT EXISTS orgs (
        org_id TEXT PRIMARY KEY, name TEXT NOT NULL, created INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS keys (
        key_id TEXT PRIMARY KEY, key_hash TEXT UNIQUE NOT NULL, org_id TEXT NOT NULL,
        name TEXT NOT NULL, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        org_id TEXT NOT NULL, event_type TEXT NOT NULL, ts INTEGER NOT NULL,
        device_id TEXT NOT NULL, model TEXT NOT NULL, engine TEXT NOT NULL,
        request_id TEXT, chunk_index INTEGER NOT NULL, stream INTEGER,
        ttfc_ms REAL, throughput_tok_s REAL, total_duration_ms REAL,
        input_tokens INTEGER, output_tokens INTEGER, error_type TEXT,
        queue_ms REAL, prefill_ms REAL, decode_ms REAL, body TEXT NOT NULL,
        UNIQUE (org_id, request_id, event_type, chunk_index)
    )""",
    "DROP INDEX IF EXISTS events_by_time",  # every event's; the views need only the endings'
)
_INDEXES = (
    "DROP INDEX IF EXISTS events_ended",  # an older file's has fewer columns
    # the views, the percentiles and the request list read only this (a partial index is
    # used by queries whose WHERE has its WHERE, as facts.ENDS, word for word); the time
    # split's columns are left out: the rollups sum them, and each column here costs ingest
    f"""CREATE INDEX events_ended ON events (
        org_id, ts, event_type, error_type, model, engine, device_id, ttfc_ms,
        throughput_tok_s, output_tokens, request_id
    ) WHERE {facts.ENDS}""",
)
_INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT DO NOTHING"
)
_DELETE_BATCH = 20_000
"""Events deleted per transaction when old ones are dropped: ingest waits for one only."""
CHECKPOINT_PAGES = 40_000
"""The write-ahead log is copied into the file (and both synced) when it holds this many
pages (160 MB on disk while the store is open): a fortieth as often as SQLite's default.
Ingest writes index pages all over the file (request ids are random); the longer the log,
the more often a page is written twice before it is copied once. 100,000 events inserted
onto a million, 500 a transaction: 12.8 us an event at 10,000 pages, 11.3 at 40,000, 8.4
with no checkpoint at all. (A thread of its own could not keep up: the log never emptied.)"""


class SQLiteStore(SQLQueries):
    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            with self._transaction():
                (version,) = self._db.execute("PRAGMA user_version").fetchone()
                if version < SCHEMA_VERSION:
                    for statement in _TABLES:
                        self._db.execute(statement)
                    for statement in (*self._phase_columns(), *_INDEXES, *rollups.rebuild()):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _phase_columns(self) -> list[str]:
        """The time split's columns, for a file made before them: added, and filled from
        the events' own text."""
        present = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        statements = []
        for phase in PHASES:
            if phase not in present:
                statements += [
                    f"ALTER TABLE events ADD COLUMN {phase} REAL",
                    f"UPDATE events SET {phase} = json_extract(body, '$.metrics.{phase}')"
                    f" WHERE {facts.ENDS}",
                ]
        return statements

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; the caller holds the lock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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
        rows = self._rows(
            "SELECT key_id, org_id, name, created, revoked FROM keys ORDER BY created, key_id", {}
        )
        return [Key(k, o, n, c, bool(r)) for k, o, n, c, r in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE keys SET revoked = 1 WHERE key_id = ? AND revoked = 0", (key_id,)
            )
        return cursor.rowcount == 1

    def org_of(self, key: str) -> str | None:
        rows = self._rows(
            "SELECT org_id FROM keys WHERE key_hash = :hash AND revoked = 0",
            {"hash": keymaker.digest(key)},
        )
        return rows[0][0] if rows else None

    def has_orgs(self) -> bool:
        return bool(self._rows("SELECT 1 FROM orgs LIMIT 1", {}))

    # --- events ------------------------------------------------------------------------

    def insert(self, rows: list[Row]) -> None:
        with self._lock, self._transaction():
            self._db.executemany(_INSERT, rows)

    def drop_before(self, cutoff_ms: int) -> None:
        cutoff = cutoff_ms // HOUR_MS * HOUR_MS
        deleted = _DELETE_BATCH
        while deleted == _DELETE_BATCH:
            with self._lock, self._transaction():
                deleted = self._db.execute(
                    "DELETE FROM events WHERE rowid IN"
                    " (SELECT rowid FROM events WHERE ts < ? LIMIT ?)",
                    (cutoff, _DELETE_BATCH),
                ).rowcount
                if deleted < _DELETE_BATCH:  # the last events: their sums go with them
                    for rollup in rollups.ROLLUPS:
                        self._db.execute(f"DELETE FROM {rollup.table} WHERE start < ?", (cutoff,))

    # --- what the queries need ---------------------------------------------------------

    def _rows(self, sql: str, params: Params) -> Rows:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _param(self, name: str, kind: str) -> str:
        return f":{name}"

    def _int_div(self, a: str, b: str) -> str:
        return f"(({a}) / ({b}))"  # integers: SQLite divides them as integers

    def _facts(self, filters: Filters, step_ms: int | None) -> tuple[str, Params]:
        """Whole hours or minutes from a rollup, the rest of the range from the events."""
        rollup = rollups.rollup_for(filters, step_ms)
        if rollup is None:
            return super()._facts(filters, step_ms)
        grain = rollup.grain_ms
        first, last = -(-filters.start // grain) * grain, filters.end // grain * grain
        if first >= last:
            return super()._facts(filters, step_ms)
        where, params = self._match(within(filters, first, last), "start", tag="_rolled")
        arms = [rollups.arm(rollup, where)]
        for tag, start, end in (("_before", filters.start, first), ("_after", last, filters.end)):
            if start < end:
                where, more = self._match(within(filters, start, end), "ts", facts.ENDS, tag=tag)
                arms.append(facts.of_events("events", where))
                params.update(more)
        return f"({' UNION ALL '.join(arms)})", params

    def _percentiles(self, group: str, value: str, where: str, params: Params) -> Rows:
        return [
            (key, len(numbers), *results.nearest_ranks(numbers))
            for key, numbers in self._sorted_values(group, value, where, params).items()
        ]

    def _ttfc_summary(self, where: str, params: Params, step_ms: int) -> tuple[Rows, list[int]]:
        """The distribution counted from the values the percentiles read anyway."""
        values = self._sorted_values(self._bucket(), "ttfc_ms", where, {**params, "step": step_ms})
        cumulative = [sum(map(len, values.values()))] + [
            sum(bisect.bisect_right(numbers, bound) for numbers in values.values())
            for bound in TTFC_BOUNDS_MS
        ]
        buckets = [(key, len(n), *results.nearest_ranks(n)) for key, n in values.items()]
        return buckets, cumulative

    def _sorted_values(
        self, group: str, value: str, where: str, params: Params
    ) -> dict[Any, list[float]]:
        """``value`` by ``group``, each sorted, groups in order. Sorted in Python: SQLite's
        sort, and the window functions over it, took several times as long."""
        values: defaultdict[Any, list[float]] = defaultdict(list)
        for key, number in self._rows(f"SELECT {group}, {value} FROM events WHERE {where}", params):
            values[key].append(number)
        return {key: sorted(values[key]) for key in sorted(values)}

    def close(self) -> None:
        with self._lock:
            self._db.close()
