"""SQLite's rollups: the facts of ended requests (``facts.py``) summed per hour by model,
engine and device, and per minute by model and engine, kept by triggers as the events are
inserted.

Why: a day's views then read some thousands of rollup rows, not every request that ended
that day (SQLite sorts to group, and that sort was most of a query's time over a million
events). The minute rollup leaves the device out: with it, it had about as many rows as
there were requests. The triggers fire only for the rows an insert adds, so an event
delivered twice is summed once, and the sums commit or roll back with their events.
``SQLiteStore._facts`` reads whole hours or minutes from here and the part of the range
outside them from the events.
"""

from __future__ import annotations

from dataclasses import dataclass

from octomil_otel.dashboard import facts
from octomil_otel.dashboard.model import HOUR_MS, Filters


@dataclass(frozen=True)
class Rollup:
    table: str
    grain_ms: int
    dimensions: tuple[str, ...]

    @property
    def key(self) -> tuple[str, ...]:
        return ("org_id", "start", *self.dimensions)


ROLLUPS = (
    Rollup("rollup_hour", HOUR_MS, facts.DIMENSIONS),
    Rollup("rollup_minute", 60_000, ("model", "engine")),
)
"""Coarsest first."""


def rollup_for(filters: Filters, step_ms: int | None) -> Rollup | None:
    """The coarsest rollup with the dimensions ``filters`` match on, whose periods each fall
    within one bucket of ``step_ms`` (None: the range is one bucket); None if none does."""
    matched = {name for name in facts.DIMENSIONS if getattr(filters, name) is not None}
    return next(
        (
            rollup
            for rollup in ROLLUPS
            if (step_ms is None or step_ms % rollup.grain_ms == 0)
            and matched <= set(rollup.dimensions)
        ),
        None,
    )


def schema() -> list[str]:
    """The rollup tables and the triggers that keep them."""
    columns = ", ".join(
        f"{name} {'REAL' if name.endswith('_sum') else 'INTEGER'} NOT NULL" for name in facts.NAMES
    )
    names = ", ".join(facts.NAMES)
    values = ", ".join(value for _, value in (*facts.SUMMED, facts.LAST_SEEN))
    new = ", ".join(f"NEW.{column} AS {column}" for column in facts.INPUTS)
    last = facts.LAST_SEEN[0]
    updates = ", ".join(
        [f"{name} = {name} + excluded.{name}" for name, _ in facts.SUMMED]
        + [f"{last} = max({last}, excluded.{last})"]
    )
    statements = []
    for rollup in ROLLUPS:
        key = ", ".join(rollup.key)
        dimensions = " ".join(f"{name} TEXT NOT NULL," for name in rollup.dimensions)
        grain = rollup.grain_ms
        statements += [
            f"""CREATE TABLE IF NOT EXISTS {rollup.table} (
                org_id TEXT NOT NULL, start INTEGER NOT NULL, {dimensions} {columns},
                PRIMARY KEY ({key})
            ) WITHOUT ROWID""",
            # WHERE true: SQLite's grammar wants one before ON CONFLICT after a SELECT
            f"""CREATE TRIGGER IF NOT EXISTS {rollup.table}_sums AFTER INSERT ON events
            WHEN {facts.ends("NEW.event_type")} BEGIN
                INSERT INTO {rollup.table} ({key}, {names})
                SELECT org_id, ts / {grain} * {grain}, {", ".join(rollup.dimensions)}, {values}
                FROM (SELECT {new}) WHERE true
                ON CONFLICT ({key}) DO UPDATE SET {updates};
            END""",
        ]
    return statements


def rebuild() -> list[str]:
    """The rollups made anew from the events: for a file whose rollups have fewer sums."""
    statements = []
    for rollup in ROLLUPS:
        statements += [
            f"DROP TRIGGER IF EXISTS {rollup.table}_sums",
            f"DROP TABLE IF EXISTS {rollup.table}",
        ]
    return [*statements, *schema(), *_backfill()]


def _backfill() -> list[str]:
    """Sum up the events stored before the triggers were."""
    names = ", ".join(facts.NAMES)
    sums = ", ".join(
        [f"sum({value})" for _, value in facts.SUMMED] + [f"max({facts.LAST_SEEN[1]})"]
    )
    statements = []
    for rollup in ROLLUPS:
        grain, dimensions = rollup.grain_ms, ", ".join(rollup.dimensions)
        statements.append(
            f"INSERT INTO {rollup.table} ({', '.join(rollup.key)}, {names})"
            f" SELECT org_id, ts / {grain} * {grain} AS bucket, {dimensions}, {sums}"
            f" FROM events WHERE {facts.ENDS} GROUP BY org_id, bucket, {dimensions}"
        )
    return statements


def arm(rollup: Rollup, where: str) -> str:
    """Its rows matching ``where``, shaped as ``facts.of_events``'s (no device: NULL)."""
    dimensions = ", ".join(
        name if name in rollup.dimensions else f"NULL AS {name}" for name in facts.DIMENSIONS
    )
    return f"SELECT start, {dimensions}, {', '.join(facts.NAMES)} FROM {rollup.table} WHERE {where}"
