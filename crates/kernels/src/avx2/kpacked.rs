//! Q6_K and Q4_K for many activation rows on plain AVX2 (a prefill pass,
//! or a decode step of more sequences than [`super::kquants`] takes per
//! call): a task's weight rows are unpacked once into a per-thread buffer
//! (each super-block's quants as eight 32-byte lines, its scales as the
//! eight lines of 16-bit lanes the products are scaled by, plus one line
//! for the offset term: Q6_K's sixteen scales, Q4_K's mins), then every
//! group of eight activation rows, re-laid once so one pointer reaches
//! them all, passes over the unpacked rows.
//!
//! [`super::kquants`] unpacks every super-block again for each call of four
//! (Q6_K) or eight (Q4_K) activation rows: placing Q6_K's high bits and
//! spreading its scales (two dozen instructions per 128 weights) cost
//! about as much as the products themselves. The integer sums here are the
//! same exact integers (adds of the same terms, perhaps in another order,
//! which integers do not notice), and each row's float steps are
//! [`super::kquants`]' (Q6_K: llama.cpp's dot product's eight lanes, or its
//! tiled matmul's one fused multiply-add per super-block; Q4_K: the rows'
//! sums side by side in either order), so every result has the same bits.
//! Measured 1.2–1.4× (Q6_K) and 1.03–1.14× (Q4_K) as fast at batches
//! 16–512 (docs/PERFORMANCE.md).

use super::kquants::{
    accumulate_q6_k_tiled, hsum4_epi32, hsum_epi32, lone_rows_folded, transpose_8x4, SCALE_PAIRS,
};
use super::*;
use crate::formats::{q4_k, q6_k};
use gguf::QK_K;

/// Activation rows per pass over the unpacked weights.
const GROUP: usize = MAX_B_WIDE;

/// 32-byte lines per unpacked super-block: eight of quants, eight of
/// scales, one of the sixteen scales for the offset term.
const LINES: usize = 17;

/// One task's unpacked weights, reused from call to call on a thread.
#[derive(Default)]
struct Packed {
    /// Per weight row, per super-block: [`LINES`] lines of 32 bytes.
    lines: LineBuf<i8>,
    /// Per weight row, per super-block: the scale.
    d: LineBuf<f32>,
}

thread_local! {
    static PACKED: std::cell::RefCell<Packed> = std::cell::RefCell::default();
}

/// `out[b * stride + r] = dot(weight row r, activation row b)` for every row
/// `r` of `w` (Q6_K) and every `b < batch` (Q8_K activations).
///
/// # Safety
/// `out.add(b * stride + r)` must be writable for those `b` and `r`, and no
/// other thread may touch those elements meanwhile; the CPU must support
/// AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6_k_rows(
    w: &[u8],
    row_bytes: usize,
    a: &ActView<'_>,
    batch: usize,
    out: *mut f32,
    stride: usize,
) {
    let nb = a.cols / QK_K;
    assert_eq!(row_bytes, nb * q6_k::BLOCK, "row size");
    let n_rows = w.len() / row_bytes.max(1);
    if n_rows == 0 || nb == 0 {
        return;
    }
    let mut packed = PACKED.with(|p| std::mem::take(&mut *p.borrow_mut()));
    {
        let lines = packed.lines.resized(n_rows * nb * LINES * 32);
        let d = packed.d.resized(n_rows * nb);
        let lp = lines.as_mut_ptr();
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi8(15);
        for (r, row) in w.chunks_exact(row_bytes).enumerate() {
            for (i, blk) in row.chunks_exact(q6_k::BLOCK).enumerate() {
                let k = r * nb + i;
                d[k] = f16(&blk[208..210]);
                let scales = load16(&blk[192..208]);
                let put = |line: usize, v: __m256i| {
                    // SAFETY: line < LINES of super-block k (< n_rows · nb)
                    // lies inside `lines`.
                    unsafe { _mm256_storeu_si256(lp.add((k * LINES + line) * 32).cast(), v) };
                };
                put(16, _mm256_cvtepi8_epi16(scales));
                for n in 0..QK_K / 128 {
                    // The same unpacking as `kquants::q6_k_dot`.
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
                    for (c, &qc) in q.iter().enumerate() {
                        let pick = _mm_shuffle_epi8(scales, load16(&SCALE_PAIRS[4 * n + c]));
                        put(4 * n + c, qc);
                        put(8 + 4 * n + c, _mm256_cvtepi8_epi16(pick));
                    }
                }
            }
        }
    }
    for b0 in (0..batch).step_by(GROUP) {
        let n = (batch - b0).min(GROUP);
        let p = &packed;
        // SAFETY: the caller's contract, for rows b0..b0 + n.
        unsafe { at_width!(n, B => group::<B>(p, n_rows, a, b0, out, stride)) }
    }
    PACKED.with(|p| *p.borrow_mut() = packed);
}

