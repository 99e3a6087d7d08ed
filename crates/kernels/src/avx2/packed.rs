//! The many-activation-rows driver for the 32-element block formats on
//! plain AVX2 (a prefill pass, or a decode step of more sequences than
//! [`super::batch`] takes per call): a task's weight rows are unpacked once
//! into a per-thread buffer (each block's `maddubs` operands as 32-byte
//! lines, its scale and offset as floats), then every group of eight
//! activation rows passes over the unpacked rows.
//!
//! [`super::batch`] unpacks each weight block again for every group of
//! eight activation rows and widens each weight row's half-precision scales
//! again, 64 times per task at a prefill; done once here, that made Q5_0
//! (whose fifth bits take ten instructions to place) and Q4_1 1.1–1.2× as
//! fast at batches 64–512 (docs/PERFORMANCE.md). Q8_0, whose unpacking is
//! one instruction ([`Block::CHEAP_UNPACK`]), keeps only its scales as
//! floats and unpacks its blocks from the weights where used: re-reading
//! 64 unpacked bytes per block measured no faster than that, and the
//! scales alone 1.04–1.10×. What stays per (block,
//! activation row) pair is the same as there (and as in [`super::single`]):
//! the integer products by `maddubs` and `madd`, widened to floats, one
//! fused multiply-add by `d_w · d_a` from a table made one weight row
//! ahead, in block order, then llama.cpp's horizontal sum. So every result
//! has the same bits on all three paths. The signed formats go to
//! [`super::packed16`] instead (Q8_0 from 16 rows): the same lanes from
//! 16-bit operands, without the sign step.

use super::blocks::{widen, Block};
use super::*;
use crate::formats::MAX_B_WIDE;

/// Activation rows per pass over the unpacked weights: eight sums and a
/// block's operands fill AVX2's sixteen registers.
pub(super) const GROUP: usize = MAX_B_WIDE;

/// One task's unpacked weights, reused from call to call on a thread.
#[derive(Default)]
pub(super) struct Packed {
    /// Per weight row, per block: `ax` (32 bytes), then for signed formats
    /// `sx` (32 bytes); in [`super::packed16`], the two 16-bit halves.
    pub(super) ops: LineBuf<i8>,
    /// Per weight row, per block: the scale.
    pub(super) d: LineBuf<f32>,
    /// Per weight row, per block: the offset (formats with one).
    pub(super) m: LineBuf<f32>,
}

/// A task's weights: as stored, unpacked, and their row count.
#[derive(Clone, Copy)]
struct Weights<'a> {
    raw: &'a [u8],
    packed: &'a Packed,
    n_rows: usize,
}

thread_local! {
    pub(super) static PACKED: std::cell::RefCell<Packed> = std::cell::RefCell::default();
}

/// Bytes of one unpacked block.
const fn block_bytes<K: Block>() -> usize {
    if K::CHEAP_UNPACK {
        0
    } else if K::BIASED {
        64
    } else {
        32
    }
}

/// `out[b * stride + r] = dot(weight row r, activation row b)` for every row
/// `r` of `w` and every `b < batch`.
///
/// # Safety
/// `out.add(b * stride + r)` must be writable for those `b` and `r`, and no
/// other thread may touch those elements meanwhile; the CPU must support
/// AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows<K: Block>(
    w: &[u8],
    row_bytes: usize,
    a: &ActView<'_>,
    batch: usize,
    out: *mut f32,
    stride: usize,
) {
    if super::packed16::takes::<K>(batch) {
        // SAFETY: the caller's contract, which is that form's.
        return unsafe { super::packed16::rows::<K>(w, row_bytes, a, batch, out, stride) };
    }
    let nb = a.cols / 32;
    assert_eq!(row_bytes, nb * K::BYTES, "row size");
    let n_rows = w.len() / row_bytes.max(1);
    if n_rows == 0 || nb == 0 {
        return;
    }
    let mut packed = PACKED.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let sb = block_bytes::<K>();
    {
        let ops = packed.ops.resized(n_rows * nb * sb);
        let d = packed.d.resized(n_rows * nb);
        let m = packed.m.resized(if K::OFFSET { n_rows * nb } else { 0 });
        let op = ops.as_mut_ptr();
        for (r, row) in w.chunks_exact(row_bytes).enumerate() {
            for i in 0..nb {
                let k = r * nb + i;
                // SAFETY: block i (< nb) lies inside the row; unpacked block
                // k (< n_rows · nb) has sb bytes at k · sb inside `ops`.
                unsafe {
                    let u = K::unpack(row.as_ptr().add(i * K::BYTES));
                    if K::CHEAP_UNPACK {
                        // Unpacked again from the weights where used.
                    } else {
                        _mm256_storeu_si256(op.add(k * sb).cast(), u.ax);
                    }
                    if K::BIASED && !K::CHEAP_UNPACK {
                        _mm256_storeu_si256(op.add(k * sb + 32).cast(), u.sx);
                    }
                    d[k] = u.d;
                    if K::OFFSET {
                        m[k] = u.m;
                    }
                }
            }
        }
    }
    let mut scratch = Scratch::take();
    let wts = Weights {
        raw: w,
        packed: &packed,
        n_rows,
    };
    for b0 in (0..batch).step_by(GROUP) {
        let n = (batch - b0).min(GROUP);
        // SAFETY: the caller's contract, for rows b0..b0 + n.
        unsafe { at_width!(n, B => group::<K, B>(&wts, &mut scratch, a, b0, out, stride)) }
    }
    scratch.put_back();
    PACKED.with(|p| *p.borrow_mut() = packed);
}

