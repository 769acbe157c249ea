"""Programmatic telemetry with llama-cpp-python: ``octomil.init()``, then use llama as usual.

Run (reports to OCTOMIL_API_BASE, default https://api.octomil.com):
    OCTOMIL_API_KEY=<key> python examples/init_llamacpp.py path/to/model.gguf
"""

import sys

import llama_cpp

import octomil

octomil.init()  # the key and server from OCTOMIL_API_KEY / OCTOMIL_API_BASE

llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, verbose=False)
answer = llm.create_chat_completion(
    messages=[{"role": "user", "content": "Say hello."}], max_tokens=16
)
print(answer["choices"][0]["message"]["content"])
for chunk in llm.create_completion("Once upon a time", max_tokens=16, stream=True):
    print(chunk["choices"][0]["text"], end="", flush=True)
print()
# queued events are flushed when the program exits
