//! AVX2 kernels for the K-quants (Q4_K, Q6_K) against Q8_K activations.

use super::*;
use crate::formats::{q4_k, q6_k};
use gguf::QK_K;

rows_kernel!(rows_q6_k, dot_q6_k);
// With AVX512-VL's 32 registers, eight rows' sums fit.
rows_kernel!(
    rows_q6_k_vnni,
    dot_q6_k_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw",
    [1 2 3 4 5 6 7 8]
);

// AVX-VNNI keeps AVX2's sixteen registers: four rows, as the plain kernel.
rows_kernel!(
    rows_q6_k_avx_vnni,
    dot_q6_k_avx_vnni,
    "avx2,fma,f16c,avxvnni",
    [1 2 3 4]
);

/// Q6_K's row kernels by [`Extensions`](super::Extensions) level.
pub(super) const Q6_K_KERNELS: [RowsKernel; 3] = [rows_q6_k, rows_q6_k_vnni, rows_q6_k_avx_vnni];

/// Defines `$rows`, Q4_K against 1 to [`MAX_B_WIDE`] activation rows,
/// compiled for `$features`: one row takes [`dot_q4_k`] per weight row;
/// several take `$many`, which unpacks each weight block once for all of
/// them and runs their float sums side by side, with each row's pair sums
/// from `$pairs` ([`Q4kBlock::pairs`], or its VNNI form).
macro_rules! q4_k_kernel {
    ($rows:ident, $many:ident, $features:literal, $pairs:ident) => {
        #[target_feature(enable = $features)]
        pub(super) fn $rows(
            w: &[u8],
            row_bytes: usize,
            act: &ActView<'_>,
            b0: usize,
            outs: &mut [&mut [f32]],
        ) {
            assert!(
                outs.len() <= MAX_B_WIDE,
                "at most {MAX_B_WIDE} activation rows per call"
            );
            match outs.len() {
                0 => {}
                1 => {
                    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                        outs[0][r] = dot_q4_k(row, act, b0);
                    }
                }
                2 => $many::<2>(w, row_bytes, act, b0, outs),
                3 => $many::<3>(w, row_bytes, act, b0, outs),
                4 => $many::<4>(w, row_bytes, act, b0, outs),
                5 => $many::<5>(w, row_bytes, act, b0, outs),
                6 => $many::<6>(w, row_bytes, act, b0, outs),
                7 => $many::<7>(w, row_bytes, act, b0, outs),
                _ => $many::<8>(w, row_bytes, act, b0, outs),
            }
        }

        /// Q4_K for `B` (2..=8) activation rows, their sums in the lanes of
        /// one register: per super-block the rows' four pair sums (and min
        /// sums) are transposed into four vectors with a lane per row, then
        /// added with four fused multiply-adds, which is
        /// [`q4_k::accumulate`]'s sequence in every lane. A lone-row lane
        /// gets the pairs' total in the first step and zeros in the other
        /// three, and adding `0 · dd` leaves a sum unchanged (the sums start
        /// at +0 and never become -0), so its bits are the lone-row order's.
        #[target_feature(enable = $features)]
        #[inline]
        fn $many<const B: usize>(
            w: &[u8],
            row_bytes: usize,
            a: &ActView<'_>,
            b0: usize,
            outs: &mut [&mut [f32]],
        ) {
            const W: usize = MAX_B_WIDE;
            let nb = a.cols / QK_K;
            assert_eq!(row_bytes, nb * q4_k::BLOCK, "row size");
            assert!((2..=W).contains(&B) && outs.len() >= B);
            let n_rows = w.len() / row_bytes;
            assert!(outs[..B].iter().all(|o| o.len() >= n_rows));
            let mut scratch = Scratch::take();
            // Block i's activation scales of the B rows at [W * i .. W * i + B].
            scratch.side_by_side::<W>(a.d, None, b0, B, nb);
            let mut quad = [0i32; W];
            for (j, q) in quad.iter_mut().enumerate().take(B) {
                *q = if a.order(b0 + j).q4k_in_quad { -1 } else { 0 };
            }
            // SAFETY: eight readable i32.
            let quad = unsafe { _mm256_loadu_si256(quad.as_ptr().cast()) };
            for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                let mut acc = _mm256_setzero_ps();
                let mut acc_min = _mm256_setzero_ps();
                for (i, blk) in row.chunks_exact(q4_k::BLOCK).enumerate() {
                    let blk = Q4kBlock::unpack(blk);
                    let mut pairs = [_mm_setzero_si128(); W];
                    let mut min_pairs = [_mm_setzero_si128(); W];
                    for j in 0..B {
                        let k = (b0 + j) * nb + i;
                        pairs[j] = blk.$pairs(&a.qs[k * QK_K..(k + 1) * QK_K]);
                        min_pairs[j] = blk.min_pairs(&a.bsums[k * 16..k * 16 + 16]);
                    }
                    let dts = load8_f32(&scratch.scales.as_slice()[W * i..]);
                    let dd = _mm256_mul_ps(_mm256_set1_ps(blk.d), dts);
                    let dm = _mm256_mul_ps(_mm256_set1_ps(blk.dmin), dts);
                    let p = lone_rows_folded(transpose_8x4(&pairs), quad);
                    let m = lone_rows_folded(transpose_8x4(&min_pairs), quad);
                    for (p, m) in p.into_iter().zip(m) {
                        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), dd, acc);
                        acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), dm, acc_min);
                    }
                }
                let mut res = [0.0f32; W];
                // SAFETY: eight writable floats.
                unsafe { _mm256_storeu_ps(res.as_mut_ptr(), _mm256_sub_ps(acc, acc_min)) };
                for j in 0..B {
                    outs[j][r] = res[j];
                }
            }
            scratch.put_back();
        }
    };
}

