#!/usr/bin/env python3
"""Reference sentence vectors for all-MiniLM-L6-v2, made outside the product.

An independent NumPy implementation of BERT (float64 throughout) plus mean
pooling and L2 normalisation, as sentence-transformers' modules.json for the
model says; token ids come from Hugging Face `tokenizers` reading the same
tokenizer.json (truncation off; our API refuses over-long inputs).

    python3 -m venv target/reference-venv
    target/reference-venv/bin/pip install numpy tokenizers==0.21.1
    target/reference-venv/bin/python scripts/reference/embedding_fixtures.py \
        ~/.local/share/parlance/models/all-minilm-l6-v2 \
        > scripts/reference/fixtures/embeddings/all-minilm-l6-v2.json

crates/encoder/tests/fidelity.rs reads the fixture: ids must be equal, each
cosine >= 0.9999.
"""
import json
import math
import struct
import sys

import numpy as np
from tokenizers import Tokenizer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "How do I kill a stuck process on Linux?",
    "I'd like a shot of espresso, please.",
    "Café, naïve, résumé, façade, jalapeño.",
    "ÀÉÎÕÜ are upper-case vowels with accents.",
    "Embeddings map text to vectors; similar texts land close together.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n-1) + fibonacci(n-2)",
    "SELECT name, email FROM users WHERE created_at > '2024-01-01';",
    "The price is $1,299.99 (tax included) — a 15% discount!",
    "e-mail: someone@example.com, phone: +1 (555) 010-9999",
    "北京是中国的首都。",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "Ελληνικά γράμματα: αβγδε",
    "مرحبا بالعالم",
    "emoji test 🙂🚀 with symbols ★ ✓",
    "Tabs\tand\nnewlines\r\nare whitespace.",
    "   leading and trailing spaces   ",
    "UPPER CASE SENTENCE WITH SHOUTING",
    "unaffable antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "[CLS] special tokens [SEP] inside [MASK] the text [UNK]",
    "a",
    "?",
    "...",
    "The the the the the the the the the the",
    "I love machine learning and natural language processing.",
    "Deep learning has transformed computer vision.",
    "The stock market fell sharply on Monday.",
    "Investors worried about rising interest rates.",
    "She sells sea shells by the sea shore.",
    "To be, or not to be, that is the question.",
    "All happy families are alike; each unhappy family is unhappy in its own way.",
    "It was the best of times, it was the worst of times.",
    "Call me Ishmael.",
    "The weather today is sunny with a chance of rain in the evening.",
    "Please restart the server after applying the patch.",
    "The API returns a 429 status code when the rate limit is exceeded.",
    "Rust's borrow checker prevents data races at compile time.",
    "Photosynthesis converts light energy into chemical energy.",
    "The mitochondria is the powerhouse of the cell.",
    "Water boils at 100 degrees Celsius at sea level.",
    "don't won't can't shouldn't y'all",
    "state-of-the-art, well-known, mother-in-law",
    "1234567890 3.14159 2.71828 6.022e23",
    "http://example.com/path?query=1&other=two#fragment",
    "C'est la vie, mon ami. Ça va?",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    " ".join(["Long input sentence number %d about retrieval." % i for i in range(20)]),
    " ".join(["word"] * 250),
]


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + a : 8 + n + b], dtype="<f4")
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out


def layer_norm(x, g, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


ERF = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)))


def encode(w, cfg, ids):
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    dh = h // heads
    eps = cfg["layer_norm_eps"]
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i

        def lin(name, v):
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q = lin("attention.self.query", x).reshape(n, heads, dh).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, heads, dh).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, heads, dh).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(
            x + lin("attention.output.dense", ctx),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        up = gelu(lin("intermediate.dense", x))
        x = layer_norm(
            x + lin("output.dense", up),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            eps,
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    folder = sys.argv[1]
    cfg = json.load(open(folder + "/config.json"))
    w = load_safetensors(folder + "/model.safetensors")
    tok = Tokenizer.from_file(folder + "/tokenizer.json")
    tok.no_truncation()
    tok.no_padding()
    cases = []
    for text in SENTENCES:
        ids = tok.encode(text).ids
        assert len(ids) <= 256, (text, len(ids))
        vec = encode(w, cfg, ids)
        cases.append({"text": text, "ids": ids, "embedding": [float("%.8g" % v) for v in vec]})
    json.dump(
        {
            "model": "all-minilm-l6-v2",
            "made_by": "scripts/reference/embedding_fixtures.py (NumPy float64, tokenizers 0.21.1)",
            "cases": cases,
        },
        sys.stdout,
        ensure_ascii=False,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
