//! Sentences per second of the encoder at batch 1 and batch 64, on the
//! fidelity fixture's sentences (the last two, of 160+ tokens, left out so
//! the mix is ordinary sentence lengths), with a given thread count; each
//! timed call tokenizes its texts, as the other engines' do.
//!
//! `cargo run --release -p encoder --example embed_bench -- [THREADS] [SECONDS] [MODEL]`
//! (MODEL: a GGUF file or a sentence-transformers folder; the catalog's
//! all-minilm-l6-v2 by default). scripts/bench/embeddings_vs_sentence_transformers.sh
//! runs it beside sentence-transformers on PyTorch, and
//! scripts/bench/embeddings_vs_llama_cpp.sh beside llama.cpp's server, and
//! print the ratios.

use std::time::{Duration, Instant};

use encoder::Encoder;
use kernels::ThreadPool;

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/reference/fixtures/embeddings/all-minilm-l6-v2.json"
    );
    let fixture: Fixture =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let texts: Vec<String> = fixture.cases[..fixture.cases.len() - 2]
        .iter()
        .map(|c| c.text.clone())
        .collect();
    let model = match args.next() {
        Some(path) => std::path::PathBuf::from(path),
        None => testkit::model_path(testkit::MINILM),
    };
    let encoder = Encoder::load(&model).expect("load");
    let pool = ThreadPool::new(threads);
    let batch: Vec<&str> = (0..64).map(|i| texts[i % texts.len()].as_str()).collect();
    let tokenize = |texts: &[&str]| -> Vec<Vec<u32>> {
        texts
            .iter()
            .map(|t| encoder.tokenizer().encode(t))
            .collect()
    };
    let budget = Duration::from_secs_f64(seconds);

    // Warm up once.
    encoder.embed(&tokenize(&batch), &pool).expect("embed");

    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < budget {
        let one = tokenize(&batch[done % batch.len()..][..1]);
        encoder.embed(&one, &pool).expect("embed");
        done += 1;
    }
    let b1 = done as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < budget {
        encoder.embed(&tokenize(&batch), &pool).expect("embed");
        done += batch.len();
    }
    let b64 = done as f64 / start.elapsed().as_secs_f64();
    println!(
        "parlance threads={threads} batch1={b1:.1} batch64={b64:.1} sentences/s ({})",
        kernels::Selection::get().describe()
    );
}
