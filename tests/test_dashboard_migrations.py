"""Stores made by an earlier version: a SQLite file from before rollups is summed up, a
ClickHouse table from before it kept one of each event is copied into one that does; the
views then count what was there and what comes, once."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from octomil_otel.dashboard.batch import row_of
from octomil_otel.dashboard.model import COLUMNS, PHASES, Filters

from .dashboards import HOUR, MINUTE, opened
from .test_dashboard_rollups import RANGES, REQUESTS, chosen, devices, phases, volume

OLD_COLUMNS = [column for column in COLUMNS if column not in PHASES]
"""The events' columns before the time split's."""


def old_rows(requests) -> list[tuple]:
    """Their events as an earlier version stored them: no time split columns (their text
    has the figures all the same)."""
    rows = [row_of("org_old", event) for r in requests for event in r.events()]
    return [tuple(v for c, v in zip(COLUMNS, row, strict=True) if c not in PHASES) for row in rows]


OLD_SQLITE = """
CREATE TABLE orgs (org_id TEXT PRIMARY KEY, name TEXT NOT NULL, created INTEGER);
CREATE TABLE keys (
    key_id TEXT PRIMARY KEY, key_hash TEXT UNIQUE NOT NULL, org_id TEXT NOT NULL,
    name TEXT NOT NULL, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (
    org_id TEXT NOT NULL, event_type TEXT NOT NULL, ts INTEGER NOT NULL,
    device_id TEXT NOT NULL, model TEXT NOT NULL, engine TEXT NOT NULL,
    request_id TEXT, chunk_index INTEGER NOT NULL, stream INTEGER,
    ttfc_ms REAL, throughput_tok_s REAL, total_duration_ms REAL,
    input_tokens INTEGER, output_tokens INTEGER, error_type TEXT, body TEXT NOT NULL,
    UNIQUE (org_id, request_id, event_type, chunk_index)
);
CREATE INDEX events_by_time ON events (org_id, event_type, ts);
"""
"""The SQLite schema before rollups (version 0)."""


OLD_CLICKHOUSE = """CREATE TABLE {name} (
    org_id String, event_type LowCardinality(String), ts Int64,
    device_id LowCardinality(String), model LowCardinality(String),
    engine LowCardinality(String), request_id Nullable(String), chunk_index Int64,
    stream Nullable(Bool), ttfc_ms Nullable(Float64),
    throughput_tok_s Nullable(Float64), total_duration_ms Nullable(Float64),
    input_tokens Nullable(Float64), output_tokens Nullable(Float64),
    error_type LowCardinality(Nullable(String)), body String
) ENGINE = MergeTree ORDER BY (org_id, event_type, ts)"""
"""The ClickHouse events table before it kept one of each event."""


def test_a_sqlite_file_from_before_rollups_is_summed_up(tmp_path):
    old, new = REQUESTS[:120], REQUESTS[120:]
    path = tmp_path / "events.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SQLITE)
        db.executemany(
            f"INSERT INTO events ({', '.join(OLD_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(OLD_COLUMNS))})",
            old_rows(old),
        )
    db.close()
    with opened(f"sqlite:///{path}") as store:
        store.insert([row_of("org_old", event) for r in new for event in r.events()])
        start, end = RANGES["odd ends"]
        scope = Filters("org_old", start, end)
        assert store.volume(scope, HOUR) == volume(chosen(start, end), HOUR)
        assert store.volume(scope, MINUTE) == volume(chosen(start, end), MINUTE)
        assert store.devices(scope) == devices(chosen(start, end))
        assert store.phases(scope) == phases(chosen(start, end))  # from the old events' text


def test_a_clickhouse_table_from_before_dedup_is_copied_into_one_that_dedups(tmp_path):
    pytest.importorskip("chdb")
    import clickhouse_connect

    url = f"chdb://{tmp_path / 'chdb'}"
    client = clickhouse_connect.get_client(dsn=url)
    client.command(OLD_CLICKHOUSE.format(name="events"))
    client.insert("events", old_rows(REQUESTS[:120]), column_names=OLD_COLUMNS)
    client.close()
    again = [row_of("org_old", event) for r in REQUESTS[:10] for event in r.events()]
    with opened(url) as store:
        store.insert(again)  # now the table keeps one of each
        start, end = RANGES["odd ends"]
        scope = Filters("org_old", start, end)
        requests = chosen(start, end, among=REQUESTS[:120])
        assert store.volume(scope, HOUR) == volume(requests, HOUR)
        assert store.devices(scope) == devices(requests)
        assert store.phases(scope) == phases(requests)  # from the old events' text


def tables(url: str) -> list[str]:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=url)
    try:
        return sorted(name for (name,) in client.query("SHOW TABLES").result_rows)
    finally:
        client.close()


def assert_upgraded(url: str) -> None:
    """The first 120 requests counted once, and no table left from the upgrade."""
    with opened(url) as store:
        start, end = RANGES["odd ends"]
        requests = chosen(start, end, among=REQUESTS[:120])
        assert store.volume(Filters("org_old", start, end), HOUR) == volume(requests, HOUR)
    assert tables(url) == ["events", "keys", "orgs"]


def test_a_clickhouse_upgrade_stopped_midway_is_done_again_at_the_next_start(tmp_path):
    """Stopped during the copy: the old table is still ``events``, next to a partial copy."""
    pytest.importorskip("chdb")
    import clickhouse_connect

    url = f"chdb://{tmp_path / 'chdb'}"
    client = clickhouse_connect.get_client(dsn=url)
    client.command(OLD_CLICKHOUSE.format(name="events"))
    client.insert("events", old_rows(REQUESTS[:120]), column_names=OLD_COLUMNS)
    client.command(OLD_CLICKHOUSE.format(name="events_migrating"))  # the copy, cut short
    client.insert("events_migrating", old_rows(REQUESTS[:3]), column_names=OLD_COLUMNS)
    client.close()

    assert_upgraded(url)


def test_a_clickhouse_upgrade_stopped_after_the_exchange_drops_the_old_table(tmp_path):
    pytest.importorskip("chdb")
    import clickhouse_connect

    url = f"chdb://{tmp_path / 'chdb'}"
    with opened(url) as store:
        store.insert([row_of("org_old", e) for r in REQUESTS[:120] for e in r.events()])
    client = clickhouse_connect.get_client(dsn=url)
    client.command(OLD_CLICKHOUSE.format(name="events_migrating"))  # the old table, left
    client.insert("events_migrating", old_rows(REQUESTS[:3]), column_names=OLD_COLUMNS)
    client.close()

    assert_upgraded(url)


def test_clickhouse_views_read_only_the_days_of_their_range(tmp_path):
    """A day a partition: the view of an hour reads that day's part, not the history's."""
    pytest.importorskip("chdb")
    with opened(f"chdb://{tmp_path / 'chdb'}") as store:
        for day in range(3):  # three days' requests, in parts of their own
            moved = [dataclasses.replace(r, end=r.end + day * 24 * HOUR) for r in REQUESTS[:40]]
            store.insert([row_of("org", e) for r in moved for e in r.events()])
        start, end = RANGES["within an hour"]
        source, params = store._facts(Filters("org", start, end), None)
        plan = [
            line
            for (line,) in store._rows(f"EXPLAIN indexes = 1 SELECT count() FROM {source}", params)
        ]
    by_time = plan.index(next(line for line in plan if line.strip() == "Min-Max"))
    parts = next(line for line in plan[by_time:] if line.strip().startswith("Parts:"))
    assert parts.strip() == "Parts: 1/3"  # the partition key's own index, on ts
