"""``--db`` URLs: ``sqlite:////absolute/path.db`` (the default) or ``clickhouse://...``."""

from __future__ import annotations

import os
from pathlib import Path

from octomil_otel.dashboard.model import Store
from octomil_otel.extras import require


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "octomil"


def default_url() -> str:
    return f"sqlite:///{data_dir() / 'events.db'}"


def open_store(url: str) -> Store:
    if url.startswith("sqlite:///"):
        from octomil_otel.dashboard.sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///") :])
    if url.startswith(("clickhouse://", "clickhouses://", "chdb://")):
        require("a ClickHouse --db", "clickhouse")
        from octomil_otel.dashboard.clickhouse import ClickHouseStore

        return ClickHouseStore(url)
    raise ValueError(
        f"--db must be sqlite:////absolute/path.db or clickhouse://user:password@host:8123/db,"
        f" got {url!r}"
    )
