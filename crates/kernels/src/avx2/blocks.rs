//! The 32-element block formats (Q4_1 against Q8_1 activations, Q5_0 and
//! Q8_0 against Q8_0): each format's unpacking of a weight block and its
//! integer products with an activation block, and the row kernels built on
//! them. One activation row (a decode step) goes to [`single`]; two or more
//! to [`batch`]. Both follow llama.cpp's AVX2 dot products step for step
//! (per block: integer products summed in pairs, widened to floats, one
//! fused multiply-add by `d_w * d_a` into eight lanes; Q4_1 adds its
//! `m_w * s_a` offsets in a separate scalar sum), so every row's result has
//! the same bits on either path.

use super::*;
use crate::formats::{iq4_nl, q4_0, q4_1, q5_0, q5_1, q8_0};

/// A weight block unpacked for the integer products.
#[derive(Clone, Copy)]
pub(super) struct Unpacked {
    /// Unsigned 8-bit operand of `maddubs` (the quants, or their magnitudes).
    pub ax: __m256i,
    /// For signed formats, the signed quants (their signs move onto the
    /// activations); unused otherwise.
    pub sx: __m256i,
    /// The block's scale.
    pub d: f32,
    /// The block's offset (Q4_1's `m`); 0 otherwise.
    pub m: f32,
}

/// One 32-element block format.
pub(super) trait Block {
    /// Bytes per block.
    const BYTES: usize;
    /// Whether the format has an offset term (`m * s_a`) added after the sum.
    const OFFSET: bool;

    /// Unpacks the block at `blk`.
    ///
    /// # Safety
    /// `blk` must point at `BYTES` readable bytes; the CPU must support AVX2,
    /// FMA and F16C.
    unsafe fn unpack(blk: *const u8) -> Unpacked;

    /// [`Block::unpack`] for the VNNI products, which read only `sx` (signed
    /// formats) or `ax`: formats whose unpacking byte masks shorten override it.
    ///
    /// # Safety
    /// As [`Block::unpack`], and the CPU must support AVX512-VNNI, -VL and -BW.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
    #[inline]
    unsafe fn unpack_vnni(blk: *const u8) -> Unpacked {
        // SAFETY: the caller's contract.
        unsafe { Self::unpack(blk) }
    }

    /// Whether unpacking a block costs no more than reading 64 unpacked
    /// bytes back ([`super::packed`] then keeps only the block's scale).
    const CHEAP_UNPACK: bool = false;

    /// Whether the quants are signed. Then `maddubs` takes their magnitudes
    /// with their signs moved onto the activations, and the VNNI products
    /// take the activations biased by +128 (as the unsigned operand).
    const BIASED: bool;

    /// Sixteen sums of adjacent products of the block's 32 values and the
    /// activation quants `qy` (`maddubs`).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn products(u: &Unpacked, qy: __m256i) -> __m256i {
        if Self::BIASED {
            _mm256_maddubs_epi16(u.ax, _mm256_sign_epi8(qy, u.sx))
        } else {
            _mm256_maddubs_epi16(u.ax, qy)
        }
    }

    /// The VNNI accumulator's starting lanes for this block: for biased
    /// activations, `-128 ·` the sum of each lane's four weights, which
    /// cancels the bias exactly; zero otherwise.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
    #[inline]
    unsafe fn vnni_start(u: &Unpacked) -> __m256i {
        if Self::BIASED {
            let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(-128), u.sx);
            _mm256_sub_epi32(_mm256_setzero_si256(), sums)
        } else {
            _mm256_setzero_si256()
        }
    }

    /// The block's products with activation quants `qy` (biased when
    /// [`Block::BIASED`]) summed in fours into eight 32-bit lanes, from
    /// `start` ([`Block::vnni_start`]): exactly `madd(1, products)`, since no
    /// pair sum of these formats reaches `maddubs`' 16-bit saturation.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
    #[inline]
    unsafe fn dot4(u: &Unpacked, start: __m256i, qy: __m256i) -> __m256i {
        if Self::BIASED {
            _mm256_dpbusd_epi32(start, qy, u.sx)
        } else {
            _mm256_dpbusd_epi32(start, u.ax, qy)
        }
    }

    /// [`Block::vnni_start`] by AVX-VNNI's VEX-encoded `vpdpbusd` (the same
    /// integers; for CPUs with AVX-VNNI but no AVX-512).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA, F16C and AVX-VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[inline]
    unsafe fn vnni_start_avx(u: &Unpacked) -> __m256i {
        if Self::BIASED {
            let sums =
                _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(-128), u.sx);
            _mm256_sub_epi32(_mm256_setzero_si256(), sums)
        } else {
            _mm256_setzero_si256()
        }
    }

    /// [`Block::dot4`] by AVX-VNNI's VEX-encoded `vpdpbusd`.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA, F16C and AVX-VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[inline]
    unsafe fn dot4_avx(u: &Unpacked, start: __m256i, qy: __m256i) -> __m256i {
        if Self::BIASED {
            _mm256_dpbusd_avx_epi32(start, qy, u.sx)
        } else {
            _mm256_dpbusd_avx_epi32(start, u.ax, qy)
        }
    }
}

