//! The weight formats: block layout, dequantization, a quantizer (for tests and
//! tools), and the portable scalar dot-product kernels against quantized
//! activations. One file per format; this file dispatches on the type.

pub(crate) mod float;
pub(crate) mod iq4_nl;
pub(crate) mod iq4_xs;
pub(crate) mod q2_k;
pub(crate) mod q3_k;
pub(crate) mod q4_0;
pub(crate) mod q4_1;
pub(crate) mod q4_k;
pub(crate) mod q5_0;
pub(crate) mod q5_1;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
pub(crate) mod q8_0;

use crate::act::{ActKind, ActView};
use gguf::GgmlType;

/// A weight type that has kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    F32,
    F16,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q6K,
    Q4_0,
    Q5_1,
    Iq4Nl,
    Q5K,
    Iq4Xs,
    Bf16,
    Q2K,
    Q3K,
}

/// Most activation rows one kernel call handles (weights are unpacked once
/// per block for all of them).
pub(crate) const MAX_B: usize = 4;

/// Most activation rows the AVX2 kernels of the 32-element block formats and
/// Q4_K handle per call (their weight unpacking is a large share of the
/// work).
pub(crate) const MAX_B_WIDE: usize = 8;

/// Most activation rows any kernel handles per call (the block formats'
/// VNNI kernels, which have 32 vector registers for their sums).
pub(crate) const MAX_B_ANY: usize = 16;

