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
OnItem = Callable[[Generation, ChunkT], None]
"""Called with each item before it reaches the caller: calls ``generation.chunk()`` when
the item carries output, and may note usage. Must be cheap: it runs per chunk."""


def record_stream(
    generation: Generation, stream: Iterable[ChunkT], on_item: OnItem[ChunkT]
) -> Iterator[ChunkT]:
    """Re-yield ``stream``, letting ``on_item`` see each item; end ``generation`` once."""
    proxy = _proxy(generation, stream, on_item)
    next(proxy)  # run up to the priming yield, inside the try below
    return proxy


def _proxy(
    generation: Generation, stream: Iterable[ChunkT], on_item: OnItem[ChunkT]
) -> Iterator[ChunkT]:
    try:
        yield  # type: ignore[misc]  # priming point: see record_stream
        for item in stream:
            try:
                on_item(generation, item)
            except Exception:
                _logger.debug("octomil_otel: could not record a chunk", exc_info=True)
            yield item
    except GeneratorExit:
        generation.cancel()
        _close(stream)
        raise
    except BaseException as error:
        generation.fail(error)
        raise
    else:
        generation.stop()


def _close(stream: Iterable[object]) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            _logger.debug("octomil_otel: closing the engine's stream failed", exc_info=True)
