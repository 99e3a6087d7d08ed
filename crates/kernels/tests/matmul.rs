//! The fast kernels (scalar and SIMD, 1 and 2 threads, batch 1 and more)
//! against the reference implementations on random weights.

mod common;

use common::{abs_bound, assert_close, isas, pools, Rng};
use kernels::{dequantize_row, matmul_with, quantize_row, reference, GgmlType, QMatrix};

const TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::IQ4_XS,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
];

fn col_choices(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => &[8, 40, 96, 576],
        GgmlType::Q4_K
        | GgmlType::Q6_K
        | GgmlType::Q5_K
        | GgmlType::IQ4_XS
        | GgmlType::Q2_K
        | GgmlType::Q3_K => &[256, 512, 1536],
        _ => &[32, 96, 576],
    }
}

/// Random weights of `ty`, quantized row by row.
fn weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut w = Vec::new();
    for _ in 0..rows {
        w.extend(quantize_row(ty, &rng.vector(cols)).expect("quantize"));
    }
    w
}

#[test]
fn dequantize_matches_reference_exactly() {
    let mut rng = Rng(1);
    for ty in TYPES {
        for &cols in col_choices(ty) {
            let w = weights(&mut rng, ty, 3, cols);
            let m = QMatrix::new(ty, &w, 3, cols).expect("matrix");
            let mut all = vec![0.0; 3 * cols];
            dequantize_row(ty, &w, &mut all).expect("dequantize");
            let mut want = vec![0.0; 3 * cols];
            reference::dequantize_row(ty, &w, &mut want).expect("reference");
            assert!(
                all.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{ty} {cols}"
            );
            let mut row = vec![0.0; cols];
            m.dequantize_row(2, &mut row);
            assert!(
                row.iter()
                    .zip(&want[2 * cols..])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{ty} {cols}"
            );
        }
    }
}

#[test]
fn quantized_weights_approximate_their_input() {
    let mut rng = Rng(2);
    for ty in TYPES {
        let cols = col_choices(ty)[1];
        let x = rng.vector(cols);
        let q = quantize_row(ty, &x).expect("quantize");
        let mut back = vec![0.0; cols];
        dequantize_row(ty, &q, &mut back).expect("dequantize");
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = x
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        // 4-bit types with a shared scale can be off by a step (amax / 7 or
        // so); Q3_K's steps are twice as coarse, Q2_K's (3 steps over each
        // group's range, 4-bit scales and mins) coarser again.
        let bound = match ty {
            GgmlType::Q2_K => amax / 2.0,
            GgmlType::Q3_K => amax / 3.0,
            _ => amax / 6.0,
        };
        assert!(err <= bound, "{ty}: max error {err} vs amax {amax}");
    }
}

#[test]
fn activation_quantizers_match_reference_bytes() {
    let mut rng = Rng(3);
    for ty in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
        for _ in 0..50 {
            let mut x = rng.vector(512);
            // Exact ties: with amax 127 the scale is 1, so x.5 must round to even.
            if rng.below(2) == 0 {
                for (i, v) in x.iter_mut().enumerate() {
                    *v = (i % 9) as f32 - 4.5;
                }
                x[0] = 127.0;
                x[256] = -127.0;
            }
            let fast = quantize_row(ty, &x).expect("quantize");
            let slow = reference::quantize_act(ty, &x).expect("reference");
            assert_eq!(fast, slow, "{ty}");
        }
    }
    // Ties go to even: 2.5 -> 2, -3.5 -> -4, 0.5 -> 0.
    let mut x = vec![0.0f32; 32];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = -3.5;
    x[3] = 0.5;
    let q = quantize_row(GgmlType::Q8_0, &x).expect("quantize");
    assert_eq!(&q[2..6], &[127u8, 2, (-4i8) as u8, 0]);
    assert!(quantize_row(GgmlType::Q8_K, &[0.0; 100]).is_err());
}

