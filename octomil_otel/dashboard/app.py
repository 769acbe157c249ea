"""The dashboard's HTTP API: ingest as the hosted API, queries as JSON, the page at ``/``.

Every call but the page itself takes ``Authorization: Bearer <key>``; a key sees its own
org's events and no other's. The page is static: it keeps the key from ``/?key=...`` for
the browser session and calls the JSON API with it.

Query API (``GET /api/v1/query/<name>``), all taking ``from`` and ``to`` (ms since the epoch
or RFC 3339; default: the last hour), ``model``, ``engine``, ``device`` and, for series,
``step`` (seconds; default: about 60 buckets over the range):

* ``ttfc``: per bucket, completed requests' TTFC p50/p90/p99 (nearest rank), and the
  distribution over ``bounds_ms``;
* ``throughput``: per model and engine, requests and average tok/s, per bucket and overall;
* ``volume``: per bucket and overall, requests, completed, failed, cancelled, error and
  cancellation rates (failed excludes cancelled);
* ``devices``: per device, those counts, TTFC percentiles, average tok/s, last seen;
* ``phases``: per model and engine, over its completed requests (``requests``), the mean
  of their duration and of the time they waited for the engine (``queue_ms``), the
  engine's evaluation before the first token (``prefill_ms``) and after it
  (``decode_ms``), and the rest (``other_ms``);
* ``dimensions``: the models, engines and devices seen in the range (for filters);
* ``requests``: the requests that ended last (``limit``, default 100, at most 1,000), newest
  first, each with its status (``completed``, ``failed``, ``cancelled``; ``status`` filters
  by it), TTFC, output tokens and tok/s;
* ``requests/{request_id}``: one request (no range): its status, error type, start and
  end, metrics, trace and span ids, ``trace_url`` (from ``--trace-url``), and every chunk's
  time and latency, in order; 404 if this org has no such request.
"""

# no ``from __future__ import annotations``: FastAPI must see the dependency types defined
# inside create_app at run time
import datetime
import time
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from octomil_otel.dashboard import retention, traces
from octomil_otel.dashboard.batch import rows_of
from octomil_otel.dashboard.model import Filters, Store
from octomil_otel.dashboard.queries import STATUS
from octomil_otel.ingest import MAX_BODY_BYTES, BatchError, check_length

MAX_BUCKETS = 1000
MAX_REQUESTS = 1000