q4_k_kernel!(rows_q4_k, many_q4_k, "avx2,fma,f16c", pairs);
// With AVX512-VL's 32 registers the unpacked block and the scales stay in
// registers; VNNI fuses each sub-block's scaling and adding.
q4_k_kernel!(
    rows_q4_k_vnni,
    many_q4_k_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw",
    pairs_vnni
);

q4_k_kernel!(
    rows_q4_k_avx_vnni,
    many_q4_k_avx_vnni,
    "avx2,fma,f16c,avxvnni",
    pairs_avx_vnni
);

/// Q4_K's row kernels by [`Extensions`](super::Extensions) level.
pub(super) const Q4_K_KERNELS: [RowsKernel; 3] = [rows_q4_k, rows_q4_k_vnni, rows_q4_k_avx_vnni];

/// One Q4_K super-block unpacked for the integer products: `d`, `dmin`, the
/// eight sub-block scales, the eight mins widened to 16 bits, and each
/// 64-weight group's 4-bit quants as bytes (low nibbles, high nibbles).
struct Q4kBlock {
    d: f32,
    dmin: f32,
    scales: [u8; 8],
    mins: __m128i,
    quants: [(__m256i, __m256i); 4],
}

impl Q4kBlock {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn unpack(blk: &[u8]) -> Q4kBlock {
        let (scales, mn) = q4_k::scales_mins(&blk[4..16]);
        let mut mins8 = [0u8; 16];
        mins8[..8].copy_from_slice(&mn);
        let m4 = _mm256_set1_epi8(0x0f);
        let qs = &blk[16..];
        Q4kBlock {
            d: f16(&blk[0..2]),
            dmin: f16(&blk[2..4]),
            scales,
            mins: _mm256_castsi256_si128(_mm256_cvtepu8_epi16(load16(&mins8))),
            quants: std::array::from_fn(|g| {
                let bits = load32(&qs[32 * g..32 * g + 32]);
                (
                    _mm256_and_si256(bits, m4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4),
                )
            }),
        }
    }

