//! How llama.cpp's CPU backend sums one activation row's products for the
//! K-quant formats, where it does not use its plain dot products.
//!
//! On x86 with AVX2, GGML repacks Q4_K weights at load time for a four-row
//! GEMM and a one-row GEMV, and sends Q6_K batches of eight rows or more
//! through a tiled matmul. The integer sums are the same everywhere; the
//! order in which a row's per-block float terms are added is not, and its
//! last bits are what a greedy continuation sometimes turns on. So a caller
//! that wants llama.cpp's bits marks each activation row with the kernel the
//! reference would have given it; the kernels here follow that kernel's
//! summation order. Unmarked rows ([`RowOrder::default`]) take the order of a
//! lone row (a decode step).

/// The reference kernel one activation row would meet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RowOrder {
    /// Q4_K: one of four rows that the repacked GEMM takes together (else
    /// the one-row GEMV): the four pairs of sub-blocks of a super-block are
    /// added one at a time instead of the super-block's total.
    pub q4k_in_quad: bool,
    /// Q6_K: the row's batch had at least eight rows, so the tiled K-quant
    /// matmul takes it (else the AVX2 dot product): each super-block adds
    /// `(sum · d_w) · d_a` with one fused multiply-add instead of eight lanes
    /// summed at the end.
    pub q6k_tiled: bool,
    /// Attention: the row's batch had at least [`REFERENCE_F32_ATTENTION_ROWS`]
    /// rows of its sequence, so llama.cpp's CPU flash attention takes its
    /// tiled single-precision kernel (else its half-precision one). Marking
    /// it per row keeps a prompt's numerics the same however a scheduler
    /// cuts the prompt into passes.
    pub f32_attention: bool,
}

/// llama.cpp's physical batch (its default `n_ubatch`): what one kernel call sees.
pub const REFERENCE_UBATCH: usize = 512;
/// Rows of one sequence in a ubatch from which llama.cpp's CPU flash
/// attention takes its tiled single-precision kernel.
pub const REFERENCE_F32_ATTENTION_ROWS: usize = 64;
/// llama-server's logical batch (its default `n_batch`).
pub const REFERENCE_BATCH: usize = 2048;
/// For a model whose cache cannot be rolled back (a sliding window), the
/// server ends a prompt batch this many tokens, and this many plus one
/// ubatch, before the prompt's end, so it can checkpoint the cache there.
pub const REFERENCE_CHECKPOINT_TAIL: usize = 4;

/// The reference's ubatch holding prompt position `pos` (< `prompt_len`), as
/// `(start, rows)`. llama-server fills batches of up to [`REFERENCE_BATCH`]
/// prompt tokens, breaking early at the checkpoint offsets when
/// `checkpoints` is set; llama.cpp splits each into ubatches of
/// [`REFERENCE_UBATCH`] from the batch's start.
fn reference_ubatch(pos: usize, prompt_len: usize, checkpoints: bool) -> (usize, usize) {
    let offsets = [
        REFERENCE_CHECKPOINT_TAIL + REFERENCE_UBATCH,
        REFERENCE_CHECKPOINT_TAIL,
    ];
    let breaks = offsets
        .into_iter()
        .filter(|_| checkpoints)
        .filter_map(|off| prompt_len.checked_sub(off.min(REFERENCE_BATCH)))
        .filter(|&b| b > 0);
    let mut start = 0;
    loop {
        let end = breaks
            .clone()
            .filter(|&b| b > start)
            .fold((start + REFERENCE_BATCH).min(prompt_len), usize::min);
        if pos < end {
            let u0 = start + (pos - start) / REFERENCE_UBATCH * REFERENCE_UBATCH;
            return (u0, (u0 + REFERENCE_UBATCH).min(end) - u0);
        }
        start = end;
    }
}

impl RowOrder {
    /// The order of the prompt row at `pos` of a `prompt_len`-token prompt
    /// as the reference server evaluates it (batches of up to
    /// [`REFERENCE_BATCH`] tokens, ending [`REFERENCE_CHECKPOINT_TAIL`] and
    /// that plus [`REFERENCE_UBATCH`] tokens before the prompt's end when
    /// `checkpoints` is set, for a model with a sliding window; ubatches of
    /// [`REFERENCE_UBATCH`] within each): the ubatch holding
    /// `pos` goes to the four-row GEMM in whole groups of four (the rest one
    /// row at a time), and to the tiled Q6_K matmul when it has eight rows
    /// or more. Positions past the prompt are decode steps.
    pub fn prompt_row(pos: usize, prompt_len: usize, checkpoints: bool) -> RowOrder {
        if pos >= prompt_len {
            return RowOrder::default();
        }
        let (start, rows) = reference_ubatch(pos, prompt_len, checkpoints);
        RowOrder {
            q4k_in_quad: pos - start < rows / 4 * 4,
            q6k_tiled: rows >= 8,
            f32_attention: rows >= REFERENCE_F32_ATTENTION_ROWS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_rows_follow_the_reference_batches() {
        let at = |p, n| RowOrder::prompt_row(p, n, false);
        // Three rows: all alone.
        for p in 0..3 {
            assert_eq!(at(p, 3), RowOrder::default());
        }
        // Six rows: the first four grouped, no tiling.
        assert!(at(3, 6).q4k_in_quad);
        assert!(!at(4, 6).q4k_in_quad);
        assert!(!at(0, 6).q6k_tiled);
        // Ten rows: tiled; the last two alone for Q4_K.
        assert!(at(9, 10).q6k_tiled);
        assert!(at(7, 10).q4k_in_quad);
        assert!(!at(8, 10).q4k_in_quad);
        // 515 rows: the second ubatch has three rows.
        assert!(at(511, 515).q4k_in_quad);
        assert_eq!(at(512, 515), RowOrder::default());
        // Attention: single precision from 64 rows of a ubatch on.
        assert!(at(0, 64).f32_attention && !at(0, 63).f32_attention);
        assert!(at(511, 570).f32_attention && !at(512, 570).f32_attention);
        // Past the prompt: a decode row.
        assert_eq!(at(10, 10), RowOrder::default());
    }

    #[test]
    fn checkpointing_models_split_off_the_prompt_tail() {
        let ub = |p, n| reference_ubatch(p, n, true);
        // Ten tokens: [0, 6) then [6, 10).
        assert_eq!(ub(0, 10), (0, 6));
        assert_eq!(ub(5, 10), (0, 6));
        assert_eq!(ub(6, 10), (6, 4));
        let o = RowOrder::prompt_row(7, 10, true);
        assert!(o.q4k_in_quad && !o.q6k_tiled);
        assert!(!RowOrder::prompt_row(5, 10, true).q4k_in_quad);
        // Four tokens or fewer: no split.
        assert_eq!(ub(3, 4), (0, 4));
        // 1000 tokens: [0, 484), [484, 996) and [996, 1000).
        assert_eq!(ub(483, 1000), (0, 484));
        assert_eq!(ub(484, 1000), (484, 512));
        assert_eq!(ub(995, 1000), (484, 512));
        assert_eq!(ub(996, 1000), (996, 4));
        // 3000 tokens: a 2048-token batch first, then ubatches of 512.
        assert_eq!(ub(2047, 3000), (1536, 512));
        assert_eq!(ub(2048, 3000), (2048, 436));
        assert_eq!(ub(2484, 3000), (2484, 512));
        // Without checkpoints: plain ubatches.
        assert_eq!(reference_ubatch(999, 1000, false), (512, 488));
    }
}
