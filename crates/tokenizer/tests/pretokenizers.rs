//! BPE pre-tokenizers that llama.cpp ships no vocabulary test file for
//! (`tekken`: Mistral and Ministral 3; `gpt-4o`: Phi-4 mini): Llama 3's
//! vocabulary (`ggml-vocab-llama-bpe.gguf`) with `tokenizer.ggml.pre` set to
//! each, against llama-tokenize b11434's ids for the same texts (committed in
//! `fixtures/tokenizer/pre-<name>.json` by
//! `scripts/reference/pretokenizer_fixtures.py`). A merge across a word
//! boundary the pre-tokenizer draws differently changes the ids, so the
//! large vocabulary makes the split visible.
//!
//! The vocabulary is read from `~/.cache/parlance-reference/llama.cpp/models`
//! (or `$PARLANCE_VOCAB_DIR`); without it the test says so and passes,
//! unless `PARLANCE_REQUIRE_VOCAB=1` (as in CI).

use std::path::PathBuf;

use gguf::GgufFile;
use tokenizer::Tokenizer;

fn vocab_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("PARLANCE_VOCAB_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/parlance-reference/llama.cpp/models"),
    };
    if dir.join("ggml-vocab-llama-bpe.gguf").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PARLANCE_REQUIRE_VOCAB").is_none(),
        "no vocab files in {}: run scripts/reference/vocab_fixtures.sh",
        dir.display()
    );
    println!("skipping: no vocab files in {}", dir.display());
    None
}

/// `bytes` (a GGUF) with the string value of `tokenizer.ggml.pre` replaced.
fn with_pre(bytes: &[u8], pre: &str) -> Vec<u8> {
    let key = b"tokenizer.ggml.pre";
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key);
    needle.extend_from_slice(&8u32.to_le_bytes()); // type: string
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("tokenizer.ggml.pre");
    let len_at = at + needle.len();
    let old_len = u64::from_le_bytes(bytes[len_at..len_at + 8].try_into().unwrap()) as usize;
    let mut out = bytes[..len_at].to_vec();
    out.extend_from_slice(&(pre.len() as u64).to_le_bytes());
    out.extend_from_slice(pre.as_bytes());
    out.extend_from_slice(&bytes[len_at + 8 + old_len..]);
    out
}

fn check(pre: &str) {
    let Some(dir) = vocab_dir() else {
        return;
    };
    let bytes = std::fs::read(dir.join("ggml-vocab-llama-bpe.gguf")).unwrap();
    let f = GgufFile::from_bytes(with_pre(&bytes, pre)).unwrap();
    assert_eq!(f.get_str("tokenizer.ggml.pre"), Some(pre));
    let tok = Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("{pre}: {e}"));
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../fixtures/tokenizer/pre-{pre}.json"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() > 40, "{pre}: only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let text = c["text"].as_str().unwrap();
            let want: Vec<u32> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let got = tok.encode(text, false, false);
            (got != want).then(|| format!("{text:?}\n  want {want:?}\n  got  {got:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{pre}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn tekken() {
    check("tekken");
}

#[test]
fn gpt_4o() {
    check("gpt-4o");
}
