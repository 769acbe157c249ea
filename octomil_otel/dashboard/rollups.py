"""SQLite's rollups: the facts of ended requests (``facts.py``) summed per hour and per
minute, by model, engine and device, kept by triggers as the events are inserted.

Why: a day's views then read at most 24 hour rows or 1,440 minute rows per model, engine
and device, not every request that ended that day (SQLite sorts to group, and that sort
was most of a query's time over a million events). The triggers fire only for the rows an
insert adds, so an event delivered twice is summed once, and the sums commit or roll back
with their events. ``SQLiteStore._facts`` reads whole hours or minutes from here and the
part of the range outside them from the events.
"""

from __future__ import annotations

from octomil_otel.dashboard import facts
from octomil_otel.dashboard.model import HOUR_MS

TABLES = {HOUR_MS: "rollup_hour", 60_000: "rollup_minute"}
"""Coarsest first."""
_KEY = ("org_id", "start", *facts.DIMENSIONS)


def grain_for(step_ms: int | None) -> int | None:
    """The coarsest rollup whose periods each fall within one bucket of ``step_ms`` (None:
    the range is one bucket); None if neither does."""
    return next((grain for grain in TABLES if step_ms is None or step_ms % grain == 0), None)


def schema() -> list[str]:
    """The rollup tables and the triggers that keep them."""
    columns = ", ".join(
        f"{name} {'REAL' if name.endswith('_sum') else 'INTEGER'} NOT NULL" for name in facts.NAMES
    )
    names = ", ".join(facts.NAMES)
    values = ", ".join(value for _, value in (*facts.SUMMED, facts.LAST_SEEN))
    new = ", ".join(f"NEW.{column} AS {column}" for column in facts.INPUTS)
    updates = ", ".join(
        [f"{name} = {name} + excluded.{name}" for name, _ in facts.SUMMED]
        + [f"{facts.LAST_SEEN[0]} = max({facts.LAST_SEEN[0]}, excluded.{facts.LAST_SEEN[0]})"]
    )
    statements = []
    for grain, table in TABLES.items():
        statements += [
            f"""CREATE TABLE IF NOT EXISTS {table} (
                org_id TEXT NOT NULL, start INTEGER NOT NULL, model TEXT NOT NULL,
                engine TEXT NOT NULL, device_id TEXT NOT NULL, {columns},
                PRIMARY KEY ({", ".join(_KEY)})
            ) WITHOUT ROWID""",
            # WHERE true: SQLite's grammar wants one before ON CONFLICT after a SELECT
            f"""CREATE TRIGGER IF NOT EXISTS {table}_sums AFTER INSERT ON events
            WHEN {facts.ends("NEW.event_type")} BEGIN
                INSERT INTO {table} ({", ".join(_KEY)}, {names})
                SELECT org_id, ts / {grain} * {grain}, {", ".join(facts.DIMENSIONS)}, {values}
                FROM (SELECT {new}) WHERE true
                ON CONFLICT ({", ".join(_KEY)}) DO UPDATE SET {updates};
            END""",
        ]
    return statements


def backfill() -> list[str]:
    """Sum up the events stored before the triggers were."""
    names = ", ".join(facts.NAMES)
    sums = ", ".join(
        [f"sum({value})" for _, value in facts.SUMMED] + [f"max({facts.LAST_SEEN[1]})"]
    )
    group = ", ".join(["org_id", "bucket", *facts.DIMENSIONS])
    return [
        f"INSERT INTO {table} ({', '.join(_KEY)}, {names})"
        f" SELECT org_id, ts / {grain} * {grain} AS bucket, {', '.join(facts.DIMENSIONS)},"
        f" {sums} FROM events WHERE {facts.ENDS} GROUP BY {group}"
        for grain, table in TABLES.items()
    ]
