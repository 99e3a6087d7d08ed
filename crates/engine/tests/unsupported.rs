//! A GGUF of an architecture or weight type the engine does not run fails to
//! load with a message naming it, never a panic.

use std::sync::Arc;

use engine::Model;
use gguf::GgufFile;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 image: `arch`'s shape keys (width 256, one layer), a 4-token
/// vocabulary, and `tensors` as (name, dims, GGML type id, data bytes).
fn image(arch: &str, tensors: &[(&str, Vec<u64>, u32, usize)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    let u32s = [
        ("block_count", 1u32),
        ("embedding_length", 256),
        ("feed_forward_length", 256),
        ("attention.head_count", 4),
        ("context_length", 128),
    ];
    b.extend_from_slice(&((u32s.len() + 3) as u64).to_le_bytes());
    put_str(&mut b, "general.architecture");
    b.extend_from_slice(&8u32.to_le_bytes());
    put_str(&mut b, arch);
    for (k, v) in u32s {
        put_str(&mut b, &format!("{arch}.{k}"));
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&v.to_le_bytes());
    }
    put_str(&mut b, "tokenizer.ggml.model");
    b.extend_from_slice(&8u32.to_le_bytes());
    put_str(&mut b, "llama");
    put_str(&mut b, "tokenizer.ggml.tokens");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&4u64.to_le_bytes());
    for t in ["<unk>", "<s>", "</s>", "a"] {
        put_str(&mut b, t);
    }
    let mut offset = 0u64;
    for (name, dims, ty, len) in tensors {
        put_str(&mut b, name);
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        dims.iter()
            .for_each(|d| b.extend_from_slice(&d.to_le_bytes()));
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        offset += (*len as u64).div_ceil(32) * 32;
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.resize(b.len() + offset as usize, 0);
    b
}

fn load_error(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes) {
        Err(e) => e.to_string(),
        Ok(f) => match Model::from_file(Arc::new(f)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the model loaded"),
        },
    }
}

#[test]
fn unsupported_architecture_is_named() {
    let msg = load_error(image("mamba", &[]));
    assert!(msg.contains("'mamba' is not supported"), "{msg}");
}

#[test]
fn qwen35_moe_is_refused_by_name() {
    let msg = load_error(image("qwen35moe", &[]));
    assert!(msg.contains("'qwen35moe'"), "{msg}");
    assert!(msg.contains("mixture-of-experts"), "{msg}");
}

#[test]
fn a_qwen35_file_without_its_linear_attention_keys_is_refused() {
    let msg = load_error(image("qwen35", &[]));
    assert!(msg.contains("qwen35.ssm.conv_kernel is missing"), "{msg}");
}

#[test]
fn unsupported_weight_type_is_named() {
    // Q8_K (id 15, llama.cpp's activation type): the reader knows its size,
    // the kernels do not run it as weights.
    let q8k_bytes = 292 * 256;
    let msg = load_error(image(
        "llama",
        &[
            ("blk.0.attn_norm.weight", vec![256], 0, 256 * 4),
            ("blk.0.attn_q.weight", vec![256, 256], 15, q8k_bytes),
        ],
    ));
    assert!(msg.contains("Q8_K"), "{msg}");
    assert!(msg.contains("blk.0.attn_q.weight"), "{msg}");
}

#[test]
fn unknown_iq_type_is_named() {
    // IQ2_XXS (id 16): the reader cannot even size it.
    let msg = load_error(image(
        "llama",
        &[("blk.0.attn_q.weight", vec![256, 256], 16, 66 * 256)],
    ));
    assert!(msg.contains("IQ2_XXS"), "{msg}");
}
