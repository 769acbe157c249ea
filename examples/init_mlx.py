"""Programmatic telemetry with mlx-lm: ``octomil.init()`` first, then use mlx-lm as usual.

Run (on Linux mlx-lm runs on the CPU with ``pip install 'mlx[cpu]' mlx-lm``):
    OCTOMIL_API_KEY=<key> python examples/init_mlx.py path/to/mlx-model-directory
"""

import sys

import octomil

octomil.init()  # before importing names from mlx_lm, so they are the instrumented ones

from mlx_lm import generate, load, stream_generate  # noqa: E402

model, tokenizer = load(sys.argv[1])
print(generate(model, tokenizer, prompt="Say hello.", max_tokens=16))
for response in stream_generate(model, tokenizer, "Once upon a time", max_tokens=16):
    print(response.text, end="", flush=True)
print()
