//! Fidelity of all-MiniLM-L6-v2 against reference vectors made outside the
//! product (scripts/reference/embedding_fixtures.py: an independent NumPy
//! BERT in float64, ids from Hugging Face `tokenizers`): the same ids, a
//! cosine of at least 0.9999 for each of 60 sentences, and a batch equal to
//! its sentences run one by one within 1e-5.

use encoder::{Encoder, EncoderHandle, HandleConfig};
use kernels::ThreadPool;

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/reference/fixtures/embeddings/all-minilm-l6-v2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture json")
}

fn encoder() -> Encoder {
    Encoder::load(&testkit::model_path(testkit::MINILM)).expect("load all-minilm-l6-v2")
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
fn ids_equal_the_reference_tokenizer() {
    let enc = encoder();
    let fx = fixture();
    assert!(fx.cases.len() >= 50);
    for case in &fx.cases {
        assert_eq!(
            enc.tokenizer().encode(&case.text),
            case.ids,
            "{:?}",
            case.text
        );
    }
}

#[test]
fn every_vector_matches_the_reference() {
    let enc = encoder();
    let pool = ThreadPool::new(2);
    let fx = fixture();
    let seqs: Vec<Vec<u32>> = fx.cases.iter().map(|c| c.ids.clone()).collect();
    let batched = enc.embed(&seqs, &pool).expect("embed batch");
    let mut worst = 1.0f64;
    for (case, got) in fx.cases.iter().zip(&batched) {
        assert_eq!(got.len(), 384);
        let c = cosine(got, &case.embedding);
        worst = worst.min(c);
        assert!(c >= 0.9999, "cosine {c} for {:?}", case.text);
        let norm: f64 = got
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "not normalised: {norm}");
    }
    println!("worst cosine over {} sentences: {worst}", fx.cases.len());
}

#[test]
fn a_batch_equals_its_sentences_one_by_one() {
    let enc = encoder();
    let pool = ThreadPool::new(2);
    let fx = fixture();
    let seqs: Vec<Vec<u32>> = fx.cases.iter().map(|c| c.ids.clone()).collect();
    let batched = enc.embed(&seqs, &pool).expect("embed batch");
    let mut worst = 0.0f32;
    for (seq, b) in seqs.iter().zip(&batched) {
        let single = enc
            .embed(std::slice::from_ref(seq), &pool)
            .expect("embed one");
        for (x, y) in single[0].iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst <= 1e-5, "batched differs from single by {worst}");
    // Order within the batch does not matter either.
    let reversed: Vec<Vec<u32>> = seqs.iter().rev().cloned().collect();
    let back = enc.embed(&reversed, &pool).expect("embed reversed");
    for (b, r) in batched.iter().zip(back.iter().rev()) {
        for (x, y) in b.iter().zip(r) {
            assert!((x - y).abs() <= 1e-5);
        }
    }
}

#[test]
fn the_handle_refuses_overlong_inputs_and_bad_ids() {
    let handle = EncoderHandle::start(
        &testkit::model_path(testkit::MINILM),
        HandleConfig {
            threads: 2,
            queue: 4,
        },
    )
    .expect("start");
    assert_eq!(handle.max_tokens(), 256);
    assert_eq!(handle.dimensions(), 384);
    let long = handle.tokenizer().wrap_ids(&vec![1000; 255]);
    let err = handle.embed(vec![long]).expect_err("257 tokens");
    assert!(err.is_invalid_input(), "{err}");
    let err = handle
        .embed(vec![vec![101, 40_000, 102]])
        .expect_err("bad id");
    assert!(err.is_invalid_input(), "{err}");
    let ok = handle
        .embed(vec![handle.tokenizer().encode("hello world")])
        .expect("one");
    assert_eq!(ok[0].len(), 384);
}
