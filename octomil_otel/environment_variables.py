"""The environment variables this package reads, besides the standard ``OTEL_*`` ones.

An explicit argument always wins over the variable, and the variable over the default.
"""

from __future__ import annotations

from typing import Final

OCTOMIL_API_KEY: Final = "OCTOMIL_API_KEY"
"""
.. envvar:: OCTOMIL_API_KEY

The Octomil API key. No default: without a key nothing is sent to the Octomil API.
"""

OCTOMIL_ORG_ID: Final = "OCTOMIL_ORG_ID"
"""
.. envvar:: OCTOMIL_ORG_ID

The organization id. Default: resolved from the key with ``GET /api/v1/auth/whoami``.
"""

OCTOMIL_API_BASE: Final = "OCTOMIL_API_BASE"
"""
.. envvar:: OCTOMIL_API_BASE

The Octomil server's base URL (``http`` or ``https``). Default: ``https://api.octomil.com``.
"""
