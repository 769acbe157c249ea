"""What the views add up about each ended request, defined once in SQL.

Every view but TTFC's (its percentiles need every value) is made of sums (and a max) of
these per-request facts, grouped by time bucket, model, engine or device: so the same
definitions compute them from the events themselves and from rollup rows that hold their
sums per minute or hour (``rollups.py``), and a query may add the two up.
"""

from __future__ import annotations

from octomil_otel.dashboard.model import PHASES


def ends(column: str = "event_type") -> str:
    """Every ended request has one of these events: the views count requests by them."""
    return f"{column} IN ('generation_completed', 'generation_failed')"


ENDS = ends()
COMPLETED = "event_type = 'generation_completed'"
CANCELLED = "event_type = 'generation_failed' AND coalesce(error_type, '') = 'cancelled'"
FAILED = "event_type = 'generation_failed' AND coalesce(error_type, '') != 'cancelled'"
WITH_TOK_S = f"{COMPLETED} AND throughput_tok_s IS NOT NULL"


def count_if(condition: str) -> str:
    """1 where ``condition`` holds, else 0: summed, a conditional count."""
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _sum(condition: str, value: str) -> str:
    return f"CASE WHEN {condition} THEN coalesce({value}, 0) ELSE 0 END"


SUMMED: tuple[tuple[str, str], ...] = (
    ("requests", "1"),
    ("failed", count_if(FAILED)),
    ("cancelled", count_if(CANCELLED)),
    ("tok_s_n", count_if(WITH_TOK_S)),
    ("tok_s_sum", _sum(WITH_TOK_S, "throughput_tok_s")),
    ("output_tokens_sum", _sum(WITH_TOK_S, "output_tokens")),
    # where the time went, for the completed requests (a failed one has no engine time):
    # each phase summed over those that report it, and their whole duration, so that a
    # mean per completed request of each is a ratio of sums
    ("duration_ms_sum", _sum(COMPLETED, "total_duration_ms")),
    *((f"{phase}_sum", _sum(COMPLETED, phase)) for phase in PHASES),
)
"""(name, its value for one ended request's event): the facts that add up."""
LAST_SEEN = ("last_ts", "ts")
"""The fact that is a maximum: when the latest request ended."""
NAMES = [name for name, _ in SUMMED] + [LAST_SEEN[0]]
DIMENSIONS = ("model", "engine", "device_id")
INPUTS = ("org_id", "ts", *DIMENSIONS, "event_type", "error_type", "ttfc_ms",
          "throughput_tok_s", "output_tokens", "total_duration_ms", *PHASES)  # fmt: skip
"""The event columns the facts are made of."""


def of_events(events: str, where: str) -> str:
    """The facts of each ended request in ``events`` (a table) matching ``where``, with its
    end time as ``start``: the shape of a rollup row."""
    values = ", ".join(f"{value} AS {name}" for name, value in (*SUMMED, LAST_SEEN))
    return f"SELECT ts AS start, {', '.join(DIMENSIONS)}, {values} FROM {events} WHERE {where}"
