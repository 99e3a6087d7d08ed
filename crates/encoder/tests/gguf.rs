//! all-MiniLM-L6-v2 converted to GGUF by llama.cpp's own converter
//! (`scripts/reference/bert_gguf.sh`: F32, F16 and Q8_0 into `target/gguf`,
//! or `$PARLANCE_BERT_GGUF_DIR`) loads by path and gives the safetensors
//! model's ids and vectors: cosine ≥ 0.9999 for every fixture sentence from
//! the F32 and F16 files, ≥ 0.995 from Q8_0 (its activations are quantized
//! to 8 bits too, as llama.cpp does; the one-character "?" is the worst, at
//! 0.9978). The files are not committed; without them the tests say so and
//! pass, unless `PARLANCE_REQUIRE_BERT_GGUF=1` (CI sets it, after making
//! them).

use std::path::PathBuf;

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

fn texts() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/reference/fixtures/embeddings/all-minilm-l6-v2.json"
    );
    let fx: Fixture =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    fx.cases.into_iter().map(|c| c.text).collect()
}

/// The converted file of `ty`, or `None` (said) when it was not made.
fn gguf(ty: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PARLANCE_BERT_GGUF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/gguf"))
        });
    let file = dir.join(format!("all-minilm-l6-v2-{ty}.gguf"));
    if file.is_file() {
        return Some(file);
    }
    assert!(
        std::env::var_os("PARLANCE_REQUIRE_BERT_GGUF").is_none(),
        "no {}: run scripts/reference/bert_gguf.sh",
        file.display()
    );
    println!(
        "skipping: no {} (scripts/reference/bert_gguf.sh makes it)",
        file.display()
    );
    None
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

/// Every fixture sentence through the GGUF of `ty` and through the
/// safetensors folder: the same ids, and vectors at least `min` apart in
/// cosine.
fn matches_the_safetensors_model(ty: &str, min: f64) {
    let Some(path) = gguf(ty) else { return };
    let from_gguf = Encoder::load(&path).expect("load the GGUF");
    let from_folder =
        Encoder::load(&testkit::model_path(testkit::MINILM)).expect("load the folder");
    assert_eq!(from_gguf.dimensions(), 384);
    assert_eq!(from_gguf.vocab_size(), from_folder.vocab_size());
    // bert.context_length: the model's 512 positions (the folder's
    // sentence-transformers config cuts at 256).
    assert_eq!(from_gguf.max_tokens(), 512);
    let texts = texts();
    assert!(texts.len() >= 50);
    let seqs: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let ids = from_folder.tokenizer().encode(t);
            assert_eq!(from_gguf.tokenizer().encode(t), ids, "{t:?}");
            ids
        })
        .collect();
    let pool = ThreadPool::new(2);
    let got = from_gguf.embed(&seqs, &pool).expect("embed from the GGUF");
    let want = from_folder
        .embed(&seqs, &pool)
        .expect("embed from the folder");
    let mut worst = 1.0f64;
    for ((g, w), t) in got.iter().zip(&want).zip(&texts) {
        let c = cosine(g, w);
        worst = worst.min(c);
        assert!(c >= min, "{ty}: cosine {c} for {t:?}");
    }
    println!("{ty}: worst cosine over {} sentences: {worst}", texts.len());
}

#[test]
fn f32_gguf_gives_the_safetensors_vectors() {
    matches_the_safetensors_model("f32", 0.9999);
}

#[test]
fn f16_gguf_gives_the_safetensors_vectors() {
    matches_the_safetensors_model("f16", 0.9999);
}

#[test]
fn q8_0_gguf_comes_close_to_the_safetensors_vectors() {
    matches_the_safetensors_model("q8_0", 0.995);
}

#[test]
fn a_gguf_of_another_architecture_is_refused_by_name() {
    let Some(path) = gguf("f32") else { return };
    // The same file with its architecture renamed in place (same length).
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(4)
        .position(|w| w == b"bert")
        .expect("the architecture value");
    bytes[at..at + 4].copy_from_slice(b"bart");
    let dir = std::env::temp_dir().join(format!("parlance-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let renamed = dir.join("renamed.gguf");
    std::fs::write(&renamed, bytes).expect("write");
    let err = Encoder::load(&renamed).expect_err("not bert").to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        err.contains("bart") && err.contains("not supported"),
        "{err}"
    );
}

#[test]
fn the_encoder_thread_starts_from_a_gguf_path() {
    // `serve --embedding-model FILE.gguf` starts its encoder this way.
    let Some(path) = gguf("f16") else { return };
    let handle = encoder::EncoderHandle::start(&path, encoder::HandleConfig::default())
        .expect("start from the GGUF");
    assert_eq!((handle.dimensions(), handle.max_tokens()), (384, 512));
    let ids = handle.tokenizer().encode("A GGUF loaded by path.");
    let vectors = handle.embed(vec![ids]).expect("embed");
    let norm: f32 = vectors[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
}
