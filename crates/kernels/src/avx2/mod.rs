//! AVX2 + FMA + F16C kernels (x86_64), chosen at run time by [`crate::Isa`].
//!
//! They follow the structure of llama.cpp's AVX2 dot products (same integer
//! sums, the same per-block FMA accumulation into eight float lanes and the
//! same final horizontal sums), so results match its CPU backend to the last
//! bit. Each kernel takes up to [`MAX_B`] (the block formats and Q4_K:
//! [`MAX_B_WIDE`]) activation rows at once and unpacks each weight block
//! only once for all of them. The block formats', Q4_K's and Q6_K's
//! several-row kernels also come in an AVX512-VNNI form with the same bits,
//! compiled for AVX512-VL's 32 registers (the block formats then take
//! [`MAX_B_ANY`] rows, Q6_K [`MAX_B_WIDE`]), and in an AVX-VNNI form (the
//! VEX-encoded products, AVX2's sixteen registers and row counts) for CPUs
//! with AVX-VNNI but no AVX-512.
//!
//! Every function here is `#[target_feature(enable = "avx2,fma,f16c")]` (or
//! more); calling one is only sound after [`crate::Isa::Avx2`] (and the
//! extra features) were detected.

// The kernels keep B parallel accumulator arrays indexed by activation row;
// index loops read better there than zipped iterators.
#![allow(clippy::needless_range_loop)]

/// Evaluates `$body` with `$w` a constant equal to the group width `$n`
/// (1 to 7; anything larger reads as [`MAX_B_WIDE`], the widest group), so
/// a kernel generic over its number of activation rows is called at the
/// width of the group in hand.
macro_rules! at_width {
    ($n:expr, $w:ident => $body:expr) => {
        match $n {
            1 => {
                const $w: usize = 1;
                $body
            }
            2 => {
                const $w: usize = 2;
                $body
            }
            3 => {
                const $w: usize = 3;
                $body
            }
            4 => {
                const $w: usize = 4;
                $body
            }
            5 => {
                const $w: usize = 5;
                $body
            }
            6 => {
                const $w: usize = 6;
                $body
            }
            7 => {
                const $w: usize = 7;
                $body
            }
            _ => {
                const $w: usize = $crate::formats::MAX_B_WIDE;
                $body
            }
        }
    };
}

pub(crate) mod attn;
mod batch;
mod blocks;
mod float;
pub(crate) mod gemm;
pub(crate) mod glu;
mod kpacked;
mod kquants;
mod lowbit;
mod packed;
mod packed16;
mod single;
mod superblocks;

use crate::act::ActView;
use crate::formats::{ChunkKernel, Format, RowsKernel, MAX_B, MAX_B_ANY, MAX_B_WIDE};
use crate::lines::LineBuf;
use std::arch::x86_64::*;

/// The AVX2 kernel for `format` and the most activation rows it takes per call.
pub(crate) fn kernel(format: Format) -> (RowsKernel, usize) {
    kernel_with(format, Extensions::detect())
}

/// The kernel for `format` that takes all of a task's activation rows in
/// one call (unpacking its weights once), where it measured faster: on
/// plain AVX2 for the block formats (Q8_0 keeping only its scales
/// unpacked) and the K-quants, and for Q6_K on AVX-512 as well. AVX-VNNI keeps its several-row drivers
/// (not measured packed: the machine here does not offer AVX-VNNI).
pub(crate) fn chunk_kernel(format: Format) -> Option<ChunkKernel> {
    let ext = Extensions::detect();
    let k: ChunkKernel = match format {
        // Faster than the AVX-512 several-row Q6_K kernel too (1.6x at
        // batch 16-512); not than its Q4_K one (VNNI fuses the scaling).
        Format::Q6K if ext != Extensions::AvxVnni => kpacked::q6_k_rows,
        _ if ext != Extensions::None => return None,
        Format::Q4K => kpacked::q4_k_rows,
        Format::Q4_1 => packed::rows::<blocks::Q4_1>,
        Format::Q5_0 => packed::rows::<blocks::Q5_0>,
        Format::Q8_0 => packed::rows::<blocks::Q8_0>,
        Format::Q4_0 => packed::rows::<blocks::Q4_0>,
        Format::Q5_1 => packed::rows::<blocks::Q5_1>,
        Format::Iq4Nl => packed::rows::<blocks::Iq4Nl>,
        _ => return None,
    };
    Some(k)
}