/// Activation rows `b0..b0 + B` against the `n_rows` unpacked weight rows.
///
/// # Safety
/// As [`q6_k_rows`], for these activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn group<const B: usize>(
    packed: &Packed,
    n_rows: usize,
    a: &ActView<'_>,
    b0: usize,
    out: *mut f32,
    stride: usize,
) {
    let nb = a.cols / QK_K;
    let (lines, dw) = (packed.lines.as_slice(), packed.d.as_slice());
    assert!(lines.len() >= n_rows * nb * LINES * 32 && dw.len() >= n_rows * nb);
    assert!(a.qs.len() >= (b0 + B) * nb * QK_K && a.bsums.len() >= (b0 + B) * nb * 16);
    assert!(a.d.len() >= (b0 + B) * nb);
    let tiled: [bool; B] = std::array::from_fn(|j| a.order(b0 + j).q6k_tiled);
    // The rows' quants re-laid so one pointer and constant offsets reach
    // them all: 32-byte line t of super-block i of row j at
    // ((i * 8 + t) * B + j) * 32.
    let mut scratch = Scratch::take();
    let laid = scratch.quants.resized(B * nb * QK_K);
    for j in 0..B {
        for i in 0..nb {
            for t in 0..8 {
                let from = ((b0 + j) * nb + i) * QK_K + 32 * t;
                laid[((i * 8 + t) * B + j) * 32..][..32].copy_from_slice(&a.qs[from..from + 32]);
            }
        }
    }
    let qs = scratch.quants.as_slice().as_ptr();
    let line = |k: usize, l: usize| {
        // SAFETY: line l < LINES of super-block k (< n_rows · nb) lies
        // inside `lines` (asserted).
        unsafe { _mm256_loadu_si256(lines.as_ptr().add((k * LINES + l) * 32).cast()) }
    };
    for r in 0..n_rows {
        let mut acc = [_mm256_setzero_ps(); B];
        let mut acc_tiled = [0.0f32; B];
        for i in 0..nb {
            let kw = r * nb + i;
            let scales16 = line(kw, 16);
            let mut sumi = [_mm256_setzero_si256(); B];
            for j in 0..B {
                let k = (b0 + j) * nb + i;
                let bs = load16_i16(&a.bsums[k * 16..k * 16 + 16]);
                sumi[j] = _mm256_sub_epi32(
                    sumi[j],
                    _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, scales16)),
                );
            }
            for t in 0..8 {
                let (q, sc) = (line(kw, t), line(kw, 8 + t));
                for j in 0..B {
                    // SAFETY: line t of super-block i of row j lies inside
                    // the B · nb · QK_K re-laid quants (j < B, i < nb, t < 8).
                    let y =
                        unsafe { _mm256_loadu_si256(qs.add(((i * 8 + t) * B + j) * 32).cast()) };
                    let p = _mm256_madd_epi16(sc, _mm256_maddubs_epi16(q, y));
                    sumi[j] = _mm256_add_epi32(sumi[j], p);
                }
            }
            for j in 0..B {
                let k = (b0 + j) * nb + i;
                if tiled[j] {
                    accumulate_q6_k_tiled(hsum_epi32(sumi[j]), dw[kw], a.d[k], &mut acc_tiled[j]);
                } else {
                    acc[j] = _mm256_fmadd_ps(
                        _mm256_set1_ps(a.d[k] * dw[kw]),
                        _mm256_cvtepi32_ps(sumi[j]),
                        acc[j],
                    );
                }
            }
        }
        for j in 0..B {
            let v = if tiled[j] {
                acc_tiled[j]
            } else {
                hsum_ps(acc[j])
            };
            // SAFETY: the caller's contract (b0 + j < batch, r < n_rows).
            unsafe { *out.add((b0 + j) * stride + r) = v };
        }
    }
    scratch.put_back();
}