class _Problem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(
    store: Store, *, trace_url: str | None = None, retention_days: int | None = None
) -> FastAPI:
    """``trace_url``: a ``traces.checked_template``; ``retention_days``: None keeps all."""
    app = FastAPI(
        title="Octomil local API and dashboard",
        docs_url="/api/docs",
        lifespan=lambda _: retention.kept(store, retention_days),
    )
    static = resources.files("octomil_otel.dashboard") / "static"

    @app.exception_handler(_Problem)
    async def problem(request: Request, exc: _Problem) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    def org(authorization: Annotated[str | None, Header()] = None) -> str:
        key = (
            authorization[len("Bearer ") :]
            if authorization and authorization.startswith("Bearer ")
            else None
        )
        org_id = store.org_of(key) if key else None
        if org_id is None:
            raise _Problem(401, "a valid API key is required: Authorization: Bearer <key>")
        return org_id

    Org = Annotated[str, Depends(org)]

    @app.post("/api/v1/telemetry/events", status_code=202)
    async def ingest(request: Request, org_id: Org) -> dict[str, int]:
        try:
            body = await _body(request)
            rows = rows_of(body, request.headers.get("content-encoding"), org_id)
        except BatchError as error:
            raise _Problem(error.status, str(error)) from None
        store.insert(rows)
        return {"accepted": len(rows)}

    @app.get("/api/v1/auth/whoami")
    def whoami(org_id: Org) -> dict[str, str]:
        return {"org_id": org_id}

    def filters(
        org_id: Org,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
        model: str | None = None,
        engine: str | None = None,
        device: str | None = None,
    ) -> Filters:
        end_ms = _instant("to", end) if end else int(time.time() * 1000)
        start_ms = _instant("from", start) if start else end_ms - 3_600_000
        if start_ms >= end_ms:
            raise _Problem(400, "'from' must be before 'to'")
        return Filters(org_id, start_ms, end_ms, model, engine, device)

    Scope = Annotated[Filters, Depends(filters)]

    def step(scope: Scope, step: float | None = None) -> int:
        span = scope.end - scope.start
        if step is not None and not 0.001 <= step < LATEST_MS / 1000:  # and not nan or inf
            raise _Problem(400, "'step' must be a number of seconds, 0.001 or more")
        step_ms = int(step * 1000) if step else max(1000, -(-span // 60))
        if -(-span // step_ms) > MAX_BUCKETS:
            raise _Problem(400, f"'step' gives over {MAX_BUCKETS} buckets for this range")
        return step_ms

    Step = Annotated[int, Depends(step)]

    @app.get("/api/v1/query/ttfc")
    def ttfc(scope: Scope, step_ms: Step) -> dict[str, Any]:
        return {"step_ms": step_ms, **store.ttfc(scope, step_ms)}

    @app.get("/api/v1/query/throughput")
    def throughput(scope: Scope, step_ms: Step) -> dict[str, Any]:
        return {"step_ms": step_ms, **store.throughput(scope, step_ms)}

    @app.get("/api/v1/query/volume")
    def volume(scope: Scope, step_ms: Step) -> dict[str, Any]:
        return {"step_ms": step_ms, **store.volume(scope, step_ms)}

    @app.get("/api/v1/query/devices")
    def devices(scope: Scope) -> dict[str, Any]:
        return store.devices(scope)

    @app.get("/api/v1/query/phases")
    def phases(scope: Scope) -> dict[str, Any]:
        return store.phases(scope)

    @app.get("/api/v1/query/dimensions")
    def dimensions(scope: Scope) -> dict[str, Any]:
        return store.dimensions(scope)

    @app.get("/api/v1/query/requests")
    def requests(scope: Scope, status: str | None = None, limit: int = 100) -> dict[str, Any]:
        if status is not None and status not in STATUS:
            raise _Problem(400, f"'status' must be one of {', '.join(STATUS)}")
        if not 1 <= limit <= MAX_REQUESTS:
            raise _Problem(400, f"'limit' must be 1 to {MAX_REQUESTS}")
        return {"limit": limit, **store.requests(scope, status, limit)}

    @app.get("/api/v1/query/requests/{request_id}")
    def request_detail(request_id: str, org_id: Org) -> dict[str, Any]:
        found = store.request(org_id, request_id)
        if found is None:
            raise _Problem(404, f"no request {request_id!r} in this org")
        trace_id = found["trace_id"]
        found["trace_url"] = traces.link(trace_url, trace_id) if trace_url and trace_id else None
        return found

    @app.get("/", response_class=HTMLResponse)
    def page() -> Response:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


async def _body(request: Request) -> bytes:
    """The request's body, refused (``BatchError`` 413) once it is longer than any gzip of
    a 1 MiB batch can be, without reading the rest into memory."""
    check_length(request.headers.get("content-length"))
    body = bytearray()
    try:
        async for part in request.stream():
            body += part
            if len(body) > MAX_BODY_BYTES:  # a chunked body declares no length
                raise BatchError(413, "the body is over 1 MiB")
    except ClientDisconnect:  # nobody to answer; no traceback in the log either
        raise BatchError(400, "the client left before the body ended") from None
    return bytes(body)


LATEST_MS = 253_402_300_800_000
"""The year 10000: an instant past it is refused (it would overflow the stores' integers)."""


def _instant(name: str, value: str) -> int:
    """ms since the epoch, from an integer or an RFC 3339 time (its offset honoured; one
    without an offset is UTC)."""
    try:
        if value.isascii() and value.isdigit():
            ms = int(value)
        else:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            ms = round(moment.timestamp() * 1000)
    except ValueError:
        raise _Problem(400, f"'{name}' must be ms since the epoch or an RFC 3339 time") from None
    if not 0 <= ms < LATEST_MS:
        raise _Problem(400, f"'{name}' must be between 1970 and the year 10000")
    return ms
