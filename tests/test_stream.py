"""The stream proxy: every item passes untouched, and the generation ends exactly once."""

from __future__ import annotations

import gc
import logging

import pytest
from opentelemetry import context

from octomil_otel.stream import record_stream

from .conftest import latencies


def mark_chunk(item):
    return bool(item)


def items(values, error=None):
    yield from values
    if error is not None:
        raise error


def test_record_stream_exhausted_stops_with_every_item(recorder, span_exporter):
    generation = recorder.start(model="tiny", engine="echo", stream=True)

    out = list(record_stream(generation, items(["a", "", "b"]), mark_chunk))

    assert out == ["a", "", "b"]
    (span,) = span_exporter.get_finished_spans()
    assert "error.type" not in span.attributes
    assert len(latencies(span)) == 2


def test_record_stream_engine_error_reaches_caller_unchanged(recorder, span_exporter):
    error = RuntimeError("engine broke")
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    stream = record_stream(generation, items(["a"], error), mark_chunk)

    assert next(stream) == "a"
    with pytest.raises(RuntimeError) as raised:
        next(stream)

    assert raised.value is error
    (span,) = span_exporter.get_finished_spans()
    assert span.attributes["error.type"] == "RuntimeError"


def test_record_stream_close_cancels_and_closes_engine_stream(recorder, span_exporter):
    closed = []

    def engine():
        try:
            yield from "abcdef"
        finally:
            closed.append(True)

    generation = recorder.start(model="tiny", engine="echo", stream=True)
    stream = record_stream(generation, engine(), mark_chunk)
    assert next(stream) == "a"
    stream.close()
    stream.close()

    assert closed == [True]
    (span,) = span_exporter.get_finished_spans()
    assert span.attributes["error.type"] == "cancelled"
    assert latencies(span) == (0.0,)


def test_record_stream_never_read_and_dropped_is_cancelled(recorder, span_exporter):
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    stream = record_stream(generation, items(["a"]), mark_chunk)

    del stream
    gc.collect()

    (span,) = span_exporter.get_finished_spans()
    assert span.attributes["error.type"] == "cancelled"


def test_record_stream_abandoned_midway_is_cancelled(recorder, span_exporter):
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    stream = record_stream(generation, items(["a", "b", "c"]), mark_chunk)
    next(stream)

    del stream
    gc.collect()

    (span,) = span_exporter.get_finished_spans()
    assert span.attributes["error.type"] == "cancelled"


def test_record_stream_swallows_chunk_predicate_errors(recorder, span_exporter, caplog):
    def broken(item):
        raise KeyError("telemetry bug")

    generation = recorder.start(model="tiny", engine="echo", stream=True)
    with caplog.at_level(logging.DEBUG, logger="octomil_otel"):
        out = list(record_stream(generation, items(["a", "b"]), broken))

    assert out == ["a", "b"]
    assert "could not record a chunk" in caplog.text
    (span,) = span_exporter.get_finished_spans()
    assert "error.type" not in span.attributes


def test_record_stream_keeps_the_callers_context_across_yields(recorder):
    key = context.create_key("caller")
    generation = recorder.start(model="tiny", engine="echo", stream=True)
    stream = record_stream(generation, items(["a", "b"]), mark_chunk)

    token = context.attach(context.set_value(key, "mine"))
    try:
        next(stream)
        assert context.get_value(key) == "mine"
        next(stream)
        assert context.get_value(key) == "mine"
    finally:
        context.detach(token)
    assert context.get_value(key) is None
