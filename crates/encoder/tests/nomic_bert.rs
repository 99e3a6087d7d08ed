//! A tiny random-weight `nomic-bert` GGUF (fused query/key/value, rotary
//! positions in "neox" mode, SwiGLU feed-forward without biases; made by
//! `scripts/reference/nomic_bert_fixture.py`, committed with the vectors
//! llama.cpp b11434's `llama-embedding` gives for it) loads by path, and
//! every fixture sentence's vector matches llama.cpp's to cosine ≥ 0.9999,
//! embedded one by one and all in one packed batch.

use encoder::Encoder;
use kernels::ThreadPool;

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    embedding: Vec<f32>,
}

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn tiny_nomic_bert_matches_llama_cpp() {
    let fx: Fixture = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/tiny-encoder/nomic-bert.json"))
            .expect("fixture"),
    )
    .expect("json");
    let enc = Encoder::load(&root().join("fixtures/tiny-encoder/nomic-bert.gguf")).expect("load");
    assert_eq!(enc.dimensions(), 32);
    assert_eq!(enc.max_tokens(), 128);
    let pool = ThreadPool::new(2);
    let ids: Vec<Vec<u32>> = fx
        .cases
        .iter()
        .map(|c| enc.tokenizer().encode(&c.text))
        .collect();
    let batch = enc.embed(&ids, &pool).expect("embed the batch");
    let mut worst = 1.0f64;
    for ((case, seq), batched) in fx.cases.iter().zip(&ids).zip(&batch) {
        let alone = enc.embed(std::slice::from_ref(seq), &pool).expect("embed");
        for (how, v) in [("alone", &alone[0]), ("in a batch", batched)] {
            let c = cosine(v, &case.embedding);
            worst = worst.min(c);
            assert!(
                c >= 0.9999,
                "{:?} ({how}, ids {seq:?}): cosine {c} with llama.cpp's",
                case.text
            );
        }
    }
    println!("worst cosine with llama.cpp: {worst}");
}