/// Q4_1: `f16 d; f16 m; u8 qs[16]`, unsigned nibbles.
pub(super) struct Q4_1;

impl Block for Q4_1 {
    const BYTES: usize = q4_1::BLOCK;
    const OFFSET: bool = true;
    const BIASED: bool = false;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // SAFETY: a whole block (the caller's contract): two halves, 16 quant bytes.
        let (d, m, ax) = unsafe { (f16_at(blk), f16_at(blk.add(2)), nibbles_at(blk.add(4))) };
        Unpacked { ax, sx: ax, d, m }
    }
}

/// Q4_0: `f16 d; u8 qs[16]`, value = nibble - 8.
pub(super) struct Q4_0;

impl Block for Q4_0 {
    const BYTES: usize = q4_0::BLOCK;
    const OFFSET: bool = false;
    const BIASED: bool = true;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // SAFETY: a whole block (the caller's contract): one half, 16 quant bytes.
        let (d, low) = unsafe { (f16_at(blk), nibbles_at(blk.add(2))) };
        signed(_mm256_sub_epi8(low, _mm256_set1_epi8(8)), d)
    }
}

/// IQ4_NL: `f16 d; u8 qs[16]`, value = a table's level for each nibble.
pub(super) struct Iq4Nl;

impl Block for Iq4Nl {
    const BYTES: usize = iq4_nl::BLOCK;
    const OFFSET: bool = false;
    const BIASED: bool = true;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // SAFETY: a whole block (the caller's contract): one half, 16 quant bytes.
        let (d, idx) = unsafe { (f16_at(blk), nibbles_at(blk.add(2))) };
        // SAFETY: VALUES holds 16 bytes; unaligned load.
        let table = unsafe { _mm_loadu_si128(iq4_nl::VALUES.as_ptr().cast()) };
        let levels = _mm256_shuffle_epi8(_mm256_set_m128i(table, table), idx);
        signed(levels, d)
    }
}

/// Q5_1: `f16 d; f16 m; u32 qh; u8 qs[16]`, unsigned 5-bit values.
pub(super) struct Q5_1;

impl Block for Q5_1 {
    const BYTES: usize = q5_1::BLOCK;
    const OFFSET: bool = true;
    const BIASED: bool = false;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // SAFETY: a whole block (the caller's contract): two halves, four
        // bytes of fifth bits, 16 quant bytes.
        let (d, m, qh, low) = unsafe {
            (
                f16_at(blk),
                f16_at(blk.add(2)),
                u32::from_le(blk.add(4).cast::<u32>().read_unaligned()),
                nibbles_at(blk.add(8)),
            )
        };
        let high = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
        let ax = _mm256_or_si256(low, high);
        Unpacked { ax, sx: ax, d, m }
    }
}

/// Q8_0: `f16 d; i8 qs[32]`.
pub(super) struct Q8_0;

impl Block for Q8_0 {
    const BYTES: usize = q8_0::BLOCK;
    const CHEAP_UNPACK: bool = true;
    const OFFSET: bool = false;
    const BIASED: bool = true;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // SAFETY: a whole block (the caller's contract): one half, 32 quant bytes.
        let (d, qx) = unsafe { (f16_at(blk), _mm256_loadu_si256(blk.add(2).cast())) };
        signed(qx, d)
    }
}

/// Q5_0: `f16 d; u32 qh; u8 qs[16]`, value = (nibble | fifth bit << 4) - 16.
pub(super) struct Q5_0;