/// Activation rows `b0..b0 + B` against the `n_rows` unpacked weight rows.
///
/// # Safety
/// As [`rows`], for these activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn group<K: Block, const B: usize>(
    wts: &Weights<'_>,
    scratch: &mut Scratch,
    a: &ActView<'_>,
    b0: usize,
    out: *mut f32,
    stride: usize,
) {
    const W: usize = GROUP;
    let Weights {
        raw: w,
        packed,
        n_rows,
    } = *wts;
    let nb = a.cols / 32;
    let row_bytes = nb * K::BYTES;
    let sb = block_bytes::<K>();
    scratch.side_by_side::<W>(a.d, K::OFFSET.then_some(a.s), b0, B, nb);
    let qstride = nb * 32;
    let src = &a.qs[b0 * qstride..(b0 + B) * qstride];
    {
        // Block-major: block i of row j at (i * B + j) * 32.
        let laid = scratch.quants.resized(src.len());
        for j in 0..B {
            for i in 0..nb {
                laid[(i * B + j) * 32..][..32].copy_from_slice(&src[j * qstride + 32 * i..][..32]);
            }
        }
    }
    let qs = scratch.quants.as_slice();
    let tables = scratch.products.resized(2 * W * nb);
    let (dt, st) = (scratch.scales.as_slice(), scratch.sums.as_slice());
    assert!(dt.len() >= W * nb && (!K::OFFSET || st.len() >= W * nb));
    let (dw, mw, ops) = (
        packed.d.as_slice(),
        packed.m.as_slice(),
        packed.ops.as_slice(),
    );
    assert!(dw.len() >= n_rows * nb && ops.len() >= n_rows * nb * sb);
    assert!(!K::OFFSET || mw.len() >= n_rows * nb);
    let (dtp, stp, tp) = (dt.as_ptr(), st.as_ptr(), tables.as_mut_ptr());
    let (dwp, mwp) = (dw.as_ptr(), mw.as_ptr());
    // SAFETY: row 0's nb scales (and offsets) exist; the tables hold
    // 2 · W · nb floats, the activation tables W · nb (asserted).
    let mut next_summs = unsafe { row_table::<K>(dwp, mwp, nb, dtp, stp, tp, 0) };
    for r in 0..n_rows {
        let summs = next_summs;
        // SAFETY: table r % 2 lies inside the 2 · W · nb floats.
        let pp = unsafe { tp.add((r % 2) * W * nb) };
        if r + 1 < n_rows {
            // SAFETY: row r + 1's scales exist (asserted).
            next_summs = unsafe { row_table::<K>(dwp, mwp, nb, dtp, stp, tp, r + 1) };
        }
        let base = ops.as_ptr().wrapping_add(r * nb * sb);
        let raw = w[r * row_bytes..(r + 1) * row_bytes].as_ptr();
        let mut acc = [_mm256_setzero_ps(); B];
        for i in 0..nb {
            // SAFETY: block i (< nb) lies inside weight row r (sliced above),
            // unpacked block r · nb + i inside `ops` (asserted).
            let (ax, sx) = unsafe {
                if K::CHEAP_UNPACK {
                    let u = K::unpack(raw.add(i * K::BYTES));
                    (u.ax, u.sx)
                } else {
                    let p = base.add(i * sb);
                    let ax = _mm256_loadu_si256(p.cast());
                    let sx = if K::BIASED {
                        _mm256_loadu_si256(p.add(32).cast())
                    } else {
                        ax
                    };
                    (ax, sx)
                }
            };
            for j in 0..B {
                // SAFETY: row j's block i is 32 bytes at (i * B + j) * 32
                // inside the re-laid quants (j < B, i < nb); its scale is at
                // W * i + j (< W * nb).
                let (qy, s) = unsafe {
                    (
                        _mm256_loadu_si256(qs.as_ptr().add((i * B + j) * 32).cast()),
                        _mm256_broadcast_ss(&*pp.add(W * i + j)),
                    )
                };
                let p = if K::BIASED {
                    _mm256_maddubs_epi16(ax, _mm256_sign_epi8(qy, sx))
                } else {
                    _mm256_maddubs_epi16(ax, qy)
                };
                acc[j] = _mm256_fmadd_ps(s, widen(p), acc[j]);
            }
        }
        // SAFETY: the caller's contract (b0 + j < batch for j < B, r < n_rows).
        unsafe { write_row::<K, B>(&acc, summs, out, stride, b0, r) };
    }
}

