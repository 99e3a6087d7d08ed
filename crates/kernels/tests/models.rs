//! The kernels on real tensors from the test models: for every weight type
//! present, SIMD and scalar matmuls equal the reference on a few rows, and the
//! fast dequantization equals the reference bit for bit.

mod common;

use common::{abs_bound, assert_close, isas, Rng};
use kernels::{matmul_with, reference, GgmlType, QMatrix, ThreadPool};
use std::collections::BTreeMap;

const MODELS: [&str; 2] = [testkit::SMOLLM2, testkit::GEMMA3];

fn check_model(file: &str) {
    let path = testkit::model_path(file);
    let gguf = gguf::GgufFile::open(&path).expect("open model");
    let pool = ThreadPool::new(2);
    let mut rng = Rng(7);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for t in gguf.tensors() {
        if t.dims.len() != 2 || !kernels::is_supported(t.ty) {
            continue;
        }
        let n = seen.entry(t.ty.name().to_string()).or_default();
        if *n >= 3 {
            continue; // a few tensors per type is plenty
        }
        *n += 1;
        let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
        let data = gguf.tensor_data(t);
        let full = QMatrix::from_tensor(t, data).expect("tensor as matrix");
        assert_eq!((full.rows(), full.cols()), (rows, cols));
        // A handful of rows: the first, the last and some in between.
        let pick = 6.min(rows);
        let start = rng.below(rows - pick + 1);
        for r0 in [0, start, rows - pick] {
            let sub_bytes = &data[r0 * full.row_bytes()..(r0 + pick) * full.row_bytes()];
            let m = QMatrix::new(t.ty, sub_bytes, pick, cols).expect("sub-matrix");
            let mut fast = vec![0.0; cols];
            let mut slow = vec![0.0; cols];
            for r in 0..pick {
                full.dequantize_row(r0 + r, &mut fast);
                reference::dequantize_row(t.ty, full.row_data(r0 + r), &mut slow)
                    .expect("reference");
                assert!(
                    fast.iter()
                        .zip(&slow)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{}",
                    t.name
                );
            }
            for batch in [1, 5] {
                let x: Vec<f32> = (0..batch).flat_map(|_| rng.vector(cols)).collect();
                let want =
                    reference::matmul(t.ty, sub_bytes, pick, cols, &x, batch).expect("reference");
                let bound = abs_bound(t.ty, sub_bytes, pick, cols, &x, batch);
                for isa in isas() {
                    let mut got = vec![0.0; pick * batch];
                    matmul_with(&m, &x, batch, &mut got, &pool, isa);
                    assert_close(
                        &got,
                        &want,
                        &bound,
                        1e-5,
                        &format!("{} {:?} batch {batch}", t.name, isa),
                    );
                }
            }
        }
    }
    println!("{file}: checked {seen:?}");
    assert!(!seen.is_empty(), "no supported 2-D tensors in {file}");
    let types: Vec<GgmlType> = gguf
        .tensors()
        .iter()
        .filter(|t| t.dims.len() == 2)
        .map(|t| t.ty)
        .collect();
    for ty in types {
        assert!(
            kernels::is_supported(ty),
            "{file} has {ty} weights without a kernel"
        );
    }
}

#[test]
fn smollm2_tensors() {
    check_model(MODELS[0]);
}

#[test]
fn gemma3_tensors() {
    check_model(MODELS[1]);
}

/// CI's CPU runs the fastest level; the slower ones run here in a child.
#[test]
fn these_tests_pass_at_every_slower_level() {
    common::rerun_below_the_active_level("these_tests_pass_at_every_slower_level");
}