/// Q4_K's counterpart of [`q6_k_rows`]: each super-block unpacked once per
/// task (its eight sub-blocks' 4-bit quants as lines of bytes, their scales
/// as lines of 16-bit lanes, the mins widened to 16 bits, `d` and `dmin` as
/// floats), each group of eight activation rows re-laid once, and the
/// rows' float sums side by side as in [`super::kquants`]' several-row
/// form (so every row, in either of its orders, keeps its bits).
///
/// # Safety
/// As [`q6_k_rows`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_k_rows(
    w: &[u8],
    row_bytes: usize,
    a: &ActView<'_>,
    batch: usize,
    out: *mut f32,
    stride: usize,
) {
    let nb = a.cols / QK_K;
    assert_eq!(row_bytes, nb * q4_k::BLOCK, "row size");
    let n_rows = w.len() / row_bytes.max(1);
    if n_rows == 0 || nb == 0 {
        return;
    }
    let mut packed = PACKED.with(|p| std::mem::take(&mut *p.borrow_mut()));
    {
        let lines = packed.lines.resized(n_rows * nb * LINES * 32);
        let d = packed.d.resized(2 * n_rows * nb);
        let lp = lines.as_mut_ptr();
        let m4 = _mm256_set1_epi8(0x0f);
        for (r, row) in w.chunks_exact(row_bytes).enumerate() {
            for (i, blk) in row.chunks_exact(q4_k::BLOCK).enumerate() {
                let k = r * nb + i;
                let put = |line: usize, v: __m256i| {
                    // SAFETY: line < LINES of super-block k (< n_rows · nb)
                    // lies inside `lines`.
                    unsafe { _mm256_storeu_si256(lp.add((k * LINES + line) * 32).cast(), v) };
                };
                // The same unpacking as `kquants::Q4kBlock::unpack`.
                d[2 * k] = f16(&blk[0..2]);
                d[2 * k + 1] = f16(&blk[2..4]);
                let (scales, mn) = q4_k::scales_mins(&blk[4..16]);
                let mut mins8 = [0u8; 16];
                mins8[..8].copy_from_slice(&mn);
                put(16, _mm256_cvtepu8_epi16(load16(&mins8)));
                let qs = &blk[16..];
                for g in 0..4 {
                    let bits = load32(&qs[32 * g..32 * g + 32]);
                    put(2 * g, _mm256_and_si256(bits, m4));
                    put(
                        2 * g + 1,
                        _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4),
                    );
                }
                for (s, &sc) in scales.iter().enumerate() {
                    put(8 + s, _mm256_set1_epi16(i16::from(sc)));
                }
            }
        }
    }
    for b0 in (0..batch).step_by(GROUP) {
        let n = (batch - b0).min(GROUP);
        let p = &packed;
        // SAFETY: the caller's contract, for rows b0..b0 + n.
        unsafe { at_width!(n, B => q4_k_group::<B>(p, n_rows, a, b0, out, stride)) }
    }
    PACKED.with(|p| *p.borrow_mut() = packed);
}

