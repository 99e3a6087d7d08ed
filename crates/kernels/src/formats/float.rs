//! Unquantized weights: F32 (dot with the f32 activations as they are), F16
//! (activations rounded to f16 first, as llama.cpp does, then multiplied in
//! f32) and BF16 (activations rounded to bf16, to nearest even, as llama.cpp
//! converts them, then multiplied in f32).

use crate::act::ActView;
use crate::f16::{f16_to_f32, f32_to_f16};

#[inline]
fn f32_at(c: &[u8]) -> f32 {
    f32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

pub(crate) fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (y, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *y = f32_at(c);
    }
}

pub(crate) fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (y, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

/// A bf16's value (its bits are an f32's top half).
#[inline]
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `v` rounded to bf16, to nearest even (NaNs stay NaN), as GGML does.
#[inline]
pub(crate) fn f32_to_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

pub(crate) fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (y, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

pub(crate) fn quantize_bf16(src: &[f32]) -> Vec<u8> {
    src.iter()
        .flat_map(|&v| f32_to_bf16(v).to_le_bytes())
        .collect()
}

/// One BF16 weight row against activation rows `b0..b0 + B` (bf16-rounded).
#[inline]
pub(crate) fn dot_bf16<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let n = a.cols;
    std::array::from_fn(|j| {
        let x = &a.f[(b0 + j) * n..(b0 + j + 1) * n];
        lanes_sum(n, |k| {
            bf16_to_f32(u16::from_le_bytes([w[2 * k], w[2 * k + 1]]))
                * bf16_to_f32(f32_to_bf16(x[k]))
        })
    })
}

pub(crate) fn quantize_f32(src: &[f32]) -> Vec<u8> {
    src.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn quantize_f16(src: &[f32]) -> Vec<u8> {
    src.iter()
        .flat_map(|&v| f32_to_f16(v).to_le_bytes())
        .collect()
}

/// Sums `f(k)` for k in 0..n over eight interleaved partial sums (as SIMD lanes would).
#[inline]
fn lanes_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    for k in 0..n {
        acc[k % 8] += f(k);
    }
    acc.iter().sum()
}

/// One F32 weight row against activation rows `b0..b0 + B`.
#[inline]
pub(crate) fn dot_f32<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let n = a.cols;
    std::array::from_fn(|j| {
        let x = &a.f[(b0 + j) * n..(b0 + j + 1) * n];
        lanes_sum(n, |k| f32_at(&w[4 * k..4 * k + 4]) * x[k])
    })
}

/// One F16 weight row against activation rows `b0..b0 + B` (f16-rounded).
#[inline]
pub(crate) fn dot_f16<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let n = a.cols;
    std::array::from_fn(|j| {
        let x = &a.h[(b0 + j) * n..(b0 + j + 1) * n];
        lanes_sum(n, |k| {
            f16_to_f32(u16::from_le_bytes([w[2 * k], w[2 * k + 1]])) * f16_to_f32(x[k])
        })
    })
}