    /// The exact sums `sc · Σ q·y` of sub-blocks 2g and 2g + 1 (g in 0..4)
    /// against one activation block `y` (256 quants).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn pairs(&self, y: &[i8]) -> __m128i {
        hsum4_epi32(std::array::from_fn(|g| {
            self.pair_lanes(g, &y[64 * g..64 * g + 64])
        }))
    }

    /// [`Q4kBlock::pairs`] by [`Q4kBlock::pair_lanes_vnni`].
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
    #[inline]
    fn pairs_vnni(&self, y: &[i8]) -> __m128i {
        hsum4_epi32(std::array::from_fn(|g| {
            self.pair_lanes_vnni(g, &y[64 * g..64 * g + 64])
        }))
    }

    /// [`Q4kBlock::pairs`] by [`Q4kBlock::pair_lanes_avx_vnni`].
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[inline]
    fn pairs_avx_vnni(&self, y: &[i8]) -> __m128i {
        hsum4_epi32(std::array::from_fn(|g| {
            self.pair_lanes_avx_vnni(g, &y[64 * g..64 * g + 64])
        }))
    }

    /// Sub-blocks 2g and 2g + 1 against their 64 activation quants `y`:
    /// each sub-block's scale (sixteen 16-bit lanes) and its products
    /// summed in pairs (`maddubs`).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn sub_block_products(&self, g: usize, y: &[i8]) -> [(__m256i, __m256i); 2] {
        let (lo, hi) = self.quants[g];
        let scale = |s: usize| _mm256_set1_epi16(i16::from(self.scales[s]));
        [
            (scale(2 * g), _mm256_maddubs_epi16(lo, load32_i8(&y[..32]))),
            (
                scale(2 * g + 1),
                _mm256_maddubs_epi16(hi, load32_i8(&y[32..64])),
            ),
        ]
    }

    /// Sub-blocks 2g and 2g + 1 against their 64 activation quants `y`:
    /// eight lanes whose exact total is the pair's sum `sc · Σ q·y`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn pair_lanes(&self, g: usize, y: &[i8]) -> __m256i {
        let [(sl, pl), (sh, ph)] = self.sub_block_products(g, y);
        _mm256_add_epi32(_mm256_madd_epi16(sl, pl), _mm256_madd_epi16(sh, ph))
    }

    /// [`Q4kBlock::pair_lanes`] with the second sub-block's scaling and
    /// adding fused into one `vpdpwssd` (the same exact integers).
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
    #[inline]
    fn pair_lanes_vnni(&self, g: usize, y: &[i8]) -> __m256i {
        let [(sl, pl), (sh, ph)] = self.sub_block_products(g, y);
        _mm256_dpwssd_epi32(_mm256_madd_epi16(sl, pl), sh, ph)
    }

    /// [`Q4kBlock::pair_lanes_vnni`] by AVX-VNNI's VEX-encoded `vpdpwssd`.
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[inline]
    fn pair_lanes_avx_vnni(&self, g: usize, y: &[i8]) -> __m256i {
        let [(sl, pl), (sh, ph)] = self.sub_block_products(g, y);
        _mm256_dpwssd_avx_epi32(_mm256_madd_epi16(sl, pl), sh, ph)
    }

    /// The exact sums `m · Σ y` of sub-blocks 2g and 2g + 1, from the
    /// activation block's sixteen sums of 16 quants.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn min_pairs(&self, bsums: &[i16]) -> __m128i {
        let bs = load16_i16(bsums);
        let q8s = _mm_hadd_epi16(
            _mm256_castsi256_si128(bs),
            _mm256_extracti128_si256::<1>(bs),
        );
        _mm_madd_epi16(self.mins, q8s)
    }
}

/// Four lanes in each of eight rows, as four vectors of eight lanes (vector
/// `g` holds lane `g` of every row).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn transpose_8x4(x: &[__m128i; MAX_B_WIDE]) -> [__m256i; 4] {
    let half = |x: &[__m128i]| {
        let t0 = _mm_unpacklo_epi32(x[0], x[1]);
        let t1 = _mm_unpacklo_epi32(x[2], x[3]);
        let t2 = _mm_unpackhi_epi32(x[0], x[1]);
        let t3 = _mm_unpackhi_epi32(x[2], x[3]);
        [
            _mm_unpacklo_epi64(t0, t1),
            _mm_unpackhi_epi64(t0, t1),
            _mm_unpacklo_epi64(t2, t3),
            _mm_unpackhi_epi64(t2, t3),
        ]
    };
    let (lo, hi) = (half(&x[..4]), half(&x[4..]));
    std::array::from_fn(|g| _mm256_set_m128i(hi[g], lo[g]))
}

/// The four pair vectors with each lone-row lane (clear in `quad`) holding
/// its pairs' total in the first and zero in the others.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn lone_rows_folded(p: [__m256i; 4], quad: __m256i) -> [__m256i; 4] {
    let total = _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3]));
    [
        _mm256_blendv_epi8(total, p[0], quad),
        _mm256_and_si256(p[1], quad),
        _mm256_and_si256(p[2], quad),
        _mm256_and_si256(p[3], quad),
    ]
}

