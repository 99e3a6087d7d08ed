//! Every architecture and weight type the engine runs, against llama.cpp
//! b11434 in CI: tiny random-weight models with a 384-token vocabulary and
//! llama-perplexity's log-probabilities for them, both committed under
//! `fixtures/tiny/` (made by `scripts/reference/tiny_fixtures.sh`: 8 chunks
//! of 32 tokens, `--kl-divergence-base`). The bar is the issue's: mean KL
//! divergence below 1e-4 and the same top token at 99% of positions or more.
//!
//! (`tiny_models.rs` runs the same check on larger-vocabulary models kept
//! outside the repository.)

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use engine::perplexity::{chunk_logits, record_len, KlStats, LogitsReader};
use engine::{Model, Tokenizer};
use kernels::ThreadPool;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny")
}

/// The context llama-perplexity ran with (`-c 32`): the model is loaded
/// for it, as llama.cpp's context was (LongRoPE picks its factors by it).
const REFERENCE_CTX: usize = 32;

/// Our logits for the reference file's chunks, scored against it.
fn kl_against_reference(name: &str) -> KlStats {
    let dir = fixtures();
    let model = Model::load_for_context(&dir.join(format!("{name}.gguf")), REFERENCE_CTX).unwrap();
    let tok = Tokenizer::from_gguf(model.file()).unwrap();
    let bos = if tok.add_bos() { tok.bos_id() } else { None };
    let f = File::open(dir.join(format!("{name}.kld"))).unwrap();
    let mut reader = LogitsReader::new(BufReader::new(f), bos).unwrap();
    let n_vocab = model.config().n_vocab;
    assert_eq!(reader.n_vocab, n_vocab);
    let chunks = reader.chunks.clone();
    assert_eq!(chunks.n_ctx, REFERENCE_CTX);
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
    kl
}

/// The bar: mean KL divergence below this.
const MAX_KL: f64 = 1e-4;

fn check(name: &str) {
    let kl = kl_against_reference(name);
    let (kld, _) = kl.kld();
    let top = kl.same_top();
    println!(
        "{name}: {} predictions, mean KL {kld:.3e}, same top {:.2}%",
        kl.count(),
        100.0 * top
    );
    assert!(kl.count() >= 100, "{name}: only {} predictions", kl.count());
    assert!(kld < MAX_KL, "{name}: mean KL divergence {kld}");
    assert!(top >= 0.99, "{name}: same top token at {:.2}%", 100.0 * top);
}

/// One test per fixture, named after it.
macro_rules! fixtures {
    ($($test:ident => $name:literal,)*) => {
        $(#[test]
        fn $test() {
            check($name);
        })*

        /// Every fixture file in the folder has its test (a new one cannot
        /// be committed without being checked).
        #[test]
        fn every_fixture_is_checked() {
            let listed = [$($name),*];
            for entry in std::fs::read_dir(fixtures()).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "gguf") {
                    let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
                    assert!(listed.contains(&stem.as_str()), "{stem} has no test");
                    assert!(path.with_extension("kld").is_file(), "{stem} has no .kld");
                }
            }
        }
    };
}

fixtures! {
    llama_q8_0_untied_llama3_rope => "llama-q8_0",
    qwen2_q8_0_biases => "qwen2-q8_0",
    qwen3_q8_0_qk_norm => "qwen3-q8_0",
    gemma3_q8_0_sliding_window => "gemma3-q8_0",
    gemma4_q8_0_shared_kv_per_layer_embd => "gemma4-q8_0",
    phi3_q8_0_fused_longrope => "phi3-q8_0",
    phi3_q8_0_longrope_long_factors => "phi3-long-q8_0",
    granite_q8_0_multipliers => "granite-q8_0",
    smollm3_q8_0_nope_layers => "smollm3-q8_0",
    mistral3_q8_0_yarn_temperature => "mistral3-q8_0",
    qwen35_q8_0_delta_net_hybrid => "qwen35-q8_0",
    llama_f32 => "llama-f32",
    llama_f16 => "llama-f16",
    llama_bf16 => "llama-bf16",
    llama_q4_0 => "llama-q4_0",
    llama_q4_1 => "llama-q4_1",
    llama_q5_0 => "llama-q5_0",
    llama_q5_1 => "llama-q5_1",
    llama_iq4_nl => "llama-iq4_nl",
    llama_q4_k => "llama-q4_k",
    llama_q5_k => "llama-q5_k",
    llama_q6_k => "llama-q6_k",
    llama_iq4_xs => "llama-iq4_xs",
    llama_q2_k => "llama-q2_k",
    llama_q3_k => "llama-q3_k",
}