/// A weight row's scales `d_w · d_a` for each block and activation row,
/// side by side in eight lanes (block i's at `prods[8 * i ..]`), and its
/// offset terms `Σ_i m_w · s_a` (formats with an offset), summed block by
/// block: [`super::batch`]'s table from the unpacked scales.
///
/// # Safety
/// `d` (and `m` for formats with an offset) must hold `nb` floats; `dt`
/// (and `st` for formats with an offset) and `prods` `8 · nb`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn row_scales<K: Block>(
    d: *const f32,
    m: *const f32,
    nb: usize,
    dt: *const f32,
    st: *const f32,
    prods: *mut f32,
) -> __m256 {
    let mut summ = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: the caller's contract (i < nb; 8 * i + 8 <= 8 * nb).
        unsafe {
            let s = _mm256_mul_ps(
                _mm256_broadcast_ss(&*d.add(i)),
                _mm256_loadu_ps(dt.add(8 * i)),
            );
            _mm256_storeu_ps(prods.add(8 * i), s);
            if K::OFFSET {
                let t = _mm256_mul_ps(
                    _mm256_broadcast_ss(&*m.add(i)),
                    _mm256_loadu_ps(st.add(8 * i)),
                );
                summ = _mm256_add_ps(summ, t);
            }
        }
    }
    summ
}

/// Row `r`'s table of [`row_scales`], in half `r % 2` of the double
/// `tables` (the other half holds the row being swept), and its offset sums.
///
/// # Safety
/// As [`row_scales`] for row `r`'s `nb` scales at `d + r · nb` (and offsets
/// at `m + r · nb` for formats with one); `tables` must hold
/// `2 · GROUP · nb` floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn row_table<K: Block>(
    d: *const f32,
    m: *const f32,
    nb: usize,
    dt: *const f32,
    st: *const f32,
    tables: *mut f32,
    r: usize,
) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe {
        row_scales::<K>(
            d.add(r * nb),
            m.wrapping_add(r * nb),
            nb,
            dt,
            st,
            tables.add((r % 2) * GROUP * nb),
        )
    }
}

/// Writes weight row `r`'s results for activation rows `b0..b0 + B`: each
/// accumulator's horizontal sum (llama.cpp's), plus its offset term for
/// formats with one (others end at the sum itself: adding 0.0 would turn a
/// -0.0 into +0.0).
///
/// # Safety
/// `out.add((b0 + j) * stride + r)` must be writable for `j < B`; the CPU
/// must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn write_row<K: Block, const B: usize>(
    acc: &[__m256; B],
    summs: __m256,
    out: *mut f32,
    stride: usize,
    b0: usize,
    r: usize,
) {
    let mut sm = [0.0f32; GROUP];
    // SAFETY: eight writable floats.
    unsafe { _mm256_storeu_ps(sm.as_mut_ptr(), summs) };
    for j in 0..B {
        let dot = hsum_ps(acc[j]);
        let v = if K::OFFSET { dot + sm[j] } else { dot };
        // SAFETY: the caller's contract.
        unsafe { *out.add((b0 + j) * stride + r) = v };
    }
}
