//! Slow, obviously-correct scalar versions of everything the fast kernels do,
//! written element by element straight from GGML's block layouts (not sharing
//! code with the kernels), for tests to compare against.
//!
//! [`matmul`] quantizes activations with [`quantize_act`] into GGML's byte
//! layouts and takes [`vec_dot`] per output element: integer sums are the same
//! as the fast kernels', only the float summation order differs.

use crate::f16::{f16_to_f32, f32_to_f16};
use crate::KernelError;
use gguf::{GgmlType, QK_K};

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The activation type llama.cpp pairs with weights of type `ty`.
pub fn vec_dot_type(ty: GgmlType) -> Option<GgmlType> {
    Some(match ty {
        GgmlType::F32 => GgmlType::F32,
        GgmlType::F16 => GgmlType::F16,
        GgmlType::BF16 => GgmlType::BF16,
        GgmlType::Q4_1 | GgmlType::Q5_1 => GgmlType::Q8_1,
        GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::IQ4_NL => GgmlType::Q8_0,
        GgmlType::Q4_K
        | GgmlType::Q6_K
        | GgmlType::Q5_K
        | GgmlType::IQ4_XS
        | GgmlType::Q2_K
        | GgmlType::Q3_K => GgmlType::Q8_K,
        _ => return None,
    })
}

/// Q4_K's 6-bit (scale, min) of sub-block `j` from the 12 packed bytes `s`.
fn k4_scale_min(s: &[u8], j: usize) -> (i32, i32) {
    let (sc, m) = if j < 4 {
        (s[j] & 0x3f, s[j + 4] & 0x3f)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    };
    (i32::from(sc), i32::from(m))
}

/// Q3_K's signed 6-bit scale of 16-weight group `j`: low 4 bits from the
/// first 8 bytes (low nibbles for groups 0-7, high for 8-15), high 2 bits
/// from byte `8 + j % 4` at bit `2 * (j / 4)`, stored + 32.
fn q3_k_scale(blk: &[u8], j: usize) -> i32 {
    let s = &blk[96..108];
    let low = if j < 8 { s[j] & 0x0f } else { s[j - 8] >> 4 };
    let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    i32::from(low | (high << 4)) - 32
}

