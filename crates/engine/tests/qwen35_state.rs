//! Qwen 3.5's recurrent state under continuous batching, on the committed
//! tiny `qwen35` fixture (`fixtures/tiny/qwen35-q8_0.gguf`: two gated
//! DeltaNet layers, two full-attention layers): a sequence's state carries
//! over from its prompt to its decode steps while another sequence shares
//! every batch, a freed sequence starts afresh, a row that skips a position
//! is refused, and the cache never reuses a prefix.

use std::path::PathBuf;

use engine::layers::BatchRow;
use engine::{EngineError, Model};
use kernels::{RowOrder, ThreadPool};

fn model() -> Model {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny/qwen35-q8_0.gguf");
    Model::load(&path).unwrap()
}

fn row(seq: u64, pos: usize, token: u32, want_logits: bool) -> BatchRow {
    BatchRow {
        seq,
        pos,
        token,
        want_logits,
        order: RowOrder::default(),
    }
}

/// The last row's logits of `tokens` run alone, as one batch.
fn alone(model: &Model, tokens: &[u32], pool: &ThreadPool) -> Vec<f32> {
    let mut kv = model.new_kv_cache(64);
    kv.reserve(1, tokens.len()).unwrap();
    let rows: Vec<BatchRow> = tokens
        .iter()
        .enumerate()
        .map(|(p, &t)| row(1, p, t, p + 1 == tokens.len()))
        .collect();
    model.forward(&rows, &mut kv, pool).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const A: [u32; 12] = [5, 80, 17, 300, 42, 7, 99, 250, 13, 64, 128, 3];
const B: [u32; 10] = [200, 11, 360, 45, 90, 2, 77, 150, 31, 8];

#[test]
fn state_survives_decode_steps_beside_another_sequence() {
    let model = model();
    let pool = ThreadPool::new(2);
    let want_a = alone(&model, &A, &pool);
    let want_b = alone(&model, &B, &pool);

    let mut kv = model.new_kv_cache(64);
    kv.reserve(1, A.len()).unwrap();
    kv.reserve(2, B.len()).unwrap();
    // One prompt step holding both sequences' prompts.
    let mut rows: Vec<BatchRow> = (0..8).map(|p| row(1, p, A[p], false)).collect();
    rows.extend((0..5).map(|p| row(2, p, B[p], false)));
    model.forward(&rows, &mut kv, &pool).unwrap();
    // Then one row of each per step, B's in front.
    let (mut pa, mut pb) = (8, 5);
    let (mut last_a, mut last_b) = (Vec::new(), Vec::new());
    while pa < A.len() || pb < B.len() {
        let mut rows = Vec::new();
        if pb < B.len() {
            rows.push(row(2, pb, B[pb], true));
        }
        if pa < A.len() {
            rows.push(row(1, pa, A[pa], true));
        }
        let logits = model.forward(&rows, &mut kv, &pool).unwrap();
        let n_vocab = model.config().n_vocab;
        let mut out = logits.chunks_exact(n_vocab);
        if pb < B.len() {
            last_b = out.next().unwrap().to_vec();
            pb += 1;
        }
        if pa < A.len() {
            last_a = out.next().unwrap().to_vec();
            pa += 1;
        }
    }
    assert!(
        max_diff(&last_a, &want_a) < 1e-3,
        "A: {}",
        max_diff(&last_a, &want_a)
    );
    assert!(
        max_diff(&last_b, &want_b) < 1e-3,
        "B: {}",
        max_diff(&last_b, &want_b)
    );

    // A freed sequence's id starts afresh: B's tokens under A's id.
    kv.free_seq(1);
    kv.reserve(1, B.len()).unwrap();
    let rows: Vec<BatchRow> = (0..B.len())
        .map(|p| row(1, p, B[p], p + 1 == B.len()))
        .collect();
    let again = model.forward(&rows, &mut kv, &pool).unwrap();
    assert!(max_diff(&again, &want_b) < 1e-3);
}

#[test]
fn a_row_that_skips_a_position_is_refused() {
    let model = model();
    let pool = ThreadPool::new(1);
    let mut kv = model.new_kv_cache(64);
    kv.reserve(1, 8).unwrap();
    let rows: Vec<BatchRow> = (0..4).map(|p| row(1, p, A[p], false)).collect();
    model.forward(&rows, &mut kv, &pool).unwrap();
    let err = model
        .forward(&[row(1, 5, A[5], true)], &mut kv, &pool)
        .unwrap_err();
    assert!(matches!(err, EngineError::InvalidRequest(_)), "{err}");
    assert!(err.to_string().contains("recurrent state is at 4"), "{err}");
}

#[test]
fn prefix_caching_stays_off() {
    let model = model();
    let mut kv = model.new_kv_cache(64);
    kv.set_prefix_caching(true);
    assert!(!kv.prefix_caching());
}
