//! Activation rows quantized to a weight type's "vec-dot type", kept as
//! structure-of-arrays (quants, scales and sums in separate arrays, scales
//! already widened to `f32`) so the kernels never convert halves in the loop.
//!
//! The quantizers mirror llama.cpp's x86 CPU backend bit for bit: Q8_0 and
//! Q8_1 scale by `127 / amax` and round half to even (the AVX path), Q8_K
//! follows GGML's reference (`-127 / max`, round half to even, `d = 1/iscale`).

use crate::f16::{f16_to_f32, f32_to_f16};
use crate::lines::LineBuf;
use crate::RowOrder;
use gguf::QK_K;

/// The activation format a weight type pairs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActKind {
    Q8_0,
    Q8_1,
    Q8K,
    F16,
    F32,
}

/// Reusable storage for quantized activation rows.
#[derive(Default)]
pub(crate) struct ActBuf {
    /// Quants, each row on a cache line when `cols` is a multiple of 64.
    qs: LineBuf<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    bsums: Vec<i16>,
    h: Vec<u16>,
}

/// Borrowed quantized activation rows; row `b` of the quants starts at
/// `b * cols`, its scales at `b * cols / block`, its Q8_K block sums at
/// `b * cols / 16`.
#[derive(Clone, Copy)]
pub(crate) struct ActView<'a> {
    pub cols: usize,
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub bsums: &'a [i16],
    pub h: &'a [u16],
    pub f: &'a [f32],
    /// Each row's summation order (see [`RowOrder`]); rows past its end
    /// take the default.
    pub orders: &'a [RowOrder],
}

impl ActView<'_> {
    /// The quants of row `b`.
    #[inline]
    pub fn qs_row(&self, b: usize) -> &[i8] {
        &self.qs[b * self.cols..(b + 1) * self.cols]
    }

    /// Row `b`'s summation order.
    #[inline]
    pub fn order(&self, b: usize) -> RowOrder {
        self.orders.get(b).copied().unwrap_or_default()
    }
}

impl ActBuf {
    /// Sizes the buffers for `batch` rows of `cols` in `kind` (never shrinks).
    pub fn prepare(&mut self, kind: ActKind, cols: usize, batch: usize) {
        let n = cols * batch;
        let grow = |len: usize, want: usize| want.saturating_sub(len);
        match kind {
            ActKind::Q8_0 | ActKind::Q8_1 | ActKind::Q8K => {
                let blk = if kind == ActKind::Q8K { QK_K } else { 32 };
                self.qs.grow_to(n);
                self.d
                    .extend(std::iter::repeat_n(0.0, grow(self.d.len(), n / blk)));
                if kind == ActKind::Q8_1 {
                    self.s
                        .extend(std::iter::repeat_n(0.0, grow(self.s.len(), n / blk)));
                }
                if kind == ActKind::Q8K {
                    let nsum = n / 16;
                    self.bsums
                        .extend(std::iter::repeat_n(0, grow(self.bsums.len(), nsum)));
                }
            }
            ActKind::F16 => self.h.extend(std::iter::repeat_n(0, grow(self.h.len(), n))),
            ActKind::F32 => {}
        }
    }

    /// Mutable destinations for rows `0..batch`, each its own (disjoint)
    /// slices, so that different threads may fill different rows.
    pub fn rows_mut(
        &mut self,
        kind: ActKind,
        cols: usize,
        batch: usize,
    ) -> impl Iterator<Item = RowMut<'_>> {
        let blk = if kind == ActKind::Q8K { QK_K } else { 32 };
        let nb = cols / blk;
        let (mut qs, mut d, mut s, mut bsums, mut h) = (
            self.qs.as_mut_slice(),
            &mut self.d[..],
            &mut self.s[..],
            &mut self.bsums[..],
            &mut self.h[..],
        );
        (0..batch).map(move |_| RowMut {
            qs: take(&mut qs, cols),
            d: take(&mut d, nb),
            s: take(&mut s, nb),
            bsums: take(&mut bsums, cols / 16),
            h: take(&mut h, cols),
        })
    }

    /// A view of the rows (`f` is the unquantized input, used by F32;
    /// `orders` the rows' summation orders).
    pub fn view<'a>(&'a self, cols: usize, f: &'a [f32], orders: &'a [RowOrder]) -> ActView<'a> {
        ActView {
            cols,
            qs: self.qs.as_slice(),
            d: &self.d,
            s: &self.s,
            bsums: &self.bsums,
            h: &self.h,
            f,
            orders,
        }
    }
}

/// The first `n` elements of `*v`, leaving the rest in `*v`; empty when `*v`
/// is shorter (a part not in use).
fn take<'a, T>(v: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    if v.len() < n {
        return &mut [];
    }
    let (head, tail) = std::mem::take(v).split_at_mut(n);
    *v = tail;
    head
}

/// One activation row's destinations.
pub(crate) struct RowMut<'a> {
    pub qs: &'a mut [i8],
    pub d: &'a mut [f32],
    pub s: &'a mut [f32],
    pub bsums: &'a mut [i16],
    pub h: &'a mut [u16],
}

