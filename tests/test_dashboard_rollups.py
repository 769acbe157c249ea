"""The views over whole hours, whole minutes and the odd ends of a range: SQLite adds up
its rollups and the events at both ends, ClickHouse reads the events; both must answer
what the test computes from the requests themselves."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from octomil_otel.dashboard.batch import row_of
from octomil_otel.dashboard.model import Filters, Store

from .dashboards import HOUR, MINUTE, STORES, WALL0_MS, opened, request_events, store_url

H0 = WALL0_MS // HOUR * HOUR  # 14:00 on the test's day
MODELS = {"gemma": "llamacpp", "qwen": "mlx"}
DEVICES = ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc")


@dataclass(frozen=True)
class Request:
    n: int
    end: int
    model: str
    device: str
    outcome: str
    ttfc: float
    tok_s: float  # a multiple of 1/4: sums are exact in any order
    queue: float  # the time split's figures: multiples of 1/4 too
    prefill: float
    decode: float

    @property
    def engine(self) -> str:
        return MODELS[self.model]

    @property
    def phases(self) -> dict[str, float]:
        """What its ending reports: queue_ms either way, the engine's only when completed;
        the echo-like "qwen" requests that end in an odd minute report none."""
        if self.model == "qwen" and self.end // MINUTE % 2:
            return {}
        engine = {"prefill_ms": self.prefill, "decode_ms": self.decode}
        return {"queue_ms": self.queue, **(engine if self.outcome == "completed" else {})}

    def events(self) -> list[dict[str, Any]]:
        return request_events(
            self.n, self.end, model=self.model, engine=self.engine, device=self.device,
            outcome=self.outcome, latencies=(self.ttfc, 10.0), tok_s=self.tok_s,
            phases=self.phases,
        )  # fmt: skip


def make_requests(count: int, seed: int = 7) -> list[Request]:
    """Spread from 50 minutes before H0 to 4 h 10 min after it."""
    rng = random.Random(seed)
    return [
        Request(
            n,
            H0 - 50 * MINUTE + rng.randrange(300 * MINUTE),
            rng.choice(list(MODELS)),
            rng.choice(DEVICES),
            rng.choices(["completed", "failed", "cancelled"], [8, 1, 1])[0],
            round(rng.uniform(20, 900), 3),
            rng.randint(20, 320) / 4,
            rng.randint(0, 400) / 4,
            rng.randint(4, 800) / 4,
            rng.randint(4, 2000) / 4,
        )
        for n in range(1, count + 1)
    ]


REQUESTS = make_requests(240)


@pytest.fixture(scope="module", params=STORES)
def org_store(request, tmp_path_factory) -> Iterator[tuple[str, Store]]:
    with opened(store_url(request.param, tmp_path_factory.mktemp(request.param))) as store:
        org_id = store.create_org("rollups")
        events = [event for r in REQUESTS for event in r.events()]
        for start in range(0, len(events), 500):
            store.insert([row_of(org_id, event) for event in events[start : start + 500]])
        yield org_id, store


# --- what the views must say, from the requests ----------------------------------------


def chosen(
    start: int, end: int, model=None, engine=None, device_id=None, among=REQUESTS
) -> list[Request]:
    return [
        r for r in among
        if start <= r.end < end and model in (None, r.model) and engine in (None, r.engine)
        and device_id in (None, r.device)
    ]  # fmt: skip


def counts(requests: list[Request]) -> dict[str, Any]:
    n = len(requests)
    failed = sum(r.outcome == "failed" for r in requests)
    cancelled = sum(r.outcome == "cancelled" for r in requests)
    return {
        "requests": n, "completed": n - failed - cancelled, "failed": failed,
        "cancelled": cancelled, "error_rate": failed / n if n else None,
        "cancelled_rate": cancelled / n if n else None,
    }  # fmt: skip


def by(key, requests: list[Request]) -> dict[Any, list[Request]]:
    groups: dict[Any, list[Request]] = {}
    for r in requests:
        groups.setdefault(key(r), []).append(r)
    return dict(sorted(groups.items()))


def ranks(values: list[float]) -> tuple[float, ...]:
    ordered = sorted(values)
    return tuple(ordered[math.ceil(p * len(ordered) / 100) - 1] for p in (50, 90, 99))


def done(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.outcome == "completed"]


def volume(requests: list[Request], step: int) -> dict[str, Any]:
    return {
        "buckets": [counts(g) | {"start": s} for s, g in by(lambda r: r.end // step * step,
                                                           requests).items()],
        "totals": counts(requests),
    }  # fmt: skip


def averaged(requests: list[Request]) -> float:
    return sum(r.tok_s for r in requests) / len(requests)


def throughput(requests: list[Request], step: int) -> dict[str, Any]:
    series = []
    for (model, engine), group in by(lambda r: (r.model, r.engine), done(requests)).items():
        buckets = by(lambda r: r.end // step * step, group)
        series.append(
            {
                "model": model,
                "engine": engine,
                "requests": len(group),
                "output_tokens": 2 * len(group),
                "avg_tok_s": averaged(group),
                "buckets": [
                    {"start": s, "requests": len(g), "avg_tok_s": averaged(g)}
                    for s, g in buckets.items()
                ],
            }
        )
    return {"series": series}


def ttfc(requests: list[Request], step: int) -> dict[str, Any]:
    completed = done(requests)
    bounds = [50, 100, 200, 400, 800, 1600, 3200, 6400]
    edges = [0, *bounds, math.inf]
    buckets = by(lambda r: r.end // step * step, completed)
    return {
        "buckets": [
            {
                "start": s,
                "count": len(g),
                **dict(zip(("p50", "p90", "p99"), ranks([r.ttfc for r in g]), strict=True)),
            }
            for s, g in buckets.items()
        ],
        "distribution": {
            "bounds_ms": bounds,
            "counts": [
                sum(low < r.ttfc <= high for r in completed)
                for low, high in itertools.pairwise(edges)
            ],
        },
    }


def devices(requests: list[Request]) -> dict[str, Any]:
    out = []
    for device, group in by(lambda r: r.device, requests).items():
        completed = done(group)
        p50, p90, p99 = ranks([r.ttfc for r in completed]) if completed else (None,) * 3
        out.append(counts(group) | {
            "device_id": device, "ttfc_p50": p50, "ttfc_p90": p90, "ttfc_p99": p99,
            "avg_tok_s": sum(r.tok_s for r in completed) / len(completed) if completed else None,
            "last_seen": max(r.end for r in group),
        })  # fmt: skip
    return {"devices": out}


def phases(requests: list[Request]) -> dict[str, Any]:
    out = []
    for (model, engine), group in by(lambda r: (r.model, r.engine), done(requests)).items():
        n = len(group)
        means = {name: sum(r.phases.get(name, 0.0) for r in group) / n
                 for name in ("queue_ms", "prefill_ms", "decode_ms")}  # fmt: skip
        out.append({"model": model, "engine": engine, "requests": n, "duration_ms": 1000.0,
                    **means, "other_ms": 1000.0 - sum(means.values())})  # fmt: skip
    return {"models": out}


def dimensions(requests: list[Request]) -> dict[str, Any]:
    return {
        "models": sorted({r.model for r in requests}),
        "engines": sorted({r.engine for r in requests}),
        "devices": sorted({r.device for r in requests}),
    }


# --- the tests -------------------------------------------------------------------------

RANGES = {
    "odd ends": (H0 - 37 * MINUTE - 123, H0 + 4 * HOUR + 3 * MINUTE + 456),
    "whole hours": (H0, H0 + 3 * HOUR),
    "within an hour": (H0 + 10 * MINUTE + 5, H0 + 50 * MINUTE),
}
FILTERS = [{}, {"model": "qwen"}, {"engine": "llamacpp"}, {"device_id": "bbbbbbbbbbbb"}]
STEPS = {"hours": HOUR, "10 minutes": 10 * MINUTE, "minutes": MINUTE, "90 s": 90_000}


@pytest.mark.parametrize("span", RANGES)
@pytest.mark.parametrize("matches", FILTERS, ids=lambda f: ",".join(f) or "all")
@pytest.mark.parametrize("step", STEPS)
def test_series_add_up_to_the_requests(org_store, span, matches, step):
    org_id, store = org_store
    start, end = RANGES[span]
    scope = Filters(org_id, start, end, **matches)
    requests = chosen(start, end, **matches)
    assert store.volume(scope, STEPS[step]) == volume(requests, STEPS[step])
    assert store.throughput(scope, STEPS[step]) == throughput(requests, STEPS[step])
    assert store.ttfc(scope, STEPS[step]) == ttfc(requests, STEPS[step])


@pytest.mark.parametrize("span", RANGES)
@pytest.mark.parametrize("matches", FILTERS, ids=lambda f: ",".join(f) or "all")
def test_devices_and_dimensions_add_up_to_the_requests(org_store, span, matches):
    org_id, store = org_store
    start, end = RANGES[span]
    requests = chosen(start, end, **matches)
    assert store.devices(Filters(org_id, start, end, **matches)) == devices(requests)
    assert store.phases(Filters(org_id, start, end, **matches)) == phases(requests)
    assert store.dimensions(Filters(org_id, start, end)) == dimensions(chosen(start, end))
