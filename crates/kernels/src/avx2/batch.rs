//! The several-activation-rows driver for the 32-element block formats (a
//! prefill chunk, or a decode step of many sequences): each weight block is
//! unpacked once and multiplied into up to eight activation rows (sixteen
//! with AVX512-VL's 32 vector registers). Each
//! (weight row, activation row) pair still sums its blocks in order with the
//! same operations as [`super::single`] (per block: the integer products in
//! eight lanes, widened to floats, one fused multiply-add by `d_w · d_a`;
//! then llama.cpp's horizontal sum), so results have the same bits on both
//! paths. What the driver saves is instructions around those steps:
//!
//! - a weight row's scales `d_w · d_a` are made eight rows at a time, one
//!   weight row ahead (into the other of two tables), and each multiply-add
//!   takes its scale as a broadcast from memory, with no shuffle; Q4_1's
//!   `m_w · s_a` offsets are summed there too, eight rows at a time. Made
//!   for the row itself, just before its blocks, the broadcasts waited on
//!   the tables' fresh stores: a third of the plain AVX2 kernel's time on
//!   Zen 4, and making them a row ahead made it 1.25× (Q5_0) to 1.9×
//!   (Q4_1) as fast;
//! - the activation quants are copied block-major (block i of every row,
//!   then block i + 1), so one pointer and constant offsets reach every row
//!   and no row's address has to wait in memory for a free register; that
//!   copy and the scale tables start on cache lines ([`crate::lines`]), so
//!   no 32-byte load or store straddles two (a Q8_0 row of Gemma's head:
//!   ~1.8 → ~1.45 cycles per (block, row) with this and the previous point);
//! - the weights are prefetched a few rows ahead (the hardware prefetcher
//!   alone leaves the core waiting for the first touch of each row); with
//!   AVX512-VL's 32 registers each block is unpacked (with its VNNI start)
//!   while the previous block's products run, so those never wait on the
//!   unpacking (Q5_0's fifth bits come from one AVX512-BW byte mask in the
//!   VNNI form); with AVX2's sixteen, holding the next block would spill
//!   the eight rows' sums to the stack, so each block is unpacked where its
//!   products start;
//! - on CPUs with AVX512-VNNI (used in 256-bit registers), the integer
//!   products of a block come from one `vpdpbusd` instead of `maddubs` and
//!   `madd` (signed formats take the activations biased by +128, and the
//!   accumulator starts from `-128 ·` the weights' sums, which cancels the
//!   bias exactly), and their conversion to floats is exact integer
//!   arithmetic instead of `vcvtdq2ps`: the accumulator also starts from the
//!   bit pattern of 1.5 · 2^23, so its lanes end as the bits of the float
//!   `1.5 · 2^23 + sum` (exact: every sum here is far below 2^22 in size),
//!   and one subtraction of 1.5 · 2^23 leaves `sum`, the very float
//!   `vcvtdq2ps` gives (+0 for 0). That moves the conversion off the
//!   multiply units, which the products and the multiply-adds keep busy;
//! - on CPUs with AVX-VNNI but no AVX-512 (Intel client CPUs since Alder
//!   Lake), the same `vpdpbusd` products in their VEX encoding, eight rows
//!   per call (sixteen registers) with the plain AVX2 unpacking.

use super::blocks::{widen, Block, Unpacked};
use super::*;
use crate::formats::{MAX_B_ANY, MAX_B_WIDE};

/// How many weight rows ahead the weights are prefetched.
const PREFETCH_ROWS: usize = 2;

/// 1.5 · 2^23 as a float, and its bits: for |n| < 2^22, the bits
/// `MAGIC_BITS + n` are the float `MAGIC + n`, exactly.
const MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4B40_0000;
const _: () = assert!(MAGIC.to_bits() == MAGIC_BITS as u32);

