"""API keys: shown once when created, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "om_"


def new_key() -> tuple[str, str]:
    """(key_id, key): the id names the key in listings; the key is the secret."""
    return "key_" + secrets.token_hex(4), PREFIX + secrets.token_urlsafe(24)


def new_org_id() -> str:
    return "org_" + secrets.token_hex(6)


def digest(key: str) -> str:
    """Keys are random and long: a plain hash is enough, no salt or stretching needed."""
    return hashlib.sha256(key.encode()).hexdigest()
