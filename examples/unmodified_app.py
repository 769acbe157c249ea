"""An application that knows nothing of Octomil or OpenTelemetry.

Run it under ``opentelemetry-instrument`` and every request is reported:
    OCTOMIL_API_KEY=<key> opentelemetry-instrument python examples/unmodified_app.py model.gguf
Add OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 to forward to your own collector too.
"""

import sys

import llama_cpp

llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, verbose=False)
print(llm("The capital of France is", max_tokens=8)["choices"][0]["text"])
