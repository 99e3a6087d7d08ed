#!/usr/bin/env python3
"""llama.cpp's embedding path: sentences per second of a BERT GGUF through
a running `llama-server --embedding` at batch 1 and batch 64 (one
/v1/embeddings request of 1 or 64 inputs at a time), on the same sentences
as crates/encoder/examples/embed_bench.rs. Standard library only.

    embeddings_vs_llama_cpp.py PORT [SECONDS]
"""
import json
import sys
import time
import urllib.request
from pathlib import Path

port = int(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
fixture = Path(__file__).resolve().parents[1] / "reference/fixtures/embeddings/all-minilm-l6-v2.json"
texts = [c["text"] for c in json.loads(fixture.read_text())["cases"][:-2]]
batch = [texts[i % len(texts)] for i in range(64)]
url = f"http://127.0.0.1:{port}/v1/embeddings"


def embed(inputs):
    body = json.dumps({"input": inputs, "model": "m"}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        data = json.load(r)["data"]
    assert len(data) == len(inputs), data


def rate(size):
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        if size == 1:
            embed([batch[done % 64]])
            done += 1
        else:
            embed(batch)
            done += 64
    return done / (time.perf_counter() - start)


embed(batch)
b1, b64 = rate(1), rate(64)
print(f"llama.cpp batch1={b1:.1f} batch64={b64:.1f} sentences/s")