impl RowMut<'_> {
    /// The same destinations, borrowed for a shorter time.
    pub fn reborrow(&mut self) -> RowMut<'_> {
        RowMut {
            qs: self.qs,
            d: self.d,
            s: self.s,
            bsums: self.bsums,
            h: self.h,
        }
    }
}

/// Quantizes one row `x` into `dst` according to `kind`.
pub(crate) fn quantize_into(kind: ActKind, x: &[f32], dst: RowMut<'_>) {
    match kind {
        ActKind::Q8_0 => {
            for ((xb, qb), d) in x
                .chunks_exact(32)
                .zip(dst.qs.chunks_exact_mut(32))
                .zip(dst.d.iter_mut())
            {
                let (dh, _) = q8_block(xb, qb);
                *d = f16_to_f32(dh);
            }
        }
        ActKind::Q8_1 => {
            let it = x.chunks_exact(32).zip(dst.qs.chunks_exact_mut(32));
            for ((xb, qb), (d, s)) in it.zip(dst.d.iter_mut().zip(dst.s.iter_mut())) {
                let (dh, sh) = q8_block(xb, qb);
                *d = f16_to_f32(dh);
                *s = f16_to_f32(sh);
            }
        }
        ActKind::Q8K => {
            let it = x.chunks_exact(QK_K).zip(dst.qs.chunks_exact_mut(QK_K));
            for ((xb, qb), (d, bs)) in it.zip(dst.d.iter_mut().zip(dst.bsums.chunks_exact_mut(16)))
            {
                *d = q8k_block(xb, qb, bs);
            }
        }
        ActKind::F16 => {
            for (h, &v) in dst.h.iter_mut().zip(x) {
                *h = f32_to_f16(v);
            }
        }
        ActKind::F32 => {}
    }
}

/// Rounds half to even for |v| < 2^22 (as GGML's `nearest_int`): adding
/// 1.5 * 2^23 leaves the rounded integer in the low mantissa bits. Unlike
/// `round_ties_even` this needs no SSE4.1 and vectorizes.
#[inline]
fn nearest_small(v: f32) -> i32 {
    // Keeps the trick in range; NaN input gives some arbitrary (in-range) value.
    let v = v.clamp(-4_194_303.0, 4_194_303.0);
    ((v + 12_582_912.0).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// Quantizes 32 values to 8 bits as llama.cpp's AVX path does; returns the
/// f16 bits of the scale and of `scale * sum(q)` (the Q8_1 sum).
#[inline]
fn q8_block(x: &[f32], q: &mut [i8]) -> (u16, u16) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(x) {
        // |v * id| <= 127 up to rounding, so the clamp only guards NaN/inf input.
        let r = nearest_small(v * id);
        *q = r.clamp(-128, 127) as i8;
        sum += i32::from(*q);
    }
    (f32_to_f16(d), f32_to_f16(d * sum as f32))
}

/// Quantizes 256 values to Q8_K (GGML reference); fills the 16 block sums and
/// returns the scale.
#[inline]
fn q8k_block(x: &[f32], q: &mut [i8], bsums: &mut [i16]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        q.fill(0);
        bsums.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, &v) in q.iter_mut().zip(x) {
        let r = nearest_small(iscale * v);
        *q = r.min(127) as i8;
    }
    for (s, qb) in bsums.iter_mut().zip(q.chunks_exact(16)) {
        *s = qb.iter().map(|&v| i16::from(v)).sum();
    }
    1.0 / iscale
}

/// Q8_0 bytes in GGML's layout (`f16 d; i8 qs[32]`).
pub(crate) fn quantize_q8_0_bytes(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 34);
    let mut q = [0i8; 32];
    for xb in x.chunks_exact(32) {
        let (dh, _) = q8_block(xb, &mut q);
        out.extend_from_slice(&dh.to_le_bytes());
        out.extend(q.iter().map(|&v| v as u8));
    }
    out
}

/// Q8_1 bytes in GGML's layout (`f16 d; f16 s; i8 qs[32]`).
pub(crate) fn quantize_q8_1_bytes(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 36);
    let mut q = [0i8; 32];
    for xb in x.chunks_exact(32) {
        let (dh, sh) = q8_block(xb, &mut q);
        out.extend_from_slice(&dh.to_le_bytes());
        out.extend_from_slice(&sh.to_le_bytes());
        out.extend(q.iter().map(|&v| v as u8));
    }
    out
}

/// Q8_K bytes in GGML's layout (`f32 d; i8 qs[256]; i16 bsums[16]`).
pub(crate) fn quantize_q8_k_bytes(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK_K * 292);
    let mut q = [0i8; QK_K];
    let mut bs = [0i16; 16];
    for xb in x.chunks_exact(QK_K) {
        let d = q8k_block(xb, &mut q, &mut bs);
        out.extend_from_slice(&d.to_le_bytes());
        out.extend(q.iter().map(|&v| v as u8));
        for s in bs {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
    out
}
