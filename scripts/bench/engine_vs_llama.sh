#!/usr/bin/env bash
# Engine speed against llama.cpp, side by side on the same GGUF files, the
# same machine and the same thread count, in one run.
#
# Usage (from the repository root):
#   scripts/bench/engine_vs_llama.sh [THREADS]
#
# Prints, per model: llama-bench's pp512 and tg128 (tok/s), `parlance bench`'s
# same two numbers, and our/llama ratios. Needs a reference llama.cpp build
# (scripts/reference/install_llama_cpp.sh; its default cache is used unless
# LLAMA_CPP_BIN names another bin folder).
#
# Prints the kernel level Parlance ran (on stderr); PARLANCE_KERNELS=avx2
# (or avx-vnni, avx512, scalar) caps it, e.g. to time the AVX2 path on an
# AVX-512 machine.
#
# ROUNDS=N (default 1) repeats the pair N times, alternating llama.cpp and
# Parlance, and ends with each model's median ratios: on a shared host whose
# speed drifts by 20% from minute to minute, a ratio measured within one
# pair is what to read, not any single throughput.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS="${1:-2}"
BIN="${LLAMA_CPP_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/parlance-reference/llama.cpp/build/bin}"
REPS="${REPS:-3}"
ROUNDS="${ROUNDS:-1}"
[[ -x "$BIN/llama-bench" ]] || { echo "llama-bench not found in $BIN (set LLAMA_CPP_BIN)" >&2; exit 1; }

cargo build --release -q -p parlance
PARLANCE=./target/release/parlance

printf '%-24s %10s %10s %10s %10s %8s %8s\n' model llama_pp512 ours_pp512 llama_tg128 ours_tg128 pp_ratio tg_ratio
ratios="$(mktemp)"
trap 'rm -f "$ratios"' EXIT
for round in $(seq "$ROUNDS"); do
for name in smollm2-135m-instruct gemma3-270m; do
  model="$($PARLANCE pull "$name" 2>/dev/null | tail -1)"
  llama_json="$("$BIN/llama-bench" -m "$model" -t "$THREADS" -p 512 -n 128 -r "$REPS" -o json 2>/dev/null)"
  llama_pp="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(next(r["avg_ts"] for r in d if r["n_prompt"]>0))' "$llama_json")"
  llama_tg="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(next(r["avg_ts"] for r in d if r["n_gen"]>0))' "$llama_json")"
  ours="$($PARLANCE bench --model "$model" --threads "$THREADS" --repetitions "$REPS")"
  ours_pp="$(awk '/^pp/ {print $2}' <<<"$ours")"
  ours_tg="$(awk '/^tg/ {print $2}' <<<"$ours")"
  if [[ "$round" == 1 ]]; then grep -o 'kernels: .*' <<<"$ours" >&2 || true; fi
  python3 - "$name" "$llama_pp" "$ours_pp" "$llama_tg" "$ours_tg" <<'PY' | tee -a "$ratios"
import sys
name, lp, op, lt, ot = sys.argv[1], *map(float, sys.argv[2:])
print(f"{name:<24} {lp:10.1f} {op:10.1f} {lt:10.1f} {ot:10.1f} {op/lp:8.2f} {ot/lt:8.2f}")
PY
done
done
if [[ "$ROUNDS" -gt 1 ]]; then
  python3 - "$ratios" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for name in dict.fromkeys(r[0] for r in rows):
    mine = [r for r in rows if r[0] == name]
    pp = statistics.median(float(r[5]) for r in mine)
    tg = statistics.median(float(r[6]) for r in mine)
    print(f"{name:<24} median of {len(mine)}: pp ratio {pp:.2f}, tg ratio {tg:.2f}")
PY
fi
