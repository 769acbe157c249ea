"""The dashboard page in a real browser, against the real app over real HTTP.

Chromium (Debian's ``chromium`` at /usr/bin/chromium) driven by Playwright for Python; the
module skips where either is missing. The page's charts are Chart.js instances, so the
numbers they hold are read back from ``Chart.getChart(canvas)``.
"""

from __future__ import annotations

import calendar
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")

CHROMIUM = os.environ.get("OCTOMIL_TEST_CHROMIUM", "/usr/bin/chromium")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

from octomil_otel.dashboard.app import create_app  # noqa: E402
from octomil_otel.dashboard.model import TTFC_BOUNDS_MS  # noqa: E402
from octomil_otel.dashboard.stores import open_store  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

GEMMA = "gemma-3-270m"
# a model name that is also HTML: the page must show it as text and never run it
EVIL = '<img src=x onerror="window.__xss=1">qwen'
ENGINE = {GEMMA: "llamacpp", EVIL: "mlx"}
D1 = "a1b2c3d4e5f6"
D2 = "0f1e2d3c4b5a"

# minutes ago, model, device, outcome, TTFC ms, tok/s. Each request in its own minute and
# all 23 to 50 minutes ago: inside "1 h", outside "15 min".
REQUESTS = [
    (50, GEMMA, D1, "completed", 120, 40),
    (47, EVIL, D2, "completed", 60, 20),
    (44, GEMMA, D1, "completed", 180, 50),
    (41, GEMMA, D1, "timeout", None, None),
    (38, EVIL, D2, "completed", 75, 30),
    (35, GEMMA, D1, "completed", 250, 60),
    (32, EVIL, D2, "oom", None, None),
    (29, GEMMA, D1, "cancelled", None, None),
    (26, EVIL, D2, "completed", 3000, 40),
    (23, GEMMA, D1, "completed", 900, 50),
]
# TTFC buckets: <=50, 50-100, 100-200, 200-400, 400-800, 800-1600, 1600-3200, 3200-6400, >6400
ALL_DISTRIBUTION = [0, 2, 2, 1, 0, 1, 1, 0, 0]
GEMMA_DISTRIBUTION = [0, 0, 2, 1, 0, 1, 0, 0, 0]

CHARTS = ["ttfc-chart", "ttfc-dist-chart", "throughput-chart", "volume-chart", "devices-chart",
          "phases-chart"]  # fmt: skip
# where the time went, as GEMMA's requests report it (EVIL's report nothing): every request
# waited; the completed ones say how long the engine evaluated before and after the first token
GEMMA_QUEUE_MS = {"completed": 15, "failed": 30}
GEMMA_ENGINE_MS = {"prefill_ms": 150, "decode_ms": 600}
GAPS = (20.0, 21.0, 250.0, 19.0, 22.0)  # after the first chunk; 250 is a stall
TRACE_URL = "http://grafana.local/explore?traceId={trace_id}&orgId=1"
NONE = "\u2013"  # an en dash: what the page shows where there is no value


def utc_ms(minute: str) -> int:
    """A datetime-local value read as UTC (the browser's time zone in these tests)."""
    return calendar.timegm(time.strptime(minute, "%Y-%m-%dT%H:%M")) * 1000


