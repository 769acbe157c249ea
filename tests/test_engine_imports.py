"""``init()`` and the engines: it imports none, each is instrumented when the application
imports it (before ``init()`` or after), and a failure stays inside its engine.

Each case is a fresh Python process, as an application starts: what is imported, and the
open-files limit, are the process's own. Under a hard limit of 1024 (a common container and
service setting) importing mlx-lm raises, because it raises its own limit at import.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import API_KEY
from .test_auto_instrumentation import run_instrumented

pytest.importorskip("llama_cpp")

ENGINE_MODULES = ("llama_cpp", "mlx_lm", "transformers")
IMPORTED = f"""
import json, sys
print(json.dumps([m for m in {ENGINE_MODULES!r} if m in sys.modules]), flush=True)
"""
LLAMA_REQUESTS = """
import llama_cpp
llm = llama_cpp.Llama(model_path={model!r}, n_ctx=256, n_threads=1, verbose=False)
for i in range(3):
    llm.create_completion(f"request {{i}}", max_tokens=4)
"""
INIT = "import octomil\noctomil.init()\n"
SHUTDOWN = "octomil.shutdown()\n"


def low_open_files_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def run(
    code: str,
    api,
    *,
    before: Callable[[], None] | None = low_open_files_limit,
    pythonpath: Path | None = None,
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCTOMIL_", "OTEL_"))}
    env.update(OCTOMIL_API_KEY=API_KEY, OCTOMIL_API_BASE=api.url)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        preexec_fn=before,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def requests_of(api) -> list[list[str]]:
    by_request: dict[str, list[str]] = {}
    for event in api.events:
        by_request.setdefault(event["request_id"], []).append(event["event_type"])
    return list(by_request.values())


WHOLE = ["generation_started", "chunk_produced", "generation_completed"]


def test_mlx_lm_cannot_be_imported_under_the_limit(api):
    """The premise: this is what init() must never do in a llama.cpp application."""
    with pytest.raises(subprocess.CalledProcessError) as failed:
        run("import mlx_lm", api)
    assert "ValueError: not allowed to raise maximum limit" in failed.value.stderr


def test_init_imports_no_engine_and_reports_one_imported_after(api, tiny_gguf):
    done = run(INIT + IMPORTED + LLAMA_REQUESTS.format(model=str(tiny_gguf)) + SHUTDOWN, api)

    assert json.loads(done.stdout) == []
    assert requests_of(api) == [WHOLE] * 3
    completed = [e for e in api.events if e["event_type"] == "generation_completed"]
    assert [(e["engine"], e["metrics"]["output_tokens"]) for e in completed] == [
        ("llamacpp", 4)
    ] * 3


def test_an_engine_imported_before_init_reports(api, tiny_gguf):
    code = "import llama_cpp\n" + INIT + IMPORTED + LLAMA_REQUESTS.format(model=str(tiny_gguf))
    done = run(code + SHUTDOWN, api)

    assert json.loads(done.stdout) == ["llama_cpp"]
    assert requests_of(api) == [WHOLE] * 3


def test_mlx_imported_after_init_reports(api, tiny_mlx_dir):
    pytest.importorskip("mlx_lm")
    code = (
        INIT
        + IMPORTED
        + "import mlx_lm\n"
        + f"model, tokenizer = mlx_lm.load({str(tiny_mlx_dir)!r})\n"
        + "list(mlx_lm.stream_generate(model, tokenizer, 'hello', max_tokens=5))\n"
        + SHUTDOWN
    )
    done = run(code, api, before=None)

    assert json.loads(done.stdout) == []
    assert requests_of(api) == [
        ["generation_started", *["chunk_produced"] * 5, "generation_completed"]
    ]
    assert api.events[-1]["engine"] == "mlx"


def test_shutdown_before_the_import_leaves_the_engine_untouched(api, tiny_gguf):
    code = (
        INIT
        + SHUTDOWN
        + LLAMA_REQUESTS.format(model=str(tiny_gguf))
        + "print(hasattr(llama_cpp.Llama.create_completion, '__wrapped__'))\n"
    )
    done = run(code, api)

    assert done.stdout == "False\n"
    assert api.events == []


def test_an_engine_that_cannot_be_instrumented_is_logged_once_and_the_others_report(
    api, tiny_gguf, tmp_path
):
    # an mlx_lm whose layout moved: the package imports, its generate module is gone
    (tmp_path / "mlx_lm").mkdir()
    (tmp_path / "mlx_lm" / "__init__.py").write_text("def load(path): ...\n")
    code = "import mlx_lm\n" + INIT + LLAMA_REQUESTS.format(model=str(tiny_gguf)) + SHUTDOWN
    done = run(code, api, pythonpath=tmp_path)

    warnings = [line for line in done.stderr.splitlines() if "could not instrument" in line]
    assert warnings == [
        "octomil_otel: could not instrument mlx, its requests are not recorded: "
        "ModuleNotFoundError: No module named 'mlx_lm.generate'"
    ]
    assert requests_of(api) == [WHOLE] * 3


def test_opentelemetry_instrument_under_the_limit_reports(api, tiny_gguf, tmp_path):
    run_instrumented(
        LLAMA_REQUESTS.format(model=str(tiny_gguf)), api, tmp_path, before=low_open_files_limit
    )

    assert requests_of(api) == [WHOLE] * 3


def test_init_while_another_thread_imports_the_engine_breaks_nothing(api, tiny_mlx_dir):
    pytest.importorskip("mlx_lm")
    code = f"""
import sys, threading, time
import octomil
errors = []
def app_import():
    try:
        import mlx_lm
    except Exception as error:
        errors.append(repr(error))
importer = threading.Thread(target=app_import)
importer.start()
while "mlx_lm" not in sys.modules:  # init() runs while the import is half done
    time.sleep(0.001)
octomil.init()
importer.join()
import mlx_lm
deadline = time.monotonic() + 10
while not hasattr(mlx_lm.stream_generate, "__wrapped__") and time.monotonic() < deadline:
    time.sleep(0.01)
model, tokenizer = mlx_lm.load({str(tiny_mlx_dir)!r})
list(mlx_lm.stream_generate(model, tokenizer, "hello", max_tokens=3))
octomil.shutdown()
print(errors)
"""
    done = run(code, api, before=None)

    assert done.stdout == "[]\n"
    assert "could not instrument" not in done.stderr
    assert requests_of(api) == [
        ["generation_started", *["chunk_produced"] * 3, "generation_completed"]
    ]


def test_an_engine_version_we_do_not_know_is_named_in_a_warning(api, tmp_path):
    info = tmp_path / "llama_cpp_python-0.4.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.4.0\n"
    )
    done = run(INIT + SHUTDOWN, api, pythonpath=tmp_path)

    warnings = [line for line in done.stderr.splitlines() if "not instrumenting" in line]
    assert warnings == [
        "octomil_otel: not instrumenting llamacpp, its requests are not recorded: "
        'This instrumentation only instruments "llama-cpp-python >= 0.3.0, < 0.4", but '
        'currently installed version ("llama-cpp-python 0.4.0") falls outside of that range, '
        "so nothing can be instrumented."
    ]
