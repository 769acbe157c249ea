"""``--trace-url``: from a request on the dashboard to its trace in the user's tracing
backend (Grafana, Jaeger, Datadog...), by a URL template with the trace id in it."""

from __future__ import annotations

PLACEHOLDER = "{trace_id}"


def checked_template(template: str) -> str:
    """``template`` if it is an http(s) URL with ``{trace_id}`` in it; else a ValueError
    that says so in one line. Other braces are left alone: Grafana's URLs hold JSON."""
    if not template.startswith(("http://", "https://")) or PLACEHOLDER not in template:
        raise ValueError(
            f"must be an http(s) URL with {PLACEHOLDER} where the trace id goes, e.g. "
            f"'http://grafana.local/explore?...{PLACEHOLDER}', got {template!r}"
        )
    return template


def link(template: str, trace_id: str) -> str:
    """The trace's URL; a trace id is lowercase hex, so it needs no escaping."""
    return template.replace(PLACEHOLDER, trace_id)