#[test]
fn matmul_matches_reference() {
    let mut rng = Rng(4);
    let pools = pools();
    for ty in TYPES {
        for &cols in col_choices(ty) {
            for rows in [1, 7, 70] {
                let w = weights(&mut rng, ty, rows, cols);
                let m = QMatrix::new(ty, &w, rows, cols).expect("matrix");
                for batch in [1, 3, 4, 9] {
                    let x: Vec<f32> = (0..batch).flat_map(|_| rng.vector(cols)).collect();
                    let want = reference::matmul(ty, &w, rows, cols, &x, batch).expect("reference");
                    let exact = reference::matmul_f32(ty, &w, rows, cols, &x, batch).expect("f32");
                    let bound = abs_bound(ty, &w, rows, cols, &x, batch);
                    // Activation quantization error: at most ~1/254 of each block's max.
                    let xmax: Vec<f32> = (0..batch)
                        .flat_map(|b| {
                            let mx = x[b * cols..(b + 1) * cols]
                                .iter()
                                .fold(0.0f32, |m, v| m.max(v.abs()));
                            std::iter::repeat_n(mx, rows)
                        })
                        .collect();
                    let wabs = abs_bound(ty, &w, rows, cols, &vec![1.0; cols * batch], batch);
                    let loose: Vec<f32> = wabs.iter().zip(&xmax).map(|(w, m)| w * m).collect();
                    assert_close(
                        &want,
                        &exact,
                        &loose,
                        1.0 / 100.0,
                        &format!("{ty} reference vs f32"),
                    );
                    for &isa in &isas() {
                        for pool in &pools {
                            let mut got = vec![f32::NAN; rows * batch];
                            matmul_with(&m, &x, batch, &mut got, pool, isa);
                            let what = format!(
                                "{ty} {isa:?} rows={rows} cols={cols} batch={batch} threads={}",
                                pool.n_threads()
                            );
                            assert_close(&got, &want, &bound, 1e-5, &what);
                            assert_close(&got, &exact, &loose, 1.0 / 100.0, &what);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn simd_and_scalar_agree_on_many_random_shapes() {
    let mut rng = Rng(5);
    let pool = kernels::ThreadPool::new(2);
    for _ in 0..60 {
        let ty = TYPES[rng.below(TYPES.len())];
        let choices = col_choices(ty);
        let cols = choices[rng.below(choices.len())];
        let rows = 1 + rng.below(40);
        let batch = 1 + rng.below(12);
        let w = weights(&mut rng, ty, rows, cols);
        let m = QMatrix::new(ty, &w, rows, cols).expect("matrix");
        let x: Vec<f32> = (0..batch).flat_map(|_| rng.vector(cols)).collect();
        let bound = abs_bound(ty, &w, rows, cols, &x, batch);
        let mut outs = Vec::new();
        for isa in isas() {
            let mut got = vec![0.0; rows * batch];
            matmul_with(&m, &x, batch, &mut got, &pool, isa);
            outs.push(got);
        }
        for o in &outs[1..] {
            assert_close(
                o,
                &outs[0],
                &bound,
                1e-5,
                &format!("{ty} {rows}x{cols} batch {batch}"),
            );
        }
    }
}

#[test]
fn zero_rows_and_blocks_give_zero() {
    let pool = kernels::ThreadPool::new(2);
    for ty in TYPES {
        let cols = col_choices(ty)[0];
        let w = quantize_row(ty, &vec![0.0; cols * 2]).expect("quantize");
        let m = QMatrix::new(ty, &w, 2, cols).expect("matrix");
        let x = vec![1.0; cols];
        let mut out = vec![f32::NAN; 2];
        kernels::matmul(&m, &x, 1, &mut out, &pool);
        assert_eq!(out, vec![0.0, 0.0], "{ty}");
        // And zero activations against random weights.
        let mut rng = Rng(6);
        let w = weights(&mut rng, ty, 2, cols);
        let m = QMatrix::new(ty, &w, 2, cols).expect("matrix");
        kernels::matmul(&m, &vec![0.0; cols], 1, &mut out, &pool);
        if ty != GgmlType::Q4_1 {
            assert_eq!(out, vec![0.0, 0.0], "{ty}");
        } else {
            assert!(out.iter().all(|v| v.abs() < 1e-6), "{ty}: {out:?}");
        }
    }
}

/// Each activation row gets the same bits whether it is multiplied alone (a
/// decode step, which some kernels run several weight rows at a time) or
/// inside a batch: the engine's batched and unbatched outputs rest on this.
#[test]
fn batch_rows_equal_single_rows_bit_for_bit() {
    let mut rng = Rng(7);
    let pools = pools();
    for ty in TYPES {
        for &cols in col_choices(ty) {
            // Batches below and past every kernel's rows per call (4, 8, 16).
            for (rows, batch) in [(1, 6), (5, 6), (8, 6), (67, 6), (9, 21), (67, 37)] {
                let w = weights(&mut rng, ty, rows, cols);
                let m = QMatrix::new(ty, &w, rows, cols).expect("matrix");
                let x: Vec<f32> = (0..batch).flat_map(|_| rng.vector(cols)).collect();
                for isa in isas() {
                    for pool in &pools {
                        let mut all = vec![0.0; rows * batch];
                        matmul_with(&m, &x, batch, &mut all, pool, isa);
                        for b in 0..batch {
                            let mut one = vec![f32::NAN; rows];
                            matmul_with(&m, &x[b * cols..(b + 1) * cols], 1, &mut one, pool, isa);
                            let bits =
                                |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                            assert_eq!(
                                bits(&one),
                                bits(&all[b * rows..(b + 1) * rows]),
                                "{ty} {isa:?} {rows}x{cols} row {b}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `matmul_many` gives every matrix exactly the bits `matmul` gives it alone,
/// for matrices of one type (a llama layer's q, k, v) and of mixed types and
/// activation kinds (a Gemma layer's).
#[test]
fn matmul_many_equals_separate_matmuls() {
    let mut rng = Rng(8);
    let pools = pools();
    let sets: [&[GgmlType]; 3] = [
        &[GgmlType::Q4_1, GgmlType::Q4_1, GgmlType::Q4_1],
        &[
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ],
        &[GgmlType::F32, GgmlType::Q8_0],
    ];
    for types in sets {
        let cols = 512;
        for batch in [1, 5] {
            let ws: Vec<Vec<u8>> = types
                .iter()
                .enumerate()
                .map(|(i, &ty)| weights(&mut rng, ty, 20 + 13 * i, cols))
                .collect();
            let ms: Vec<QMatrix<'_>> = types
                .iter()
                .zip(&ws)
                .enumerate()
                .map(|(i, (&ty, w))| QMatrix::new(ty, w, 20 + 13 * i, cols).expect("matrix"))
                .collect();
            let x: Vec<f32> = (0..batch).flat_map(|_| rng.vector(cols)).collect();
            for isa in isas() {
                for pool in &pools {
                    let mut together: Vec<Vec<f32>> = ms
                        .iter()
                        .map(|m| vec![f32::NAN; m.rows() * batch])
                        .collect();
                    let mut outs: Vec<&mut [f32]> =
                        together.iter_mut().map(|o| o.as_mut_slice()).collect();
                    kernels::matmul_many_with(&ms, &x, batch, &mut outs, pool, isa);
                    for (m, got) in ms.iter().zip(&together) {
                        let mut alone = vec![0.0; m.rows() * batch];
                        matmul_with(m, &x, batch, &mut alone, pool, isa);
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(got), bits(&alone), "{types:?} {isa:?} batch {batch}");
                    }
                }
            }
        }
    }
}

/// The K-quant summation orders (see `RowOrder`): each is computed the same
/// way, bit for bit, by the portable and the SIMD kernels, a row's order
/// does not depend on its neighbours' orders, and every order stays within
/// rounding of the reference.
#[test]
fn k_quant_row_orders_agree_across_isas() {
    use kernels::{matmul_many_ordered, RowOrder};
    let mut rng = Rng(11);
    let pool = kernels::ThreadPool::new(2);
    let orders = [
        RowOrder::default(),
        RowOrder {
            q4k_in_quad: true,
            q6k_tiled: false,
            f32_attention: false,
        },
        RowOrder {
            q4k_in_quad: false,
            q6k_tiled: true,
            f32_attention: false,
        },
        RowOrder {
            q4k_in_quad: true,
            q6k_tiled: true,
            f32_attention: false,
        },
    ];
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        for &cols in col_choices(ty) {
            let rows = 37;
            let batch = 9;
            let w = weights(&mut rng, ty, rows, cols);
            let m = QMatrix::new(ty, &w, rows, cols).expect("matrix");
            let x: Vec<f32> = (0..batch).flat_map(|_| rng.vector(cols)).collect();
            let bound = abs_bound(ty, &w, rows, cols, &x, batch);
            let want = reference::matmul(ty, &w, rows, cols, &x, batch).expect("reference");
            let row_orders: Vec<RowOrder> = (0..batch).map(|b| orders[b % 4]).collect();
            let mut outs = Vec::new();
            for isa in isas() {
                let mut got = vec![0.0; rows * batch];
                matmul_many_ordered(&[m], &x, batch, &row_orders, &mut [&mut got], &pool, isa);
                assert_close(&got, &want, &bound, 1e-5, &format!("{ty} {isa:?} {cols}"));
                // Alone, a row keeps its bits.
                for b in 0..batch {
                    let mut one = vec![0.0; rows];
                    let xb = &x[b * cols..(b + 1) * cols];
                    matmul_many_ordered(
                        &[m],
                        xb,
                        1,
                        &row_orders[b..=b],
                        &mut [&mut one],
                        &pool,
                        isa,
                    );
                    assert_eq!(
                        one.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
                        got[b * rows..(b + 1) * rows]
                            .iter()
                            .map(|f| f.to_bits())
                            .collect::<Vec<_>>(),
                        "{ty} {isa:?} row {b}"
                    );
                }
                outs.push((isa, got));
            }
            // The orders that are defined per super-block (every Q4_K order,
            // tiled Q6_K) give the portable kernel's bits on every ISA.
            let (_, first) = &outs[0];
            for (isa, got) in &outs[1..] {
                for (b, order) in row_orders.iter().enumerate() {
                    if ty == GgmlType::Q6_K && !order.q6k_tiled {
                        continue;
                    }
                    let r = b * rows..(b + 1) * rows;
                    assert_eq!(
                        got[r.clone()]
                            .iter()
                            .map(|f| f.to_bits())
                            .collect::<Vec<_>>(),
                        first[r].iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
                        "{ty} {isa:?} row {b} ({order:?})"
                    );
                }
            }
        }
    }
}

/// CI's CPU runs the fastest level; the slower ones run here in a child.
#[test]
fn these_tests_pass_at_every_slower_level() {
    common::rerun_below_the_active_level("these_tests_pass_at_every_slower_level");
}
