//! The packed F32 GEMM's micro-kernels ([`crate::gemm`]): a 6 × 16 output
//! tile in twelve AVX2 registers (two per row; per input, two weight loads
//! and six broadcasts feed twelve FMAs), and a 12 × 16 tile in twelve
//! AVX-512 registers (one per row; one weight load and twelve broadcasts
//! feed twelve FMAs). With `F16`, the weight panels hold half-precision
//! values, widened exactly by F16C's `vcvtph2ps` as they are loaded.

use crate::gemm::NR;
use std::arch::x86_64::*;

/// Writes a finished tile: `c = acc + bias` when `init`, else `c += acc`,
/// for the `rows × cols` corner.
///
/// # Safety
/// `c` covers the `rows × cols` tile with row stride `ldc`; `bias` holds
/// `NR` values.
#[inline(always)]
unsafe fn store_tile<const MR: usize>(
    acc: &[[f32; NR]; MR],
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    init: bool,
) {
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (j, v) in row.iter().enumerate().take(cols) {
            // SAFETY: (i, j) is inside the tile; j < NR for the bias.
            unsafe {
                let dst = c.add(i * ldc + j);
                *dst = if init { v + *bias.add(j) } else { *dst + v };
            }
        }
    }
}

/// Eight weights from element `i` of a panel, as f32.
///
/// # Safety
/// `b` holds elements `i..i + 8` (u16 when `F16`, else f32).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load8<const F16: bool>(b: *const u8, i: usize) -> __m256 {
    // SAFETY: the caller's bounds.
    unsafe {
        if F16 {
            _mm256_cvtph_ps(_mm_loadu_si128(b.cast::<u16>().add(i).cast()))
        } else {
            _mm256_loadu_ps(b.cast::<f32>().add(i))
        }
    }
}

/// Sixteen weights from element `i` of a panel, as f32.
///
/// # Safety
/// `b` holds elements `i..i + 16` (u16 when `F16`, else f32).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load16<const F16: bool>(b: *const u8, i: usize) -> __m512 {
    // SAFETY: the caller's bounds.
    unsafe {
        if F16 {
            _mm512_cvtph_ps(_mm256_loadu_si256(b.cast::<u16>().add(i).cast()))
        } else {
            _mm512_loadu_ps(b.cast::<f32>().add(i))
        }
    }
}

/// The AVX2 + FMA micro-kernel, 6 × 16.
///
/// # Safety
/// As [`crate::gemm::Micro`]; the CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro_6x16<const F16: bool>(
    kc: usize,
    a: *const f32,
    b: *const u8,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    init: bool,
) {
    const MR: usize = 6;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    // SAFETY (whole block): the caller gives kc * MR values at `a`, kc * NR
    // at `b` and NR at `bias`, and the rows × cols tile at `c`.
    unsafe {
        let mut a = a;
        for k in 0..kc {
            let b0 = load8::<F16>(b, k * NR);
            let b1 = load8::<F16>(b, k * NR + 8);
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                row[1] = _mm256_fmadd_ps(x, b1, row[1]);
            }
            a = a.add(MR);
        }
        if rows == MR && cols == NR {
            let (bias0, bias1) = (_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8)));
            for (i, row) in acc.iter().enumerate() {
                let dst = c.add(i * ldc);
                let (base0, base1) = if init {
                    (bias0, bias1)
                } else {
                    (_mm256_loadu_ps(dst), _mm256_loadu_ps(dst.add(8)))
                };
                _mm256_storeu_ps(dst, _mm256_add_ps(base0, row[0]));
                _mm256_storeu_ps(dst.add(8), _mm256_add_ps(base1, row[1]));
            }
        } else {
            let mut tile = [[0.0f32; NR]; MR];
            for (t, row) in tile.iter_mut().zip(&acc) {
                _mm256_storeu_ps(t.as_mut_ptr(), row[0]);
                _mm256_storeu_ps(t.as_mut_ptr().add(8), row[1]);
            }
            store_tile(&tile, bias, c, ldc, rows, cols, init);
        }
    }
}

/// The AVX-512 micro-kernel, 12 × 16.
///
/// # Safety
/// As [`crate::gemm::Micro`]; the CPU has AVX-512 F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro_12x16<const F16: bool>(
    kc: usize,
    a: *const f32,
    b: *const u8,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    init: bool,
) {
    const MR: usize = 12;
    let mut acc = [_mm512_setzero_ps(); MR];
    // SAFETY (whole block): as in `micro_6x16`.
    unsafe {
        let mut a = a;
        for k in 0..kc {
            let w = load16::<F16>(b, k * NR);
            for (i, row) in acc.iter_mut().enumerate() {
                *row = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(i)), w, *row);
            }
            a = a.add(MR);
        }
        if rows == MR && cols == NR {
            let bv = _mm512_loadu_ps(bias);
            for (i, row) in acc.iter().enumerate() {
                let dst = c.add(i * ldc);
                let base = if init { bv } else { _mm512_loadu_ps(dst) };
                _mm512_storeu_ps(dst, _mm512_add_ps(base, *row));
            }
        } else {
            let mut tile = [[0.0f32; NR]; MR];
            for (t, row) in tile.iter_mut().zip(&acc) {
                _mm512_storeu_ps(t.as_mut_ptr(), *row);
            }
            store_tile(&tile, bias, c, ldc, rows, cols, init);
        }
    }
}
