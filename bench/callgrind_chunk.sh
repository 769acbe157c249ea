#!/usr/bin/env bash
# Instructions per streamed chunk that instrumentation adds, counted by valgrind's callgrind.
#
# What: bench/callgrind_driver.py streams exactly N chunks, plain or instrumented, under
# callgrind, which counts instructions (Ir) only while the stream is being consumed
# (--collect-atstart=no --toggle-collect=consume_iterator: the driver exhausts the stream
# with deque(..., maxlen=0), which runs CPython's consume_iterator). Each configuration
# runs twice, with N1 and N2 chunks, and
#
#     per chunk = (I(N2) - I(N1)) / (N2 - N1)
#
# so whatever a request costs once (its prompt, span start, the fixed part of its end)
# cancels, and what is left is everything that grows with the number of chunks. Printed:
# instructions per chunk plain and instrumented, and the difference, for
#
#   * python: a plain Python generator, no engine: our cost alone. "hot" is record_stream
#     + generation.chunk() per chunk with the generation never stopped; "instrumented"
#     also stops it, so it includes the per-chunk share of the one-time end (a latency per
#     chunk, packed into one attribute); their difference is that share. "naive",
#     for comparison: a generator that calls span.add_event per chunk on a real SDK span;
#   * engine: llama-cpp-python on the tests' tiny GGUF, n_threads=1, plain vs with
#     LlamaCppInstrumentor (the whole path: both wrappers, record_stream twice, the end).
#
# Why: instruction counts are close to deterministic, so they resolve a few hundred
# instructions per chunk that wall-clock timing on a busy machine cannot.
# Runs are made repeatable: ASLR off (setarch -R), fixed hash seed, no OpenMP spinning.
# What still varies between runs is CPython's allocator (_PyObject_Malloc/_PyObject_Free,
# whose arena work depends on the heap the run starts from): python figures repeat to a
# few Ir per chunk, the engine's to about 0.5% of its total, i.e. several thousand Ir per
# chunk in "added"; run it twice before reading a smaller change in the engine figure.
# The runs use 2 valgrind processes at a time by default (--jobs); the counts do not
# depend on it. The defaults take 3 to 4 minutes on a 2-core machine.
#
# Usage (from the repo root):
#     bench/callgrind_chunk.sh                       # python, then engine
#     bench/callgrind_chunk.sh --source python --n1 1000 --n2 51000
#     bench/callgrind_chunk.sh --source engine --engine-n1 32 --engine-n2 288 --keep /tmp/cg
#
# Needs valgrind (apt-get install -y valgrind) and a llama-cpp-python built without
# AVX-512 (scripts/setup.sh does that), which valgrind cannot decode.
set -euo pipefail
cd "$(dirname "$0")/.."

source_sel=all
py_n1=1000
py_n2=11000
engine_n1=32
engine_n2=160
jobs=2
keep=""

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<EOF
Options:
  --source python|engine|all   what to measure (default: $source_sel)
  --n1 N, --n2 N               python chunks per run (default: $py_n1, $py_n2)
  --engine-n1 N, --engine-n2 N engine chunks per run (default: $engine_n1, $engine_n2)
  --jobs J                     valgrind processes at a time (default: $jobs)
  --keep DIR                   keep callgrind's logs and profiles in DIR
  -h, --help                   this help
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --source) source_sel="$2"; shift 2 ;;
    --n1) py_n1="$2"; shift 2 ;;
    --n2) py_n2="$2"; shift 2 ;;
    --engine-n1) engine_n1="$2"; shift 2 ;;
    --engine-n2) engine_n2="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$source_sel" in python|engine|all) ;; *) echo "--source: python, engine or all" >&2; exit 2 ;; esac

if ! command -v valgrind >/dev/null; then
  echo "valgrind not found: apt-get install -y valgrind" >&2
  exit 1
fi
py=.venv/bin/python
if [ -n "$keep" ]; then
  mkdir -p "$keep"
  work="$(cd "$keep" && pwd)"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi

# label, then the driver's arguments; writes $work/label.{log,out,callgrind}
run_one() {
  local label="$1"; shift
  env OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=0 OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 \
    setarch "$(uname -m)" -R \
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=consume_iterator \
    --callgrind-out-file="$work/$label.callgrind" --log-file="$work/$label.log" \
    "$py" bench/callgrind_driver.py "$@" >"$work/$label.out" 2>&1
}

launch() {
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_one "$@" &
}

labels=()
if [ "$source_sel" != engine ]; then
  for mode in plain hot instrumented naive; do
    for n in "$py_n1" "$py_n2"; do
      labels+=("python-$mode-$n")
      launch "python-$mode-$n" --source python --mode "$mode" --chunks "$n"
    done
  done
fi
if [ "$source_sel" != python ]; then
  gguf="$("$py" -c 'import sys, pathlib; sys.path.insert(0, "bench"); import _common
print(_common.tiny_gguf(pathlib.Path(sys.argv[1])))' "$work")"
  for mode in plain instrumented; do
    for n in "$engine_n1" "$engine_n2"; do
      labels+=("engine-$mode-$n")
      launch "engine-$mode-$n" --source engine --mode "$mode" --chunks "$n" --gguf "$gguf"
    done
  done
fi
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || true; done

declare -A ir
for label in "${labels[@]}"; do
  count="$(awk '/Collected :/ {print $NF}' "$work/$label.log" 2>/dev/null || true)"
  if [ -z "$count" ] || ! grep -q " chunks$" "$work/$label.out"; then
    echo "run $label failed:" >&2
    cat "$work/$label.out" "$work/$label.log" >&2 || true
    exit 1
  fi
  ir[$label]="$count"
done

per_chunk() {  # source mode -> Ir per chunk
  local n1 n2
  if [ "$1" = python ]; then n1="$py_n1"; n2="$py_n2"; else n1="$engine_n1"; n2="$engine_n2"; fi
  awk -v a="${ir[$1-$2-$n1]}" -v b="${ir[$1-$2-$n2]}" -v n1="$n1" -v n2="$n2" \
    'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }'
}

echo "callgrind ($(valgrind --version)), Ir counted inside the consuming loop only;"
echo "per chunk = (I(N2) - I(N1)) / (N2 - N1); added = mode - plain"
table() {  # source n1 n2 mode...
  local src="$1" n1="$2" n2="$3"; shift 3
  local plain_n1="${ir[$src-plain-$n1]}" plain_n2="${ir[$src-plain-$n2]}"
  for mode in "$@"; do
    echo "$src $mode $n1 $n2 ${ir[$src-$mode-$n1]} ${ir[$src-$mode-$n2]} $plain_n1 $plain_n2"
  done | awk '
    BEGIN { printf "%-7s %-13s %7s %7s %15s %15s %12s %12s %8s\n", "source", "mode", "N1", "N2",
            "I(N1)", "I(N2)", "Ir/chunk", "added/chunk", "x plain" }
    { per = ($6 - $5) / ($4 - $3); plain = ($8 - $7) / ($4 - $3)
      added = ($2 == "plain") ? "" : sprintf("%.0f", per - plain)
      ratio = ($2 == "plain") ? "" : sprintf("%.2f", per / plain)
      printf "%-7s %-13s %7d %7d %15.0f %15.0f %12.0f %12s %8s\n", $1, $2, $3, $4, $5, $6, per,
             added, ratio }'
}
if [ "$source_sel" != engine ]; then
  echo
  table python "$py_n1" "$py_n2" plain hot instrumented naive
  hot="$(per_chunk python hot)"
  full="$(per_chunk python instrumented)"
  echo "python: hot = record_stream + chunk() per chunk, without the end;"
  echo "        instrumented - hot = $((full - hot)) Ir per chunk: the one-time end's share"
fi
if [ "$source_sel" != python ]; then
  echo
  table engine "$engine_n1" "$engine_n2" plain instrumented
fi
if [ -n "$keep" ]; then
  echo
  echo "logs and profiles kept in $work (callgrind_annotate $work/<label>.callgrind)"
fi