/// The instruction-set extensions past AVX2 that the block formats'
/// several-rows kernels can use (each gives the same bits); the value
/// indexes their kernel tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extensions {
    /// AVX2, FMA and F16C only.
    None = 0,
    /// AVX512-VNNI in 256-bit registers (with AVX512-VL, and AVX512-BW's
    /// byte masks, which every CPU with VNNI has).
    Vnni = 1,
    /// AVX-VNNI: the same products in their VEX encoding, with AVX2's
    /// sixteen registers and no byte masks (Intel client CPUs since Alder
    /// Lake).
    AvxVnni = 2,
}

impl Extensions {
    /// The extensions of [`crate::Level::active`] (the best this CPU has,
    /// unless `PARLANCE_KERNELS` caps it).
    fn detect() -> Extensions {
        match crate::Level::active() {
            crate::Level::Avx512 => Extensions::Vnni,
            crate::Level::AvxVnni => Extensions::AvxVnni,
            _ => Extensions::None,
        }
    }
}

/// [`kernel`] for a chosen level of extensions.
fn kernel_with(format: Format, ext: Extensions) -> (RowsKernel, usize) {
    let level = ext as usize;
    // The block formats' rows per call, by level.
    let block_rows = [MAX_B_WIDE, MAX_B_ANY, MAX_B_WIDE][level];
    match format {
        Format::F32 => (float::rows_f32, MAX_B),
        Format::F16 => (float::rows_f16, MAX_B),
        Format::Bf16 => (float::rows_bf16, MAX_B),
        Format::Q4_1 => (blocks::Q4_1_KERNELS[level], block_rows),
        Format::Q5_0 => (blocks::Q5_0_KERNELS[level], block_rows),
        Format::Q8_0 => (blocks::Q8_0_KERNELS[level], block_rows),
        Format::Q4_0 => (blocks::Q4_0_KERNELS[level], block_rows),
        Format::Q5_1 => (blocks::Q5_1_KERNELS[level], block_rows),
        Format::Iq4Nl => (blocks::IQ4_NL_KERNELS[level], block_rows),
        Format::Q5K => (superblocks::Q5_K_KERNEL, MAX_B),
        Format::Iq4Xs => (superblocks::IQ4_XS_KERNEL, MAX_B),
        Format::Q2K => (lowbit::Q2_K_KERNEL, MAX_B),
        Format::Q3K => (lowbit::Q3_K_KERNEL, MAX_B),
        Format::Q4K => (kquants::Q4_K_KERNELS[level], MAX_B_WIDE),
        Format::Q6K => (
            kquants::Q6_K_KERNELS[level],
            [MAX_B, MAX_B_WIDE, MAX_B][level],
        ),
    }
}

