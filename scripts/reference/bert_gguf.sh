#!/usr/bin/env bash
# Converts all-MiniLM-L6-v2 (the catalog's sentence-transformers folder) to
# GGUF with llama.cpp b11434's own converter (convert_hf_to_gguf.py from the
# reference source, scripts/reference/vocab_fixtures.sh fetches it), as F32,
# F16 and Q8_0, into OUT_DIR (default target/gguf; never committed).
# crates/encoder/tests/gguf.rs loads them and compares with the safetensors
# model; scripts/bench/embeddings_vs_llama_cpp.sh runs llama.cpp on them.
# Prints the folder.
#
# Usage: scripts/reference/bert_gguf.sh [OUT_DIR]
#   The model must be pulled (`parlance pull all-minilm-l6-v2`).
#   The converter imports torch and transformers: they come from PyPI into
#   the venv $PYTHON's (default target/bench-venv, the one the
#   sentence-transformers bench uses). PyPI's torch is the CUDA build, so
#   that venv is about 6 GB the first time (a few minutes); later runs
#   reuse it and take seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-target/gguf}"
PY=${PYTHON:-target/bench-venv/bin/python}
DATA=${PARLANCE_DATA_DIR:-${XDG_DATA_HOME:+$XDG_DATA_HOME/parlance}}
DATA=${DATA:-$HOME/.local/share/parlance}
FOLDER="$DATA/models/all-minilm-l6-v2"
[[ -f "$FOLDER/model.safetensors" ]] || { echo "pull the model first: parlance pull all-minilm-l6-v2 ($FOLDER)" >&2; exit 1; }
SRC="$(dirname "$(bash scripts/reference/vocab_fixtures.sh)")"
if ! "$PY" -c 'import torch, transformers, sentencepiece, gguf' 2>/dev/null; then
  [[ -x "$PY" ]] || python3 -m venv "$(dirname "$(dirname "$PY")")"
  "$PY" -m pip install -q sentence-transformers sentencepiece protobuf "$SRC/gguf-py" >&2
fi
mkdir -p "$OUT"
for type in f32 f16 q8_0; do
  file="$OUT/all-minilm-l6-v2-$type.gguf"
  if [[ ! -s "$file" ]]; then
    "$PY" "$SRC/convert_hf_to_gguf.py" "$FOLDER" --outtype "$type" --outfile "$file.part" >&2
    mv "$file.part" "$file"
  fi
done
echo "$OUT"