/// Activation rows `b0..b0 + B` against the `n_rows` unpacked Q4_K rows.
///
/// # Safety
/// As [`q4_k_rows`], for these activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q4_k_group<const B: usize>(
    packed: &Packed,
    n_rows: usize,
    a: &ActView<'_>,
    b0: usize,
    out: *mut f32,
    stride: usize,
) {
    const W: usize = GROUP;
    let nb = a.cols / QK_K;
    let (lines, dw) = (packed.lines.as_slice(), packed.d.as_slice());
    assert!(lines.len() >= n_rows * nb * LINES * 32 && dw.len() >= 2 * n_rows * nb);
    assert!(a.qs.len() >= (b0 + B) * nb * QK_K && a.bsums.len() >= (b0 + B) * nb * 16);
    let mut scratch = Scratch::take();
    // Block i's activation scales of the B rows at [W * i .. W * i + B].
    scratch.side_by_side::<W>(a.d, None, b0, B, nb);
    let mut quad = [0i32; W];
    for (j, q) in quad.iter_mut().enumerate().take(B) {
        *q = if a.order(b0 + j).q4k_in_quad { -1 } else { 0 };
    }
    // SAFETY: eight readable i32.
    let quad = unsafe { _mm256_loadu_si256(quad.as_ptr().cast()) };
    // The rows' quants re-laid as in `group` (line t of super-block i of
    // row j at ((i * 8 + t) * B + j) * 32), and each (row, super-block)'s
    // sixteen block sums added in pairs (`kquants::Q4kBlock::min_pairs`),
    // once per group.
    let laid = scratch.quants.resized(B * nb * QK_K);
    for j in 0..B {
        for i in 0..nb {
            for t in 0..8 {
                let from = ((b0 + j) * nb + i) * QK_K + 32 * t;
                laid[((i * 8 + t) * B + j) * 32..][..32].copy_from_slice(&a.qs[from..from + 32]);
            }
        }
    }
    let mut q8s = vec![_mm_setzero_si128(); B * nb];
    for j in 0..B {
        for i in 0..nb {
            let k = (b0 + j) * nb + i;
            let bs = load16_i16(&a.bsums[k * 16..k * 16 + 16]);
            q8s[i * B + j] = _mm_hadd_epi16(
                _mm256_castsi256_si128(bs),
                _mm256_extracti128_si256::<1>(bs),
            );
        }
    }
    let qs = scratch.quants.as_slice().as_ptr();
    let dts = scratch.scales.as_slice();
    assert!(dts.len() >= W * nb);
    let line = |k: usize, l: usize| {
        // SAFETY: line l < LINES of super-block k (< n_rows · nb) lies
        // inside `lines` (asserted).
        unsafe { _mm256_loadu_si256(lines.as_ptr().add((k * LINES + l) * 32).cast()) }
    };
    for r in 0..n_rows {
        let mut acc = _mm256_setzero_ps();
        let mut acc_min = _mm256_setzero_ps();
        for i in 0..nb {
            let kw = r * nb + i;
            let mins = _mm256_castsi256_si128(line(kw, 16));
            let mut pairs = [_mm_setzero_si128(); W];
            let mut min_pairs = [_mm_setzero_si128(); W];
            for j in 0..B {
                let lanes: [__m256i; 4] = std::array::from_fn(|g| {
                    let prod = |s: usize| {
                        // SAFETY: line s of super-block i of row j lies
                        // inside the B · nb · QK_K re-laid quants.
                        let y = unsafe {
                            _mm256_loadu_si256(qs.add(((i * 8 + s) * B + j) * 32).cast())
                        };
                        _mm256_madd_epi16(line(kw, 8 + s), _mm256_maddubs_epi16(line(kw, s), y))
                    };
                    _mm256_add_epi32(prod(2 * g), prod(2 * g + 1))
                });
                pairs[j] = hsum4_epi32(lanes);
                min_pairs[j] = _mm_madd_epi16(mins, q8s[i * B + j]);
            }
            let dts = load8_f32(&dts[W * i..]);
            let dd = _mm256_mul_ps(_mm256_set1_ps(dw[2 * kw]), dts);
            let dm = _mm256_mul_ps(_mm256_set1_ps(dw[2 * kw + 1]), dts);
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
            // SAFETY: the caller's contract (b0 + j < batch, r < n_rows).
            unsafe { *out.add((b0 + j) * stride + r) = res[j] };
        }
    }
    scratch.put_back();
}
