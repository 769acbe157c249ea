"""The JSON answers of the query API, shaped the same for every store.

A store computes counts, sums and nearest-rank percentiles in its database; ratios and
averages are computed here, once, so every store answers with the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from octomil_otel.dashboard.model import PERCENTILES, TTFC_BOUNDS_MS
from octomil_otel.export.events import CHUNK_PRODUCED, GENERATION_COMPLETED, GENERATION_STARTED

Rows = Sequence[Sequence[Any]]


def _ratio(part: float | None, whole: float | None) -> float | None:
    return (part or 0) / whole if whole else None


def ttfc(buckets: Rows, cumulative: Sequence[int]) -> dict[str, Any]:
    """``buckets``: (start, count, p50, p90, p99); ``cumulative``: the total, then the
    count at or under each bound of ``TTFC_BOUNDS_MS``."""
    total, *under = cumulative
    edges = [0, *under, total]
    return {
        "buckets": [
            {"start": int(s), "count": int(n), "p50": p50, "p90": p90, "p99": p99}
            for s, n, p50, p90, p99 in buckets
        ],
        "distribution": {
            "bounds_ms": list(TTFC_BOUNDS_MS),
            "counts": [edges[i + 1] - edges[i] for i in range(len(edges) - 1)],
        },
    }


def throughput(rows: Rows) -> dict[str, Any]:
    """``rows``: (model, engine, start, requests, sum of tok/s, sum of output tokens)."""
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for model, engine, start, count, tok_s, output in rows:
        entry = series.setdefault(
            (model, engine),
            {"model": model, "engine": engine, "requests": 0, "_tok_s": 0.0,
             "output_tokens": 0, "buckets": []},
        )  # fmt: skip
        entry["buckets"].append(
            {"start": int(start), "requests": int(count), "avg_tok_s": _ratio(tok_s, count)}
        )
        entry["requests"] += int(count)
        entry["_tok_s"] += tok_s or 0.0
        entry["output_tokens"] += int(output or 0)
    out = []
    for entry in series.values():
        entry["avg_tok_s"] = _ratio(entry.pop("_tok_s"), entry["requests"])
        out.append(entry)
    return {"series": out}


def volume(rows: Rows) -> dict[str, Any]:
    """``rows``: (start, requests, failed, cancelled); failed excludes cancelled."""
    buckets = [_counts(int(requests), failed, cancelled) | {"start": int(start)}
               for start, requests, failed, cancelled in rows]  # fmt: skip
    totals = _counts(
        sum(b["requests"] for b in buckets),
        sum(b["failed"] for b in buckets),
        sum(b["cancelled"] for b in buckets),
    )
    return {"buckets": buckets, "totals": totals}


def devices(counts: Rows, percentiles: Rows) -> dict[str, Any]:
    """``counts``: (device, requests, failed, cancelled, sum of tok/s, n with tok/s,
    last seen); ``percentiles``: (device, n, p50, p90, p99) of TTFC."""
    ttfc_of = {row[0]: row[2:] for row in percentiles}
    out = []
    for device, requests, failed, cancelled, tok_s, with_tok_s, last_seen in counts:
        p50, p90, p99 = ttfc_of.get(device, (None, None, None))
        out.append(
            _counts(int(requests), failed, cancelled)
            | {
                "device_id": device,
                "ttfc_p50": p50,
                "ttfc_p90": p90,
                "ttfc_p99": p99,
                "avg_tok_s": _ratio(tok_s, with_tok_s),
                "last_seen": int(last_seen),
            }
        )
    return {"devices": out}


def phases(rows: Rows) -> dict[str, Any]:
    """``rows``: (model, engine, completed requests, the sums of their durations and of
    their queue, prefill and decode times). Each a mean per completed request (one that
    does not report a phase adds 0 to it), and ``other_ms``, the rest of the mean duration:
    what no phase accounts for (sampling, the server, the client)."""
    out = []
    for model, engine, requests, duration, *parts in rows:
        means = [part / requests for part in parts]
        mean = duration / requests
        out.append(
            {"model": model, "engine": engine, "requests": int(requests), "duration_ms": mean,
             **dict(zip(("queue_ms", "prefill_ms", "decode_ms"), means, strict=True)),
             "other_ms": max(mean - sum(means), 0.0)}
        )  # fmt: skip
    return {"models": out}


def dimensions(rows: Rows) -> dict[str, Any]:
    """``rows``: the (model, engine, device) combinations seen."""
    return {
        name: sorted({row[i] for row in rows})
        for i, name in enumerate(("models", "engines", "devices"))
    }


def nearest_ranks(ordered: Sequence[float]) -> tuple[float, ...]:
    """The ``PERCENTILES`` of sorted values, by nearest rank."""
    n = len(ordered)
    return tuple(ordered[-(-p * n // 100) - 1] for p in PERCENTILES)


def status(event_type: str, error_type: str | None) -> str:
    """How a request ended, from its ending event: completed, failed or cancelled."""
    if event_type == GENERATION_COMPLETED:
        return "completed"
    return "cancelled" if error_type == "cancelled" else "failed"


def request_list(rows: Rows) -> dict[str, Any]:
    """``rows``: (end, request id, model, engine, device, event type, error type, TTFC,
    output tokens, tok/s) of ending events, newest first."""
    return {
        "requests": [
            {"request_id": request_id, "ended": int(end), "model": model, "engine": engine,
             "device_id": device, "status": status(event_type, error_type),
             "error_type": error_type, "ttfc_ms": ttfc, "output_tokens": output_tokens,
             "throughput_tok_s": tok_s}
            for (end, request_id, model, engine, device, event_type, error_type, ttfc,
                 output_tokens, tok_s) in rows
        ]
    }  # fmt: skip


def request_detail(request_id: str, rows: Rows) -> dict[str, Any]:
    """``rows``: (event type, time, chunk index, the event's JSON) of every event of one
    request, in time order. Its metrics are its start's and its ending's (the ending's win)."""
    out: dict[str, Any] = {
        "request_id": request_id, "model": None, "engine": None, "device_id": None,
        "stream": None, "status": None, "error_type": None, "started": None, "ended": None,
        "trace_id": None, "span_id": None, "metrics": {}, "chunks": [],
    }  # fmt: skip
    for event_type, ts, index, body in rows:
        event = json.loads(body)
        metrics = event.get("metrics") or {}
        for name in ("model", "engine", "device_id", "stream", "trace_id", "span_id"):
            if name in event:
                out[name] = event[name]
        if event_type == CHUNK_PRODUCED:
            out["chunks"].append(
                {"index": int(index), "ts": int(ts), "latency_ms": metrics.get("chunk_latency_ms")}
            )
            continue
        out["metrics"].update((k, v) for k, v in metrics.items() if k != "error_type")
        if event_type == GENERATION_STARTED:
            out["started"] = int(ts)
        else:
            out["ended"] = int(ts)
            out["error_type"] = metrics.get("error_type")
            out["status"] = status(event_type, out["error_type"])
    return out


def _counts(requests: int, failed: Any, cancelled: Any) -> dict[str, Any]:
    failed, cancelled = int(failed or 0), int(cancelled or 0)
    return {
        "requests": requests,
        "completed": requests - failed - cancelled,
        "failed": failed,
        "cancelled": cancelled,
        "error_rate": _ratio(failed, requests),
        "cancelled_rate": _ratio(cancelled, requests),
    }
