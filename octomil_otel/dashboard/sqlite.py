"""The dashboard's store in one SQLite file (WAL mode): nothing to run, nothing to set up."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from octomil_otel.dashboard import keys as keymaker
from octomil_otel.dashboard.model import PERCENTILES, Key, Row
from octomil_otel.dashboard.queries import COLUMNS, VALUES, Params, Rows, SQLQueries

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


class SQLiteStore(SQLQueries):
    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

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

    def insert(self, rows: list[Row]) -> int:
        placeholders = ", ".join("?" * len(COLUMNS))
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                    [VALUES(row) for row in rows],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    # --- what the queries need ---------------------------------------------------------

    def _rows(self, sql: str, params: Params) -> Rows:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _param(self, name: str, kind: str) -> str:
        return f":{name}"

    def _count_if(self, condition: str) -> str:
        return f"sum(CASE WHEN {condition} THEN 1 ELSE 0 END)"

    def _int_div(self, a: str, b: str) -> str:
        return f"(({a}) / ({b}))"  # integers: SQLite divides them as integers

    def _percentiles(self, group: str, value: str, where: str, params: Params) -> Rows:
        picks = ", ".join(
            f"max(CASE WHEN rn = {self._rank(p, 'n')} THEN v END)" for p in PERCENTILES
        )
        return self._rows(
            f"WITH ranked AS (SELECT {group} AS g, {value} AS v,"
            f" row_number() OVER (PARTITION BY {group} ORDER BY {value}) AS rn,"
            f" count(*) OVER (PARTITION BY {group}) AS n FROM events WHERE {where})"
            f" SELECT g, max(n), {picks} FROM ranked GROUP BY g ORDER BY g",
            params,
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
