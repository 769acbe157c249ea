"""Requests that ended on the inference path, recorded a moment later, in batches, on one
background thread.

Why: what a request's end records (its metrics, the Octomil record, the histograms) took
~19 us in a loop of requests, but ~95 us of a served request's engine thread, whose caches
the server's own work had just filled (``octomil serve echo`` under
``bench/serve_load.py``'s load, the thread's CPU time around ``Generation._record``); made
in batches of 32 on a thread of its own, 30 to 45 us a request (``/proc``, per thread), and
in batches of 96, 26 to 28 us. So where nothing needs a request's record at once,
``Generation`` puts it here.

Nothing needs it at once when each of its readers reads later: the application's span is
not recording, no message content is captured, the Octomil span processor delivers in the
background, and the histograms are not recorded at all or are read by a collector that
drains this queue first (``octomil serve``'s ``/metrics``). Such readers are ``Drains``:
they call ``ENDED.drain()`` before they read, flush or shut down, so a flush, a scrape
or a shutdown sees every request that ended before it. A drain ends by settling what its
records keep to finish many at a time (``settle_after_drain``: the histograms of such a
collector, ``instruments.settle``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable

_logger = logging.getLogger(__name__)

BATCH = 96
"""Ended requests that wake the thread at once (otherwise it waits ``DELAY_SECONDS``): it
records every one waiting in one go, while its caches are warm: in ``bench/serve_load.py``'s
server, 96 at a time took the thread 26 to 28 us a request, against 30 to 32 for 32 at a
time (``/proc``, per thread). Not more: recording holds the GIL, ~3 ms for 96 in a busy
server, under the interpreter's 5 ms switch interval; batches of up to 256 held it 4 to 5
ms, and the p99 latency rose to 1.08, 1.03 and 1.16 times OFF's in three runs (1.03 with
96)."""
DELAY_SECONDS = 0.5
"""How long an ended request waits, at most, when fewer than ``BATCH`` are waiting."""
MAX_WAITING = 4096
"""Ended requests waiting, at most: past it (the thread falls behind), a request that ends
is recorded at once on its own thread, as if nothing were deferred (slower for it, nothing
lost, and it never waits for the thread)."""


class Drains:
    """Marks a reader of requests' records (a span processor, a meter provider) that calls
    ``ENDED.drain()`` before it reads, flushes or shuts down: the records it gets may then
    be made off the inference path, later."""


class EndedRequests:
    """A queue of records to make (``put``) and the daemon thread that makes them."""

    def __init__(self) -> None:
        self._settles: list[Callable[[], None]] = []
        self._start()

    def _start(self) -> None:
        self._waiting: deque[Callable[[], None]] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._recording = threading.RLock()  # held while records are made: drain() waits
        self._worker: threading.Thread | None = None
        self._unstartable = False

    def put(self, record: Callable[[], None]) -> None:
        """Make ``record()`` (which must not raise) within ``DELAY_SECONDS``, in the order
        put; at once, on this thread, when ``MAX_WAITING`` are waiting. Never blocks."""
        with self._wake:  # two requests ending at once must not both miss being the first
            count = len(self._waiting)
            if count < MAX_WAITING and self._started():
                self._waiting.append(record)
                if count == 0 or count + 1 >= BATCH:  # the first starts the delay
                    self._wake.notify()
                return
        record()

    def _started(self) -> bool:
        """Whether the thread runs, started now if need be; ``False`` for good if it cannot
        start (a limit on threads or memory): requests are then recorded on their own
        threads, as if nothing were deferred."""
        if self._worker is None and not self._unstartable:
            worker = threading.Thread(target=self._run, name="octomil-recorder", daemon=True)
            try:
                worker.start()
            except RuntimeError:  # "can't start new thread"
                self._unstartable = True
                _logger.warning(
                    "octomil_otel: could not start the recorder's thread; requests are "
                    "recorded on their own threads",
                    exc_info=True,
                )
                return False
            self._worker = worker
        return self._worker is not None

    def settle_after_drain(self, settle: Callable[[], None]) -> None:
        """Call ``settle`` (which must not raise) after each drain: what records keep to
        finish many at a time (``instruments.settle``) is finished then."""
        self._settles.append(settle)

    def drain(self) -> None:
        """Make every record put before this call, on this thread unless the background
        thread is making it (then wait for it); then settle."""
        with self._recording:
            waiting = self._waiting
            for _ in range(len(waiting)):
                try:
                    record = waiting.popleft()
                except IndexError:  # taken by a drain on another thread
                    break
                try:
                    record()
                except Exception:  # the thread must outlive any bug of ours
                    _logger.debug("octomil_otel: could not record a request", exc_info=True)
            for settle in self._settles:
                try:
                    settle()
                except Exception:  # as a record's
                    _logger.debug("octomil_otel: could not record requests", exc_info=True)

    def _run(self) -> None:
        """Asleep while nothing waits; then records within ``DELAY_SECONDS`` of the first."""
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._waiting)
                self._wake.wait_for(lambda: len(self._waiting) >= BATCH, DELAY_SECONDS)
            self.drain()


ENDED = EndedRequests()
"""The process's one queue: every recorder puts here, every ``Drains`` drains it."""
if hasattr(os, "register_at_fork"):  # the parent records what it put; the child starts empty
    os.register_at_fork(after_in_child=ENDED._start)