/// Q4_K, one weight row against activation row `b`: per super-block the
/// pair sums and min sums as exact integers ([`Q4kBlock`]), folded into two
/// float sums in the order of llama.cpp's repacked kernels
/// ([`q4_k::accumulate`]).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_q4_k(w: &[u8], a: &ActView<'_>, b: usize) -> f32 {
    let nb = a.cols / QK_K;
    let in_quad = a.order(b).q4k_in_quad;
    let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
    for (i, blk) in w.chunks_exact(q4_k::BLOCK).enumerate() {
        let k = b * nb + i;
        let blk = Q4kBlock::unpack(blk);
        accumulate_q4_k(
            in_quad,
            to_i32x4(blk.pairs(&a.qs[k * QK_K..(k + 1) * QK_K])),
            to_i32x4(blk.min_pairs(&a.bsums[k * 16..k * 16 + 16])),
            (blk.d * a.d[k], blk.dmin * a.d[k]),
            &mut acc,
            &mut acc_min,
        );
    }
    acc - acc_min
}

/// [`q4_k::accumulate`], here compiled with FMA.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn accumulate_q4_k(
    in_quad: bool,
    pairs: [i32; 4],
    min_pairs: [i32; 4],
    scales: (f32, f32),
    acc: &mut f32,
    acc_min: &mut f32,
) {
    q4_k::accumulate(in_quad, pairs, min_pairs, scales, acc, acc_min);
}

/// The four lanes of `v`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn to_i32x4(v: __m128i) -> [i32; 4] {
    let mut out = [0i32; 4];
    // SAFETY: 16 writable bytes; unaligned store.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), v) };
    out
}

/// The exact integer sum of eight lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum_epi32(v: __m256i) -> i32 {
    let h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
    _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32::<1>(h)))
}

/// The exact integer sum of each of four eight-lane vectors, in four lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum4_epi32(v: [__m256i; 4]) -> __m128i {
    // Pairwise adds leave [v0, v1, v2, v3] partial sums in each 128-bit half.
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// Shuffle masks picking scale bytes 2i and 2i + 1, each repeated eight times.
pub(super) const SCALE_PAIRS: [[u8; 16]; 8] = {
    let mut m = [[0u8; 16]; 8];
    let mut i = 0;
    while i < 8 {
        let mut l = 0;
        while l < 16 {
            m[i][l] = (2 * i + l / 8) as u8;
            l += 1;
        }
        i += 1;
    }
    m
};