/// Per-thread buffers the several-row drivers reuse from call to call (a
/// step calls them thousands of times): taken out of a thread-local at the
/// start of a call and put back at its end.
#[derive(Default)]
struct Scratch {
    /// Activation scales side by side: block i's at `[L * i .. L * i + rows]`
    /// (`L` lanes, the driver's rows per call), unused lanes 0.
    scales: LineBuf<f32>,
    /// Q8_1 sums, laid out as `scales` (empty for other activations).
    sums: LineBuf<f32>,
    /// Activation quants re-laid for a driver (biased by +128).
    quants: LineBuf<i8>,
    /// One weight row's scales `d_w · d_a`, laid out as `scales`.
    products: LineBuf<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

impl Scratch {
    fn take() -> Scratch {
        SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    fn put_back(self) {
        SCRATCH.with(|s| *s.borrow_mut() = self);
    }

    /// Lays rows `b0..b0 + rows`' per-block scales `d` (and sums `s`, when
    /// given) side by side in `L` lanes, `nb` blocks per row.
    fn side_by_side<const L: usize>(
        &mut self,
        d: &[f32],
        s: Option<&[f32]>,
        b0: usize,
        rows: usize,
        nb: usize,
    ) {
        assert!(rows <= L, "at most {L} rows side by side");
        let lay = |out: &mut LineBuf<f32>, v: &[f32]| {
            let out = out.cleared(L * nb);
            for j in 0..rows {
                for (i, &x) in v[(b0 + j) * nb..(b0 + j + 1) * nb].iter().enumerate() {
                    out[L * i + j] = x;
                }
            }
        };
        lay(&mut self.scales, d);
        match s {
            Some(s) => lay(&mut self.sums, s),
            None => {
                self.sums.cleared(0);
            }
        }
    }
}

/// Defines `$name`, a [`RowsKernel`] looping over weight rows and calling
/// `$dot::<B>(row, act, b0) -> [f32; B]`, compiled for `$features` (AVX2,
/// FMA and F16C unless given), for as many activation rows as `$n` lists
/// (1 to [`MAX_B`] unless given).
macro_rules! rows_kernel {
    ($name:ident, $dot:ident) => {
        rows_kernel!($name, $dot, "avx2,fma,f16c", [1 2 3 4]);
    };
    ($name:ident, $dot:ident, $features:literal, [$($n:literal)*]) => {
        #[target_feature(enable = $features)]
        pub(super) fn $name(
            w: &[u8],
            row_bytes: usize,
            act: &ActView<'_>,
            b0: usize,
            outs: &mut [&mut [f32]],
        ) {
            #[target_feature(enable = $features)]
            fn go<const B: usize>(
                w: &[u8],
                row_bytes: usize,
                act: &ActView<'_>,
                b0: usize,
                outs: &mut [&mut [f32]],
            ) {
                for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                    let v = $dot::<B>(row, act, b0);
                    for (o, v) in outs.iter_mut().zip(v) {
                        o[r] = v;
                    }
                }
            }
            let most = [$($n),*].len();
            assert!(
                outs.len() <= most,
                "at most {most} activation rows per call"
            );
            match outs.len() {
                $($n => go::<$n>(w, row_bytes, act, b0, outs),)*
                _ => {}
            }
        }
    };
}
pub(crate) use rows_kernel;

const _: () = assert!(MAX_B == 4, "rows_kernel! instantiates B = 1..=4");

/// Horizontal sum of eight floats, in llama.cpp's order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_ps(v: __m256) -> f32 {
    let mut r = _mm256_extractf128_ps::<1>(v);
    r = _mm_add_ps(r, _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// Horizontal sum of four floats: (a0 + a2) + (a1 + a3).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_ps4(v: __m128) -> f32 {
    let r = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// The little-endian f16 at `b[0..2]`, widened by the F16C unit.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16(b: &[u8]) -> f32 {
    let h = u16::from_le_bytes([b[0], b[1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// The little-endian f16 at `p`, widened by the F16C unit.
///
/// # Safety
/// `p` must point at two readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: two readable bytes (the caller's contract); unaligned read.
    let h = unsafe { p.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le(h)))))
}

/// The 16 bytes of nibble pairs at `p` as 32 bytes: the low nibbles first,
/// then the high.
///
/// # Safety
/// `p` must point at 16 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn nibbles_at(p: *const u8) -> __m256i {
    // SAFETY: 16 readable bytes (the caller's contract); unaligned load.
    let t = unsafe { _mm_loadu_si128(p.cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(t), t);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// 32 bytes from the start of `p`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load32(p: &[u8]) -> __m256i {
    assert!(p.len() >= 32);
    // SAFETY: 32 readable bytes (asserted); unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// 32 signed bytes from the start of `p`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load32_i8(p: &[i8]) -> __m256i {
    assert!(p.len() >= 32);
    // SAFETY: 32 readable bytes (asserted); unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// 16 bytes from the start of `p`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load16(p: &[u8]) -> __m128i {
    assert!(p.len() >= 16);
    // SAFETY: 16 readable bytes (asserted); unaligned load.
    unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
}

/// 16 signed 16-bit values from the start of `p`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load16_i16(p: &[i16]) -> __m256i {
    assert!(p.len() >= 16);
    // SAFETY: 32 readable bytes (asserted); unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// Eight floats from the start of `p`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8_f32(p: &[f32]) -> __m256 {
    assert!(p.len() >= 8);
    // SAFETY: eight readable floats (asserted); unaligned load.
    unsafe { _mm256_loadu_ps(p.as_ptr()) }
}

/// Eight little-endian floats from the bytes `p[0..32]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8_f32_bytes(p: &[u8]) -> __m256 {
    _mm256_castsi256_ps(load32(p))
}

/// Eight halves (at `p[0..16]` as bytes) widened to floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8_f16_bytes(p: &[u8]) -> __m256 {
    _mm256_cvtph_ps(load16(p))
}

