#!/usr/bin/env python3
"""Tiny random-weight F32 models, one per architecture and shape, with a small
vocabulary, written with the `gguf` package (scripts/reference/requirements-tiny.txt).
tiny_fixtures.sh quantizes them with llama-quantize and scores them with
llama-perplexity; the results are committed under fixtures/tiny/ and checked
by crates/engine/tests/tiny_fixtures.rs in CI.

The vocabulary: llama.cpp's ggml-vocab-llama-bpe.gguf (Llama 3's byte-level
BPE) cut to its 256 byte tokens, the next tokens up to id N_BASE, the merges
that stay inside them (in their order), and the special tokens the families'
chat templates use. Small enough that a model and its reference logits stay
well under a megabyte.

Usage: tiny_fixtures.py VOCAB_DIR OUT_DIR   (writes OUT_DIR/base-<name>.gguf)
"""
import os
import sys

import numpy as np
import gguf

N_BASE = 368
SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<|end|>", "<|user|>", "<|assistant|>",
    "<|system|>", "<|start_of_role|>", "<|end_of_role|>", "<think>", "</think>", "[INST]",
]

# name: (arch, shape, extra keys). Shapes: "narrow" (width 64, for 32-weight
# blocks), "wide" (width 256, for 256-weight super-blocks).
MODELS = {
    "llama": ("llama", "narrow", {"untied": True, "rope_freqs": True}),
    "llama-wide": ("llama", "wide", {}),
    "qwen2": ("qwen2", "narrow", {}),
    "qwen3": ("qwen3", "narrow", {"head_dim": 32}),
    "gemma3": ("gemma3", "narrow", {"layers": 6}),
    "phi3": ("phi3", "narrow", {"untied": True}),
    "phi3-long": ("phi3", "narrow", {"untied": True, "n_ctx_orig": 16}),
    "granite": ("granite", "narrow", {}),
    "smollm3": ("smollm3", "narrow", {"layers": 4}),
    "mistral3": ("mistral3", "narrow", {"untied": True}),
    "qwen35": ("qwen35", "narrow", {"layers": 4}),
}
SHAPES = {
    "narrow": dict(embd=64, ff=128, head=4, kv=2, head_dim=16, layers=2),
    "wide": dict(embd=256, ff=256, head=4, kv=2, head_dim=64, layers=1),
}


def small_vocab(vocab_dir):
    r = gguf.GGUFReader(os.path.join(vocab_dir, "ggml-vocab-llama-bpe.gguf"))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()[:N_BASE]
    kept = set(tokens)
    merges = [
        m for m in r.fields["tokenizer.ggml.merges"].contents()
        if all(p in kept for p in m.split(" ")) and m.replace(" ", "") in kept
    ]
    types = [1] * len(tokens) + [3] * len(SPECIALS)
    return tokens + SPECIALS, types, merges