def stamp(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def events(now_ms: int, requests_: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for n, (minutes, model, device, outcome, ttfc, tok_s) in enumerate(requests_):
        end = now_ms - minutes * 60_000
        common = {
            "model": model,
            "engine": ENGINE[model],
            "device_id": device,
            "request_id": f"req_{n:04x}{device}",
            "stream": True,
        }
        trace = {"trace_id": f"{n + 1:032x}", "span_id": f"{n + 1:016x}"}
        # a start is no request of its own: the views count ends only; nor are chunks
        out.append({**common, **trace, "event_type": "generation_started",
                    "timestamp": stamp(end - 1500), "metrics": {"input_tokens": 12}})  # fmt: skip
        if outcome == "completed":
            at = end - 1500
            for index, latency in enumerate((ttfc, *GAPS)):
                at += latency
                metrics = {"chunk_index": index, "chunk_latency_ms": latency}
                out.append({**common, "event_type": "chunk_produced",
                            "timestamp": stamp(int(at)), "metrics": metrics})  # fmt: skip
            kind = "generation_completed"
            metrics = {
                "ttfc_ms": ttfc,
                "throughput_tok_s": tok_s,
                "total_duration_ms": 1500,
                "input_tokens": 12,
                "output_tokens": 64,
            }
            if model == GEMMA:
                metrics |= {"queue_ms": GEMMA_QUEUE_MS["completed"], **GEMMA_ENGINE_MS}
        else:  # failed: "cancelled" is counted apart from the errors
            kind = "generation_failed"
            metrics = {"error_type": outcome, "total_duration_ms": 900}
            if model == GEMMA:
                metrics["queue_ms"] = GEMMA_QUEUE_MS["failed"]
        out.append({**common, **trace, "event_type": kind, "timestamp": stamp(end),
                    "metrics": metrics})  # fmt: skip
    return out


@dataclass
class Dashboard:
    base: str
    key: str
    other_key: str  # another org's
    now_ms: int

    def ingest(self, key: str, batch: list[dict[str, Any]]) -> None:
        response = requests.post(
            f"{self.base}/api/v1/telemetry/events",
            json={"events": batch},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": len(batch)}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    store = open_store("sqlite:///" + str(tmp_path_factory.mktemp("dashboard") / "events.db"))
    org = store.create_org("page test")
    _, key = store.create_key(org, "page test")
    _, other_key = store.create_key(store.create_org("another org"), "other")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store, trace_url=TRACE_URL),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.02)
    now_ms = int(time.time() * 1000)
    board = Dashboard(f"http://127.0.0.1:{port}", key, other_key, now_ms)
    board.ingest(key, events(now_ms, REQUESTS))
    # the other org's events, at the same times: never on this org's page
    others = [(minutes, GEMMA, D2, "completed", 5, 5) for minutes in range(21, 52, 2)]
    board.ingest(other_key, events(now_ms, others))
    try:
        yield board
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Pages in fresh contexts (their own session storage), UTC and en-US, 1366x768."""
    contexts = []

    def make(width: int = 1366, height: int = 768) -> Any:
        context = browser.new_context(
            viewport={"width": width, "height": height}, locale="en-US", timezone_id="UTC"
        )
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()


# --- reading the page ----------------------------------------------------------------


def wait_loaded(page: Any, after: int, timeout: float = 10_000, **filters: Any) -> int:
    """Wait for a load past ``after`` that used ``filters``; its number."""
    page.wait_for_function(
        """([after, want]) => {
            const hook = window.octomilDashboard;
            return hook && hook.loads > after &&
                Object.entries(want).every(([k, v]) => hook.loaded[k] === v);
        }""",
        arg=[after, filters],
        timeout=timeout,
    )
    return loads(page)


def loads(page: Any) -> int:
    return page.evaluate("window.octomilDashboard.loads")


def charts(page: Any) -> dict[str, dict[str, Any]]:
    """Every canvas's Chart.js instance: its size, labels and datasets by label."""
    return page.evaluate(
        """(ids) => Object.fromEntries(ids.map((id) => {
            const chart = Chart.getChart(id);
            return [id, chart && {
                width: chart.width, height: chart.height, labels: chart.data.labels,
                data: Object.fromEntries(chart.data.datasets.map((d) => [d.label, d.data])),
            }];
        }))""",
        CHARTS,
    )


def values(series: list[Any]) -> list[Any]:
    return sorted(v for v in series if v is not None)


def device_rows(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#devices-table tbody tr",
        "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))",
    )


def text(page: Any, selector: str) -> str:
    return page.locator(selector).text_content()


def open_dashboard(dashboard: Dashboard, page: Any) -> None:
    page.goto(f"{dashboard.base}/?key={dashboard.key}")
    wait_loaded(page, 0, range="1h", model="")


# --- the tests -------------------------------------------------------------------------


def test_the_key_is_kept_and_the_four_views_show_the_data(
    dashboard: Dashboard, new_page: Any
) -> None:
    page = new_page()
    open_dashboard(dashboard, page)

    # the key left the address bar and lives in the session
    assert page.url == f"{dashboard.base}/"
    assert page.evaluate("sessionStorage.getItem('octomil.key')") == dashboard.key
    assert page.locator("#key-view").is_hidden()

    shown = charts(page)
    for name, chart in shown.items():
        assert chart is not None, name
        if name == "devices-chart":  # behind the table until asked for
            continue
        assert chart["width"] > 150 and chart["height"] > 100, (name, chart)

    # (1) TTFC: one completed request per minute bucket, so each percentile is that TTFC
    ttfc = shown["ttfc-chart"]["data"]
    completed_ttfc = [60, 75, 120, 180, 250, 900, 3000]
    assert values(ttfc["p50"]) == values(ttfc["p90"]) == values(ttfc["p99"]) == completed_ttfc
    assert len(ttfc["p50"]) in (60, 61)  # one point per minute of the hour
    assert shown["ttfc-dist-chart"]["data"]["Requests"] == ALL_DISTRIBUTION
    ranges = [f"{low}\u2013{high}" for low, high in itertools.pairwise(TTFC_BOUNDS_MS)]
    assert shown["ttfc-dist-chart"]["labels"] == ["\u226450", *ranges, ">6400"]  # ≤, en dash
    assert text(page, "#ttfc-sub").startswith("7 completed requests")

    # (2) throughput: one line per model and engine
    throughput = shown["throughput-chart"]["data"]
    assert set(throughput) == {f"{GEMMA} · llamacpp", f"{EVIL} · mlx"}
    assert values(throughput[f"{GEMMA} · llamacpp"]) == [40, 50, 50, 60]
    assert values(throughput[f"{EVIL} · mlx"]) == [20, 30, 40]
    assert text(page, "#throughput-sub") == (
        "2 model/engine pairs · 7 requests · 41.4 tok/s average"
    )

    # (3) volume: stacked outcomes per bucket and the error rate (failed, not cancelled)
    volume = shown["volume-chart"]["data"]
    assert (sum(volume["Completed"]), sum(volume["Failed"]), sum(volume["Cancelled"])) == (7, 2, 1)
    assert values(volume["Error rate"]) == [0] * 8 + [100, 100]
    assert text(page, "#volume-sub") == "10 requests · 20.0% failed · 10.0% cancelled"

    # (4) devices: the table, busiest first
    last_seen = {D1: dashboard.now_ms - 23 * 60_000, D2: dashboard.now_ms - 26 * 60_000}
    rows = device_rows(page)
    assert [row[:7] for row in rows] == [
        [D1, "6", "16.7%", "180 ms", "900 ms", "900 ms", "50.0"],
        [D2, "4", "25.0%", "75 ms", "3,000 ms", "3,000 ms", "30.0"],
    ]
    for row, device in zip(rows, (D1, D2), strict=True):
        assert row[7].endswith(time.strftime("%H:%M:%S", time.gmtime(last_seen[device] / 1000)))
        title = page.locator(f'#devices-table tr[data-device="{device}"] td').last
        assert title.get_attribute("title") == stamp(last_seen[device])
    assert page.locator(f'tr[data-device="{D1}"] td').nth(1).get_attribute("title") == (
        "4 completed, 1 failed, 1 cancelled"
    )
    assert text(page, "#devices-sub") == "2 devices"

    # (5) where the time went: a bar per model, the mean per request of each phase
    phases = shown["phases-chart"]
    assert phases["labels"] == [f"{EVIL} (mlx)", f"{GEMMA} (llamacpp)"]
    # over the completed requests (1500 ms each): GEMMA's 4, EVIL's 3
    assert phases["data"] == {
        "Queue": [0, 15],
        "Prefill": [0, 150],
        "Decode": [0, 600],
        "Other": [1500, 1500 - 15 - 150 - 600],
    }
    assert text(page, "#phases-sub") == "mean per completed request, over 7 requests"

    # the model filter offers both models, as text: nothing in the data ran as HTML
    options = page.eval_on_selector_all("#model option", "(os) => os.map((o) => o.value)")
    assert options == ["", EVIL, GEMMA]
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0

    assert text(page, "#updated").startswith("Updated ")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

    # a series hidden from the legend stays hidden when the views reload
    box = page.locator("#throughput-chart").bounding_box()
    hit = page.evaluate(
        """(label) => {
            const chart = Chart.getChart('throughput-chart');
            const i = chart.legend.legendItems.findIndex((item) => item.text === label);
            const box = chart.legend.legendHitBoxes[i];
            return {x: box.left + box.width / 2, y: box.top + box.height / 2};
        }""",
        f"{GEMMA} · llamacpp",
    )
    page.mouse.click(box["x"] + hit["x"], box["y"] + hit["y"])
    n = loads(page)
    page.click('#range button[data-range="1h"]')
    wait_loaded(page, n, range="1h")
    assert page.evaluate(
        """(label) => {
            const chart = Chart.getChart('throughput-chart');
            return chart.data.datasets.map((d, i) => [d.label, chart.isDatasetVisible(i)]);
        }""",
        f"{GEMMA} · llamacpp",
    ) == [[f"{EVIL} · mlx", True], [f"{GEMMA} · llamacpp", False]]

    # the device chart: TTFC percentiles per device
    page.click('#devices-view button[data-view="chart"]')
    page.wait_for_selector("#devices-chart", state="visible")  # sized once shown
    assert page.locator("#devices-table").is_hidden()
    device_chart = charts(page)["devices-chart"]
    assert device_chart["labels"] == [D1, D2]
    assert device_chart["data"] == {"p50": [180, 75], "p90": [900, 3000], "p99": [900, 3000]}
    assert device_chart["width"] > 150 and device_chart["height"] > 100
    page.screenshot(path=str(ARTIFACTS / "dashboard-devices-chart.png"))

    # the key stays for the session: a reload needs no key in the address
    page.reload()
    wait_loaded(page, 0, range="1h", model="")
    assert page.locator("#app").is_visible()
    assert page.errors == []

    # and at 1920x1080
    wide = new_page(1920, 1080)
    open_dashboard(dashboard, wide)
    wide.screenshot(path=str(ARTIFACTS / "dashboard-1920.png"))
    assert wide.errors == []


def test_the_model_filter_and_the_time_range_reload_every_view(
    dashboard: Dashboard, new_page: Any
) -> None:
    page = new_page()
    open_dashboard(dashboard, page)

    n = loads(page)
    page.select_option("#model", GEMMA)
    n = wait_loaded(page, n, range="1h", model=GEMMA)
    shown = charts(page)
    assert values(shown["ttfc-chart"]["data"]["p50"]) == [120, 180, 250, 900]
    assert shown["ttfc-dist-chart"]["data"]["Requests"] == GEMMA_DISTRIBUTION
    assert list(shown["throughput-chart"]["data"]) == [f"{GEMMA} · llamacpp"]
    volume = shown["volume-chart"]["data"]
    assert (sum(volume["Completed"]), sum(volume["Failed"]), sum(volume["Cancelled"])) == (4, 1, 1)
    assert [row[:2] for row in device_rows(page)] == [[D1, "6"]]
    assert text(page, "#volume-sub") == "6 requests · 16.7% failed · 16.7% cancelled"
    # the filter still offers every model of the range
    assert page.eval_on_selector_all("#model option", "(os) => os.length") == 3

    page.select_option("#model", EVIL)  # a name that must survive the query string
    n = wait_loaded(page, n, range="1h", model=EVIL)
    shown = charts(page)
    assert values(shown["ttfc-chart"]["data"]["p50"]) == [60, 75, 3000]
    assert list(shown["throughput-chart"]["data"]) == [f"{EVIL} · mlx"]
    volume = shown["volume-chart"]["data"]
    assert (sum(volume["Completed"]), sum(volume["Failed"]), sum(volume["Cancelled"])) == (3, 1, 0)
    assert [row[:3] for row in device_rows(page)] == [[D2, "4", "25.0%"]]

    # the last 15 minutes hold nothing: every view empties
    page.select_option("#model", "")
    n = wait_loaded(page, n, model="")
    page.click('#range button[data-range="15m"]')
    n = wait_loaded(page, n, range="15m", model="")
    assert page.locator('#range button[data-range="15m"]').get_attribute("aria-pressed") == "true"
    shown = charts(page)
    assert all(v is None for d in shown["ttfc-chart"]["data"].values() for v in d)
    assert shown["ttfc-dist-chart"]["data"]["Requests"] == [0] * 9
    assert shown["throughput-chart"]["data"] == {}
    volume = shown["volume-chart"]["data"]
    assert sum(volume["Completed"]) == sum(volume["Failed"]) == sum(volume["Cancelled"]) == 0
    assert device_rows(page) == [["No devices in this range"]]
    for empty in ("#ttfc-empty", "#throughput-empty", "#volume-empty"):
        assert page.locator(empty).is_visible(), empty
    page.screenshot(path=str(ARTIFACTS / "dashboard-empty.png"))
    # no model in the range: only "All models"
    assert page.eval_on_selector_all("#model option", "(os) => os.map((o) => o.text)") == [
        "All models"
    ]

    # the other presets reach back far enough
    for preset in ("6h", "24h", "7d"):
        page.click(f'#range button[data-range="{preset}"]')
        n = wait_loaded(page, n, range=preset)
        assert sum(charts(page)["volume-chart"]["data"]["Completed"]) == 7, preset
    assert page.locator("#custom").is_hidden()

    # a custom range, 45.5 to 33.5 minutes ago (the page's inputs are local time: UTC here)
    page.click('#range button[data-range="custom"]')
    n = wait_loaded(page, n, range="custom")
    assert page.locator("#from").is_visible() and page.locator("#to").is_visible()

    def local(minutes_ago: float) -> str:
        ms = dashboard.now_ms - minutes_ago * 60_000
        return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(ms / 1000))

    page.fill("#from", local(45.5))
    page.fill("#to", local(33.5))
    window = {"from": utc_ms(local(45.5)), "to": utc_ms(local(33.5))}
    n = wait_loaded(page, n, range="custom", **window)
    volume = charts(page)["volume-chart"]["data"]
    # 44 and 35 minutes ago (gemma), 38 (the other), 41 (gemma, failed)
    assert (sum(volume["Completed"]), sum(volume["Failed"]), sum(volume["Cancelled"])) == (3, 1, 0)
    assert text(page, "#volume-sub") == "4 requests · 25.0% failed · 0.0% cancelled"
    page.screenshot(path=str(ARTIFACTS / "dashboard-custom.png"))
    assert page.errors == []