/// Computes `outs[j][r] = dot(weight row r of w, activation row b0 + j)` for
/// every row of `w` (consecutive rows of `row_bytes`) and every `j` below
/// `outs.len()` (at most [`MAX_B`], or [`MAX_B_WIDE`] for the kernels that
/// say so).
///
/// # Safety
/// The caller must ensure the CPU supports the instruction set the kernel was
/// compiled for (always true for the scalar kernels).
pub(crate) type RowsKernel =
    unsafe fn(w: &[u8], row_bytes: usize, act: &ActView<'_>, b0: usize, outs: &mut [&mut [f32]]);

/// Computes `out[b * stride + r] = dot(weight row r of w, activation row b)`
/// for every row of `w` and every `b < batch` in one call: the kernels that
/// unpack a task's weights once for all its activation rows.
///
/// # Safety
/// As [`RowsKernel`]; and `out.add(b * stride + r)` must be writable for
/// those `b` and `r`, by this call alone.
pub(crate) type ChunkKernel = unsafe fn(
    w: &[u8],
    row_bytes: usize,
    act: &ActView<'_>,
    batch: usize,
    out: *mut f32,
    stride: usize,
);

impl Format {
    pub fn of(ty: GgmlType) -> Option<Format> {
        Some(match ty {
            GgmlType::F32 => Format::F32,
            GgmlType::F16 => Format::F16,
            GgmlType::Q4_1 => Format::Q4_1,
            GgmlType::Q5_0 => Format::Q5_0,
            GgmlType::Q8_0 => Format::Q8_0,
            GgmlType::Q4_K => Format::Q4K,
            GgmlType::Q6_K => Format::Q6K,
            GgmlType::Q4_0 => Format::Q4_0,
            GgmlType::Q5_1 => Format::Q5_1,
            GgmlType::IQ4_NL => Format::Iq4Nl,
            GgmlType::Q5_K => Format::Q5K,
            GgmlType::IQ4_XS => Format::Iq4Xs,
            GgmlType::BF16 => Format::Bf16,
            GgmlType::Q2_K => Format::Q2K,
            GgmlType::Q3_K => Format::Q3K,
            _ => return None,
        })
    }

    /// The activation format this weight format takes dot products with.
    pub fn act_kind(self) -> ActKind {
        match self {
            Format::F32 | Format::Bf16 => ActKind::F32,
            Format::F16 => ActKind::F16,
            Format::Q4_1 | Format::Q5_1 => ActKind::Q8_1,
            Format::Q5_0 | Format::Q8_0 | Format::Q4_0 | Format::Iq4Nl => ActKind::Q8_0,
            Format::Q4K | Format::Q6K | Format::Q5K | Format::Iq4Xs | Format::Q2K | Format::Q3K => {
                ActKind::Q8K
            }
        }
    }

    /// `dst.len()` elements from `src` (sizes checked by the caller).
    pub fn dequantize(self, src: &[u8], dst: &mut [f32]) {
        match self {
            Format::F32 => float::dequantize_f32(src, dst),
            Format::F16 => float::dequantize_f16(src, dst),
            Format::Q4_1 => q4_1::dequantize(src, dst),
            Format::Q5_0 => q5_0::dequantize(src, dst),
            Format::Q8_0 => q8_0::dequantize(src, dst),
            Format::Q4K => q4_k::dequantize(src, dst),
            Format::Q6K => q6_k::dequantize(src, dst),
            Format::Q4_0 => q4_0::dequantize(src, dst),
            Format::Q5_1 => q5_1::dequantize(src, dst),
            Format::Iq4Nl => iq4_nl::dequantize(src, dst),
            Format::Q5K => q5_k::dequantize(src, dst),
            Format::Iq4Xs => iq4_xs::dequantize(src, dst),
            Format::Bf16 => float::dequantize_bf16(src, dst),
            Format::Q2K => q2_k::dequantize(src, dst),
            Format::Q3K => q3_k::dequantize(src, dst),
        }
    }

    /// Quantizes a row (length a multiple of the block size, checked by the caller).
    pub fn quantize(self, src: &[f32]) -> Vec<u8> {
        match self {
            Format::F32 => float::quantize_f32(src),
            Format::F16 => float::quantize_f16(src),
            Format::Q4_1 => q4_1::quantize(src),
            Format::Q5_0 => q5_0::quantize(src),
            Format::Q8_0 => crate::act::quantize_q8_0_bytes(src),
            Format::Q4K => q4_k::quantize(src),
            Format::Q6K => q6_k::quantize(src),
            Format::Q4_0 => q4_0::quantize(src),
            Format::Q5_1 => q5_1::quantize(src),
            Format::Iq4Nl => iq4_nl::quantize(src),
            Format::Q5K => q5_k::quantize(src),
            Format::Iq4Xs => iq4_xs::quantize(src),
            Format::Bf16 => float::quantize_bf16(src),
            Format::Q2K => q2_k::quantize(src),
            Format::Q3K => q3_k::quantize(src),
        }
    }

    /// The portable kernel.
    pub fn scalar_kernel(self) -> RowsKernel {
        match self {
            Format::F32 => rows_scalar::<{ Format::F32 as u8 }>,
            Format::F16 => rows_scalar::<{ Format::F16 as u8 }>,
            Format::Q4_1 => rows_scalar::<{ Format::Q4_1 as u8 }>,
            Format::Q5_0 => rows_scalar::<{ Format::Q5_0 as u8 }>,
            Format::Q8_0 => rows_scalar::<{ Format::Q8_0 as u8 }>,
            Format::Q4K => rows_scalar::<{ Format::Q4K as u8 }>,
            Format::Q6K => rows_scalar::<{ Format::Q6K as u8 }>,
            Format::Q4_0 => rows_scalar::<{ Format::Q4_0 as u8 }>,
            Format::Q5_1 => rows_scalar::<{ Format::Q5_1 as u8 }>,
            Format::Iq4Nl => rows_scalar::<{ Format::Iq4Nl as u8 }>,
            Format::Q5K => rows_scalar::<{ Format::Q5K as u8 }>,
            Format::Iq4Xs => rows_scalar::<{ Format::Iq4Xs as u8 }>,
            Format::Bf16 => rows_scalar::<{ Format::Bf16 as u8 }>,
            Format::Q2K => rows_scalar::<{ Format::Q2K as u8 }>,
            Format::Q3K => rows_scalar::<{ Format::Q3K as u8 }>,
        }
    }
}

/// One weight row against `B` activation rows, portable code.
#[inline]
fn dot_scalar<const F: u8, const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    const F32: u8 = Format::F32 as u8;
    const F16: u8 = Format::F16 as u8;
    const Q4_1: u8 = Format::Q4_1 as u8;
    const Q5_0: u8 = Format::Q5_0 as u8;
    const Q8_0: u8 = Format::Q8_0 as u8;
    const Q4K: u8 = Format::Q4K as u8;
    const Q6K: u8 = Format::Q6K as u8;
    const Q4_0: u8 = Format::Q4_0 as u8;
    const Q5_1: u8 = Format::Q5_1 as u8;
    const IQ4NL: u8 = Format::Iq4Nl as u8;
    const Q5K: u8 = Format::Q5K as u8;
    const BF16: u8 = Format::Bf16 as u8;
    const Q2K: u8 = Format::Q2K as u8;
    const Q3K: u8 = Format::Q3K as u8;
    match F {
        F32 => float::dot_f32::<B>(w, a, b0),
        F16 => float::dot_f16::<B>(w, a, b0),
        Q4_1 => q4_1::dot::<B>(w, a, b0),
        Q5_0 => q5_0::dot::<B>(w, a, b0),
        Q8_0 => q8_0::dot::<B>(w, a, b0),
        Q4K => q4_k::dot::<B>(w, a, b0),
        Q6K => q6_k::dot::<B>(w, a, b0),
        Q4_0 => q4_0::dot::<B>(w, a, b0),
        Q5_1 => q5_1::dot::<B>(w, a, b0),
        IQ4NL => iq4_nl::dot::<B>(w, a, b0),
        Q5K => q5_k::dot::<B>(w, a, b0),
        BF16 => float::dot_bf16::<B>(w, a, b0),
        Q2K => q2_k::dot::<B>(w, a, b0),
        Q3K => q3_k::dot::<B>(w, a, b0),
        _ => iq4_xs::dot::<B>(w, a, b0),
    }
}