/// Defines the several-rows driver `$rows` for up to `$lanes` (8 or 16)
/// activation rows (dispatching on the row count, one of `$n`, to `$go`),
/// compiled for `$features`, whose per-(block, row) products as floats are
/// `$dot(&unpacked, start, qy) -> __m256`, from `unpacked = K::$unpack(block)`
/// and `start = $start(&unpacked)` made once per weight block (`$vnni`: the
/// VNNI form, with biased activations for signed formats).
macro_rules! batch_driver {
    ($rows:ident, $go:ident, $features:literal, $lanes:expr, [$($n:literal)*],
     $vnni:literal, $ahead:literal, $unpack:ident, $start:ident, $dot:ident) => {
        /// `outs[j][r] = dot(weight row r, activation row b0 + j)` for every
        /// row of `w` and `j < outs.len()`.
        #[target_feature(enable = $features)]
        pub(super) fn $rows<K: Block>(
            w: &[u8],
            row_bytes: usize,
            a: &ActView<'_>,
            b0: usize,
            outs: &mut [&mut [f32]],
        ) {
            const W: usize = $lanes;
            assert!(outs.len() <= W, "at most {W} activation rows per call");
            match outs.len() {
                $($n => $go::<K, $n>(w, row_bytes, a, b0, outs),)*
                _ => {}
            }
        }

        #[target_feature(enable = $features)]
        #[inline]
        fn $go<K: Block, const B: usize>(
            w: &[u8],
            row_bytes: usize,
            a: &ActView<'_>,
            b0: usize,
            outs: &mut [&mut [f32]],
        ) {
            // Lanes of the side-by-side scales (one per activation row), in
            // registers of eight.
            const W: usize = $lanes;
            const V: usize = W / 8;
            let nb = a.cols / 32;
            assert_eq!(row_bytes, nb * K::BYTES, "row size");
            assert!(B <= W && outs.len() >= B);
            let n_rows = w.len() / row_bytes;
            assert!(outs[..B].iter().all(|o| o.len() >= n_rows));
            let mut scratch = Scratch::take();
            scratch.side_by_side::<W>(a.d, K::OFFSET.then_some(a.s), b0, B, nb);
            let qstride = nb * 32;
            let mut qs = &a.qs[b0 * qstride..(b0 + B) * qstride];
            {
                // Block-major: block i of row j at (i * B + j) * 32.
                let flip = if $vnni && K::BIASED { i8::MIN } else { 0 };
                // Every byte is written below.
                let laid = scratch.quants.resized(qs.len());
                for j in 0..B {
                    for i in 0..nb {
                        let src = &qs[j * qstride + 32 * i..][..32];
                        for (d, &q) in laid[(i * B + j) * 32..][..32].iter_mut().zip(src) {
                            *d = q ^ flip;
                        }
                    }
                }
                qs = scratch.quants.as_slice();
            }
            // Two tables of scales, row r's at (r % 2) * W * nb, each made
            // one weight row ahead (see the module's doc).
            if n_rows == 0 {
                scratch.put_back();
                return;
            }
            let tables = scratch.products.resized(2 * W * nb);
            let (dt, st) = (scratch.scales.as_slice(), scratch.sums.as_slice());
            assert!(dt.len() >= W * nb && (!K::OFFSET || st.len() >= W * nb));
            let (dtp, stp, tp) = (dt.as_ptr(), st.as_ptr(), tables.as_mut_ptr());
            // SAFETY: row 0 exists and holds nb blocks; the tables hold
            // 2 · W · nb floats, the scale tables W · nb (asserted).
            let mut next_summs = unsafe { row_scales::<K, V>(w.as_ptr(), nb, dtp, stp, tp) };
            for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                let base = row.as_ptr();
                // A hint only (a prefetch past the end of the weights is
                // harmless): the row PREFETCH_ROWS ahead.
                let ahead = base.wrapping_add(PREFETCH_ROWS * row_bytes);
                for line in (0..row_bytes).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
                }
                let summs = next_summs;
                // SAFETY: table r % 2 lies inside the 2 · W · nb floats.
                let pp = unsafe { tp.add((r % 2) * W * nb) };
                if r + 1 < n_rows {
                    // SAFETY: row r + 1 exists and holds nb blocks; table
                    // (r + 1) % 2 is the other half of the tables.
                    next_summs = unsafe {
                        row_scales::<K, V>(
                            base.add(row_bytes),
                            nb,
                            dtp,
                            stp,
                            tp.add(((r + 1) % 2) * W * nb),
                        )
                    };
                }
                let mut acc = [_mm256_setzero_ps(); B];
                // With `$ahead` (32 registers) each block is unpacked one
                // block ahead, so its products need not wait for the
                // unpacking; with sixteen that would spill the rows' sums.
                // SAFETY: there is a row, so row_bytes = nb · BYTES is not 0
                // (`chunks_exact` takes no 0) and block 0 lies inside it.
                let mut next = unsafe { K::$unpack(base) };
                // SAFETY: the CPU features are enabled here.
                let mut next_start = unsafe { $start::<K>(&next) };
                for i in 0..nb {
                    let (u, start) = if $ahead {
                        let this = (next, next_start);
                        if i + 1 < nb {
                            // SAFETY: block i + 1 (< nb) lies inside the row;
                            // the CPU features are enabled here.
                            unsafe {
                                next = K::$unpack(base.add((i + 1) * K::BYTES));
                                next_start = $start::<K>(&next);
                            }
                        }
                        this
                    } else {
                        // SAFETY: block i (< nb) lies inside the row; the CPU
                        // features are enabled here.
                        unsafe {
                            let u = K::$unpack(base.add(i * K::BYTES));
                            (u, $start::<K>(&u))
                        }
                    };
                    for j in 0..B {
                        // SAFETY: row j's block i is 32 bytes at
                        // (i * B + j) * 32 inside the re-laid `qs` (j < B, i < nb);
                        // its scale is at W * i + j (< W * nb).
                        let (qy, s) = unsafe {
                            (
                                _mm256_loadu_si256(qs.as_ptr().add((i * B + j) * 32).cast()),
                                _mm256_broadcast_ss(&*pp.add(W * i + j)),
                            )
                        };
                        // SAFETY: the CPU features are enabled here.
                        let x = unsafe { $dot::<K>(&u, start, qy) };
                        acc[j] = _mm256_fmadd_ps(s, x, acc[j]);
                    }
                }
                let mut sm = [0.0f32; W];
                for v in 0..V {
                    // SAFETY: eight writable floats at 8 * v (< W).
                    unsafe { _mm256_storeu_ps(sm.as_mut_ptr().add(8 * v), summs[v]) };
                }
                for j in 0..B {
                    let dot = hsum_ps(acc[j]);
                    // Formats without an offset end at the sum itself (adding
                    // 0.0 would turn a -0.0 into +0.0).
                    outs[j][r] = if K::OFFSET { dot + sm[j] } else { dot };
                }
            }
            scratch.put_back();
        }
    };
}

