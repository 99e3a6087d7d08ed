"""Makes a tiny random-weight `nomic-bert` GGUF (the graph of
nomic-embed-text v1/v1.5 as llama.cpp b11434 converts it: fused attn_qkv,
NeoX rotary positions, SwiGLU feed-forward without biases, post-norm
LayerNorm) with a small WordPiece vocabulary, and the vectors llama.cpp's
llama-embedding gives for a few sentences (mean pooling, L2-normalised).
crates/encoder/tests/nomic_bert.rs compares ours with them.

Usage: target/bench-venv/bin/python scripts/reference/nomic_bert_fixture.py
  (needs gguf-py and numpy; the llama.cpp build from install_llama_cpp.sh).
Writes fixtures/tiny-encoder/nomic-bert.gguf and fixtures/tiny-encoder/nomic-bert.json.
"""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
LLAMA = os.path.expanduser(
    os.environ.get("LLAMA_CPP_DIR", "~/.cache/parlance-reference/llama.cpp"))
sys.path.insert(0, os.path.join(LLAMA, "gguf-py"))
import gguf  # noqa: E402

H, HEADS, LAYERS, FF, CTX = 32, 4, 2, 48, 128
WORDS = ("the a cat dog sat on mat quick brown fox jumps over lazy "
         "hello world embedding model text search query document is "
         "of and to in it for".split())
PIECES = ["s", "ing", "ed", "er", "ly"]
TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "search_query: cats and dogs",
    "a document of text is embedded",
    "it",
]


def main():
    rng = np.random.default_rng(18)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    types = [3] * 5
    for w in WORDS + list("abcdefghijklmnopqrstuvwxyz.,:_?!"):
        if "\u2581" + w not in tokens:
            tokens.append("\u2581" + w)
            types.append(1)
    for p in PIECES + list("abcdefghijklmnopqrstuvwxyz"):
        if p not in tokens:
            tokens.append(p)
            types.append(1)
    vocab = len(tokens)
    out = os.path.join(ROOT, "fixtures", "tiny-encoder", "nomic-bert.gguf")
    w = gguf.GGUFWriter(out, "nomic-bert")
    w.add_name("tiny nomic-bert (random weights)")
    w.add_block_count(LAYERS)
    w.add_context_length(CTX)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_rope_freq_base(1000.0)
    w.add_token_type_count(2)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("jina-v2-en")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_pad_token_id(0)
    w.add_unk_token_id(1)
    w.add_mask_token_id(4)
    w.add_bos_token_id(2)
    w.add_eos_token_id(3)
    w.add_uint32("tokenizer.ggml.seperator_token_id", 3)
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)

    def t(name, *shape, scale=0.3, center=0.0):
        w.add_tensor(name, (center + scale * rng.standard_normal(shape)).astype(np.float32))

    t("token_embd.weight", vocab, H, scale=1.0)
    t("token_types.weight", 2, H, scale=0.5)
    t("token_embd_norm.weight", H, scale=0.1, center=1.0)
    t("token_embd_norm.bias", H, scale=0.1)
    for i in range(LAYERS):
        b = f"blk.{i}."
        t(b + "attn_qkv.weight", 3 * H, H)
        t(b + "attn_output.weight", H, H)
        t(b + "attn_output_norm.weight", H, scale=0.1, center=1.0)
        t(b + "attn_output_norm.bias", H, scale=0.1)
        t(b + "ffn_up.weight", FF, H)
        t(b + "ffn_gate.weight", FF, H)
        t(b + "ffn_down.weight", H, FF)
        t(b + "layer_output_norm.weight", H, scale=0.1, center=1.0)
        t(b + "layer_output_norm.bias", H, scale=0.1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    exe = os.path.join(LLAMA, "build", "bin", "llama-embedding")
    cases = []
    for text in TEXTS:
        res = subprocess.run(
            [exe, "-m", out, "-p", text, "--pooling", "mean", "--embd-normalize", "2",
             "--embd-output-format", "json", "-t", "1", "-c", str(CTX)],
            check=True, capture_output=True, text=True)
        data = json.loads(res.stdout)
        cases.append({"text": text, "embedding": data["data"][0]["embedding"]})
    with open(os.path.join(ROOT, "fixtures", "tiny-encoder", "nomic-bert.json"), "w") as f:
        json.dump({"model": "fixtures/tiny-encoder/nomic-bert.gguf",
                   "reference": "llama.cpp b11434 llama-embedding, mean pooling, L2",
                   "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
