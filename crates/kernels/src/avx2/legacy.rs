//! AVX2 kernels for the 32-element block formats (Q4_1, Q5_0, Q8_0) and the
//! unquantized F32 / F16 weights.

use super::*;
use crate::formats::{q4_1, q5_0, q8_0};

rows_kernel!(rows_q4_1_batch, dot_q4_1);
rows_kernel!(rows_q5_0_batch, dot_q5_0);
rows_kernel!(rows_q8_0_batch, dot_q8_0);

/// Q4_1 rows: one activation row (a decode step) takes the grouped
/// single-row driver, more take the per-row kernel that unpacks each block
/// once for all of them.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q4_1(
    w: &[u8],
    row_bytes: usize,
    act: &ActView<'_>,
    b0: usize,
    outs: &mut [&mut [f32]],
) {
    match outs {
        [out] => single::rows::<Q4_1Block>(w, row_bytes, act, b0, out),
        _ => rows_q4_1_batch(w, row_bytes, act, b0, outs),
    }
}

/// Q5_0 rows; see [`rows_q4_1`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q5_0(
    w: &[u8],
    row_bytes: usize,
    act: &ActView<'_>,
    b0: usize,
    outs: &mut [&mut [f32]],
) {
    match outs {
        [out] => single::rows::<Q5_0Block>(w, row_bytes, act, b0, out),
        _ => rows_q5_0_batch(w, row_bytes, act, b0, outs),
    }
}

/// Q8_0 rows; see [`rows_q4_1`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q8_0(
    w: &[u8],
    row_bytes: usize,
    act: &ActView<'_>,
    b0: usize,
    outs: &mut [&mut [f32]],
) {
    match outs {
        [out] => single::rows::<Q8_0Block>(w, row_bytes, act, b0, out),
        _ => rows_q8_0_batch(w, row_bytes, act, b0, outs),
    }
}

/// Q4_1 blocks for the single-row driver: the same steps as [`dot_q4_1`].
struct Q4_1Block;

impl single::Block for Q4_1Block {
    const BYTES: usize = q4_1::BLOCK;
    const OFFSET: bool = true;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn step(
        blk: *const u8,
        qy: __m256i,
        dy: f32,
        sy: f32,
        acc: &mut __m256,
        summ: &mut f32,
    ) {
        // SAFETY: the caller passes a whole block: two halves, 16 quant bytes.
        let (d, m, qx) = unsafe { (f16_at(blk), f16_at(blk.add(2)), nibbles_at(blk.add(4))) };
        *summ += m * sy;
        let xy = mul_sum_us8_pairs_float(qx, qy);
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), xy, *acc);
    }
}

/// Q8_0 blocks for the single-row driver: the same steps as [`dot_q8_0`].
struct Q8_0Block;

impl single::Block for Q8_0Block {
    const BYTES: usize = q8_0::BLOCK;
    const OFFSET: bool = false;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn step(
        blk: *const u8,
        qy: __m256i,
        dy: f32,
        _sy: f32,
        acc: &mut __m256,
        _summ: &mut f32,
    ) {
        // SAFETY: the caller passes a whole block: one half, 32 quant bytes.
        let (dw, qx) = unsafe { (f16_at(blk), _mm256_loadu_si256(blk.add(2).cast())) };
        i8_step(acc, qx, dw * dy, qy);
    }
}

/// Q5_0 blocks for the single-row driver: the same steps as [`dot_q5_0`].
struct Q5_0Block;

impl single::Block for Q5_0Block {
    const BYTES: usize = q5_0::BLOCK;
    const OFFSET: bool = false;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn step(
        blk: *const u8,
        qy: __m256i,
        dy: f32,
        _sy: f32,
        acc: &mut __m256,
        _summ: &mut f32,
    ) {
        // SAFETY: the caller passes a whole block: one half, four bytes of
        // fifth bits, 16 quant bytes.
        let (dw, qh, low) = unsafe {
            (
                f16_at(blk),
                blk.add(2).cast::<u32>().read_unaligned(),
                nibbles_at(blk.add(6)),
            )
        };
        let qx = q5_0_values(u32::from_le(qh), low);
        i8_step(acc, qx, dw * dy, qy);
    }
}

/// Q5_0's signed values from its fifth bits and low nibbles: value =
/// (nibble | fifth bit << 4) - 16; where the fifth bit is clear the byte is
/// nibble - 16 = nibble | 0xF0 in two's complement.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q5_0_values(qh: u32, low: __m256i) -> __m256i {
    let high = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xF0u8 as i8));
    _mm256_or_si256(low, high)
}

/// One block of signed 8-bit weights `qx` against activation quants `qy`:
/// `acc += scale * sum(qx * qy)` in eight lanes (the sign of x moves onto y,
/// so |x| times signed y fits the unsigned-by-signed multiply).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn i8_step(acc: &mut __m256, qx: __m256i, scale: f32, qy: __m256i) {
    let ax = _mm256_sign_epi8(qx, qx);
    let q = mul_sum_us8_pairs_float(ax, _mm256_sign_epi8(qy, qx));
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), q, *acc);
}