/// [`Block::vnni_start`] plus the bits of 1.5 · 2^23.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
#[inline]
unsafe fn start_vnni<K: Block>(u: &Unpacked) -> __m256i {
    // SAFETY: the caller's CPU has VNNI.
    _mm256_add_epi32(unsafe { K::vnni_start(u) }, _mm256_set1_epi32(MAGIC_BITS))
}

/// The same lanes from one VNNI instruction (`qy` biased for signed
/// formats), as floats by subtracting 1.5 · 2^23.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw")]
#[inline]
unsafe fn dot_vnni<K: Block>(u: &Unpacked, start: __m256i, qy: __m256i) -> __m256 {
    // SAFETY: the caller's CPU has VNNI too.
    let p = unsafe { K::dot4(u, start, qy) };
    _mm256_sub_ps(_mm256_castsi256_ps(p), _mm256_set1_ps(MAGIC))
}

/// No start for `maddubs` products.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn start_avx2<K: Block>(_u: &Unpacked) -> __m256i {
    _mm256_setzero_si256()
}

/// Products by `maddubs`, pair sums widened by `madd` and converted (llama.cpp's AVX2 steps).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_avx2<K: Block>(u: &Unpacked, _start: __m256i, qy: __m256i) -> __m256 {
    // SAFETY: the caller's CPU has AVX2, FMA and F16C.
    widen(unsafe { K::products(u, qy) })
}

