//! llama.cpp's own tokenizer test vectors: the `models/ggml-vocab-*.gguf`
//! vocabulary-only files of the llama.cpp b11434 source with their `.inp`
//! texts and `.out` token ids (what `tests/test-tokenizer-0.cpp` checks:
//! no special tokens added, none parsed). Every case must match for each
//! pre-tokenizer family we support.
//!
//! The files come from `scripts/reference/vocab_fixtures.sh` (into
//! `~/.cache/parlance-reference/llama.cpp/models`, or `$PARLANCE_VOCAB_DIR`);
//! they are not committed (several MB each). Without them the test says so
//! and passes, unless `PARLANCE_REQUIRE_VOCAB=1`.

use std::path::PathBuf;

use gguf::GgufFile;
use tokenizer::Tokenizer;

fn vocab_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("PARLANCE_VOCAB_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/parlance-reference/llama.cpp/models"),
    };
    if dir.join("ggml-vocab-qwen2.gguf").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PARLANCE_REQUIRE_VOCAB").is_none(),
        "no vocab files in {}: run scripts/reference/vocab_fixtures.sh",
        dir.display()
    );
    println!(
        "skipping: no vocab files in {} (scripts/reference/vocab_fixtures.sh fetches them)",
        dir.display()
    );
    None
}

/// The (text, ids) cases of one vocabulary file.
fn cases(dir: &std::path::Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    // As test-tokenizer-0 reads it: a separator at the very end ends the last case.
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{name}: .inp and .out differ in length"
    );
    texts.into_iter().map(str::to_string).zip(ids).collect()
}

fn check(name: &str) {
    let Some(dir) = vocab_dir() else {
        return;
    };
    let f = GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
    let tok = Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
    let all = cases(&dir, name);
    assert!(all.len() > 20, "{name}: only {} cases", all.len());
    let failures: Vec<String> = all
        .iter()
        .filter_map(|(text, want)| {
            let got = tok.encode(text, false, false);
            (&got != want).then(|| format!("{text:?}\n  want {want:?}\n  got  {got:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_bpe() {
    check("llama-bpe");
}

#[test]
fn qwen2() {
    check("qwen2");
}

#[test]
fn qwen35() {
    check("qwen35");
}

#[test]
fn gemma4() {
    check("gemma-4");
}

#[test]
fn gpt2() {
    check("gpt-2");
}

#[test]
fn starcoder() {
    check("starcoder");
}

#[test]
fn command_r() {
    check("command-r");
}

#[test]
fn phi3() {
    check("phi-3");
}

#[test]
fn llama_spm() {
    check("llama-spm");
}
