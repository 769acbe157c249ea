"""The documented Octomil surface: ``octomil.init``, ``octomil.generate``, ``octomil.telemetry``.

The implementation lives in ``octomil_otel``; this package only names it as the product
document does.
"""

from octomil_otel import init, shutdown
from octomil_otel.inference import generate

__all__ = ["generate", "init", "shutdown"]