// Sixteen registers: each block unpacked where its products start.
batch_driver!(
    rows,
    go,
    "avx2,fma,f16c",
    MAX_B_WIDE,
    [1 2 3 4 5 6 7 8],
    false,
    false,
    unpack,
    start_avx2,
    dot_avx2
);

/// Weight row `row`'s scales `d_w · d_a` for each block and activation row,
/// side by side in `W = 8 · V` lanes (block i's at `prods[W * i ..]`), and
/// its offset terms `Σ_i m_w · s_a` (Q4_1) in `V` registers, summed block
/// by block.
///
/// # Safety
/// `row` must point at `nb` whole blocks; `dt` (and `st` for formats with
/// an offset) and `prods` must hold `8 · V · nb` floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn row_scales<K: Block, const V: usize>(
    row: *const u8,
    nb: usize,
    dt: *const f32,
    st: *const f32,
    prods: *mut f32,
) -> [__m256; V] {
    let w = 8 * V;
    let mut summ = [_mm256_setzero_ps(); V];
    for i in 0..nb {
        // SAFETY: the caller's contract (block i < nb; w * i + 8 * v + 8 <= w * nb).
        unsafe {
            let d = _mm256_set1_ps(f16_at(row.add(i * K::BYTES)));
            for v in 0..V {
                let s = _mm256_mul_ps(d, _mm256_loadu_ps(dt.add(w * i + 8 * v)));
                _mm256_storeu_ps(prods.add(w * i + 8 * v), s);
            }
            if K::OFFSET {
                let m = _mm256_set1_ps(f16_at(row.add(i * K::BYTES + 2)));
                for v in 0..V {
                    let t = _mm256_mul_ps(m, _mm256_loadu_ps(st.add(w * i + 8 * v)));
                    summ[v] = _mm256_add_ps(summ[v], t);
                }
            }
        }
    }
    summ
}

/// [`start_vnni`] by AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
unsafe fn start_avx_vnni<K: Block>(u: &Unpacked) -> __m256i {
    // SAFETY: the caller's CPU has AVX-VNNI.
    _mm256_add_epi32(
        unsafe { K::vnni_start_avx(u) },
        _mm256_set1_epi32(MAGIC_BITS),
    )
}

/// [`dot_vnni`] by AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
unsafe fn dot_avx_vnni<K: Block>(u: &Unpacked, start: __m256i, qy: __m256i) -> __m256 {
    // SAFETY: the caller's CPU has AVX-VNNI.
    let p = unsafe { K::dot4_avx(u, start, qy) };
    _mm256_sub_ps(_mm256_castsi256_ps(p), _mm256_set1_ps(MAGIC))
}

// AVX-VNNI has AVX2's sixteen registers: eight rows, and the plain
// unpacking (no AVX-512 byte masks).
batch_driver!(
    rows_avx_vnni,
    go_avx_vnni,
    "avx2,fma,f16c,avxvnni",
    MAX_B_WIDE,
    [1 2 3 4 5 6 7 8],
    true,
    false,
    unpack,
    start_avx_vnni,
    dot_avx_vnni
);
batch_driver!(
    rows_vnni,
    go_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw",
    MAX_B_ANY,
    [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16],
    true,
    true,
    unpack_vnni,
    start_vnni,
    dot_vnni
);
