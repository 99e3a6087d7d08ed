//! Shared by the integration tests: finding the real model files and loading
//! their tokenizers.

#![allow(dead_code)]

use std::path::PathBuf;

use tokenizer::Tokenizer;

pub const SMOLLM2: &str = testkit::SMOLLM2;
pub const GEMMA3: &str = testkit::GEMMA3;

/// The catalog model's GGUF file (pulled on first use; see `testkit`).
pub fn model_path(name: &str) -> Option<PathBuf> {
    Some(testkit::model_path(name))
}

/// The model's GGUF and its tokenizer.
pub fn load(file: &str) -> Option<(gguf::GgufFile, Tokenizer)> {
    let path = model_path(file)?;
    let f = gguf::GgufFile::open(&path).expect("model opens");
    let tok = Tokenizer::from_gguf(&f).expect("tokenizer loads");
    Some((f, tok))
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer")
}
