#!/usr/bin/env python3
"""When does each request of a burst get its first token?

Starts `parlance serve` (release build, embedded SQLite) on a model and sends
N streaming completions at once, several rounds; prints, per round, the
milliseconds (from the round's start) at which each request was sent and at
which its first token arrived, sorted. Shows whether a burst shares one
prefill step or its first request runs alone.

    cargo build --release -p parlance
    python3 scripts/bench/burst_ttft.py [--model gemma3-270m] [--requests 16] [--rounds 3]

Standard library only; reuses serve_vs_llama_server.py's client.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_vs_llama_server as S  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    binary = str(S.ROOT / "target/release/parlance")
    path = subprocess.run([binary, "pull", args.model], check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]
    with tempfile.TemporaryDirectory() as data:
        proc, port = S.start_parlance(binary, path, args.threads, data)
        print(proc.kernels)
        try:
            for rnd in range(args.rounds):
                res = [dict() for _ in range(args.requests)]
                threads = [
                    threading.Thread(target=S.stream_one, args=(
                        port, args.model,
                        f"Tell a long story about {S.TOPICS[i % len(S.TOPICS)]} (burst {rnd}, #{i}).",
                        args.max_tokens, res[i], "completions"))
                    for i in range(args.requests)
                ]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                errors = [r["error"] for r in res if "error" in r]
                if errors:
                    raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
                sent = sorted(round((r["start"] - t0) * 1000) for r in res)
                first = sorted(round((r["arrivals"][0] - t0) * 1000) for r in res if r["arrivals"])
                print(f"round {rnd}: sent at {sent} ms")
                print(f"round {rnd}: first tokens at {first} ms")
        finally:
            proc.kill()


if __name__ == "__main__":
    main()
