"""The documented Octomil surface: ``octomil.init`` and ``octomil.telemetry``.

The implementation lives in ``octomil_otel``; this package only names it as the product
document does.
"""

from octomil_otel import init, shutdown

__all__ = ["init", "shutdown"]
