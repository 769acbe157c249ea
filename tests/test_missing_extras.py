"""A command whose extra is not installed says so in one line, with the ``pip install`` that
brings it, and exits 2; ``octomil.generate`` raises the same line as an ``ImportError``.

Each case is a fresh process with the extra's packages hidden (``sys.modules[name] = None``
makes their import fail as if they were not installed).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from octomil_otel.extras import EXTRAS

RUN_CLI = """
import sys
for name in {hidden!r}:
    sys.modules[name] = None
from octomil_otel.cli import main
sys.exit(main({argv!r}))
"""


def octomil_command(argv: list[str], hidden: tuple[str, ...]) -> subprocess.CompletedProcess:
    code = RUN_CLI.format(hidden=hidden, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("argv", "hidden", "line"),
    [
        (
            ["serve", "echo"],
            ("uvicorn",),
            "octomil serve echo needs uvicorn, which is not installed: "
            "pip install 'octomil-otel[serve]'",
        ),
        (
            ["serve", "echo"],
            ("fastapi",),
            "octomil serve echo needs fastapi, which is not installed: "
            "pip install 'octomil-otel[serve]'",
        ),
        (
            ["serve", "echo"],
            ("prometheus_client",),
            "octomil serve echo needs prometheus_client, which is not installed: "
            "pip install 'octomil-otel[serve]'",
        ),
        (
            ["dashboard"],
            ("uvicorn",),
            "octomil dashboard needs uvicorn, which is not installed: "
            "pip install 'octomil-otel[dashboard]'",
        ),
        (
            ["dashboard", "--db", "clickhouse://user:secret@127.0.0.1:9/octomil"],
            ("clickhouse_connect",),
            "a ClickHouse --db needs clickhouse_connect, which is not installed: "
            "pip install 'octomil-otel[clickhouse]'",
        ),
        (
            ["keys", "list", "--db", "chdb:///tmp/never-created"],
            ("clickhouse_connect",),
            "a ClickHouse --db needs clickhouse_connect, which is not installed: "
            "pip install 'octomil-otel[clickhouse]'",
        ),
    ],
    ids=["serve-uvicorn", "serve-fastapi", "serve-prometheus", "dashboard", "clickhouse", "keys"],
)
def test_a_command_without_its_extra_says_which_to_install(argv, hidden, line):
    done = octomil_command(argv, hidden)

    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"error: {line}\n")


@pytest.mark.parametrize(
    ("engine", "hidden"),
    [("llamacpp", "llama_cpp"), ("mlx", "mlx_lm"), ("mlx", "mlx")],
    ids=["llamacpp", "mlx-lm", "mlx-lm without mlx"],
)
def test_serving_a_model_without_its_engine_says_which_extra(engine, hidden, request):
    model = str(request.getfixturevalue("tiny_gguf" if engine == "llamacpp" else "tiny_mlx_dir"))
    assert hidden in EXTRAS[engine]
    done = octomil_command(["serve", model], (hidden,))

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: octomil serve {model} needs {hidden}, which is not installed: "
        f"pip install 'octomil-otel[{engine}]'\n"
    )


def test_one_line_names_every_extra_missing(tiny_gguf):
    done = octomil_command(["serve", str(tiny_gguf)], ("uvicorn", "llama_cpp"))

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: octomil serve {tiny_gguf} needs uvicorn and llama_cpp, which are not "
        "installed: pip install 'octomil-otel[serve,llamacpp]'\n"
    )


def test_generate_without_the_engine_raises_the_same_line(tiny_gguf):
    code = f"""
import sys
sys.modules["llama_cpp"] = None
import octomil
try:
    octomil.generate(model={str(tiny_gguf)!r}, prompt="hello")
except ImportError as error:
    print(type(error).__name__, error)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )

    assert done.stdout == (
        "MissingExtraError the model 'tiny-llama' needs llama_cpp, which is not installed: "
        "pip install 'octomil-otel[llamacpp]'\n"
    )