/// Byte i of the result is 0xFF when bit i of `x` is set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bits_to_bytes(x: u32) -> __m256i {
    // Spread byte k of `x` over result bytes 8k..8k+8, then test one bit per byte.
    let spread = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), spread);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VNNI kernels (AVX512-VNNI and AVX-VNNI, each where this CPU has
    /// it) give the plain AVX2 kernels' bits, for any row count they take
    /// (up to sixteen).
    #[test]
    fn vnni_kernels_equal_avx2_kernels_bit_for_bit() {
        let levels: Vec<Extensions> = [
            (crate::Level::Avx512, Extensions::Vnni),
            (crate::Level::AvxVnni, Extensions::AvxVnni),
        ]
        .into_iter()
        .filter(|(l, _)| l.is_available())
        .map(|(_, e)| e)
        .collect();
        if levels.is_empty() {
            println!("skipping: no AVX512-VNNI or AVX-VNNI");
            return;
        }
        use crate::act::{quantize_into, ActBuf};
        let cols = 256;
        let batch = MAX_B_ANY;
        let mut state = 0x1234_5678u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        let x: Vec<f32> = (0..cols * batch).map(|_| next() * 3.0).collect();
        for format in [
            Format::Q4_1,
            Format::Q5_0,
            Format::Q8_0,
            Format::Q4K,
            Format::Q6K,
            Format::Q4_0,
            Format::Q5_1,
            Format::Iq4Nl,
        ] {
            let rows = 13;
            let w: Vec<u8> = (0..rows)
                .flat_map(|_| format.quantize(&(0..cols).map(|_| next()).collect::<Vec<_>>()))
                .collect();
            let row_bytes = w.len() / rows;
            let kind = format.act_kind();
            let mut buf = ActBuf::default();
            buf.prepare(kind, cols, batch);
            for (xr, dst) in x.chunks_exact(cols).zip(buf.rows_mut(kind, cols, batch)) {
                quantize_into(kind, xr, dst);
            }
            // K-quant rows in both of llama.cpp's orders.
            let orders: Vec<crate::RowOrder> = (0..batch)
                .map(|b| crate::RowOrder {
                    q4k_in_quad: b % 3 != 0,
                    q6k_tiled: b % 2 == 0,
                    f32_attention: false,
                })
                .collect();
            let view = buf.view(cols, &x, &orders);
            let run = |ext: Extensions, b0: usize, n: usize| {
                let (k, _) = kernel_with(format, ext);
                let mut out = vec![vec![0.0f32; rows]; n];
                let mut refs: Vec<&mut [f32]> = out.iter_mut().map(|o| o.as_mut_slice()).collect();
                // SAFETY: AVX2 and the extensions `ext` needs were detected above.
                unsafe { k(&w, row_bytes, &view, b0, &mut refs) };
                out
            };
            // The plain kernels take fewer rows at a time.
            let step = kernel_with(format, Extensions::None).1;
            let plain: Vec<Vec<f32>> = (0..batch)
                .step_by(step)
                .flat_map(|b0| run(Extensions::None, b0, step.min(batch - b0)))
                .collect();
            for &ext in &levels {
                let most = kernel_with(format, ext).1;
                for n in [1, 2, 3, 4, 5, 8, 11, 16]
                    .into_iter()
                    .filter(|&n| n <= most)
                {
                    let got = run(ext, 0, n);
                    for (p, v) in plain.iter().zip(&got) {
                        let bits = |r: &[f32]| r.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(p), bits(v), "{format:?} {ext:?} {n} rows");
                    }
                }
            }
        }
    }

    #[test]
    fn bits_to_bytes_spreads_each_bit() {
        if !crate::Isa::Avx2.is_available() {
            println!("skipping: no AVX2");
            return;
        }
        #[target_feature(enable = "avx2,fma,f16c")]
        fn check(x: u32) -> [u8; 32] {
            let mut out = [0u8; 32];
            // SAFETY: 32 writable bytes.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), bits_to_bytes(x)) };
            out
        }
        for x in [0u32, 1, 0x8000_0000, 0xdead_beef, u32::MAX, 0x0102_0408] {
            // SAFETY: AVX2 was detected above.
            let got = unsafe { check(x) };
            for (i, &b) in got.iter().enumerate() {
                assert_eq!(b, if x >> i & 1 == 1 { 0xff } else { 0 }, "x={x:#x} i={i}");
            }
        }
    }
}