/// IQ4_XS's signed 6-bit scale (`ls - 32`) of sub-block `ib`.
fn iq4_xs_scale(blk: &[u8], ib: usize) -> i32 {
    let high = (u16::from_le_bytes([blk[2], blk[3]]) >> (2 * ib)) & 3;
    let low = (blk[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f;
    (i32::from(low) | (i32::from(high) << 4)) - 32
}

/// Integer quant of element `e` (within its block `blk`) for the integer
/// formats: Q4_1 and Q4_K give 0..16, Q5_0 -16..16, Q8_0 -128..128, Q6_K -32..32.
fn quant_at(ty: GgmlType, blk: &[u8], e: usize) -> i32 {
    match ty {
        GgmlType::Q4_1 => {
            let b = blk[4 + e % 16];
            i32::from(if e < 16 { b & 0x0f } else { b >> 4 })
        }
        GgmlType::Q5_0 => {
            let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
            let b = blk[6 + e % 16];
            let low = i32::from(if e < 16 { b & 0x0f } else { b >> 4 });
            low + 16 * ((qh >> e) & 1) as i32 - 16
        }
        GgmlType::Q8_0 => i32::from(blk[2 + e] as i8),
        GgmlType::Q4_0 | GgmlType::IQ4_NL => {
            let b = blk[2 + e % 16];
            let nib = if e < 16 { b & 0x0f } else { b >> 4 };
            if ty == GgmlType::Q4_0 {
                i32::from(nib) - 8
            } else {
                const LEVELS: [i32; 16] = [
                    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                ];
                LEVELS[usize::from(nib)]
            }
        }
        GgmlType::Q5_1 => {
            let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
            let b = blk[8 + e % 16];
            let low = i32::from(if e < 16 { b & 0x0f } else { b >> 4 });
            low + 16 * ((qh >> e) & 1) as i32
        }
        GgmlType::Q4_K => {
            let b = blk[16 + 32 * (e / 64) + e % 32];
            i32::from(if e % 64 < 32 { b & 0x0f } else { b >> 4 })
        }
        GgmlType::Q5_K => {
            let (g, r) = (e / 64, e % 64);
            let b = blk[48 + 32 * g + r % 32];
            let low = i32::from(if r < 32 { b & 0x0f } else { b >> 4 });
            let bit = 2 * g + usize::from(r >= 32);
            low + 16 * i32::from((blk[16 + r % 32] >> bit) & 1)
        }
        GgmlType::IQ4_XS => {
            const LEVELS: [i32; 16] = [
                -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
            ];
            let (ib, r) = (e / 32, e % 32);
            let b = blk[8 + 16 * ib + r % 16];
            LEVELS[usize::from(if r < 16 { b & 0x0f } else { b >> 4 })]
        }
        GgmlType::Q2_K => {
            let (h, r) = (e / 128, e % 128);
            i32::from((blk[16 + 32 * h + r % 32] >> (2 * (r / 32))) & 3)
        }
        GgmlType::Q3_K => {
            let (h, r) = (e / 128, e % 128);
            let low = i32::from((blk[32 + 32 * h + r % 32] >> (2 * (r / 32))) & 3);
            let high = (blk[r % 32] >> (4 * h + r / 32)) & 1;
            low - if high == 1 { 0 } else { 4 }
        }
        GgmlType::Q6_K => {
            let (n, r) = (e / 128, e % 128);
            let (quarter, l) = (r / 32, r % 32);
            let lb = blk[64 * n + l + 32 * (quarter & 1)];
            let low = if quarter < 2 { lb & 0x0f } else { lb >> 4 };
            let high = (blk[128 + 32 * n + l] >> (2 * quarter)) & 3;
            i32::from(low | (high << 4)) - 32
        }
        _ => 0,
    }
}

/// Dequantizes a row element by element.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    crate::check_row(ty, src.len(), dst.len())?;
    let (bs, ts) = (ty.block_size(), ty.type_size());
    for (e, y) in dst.iter_mut().enumerate() {
        let blk = &src[e / bs * ts..(e / bs + 1) * ts];
        let i = e % bs;
        let q = quant_at(ty, blk, i) as f32;
        *y = match ty {
            GgmlType::F32 => f32_at(src, 4 * e),
            GgmlType::F16 => f16_at(src, 2 * e),
            GgmlType::BF16 => {
                f32::from_bits(u32::from(u16::from_le_bytes([src[2 * e], src[2 * e + 1]])) << 16)
            }
            GgmlType::Q4_1 => q * f16_at(blk, 0) + f16_at(blk, 2),
            GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::IQ4_NL => {
                q * f16_at(blk, 0)
            }
            GgmlType::Q5_1 => q * f16_at(blk, 0) + f16_at(blk, 2),
            GgmlType::Q4_K => {
                let (sc, m) = k4_scale_min(&blk[4..16], i / 32);
                (f16_at(blk, 0) * sc as f32) * q - f16_at(blk, 2) * m as f32
            }
            GgmlType::Q6_K => f16_at(blk, 208) * f32::from(blk[192 + i / 16] as i8) * q,
            GgmlType::Q5_K => {
                let (sc, m) = k4_scale_min(&blk[4..16], i / 32);
                (f16_at(blk, 0) * sc as f32) * q - f16_at(blk, 2) * m as f32
            }
            GgmlType::IQ4_XS => (f16_at(blk, 0) * iq4_xs_scale(blk, i / 32) as f32) * q,
            GgmlType::Q2_K => {
                let sc = blk[i / 16];
                f16_at(blk, 80) * f32::from(sc & 15) * q - f16_at(blk, 82) * f32::from(sc >> 4)
            }
            GgmlType::Q3_K => f16_at(blk, 108) * q3_k_scale(blk, i / 16) as f32 * q,
            _ => return Err(KernelError::UnsupportedType(ty)),
        };
    }
    Ok(())
}

/// Rounds to nearest, ties to even, by GGML's float trick (|v| < 2^22).
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// Quantizes activations to Q8_0, Q8_1 or Q8_K in GGML's byte layout, the
/// way llama.cpp's x86 CPU backend does; F32 and F16 give their raw bytes.
pub fn quantize_act(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, KernelError> {
    crate::check_row(ty, ty.row_bytes(x.len()).unwrap_or(usize::MAX), x.len())?;
    let mut out = Vec::new();
    match ty {
        GgmlType::F32 => x.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => x
            .iter()
            .for_each(|&v| out.extend(f32_to_f16(v).to_le_bytes())),
        GgmlType::BF16 => x.iter().for_each(|&v| {
            // Round to nearest even (finite inputs).
            let u = v.to_bits();
            let h = ((u + 0x7fff + ((u >> 16) & 1)) >> 16) as u16;
            out.extend(h.to_le_bytes());
        }),
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            for blk in x.chunks(32) {
                let amax = blk.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
                let d = amax / 127.0;
                let id = if amax == 0.0 { 0.0 } else { 127.0 / amax };
                let q: Vec<i32> = blk.iter().map(|&v| nearest_int(v * id)).collect();
                out.extend(f32_to_f16(d).to_le_bytes());
                if ty == GgmlType::Q8_1 {
                    out.extend(f32_to_f16(d * q.iter().sum::<i32>() as f32).to_le_bytes());
                }
                out.extend(q.iter().map(|&v| v as i8 as u8));
            }
        }
        GgmlType::Q8_K => {
            for blk in x.chunks(QK_K) {
                let max = blk
                    .iter()
                    .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let (d, q): (f32, Vec<i32>) = if max == 0.0 {
                    (0.0, vec![0; QK_K])
                } else {
                    let iscale = -127.0 / max;
                    (
                        1.0 / iscale,
                        blk.iter()
                            .map(|&v| nearest_int(iscale * v).min(127))
                            .collect(),
                    )
                };
                out.extend(d.to_le_bytes());
                out.extend(q.iter().map(|&v| v as i8 as u8));
                for s in q.chunks(16) {
                    out.extend((s.iter().sum::<i32>() as i16).to_le_bytes());
                }
            }
        }
        _ => return Err(KernelError::UnsupportedType(ty)),
    }
    Ok(out)
}

/// Dot product of one weight row (`n` elements of `ty`) with one activation
/// row already quantized to `vec_dot_type(ty)` (GGML layout), block by block.
pub fn vec_dot(ty: GgmlType, w: &[u8], act: &[u8], n: usize) -> Result<f32, KernelError> {
    let at = vec_dot_type(ty).ok_or(KernelError::UnsupportedType(ty))?;
    crate::check_row(ty, w.len(), n)?;
    crate::check_row(at, act.len(), n)?;
    if ty == GgmlType::F32 || ty == GgmlType::F16 || ty == GgmlType::BF16 {
        let mut wf = vec![0.0; n];
        let mut xf = vec![0.0; n];
        dequantize_row(ty, w, &mut wf)?;
        dequantize_row(at, act, &mut xf)?;
        return Ok(wf
            .iter()
            .zip(&xf)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum::<f64>() as f32);
    }
    let (bs, ts, ats) = (ty.block_size(), ty.type_size(), at.type_size());
    let mut sum = 0.0f32;
    for (blk, y) in w.chunks_exact(ts).zip(act.chunks_exact(ats)) {
        // Activation quants start after the scale (and Q8_1's sum).
        let yq = |e: usize| -> i32 {
            let off = match at {
                GgmlType::Q8_1 => 4,
                GgmlType::Q8_K => 4,
                _ => 2,
            };
            i32::from(y[off + e] as i8)
        };
        let dot_range =
            |r: std::ops::Range<usize>| -> i32 { r.map(|e| quant_at(ty, blk, e) * yq(e)).sum() };
        match ty {
            GgmlType::Q4_1 | GgmlType::Q5_1 => {
                let sumi = dot_range(0..bs);
                sum += f16_at(blk, 0) * f16_at(y, 0) * sumi as f32 + f16_at(blk, 2) * f16_at(y, 2);
            }
            GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::IQ4_NL => {
                sum += dot_range(0..bs) as f32 * (f16_at(blk, 0) * f16_at(y, 0));
            }
            GgmlType::Q4_K => {
                let (mut isum, mut msum) = (0i32, 0i32);
                for j in 0..8 {
                    let (sc, m) = k4_scale_min(&blk[4..16], j);
                    isum += sc * dot_range(32 * j..32 * j + 32);
                    msum += m * (32 * j..32 * j + 32).map(yq).sum::<i32>();
                }
                let yd = f32_at(y, 0);
                sum += yd * f16_at(blk, 0) * isum as f32 - yd * f16_at(blk, 2) * msum as f32;
            }
            GgmlType::Q5_K => {
                let (mut isum, mut msum) = (0i32, 0i32);
                for j in 0..8 {
                    let (sc, m) = k4_scale_min(&blk[4..16], j);
                    isum += sc * dot_range(32 * j..32 * j + 32);
                    msum += m * (32 * j..32 * j + 32).map(yq).sum::<i32>();
                }
                let yd = f32_at(y, 0);
                sum += yd * f16_at(blk, 0) * isum as f32 - yd * f16_at(blk, 2) * msum as f32;
            }
            GgmlType::IQ4_XS => {
                let isum: i32 = (0..8)
                    .map(|j| iq4_xs_scale(blk, j) * dot_range(32 * j..32 * j + 32))
                    .sum();
                sum += f16_at(blk, 0) * f32_at(y, 0) * isum as f32;
            }
            GgmlType::Q2_K => {
                let (mut isum, mut msum) = (0i32, 0i32);
                for (j, &sc) in blk[..16].iter().enumerate() {
                    isum += i32::from(sc & 15) * dot_range(16 * j..16 * j + 16);
                    msum += i32::from(sc >> 4) * (16 * j..16 * j + 16).map(yq).sum::<i32>();
                }
                let yd = f32_at(y, 0);
                sum += yd * f16_at(blk, 80) * isum as f32 - yd * f16_at(blk, 82) * msum as f32;
            }
            GgmlType::Q3_K => {
                let isum: i32 = (0..16)
                    .map(|j| q3_k_scale(blk, j) * dot_range(16 * j..16 * j + 16))
                    .sum();
                sum += f16_at(blk, 108) * f32_at(y, 0) * isum as f32;
            }
            GgmlType::Q6_K => {
                let isum: i32 = (0..16)
                    .map(|j| i32::from(blk[192 + j] as i8) * dot_range(16 * j..16 * j + 16))
                    .sum();
                sum += f16_at(blk, 208) * f32_at(y, 0) * isum as f32;
            }
            _ => return Err(KernelError::UnsupportedType(ty)),
        }
    }
    Ok(sum)
}

/// `out[b * rows + r]` = [`vec_dot`] of weight row `r` with activation row `b`
/// quantized by [`quantize_act`]: what [`crate::matmul`] computes, slowly.
pub fn matmul(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    batch: usize,
) -> Result<Vec<f32>, KernelError> {
    let at = vec_dot_type(ty).ok_or(KernelError::UnsupportedType(ty))?;
    let rb = ty.row_bytes(cols).ok_or(KernelError::BadRowLength {
        ty,
        cols,
        block: ty.block_size(),
    })?;
    crate::check_row(ty, w.len(), rows * cols)?;
    check_len(x.len(), batch * cols)?;
    let mut out = vec![0.0; batch * rows];
    for (b, xr) in x.chunks_exact(cols).enumerate() {
        let q = quantize_act(at, xr)?;
        for r in 0..rows {
            out[b * rows + r] = vec_dot(ty, &w[r * rb..(r + 1) * rb], &q, cols)?;
        }
    }
    Ok(out)
}

/// The same product with the dequantized weights and unquantized activations
/// (f64 sums): the "true" answer the quantized ones approximate.
pub fn matmul_f32(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    batch: usize,
) -> Result<Vec<f32>, KernelError> {
    crate::check_row(ty, w.len(), rows * cols)?;
    check_len(x.len(), batch * cols)?;
    let mut wf = vec![0.0f32; rows * cols];
    dequantize_row(ty, w, &mut wf)?;
    let mut out = vec![0.0; batch * rows];
    for (b, xr) in x.chunks_exact(cols).enumerate() {
        for (r, wr) in wf.chunks_exact(cols).enumerate() {
            out[b * rows + r] = wr
                .iter()
                .zip(xr)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>() as f32;
        }
    }
    Ok(out)
}

fn check_len(got: usize, expected: usize) -> Result<(), KernelError> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::SizeMismatch { expected, got })
    }
}
