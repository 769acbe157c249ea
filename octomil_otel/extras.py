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
    "mlx": ("mlx_lm", "mlx"),
}
"""extra -> the modules it brings that the role imports."""


class MissingExtraError(ImportError):
    """A module of an extra is not installed; the message is one line ending in the
    ``pip install`` that brings it."""


def require(needed_by: str, *extras: str) -> None:
    """Raise ``MissingExtraError`` if a module of ``extras`` is missing; imports nothing.

    One line for all that is missing: ``octomil serve model.gguf needs uvicorn and
    llama_cpp, which are not installed: pip install 'octomil-otel[serve,llamacpp]'``.
    """
    missing = {
        extra: [module for module in EXTRAS[extra] if not _installed(module)] for extra in extras
    }
    lacking = [extra for extra in extras if missing[extra]]
    if not lacking:
        return
    modules = [module for extra in lacking for module in missing[extra]]
    names = ", ".join(modules[:-1]) + " and " + modules[-1] if len(modules) > 1 else modules[0]
    verb = "are" if len(modules) > 1 else "is"
    raise MissingExtraError(
        f"{needed_by} needs {names}, which {verb} not installed: "
        f"pip install 'octomil-otel[{','.join(lacking)}]'",
        name=modules[0],
    )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None
        return False
