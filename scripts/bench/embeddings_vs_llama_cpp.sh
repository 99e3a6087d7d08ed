#!/usr/bin/env bash
# Sentences per second of all-MiniLM-L6-v2 at batch 1 and batch 64 from the
# same GGUF file (llama.cpp's own conversion, scripts/reference/bert_gguf.sh),
# ours (crates/encoder's embed_bench, release build, the model loaded by
# path) against llama.cpp b11434's embedding path (`llama-server
# --embedding`, 64 slots, the whole batch in one ubatch, driven over
# localhost HTTP), both with THREADS threads, side by side with the ratios.
# Ours prints the kernel level that ran (PARLANCE_KERNELS caps it).
#
#   scripts/reference/install_llama_cpp.sh      # llama-server
#   scripts/reference/bert_gguf.sh              # target/gguf/*.gguf
#   scripts/bench/embeddings_vs_llama_cpp.sh [THREADS] [SECONDS] [TYPE]
#   TYPE: f32 (default), f16 or q8_0
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${1:-2}
SECONDS_EACH=${2:-5}
TYPE=${3:-f32}
GGUF="target/gguf/all-minilm-l6-v2-$TYPE.gguf"
[[ -f "$GGUF" ]] || { echo "no $GGUF: run scripts/reference/bert_gguf.sh" >&2; exit 1; }
BIN=${LLAMA_CPP_BIN:-$(scripts/reference/install_llama_cpp.sh)}
cargo build -q --release -p encoder --example embed_bench
ours=$(target/release/examples/embed_bench "$THREADS" "$SECONDS_EACH" "$GGUF")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$BIN/llama-server" -m "$GGUF" --embedding --pooling mean -t "$THREADS" -tb "$THREADS" \
  -np "${LLAMA_SLOTS:-64}" -c 8192 -b "${LLAMA_BATCH:-4096}" -ub "${LLAMA_BATCH:-4096}" --host 127.0.0.1 --port "$PORT" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
theirs=$(python3 scripts/bench/embeddings_vs_llama_cpp.py "$PORT" "$SECONDS_EACH")
echo "$ours"
echo "$theirs ($GGUF)"
python3 - "$ours" "$theirs" <<'PY'
import re, sys
o = dict(re.findall(r"(batch\d+)=([\d.]+)", sys.argv[1]))
t = dict(re.findall(r"(batch\d+)=([\d.]+)", sys.argv[2]))
for b in ("batch1", "batch64"):
    print(f"{b}: parlance {float(o[b]):.1f} / llama.cpp {float(t[b]):.1f} = {float(o[b]) / float(t[b]):.2f}x")
PY
