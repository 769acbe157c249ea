"""The dashboard's five queries, written once for every SQL store.

A store subclasses ``SQLQueries``: it runs statements (``_rows``) and says where its SQL
differs (placeholders, conditional counts, integer division, nearest-rank percentiles).
The queries, and the shaping of their answers (``results.py``), are the same for all, so
every store answers with the same numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields
from operator import attrgetter
from typing import Any

from octomil_otel.dashboard import results
from octomil_otel.dashboard.model import TTFC_BOUNDS_MS, Filters, Row

COLUMNS = [f.name for f in fields(Row)]
VALUES = attrgetter(*COLUMNS)  # a Row as a tuple; dataclasses.astuple deep-copies, slowly
COMPLETED = "event_type = 'generation_completed'"
ENDS = "event_type IN ('generation_completed', 'generation_failed')"
CANCELLED = "event_type = 'generation_failed' AND coalesce(error_type, '') = 'cancelled'"
FAILED = "event_type = 'generation_failed' AND coalesce(error_type, '') != 'cancelled'"

Params = dict[str, Any]
Rows = list[tuple[Any, ...]]


class SQLQueries(ABC):
    # --- what a store provides ---------------------------------------------------------

    @abstractmethod
    def _rows(self, sql: str, params: Params) -> Rows: ...

    @abstractmethod
    def _param(self, name: str, kind: str) -> str:
        """The placeholder of a named parameter; ``kind`` is ``str`` or ``int``."""

    @abstractmethod
    def _count_if(self, condition: str) -> str: ...

    @abstractmethod
    def _int_div(self, a: str, b: str) -> str: ...

    @abstractmethod
    def _percentiles(self, group: str, value: str, where: str, params: Params) -> Rows:
        """(group, count, p50, p90, p99) of ``value`` by nearest rank: the value at
        position ceil(p * n / 100) of the n sorted values."""

    # --- the queries -------------------------------------------------------------------

    def ttfc(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        where, params = self._where(filters, COMPLETED, "ttfc_ms IS NOT NULL")
        buckets = self._percentiles(self._bucket(), "ttfc_ms", where, {**params, "step": step_ms})
        under = ", ".join(self._count_if(f"ttfc_ms <= {b}") for b in TTFC_BOUNDS_MS)
        (cumulative,) = self._rows(f"SELECT count(*), {under} FROM events WHERE {where}", params)
        return results.ttfc(buckets, [int(c or 0) for c in cumulative])

    def throughput(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        where, params = self._where(filters, COMPLETED, "throughput_tok_s IS NOT NULL")
        rows = self._rows(
            f"SELECT model, engine, {self._bucket()} AS start, count(*),"
            f" sum(throughput_tok_s), sum(output_tokens) FROM events WHERE {where}"
            " GROUP BY model, engine, start ORDER BY model, engine, start",
            {**params, "step": step_ms},
        )
        return results.throughput(rows)

    def volume(self, filters: Filters, step_ms: int) -> dict[str, Any]:
        where, params = self._where(filters, ENDS)
        rows = self._grouped(self._bucket(), "", where, {**params, "step": step_ms})
        return results.volume(rows)

    def devices(self, filters: Filters) -> dict[str, Any]:
        where, params = self._where(filters, ENDS)
        extra = ", sum(throughput_tok_s), count(throughput_tok_s), max(ts)"
        counts = self._grouped("device_id", extra, where, params)
        where, params = self._where(filters, COMPLETED, "ttfc_ms IS NOT NULL")
        return results.devices(counts, self._percentiles("device_id", "ttfc_ms", where, params))

    def dimensions(self, filters: Filters) -> dict[str, Any]:
        """Over the time range only: the choices a filter offers."""
        where, params = self._where(Filters(filters.org_id, filters.start, filters.end), ENDS)
        out: dict[str, Any] = {}
        for name, column in (("models", "model"), ("engines", "engine"), ("devices", "device_id")):
            rows = self._rows(
                f"SELECT DISTINCT {column} FROM events WHERE {where} ORDER BY {column}", params
            )
            out[name] = [row[0] for row in rows]
        return out

    # --- pieces ------------------------------------------------------------------------

    def _bucket(self) -> str:
        """The start of the ``step`` ms bucket that ``ts`` is in."""
        step = self._param("step", "int")
        return f"{self._int_div('ts', step)} * {step}"

    def _rank(self, p: int, count: str) -> str:
        return self._int_div(f"{p} * {count} + 99", "100")

    def _grouped(self, group: str, extra: str, where: str, params: Params) -> Rows:
        """Per group: requests, failed (not cancelled), cancelled, then ``extra``."""
        return self._rows(
            f"SELECT {group} AS g, count(*), {self._count_if(FAILED)},"
            f" {self._count_if(CANCELLED)}{extra} FROM events WHERE {where}"
            " GROUP BY g ORDER BY g",
            params,
        )

    def _where(self, filters: Filters, *conditions: str) -> tuple[str, Params]:
        clauses = [
            f"org_id = {self._param('org_id', 'str')}",
            f"ts >= {self._param('start', 'int')}",
            f"ts < {self._param('end', 'int')}",
        ]
        params: Params = {"org_id": filters.org_id, "start": filters.start, "end": filters.end}
        for column in ("model", "engine", "device_id"):
            value = getattr(filters, column)
            if value is not None:
                clauses.append(f"{column} = {self._param(column, 'str')}")
                params[column] = value
        return " AND ".join([*clauses, *conditions]), params
