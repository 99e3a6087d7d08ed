#!/usr/bin/env python3
"""sentence-transformers on PyTorch CPU: sentences per second of
all-MiniLM-L6-v2 at batch 1 and batch 64 with a given thread count, on the
same sentences as crates/encoder/examples/embed_bench.rs.

    embeddings_vs_sentence_transformers.py MODEL_FOLDER [THREADS] [SECONDS]
"""
import json
import sys
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

folder = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
torch.set_num_threads(threads)
torch.set_num_interop_threads(1)
fixture = Path(__file__).resolve().parents[1] / "reference/fixtures/embeddings/all-minilm-l6-v2.json"
texts = [c["text"] for c in json.loads(fixture.read_text())["cases"][:-2]]
batch = [texts[i % len(texts)] for i in range(64)]
model = SentenceTransformer(folder, device="cpu")
model.encode(batch, batch_size=64)

def rate(size):
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        if size == 1:
            model.encode(batch[done % 64], batch_size=1)
            done += 1
        else:
            model.encode(batch, batch_size=64)
            done += 64
    return done / (time.perf_counter() - start)

with torch.inference_mode():
    b1, b64 = rate(1), rate(64)
print(f"sentence-transformers torch={torch.__version__} threads={threads} batch1={b1:.1f} batch64={b64:.1f} sentences/s")
