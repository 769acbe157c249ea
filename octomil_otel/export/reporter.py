"""``TelemetryReporter``: the one delivery path from this process to the Octomil API.

Events wait in a bounded in-memory queue; one background thread sends them, every
``flush_interval_seconds`` while there are any (sooner when the queue is half full), and
sleeps while there are none. Nothing on the caller's side ever waits for the network:

* ``report()`` checks the event, fills in what may be omitted, and appends: a lock held
  for a ``deque.append``, never across I/O;
* a full queue drops its oldest event; an API that is down, slow or refusing makes the
  worker drop what it could not deliver; every drop is counted (``dropped_events``);
* ``flush()`` and ``shutdown()`` return within their timeout, whatever the API does;
  ``shutdown()`` also runs at interpreter exit, and a forked child starts afresh.

Usage::

    reporter = TelemetryReporter(api_key="...")
    reporter.report({"event_type": "generation_completed", "model": "gemma-1b",
                     "engine": "mlx", "metrics": {"ttfc_ms": 150.0}})
    reporter.flush()
    reporter.shutdown()
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from octomil_otel.config import Settings
from octomil_otel.device import device_id as default_device_id
from octomil_otel.device import validate_device_id
from octomil_otel.export import _transport
from octomil_otel.export.events import format_timestamp, validate_event

_logger = logging.getLogger("octomil_otel.telemetry")

_WHOAMI_RETRY_SECONDS = 60.0
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")


class TelemetryReporter:
    """Queues events and delivers them, best-effort, from a background thread.

    Args:
        api_key: the Octomil API key (required).
        api_base: the server's base URL; ``OCTOMIL_API_BASE``, else https://api.octomil.com.
        flush_interval_seconds: how often the background thread sends what is queued: an
            event waits this long at most.
        max_queue_size: events held in memory at most; when full, the oldest are dropped.
        device_id: overrides the id derived from the hostname and MAC address.
        org_id: the organization; ``OCTOMIL_ORG_ID``, else resolved from the key.
        timeout_seconds: bound on one HTTP request to the API.
    """

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        flush_interval_seconds: float = 5.0,
        max_queue_size: int = 1000,
        device_id: str | None = None,
        *,
        org_id: str | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        settings = Settings.resolve(api_key=api_key, org_id=org_id, api_base=api_base)
        if not isinstance(api_key, str) or settings.api_key is None:
            raise ValueError("api_key is required: pass your Octomil API key")
        if not _HEADER_TOKEN.fullmatch(settings.api_key):  # never echo the key itself
            raise ValueError(
                "api_key must be printable ASCII without spaces: it travels in an HTTP header"
            )
        _check_positive("flush_interval_seconds", flush_interval_seconds)
        _check_positive("timeout_seconds", timeout_seconds)
        if isinstance(max_queue_size, bool) or not isinstance(max_queue_size, int):
            raise TypeError(f"max_queue_size must be an int, got {max_queue_size!r}")
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}")

        self.api_base = settings.api_base
        self.device_id = default_device_id() if device_id is None else validate_device_id(device_id)
        self.org_id = settings.org_id
        self.flush_interval_seconds = float(flush_interval_seconds)
        self.max_queue_size = max_queue_size
        self._transport = _transport.Transport(
            settings.api_base, settings.api_key, float(timeout_seconds)
        )
        self._wake_at = max(1, max_queue_size // 2)
        self._init_state()
        self._start_worker()
        _register_exit_and_fork(self)
        self.log_initialized()

    def log_initialized(self) -> None:
        """``[telemetry] Initialized: device_id=..., api_base=...``: the line the product
        document tells users to look for. Logged as the reporter starts, and again by
        ``octomil serve`` when ``opentelemetry-instrument`` started it before the server
        set up its log."""
        _logger.info(
            "[telemetry] Initialized: device_id=%s, api_base=%s", self.device_id, self.api_base
        )

    def _init_state(self) -> None:
        # events from the span exporter, encoded (``events.encode``), and checked events
        # from report(), encoded by the worker once the org is known
        self._queue: deque[str | dict[str, Any]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._enqueued = 0  # events ever queued
        self._reported = 0  # report()'s events (dicts) that may be in the queue
        self._handled = 0  # events ever delivered or dropped: flush waits on this
        self._dropped = 0
        self._delivered = 0
        self._flush_wanted = False
        self._closed = False
        self._failing = False
        self._log_lock = threading.Lock()  # the two below: the worker's, flush()'s, shutdown()'s
        self._unlogged = 0  # events delivered and not yet told in a "Flushed" line
        self._logged_at = -math.inf  # time.monotonic() of the last one
        self._untold_drops = 0  # events the worker dropped, not yet told in a "Dropped" line
        self._drop_reason = ""  # why, the last time
        self._drops_told_at = -math.inf
        self._whoami_at: float | None = None

    # --- the caller's side: never blocks on I/O ---------------------------------------------

    def report(self, event: Mapping[str, Any]) -> None:
        """Queue one event; fills in ``timestamp``, ``device_id`` and ``org_id`` (when known).

        Raises:
            TypeError, ValueError: the event is malformed; the message names the field.
        """
        checked = validate_event(event)
        _transport.encode(checked)  # a value JSON cannot carry fails here, not in the worker
        checked.setdefault("timestamp", format_timestamp(time.time_ns()))
        checked.setdefault("device_id", self.device_id)
        self._enqueue((checked,), 0.0, reported=1)

    def submit(self, events: Sequence[str], *, wait_seconds: float = 0.0) -> None:
        """Queue events encoded by ``events.encode``.

        When the queue is full the oldest event is dropped, unless ``wait_seconds`` allows
        waiting for the worker to make room first. The span exporter waits (it runs on the
        span processor's thread, never the caller's, and one export can hold hundreds of
        spans' events); ``report()`` does not.
        """
        self._enqueue(events, wait_seconds, reported=0)

    def _enqueue(
        self, events: Sequence[str | dict[str, Any]], wait_seconds: float, reported: int
    ) -> None:
        """Append ``events`` in order, as many at a time as there is room for; waiting up
        to ``wait_seconds`` for room, then dropping the oldest, queued or not yet."""
        deadline = time.monotonic() + wait_seconds
        queue, limit = self._queue, self.max_queue_size
        with self._cond:
            if self._closed:
                self._dropped += len(events)
                return
            self._reported += reported
            self._enqueued += len(events)
            start = 0
            while len(queue) + len(events) - start > limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:  # no more waiting: the oldest go
                    overflow = len(queue) + len(events) - start - limit
                    from_queue = min(overflow, len(queue))
                    for _ in range(from_queue):
                        queue.popleft()
                    start += overflow - from_queue
                    self._dropped += overflow
                    self._handled += overflow
                    break
                room = limit - len(queue)
                queue.extend(events[start : start + room])
                start += room
                self._cond.notify_all()  # the worker takes everything queued
                self._cond.wait(remaining)
            was_empty = not queue
            queue.extend(events[start:] if start else events)
            if was_empty or len(queue) >= self._wake_at:  # the first starts the interval
                self._cond.notify_all()

    def flush(self, timeout_seconds: float = 10.0) -> bool:
        """Wait until every event queued before this call is delivered or dropped.

        Returns ``False`` if that took longer than ``timeout_seconds``; never raises for a
        delivery failure.
        """
        with self._cond:
            target = self._enqueued
            if not (self._closed or self._handled >= target):
                self._flush_wanted = True
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._handled >= target, timeout_seconds)
            done = self._handled >= target
        self._log_flushed()  # deliveries the worker has not told yet: told before this returns
        self._tell_drops(0, "", now=True)  # and its drops
        return done

    def shutdown(self, timeout_seconds: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout_seconds``), then stop the thread.

        Safe to call more than once; events reported afterwards are dropped and counted.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout_seconds)
        self._log_flushed()  # the worker may still be in a POST: what it delivered before
        self._tell_drops(0, "", now=True)
        self._transport.close()

    def count_dropped(self, events: int) -> None:
        """Count ``events`` lost before they reached this queue (the span processor's own
        queue overflowed), so that ``dropped_events`` counts every loss."""
        with self._cond:
            self._dropped += events

    @property
    def dropped_events(self) -> int:
        """Events lost so far: queue overflow, undeliverable, reported or exported after
        shutdown, or of a span the exporter could not encode."""
        return self._dropped

    @property
    def delivered_events(self) -> int:
        return self._delivered

    @property
    def queue_size(self) -> int:
        return len(self._queue)

    # --- the worker's side ------------------------------------------------------------------

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._run, name="octomil-telemetry", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        """Asleep while there is nothing to send (an idle process is not woken every
        interval); then sends within ``flush_interval_seconds`` of the first event queued."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._flush_wanted or self._queue)
                self._cond.wait_for(
                    lambda: self._closed or self._flush_wanted or len(self._queue) >= self._wake_at,
                    self.flush_interval_seconds,
                )
                closing = self._closed
                self._flush_wanted = False
            try:
                self._drain()
            except Exception:  # the worker must outlive any bug of ours
                _logger.debug("[telemetry] delivery failed", exc_info=True)
            if closing:
                return

    def _drain(self) -> None:
        """Send everything queued now, in batches; after no answer at all, drop the rest."""
        while True:
            with self._cond:
                events = list(self._queue)
                self._queue.clear()
                reported, self._reported = self._reported, 0
                self._cond.notify_all()  # room again, for an exporter waiting in submit()
            if not events:
                self._log_flushed()
                return
            self._resolve_org()
            sent, unreachable = 0, False
            for body, count in self._bodies(events, reported > 0):
                delivery = self._transport.post_events(body, count)
                sent += count
                self._account(count, delivery, last=sent == len(events))
                if delivery.unreachable:
                    unreachable = True
                    break
            self._finish_drain(len(events) - sent, unreachable)

    def _account(self, count: int, delivery: _transport.Delivery, *, last: bool) -> None:
        """Log, then count.

        Deliveries are told in one ``Flushed`` line once nothing more waits (``last``: the
        last body of what the worker took, and the queue empty), or once per
        ``flush_interval_seconds`` while more keeps coming: a busy server sends a POST of
        1,000 events every ~30 requests, and a line for each (~80 us of the worker's CPU,
        its write waiting for the GIL) was 1/10 of its cost and a log that scrolled. What
        is not told yet, ``flush()`` and ``shutdown()`` tell before they return."""
        if delivery.accepted:
            if self._failing:  # delivering again: what it dropped meanwhile, told now
                self._tell_drops(0, "", now=True)
            self._failing = False
            with self._log_lock:
                self._unlogged += delivery.accepted
            since = time.monotonic() - self._logged_at
            if (last and not self._queue) or since >= self.flush_interval_seconds:
                self._log_flushed()
        else:
            self._log_flushed()  # what was delivered before it, first
            if delivery.status == 401:
                level = logging.DEBUG if self._failing else logging.WARNING
                _logger.log(level, "[telemetry] The Octomil API rejected the API key (401)")
            self._failing = True
        dropped = count - delivery.accepted
        if dropped:
            reason = (
                f"the API accepted {delivery.accepted} of {count}"
                if delivery.accepted
                else f"HTTP {delivery.status}"
                if delivery.status
                else delivery.error
            )
            self._tell_drops(dropped, reason)
        with self._cond:
            self._delivered += delivery.accepted
            self._dropped += count - delivery.accepted
            self._handled += count
            self._cond.notify_all()

    def _log_flushed(self) -> None:
        """One line for the deliveries not told yet, if any (its write not under a lock)."""
        with self._log_lock:
            count, self._unlogged = self._unlogged, 0
            if count:
                self._logged_at = time.monotonic()
        if count:
            _logger.info("[telemetry] Flushed %d events (queue_size=%d)", count, len(self._queue))

    def _tell_drops(self, count: int, reason: str, *, now: bool = False) -> None:
        """``[telemetry] Dropped N events: reason``, for the events the worker could not
        deliver (``reason`` ``""``: for the one told last): at once the first time, then at
        most once per ``flush_interval_seconds`` while the API keeps failing for one reason
        (a dead API under load would write a line per POST), for all those dropped since
        the last line; at once when the reason changes, when delivery resumes, at
        ``flush()`` and at ``shutdown()`` (``now``). The lines add up to the worker's drops
        only: the events a full queue drops, those reported after ``shutdown()`` and those
        of spans lost before the queue (``count_dropped``) are counted in
        ``dropped_events``, not logged."""
        told: list[tuple[int, str]] = []
        with self._log_lock:
            if reason and reason != self._drop_reason:
                if self._untold_drops:  # the drops of the reason before, first
                    told.append((self._untold_drops, self._drop_reason))
                    self._untold_drops = 0
                self._drop_reason = reason
            self._untold_drops += count
            since = time.monotonic() - self._drops_told_at
            if self._untold_drops and (now or told or since >= self.flush_interval_seconds):
                told.append((self._untold_drops, self._drop_reason))
                self._untold_drops = 0
            if told:
                self._drops_told_at = time.monotonic()
        for dropped, why in told:
            _logger.warning("[telemetry] Dropped %d events: %s", dropped, why)

    def _finish_drain(self, unsent: int, unreachable: bool) -> None:
        """Tell, then count, what was never sent: after an unreachable API, what waits as
        well (for the reason that POST failed); else events too large for any batch."""
        with self._cond:
            rest = unsent
            if unreachable:
                rest += len(self._queue)
                self._queue.clear()
        if rest:  # before flush() can see them counted
            self._tell_drops(rest, "" if unreachable else "an event over the API's 1 MiB")
        with self._cond:
            self._dropped += rest
            self._handled += rest
            self._cond.notify_all()

    def _resolve_org(self) -> None:
        if self.org_id is not None:
            return
        now = time.monotonic()
        if self._whoami_at is not None and now - self._whoami_at < _WHOAMI_RETRY_SECONDS:
            return
        self._whoami_at = now
        self.org_id = self._transport.whoami()

    def _bodies(
        self, events: list[str | dict[str, Any]], any_reported: bool
    ) -> Iterator[tuple[str, int]]:
        """The POST bodies of ``events``, with this device and the org (when known) filled in.

        The exporter's events are text that follows ``{"device_id":...,"org_id":...,``:
        joined with that, at C speed. A ``report()`` event is encoded whole here, its own
        ``device_id`` or ``org_id`` kept if it gave one.
        """
        known = {"device_id": self.device_id}
        if self.org_id is not None:
            known["org_id"] = self.org_id
        head = _transport.encode(known)[:-1] + ","  # '{"device_id":"...","org_id":"...",'
        if not any_reported:
            return _transport.batches(events, head)  # type: ignore[arg-type]
        texts = [
            head + event if type(event) is str else _transport.encode({**known, **event})
            for event in events
        ]
        return _transport.batches(texts)

    def _after_fork(self) -> None:
        """In a forked child: the parent delivers what it queued; start empty, own thread."""
        self._init_state()
        self._transport.reset()
        self._start_worker()


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _register_exit_and_fork(reporter: TelemetryReporter) -> None:
    """Shutdown at exit and restart after fork, without keeping the reporter alive."""
    ref = weakref.ref(reporter)

    def at_exit() -> None:
        live = ref()
        if live is not None:
            live.shutdown(timeout_seconds=5.0)

    def after_fork() -> None:
        live = ref()
        if live is not None and not live._closed:
            live._after_fork()

    atexit.register(at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_fork)
