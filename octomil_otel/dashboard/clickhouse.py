"""The dashboard's store in ClickHouse, for event volumes SQLite no longer answers quickly,
and for several dashboards (ingest processes, machines) sharing one database.

One client for both kinds of URL: ``clickhouse://`` (``clickhouses://`` for HTTPS) reaches a
server, and ``chdb://PATH`` runs the same engine in this process (clickhouse-connect's chDB
backend), so tests and CI run the very SQL a server runs, with nothing to start.

ClickHouse has no unique constraints: the events table is a ``ReplacingMergeTree`` whose
sorting key is an event's identity (org, event type, request, chunk index), so the
database itself keeps one of each, whoever inserted it and how often; until its merges
have, queries read it ``FINAL``. Event type comes second in the key so that the views,
which read only the endings, skip the chunks; a partition a day lets them read only the
days in their range. A revocation is a newer version of the key's row
(``ReplacingMergeTree`` too).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import clickhouse_connect

from octomil_otel.dashboard import keys as keymaker
from octomil_otel.dashboard.model import COLUMNS, HOUR_MS, PERCENTILES, PHASES, Key, Row
from octomil_otel.dashboard.queries import Params, Rows, SQLQueries

# tokens are Float64: the API accepts any finite non-negative number (5.5, 1e30), and
# SQLite stores it as given; an event without a request id has no identity: a key of its
# own, so it is never merged
_PARTITION_KEY = "intDiv(ts, 86400000)"
"""A day a partition: a view over a range reads the days it covers, not the org's whole
history (the sorting key, an event's identity, says nothing of time). An event and its
copies share a day: the table keeps one of each within a partition."""


def _events_table(name: str) -> list[str]:
    """The events table ``name``, with the time split's columns. An event inserted gives
    them; one stored before they existed reads them from its own text (a default is
    computed for the parts that lack a column)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {name} (
            org_id String, event_type LowCardinality(String), ts Int64,
            device_id LowCardinality(String), model LowCardinality(String),
            engine LowCardinality(String), request_id Nullable(String), chunk_index Int64,
            stream Nullable(Bool), ttfc_ms Nullable(Float64),
            throughput_tok_s Nullable(Float64), total_duration_ms Nullable(Float64),
            input_tokens Nullable(Float64), output_tokens Nullable(Float64),
            error_type LowCardinality(Nullable(String)), body String,
            request_key String MATERIALIZED ifNull(request_id, toString(generateUUIDv4()))
        ) ENGINE = ReplacingMergeTree PARTITION BY {_PARTITION_KEY}
        ORDER BY (org_id, event_type, request_key, chunk_index)""",
        *(
            f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {phase} Nullable(Float64)"
            f" DEFAULT JSONExtract(body, 'metrics', '{phase}', 'Nullable(Float64)')"
            for phase in PHASES
        ),
    ]


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS orgs (org_id String, name String, created Int64)
    ENGINE = MergeTree ORDER BY org_id""",
    # revoked is the version: FINAL keeps a key's revoked row over its active one
    """CREATE TABLE IF NOT EXISTS keys (
        key_id String, key_hash String, org_id String, name String, created Int64,
        revoked UInt8
    ) ENGINE = ReplacingMergeTree(revoked) ORDER BY key_id""",
    *_events_table("events"),
)
_QUERY_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}
"""``FINAL`` merges each day apart, as the copies of an event are always in one: without
this, it ignores a condition on time and reads every day (the whole history)."""
_KEY_COLUMNS = ["key_id", "key_hash", "org_id", "name", "created", "revoked"]
# stored before the answer (not buffered by the server), and a block sent twice is kept
# twice: the table merges its rows, as it does anyone else's
_INSERT_SETTINGS = {"async_insert": 0, "insert_deduplicate": 0}


