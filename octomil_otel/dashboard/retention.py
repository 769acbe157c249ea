"""``--retention-days``: events older than that many days are deleted when the dashboard
starts, before it answers, and then every hour, so a store that has reached its retention
stays about that size."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from octomil_otel.dashboard.model import HOUR_MS, Store

DAY_MS = 24 * HOUR_MS
_logger = logging.getLogger(__name__)


def drop_old(store: Store, days: int) -> None:
    """Delete what is older than ``days`` (from the start of that hour: whole hours go)."""
    store.drop_before(int(time.time() * 1000) - days * DAY_MS)


@contextlib.asynccontextmanager
async def kept(store: Store, days: int | None) -> AsyncIterator[None]:
    """While the app runs: ``drop_old`` at once, then hourly. ``days`` None: keep all."""
    if days is None:
        yield
        return
    await asyncio.to_thread(drop_old, store, days)
    task = asyncio.create_task(_hourly(store, days))
    try:
        yield
    finally:
        task.cancel()


async def _hourly(store: Store, days: int) -> None:
    while True:
        await asyncio.sleep(HOUR_MS / 1000)
        try:
            await asyncio.to_thread(drop_old, store, days)
        except Exception:  # e.g. the database briefly unreachable: next hour, again
            _logger.warning("could not delete events older than %d days", days, exc_info=True)
