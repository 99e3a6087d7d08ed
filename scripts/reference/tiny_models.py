#!/usr/bin/env python3
"""Tiny test models per architecture: a real vocabulary (llama.cpp's
models/ggml-vocab-*.gguf, see vocab_fixtures.sh), random weights from a fixed
seed, a few layers and the architecture's real metadata keys, written with the
`gguf` package (pinned in scripts/reference/requirements-tiny.txt).

Usage: tiny_models.py VOCAB_DIR OUT_DIR
Writes OUT_DIR/tiny-<arch>-<type>.gguf for each entry of MODELS. With
llama-perplexity (install_llama_cpp.sh) the reference log-probabilities are
made by tiny_reference.sh; crates/engine/tests/tiny_models.rs compares.
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

# (arch, vocab file, weight type, extra)
MODELS = [
    ("llama", "llama-bpe", Q.Q8_0, {"untied": True, "rope_freqs": True}),
    ("llama", "llama-bpe", Q.Q4_0, {}),
    ("qwen2", "qwen2", Q.Q8_0, {"untied": False}),
    ("qwen2", "qwen2", Q.F16, {"untied": True}),
    ("qwen3", "qwen3-vocab", Q.Q8_0, {"untied": False}),
    ("qwen3", "qwen3-vocab", Q.Q5_K, {"untied": False}),
    ("qwen2", "qwen2", Q.IQ4_XS, {"untied": False}),
    ("llama", "llama-bpe", Q.BF16, {"untied": True}),
]

N_EMBD, N_FF, N_HEAD, N_KV, N_LAYER, HEAD_DIM = 64, 128, 4, 2, 2, 16
# Types with 256-weight super-blocks need rows of 256 (width, feed-forward
# and query width all 256).
WIDE = dict(N_EMBD=256, N_FF=512, N_HEAD=8, N_KV=4, HEAD_DIM=32)


def vocab_fields(path):
    r = gguf.GGUFReader(path)
    out = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer."):
            out[k] = (f.contents(), f.types)
    return out


LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)


def q5_k_block(x):
    """One Q5_K super-block (256 floats) by min/max per sub-block (valid, not GGML's search)."""
    sub = x.reshape(8, 32)
    mn = np.minimum(sub.min(1), 0.0)
    scales = (sub.max(1) - mn) / 31.0
    mins = -mn
    ms, mm = scales.max(), mins.max()
    ls = np.minimum(np.rint(scales * (63.0 / ms if ms > 0 else 0.0)), 63).astype(np.uint8)
    lm = np.minimum(np.rint(mins * (63.0 / mm if mm > 0 else 0.0)), 63).astype(np.uint8)
    packed = np.zeros(12, np.uint8)
    for j in range(8):
        if j < 4:
            packed[j] = ls[j]
            packed[j + 4] = lm[j]
        else:
            packed[j + 4] = (ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4)
            packed[j - 4] |= (ls[j] >> 4) << 6
            packed[j] |= (lm[j] >> 4) << 6
    dh = np.float16(ms / 63.0)
    mh = np.float16(mm / 63.0)
    q = np.zeros(256, np.uint8)
    for j in range(8):
        d = np.float32(dh) * ls[j]
        if d == 0:
            continue
        dm = np.float32(mh) * lm[j]
        q[32 * j:32 * j + 32] = np.clip(np.rint((sub[j] + dm) / d), 0, 31)
    qh = np.zeros(32, np.uint8)
    qs = np.zeros(128, np.uint8)
    for g in range(4):
        a, b = q[64 * g:64 * g + 32], q[64 * g + 32:64 * g + 64]
        qs[32 * g:32 * g + 32] = (a & 0x0F) | ((b & 0x0F) << 4)
        qh |= ((a >> 4) << (2 * g)).astype(np.uint8) | ((b >> 4) << (2 * g + 1)).astype(np.uint8)
    return np.concatenate([np.frombuffer(dh.tobytes() + mh.tobytes(), np.uint8), packed, qh, qs])


def iq4_xs_block(x):
    """One IQ4_XS super-block: per sub-block scale from its largest magnitude, nearest level."""
    sub = x.reshape(8, 32)
    idx = np.abs(sub).argmax(1)
    smax = sub[np.arange(8), idx] / -127.0
    d = np.abs(smax).max() / 31.0
    dh = np.float16(d)
    dq = np.float32(dh)
    ls = np.clip(np.round(smax / dq if dq != 0 else 0 * smax) + 32, 0, 63).astype(np.uint8)
    sh = 0
    sl = np.zeros(4, np.uint8)
    for ib in range(8):
        sl[ib // 2] |= (ls[ib] & 0x0F) << (4 * (ib % 2))
        sh |= int(ls[ib] >> 4) << (2 * ib)
    qs = np.zeros(128, np.uint8)
    for ib in range(8):
        dl = dq * (int(ls[ib]) - 32)
        v = sub[ib] / dl if dl != 0 else 0 * sub[ib]
        n = np.abs(v[:, None] - LEVELS[None, :]).argmin(1).astype(np.uint8)
        qs[16 * ib:16 * ib + 16] = n[:16] | (n[16:] << 4)
    return np.concatenate([np.frombuffer(dh.tobytes() + np.uint16(sh).tobytes(), np.uint8), sl, qs])


def quant(arr, ty):
    if ty in (Q.Q5_K, Q.IQ4_XS):
        f = q5_k_block if ty == Q.Q5_K else iq4_xs_block
        rows = [np.concatenate([f(r[k:k + 256]) for k in range(0, r.size, 256)]) for r in arr.astype(np.float32)]
        return np.stack(rows), ty
    if ty in (Q.F32,):
        return arr.astype(np.float32), Q.F32
    if ty == Q.F16:
        return arr.astype(np.float16), Q.F16
    return gguf.quants.quantize(arr.astype(np.float32), ty), ty


def write(arch, vocab, ty, extra, vocab_dir, out_dir):
    global N_EMBD, N_FF, N_HEAD, N_KV, HEAD_DIM
    if ty in (Q.Q5_K, Q.IQ4_XS):
        N_EMBD, N_FF, N_HEAD, N_KV, HEAD_DIM = (WIDE[k] for k in ("N_EMBD", "N_FF", "N_HEAD", "N_KV", "HEAD_DIM"))
    else:
        N_EMBD, N_FF, N_HEAD, N_KV, HEAD_DIM = 64, 128, 4, 2, 16
    rng = np.random.default_rng(1234 + len(arch) + int(ty))
    v = vocab_fields(os.path.join(vocab_dir, f"ggml-vocab-{vocab}.gguf"))
    n_vocab = len(v["tokenizer.ggml.tokens"][0])
    name = f"tiny-{arch}-{ty.name.lower()}"
    w = gguf.GGUFWriter(os.path.join(out_dir, f"{name}.gguf"), arch)
    w.add_name(name)
    w.add_block_count(N_LAYER)
    w.add_context_length(2048)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0 if arch == "llama" else 1000000.0)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_file_type(int(ty) if ty != Q.F16 else 1)
    w.add_tokenizer_model(v["tokenizer.ggml.model"][0])
    if "tokenizer.ggml.pre" in v:
        w.add_tokenizer_pre(v["tokenizer.ggml.pre"][0])
    w.add_token_list(v["tokenizer.ggml.tokens"][0])
    w.add_token_types(v["tokenizer.ggml.token_type"][0])
    if "tokenizer.ggml.merges" in v:
        w.add_token_merges(v["tokenizer.ggml.merges"][0])
    for key, setter in [
        ("tokenizer.ggml.bos_token_id", w.add_bos_token_id),
        ("tokenizer.ggml.eos_token_id", w.add_eos_token_id),
    ]:
        if key in v:
            setter(int(v[key][0]))
    w.add_add_bos_token(arch == "llama")

    def mat(rows, cols, scale):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def add(name, arr, t):
        data, t2 = quant(arr, t)
        if t2 in (Q.F32, Q.F16):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=t2)

    q_dim, kv_dim = N_HEAD * HEAD_DIM, N_KV * HEAD_DIM
    add("token_embd.weight", mat(n_vocab, N_EMBD, 0.15), Q.F16 if ty == Q.F16 else Q.Q8_0)
    add("output_norm.weight", 1.0 + 0.1 * rng.standard_normal(N_EMBD).astype(np.float32), Q.F32)
    if extra.get("untied"):
        add("output.weight", mat(n_vocab, N_EMBD, 0.15), Q.F16 if ty == Q.F16 else Q.Q8_0)
    if extra.get("rope_freqs"):
        # Llama 3's long-context factors: 1 for high frequencies, up to 8 for low.
        add("rope_freqs.weight", np.linspace(1.0, 8.0, HEAD_DIM // 2).astype(np.float32), Q.F32)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", 1.0 + 0.1 * rng.standard_normal(N_EMBD).astype(np.float32), Q.F32)
        add(p + "attn_q.weight", mat(q_dim, N_EMBD, 0.3), ty)
        add(p + "attn_k.weight", mat(kv_dim, N_EMBD, 0.3), ty)
        add(p + "attn_v.weight", mat(kv_dim, N_EMBD, 0.3), ty)
        if arch == "qwen2":
            for n, dim in [("attn_q", q_dim), ("attn_k", kv_dim), ("attn_v", kv_dim)]:
                add(p + n + ".bias", 0.2 * rng.standard_normal(dim).astype(np.float32), Q.F32)
        if arch == "qwen3":
            add(p + "attn_q_norm.weight", 1.0 + 0.1 * rng.standard_normal(HEAD_DIM).astype(np.float32), Q.F32)
            add(p + "attn_k_norm.weight", 1.0 + 0.1 * rng.standard_normal(HEAD_DIM).astype(np.float32), Q.F32)
        add(p + "attn_output.weight", mat(N_EMBD, q_dim, 0.2), ty)
        add(p + "ffn_norm.weight", 1.0 + 0.1 * rng.standard_normal(N_EMBD).astype(np.float32), Q.F32)
        add(p + "ffn_gate.weight", mat(N_FF, N_EMBD, 0.3), ty)
        add(p + "ffn_up.weight", mat(N_FF, N_EMBD, 0.3), ty)
        add(p + "ffn_down.weight", mat(N_EMBD, N_FF, 0.2), ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(name)


def main():
    vocab_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    for arch, vocab, ty, extra in MODELS:
        if vocab == "qwen3-vocab":
            vocab = "qwen2"
        write(arch, vocab, ty, extra, vocab_dir, out_dir)


if __name__ == "__main__":
    main()
