"""Spans and GenAI histograms to your own OpenTelemetry Collector, no Octomil account needed.

Start a collector first (collector-config/debug.yaml prints what it receives):
    otelcol-contrib --config collector-config/debug.yaml
Then run:
    python examples/forward_to_collector.py path/to/model.gguf [http://127.0.0.1:4318]
"""

import sys

import llama_cpp

import octomil

endpoint = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:4318"
octomil.init(otlp_endpoint=endpoint)  # OTLP over http/protobuf; otlp_protocol="grpc" for :4317

llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, verbose=False)
for chunk in llm.create_completion("Once upon a time", max_tokens=16, stream=True):
    print(chunk["choices"][0]["text"], end="", flush=True)
print()
# spans and histograms are flushed when the program exits