def test_without_a_key_the_page_asks_for_one(dashboard: Dashboard, new_page: Any) -> None:
    page = new_page()
    queries: list[str] = []
    page.on("request", lambda r: queries.append(r.url) if "/api/" in r.url else None)
    page.goto(f"{dashboard.base}/")
    page.wait_for_selector("#key-form", state="visible")
    assert page.locator("#app").is_hidden()
    assert page.locator("#key-error").is_hidden()
    assert queries == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-key.png"))

    # the key typed into the form opens the dashboard and stays for the session
    page.fill("#key-input", dashboard.key)
    page.click("#key-form button[type=submit]")
    wait_loaded(page, 0, range="1h")
    assert page.locator("#key-view").is_hidden()
    assert sum(charts(page)["volume-chart"]["data"]["Completed"]) == 7
    assert page.evaluate("sessionStorage.getItem('octomil.key')") == dashboard.key
    assert all(q.startswith(f"{dashboard.base}/api/") for q in queries)

    # "Forget key" forgets it
    page.click("#forget")
    page.wait_for_selector("#key-form", state="visible")
    assert page.evaluate("sessionStorage.getItem('octomil.key')") is None
    assert page.errors == []


def test_a_wrong_key_is_refused_and_the_page_asks_again(
    dashboard: Dashboard, new_page: Any
) -> None:
    page = new_page()
    page.goto(f"{dashboard.base}/?key=sk-not-a-key&tab=x")
    page.wait_for_selector("#key-form", state="visible")
    assert page.url == f"{dashboard.base}/?tab=x"  # the key went, the rest stayed
    assert page.locator("#app").is_hidden()
    assert "not accepted" in text(page, "#key-error")
    assert page.evaluate("sessionStorage.getItem('octomil.key')") is None

    page.fill("#key-input", "sk-still-wrong")
    page.click("#key-form button[type=submit]")
    page.wait_for_function("document.querySelector('#key-input').value === ''")
    assert page.locator("#key-form").is_visible()
    assert "not accepted" in text(page, "#key-error")
    assert page.evaluate("window.octomilDashboard.loads") == 0
    page.screenshot(path=str(ARTIFACTS / "dashboard-wrong-key.png"))
    assert page.errors == []