rows_kernel!(rows_f32, dot_f32);
rows_kernel!(rows_f16, dot_f16);

/// Q4_1 weights against Q8_1 activations: `d_w * d_a * sum(q_w * q_a) + m_w * s_a` per block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_q4_1<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / 32;
    let mut acc = [_mm256_setzero_ps(); B];
    let mut summs = [0.0f32; B];
    for (i, blk) in w.chunks_exact(q4_1::BLOCK).enumerate() {
        let d = f16(&blk[0..2]);
        let m = f16(&blk[2..4]);
        let qx = nibbles(&blk[4..20]);
        for j in 0..B {
            let b = b0 + j;
            let k = b * nb + i;
            summs[j] += m * a.s[k];
            let qy = load32_i8(&a.qs[k * 32..k * 32 + 32]);
            let xy = mul_sum_us8_pairs_float(qx, qy);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d[k]), xy, acc[j]);
        }
    }
    let mut out = [0.0f32; B];
    for j in 0..B {
        out[j] = hsum_ps(acc[j]) + summs[j];
    }
    out
}

/// Signed 8-bit weight values against Q8_0 activations, one block at a time.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn acc_i8_block<const B: usize>(
    acc: &mut [__m256; B],
    qx: __m256i,
    dw: f32,
    a: &ActView<'_>,
    b0: usize,
    i: usize,
) {
    let nb = a.cols / 32;
    for j in 0..B {
        let k = (b0 + j) * nb + i;
        let qy = load32_i8(&a.qs[k * 32..k * 32 + 32]);
        i8_step(&mut acc[j], qx, dw * a.d[k], qy);
    }
}

/// Q8_0 weights against Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_q8_0<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let mut acc = [_mm256_setzero_ps(); B];
    for (i, blk) in w.chunks_exact(q8_0::BLOCK).enumerate() {
        acc_i8_block(&mut acc, load32(&blk[2..34]), f16(&blk[0..2]), a, b0, i);
    }
    let mut out = [0.0f32; B];
    for j in 0..B {
        out[j] = hsum_ps(acc[j]);
    }
    out
}

/// Q5_0 weights against Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_q5_0<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let mut acc = [_mm256_setzero_ps(); B];
    for (i, blk) in w.chunks_exact(q5_0::BLOCK).enumerate() {
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let qx = q5_0_values(qh, nibbles(&blk[6..22]));
        acc_i8_block(&mut acc, qx, f16(&blk[0..2]), a, b0, i);
    }
    let mut out = [0.0f32; B];
    for j in 0..B {
        out[j] = hsum_ps(acc[j]);
    }
    out
}

/// Four 8-lane accumulators reduced as llama.cpp's `GGML_F32_VEC_REDUCE`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn reduce4(s: [__m256; 4]) -> f32 {
    let a = _mm256_add_ps(s[0], s[2]);
    let b = _mm256_add_ps(s[1], s[3]);
    hsum_ps(_mm256_add_ps(a, b))
}

/// F32 weights against the f32 activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_f32<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let n = a.cols;
    let main = n - n % 32;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let x = &a.f[(b0 + j) * n..(b0 + j + 1) * n];
        let mut s = [_mm256_setzero_ps(); 4];
        for i in (0..main).step_by(32) {
            for (k, sk) in s.iter_mut().enumerate() {
                let e = i + 8 * k;
                *sk = _mm256_fmadd_ps(
                    load8_f32_bytes(&w[4 * e..4 * e + 32]),
                    load8_f32(&x[e..e + 8]),
                    *sk,
                );
            }
        }
        let mut sum = reduce4(s);
        for e in main..n {
            sum += f32::from_le_bytes([w[4 * e], w[4 * e + 1], w[4 * e + 2], w[4 * e + 3]]) * x[e];
        }
        *o = sum;
    }
    out
}

/// F16 weights against f16-rounded activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_f16<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let n = a.cols;
    let main = n - n % 32;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let x = &a.h[(b0 + j) * n..(b0 + j + 1) * n];
        let mut s = [_mm256_setzero_ps(); 4];
        for i in (0..main).step_by(32) {
            for (k, sk) in s.iter_mut().enumerate() {
                let e = i + 8 * k;
                // SAFETY: x[e..e + 8] is in bounds (e + 8 <= main <= n): 16 bytes.
                let xh = unsafe { _mm_loadu_si128(x[e..e + 8].as_ptr().cast()) };
                let xv = _mm256_cvtph_ps(xh);
                *sk = _mm256_fmadd_ps(load8_f16_bytes(&w[2 * e..2 * e + 16]), xv, *sk);
            }
        }
        let mut sum = reduce4(s);
        for e in main..n {
            let wv = crate::f16::f16_to_f32(u16::from_le_bytes([w[2 * e], w[2 * e + 1]]));
            sum += wv * crate::f16::f16_to_f32(x[e]);
        }
        *o = sum;
    }
    out
}
