//! The several-activation-rows driver for the 32-element block formats (a
//! prefill chunk, or a decode step of many sequences): each weight block is
//! unpacked once and multiplied into up to eight activation rows. The
//! activation scales (and Q8_1 sums) of those rows are first laid side by
//! side per block, so one vector multiply gives all the rows' `d_w * d_a`
//! and one multiply-add all their `m_w * s_a` terms; the inner loop then
//! reads quants through raw pointers, with no bounds checks or spilled
//! indices. Each (weight row, activation row) pair still sums its blocks in
//! order with the same operations as [`super::single`], so results have the
//! same bits on both paths. On CPUs with AVX512-VNNI the integer products of
//! a block take one instruction instead of two (the same lanes exactly).

use super::blocks::{widen, Block, Unpacked};
use super::*;
use crate::formats::MAX_B_WIDE;

/// Lanes of the side-by-side scales (one per activation row).
const W: usize = MAX_B_WIDE;
const _: () = assert!(W == 8, "scales fill one 8-lane register");

/// Defines the several-rows driver `$rows` (dispatching on the row count
/// to `$go`), compiled for `$features`, whose per-(block, row) integer
/// products and float widening are `$dot(&unpacked, start, qy) -> __m256`
/// (`$vnni`: the VNNI form, with biased activations for signed formats).
macro_rules! batch_driver {
    ($rows:ident, $go:ident, $features:literal, $vnni:literal, $dot:ident) => {
        /// `outs[j][r] = dot(weight row r, activation row b0 + j)` for every
        /// row of `w` and `j < outs.len()` (2 to [`MAX_B_WIDE`]).
        #[target_feature(enable = $features)]
        pub(super) fn $rows<K: Block>(
            w: &[u8],
            row_bytes: usize,
            a: &ActView<'_>,
            b0: usize,
            outs: &mut [&mut [f32]],
        ) {
            assert!(outs.len() <= W, "at most {W} activation rows per call");
            match outs.len() {
                0 => {}
                1 => $go::<K, 1>(w, row_bytes, a, b0, outs),
                2 => $go::<K, 2>(w, row_bytes, a, b0, outs),
                3 => $go::<K, 3>(w, row_bytes, a, b0, outs),
                4 => $go::<K, 4>(w, row_bytes, a, b0, outs),
                5 => $go::<K, 5>(w, row_bytes, a, b0, outs),
                6 => $go::<K, 6>(w, row_bytes, a, b0, outs),
                7 => $go::<K, 7>(w, row_bytes, a, b0, outs),
                _ => $go::<K, 8>(w, row_bytes, a, b0, outs),
            }
        }

        #[target_feature(enable = $features)]
        #[inline]
        fn $go<K: Block, const B: usize>(
            w: &[u8],
            row_bytes: usize,
            a: &ActView<'_>,
            b0: usize,
            outs: &mut [&mut [f32]],
        ) {
            let nb = a.cols / 32;
            assert_eq!(row_bytes, nb * K::BYTES, "row size");
            assert!(B <= W && outs.len() >= B);
            let n_rows = w.len() / row_bytes;
            assert!(outs[..B].iter().all(|o| o.len() >= n_rows));
            let mut scratch = Scratch::take();
            scratch.side_by_side(a.d, K::OFFSET.then_some(a.s), b0, B, nb);
            let qstride = nb * 32;
            let mut qs = &a.qs[b0 * qstride..(b0 + B) * qstride];
            // The VNNI products of signed formats take the activations
            // biased by +128, made once here for every weight row.
            if $vnni && K::BIASED {
                scratch.quants.clear();
                scratch.quants.extend(qs.iter().map(|&q| q ^ i8::MIN));
                qs = &scratch.quants;
            }
            let (dt, st) = (&scratch.scales, &scratch.sums);
            let lane: [__m256i; W] = std::array::from_fn(|j| _mm256_set1_epi32(j as i32));
            for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                let base = row.as_ptr();
                let mut acc = [_mm256_setzero_ps(); B];
                let mut summs = _mm256_setzero_ps();
                for i in 0..nb {
                    // SAFETY: block i (i < nb) lies inside the row (its length
                    // was asserted); the CPU features are enabled here.
                    let u = unsafe { K::unpack(base.add(i * K::BYTES)) };
                    // SAFETY: the CPU features are enabled here.
                    let start = if $vnni {
                        unsafe { vnni_start::<K>(&u) }
                    } else {
                        _mm256_setzero_si256()
                    };
                    let scales = _mm256_mul_ps(_mm256_set1_ps(u.d), load8_f32(&dt[W * i..]));
                    if K::OFFSET {
                        let m = _mm256_set1_ps(u.m);
                        summs = _mm256_add_ps(summs, _mm256_mul_ps(m, load8_f32(&st[W * i..])));
                    }
                    for j in 0..B {
                        // SAFETY: row j's block i is 32 bytes at
                        // j * qstride + 32 * i inside `qs` (j < B, i < nb).
                        let qy = unsafe {
                            _mm256_loadu_si256(qs.as_ptr().add(j * qstride + 32 * i).cast())
                        };
                        // SAFETY: the CPU features are enabled here.
                        let p = unsafe { $dot::<K>(&u, start, qy) };
                        // Lane j of the products, in all eight lanes.
                        let s = _mm256_permutevar8x32_ps(scales, lane[j]);
                        acc[j] = _mm256_fmadd_ps(s, p, acc[j]);
                    }
                }
                let mut sm = [0.0f32; W];
                // SAFETY: eight writable floats.
                unsafe { _mm256_storeu_ps(sm.as_mut_ptr(), summs) };
                for j in 0..B {
                    let dot = hsum_ps(acc[j]);
                    // Formats without an offset end at the sum itself (adding
                    // 0.0 would turn a -0.0 into +0.0).
                    outs[j][r] = if K::OFFSET { dot + sm[j] } else { dot };
                }
            }
            scratch.put_back();
        }
    };
}

/// Products by `maddubs`, pair sums widened by `madd` (llama.cpp's AVX2 steps).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_avx2<K: Block>(u: &Unpacked, _start: __m256i, qy: __m256i) -> __m256 {
    // SAFETY: the caller's CPU has AVX2, FMA and F16C.
    widen(unsafe { K::products(u, qy) })
}

/// The same lanes from one VNNI instruction (`qy` biased for signed formats).
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
#[inline]
unsafe fn dot_vnni<K: Block>(u: &Unpacked, start: __m256i, qy: __m256i) -> __m256 {
    // SAFETY: the caller's CPU has VNNI too.
    _mm256_cvtepi32_ps(unsafe { K::dot4(u, start, qy) })
}

/// [`Block::vnni_start`].
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
#[inline]
unsafe fn vnni_start<K: Block>(u: &Unpacked) -> __m256i {
    // SAFETY: the caller's CPU has VNNI.
    unsafe { K::vnni_start(u) }
}

batch_driver!(rows, go, "avx2,fma,f16c", false, dot_avx2);
batch_driver!(
    rows_vnni,
    go_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    true,
    dot_vnni
);
