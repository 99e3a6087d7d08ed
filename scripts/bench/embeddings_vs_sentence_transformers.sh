#!/usr/bin/env bash
# Sentences per second of all-MiniLM-L6-v2 at batch 1 and batch 64, ours
# (crates/encoder, release build) against sentence-transformers on PyTorch
# CPU, both with THREADS threads (default 2), side by side with the ratios.
#
#   python3 -m venv target/bench-venv
#   target/bench-venv/bin/pip install sentence-transformers
#   scripts/bench/embeddings_vs_sentence_transformers.sh [THREADS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${1:-2}
SECONDS_EACH=${2:-5}
PY=${PYTHON:-target/bench-venv/bin/python}
DATA=${PARLANCE_DATA_DIR:-${XDG_DATA_HOME:+$XDG_DATA_HOME/parlance}}
DATA=${DATA:-$HOME/.local/share/parlance}
FOLDER="$DATA/models/all-minilm-l6-v2"
cargo build -q --release -p encoder --example embed_bench
ours=$(target/release/examples/embed_bench "$THREADS" "$SECONDS_EACH")
theirs=$(OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PY" \
  scripts/bench/embeddings_vs_sentence_transformers.py "$FOLDER" "$THREADS" "$SECONDS_EACH")
echo "$ours"
echo "$theirs"
python3 - "$ours" "$theirs" <<'PY'
import re, sys
o = dict(re.findall(r"(batch\d+)=([\d.]+)", sys.argv[1]))
t = dict(re.findall(r"(batch\d+)=([\d.]+)", sys.argv[2]))
for b in ("batch1", "batch64"):
    print(f"{b}: parlance {float(o[b]):.1f} / sentence-transformers {float(t[b]):.1f} = {float(o[b]) / float(t[b]):.2f}x")
PY
