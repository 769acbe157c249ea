"""--retention-days: old events go, with what sums them up, on every store; and the
dashboard's own options refuse bad values in one line."""

from __future__ import annotations

import time

import pytest

from octomil_otel.cli import main
from octomil_otel.dashboard.batch import row_of
from octomil_otel.dashboard.model import Filters

from .dashboards import HOUR, MINUTE, STORES, opened, request_events, served, store_url

DAY = 24 * HOUR


@pytest.mark.parametrize("kind", STORES)
def test_drop_before_deletes_whole_hours_and_their_sums(kind, tmp_path):
    h0 = 1_771_509_600_000  # 2026-02-19T14:00:00Z
    ends = [h0 - 2 * HOUR + 5 * MINUTE, h0 - 30 * MINUTE, h0 + 10 * MINUTE, h0 + 70 * MINUTE]
    with opened(store_url(kind, tmp_path)) as store:
        org_id = store.create_org("retention")
        store.insert(
            [row_of(org_id, e) for n, end in enumerate(ends, 1) for e in request_events(n, end)]
        )
        scope = Filters(org_id, h0 - 3 * HOUR, h0 + 3 * HOUR)
        assert store.volume(scope, HOUR)["totals"]["requests"] == 4

        store.drop_before(h0 + 15 * MINUTE)  # from the start of that hour: h0

        for step in (HOUR, MINUTE):  # SQLite: the hour and the minute rollups
            assert [(b["start"], b["requests"]) for b in store.volume(scope, step)["buckets"]] == [
                (end // step * step, 1) for end in ends[2:]
            ]
        assert [d["requests"] for d in store.devices(scope)["devices"]] == [2]
        listed = store.requests(scope, None, 100)["requests"]
        assert [r["request_id"] for r in listed] == ["req_00000004", "req_00000003"]
        assert store.request(org_id, "req_00000002") is None
        assert len(store.request(org_id, "req_00000003")["chunks"]) == 2


@pytest.mark.parametrize("kind", STORES)
def test_retention_days_drops_old_events_before_the_dashboard_answers(kind, tmp_path):
    now = int(time.time() * 1000)
    with opened(store_url(kind, tmp_path)) as store:
        old = store.create_org("before")  # the app makes its own org; events of any go
        store.insert(
            [row_of(old, e) for e in request_events(1, now - 2 * DAY)]
            + [row_of(old, e) for e in request_events(2, now - HOUR)]
        )
        with served(store, retention_days=1):
            scope = Filters(old, now - 3 * DAY, now + HOUR)
            listed = store.requests(scope, None, 100)["requests"]
        assert [r["request_id"] for r in listed] == ["req_00000002"]
        assert store.volume(scope, HOUR)["totals"]["requests"] == 1


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (["--retention-days", "0"], "argument --retention-days: must be above 0, got 0"),
        (["--retention-days", "-3"], "argument --retention-days: must be above 0, got -3"),
        (["--retention-days", "1.5"], "argument --retention-days: invalid int value: '1.5'"),
        (
            ["--retention-days", "99999999999999999999"],
            "argument --retention-days: must be at most 36500, got 99999999999999999999",
        ),
        (
            ["--trace-url", "http://grafana.local/explore"],
            "argument --trace-url: must be an http(s) URL with {trace_id} where the trace id "
            "goes, e.g. 'http://grafana.local/explore?...{trace_id}', got "
            "'http://grafana.local/explore'",
        ),
        (
            ["--trace-url", "javascript:alert(1)//{trace_id}"],
            "argument --trace-url: must be an http(s) URL with {trace_id} where the trace id "
            "goes, e.g. 'http://grafana.local/explore?...{trace_id}', got "
            "'javascript:alert(1)//{trace_id}'",
        ),
    ],
)
def test_bad_dashboard_options_are_one_line_errors(capsys, option, error):
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", *option])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"octomil dashboard: error: {error}"