/// One weight row of a signed 32-element block format (`block` bytes per
/// block, `values` unpacking one, `f16 d` first) against Q8_0 activation
/// rows `b0..b0 + B`: per block the integer sum, scaled by `d_w * d_a`.
#[inline]
pub(crate) fn dot_signed32<const B: usize>(
    w: &[u8],
    block: usize,
    values: fn(&[u8]) -> [i8; 32],
    a: &ActView<'_>,
    b0: usize,
) -> [f32; B] {
    let nb = a.cols / 32;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let b = b0 + j;
        let qa = a.qs_row(b);
        let da = &a.d[b * nb..(b + 1) * nb];
        let mut sum = 0.0f32;
        for (i, blk) in w.chunks_exact(block).enumerate() {
            let y = &qa[i * 32..i * 32 + 32];
            let sumi: i32 = values(blk)
                .iter()
                .zip(y)
                .map(|(&q, &v)| i32::from(q) * i32::from(v))
                .sum();
            sum += sumi as f32 * (crate::f16::read_f16(&blk[0..2]) * da[i]);
        }
        *o = sum;
    }
    out
}

/// [`RowsKernel`] for the portable path; safe to call on any CPU.
unsafe fn rows_scalar<const F: u8>(
    w: &[u8],
    row_bytes: usize,
    act: &ActView<'_>,
    b0: usize,
    outs: &mut [&mut [f32]],
) {
    assert!(
        outs.len() <= MAX_B,
        "at most {MAX_B} activation rows per call"
    );
    match outs.len() {
        1 => rows_b::<F, 1>(w, row_bytes, act, b0, outs),
        2 => rows_b::<F, 2>(w, row_bytes, act, b0, outs),
        3 => rows_b::<F, 3>(w, row_bytes, act, b0, outs),
        _ => rows_b::<F, 4>(w, row_bytes, act, b0, outs),
    }
}

fn rows_b<const F: u8, const B: usize>(
    w: &[u8],
    row_bytes: usize,
    act: &ActView<'_>,
    b0: usize,
    outs: &mut [&mut [f32]],
) {
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let v = dot_scalar::<F, B>(row, act, b0);
        for (o, v) in outs.iter_mut().zip(v) {
            o[r] = v;
        }
    }
}
