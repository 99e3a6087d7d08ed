//! Unquantized weights: F32 (dot with the f32 activations as they are) and F16
//! (activations rounded to f16 first, as llama.cpp does, then multiplied in f32).

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
