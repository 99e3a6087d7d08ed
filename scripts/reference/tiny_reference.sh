#!/usr/bin/env bash
# Makes the tiny test models (tiny_models.py, with the `gguf` package from
# requirements-tiny.txt) and llama.cpp b11434's log-probabilities for them,
# outside the repository: OUT_DIR/tiny-*.gguf and OUT_DIR/tiny-*.kld, read by
# crates/engine/tests/tiny_models.rs.
#
# Usage: tiny_reference.sh [OUT_DIR]   (default ~/.cache/parlance-reference/tiny)
# Needs: install_llama_cpp.sh (llama-perplexity) and vocab_fixtures.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/parlance-reference/tiny}"
BIN="$("$HERE/install_llama_cpp.sh")"
VOCAB="$("$HERE/vocab_fixtures.sh")"
VENV="$OUT/venv"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r "$HERE/requirements-tiny.txt"
"$VENV/bin/python" "$HERE/tiny_models.py" "$VOCAB" "$OUT"
# The text: GPL-3 as Debian ships it (any text of 16 x 32 tokens or more works).
TEXT=/usr/share/common-licenses/GPL-3
for model in "$OUT"/tiny-*.gguf; do
  # -c 32: a chunk is one batch of fewer than 64 rows, where llama.cpp's
  # attention is its F16 kernel, as ours is for such batches.
  "$BIN/llama-perplexity" -m "$model" -f "$TEXT" -c 32 -b 32 --chunks 16 -t 2 \
    --kl-divergence-base "${model%.gguf}.kld" >"${model%.gguf}.log" 2>&1
  grep "Final estimate" "${model%.gguf}.log"
done