impl Block for Q5_0 {
    const BYTES: usize = q5_0::BLOCK;
    const OFFSET: bool = false;
    const BIASED: bool = true;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // SAFETY: a whole block (the caller's contract).
        let (d, qh, low) = unsafe { q5_0_parts(blk) };
        // Where the fifth bit is clear the value is nibble - 16, which is
        // nibble | 0xF0 in two's complement.
        let high = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xF0u8 as i8));
        signed(_mm256_or_si256(low, high), d)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
    #[inline]
    unsafe fn unpack_vnni(blk: *const u8) -> Unpacked {
        // SAFETY: a whole block (the caller's contract).
        let (d, qh, low) = unsafe { q5_0_parts(blk) };
        // The same values with a byte mask: nibble - 16 where the fifth bit
        // (bit i of qh for byte i) is clear.
        let qx = _mm256_mask_sub_epi8(low, !qh, low, _mm256_set1_epi8(16));
        signed(qx, d)
    }
}

/// A Q5_0 block's scale, fifth bits and low nibbles (as 32 bytes).
///
/// # Safety
/// `blk` must point at a whole block: one half, four bytes of fifth bits,
/// 16 quant bytes; the CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q5_0_parts(blk: *const u8) -> (f32, u32, __m256i) {
    // SAFETY: the caller's contract.
    unsafe {
        (
            f16_at(blk),
            u32::from_le(blk.add(2).cast::<u32>().read_unaligned()),
            nibbles_at(blk.add(6)),
        )
    }
}

/// Signed quants `qx` as `maddubs` operands: |x| now, x's signs for later.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn signed(qx: __m256i, d: f32) -> Unpacked {
    Unpacked {
        ax: _mm256_sign_epi8(qx, qx),
        sx: qx,
        d,
        m: 0.0,
    }
}

/// Pair sums from `maddubs` widened to eight float lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn widen(p: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), p))
}

/// Defines `$name`, a row kernel of block format `$block` compiled for
/// `$features`: one activation row goes to [`single`], several to the
/// driver `$m::$driver`.
macro_rules! block_kernel {
    ($name:ident, $features:literal, $m:ident::$driver:ident, $block:ty) => {
        #[target_feature(enable = $features)]
        fn $name(
            w: &[u8],
            row_bytes: usize,
            act: &ActView<'_>,
            b0: usize,
            outs: &mut [&mut [f32]],
        ) {
            match outs {
                [out] => single::rows::<$block>(w, row_bytes, act, b0, out),
                _ => $m::$driver::<$block>(w, row_bytes, act, b0, outs),
            }
        }
    };
}

/// Defines `$kernels`, block format `$block`'s row kernels by
/// [`Extensions`] level: plain AVX2, with AVX512-VNNI products, and with
/// AVX-VNNI products.
macro_rules! block_kernels {
    ($kernels:ident, $block:ty, $plain:ident, $vnni:ident, $avx_vnni:ident) => {
        block_kernel!($plain, "avx2,fma,f16c", batch::rows, $block);
        block_kernel!(
            $vnni,
            "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw",
            batch::rows_vnni,
            $block
        );
        block_kernel!(
            $avx_vnni,
            "avx2,fma,f16c,avxvnni",
            batch::rows_avx_vnni,
            $block
        );
        pub(super) const $kernels: [RowsKernel; 3] = [$plain, $vnni, $avx_vnni];
    };
}

block_kernels!(
    Q4_1_KERNELS,
    Q4_1,
    rows_q4_1,
    rows_q4_1_vnni,
    rows_q4_1_avx_vnni
);
block_kernels!(
    Q5_0_KERNELS,
    Q5_0,
    rows_q5_0,
    rows_q5_0_vnni,
    rows_q5_0_avx_vnni
);
block_kernels!(
    Q8_0_KERNELS,
    Q8_0,
    rows_q8_0,
    rows_q8_0_vnni,
    rows_q8_0_avx_vnni
);
block_kernels!(
    Q4_0_KERNELS,
    Q4_0,
    rows_q4_0,
    rows_q4_0_vnni,
    rows_q4_0_avx_vnni
);
block_kernels!(
    Q5_1_KERNELS,
    Q5_1,
    rows_q5_1,
    rows_q5_1_vnni,
    rows_q5_1_avx_vnni
);
block_kernels!(
    IQ4_NL_KERNELS,
    Iq4Nl,
    rows_iq4_nl,
    rows_iq4_nl_vnni,
    rows_iq4_nl_avx_vnni
);
