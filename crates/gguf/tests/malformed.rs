//! Malformed and truncated GGUF images are errors, never panics.

use gguf::{GgmlType, GgufError, GgufFile, Value};
use proptest::prelude::*;

/// Builds a small valid GGUF v3 image with two metadata keys and one Q8_0 tensor.
fn tiny_gguf() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&2u64.to_le_bytes()); // kv
    let key = |b: &mut Vec<u8>, k: &str| {
        b.extend_from_slice(&(k.len() as u64).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
    };
    key(&mut b, "general.architecture");
    b.extend_from_slice(&8u32.to_le_bytes());
    key(&mut b, "llama");
    key(&mut b, "tokenizer.ggml.scores");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&6u32.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    b.extend_from_slice(&1.5f32.to_le_bytes());
    b.extend_from_slice(&(-2.0f32).to_le_bytes());
    // tensor: "w", 2 dims [32, 2], Q8_0, offset 0
    key(&mut b, "w");
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&32u64.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend((0..68u32).map(|i| i as u8));
    b
}

#[test]
fn reads_a_valid_image() {
    let f = GgufFile::from_bytes(tiny_gguf()).unwrap();
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(
        f.get_f32_array("tokenizer.ggml.scores"),
        Some(vec![1.5, -2.0])
    );
    let t = f.tensor("w").unwrap();
    assert_eq!(t.ty, GgmlType::Q8_0);
    assert_eq!(t.dims, vec![32, 2]);
    assert_eq!(t.n_bytes, 68);
    assert_eq!(f.tensor_data(t)[5], 5);
    assert!(matches!(
        f.get("general.architecture"),
        Some(Value::String(_))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let full = tiny_gguf();
    for n in 0..full.len() {
        let r = GgufFile::from_bytes(full[..n].to_vec());
        assert!(r.is_err(), "truncated at {n} was accepted");
    }
}

#[test]
fn bad_magic_and_version_are_named() {
    let mut b = tiny_gguf();
    b[0] = b'X';
    assert!(matches!(GgufFile::from_bytes(b), Err(GgufError::BadMagic)));
    let mut b = tiny_gguf();
    b[4] = 9;
    assert!(matches!(
        GgufFile::from_bytes(b),
        Err(GgufError::UnsupportedVersion(9))
    ));
}

#[test]
fn huge_counts_are_refused_without_allocating() {
    let mut b = tiny_gguf();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // kv count
    assert!(GgufFile::from_bytes(b).is_err());
    let mut b = tiny_gguf();
    b[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes()); // tensor count
    assert!(GgufFile::from_bytes(b).is_err());
}

proptest! {
    #[test]
    fn corrupted_bytes_never_panic(pos in 0usize..200, val: u8) {
        let mut b = tiny_gguf();
        let p = pos % b.len();
        b[p] = val;
        if let Ok(f) = GgufFile::from_bytes(b) {
            for t in f.tensors() {
                let _ = f.tensor_data(t).len();
            }
        }
    }
}

#[test]
fn real_models_open_when_present() {
    let dir = std::env::var("PARLANCE_TEST_MODELS_DIR").unwrap_or_else(|_| "/tmp/models".into());
    let path = std::path::Path::new(&dir).join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        println!("skipping: model not found at {}", path.display());
        return;
    }
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.get_u32("llama.block_count"), Some(30));
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    let e = f.tensor("token_embd.weight").unwrap();
    assert_eq!(e.ty, GgmlType::Q8_0);
    assert_eq!(e.dims, vec![576, 49152]);
}
