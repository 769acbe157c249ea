"""Every chunk's latency, packed into one text span attribute.

The SDK checks an array attribute element by element (~3,000 instructions per element in
opentelemetry-sdk 1.45), and the OTLP exporter encodes one value per element: more than
the whole per-chunk hot path. One text it takes as it is. The layout: little-endian int64
nanoseconds, in chunk order (the first chunk's from the request's start, each other's
from the chunk before), 16 hexadecimal digits a chunk, so any OTLP consumer can read it
too, and any span exporter can write it (the SDK's console exporter cannot write
``bytes``: a span carrying them loses its whole batch). Integers, not float
milliseconds: they are the monotonic clock's own readings, exact, and the event encoder
writes them to JSON without a float conversion.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

HEX_DIGITS = 16
"""Text per chunk: one int64, 8 bytes."""
LONGEST_NS = 2**63
"""Latencies are below this: what an int64 holds."""


def pack(latencies_ns: Sequence[int]) -> str:
    return struct.pack(f"<{len(latencies_ns)}q", *latencies_ns).hex()


def unpack(packed: str) -> tuple[int, ...]:
    """The latencies of ``pack``'s text: ``ValueError`` for text that is not hexadecimal,
    ``struct.error`` for text that is not whole int64s (cut short by a length limit)."""
    return struct.unpack(f"<{len(packed) // HEX_DIGITS}q", bytes.fromhex(packed))
