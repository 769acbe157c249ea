"""The dashboard's queries, written once for every SQL store.

A store subclasses ``SQLQueries``: it runs statements (``_rows``) and says where its SQL
differs (placeholders, integer division, nearest-rank percentiles, where the facts of
ended requests come from). The queries, and the shaping of their answers
(``results.py``), are the same for all, so every store answers with the same numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any

from octomil_otel.dashboard import facts, results
from octomil_otel.dashboard.model import PHASES, TTFC_BOUNDS_MS, Filters

STATUS = {
    "completed": facts.COMPLETED,
    "failed": facts.FAILED,
    "cancelled": facts.CANCELLED,
}
"""How a request ended, as a condition on its ending event (``results.status`` in Python):
failed is every ``generation_failed`` but the cancelled ones."""

Params = dict[str, Any]
Rows = list[tuple[Any, ...]]


class SQLQueries(ABC):
    _EVENTS = "events"
    """The events as a query reads them (a store may need to say more, e.g. FINAL)."""
    _REQUEST_KEY = "request_id"
    """The column that finds a request's events fastest."""

    # --- what a store provides ---------------------------------------------------------

    @abstractmethod
    def _rows(self, sql: str, params: Params) -> Rows: ...

    @abstractmethod
    def _param(self, name: str, kind: str) -> str:
        """The placeholder of a named parameter; ``kind`` is ``str`` or ``int``."""

    @abstractmethod
    def _int_div(self, a: str, b: str) -> str: ...

    @abstractmethod
    def _percentiles(self, group: str, value: str, where: str, params: Params) -> Rows:
        """(group, count, p50, p90, p99) of ``value`` by nearest rank: the value at
        position ceil(p * n / 100) of the n sorted values."""

    def _ttfc_summary(self, where: str, params: Params, step_ms: int) -> tuple[Rows, list[int]]:
        """Of the TTFCs ``where`` selects: per ``step_ms`` bucket (start, count, p50, p90,
        p99), and the count of all, then of those at or under each of ``TTFC_BOUNDS_MS``.
        From the events, not rollups: the percentiles need every value anyway."""
        buckets = self._percentiles(self._bucket(), "ttfc_ms", where, {**params, "step": step_ms})
        under = ", ".join(f"sum({facts.count_if(f'ttfc_ms <= {b}')})" for b in TTFC_BOUNDS_MS)
        (cumulative,) = self._rows(
            f"SELECT count(*), {under} FROM {self._EVENTS} WHERE {where}", params
        )
        return buckets, [int(c or 0) for c in cumulative]

    def _facts(self, filters: Filters, step_ms: int | None) -> tuple[str, Params]:
        """A subquery with the facts (``facts.NAMES``) of the requests that ended within
        ``filters``, by ``start``, model, engine and device: one row per request here; a
        store with rollups adds up fewer, whose device may be NULL unless ``step_ms`` (the
        buckets they will be summed in) is None, as the views that group by device ask."""
        where, params = self._where(filters)
        return f"({facts.of_events(self._EVENTS, where)})", params

    # --- the views ---------------------------------------------------------------------

    def ttfc(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        where, params = self._where(filters, facts.COMPLETED, "ttfc_ms IS NOT NULL")
        return results.ttfc(*self._ttfc_summary(where, params, step_ms))

    def throughput(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        source, params = self._facts(filters, step_ms)
        rows = self._rows(
            f"SELECT model, engine, {self._bucket('start')} AS b, sum(tok_s_n), sum(tok_s_sum),"
            f" sum(output_tokens_sum) FROM {source} AS f GROUP BY model, engine, b"
            " HAVING sum(tok_s_n) > 0 ORDER BY model, engine, b",
            {**params, "step": step_ms},
        )
        return results.throughput(rows)

    def volume(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        source, params = self._facts(filters, step_ms)
        rows = self._rows(
            f"SELECT {self._bucket('start')} AS b, sum(requests), sum(failed), sum(cancelled)"
            f" FROM {source} AS f GROUP BY b ORDER BY b",
            {**params, "step": step_ms},
        )
        return results.volume(rows)

    def devices(self, filters: Filters) -> dict[str, Any]:
        source, params = self._facts(filters, None)
        counts = self._rows(
            "SELECT device_id, sum(requests), sum(failed), sum(cancelled), sum(tok_s_sum),"
            f" sum(tok_s_n), max(last_ts) FROM {source} AS f GROUP BY device_id"
            " ORDER BY device_id",
            params,
        )
        where, params = self._where(filters, facts.COMPLETED, "ttfc_ms IS NOT NULL")
        return results.devices(counts, self._percentiles("device_id", "ttfc_ms", where, params))

    def phases(self, filters: Filters) -> dict[str, Any]:
        source, params = self._facts(filters, None)
        sums = ", ".join(f"sum({phase}_sum)" for phase in PHASES)
        completed = "sum(requests) - sum(failed) - sum(cancelled)"
        rows = self._rows(
            f"SELECT model, engine, {completed} AS n, sum(duration_ms_sum), {sums}"
            f" FROM {source} AS f GROUP BY model, engine HAVING {completed} > 0"
            " ORDER BY model, engine",
            params,
        )
        return results.phases(rows)

    def dimensions(self, filters: Filters) -> dict[str, Any]:
        """Over the time range only: the choices a filter offers."""
        source, params = self._facts(Filters(filters.org_id, filters.start, filters.end), None)
        rows = self._rows(
            f"SELECT {', '.join(facts.DIMENSIONS)} FROM {source} AS f"
            f" GROUP BY {', '.join(facts.DIMENSIONS)}",
            params,
        )
        return results.dimensions(rows)

    # --- the request explorer ----------------------------------------------------------

    def requests(self, filters: Filters, status: str | None, limit: int) -> dict[str, Any]:
        # a request without an id cannot be opened, nor told apart from another delivery
        conditions = ["request_id IS NOT NULL", *([STATUS[status]] if status else [])]
        where, params = self._where(filters, *conditions)
        rows = self._rows(
            "SELECT ts, request_id, model, engine, device_id, event_type, error_type, ttfc_ms,"
            f" output_tokens, throughput_tok_s FROM {self._EVENTS} WHERE {where}"
            f" ORDER BY ts DESC, request_id DESC LIMIT {self._param('limit', 'int')}",
            {**params, "limit": limit},
        )
        return results.request_list(rows)

    def request(self, org_id: str, request_id: str) -> dict[str, Any] | None:
        rows = self._rows(
            f"SELECT event_type, ts, chunk_index, body FROM {self._EVENTS}"
            f" WHERE org_id = {self._param('org_id', 'str')}"
            f" AND {self._REQUEST_KEY} = {self._param('request_id', 'str')}"
            " ORDER BY ts, chunk_index, event_type",
            {"org_id": org_id, "request_id": request_id},
        )
        return results.request_detail(request_id, rows) if rows else None

    # --- pieces ------------------------------------------------------------------------

    def _bucket(self, column: str = "ts") -> str:
        """The start of the ``step`` ms bucket that ``column`` is in."""
        step = self._param("step", "int")
        return f"{self._int_div(column, step)} * {step}"

    def _rank(self, p: int, count: str) -> str:
        return self._int_div(f"{p} * {count} + 99", "100")

    def _where(self, filters: Filters, *conditions: str) -> tuple[str, Params]:
        """Ending events within ``filters``, and ``conditions``."""
        return self._match(filters, "ts", facts.ENDS, *conditions)

    def _match(
        self, filters: Filters, column: str, *conditions: str, tag: str = ""
    ) -> tuple[str, Params]:
        """Rows of ``filters.org_id`` with ``column`` in [start, end) that match the
        filters and ``conditions``; ``tag`` sets their parameters apart from others'."""
        names = {"org_id": "org_id", "start": f"start{tag}", "end": f"end{tag}"}
        clauses = [
            f"org_id = {self._param('org_id', 'str')}",
            f"{column} >= {self._param(names['start'], 'int')}",
            f"{column} < {self._param(names['end'], 'int')}",
        ]
        params: Params = {"org_id": filters.org_id, names["start"]: filters.start,
                          names["end"]: filters.end}  # fmt: skip
        for dimension in facts.DIMENSIONS:
            value = getattr(filters, dimension)
            if value is not None:
                clauses.append(f"{dimension} = {self._param(dimension, 'str')}")
                params[dimension] = value
        return " AND ".join([*clauses, *conditions]), params


def within(filters: Filters, start: int, end: int) -> Filters:
    """``filters`` over [start, end) instead."""
    return replace(filters, start=start, end=end)