/// Defines `$dot`, Q6_K's dot product of one weight row against
/// `B` activation rows, compiled for `$features`, adding each half's scaled
/// products into the integer sums with `$scale_add`.
macro_rules! q6_k_dot {
    ($dot:ident, $features:literal, $scale_add:ident) => {
        /// Q6_K: unsigned 6-bit q times y with per-16 signed scales, minus
        /// `32 * sum(scale * block sum)` for the offset. A lone row sums as
        /// llama.cpp's AVX2 dot product (eight float lanes, added at the end); a
        /// tiled row as its tiled matmul ([`q6_k::accumulate_tiled`]).
        #[target_feature(enable = $features)]
        #[inline]
        fn $dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
            let nb = a.cols / QK_K;
            let m3 = _mm256_set1_epi8(3);
            let m15 = _mm256_set1_epi8(15);
            let mut acc = [_mm256_setzero_ps(); B];
            let mut acc_tiled = [0.0f32; B];
            let tiled: [bool; B] = std::array::from_fn(|j| a.order(b0 + j).q6k_tiled);
            for (i, blk) in w.chunks_exact(q6_k::BLOCK).enumerate() {
                let dw = f16(&blk[208..210]);
                let scales = load16(&blk[192..208]);
                let scales16 = _mm256_cvtepi8_epi16(scales);
                let mut sumi = [_mm256_setzero_si256(); B];
                for j in 0..B {
                    let k = (b0 + j) * nb + i;
                    let bs = load16_i16(&a.bsums[k * 16..k * 16 + 16]);
                    sumi[j] = _mm256_sub_epi32(
                        sumi[j],
                        _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, scales16)),
                    );
                }
                for n in 0..QK_K / 128 {
                    let ql = &blk[64 * n..64 * n + 64];
                    let bits1 = load32(&ql[..32]);
                    let bits2 = load32(&ql[32..]);
                    let bits_h = load32(&blk[128 + 32 * n..128 + 32 * n + 32]);
                    let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(bits_h, m3));
                    let h1 = _mm256_slli_epi16::<2>(_mm256_and_si256(bits_h, _mm256_set1_epi8(12)));
                    let h2 = _mm256_and_si256(bits_h, _mm256_set1_epi8(48));
                    let h3 =
                        _mm256_srli_epi16::<2>(_mm256_and_si256(bits_h, _mm256_set1_epi8(-64)));
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(bits1, m15), h0),
                        _mm256_or_si256(_mm256_and_si256(bits2, m15), h1),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits1), m15), h2),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits2), m15), h3),
                    ];
                    let mut sc = [_mm256_setzero_si256(); 4];
                    for (c, s) in sc.iter_mut().enumerate() {
                        let pick = _mm_shuffle_epi8(scales, load16(&SCALE_PAIRS[4 * n + c]));
                        *s = _mm256_cvtepi8_epi16(pick);
                    }
                    for j in 0..B {
                        let k = (b0 + j) * nb + i;
                        let y = &a.qs[k * QK_K + 128 * n..k * QK_K + 128 * n + 128];
                        let prods: [__m256i; 4] = std::array::from_fn(|c| {
                            _mm256_maddubs_epi16(q[c], load32_i8(&y[32 * c..32 * c + 32]))
                        });
                        sumi[j] = $scale_add(sumi[j], &sc, &prods);
                    }
                }
                for j in 0..B {
                    let k = (b0 + j) * nb + i;
                    if tiled[j] {
                        accumulate_q6_k_tiled(hsum_epi32(sumi[j]), dw, a.d[k], &mut acc_tiled[j]);
                    } else {
                        acc[j] = _mm256_fmadd_ps(
                            _mm256_set1_ps(a.d[k] * dw),
                            _mm256_cvtepi32_ps(sumi[j]),
                            acc[j],
                        );
                    }
                }
            }
            let mut out = [0.0f32; B];
            for j in 0..B {
                out[j] = if tiled[j] {
                    acc_tiled[j]
                } else {
                    hsum_ps(acc[j])
                };
            }
            out
        }
    };
}

q6_k_dot!(dot_q6_k, "avx2,fma,f16c", scale_add);
q6_k_dot!(
    dot_q6_k_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw",
    scale_add_vnni
);

q6_k_dot!(
    dot_q6_k_avx_vnni,
    "avx2,fma,f16c,avxvnni",
    scale_add_avx_vnni
);

/// `sum + Σ_c madd(sc[c], prods[c])`, in llama.cpp's order of adds (exact
/// integers either way).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scale_add(sum: __m256i, sc: &[__m256i; 4], prods: &[__m256i; 4]) -> __m256i {
    let p: [__m256i; 4] = std::array::from_fn(|c| _mm256_madd_epi16(sc[c], prods[c]));
    let sum = _mm256_add_epi32(sum, _mm256_add_epi32(p[0], p[1]));
    _mm256_add_epi32(sum, _mm256_add_epi32(p[2], p[3]))
}

/// [`scale_add`] with each scaling and adding fused into one `vpdpwssd`.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
#[inline]
fn scale_add_vnni(sum: __m256i, sc: &[__m256i; 4], prods: &[__m256i; 4]) -> __m256i {
    let mut sum = sum;
    for c in 0..4 {
        sum = _mm256_dpwssd_epi32(sum, sc[c], prods[c]);
    }
    sum
}

/// [`scale_add_vnni`] by AVX-VNNI's VEX-encoded `vpdpwssd`.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn scale_add_avx_vnni(sum: __m256i, sc: &[__m256i; 4], prods: &[__m256i; 4]) -> __m256i {
    let mut sum = sum;
    for c in 0..4 {
        sum = _mm256_dpwssd_avx_epi32(sum, sc[c], prods[c]);
    }
    sum
}

/// [`q6_k::accumulate_tiled`], here compiled with FMA.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn accumulate_q6_k_tiled(isum: i32, d_w: f32, d_a: f32, acc: &mut f32) {
    q6_k::accumulate_tiled(isum, d_w, d_a, acc);
}
