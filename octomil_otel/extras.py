"""What each optional role needs installed, and the one line that says how to get it.

``pip install octomil-otel`` brings what instruments an application; serving, the
dashboard, ClickHouse and each engine are extras (``pyproject.toml``). A command that
lacks one says which ``pip install`` brings it, instead of a ``ModuleNotFoundError``
traceback from deep inside.
"""

from __future__ import annotations

import importlib.util

EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "prometheus_client", "opentelemetry.exporter.prometheus"),
    "dashboard": ("fastapi", "uvicorn"),
    "clickhouse": ("clickhouse_connect",),
    "llamacpp": ("llama_cpp",),
    "mlx": ("mlx_lm",),
}
"""extra -> the modules it brings that the role imports."""


class MissingExtraError(ImportError):
    """A module of an extra is not installed; the message is one line ending in the
    ``pip install`` that brings it."""


def require(extra: str, needed_by: str) -> None:
    """Raise ``MissingExtraError`` if a module of ``extra`` is missing; imports nothing.

    ``needed_by`` starts the message: ``octomil serve needs uvicorn, which is not
    installed: pip install 'octomil-otel[serve]'``.
    """
    for module in EXTRAS[extra]:
        if not _installed(module):
            raise MissingExtraError(
                f"{needed_by} needs {module}, which is not installed: "
                f"pip install 'octomil-otel[{extra}]'",
                name=module,
            )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None
        return False
