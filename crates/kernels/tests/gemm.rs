//! The packed F32 GEMM on every kernel level this CPU has (scalar, AVX2,
//! AVX-512; cap with `PARLANCE_KERNELS`), 1 and 2 threads, against the
//! reference product (f64 sums) over shapes that exercise every edge: rows
//! and batches that are not multiples of the micro-kernel's tile, inputs
//! longer than one packed block, F16 weights (kept F16 in the panels).

mod common;

use common::{abs_bound, pools, Rng};
use kernels::{gemm_f32_with, quantize_row, reference, GgmlType, Level, PackedF32, QMatrix};

fn levels() -> Vec<Level> {
    let cap = Level::active();
    println!("{}", kernels::Selection::get().describe());
    let mut out: Vec<Level> = [Level::Scalar, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|l| *l <= cap && l.is_available())
        .collect();
    out.dedup();
    out
}

fn weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    (0..rows)
        .flat_map(|_| quantize_row(ty, &rng.vector(cols)).expect("quantize"))
        .collect()
}

#[test]
fn gemm_matches_the_reference_on_every_level() {
    let mut rng = Rng(7);
    let shapes = [
        (1, 16, 8),
        (5, 19, 40),
        (7, 50, 300),
        (13, 384, 384),
        (97, 33, 520),
        (200, 70, 64),
    ];
    let mut checked = 0;
    for level in levels() {
        for pool in pools() {
            for (ty, &(batch, rows, cols)) in [GgmlType::F32, GgmlType::F16]
                .into_iter()
                .flat_map(|t| shapes.iter().map(move |s| (t, s)))
            {
                let w = weights(&mut rng, ty, rows, cols);
                let m = QMatrix::new(ty, &w, rows, cols).expect("matrix");
                let bias = rng.vector(rows);
                let packed = PackedF32::pack(&m, Some(&bias));
                // F16 stays F16 in the panels, widened exactly in the kernel.
                assert_eq!(packed.is_f16(), ty == GgmlType::F16);
                let x: Vec<f32> = (0..batch).flat_map(|_| rng.vector(cols)).collect();
                let mut got = vec![f32::NAN; batch * rows];
                gemm_f32_with(&packed, &x, batch, &mut got, &pool, level);
                let want = reference::matmul_f32(ty, &w, rows, cols, &x, batch).expect("ref");
                let bound = abs_bound(ty, &w, rows, cols, &x, batch);
                for (i, ((g, wv), b)) in got.iter().zip(&want).zip(&bound).enumerate() {
                    let want = wv + bias[i % rows];
                    let tol = 2e-6 * (b + bias[i % rows].abs()) + 1e-6;
                    assert!(
                        (g - want).abs() <= tol,
                        "{level} {ty} {batch}x{rows}x{cols} threads {}: [{i}] {g} vs {want}",
                        pool.n_threads()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 24, "{checked}");
}

#[test]
fn concatenated_matrices_give_each_ones_product() {
    let mut rng = Rng(11);
    let (batch, cols) = (23, 96);
    let parts: Vec<(Vec<u8>, Vec<f32>, usize)> = [40, 16, 9]
        .into_iter()
        .map(|rows| {
            (
                weights(&mut rng, GgmlType::F32, rows, cols),
                rng.vector(rows),
                rows,
            )
        })
        .collect();
    let mats: Vec<(QMatrix<'_>, Option<&[f32]>)> = parts
        .iter()
        .map(|(w, b, rows)| {
            (
                QMatrix::new(GgmlType::F32, w, *rows, cols).expect("matrix"),
                Some(b.as_slice()),
            )
        })
        .collect();
    let all = PackedF32::pack_concat(&mats);
    assert_eq!((all.rows(), all.cols()), (65, cols));
    let x: Vec<f32> = (0..batch).flat_map(|_| rng.vector(cols)).collect();
    for level in levels() {
        let pool = kernels::ThreadPool::new(2);
        let mut joint = vec![0.0; batch * 65];
        gemm_f32_with(&all, &x, batch, &mut joint, &pool, level);
        let mut first = 0;
        for (m, b) in &mats {
            let one = PackedF32::pack(m, *b);
            let mut alone = vec![0.0; batch * m.rows()];
            gemm_f32_with(&one, &x, batch, &mut alone, &pool, level);
            for r in 0..batch {
                let got = &joint[r * 65 + first..r * 65 + first + m.rows()];
                assert_eq!(got, &alone[r * m.rows()..(r + 1) * m.rows()], "{level}");
            }
            first += m.rows();
        }
    }
}

/// CI's CPU runs the fastest level; the slower ones run here in a child.
#[test]
fn these_tests_pass_at_every_slower_level() {
    common::rerun_below_the_active_level("these_tests_pass_at_every_slower_level");
}
