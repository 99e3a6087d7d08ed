#!/usr/bin/env python3
"""Serving benchmark: `parlance serve` against llama.cpp's `llama-server`,
side by side on the same GGUF, machine and thread count, in one run.

For each concurrency (1, 4, 16, 64 by default) it sends that many streaming
chat requests at once (distinct prompts, `max_tokens` each) and measures:
time to first token (TTFT) and inter-token latency (ITL) p50/p99 from the
client's side, aggregate decode throughput (generated tokens / wall time of
the round), and at the end each server's peak RSS (VmHWM). llama-server is
started with as many parallel slots as the round's concurrency; Parlance runs
one server (continuous batching, metering on, embedded SQLite) for all
rounds. Prints a table with our/llama ratios.

Usage (from the repository root; needs a reference build, see
scripts/reference/install_llama_cpp.sh):

    LLAMA_CPP_BIN=$(scripts/reference/install_llama_cpp.sh) \
    cargo build --release -p parlance && \
    python3 scripts/bench/serve_vs_llama_server.py --model smollm2-135m-instruct \
        [--threads 2] [--concurrency 1,4,16,64] [--max-tokens 64] [--json-schema]

With --rounds N every concurrency runs N times, the two servers taking
turns to go first (a fresh llama-server each time, the same Parlance
server throughout), each round's table printed as it ends, then the
medians of every figure and the median of the rounds' own ratios: on a
shared host whose speed drifts, the ratio within one pair is what to read.

With --ours-only only Parlance runs (no reference build needed): to
compare two of our binaries on one machine (--parlance PATH) or profile one.

With --json-schema every request carries the same `response_format`
json_schema (constrained decoding on both servers).

The Parlance kernel level that ran is printed with the table; set
PARLANCE_KERNELS=avx2 (or avx-vnni, avx512, scalar) to cap it, e.g. to
measure the AVX2 path on an AVX-512 machine.

Standard library only. Latencies are what a client sees (HTTP and SSE
framing included), the same way for both servers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# --json-schema: every request asks for this structured output (an array of
# at least 64 small objects, so that each stream runs to max_tokens).
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "people", "strict": True, "schema": {
        "type": "array", "minItems": 64,
        "items": {"type": "object", "additionalProperties": False, "required": ["name", "age"],
                  "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}}},
    }},
}
RESPONSE_FORMAT = None
TOPICS = [
    "a lighthouse keeper", "a clockmaker", "a desert caravan", "a lost robot", "a river town",
    "a chess prodigy", "a mountain rescue", "a night train", "a beekeeper", "an old library",
    "a storm at sea", "a city garden", "a violin maker", "a snowed-in inn", "a comet", "a baker",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no 200 from {path} within {timeout}s")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stream_one(port: int, model: str, prompt: str, max_tokens: int, out: dict,
               endpoint: str = "chat") -> None:
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if RESPONSE_FORMAT:
        body["response_format"] = RESPONSE_FORMAT
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = prompt
        path = "/v1/completions"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        out["error"] = f"{resp.status}: {resp.read()[:200]!r}"
        return
    arrivals: list[float] = []
    usage_tokens = None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage_tokens = chunk["usage"].get("completion_tokens")
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content") or choice.get("text"):
                arrivals.append(time.perf_counter())
    out.update(start=start, arrivals=arrivals, tokens=usage_tokens or len(arrivals),
               end=time.perf_counter())


def run_round(port: int, model: str, concurrency: int, max_tokens: int, tag: str,
              endpoint: str = "chat") -> dict:
    """One round of `concurrency` simultaneous streams. `tag` makes the
    prompts differ from every other round's, so no server answers a round
    from a cache of an earlier one."""
    results = [dict() for _ in range(concurrency)]
    threads = [
        threading.Thread(
            target=stream_one,
            args=(port, model,
                  f"Tell a long story about {TOPICS[i % len(TOPICS)]} (round {tag}, #{i}).",
                  max_tokens, results[i], endpoint),
        )
        for i in range(concurrency)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    ttft = [r["arrivals"][0] - r["start"] for r in results if r["arrivals"]]
    itl = [b - a for r in results for a, b in zip(r["arrivals"], r["arrivals"][1:])]
    tokens = sum(r["tokens"] for r in results)
    return {
        "tok_s": tokens / wall,
        "ttft_p50": pct(ttft, 50), "ttft_p99": pct(ttft, 99),
        "itl_p50": pct(itl, 50), "itl_p99": pct(itl, 99),
        "tokens": tokens,
    }


def pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k] * 1000


def start_parlance(binary: str, model_path: str, threads: int, data_dir: str):
    proc = subprocess.Popen(
        [binary, "--data-dir", data_dir, "serve", "--port", "0", "--model", model_path,
         "--threads", str(threads)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    proc.kernels = "kernels: ?"  # the level `serve` logs (PARLANCE_KERNELS caps it)
    for line in proc.stderr:
        if line.startswith("kernels:"):
            proc.kernels = line.strip()
        m = re.search(r"listening on http://[^\s:]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            wait_http(port, "/health", proc)
            return proc, port
    raise RuntimeError("parlance serve did not start")


def start_llama(bin_dir: str, model_path: str, threads: int, slots: int, max_tokens: int):
    port = free_port()
    ctx_per_slot = 256 + max_tokens
    proc = subprocess.Popen(
        [f"{bin_dir}/llama-server", "-m", model_path, "-t", str(threads), "-tb", str(threads),
         "-np", str(slots), "-c", str(ctx_per_slot * slots), "--host", "127.0.0.1",
         "--port", str(port), "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_http(port, "/health", proc)
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parlance", default=str(ROOT / "target/release/parlance"))
    ap.add_argument("--endpoint", choices=["chat", "completions"], default="chat",
                    help="completions for base models without a chat template (gemma3-270m)")
    ap.add_argument("--json-schema", action="store_true",
                    help="constrained decoding: every request asks for the same json_schema")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every concurrency N times, alternating which server goes "
                         "first, and end with the medians (and the median of the ratios)")
    ap.add_argument("--ours-only", action="store_true",
                    help="run only `parlance serve` (no LLAMA_CPP_BIN needed): to compare two "
                         "of our binaries (--parlance) or to profile one")
    args = ap.parse_args()
    global RESPONSE_FORMAT
    RESPONSE_FORMAT = JSON_SCHEMA if args.json_schema else None
    bin_dir = os.environ.get("LLAMA_CPP_BIN")
    if not args.ours_only and (not bin_dir or not Path(bin_dir, "llama-server").exists()):
        sys.exit("set LLAMA_CPP_BIN to the reference build (scripts/reference/install_llama_cpp.sh)")
    model_path = subprocess.run([args.parlance, "pull", args.model], check=True,
                                capture_output=True, text=True).stdout.strip().splitlines()[-1]
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory() as data_dir:
        ours, ours_port = start_parlance(args.parlance, model_path, args.threads, data_dir)
        try:
            served = json.loads(http_get(ours_port, "/v1/models"))["data"][0]["id"]
            run_round(ours_port, served, 1, 8, "warm-up", args.endpoint)

            def ours_round(c: int, r: int) -> dict:
                # Parlance serves every round: a prompt seen in an earlier
                # round would be answered from its prefix cache.
                return run_round(ours_port, served, c, args.max_tokens, tag(c, r), args.endpoint)

            if args.ours_only:
                rounds = [{c: ours_round(c, r) for c in levels} for r in range(args.rounds)]
                ours_rss = peak_rss_mib(ours.pid)
            else:
                rounds, llama_rss = [], 0.0
                for r in range(args.rounds):
                    pairs = {}
                    for c in levels:
                        # Alternate which server goes first, so a host that
                        # drifts slower or faster favours neither side.
                        if r % 2 == 1:
                            o = ours_round(c, r)
                        l, rss = llama_round(bin_dir, model_path, args, c, r)
                        llama_rss = max(llama_rss, rss)
                        if r % 2 == 0:
                            o = ours_round(c, r)
                        pairs[c] = (l, o)
                    rounds.append(pairs)
                    print_pairs(args, ours.kernels, levels, pairs, f"round {r + 1} of {args.rounds}")
                ours_rss = peak_rss_mib(ours.pid)
            ours_kernels = ours.kernels
        finally:
            ours.terminate()
            ours.wait(timeout=60)
    if args.ours_only:
        for r, rows in enumerate(rounds):
            print(f"model {args.model}, {args.threads} threads, max_tokens {args.max_tokens}, "
                  f"parlance {ours_kernels} ({args.parlance}), round {r + 1} of {args.rounds}")
            print(f"{'streams':>7} | {'agg tok/s':>9} | {'TTFT p50':>8} {'p99':>8} | {'ITL p50':>7} {'p99':>7}")
            for c in levels:
                o = rows[c]
                print(f"{c:>7} | {o['tok_s']:9.1f} | {o['ttft_p50']:8.0f} {o['ttft_p99']:8.0f} | "
                      f"{o['itl_p50']:7.1f} {o['itl_p99']:7.1f}")
        print(f"peak RSS MiB: parlance {ours_rss:.0f}")
        return
    if args.rounds > 1:
        # Each figure's median over the rounds, and the median of the
        # rounds' own ratios (a ratio within one pair is what to read on a
        # host whose speed drifts).
        med = {c: (median_row([rows[c][0] for rows in rounds]),
                   median_row([rows[c][1] for rows in rounds])) for c in levels}
        ratios = {c: statistics.median(rows[c][1]["tok_s"] / rows[c][0]["tok_s"] for rows in rounds)
                  for c in levels}
        print_pairs(args, ours_kernels, levels, med, f"median of {args.rounds} rounds", ratios)
    model_mib = Path(model_path).stat().st_size / 2**20
    print(f"peak RSS MiB: llama-server {llama_rss:.0f} (largest slot count), parlance {ours_rss:.0f}"
          f" (model file {model_mib:.0f})")


def tag(c: int, r: int) -> str:
    """The prompts' tag of round `r` at `c` streams: the same prompts for
    both servers, the first round's as before rounds existed, later rounds'
    differing from the first character on (so no more of a prompt matches
    an earlier round's)."""
    return str(c) if r == 0 else f"r{r + 1}-{c}"


def llama_round(bin_dir: str, model_path: str, args, c: int, r: int) -> tuple[dict, float]:
    """Round `r` of `c` streams on a fresh llama-server with `c` slots; its
    row and peak RSS."""
    llama, port = start_llama(bin_dir, model_path, args.threads, c, args.max_tokens)
    try:
        run_round(port, "m", 1, 8, "warm-up", args.endpoint)
        row = run_round(port, "m", c, args.max_tokens, tag(c, r), args.endpoint)
        return row, peak_rss_mib(llama.pid)
    finally:
        llama.terminate()
        llama.wait(timeout=60)


def median_row(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def print_pairs(args, kernels: str, levels: list[int], pairs: dict, title: str,
                ratios: dict | None = None) -> None:
    print(f"model {args.model}, {args.threads} threads, max_tokens {args.max_tokens}, "
          f"parlance {kernels}, {title}")
    print(f"{'streams':>7} | {'agg tok/s':>19} | {'TTFT p50 ms':>19} | {'TTFT p99 ms':>19} | "
          f"{'ITL p50 ms':>17} | {'ITL p99 ms':>17} | ratio tok/s")
    print(f"{'':>7} | {'llama':>9} {'ours':>9} | {'llama':>9} {'ours':>9} | {'llama':>9} {'ours':>9} | "
          f"{'llama':>8} {'ours':>8} | {'llama':>8} {'ours':>8} |")
    for c in levels:
        l, o = pairs[c]
        ratio = ratios[c] if ratios else o['tok_s'] / l['tok_s']
        print(f"{c:>7} | {l['tok_s']:9.1f} {o['tok_s']:9.1f} | {l['ttft_p50']:9.0f} {o['ttft_p50']:9.0f} | "
              f"{l['ttft_p99']:9.0f} {o['ttft_p99']:9.0f} | {l['itl_p50']:8.1f} {o['itl_p50']:8.1f} | "
              f"{l['itl_p99']:8.1f} {o['itl_p99']:8.1f} | {ratio:.2f}", flush=True)


def http_get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    return conn.getresponse().read()


if __name__ == "__main__":
    main()
