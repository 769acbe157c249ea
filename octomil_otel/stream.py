"""A stream proxy that records each chunk and finishes its generation exactly once.

A plain generator function, not a ``wrapt.ObjectProxy``: re-yielding costs about a fifth
of a proxy's Python ``__next__`` per chunk (DESIGN.md), both engines hand back plain
generators, and a generator's ``except GeneratorExit`` runs on ``close()`` and when it is
garbage-collected unfinished. The proxy is primed to its first ``yield`` before it is
returned, so a stream that is never read still ends, as ``cancelled``, when dropped.

How a stream ends decides how its generation ends:

* exhausted: ``stop()``;
* the engine raises: ``fail(exc)``, and the exception reaches the caller untouched;
* closed or dropped before its end: ``cancel()``, and the engine's stream is closed too.

The proxy never touches the context, so the caller's context is the same across yields.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from octomil_otel.generation import Generation

_logger = logging.getLogger(__name__)

ChunkT = TypeVar("ChunkT")
IsChunk = Callable[[ChunkT], bool]
"""Whether an item carries output (``octomil-api.md``: an item with only a role or only a
finish reason is not a chunk). Must be cheap: it runs per item."""
OnEnd = Callable[[Generation, "ChunkT | None", int], None]
"""Called once with the last item and the number of items: where an engine reports usage
on its last item, or usage is a count of items. When the stream ends, however it ends; or
when its request ends first (``cancel_open`` at shutdown, maybe on another thread while
the stream is read), with what the stream saw until then."""


def record_stream(
    generation: Generation,
    stream: Iterable[ChunkT],
    chunks: IsChunk[ChunkT] | bool = True,
    on_end: OnEnd[ChunkT] | None = None,
    *,
    owner: bool = True,
) -> Iterator[ChunkT]:
    """Re-yield ``stream``, marking its chunks; end ``generation`` once if ``owner``.

    ``chunks``: ``True`` when every item is a chunk (no call per item at all), a predicate,
    or ``False`` for a stream whose items the caller does not see as they are (an engine's
    token stream inside a request that another call streams). A stream inside a request
    that another call owns (``owner=False``) only reports what it sees (usage, typically);
    the owner decides how the request ends.
    """
    proxy = _proxy(generation, stream, chunks, on_end, owner)
    next(proxy)  # run up to the priming yield, inside the try below
    return proxy


def _proxy(
    generation: Generation,
    stream: Iterable[ChunkT],
    chunks: IsChunk[ChunkT] | bool,
    on_end: OnEnd[ChunkT] | None,
    owner: bool,
) -> Iterator[ChunkT]:
    last: ChunkT | None = None
    count = 0
    mark, clock = generation.chunk_marker()  # the hot path, without a call into Python

    def end() -> None:
        """``on_end`` once: as the stream ends, or as the request does if that is first (the
        process stopping while the stream is open: ``Generation.before_end``)."""
        nonlocal on_end
        report, on_end = on_end, None
        if report is None:
            return
        try:
            report(generation, last, count)
        except Exception:
            _logger.debug("octomil_otel: could not record the end of a stream", exc_info=True)

    if on_end is not None:
        generation.before_end(end)
    try:
        yield  # type: ignore[misc]  # priming point: see record_stream
        for last in stream:  # the last item is for on_end
            count += 1
            try:  # free in CPython 3.11 while nothing raises
                if chunks is True or (chunks is not False and chunks(last)):
                    mark(clock())
            except Exception:  # a predicate or a clock gone wrong: the caller's item still
                _logger.debug("octomil_otel: could not record a chunk", exc_info=True)
            yield last
    except GeneratorExit:
        _close(stream)  # first: what the engine reports as it stops belongs to this request
        end()
        if owner:
            generation.cancel()
        raise
    except BaseException as error:
        end()
        if owner:
            generation.fail(error)
        raise
    else:
        end()
        if owner:
            generation.stop()


def _close(stream: Iterable[object]) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            _logger.debug("octomil_otel: closing the engine's stream failed", exc_info=True)