def test_the_page_refreshes_itself_every_10_seconds(dashboard: Dashboard, new_page: Any) -> None:
    # the other org: its 16 requests, then one more while the page is open
    page = new_page()
    page.goto(f"{dashboard.base}/?key={dashboard.other_key}")
    n = wait_loaded(page, 0, range="1h")
    assert sum(charts(page)["volume-chart"]["data"]["Completed"]) == 16
    assert [row[:2] for row in device_rows(page)] == [[D2, "16"]]
    first = text(page, "#updated")

    now_ms = int(time.time() * 1000)
    dashboard.ingest(dashboard.other_key, events(now_ms, [(2, EVIL, D1, "completed", 42, 7)]))
    started = time.monotonic()
    wait_loaded(page, n, timeout=15_000, range="1h")
    waited = time.monotonic() - started
    assert waited < 12, waited
    assert sum(charts(page)["volume-chart"]["data"]["Completed"]) == 17
    assert [row[:2] for row in device_rows(page)] == [[D2, "16"], [D1, "1"]]
    assert text(page, "#updated").startswith("Updated ")
    assert text(page, "#updated") != first
    assert page.errors == []


# --- the request explorer ------------------------------------------------------------


def request_rows(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#requests-table tbody tr",
        "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))",
    )


def request_facts(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#request-metrics > div",
        "(items) => items.map((i) => [...i.children].map((c) => c.textContent))",
    )


