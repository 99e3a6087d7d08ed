//! Perplexity evaluation: a row's logits do not depend on how many other
//! rows of its batch want logits (llama-perplexity asks for half a chunk's).

use engine::layers::BatchRow;
use engine::Model;
use kernels::{RowOrder, ThreadPool};

fn logits_of(model: &Model, tokens: &[u32], want: impl Fn(usize) -> bool) -> Vec<f32> {
    let pool = ThreadPool::new(2);
    let mut kv = model.new_kv_cache(tokens.len() + 16);
    kv.reserve(1, tokens.len()).unwrap();
    let rows: Vec<BatchRow> = tokens
        .iter()
        .enumerate()
        .map(|(pos, &token)| BatchRow {
            seq: 1,
            pos,
            token,
            want_logits: want(pos),
            order: RowOrder::prompt_row(pos, tokens.len(), false),
        })
        .collect();
    model.forward(&rows, &mut kv, &pool).unwrap()
}

fn check(name: &str) {
    let path = testkit::model_path(name);
    let model = Model::load(&path).unwrap();
    let n_vocab = model.config().n_vocab;
    let tokens: Vec<u32> = (0..48).map(|i| (i * 7919 % 5000 + 100) as u32).collect();
    let all = logits_of(&model, &tokens, |p| p >= 24);
    assert_eq!(all.len(), 24 * n_vocab);
    for last in [24usize, 35, 47] {
        let one = logits_of(&model, &tokens[..=last], |p| p == last);
        let row = &all[(last - 24) * n_vocab..(last - 23) * n_vocab];
        let worst = row
            .iter()
            .zip(&one)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "{name} row {last}: logits differ by {worst}");
    }
}

#[test]
fn smollm2_rows_do_not_depend_on_other_outputs() {
    check(testkit::SMOLLM2);
}

#[test]
fn gemma3_rows_do_not_depend_on_other_outputs() {
    check(testkit::GEMMA3);
}