class ClickHouseStore(SQLQueries):
    _EVENTS = "events FINAL"
    _REQUEST_KEY = "request_key"

    def __init__(self, url: str) -> None:
        self._client = clickhouse_connect.get_client(
            dsn=url, secure=url.startswith("clickhouses://")
        )
        self._lock = threading.Lock()  # the client takes one call at a time
        with self._lock:
            self._migrate_events_table()
            for statement in _SCHEMA:
                self._client.command(statement)

    def _migrate_events_table(self) -> None:
        """An events table made by an earlier version (one that did not keep one of each
        event, or not a partition a day) is copied into one of today's, which then takes
        its place in one step (``EXCHANGE``). Stopped at any point, the next start finds
        either the old table, and copies it again, or the new one."""
        tables = dict(
            self._client.query(
                "SELECT name, partition_key FROM system.tables"
                " WHERE database = currentDatabase() AND name IN ('events', 'events_migrating')"
            ).result_rows
        )
        if "events" in tables and tables["events"] != _PARTITION_KEY:
            self._client.command("DROP TABLE IF EXISTS events_migrating")  # a copy cut short
            for statement in _events_table("events_migrating"):
                self._client.command(statement)
            present = {
                name
                for (name,) in self._client.query(
                    "SELECT name FROM system.columns"
                    " WHERE database = currentDatabase() AND table = 'events'"
                ).result_rows
            }
            copied = ", ".join(column for column in COLUMNS if column in present)
            self._client.command(
                f"INSERT INTO events_migrating ({copied}) SELECT {copied} FROM events",
                settings=_INSERT_SETTINGS,
            )
            self._client.command("EXCHANGE TABLES events AND events_migrating")
        self._client.command("DROP TABLE IF EXISTS events_migrating")  # the old one

    def _insert(self, table: str, rows: list[Any], columns: list[str]) -> None:
        """Stored whole or not at all: one part of one partition. (The client may send a
        batch as several blocks; the server squashes blocks into one up to
        min_insert_block_size_rows/_bytes, far above a batch.) The caller holds the lock."""
        self._client.insert(table, rows, column_names=columns, settings=_INSERT_SETTINGS)

    # --- orgs and keys -----------------------------------------------------------------

    def create_org(self, name: str) -> str:
        org_id = keymaker.new_org_id()
        row = (org_id, name, int(time.time()))
        with self._lock:
            self._insert("orgs", [row], ["org_id", "name", "created"])
        return org_id

    def create_key(self, org_id: str, name: str) -> tuple[str, str]:
        key_id, key = keymaker.new_key()
        if not self._rows("SELECT 1 FROM orgs WHERE org_id = {o:String}", {"o": org_id}):
            raise ValueError(f"no org {org_id!r}")
        row = (key_id, keymaker.digest(key), org_id, name, int(time.time()), 0)
        with self._lock:
            self._insert("keys", [row], _KEY_COLUMNS)
        return key_id, key

    def list_keys(self) -> list[Key]:
        rows = self._rows(
            "SELECT key_id, org_id, name, created, revoked FROM keys FINAL"
            " ORDER BY created, key_id",
            {},
        )
        return [Key(k, o, n, c, bool(r)) for k, o, n, c, r in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self._lock:
            rows = self._client.query(
                "SELECT key_id, key_hash, org_id, name, created FROM keys FINAL"
                " WHERE key_id = {k:String} AND revoked = 0",
                parameters={"k": key_id},
            ).result_rows
            if rows:
                self._insert("keys", [(*rows[0], 1)], _KEY_COLUMNS)
        return bool(rows)

    def org_of(self, key: str) -> str | None:
        rows = self._rows(
            "SELECT org_id FROM keys FINAL WHERE key_hash = {h:String} AND revoked = 0",
            {"h": keymaker.digest(key)},
        )
        return rows[0][0] if rows else None

    def has_orgs(self) -> bool:
        return bool(self._rows("SELECT 1 FROM orgs LIMIT 1", {}))

    # --- events ------------------------------------------------------------------------

    def insert(self, rows: list[Row]) -> None:
        with self._lock:
            self._insert("events", rows, COLUMNS)

    def drop_before(self, cutoff_ms: int) -> None:
        cutoff = cutoff_ms // HOUR_MS * HOUR_MS
        with self._lock:
            self._client.command(
                "DELETE FROM events WHERE ts < {cutoff:Int64}", parameters={"cutoff": cutoff}
            )

    # --- what the queries need ---------------------------------------------------------

    def _rows(self, sql: str, params: Params) -> Rows:
        with self._lock:
            return self._client.query(sql, parameters=params, settings=_QUERY_SETTINGS).result_rows

    def _param(self, name: str, kind: str) -> str:
        return f"{{{name}:{'Int64' if kind == 'int' else 'String'}}}"

    def _int_div(self, a: str, b: str) -> str:
        return f"intDiv({a}, {b})"

    def _percentiles(self, group: str, value: str, where: str, params: Params) -> Rows:
        ordered = f"arraySort(groupArray({value}))"
        picks = ", ".join(
            f"arrayElement({ordered}, toUInt64({self._rank(p, 'count()')}))" for p in PERCENTILES
        )
        return self._rows(
            f"SELECT {group} AS g, count(), {picks} FROM {self._EVENTS} WHERE {where}"
            " GROUP BY g ORDER BY g",
            params,
        )

    def close(self) -> None:
        with self._lock:
            self._client.close()
