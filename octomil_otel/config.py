"""Settings: explicit argument, then environment variable, then the documented default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from octomil_otel import environment_variables as env

DEFAULT_API_BASE = "https://api.octomil.com"


@dataclass(frozen=True)
class Settings:
    """Where and as whom telemetry is delivered. The key never shows in ``repr``."""

    api_key: str | None = field(repr=False)
    org_id: str | None
    api_base: str

    @classmethod
    def resolve(
        cls,
        api_key: str | None = None,
        org_id: str | None = None,
        api_base: str | None = None,
    ) -> Settings:
        return cls(
            api_key=_pick("api_key", api_key, env.OCTOMIL_API_KEY),
            org_id=_pick("org_id", org_id, env.OCTOMIL_ORG_ID),
            api_base=normalize_api_base(
                _pick("api_base", api_base, env.OCTOMIL_API_BASE) or DEFAULT_API_BASE
            ),
        )


def normalize_api_base(api_base: str) -> str:
    """``api_base`` without its trailing slash; a ``ValueError`` unless an http(s) URL."""
    if not isinstance(api_base, str):
        raise TypeError(f"api_base must be a str, not {type(api_base).__name__}")
    parts = urlsplit(api_base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"api_base must be an http:// or https:// URL, got {api_base!r}")
    return api_base.strip().rstrip("/")


def _pick(name: str, explicit: str | None, variable: str) -> str | None:
    if explicit is not None:
        if not isinstance(explicit, str):
            raise TypeError(f"{name} must be a str, not {type(explicit).__name__}")
        return explicit.strip() or None
    return os.environ.get(variable, "").strip() or None