def listed(dashboard: Dashboard, minutes: int) -> list[str]:
    """Request ``minutes`` ago's row, but for its time (checked apart)."""
    ((_, model, device, outcome, ttfc, tok_s),) = [r for r in REQUESTS if r[0] == minutes]
    if outcome == "completed":
        return [model, ENGINE[model], device, "Completed", f"{ttfc:,} ms", "64", f"{tok_s:.1f}"]
    status = "Cancelled" if outcome == "cancelled" else f"Failed: {outcome}"
    return [model, ENGINE[model], device, status, NONE, NONE, NONE]


def full(ms: int) -> str:
    """``fmtFull`` in en-US and UTC: ``Nov 30 22:51:03``."""
    return time.strftime("%b %-d %H:%M:%S", time.gmtime(ms // 1000))


def test_the_request_explorer_lists_filters_and_opens_requests(
    dashboard: Dashboard, new_page: Any
) -> None:
    page = new_page()
    open_dashboard(dashboard, page)

    # the requests of the range, newest first; times in the first column
    rows = request_rows(page)
    minutes = sorted(r[0] for r in REQUESTS)
    assert [row[1:] for row in rows] == [listed(dashboard, m) for m in minutes]
    for row, m in zip(rows, minutes, strict=True):
        ended = dashboard.now_ms - m * 60_000
        assert row[0].endswith(time.strftime("%H:%M:%S", time.gmtime(ended / 1000)))
    assert text(page, "#requests-sub") == "10 requests · open one for its chunks and trace"
    page.locator("#card-requests").scroll_into_view_if_needed()
    wrap = "document.querySelector('#card-requests .table-wrap')"
    assert page.evaluate(f"{wrap}.scrollHeight <= {wrap}.clientHeight")  # no row cut off
    assert page.evaluate("window.__xss") is None and page.locator("img").count() == 0

    # its own filters, with the page's model filter
    n = loads(page)
    page.select_option("#request-status", "failed")
    n = wait_loaded(page, n, status="failed")
    assert [row[1:] for row in request_rows(page)] == [listed(dashboard, m) for m in (32, 41)]
    assert sum(charts(page)["volume-chart"]["data"]["Completed"]) == 7  # the views stay whole
    page.select_option("#request-status", "")
    n = wait_loaded(page, n, status="")
    options = page.eval_on_selector_all("#request-device option", "(os) => os.map((o) => o.value)")
    assert options == ["", D2, D1]
    page.select_option("#request-device", D2)
    n = wait_loaded(page, n, device=D2)
    assert [row[1:] for row in request_rows(page)] == [
        listed(dashboard, m) for m in (26, 32, 38, 47)
    ]
    page.select_option("#request-status", "completed")
    n = wait_loaded(page, n, status="completed", device=D2)
    assert [row[1:] for row in request_rows(page)] == [listed(dashboard, m) for m in (26, 38, 47)]
    page.select_option("#request-status", "")
    page.select_option("#request-device", "")
    page.select_option("#model", GEMMA)
    n = wait_loaded(page, n, model=GEMMA, status="", device="")
    gemma = sorted(r[0] for r in REQUESTS if r[1] == GEMMA)
    assert [row[1:] for row in request_rows(page)] == [listed(dashboard, m) for m in gemma]
    page.click('#range button[data-range="15m"]')
    n = wait_loaded(page, n, range="15m")
    assert request_rows(page) == [["No requests in this range"]]
    page.select_option("#model", "")
    page.click('#range button[data-range="1h"]')
    n = wait_loaded(page, n, range="1h", model="")

    # a completed request opens with its metrics, trace link and chunk chart
    ended = dashboard.now_ms - 23 * 60_000
    page.click(f'#requests-table tr[data-request="req_0009{D1}"]')
    page.wait_for_function("window.octomilDashboard.requestLoads === 1")
    assert page.locator("#request-dialog").is_visible()
    assert text(page, "#request-id") == f"req_0009{D1}"
    assert text(page, "#request-badge") == "Completed"
    facts = page.eval_on_selector_all(
        "#request-metrics > div",
        "(ds) => ds.map((d) => [d.children[0].textContent, d.children[1].textContent])",
    )
    assert facts == [
        ["Model", f"{GEMMA} · llamacpp"],
        ["Device", D1],
        ["Started", full(ended - 1500)],
        ["Ended", full(ended)],
        ["Duration", "1,500 ms"],
        ["Queue", "15 ms"],
        ["TTFC", "900 ms"],
        ["Prefill", "150 ms"],
        ["Decode", "600 ms"],
        ["Input tokens", "12"],
        ["Output tokens", "64"],
        ["Throughput", "50.0 tok/s"],
    ]
    trace_id = f"{10:032x}"
    assert text(page, "#request-trace-id") == trace_id
    link = page.locator("#request-trace-link")
    assert link.is_visible()
    assert link.get_attribute("href") == TRACE_URL.replace("{trace_id}", trace_id)
    assert (link.get_attribute("target"), link.get_attribute("rel")) == (
        "_blank",
        "noopener noreferrer",
    )
    chart = page.evaluate(
        """() => {
            const c = Chart.getChart('request-chart');
            return {labels: c.data.labels, data: c.data.datasets[0].data,
                    colors: c.data.datasets[0].backgroundColor, width: c.width, height: c.height};
        }"""
    )
    assert chart["labels"] == [0, 1, 2, 3, 4, 5]
    assert chart["data"] == [900, *GAPS]  # numbers as sent
    first, chunk, stall = "#6366f1", "#2563eb", "#dc2626"
    assert chart["colors"] == [first, chunk, chunk, stall, chunk, chunk]
    assert chart["width"] > 300 and chart["height"] > 150
    assert text(page, "#request-chunks-sub") == (
        "6 chunks · first 900 ms · median gap 21 ms · 1 stall (over 4\u00d7 the median gap)"
    )
    page.screenshot(path=str(ARTIFACTS / "dashboard-request.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#request-dialog", state="hidden")

    # a failed one, from the keyboard: its error, no chunks
    page.focus(f'#requests-table tr[data-request="req_0003{D1}"]')
    page.keyboard.press("Enter")
    page.wait_for_function("window.octomilDashboard.requestLoads === 2")
    assert text(page, "#request-badge") == "Failed"
    facts = page.eval_on_selector_all(
        "#request-metrics > div",
        "(ds) => ds.map((d) => [d.children[0].textContent, d.children[1].textContent])",
    )
    ended = dashboard.now_ms - 41 * 60_000
    assert facts == [
        ["Model", f"{GEMMA} · llamacpp"],
        ["Device", D1],
        ["Started", full(ended - 1500)],
        ["Ended", full(ended)],
        ["Duration", "900 ms"],
        ["Queue", "30 ms"],
        ["Input tokens", "12"],
        ["Error", "timeout"],
    ]
    assert text(page, "#request-chunks-sub") == "No chunks"
    assert page.evaluate("Chart.getChart('request-chart').data.datasets[0].data") == []
    page.click("#request-close")
    page.wait_for_selector("#request-dialog", state="hidden")
    page.locator("#card-requests").screenshot(path=str(ARTIFACTS / "dashboard-requests.png"))
    assert page.errors == []
