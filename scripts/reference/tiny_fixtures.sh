#!/usr/bin/env bash
# Makes the committed tiny-model fixtures in fixtures/tiny/: small-vocabulary
# random-weight models of every architecture and weight type the engine runs
# (tiny_fixtures.py writes F32 ones; llama-quantize turns them into each
# type) and llama.cpp b11434's log-probabilities for them (llama-perplexity
# --kl-divergence-base, 8 chunks of 32 tokens of the GPL-3 text), read by
# crates/engine/tests/tiny_fixtures.rs.
#
# Usage: tiny_fixtures.sh   (from anywhere; rewrites fixtures/tiny/)
# Needs: install_llama_cpp.sh's build plus the llama-quantize target
#   (cmake --build <src>/build --target llama-quantize), vocab_fixtures.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$HERE/../../fixtures/tiny"
BIN="$("$HERE/install_llama_cpp.sh")"
SRC="$(dirname "$(dirname "$BIN")")"
[[ -x "$BIN/llama-quantize" ]] || cmake --build "$SRC/build" -j"$(nproc)" --target llama-quantize >&2
VOCAB="$("$HERE/vocab_fixtures.sh")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/parlance-reference/tiny/venv"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r "$HERE/requirements-tiny.txt"
"$VENV/bin/python" "$HERE/tiny_fixtures.py" "$VOCAB" "$WORK" >/dev/null
mkdir -p "$OUT"
rm -f "$OUT"/*.gguf "$OUT"/*.kld
# base model, llama-quantize type, file name
FIXTURES=(
  "llama Q8_0 llama-q8_0" "qwen2 Q8_0 qwen2-q8_0" "qwen3 Q8_0 qwen3-q8_0"
  "gemma3 Q8_0 gemma3-q8_0" "gemma4 Q8_0 gemma4-q8_0" "phi3 Q8_0 phi3-q8_0" "phi3-long Q8_0 phi3-long-q8_0" "granite Q8_0 granite-q8_0"
  "smollm3 Q8_0 smollm3-q8_0" "mistral3 Q8_0 mistral3-q8_0"
  "qwen35 Q8_0 qwen35-q8_0"
  "llama F32 llama-f32" "llama F16 llama-f16" "llama BF16 llama-bf16"
  "llama Q4_0 llama-q4_0" "llama Q4_1 llama-q4_1" "llama Q5_0 llama-q5_0"
  "llama Q5_1 llama-q5_1" "llama IQ4_NL llama-iq4_nl"
  "llama-wide Q4_K_S llama-q4_k" "llama-wide Q5_K_S llama-q5_k" "llama-wide Q6_K llama-q6_k"
  "llama-wide IQ4_XS llama-iq4_xs" "llama-wide Q2_K llama-q2_k" "llama-wide Q3_K_S llama-q3_k"
)
TEXT=/usr/share/common-licenses/GPL-3
for f in "${FIXTURES[@]}"; do
  read -r base ty name <<<"$f"
  case "$ty" in
    F32|F16|BF16) embd="$ty" ;;
    *) embd=Q8_0 ;;
  esac
  "$BIN/llama-quantize" --pure --token-embedding-type "$embd" --output-tensor-type "$embd" \
    "$WORK/base-$base.gguf" "$OUT/$name.gguf" "$ty" >"$WORK/$name.quantize.log" 2>&1 \
    || { cat "$WORK/$name.quantize.log" >&2; exit 1; }
  "$BIN/llama-perplexity" -m "$OUT/$name.gguf" -f "$TEXT" -c 32 -b 32 --chunks 8 -t 2 \
    --kl-divergence-base "$OUT/$name.kld" >"$WORK/$name.log" 2>&1 \
    || { cat "$WORK/$name.log" >&2; exit 1; }
  echo "$name: $(grep -a 'Final estimate' "$WORK/$name.log" | sed 's/.*Final/Final/')"
done
du -ch "$OUT" | tail -1
