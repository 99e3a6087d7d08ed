//! Tiny random-weight models of each architecture with a real vocabulary
//! (`scripts/reference/tiny_models.py`) against llama.cpp b11434's
//! log-probabilities for the same files (`scripts/reference/tiny_reference.sh`:
//! `llama-perplexity -c 32 --kl-divergence-base`): mean KL divergence below
//! 1e-4 and the same top token at 99% of positions or more.
//!
//! The models and reference files live outside the repository (tens of MB,
//! their vocabularies alone are 128k-152k tokens), in
//! `$PARLANCE_TINY_DIR` (default `~/.cache/parlance-reference/tiny`). Without
//! them the test says so and passes, unless `PARLANCE_REQUIRE_TINY=1`.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use engine::perplexity::{chunk_logits, record_len, KlStats, LogitsReader};
use engine::{Model, Tokenizer};
use kernels::ThreadPool;

fn tiny_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("PARLANCE_TINY_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/parlance-reference/tiny"),
    };
    if dir.join("tiny-llama-q8_0.kld").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PARLANCE_REQUIRE_TINY").is_none(),
        "no tiny models in {}: run scripts/reference/tiny_reference.sh",
        dir.display()
    );
    println!("skipping: no tiny models in {}", dir.display());
    None
}

/// Our logits for the reference file's chunks, scored against it.
fn kl_against_reference(name: &str) -> Option<KlStats> {
    let dir = tiny_dir()?;
    let model = Model::load(&dir.join(format!("{name}.gguf"))).unwrap();
    let tok = Tokenizer::from_gguf(model.file()).unwrap();
    let bos = if tok.add_bos() { tok.bos_id() } else { None };
    let f = File::open(dir.join(format!("{name}.kld"))).unwrap();
    let mut reader = LogitsReader::new(BufReader::new(f), bos).unwrap();
    let n_vocab = model.config().n_vocab;
    assert_eq!(reader.n_vocab, n_vocab);
    let chunks = reader.chunks.clone();
    let pool = ThreadPool::new(2);
    let mut kl = KlStats::default();
    for i in 0..chunks.n_chunk() {
        let base = reader.next_chunk().unwrap();
        let logits = chunk_logits(&model, &chunks, i, &pool).unwrap();
        for ((row, rec), &t) in logits
            .chunks_exact(n_vocab)
            .zip(base.chunks_exact(record_len(n_vocab)))
            .zip(chunks.targets(i))
        {
            kl.add(row, rec, t);
        }
    }
    Some(kl)
}

/// The bar: mean KL divergence below this.
const MAX_KL: f64 = 1e-4;

fn check(name: &str) {
    check_within(name, MAX_KL);
}

fn check_within(name: &str, max_kl: f64) {
    let Some(kl) = kl_against_reference(name) else {
        return;
    };
    let (kld, _) = kl.kld();
    let top = kl.same_top();
    println!(
        "{name}: {} predictions, mean KL {kld:.3e}, same top {:.2}%",
        kl.count(),
        100.0 * top
    );
    assert!(kld < max_kl, "{name}: mean KL divergence {kld}");
    assert!(top >= 0.99, "{name}: same top token at {:.2}%", 100.0 * top);
}

#[test]
fn llama_q8_0_untied_with_llama3_rope_factors() {
    check("tiny-llama-q8_0");
}

#[test]
fn llama_q4_0_tied() {
    check("tiny-llama-q4_0");
}

#[test]
fn qwen2_q8_0_tied() {
    check("tiny-qwen2-q8_0");
}

#[test]
fn qwen2_f16_untied() {
    check("tiny-qwen2-f16");
}

#[test]
fn qwen3_q8_0() {
    check("tiny-qwen3-q8_0");
}

/// Above the 1e-4 bar (2.3e-4 measured): on this model llama.cpp
/// differs from itself by as much (its `-ub 1` run against its `-c 32` run:
/// KL 2.5e-4, same top token 98.75%), so the bar here is that spread.
#[test]
fn qwen3_q5_k() {
    check_within("tiny-qwen3-q5_k", 3e-4);
}

#[test]
fn qwen2_iq4_xs() {
    check("tiny-qwen2-iq4_xs");
}

#[test]
fn llama_bf16_untied() {
    check("tiny-llama-bf16");
}
