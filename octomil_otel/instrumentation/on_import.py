"""Instrument an engine when the application imports it, never before.

Importing an engine is slow (mlx-lm imports transformers: about a second) and can fail for
reasons that have nothing to do with telemetry (mlx-lm raises its own open-files limit at
import: a ``ValueError`` under a hard limit of 1024). An instrumentor that imported its
engine would make an application that never uses that engine pay both. So ``instrument()``
wraps the engine at once only if the application has imported it already; otherwise a
post-import hook (``wrapt.register_post_import_hook``, the mechanism wrapt-based
instrumentations use) wraps it right after the application's own import completes.

Wrapping never raises into the application: a failure is logged once, with the engine's
name and the reason, and leaves that engine unrecorded; the other engines carry on. Nor does
it ever import for the application: if another thread is importing the engine right when
``instrument()`` runs, the module is in ``sys.modules`` half-initialized, and wrapping it
then (wrapt's hook would run at once) would import its submodules from this thread and break
the application's own import; the wrapping waits for that import to finish instead.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from wrapt import register_post_import_hook

_logger = logging.getLogger(__name__)


class OnImportInstrumentor(BaseInstrumentor):
    """A ``BaseInstrumentor`` whose ``_wrap`` runs when ``module`` is imported."""

    engine: ClassVar[str]
    """The engine's name in the events (``llamacpp``, ``mlx``)."""
    module: ClassVar[str]
    """The top-level package whose import triggers the wrapping (``llama_cpp``)."""

    _lock = threading.Lock()
    _wrapped = False
    _pending: object | None = None  # the instrument() call whose hook may still wrap

    def _instrument(self, **kwargs: Any) -> None:
        token = self._pending = object()

        def on_import(_module: ModuleType) -> None:
            with self._lock:
                if self._pending is not token:  # uninstrumented since, or instrumented anew
                    return
                self._pending = None
                try:
                    self._wrap(**kwargs)
                except Exception as problem:
                    _logger.warning(
                        "octomil_otel: could not instrument %s, its requests are not recorded: "
                        "%s: %s",
                        self.engine,
                        type(problem).__name__,
                        problem,
                    )
                    with contextlib.suppress(Exception):
                        self._unwrap()  # what was wrapped before the failure
                    return
                self._wrapped = True

        if _initializing(self.module):
            threading.Thread(
                target=_after_import, args=(self.module, on_import), daemon=True,
                name=f"octomil-otel-{self.engine}-import",
            ).start()  # fmt: skip
        else:  # runs the hook now if the module is imported, else right after its import
            register_post_import_hook(on_import, self.module)

    def _uninstrument(self, **kwargs: Any) -> None:
        with self._lock:
            self._pending = None
            if self._wrapped:
                self._wrapped = False
                self._unwrap()

    @abstractmethod
    def _wrap(self, **kwargs: Any) -> None:
        """Wrap the engine's calls; ``kwargs`` are ``instrument()``'s."""

    @abstractmethod
    def _unwrap(self) -> None:
        """Undo ``_wrap``, also after one that failed halfway."""


IMPORT_WAIT_SECONDS = 600.0
"""How long a wrapping waits for another thread's import of its engine to finish."""


def _initializing(name: str) -> bool:
    """Whether ``name`` is being imported right now (by any thread)."""
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _after_import(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Run ``hook`` once the import of ``name`` in progress finished; nothing if it failed."""
    deadline = time.monotonic() + IMPORT_WAIT_SECONDS
    while _initializing(name) and time.monotonic() < deadline:
        time.sleep(0.005)
    module = sys.modules.get(name)
    if module is not None and not _initializing(name):
        hook(module)