def write(name, vocab, out_dir):
    arch, shape, extra = MODELS[name]
    s = dict(SHAPES[shape])
    s["head_dim"] = extra.get("head_dim", s["head_dim"])
    s["layers"] = extra.get("layers", s["layers"])
    tokens, types, merges = vocab
    n_vocab = len(tokens)
    rng = np.random.default_rng(sum(map(ord, name)))
    path = os.path.join(out_dir, f"base-{name}.gguf")
    w = gguf.GGUFWriter(path, arch)
    # Not the family's name: llama.cpp keys per-token attributes on it (a
    # "phi3" name wants <unk>, <s>, </s> and <|endoftext|> in the vocabulary).
    w.add_name("parlance tiny model")
    w.add_block_count(s["layers"])
    w.add_context_length(2048)
    w.add_embedding_length(s["embd"])
    w.add_feed_forward_length(s["ff"])
    w.add_head_count(s["head"])
    w.add_head_count_kv(s["kv"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0 if arch in ("llama", "granite", "smollm3") else 1000000.0)
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_rope_dimension_count(s["head_dim"] if arch != "qwen35" else s["head_dim"] // 2)
    w.add_file_type(0)  # all F32
    if arch == "gemma3":
        w.add_sliding_window(8)
        w.add_uint32("gemma3.attention.sliding_window_pattern", 6)
        w.add_float32("gemma3.rope.freq_base_swa", 10000.0)
    if arch == "granite":
        w.add_float32("granite.embedding_scale", 3.0)
        w.add_float32("granite.residual_scale", 0.5)
        w.add_float32("granite.attention.scale", 0.2)
        w.add_float32("granite.logit_scale", 2.0)
    if arch == "phi3":
        # LongRoPE: short factors below the original context (llama-perplexity
        # runs 32 positions, rounded up to 256), long ones above it
        # (phi3-long), and their magnitude factor.
        w.add_uint32("phi3.rope.scaling.original_context_length", extra.get("n_ctx_orig", 1024))
        w.add_float32("phi3.rope.scaling.attn_factor", 1.19)
        w.add_sliding_window(262144)
    if arch == "mistral3":
        # YaRN and Llama 4's attention temperature, with an original context
        # short enough that both matter within 32 positions.
        w.add_string("mistral3.rope.scaling.type", "yarn")
        w.add_float32("mistral3.rope.scaling.factor", 4.0)
        w.add_uint32("mistral3.rope.scaling.original_context_length", 16)
        w.add_float32("mistral3.rope.scaling.yarn_beta_fast", 32.0)
        w.add_float32("mistral3.rope.scaling.yarn_beta_slow", 1.0)
        w.add_float32("mistral3.rope.scaling.yarn_log_multiplier", 1.0)
        w.add_float32("mistral3.attention.temperature_scale", 0.1)
    if arch == "qwen35":
        # Gated DeltaNet layers (0 and 2) and full gated-attention layers (1
        # and 3); 2 key heads for 4 value heads; partial interleaved M-RoPE
        # (8 of 16 dimensions) whose fourth section leaves a pair unrotated.
        for k, v in QWEN35_SSM.items():
            w.add_uint32(f"qwen35.ssm.{k}", v)
        w.add_uint32("qwen35.full_attention_interval", 2)
        w.add_array("qwen35.rope.dimension_sections", [1, 1, 1, 1])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe" if arch != "qwen35" else "qwen35")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    w.add_eos_token_id(tokens.index("<|end_of_text|>"))
    w.add_add_bos_token(True)

    def mat(rows, cols, scale):
        # Scales are for width 64; wider inputs get proportionally smaller
        # weights so that activations (and logits) stay in the same range.
        return (rng.standard_normal((rows, cols)) * scale * np.sqrt(64.0 / cols)).astype(np.float32)

    def vec(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    d, ff, hd = s["embd"], s["ff"], s["head_dim"]
    q_dim, kv_dim = s["head"] * hd, s["kv"] * hd
    w.add_tensor("token_embd.weight", mat(n_vocab, d, 0.15 if arch != "gemma3" else 0.02))
    w.add_tensor("output_norm.weight", vec(d))
    if extra.get("untied"):
        w.add_tensor("output.weight", mat(n_vocab, d, 0.15))
    if extra.get("rope_freqs"):
        w.add_tensor("rope_freqs.weight", np.linspace(1.0, 8.0, hd // 2).astype(np.float32))
    if arch == "phi3":
        w.add_tensor("rope_factors_short.weight", np.linspace(1.0, 3.0, hd // 2).astype(np.float32))
        w.add_tensor("rope_factors_long.weight", np.linspace(2.0, 40.0, hd // 2).astype(np.float32))
    for i in range(s["layers"]):
        p = f"blk.{i}."
        if arch == "qwen35":
            qwen35_layer(w, p, i, d, ff, q_dim, kv_dim, hd, mat, vec, rng)
            continue
        w.add_tensor(p + "attn_norm.weight", vec(d))
        if arch == "phi3":
            w.add_tensor(p + "attn_qkv.weight", mat(q_dim + 2 * kv_dim, d, 0.3))
        else:
            w.add_tensor(p + "attn_q.weight", mat(q_dim, d, 0.3))
            w.add_tensor(p + "attn_k.weight", mat(kv_dim, d, 0.3))
            w.add_tensor(p + "attn_v.weight", mat(kv_dim, d, 0.3))
        if arch == "qwen2":
            for n, dim in [("attn_q", q_dim), ("attn_k", kv_dim), ("attn_v", kv_dim)]:
                w.add_tensor(p + n + ".bias", (0.2 * rng.standard_normal(dim)).astype(np.float32))
        if arch in ("qwen3", "gemma3"):
            w.add_tensor(p + "attn_q_norm.weight", vec(hd))
            w.add_tensor(p + "attn_k_norm.weight", vec(hd))
        w.add_tensor(p + "attn_output.weight", mat(d, q_dim, 0.2))
        if arch == "gemma3":
            w.add_tensor(p + "post_attention_norm.weight", vec(d))
        w.add_tensor(p + "ffn_norm.weight", vec(d))
        if arch == "phi3":
            w.add_tensor(p + "ffn_up.weight", mat(2 * ff, d, 0.3))
        else:
            w.add_tensor(p + "ffn_gate.weight", mat(ff, d, 0.3))
            w.add_tensor(p + "ffn_up.weight", mat(ff, d, 0.3))
        w.add_tensor(p + "ffn_down.weight", mat(d, ff, 0.2))
        if arch == "gemma3":
            w.add_tensor(p + "post_ffw_norm.weight", vec(d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(path)


QWEN35_SSM = dict(conv_kernel=4, state_size=16, group_count=2, time_step_rank=4, inner_size=64)


def qwen35_layer(w, p, i, d, ff, q_dim, kv_dim, hd, mat, vec, rng):
    """One Qwen 3.5 block: linear attention on even layers, full on odd."""
    w.add_tensor(p + "attn_norm.weight", vec(d))
    if i % 2 == 0:
        c = QWEN35_SSM
        key_dim = c["state_size"] * c["group_count"]
        value_dim = c["inner_size"]
        conv_dim = 2 * key_dim + value_dim
        hv = c["time_step_rank"]
        w.add_tensor(p + "attn_qkv.weight", mat(conv_dim, d, 0.3))
        w.add_tensor(p + "attn_gate.weight", mat(value_dim, d, 0.3))
        w.add_tensor(p + "ssm_conv1d.weight", (0.5 * rng.standard_normal((conv_dim, c["conv_kernel"]))).astype(np.float32))
        w.add_tensor(p + "ssm_dt.bias", (0.5 * rng.standard_normal(hv)).astype(np.float32))
        w.add_tensor(p + "ssm_a", (-np.exp(rng.uniform(-1.0, 1.0, hv))).astype(np.float32))
        w.add_tensor(p + "ssm_beta.weight", mat(hv, d, 0.3))
        w.add_tensor(p + "ssm_alpha.weight", mat(hv, d, 0.3))
        w.add_tensor(p + "ssm_norm.weight", vec(c["state_size"]))
        w.add_tensor(p + "ssm_out.weight", mat(d, value_dim, 0.2))
    else:
        # Per head: the query, then its output gate.
        w.add_tensor(p + "attn_q.weight", mat(2 * q_dim, d, 0.3))
        w.add_tensor(p + "attn_k.weight", mat(kv_dim, d, 0.3))
        w.add_tensor(p + "attn_v.weight", mat(kv_dim, d, 0.3))
        w.add_tensor(p + "attn_q_norm.weight", vec(hd))
        w.add_tensor(p + "attn_k_norm.weight", vec(hd))
        w.add_tensor(p + "attn_output.weight", mat(d, q_dim, 0.2))
    w.add_tensor(p + "post_attention_norm.weight", vec(d))
    w.add_tensor(p + "ffn_gate.weight", mat(ff, d, 0.3))
    w.add_tensor(p + "ffn_up.weight", mat(ff, d, 0.3))
    w.add_tensor(p + "ffn_down.weight", mat(d, ff, 0.2))


def write_gemma4(name, vocab, out_dir):
    """Gemma 4 (llama.cpp's gemma4 keys and tensor names): six layers,
    sliding (head size 64, 2 KV heads, base 1e4, window 8) and global (head
    size 128, 1 KV head, base 1e6, the upper half of the pairs held still by
    rope_freqs' 1e30 factors) in turn (heads of at least 64: llama.cpp's CPU
    attention adds heads of 16 or 32 one element at a time, which our
    emulation does not follow at Gemma 4's unscaled, large scores); the last two share the cache of layers
    2 and 3 (double-wide feed-forward, as the converter writes); per-layer
    token embeddings of width 32; layer 1 without attn_v (values from the
    key projection); layer output scales; an untied output and a final
    logit soft-cap of 8."""
    tokens, types, merges = vocab
    n_vocab = len(tokens)
    rng = np.random.default_rng(sum(map(ord, name)))
    path = os.path.join(out_dir, f"base-{name}.gguf")
    a = "gemma4"
    w = gguf.GGUFWriter(path, a)
    w.add_name("parlance tiny model")
    n_layer, d, head, ple = 6, 64, 4, 32
    swa = [i % 2 == 0 for i in range(n_layer)]
    shared = 2
    hd = [64 if s else 128 for s in swa]
    kvh = [2 if s else 1 for s in swa]
    ff = [128 if i < n_layer - shared else 256 for i in range(n_layer)]
    w.add_block_count(n_layer)
    w.add_context_length(2048)
    w.add_embedding_length(d)
    w.add_array(f"{a}.feed_forward_length", ff)
    w.add_head_count(head)
    w.add_array(f"{a}.attention.head_count_kv", kvh)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1000000.0)
    w.add_float32(f"{a}.rope.freq_base_swa", 10000.0)
    w.add_uint32(f"{a}.attention.key_length", 128)
    w.add_uint32(f"{a}.attention.value_length", 128)
    w.add_uint32(f"{a}.attention.key_length_swa", 64)
    w.add_uint32(f"{a}.attention.value_length_swa", 64)
    w.add_uint32(f"{a}.rope.dimension_count", 128)
    w.add_uint32(f"{a}.rope.dimension_count_swa", 64)
    w.add_uint32(f"{a}.attention.sliding_window", 8)
    w.add_array(f"{a}.attention.sliding_window_pattern", swa)
    w.add_uint32(f"{a}.attention.shared_kv_layers", shared)
    w.add_uint32(f"{a}.embedding_length_per_layer_input", ple)
    w.add_float32(f"{a}.final_logit_softcapping", 8.0)
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    w.add_eos_token_id(tokens.index("<|end_of_text|>"))
    w.add_add_bos_token(True)

    def mat(rows, cols, scale):
        return (rng.standard_normal((rows, cols)) * scale * np.sqrt(64.0 / cols)).astype(np.float32)

    def vec(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(n_vocab, d, 0.02))
    w.add_tensor("output_norm.weight", vec(d))
    # Untied and wide enough that the soft-cap bends the logits.
    w.add_tensor("output.weight", mat(n_vocab, d, 0.5))
    w.add_tensor("rope_freqs.weight", np.array([1.0] * 32 + [1e30] * 32, dtype=np.float32))
    w.add_tensor("per_layer_token_embd.weight", mat(n_vocab, ple * n_layer, 0.3))
    w.add_tensor("per_layer_model_proj.weight", mat(ple * n_layer, d, 0.3))
    w.add_tensor("per_layer_proj_norm.weight", vec(ple))
    for i in range(n_layer):
        p = f"blk.{i}."
        q_dim, kv_dim = head * hd[i], kvh[i] * hd[i]
        w.add_tensor(p + "attn_norm.weight", vec(d))
        w.add_tensor(p + "attn_q.weight", mat(q_dim, d, 0.3))
        w.add_tensor(p + "attn_q_norm.weight", vec(hd[i]))
        if i < n_layer - shared:
            w.add_tensor(p + "attn_k.weight", mat(kv_dim, d, 0.3))
            if i != 1:
                w.add_tensor(p + "attn_v.weight", mat(kv_dim, d, 0.3))
            w.add_tensor(p + "attn_k_norm.weight", vec(hd[i]))
        w.add_tensor(p + "attn_output.weight", mat(d, q_dim, 0.2))
        w.add_tensor(p + "post_attention_norm.weight", vec(d))
        w.add_tensor(p + "ffn_norm.weight", vec(d))
        w.add_tensor(p + "ffn_gate.weight", mat(ff[i], d, 0.3))
        w.add_tensor(p + "ffn_up.weight", mat(ff[i], d, 0.3))
        w.add_tensor(p + "ffn_down.weight", mat(d, ff[i], 0.2))
        w.add_tensor(p + "post_ffw_norm.weight", vec(d))
        w.add_tensor(p + "inp_gate.weight", mat(ple, d, 0.3))
        w.add_tensor(p + "proj.weight", mat(d, ple, 0.3))
        w.add_tensor(p + "post_norm.weight", vec(d))
        w.add_tensor(p + "layer_output_scale.weight", np.array([0.7 + 0.1 * i], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(path)


def main():
    vocab_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    vocab = small_vocab(vocab_dir)
    for name in MODELS:
        write(name, vocab, out_dir)
    write_gemma4("gemma4", vocab, out_dir)


if __name__ == "__main__":
    main()
