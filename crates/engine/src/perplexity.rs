//! Perplexity and KL divergence of a model over a text, computed as
//! llama.cpp's `llama-perplexity` computes them, so the two can be compared
//! on the same file.
//!
//! - The text's tokens (BOS first when the model adds one) are cut into
//!   `n_ctx`-token chunks (a partial last chunk is dropped). Each chunk is
//!   evaluated from an empty cache, its first token replaced by BOS when the
//!   model adds one, and only its second half is scored: the logits at
//!   positions `n_ctx/2 .. n_ctx-1` predict the tokens one further on
//!   (`n_ctx - 1 - n_ctx/2` predictions per chunk).
//! - PPL is `exp(mean NLL)`, its uncertainty `PPL · sqrt(var(NLL)/(n-1))`.
//! - Log-probabilities can be saved in llama-perplexity's
//!   `--kl-divergence-base` file format ([`LogitsWriter`]), and a model's
//!   logits compared with such a file ([`KlStats`]): mean KL divergence,
//!   top-1 agreement and Δp (the change in the probability of the right
//!   token), with llama.cpp's formulas.
//!
//! The file format (little-endian): `"_logits_"`, `n_ctx: u32`,
//! `n_vocab: i32`, `n_chunk: i32`, the `n_chunk · n_ctx` evaluated tokens
//! (`i32`), then per chunk and scored position one record of
//! `nv = 2·ceil(n_vocab/2) + 4` `u16`s: two `f32`s (`scale`,
//! `min_log_prob`) and each token's log-probability as
//! `min_log_prob + scale · q` (`q = 0` below `max − 16`).

use std::io::{Read, Write};

use kernels::{RowOrder, ThreadPool};

use crate::error::EngineError;
use crate::layers::BatchRow;
use crate::model::Model;

/// Rows evaluated per forward pass (llama.cpp's physical batch).
const BATCH: usize = kernels::REFERENCE_UBATCH;

/// The magic that opens a log-probabilities file.
const MAGIC: &[u8; 8] = b"_logits_";

/// The tokens of a text as llama-perplexity evaluates them: cut into
/// `n_ctx`-token chunks.
#[derive(Debug, Clone)]
pub struct Chunks {
    pub n_ctx: usize,
    /// `n_chunk · n_ctx` tokens, as tokenized (before BOS replacement).
    pub tokens: Vec<u32>,
    /// Whether each chunk's first token is replaced by `bos` when evaluated.
    pub bos: Option<u32>,
}

impl Chunks {
    /// Cuts `tokens` (the whole text, tokenized with special tokens added)
    /// into `n_ctx`-token chunks, at most `max_chunks` of them. Needs at
    /// least `2 · n_ctx` tokens, as llama-perplexity does.
    pub fn new(
        mut tokens: Vec<u32>,
        n_ctx: usize,
        bos: Option<u32>,
        max_chunks: Option<usize>,
    ) -> Result<Self, EngineError> {
        if n_ctx < 4 {
            return Err(EngineError::InvalidRequest(format!(
                "a context of {n_ctx} tokens is too small to score (at least 4)"
            )));
        }
        if tokens.len() < 2 * n_ctx {
            return Err(EngineError::InvalidRequest(format!(
                "the text tokenizes to {} tokens; a context of {n_ctx} needs at least {}",
                tokens.len(),
                2 * n_ctx
            )));
        }
        let mut n_chunk = tokens.len() / n_ctx;
        if let Some(m) = max_chunks {
            n_chunk = n_chunk.min(m.max(1));
        }
        tokens.truncate(n_chunk * n_ctx);
        Ok(Chunks { n_ctx, tokens, bos })
    }

    pub fn n_chunk(&self) -> usize {
        self.tokens.len() / self.n_ctx
    }

    /// The first scored position of a chunk.
    pub fn first(&self) -> usize {
        self.n_ctx / 2
    }

    /// Predictions scored per chunk.
    pub fn scored_per_chunk(&self) -> usize {
        self.n_ctx - 1 - self.first()
    }

    /// Chunk `i`'s tokens as evaluated (first one BOS when the model adds it).
    pub fn chunk_input(&self, i: usize) -> Vec<u32> {
        let mut t = self.tokens[i * self.n_ctx..(i + 1) * self.n_ctx].to_vec();
        if let Some(b) = self.bos {
            t[0] = b;
        }
        t
    }

    /// The tokens chunk `i`'s scored logits predict (`scored_per_chunk`).
    pub fn targets(&self, i: usize) -> &[u32] {
        let s = i * self.n_ctx + self.first() + 1;
        &self.tokens[s..(i + 1) * self.n_ctx]
    }
}

/// Evaluates chunk `i` from an empty cache and returns the logits of
/// positions `first ..= n_ctx - 2`, `n_vocab` each (the last position's
/// logits predict nothing in the chunk and are dropped).
pub fn chunk_logits(
    model: &Model,
    chunks: &Chunks,
    i: usize,
    pool: &ThreadPool,
) -> Result<Vec<f32>, EngineError> {
    let n_ctx = chunks.n_ctx;
    let first = chunks.first();
    let input = chunks.chunk_input(i);
    let mut kv = model.new_kv_cache(n_ctx);
    kv.reserve(1, n_ctx)?;
    let mut logits = Vec::with_capacity((n_ctx - first) * model.config().n_vocab);
    let mut buf = Vec::new();
    for b0 in (0..n_ctx).step_by(BATCH) {
        let b1 = (b0 + BATCH).min(n_ctx);
        let rows: Vec<BatchRow> = (b0..b1)
            .map(|pos| BatchRow {
                seq: 1,
                pos,
                token: input[pos],
                want_logits: pos >= first,
                // llama-perplexity's ubatches each hold one chunk's batch.
                order: RowOrder::prompt_row(pos - b0, b1 - b0, false),
            })
            .collect();
        model.forward_into(&rows, &mut kv, pool, &mut buf)?;
        logits.extend_from_slice(&buf);
    }
    let n_vocab = model.config().n_vocab;
    logits.truncate((n_ctx - 1 - first) * n_vocab);
    Ok(logits)
}

/// The negative log-likelihood of `tok` under `logits`, as llama.cpp sums
/// it (f32 exponentials, an f64 sum).
pub fn nll(logits: &[f32], tok: u32) -> f64 {
    let max = logits.iter().copied().fold(logits[0], f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(max) + sum.ln() - f64::from(logits[tok as usize])
}

/// Running sums of the scored NLLs.
#[derive(Debug, Clone, Default)]
pub struct PplStats {
    pub nll: f64,
    pub nll2: f64,
    pub count: usize,
}

impl PplStats {
    pub fn add(&mut self, v: f64) {
        self.nll += v;
        self.nll2 += v * v;
        self.count += 1;
    }

    /// exp(mean NLL).
    pub fn ppl(&self) -> f64 {
        (self.nll / self.count.max(1) as f64).exp()
    }

    /// PPL and its uncertainty, as llama-perplexity's final estimate.
    pub fn estimate(&self) -> (f64, f64) {
        let n = self.count.max(1) as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        let ppl = mean.exp();
        let unc = if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt() * ppl
        } else {
            0.0
        };
        (ppl, unc)
    }
}

/// Rounds to the nearest integer as llama.cpp's `nearest_int` does (half to even).
fn nearest_int(v: f32) -> i32 {
    let t = v + 12_582_912.0;
    ((t.to_bits() & 0x007f_ffff) as i32) - 0x0040_0000
}

/// `u16`s per record of the log-probabilities file.
pub fn record_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// Writes `logits`' log-probabilities compressed into `rec` (as
/// llama-perplexity saves them) and returns the NLL of `tok`.
pub fn compress_log_probs(logits: &[f32], tok: u32, rec: &mut [u16]) -> f64 {
    let max = logits.iter().copied().fold(logits[0], f32::max);
    let min = logits
        .iter()
        .copied()
        .fold(logits[0], f32::min)
        .max(max - 16.0);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum = sum.ln() as f32;
    let min_log_prob = min - max - log_sum;
    let scale = (max - min) / 65535.0;
    rec[0..2].copy_from_slice(&split_f32(scale));
    rec[2..4].copy_from_slice(&split_f32(min_log_prob));
    let q = &mut rec[4..];
    q.fill(0);
    if scale != 0.0 {
        let inv = 1.0 / scale;
        for (o, &l) in q.iter_mut().zip(logits) {
            if l > min {
                *o = nearest_int(inv * (l - min)) as u16;
            }
        }
    }
    f64::from(max + log_sum - logits[tok as usize])
}

fn split_f32(v: f32) -> [u16; 2] {
    let b = v.to_bits();
    [(b & 0xffff) as u16, (b >> 16) as u16]
}

fn join_f32(lo: u16, hi: u16) -> f32 {
    f32::from_bits(u32::from(lo) | (u32::from(hi) << 16))
}

/// Writes a log-probabilities file as llama-perplexity's
/// `--kl-divergence-base` run does.
pub struct LogitsWriter<W: Write> {
    out: W,
    n_vocab: usize,
    rec: Vec<u16>,
}

impl<W: Write> LogitsWriter<W> {
    /// Writes the header: the chunking and the evaluated tokens.
    pub fn new(mut out: W, chunks: &Chunks, n_vocab: usize) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&(chunks.n_ctx as u32).to_le_bytes())?;
        out.write_all(&(n_vocab as i32).to_le_bytes())?;
        out.write_all(&(chunks.n_chunk() as i32).to_le_bytes())?;
        for &t in &chunks.tokens {
            out.write_all(&(t as i32).to_le_bytes())?;
        }
        Ok(LogitsWriter {
            out,
            n_vocab,
            rec: vec![0; record_len(n_vocab)],
        })
    }

    /// Appends one chunk's records (its scored logits and targets) and
    /// returns their NLLs.
    pub fn chunk(&mut self, logits: &[f32], targets: &[u32]) -> std::io::Result<Vec<f64>> {
        let mut nlls = Vec::with_capacity(targets.len());
        let mut bytes = Vec::with_capacity(self.rec.len() * 2);
        for (row, &t) in logits.chunks_exact(self.n_vocab).zip(targets) {
            nlls.push(compress_log_probs(row, t, &mut self.rec));
            bytes.clear();
            bytes.extend(self.rec.iter().flat_map(|v| v.to_le_bytes()));
            self.out.write_all(&bytes)?;
        }
        Ok(nlls)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A log-probabilities file being read: its header, then one chunk's
/// records at a time.
pub struct LogitsReader<R: Read> {
    input: R,
    pub n_vocab: usize,
    pub chunks: Chunks,
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidRequest(msg.into())
}

impl<R: Read> LogitsReader<R> {
    /// Reads the header; `bos` is the model's BOS when it adds one (the file
    /// does not record it).
    pub fn new(mut input: R, bos: Option<u32>) -> Result<Self, EngineError> {
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| bad("the base file is too short to hold log-probabilities"))?;
        if &magic != MAGIC {
            return Err(bad(
                "the base file does not look like a log-probabilities file (no _logits_ header)",
            ));
        }
        let mut word = || -> Result<i64, EngineError> {
            let mut b = [0u8; 4];
            input
                .read_exact(&mut b)
                .map_err(|_| bad("the base file's header is cut short"))?;
            Ok(i64::from(i32::from_le_bytes(b)))
        };
        let (n_ctx, n_vocab, n_chunk) = (word()?, word()?, word()?);
        if !(4..=1 << 20).contains(&n_ctx) || !(1..=1 << 24).contains(&n_vocab) || n_chunk < 1 {
            return Err(bad(format!(
                "the base file's header is not sensible (n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk})"
            )));
        }
        let (n_ctx, n_vocab, n_chunk) = (n_ctx as usize, n_vocab as usize, n_chunk as usize);
        let mut raw = vec![0u8; n_ctx * n_chunk * 4];
        input
            .read_exact(&mut raw)
            .map_err(|_| bad("the base file's tokens are cut short"))?;
        let tokens = raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u32)
            .collect();
        Ok(LogitsReader {
            input,
            n_vocab,
            chunks: Chunks { n_ctx, tokens, bos },
        })
    }

    /// The next chunk's records (`scored_per_chunk · record_len` values).
    pub fn next_chunk(&mut self) -> Result<Vec<u16>, EngineError> {
        let n = self.chunks.scored_per_chunk() * record_len(self.n_vocab);
        let mut raw = vec![0u8; n * 2];
        self.input
            .read_exact(&mut raw)
            .map_err(|_| bad("the base file's log-probabilities are cut short"))?;
        Ok(raw
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect())
    }
}

/// KL divergence statistics against a base's log-probabilities, with
/// llama-perplexity's formulas.
#[derive(Debug, Clone, Default)]
pub struct KlStats {
    pub ppl: PplStats,
    pub base: PplStats,
    pub sum_nll_nll_base: f64,
    pub sum_kld: f64,
    pub sum_kld2: f64,
    pub sum_p_diff: f64,
    pub sum_p_diff2: f64,
    pub sum_p_diff4: f64,
    pub max_p_diff: f32,
    pub same_top: usize,
    /// Each prediction's KL divergence and Δp, for the percentiles.
    pub klds: Vec<f32>,
    pub p_diffs: Vec<f32>,
}

/// A mean and its standard error, as llama-perplexity computes them.
pub fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let df = sum2 / n - f * f;
    let df = if df > 0.0 && count > 10 {
        (df / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (f, df)
}

impl KlStats {
    /// Adds one prediction: our `logits`, the base's record `rec`, the right token `tok`.
    pub fn add(&mut self, logits: &[f32], rec: &[u16], tok: u32) {
        let (mut max, mut imax) = (logits[0], 0usize);
        for (i, &l) in logits.iter().enumerate().skip(1) {
            if l > max {
                max = l;
                imax = i;
            }
        }
        let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
        let log_sum = sum.ln() as f32;
        let scale = join_f32(rec[0], rec[1]);
        let min_log_prob = join_f32(rec[2], rec[3]);
        let q = &rec[4..];
        let nll = max + log_sum - logits[tok as usize];
        let nll_base = -(scale * f32::from(q[tok as usize]) + min_log_prob);
        self.ppl.add(f64::from(nll));
        self.base.add(f64::from(nll_base));
        self.sum_nll_nll_base += f64::from(nll) * f64::from(nll_base);
        let lse = max + log_sum;
        let mut kld = 0.0f64;
        let (mut imax_base, mut base_max) = (0usize, 0.0f32);
        for (i, (&qi, &l)) in q.iter().zip(logits).enumerate() {
            let lp_base = scale * f32::from(qi) + min_log_prob;
            if i == 0 || lp_base > base_max {
                base_max = lp_base;
                imax_base = i;
            }
            if lp_base > -16.0 {
                kld += f64::from(lp_base.exp() * (lp_base - l + lse));
            }
        }
        self.sum_kld += kld;
        self.sum_kld2 += kld * kld;
        if imax == imax_base {
            self.same_top += 1;
        }
        let p_diff = (-nll).exp() - (-nll_base).exp();
        self.sum_p_diff += f64::from(p_diff);
        let d2 = f64::from(p_diff) * f64::from(p_diff);
        self.sum_p_diff2 += d2;
        self.sum_p_diff4 += d2 * d2;
        self.max_p_diff = self.max_p_diff.max(p_diff.abs());
        self.klds.push(kld as f32);
        self.p_diffs.push(p_diff);
    }

    pub fn count(&self) -> usize {
        self.ppl.count
    }

    /// Mean KL divergence and its uncertainty.
    pub fn kld(&self) -> (f64, f64) {
        mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count())
    }

    /// The share of predictions whose most likely token is the base's.
    pub fn same_top(&self) -> f64 {
        self.same_top as f64 / self.count().max(1) as f64
    }

    /// RMS of Δp and its uncertainty.
    pub fn p_diff_rms(&self) -> (f64, f64) {
        let (mse, unc) = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, self.count());
        let rms = mse.sqrt();
        let unc = if rms > 0.0 { 0.5 / rms * unc } else { 0.0 };
        (rms, unc)
    }

    /// Covariance of our NLLs and the base's, as llama-perplexity takes it.
    pub fn log_ppl_cov(&self) -> f64 {
        let n = self.count();
        if n < 10 {
            return 0.0;
        }
        let nf = n as f64;
        let var = self.sum_nll_nll_base / nf - (self.ppl.nll / nf) * (self.base.nll / nf);
        var / (nf - 1.0)
    }

    /// ln(PPL(Q)/PPL(base)) and its uncertainty.
    pub fn log_ppl_ratio(&self) -> (f64, f64) {
        let a = mean_and_uncertainty(self.ppl.nll, self.ppl.nll2, self.count());
        let b = mean_and_uncertainty(self.base.nll, self.base.nll2, self.count());
        let unc = (a.1 * a.1 + b.1 * b.1 - 2.0 * self.log_ppl_cov())
            .max(0.0)
            .sqrt();
        (a.0 - b.0, unc)
    }
}

/// A percentile of sorted `values`, interpolated as llama-perplexity does.
pub fn percentile(sorted: &[f32], fraction: f32) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    if fraction <= 0.0 {
        return sorted[0];
    }
    if fraction >= 1.0 {
        return sorted[sorted.len() - 1];
    }
    let p = fraction * (sorted.len() - 1) as f32;
    let ip = p as usize;
    let frac = p - ip as f32;
    (1.0 - frac) * sorted[ip] + frac * sorted[(ip + 1).min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_llama_perplexity() {
        let tokens: Vec<u32> = (0..2100).collect();
        let c = Chunks::new(tokens, 512, Some(7), None).unwrap();
        assert_eq!(c.n_chunk(), 4);
        assert_eq!(c.first(), 256);
        assert_eq!(c.scored_per_chunk(), 255);
        let input = c.chunk_input(1);
        assert_eq!(input[0], 7);
        assert_eq!(input[1], 513);
        assert_eq!(c.targets(1).len(), 255);
        assert_eq!(c.targets(1)[0], 512 + 257);
        assert!(Chunks::new((0..1000).collect(), 512, None, None).is_err());
        assert_eq!(
            Chunks::new((0..5000).collect(), 512, None, Some(2))
                .unwrap()
                .n_chunk(),
            2
        );
    }

    #[test]
    fn compressed_log_probs_round_trip() {
        let logits: Vec<f32> = (0..101)
            .map(|i| ((i * 37) % 23) as f32 * 0.7 - 5.0)
            .collect();
        let mut rec = vec![0u16; record_len(logits.len())];
        assert_eq!(rec.len(), 102 + 4);
        let nll_q = compress_log_probs(&logits, 3, &mut rec);
        let exact = nll(&logits, 3);
        assert!((nll_q - exact).abs() < 1e-5, "{nll_q} vs {exact}");
        // Against itself: KL ~ 0, the same top token, Δp ~ 0.
        let mut kl = KlStats::default();
        kl.add(&logits, &rec, 3);
        assert!(kl.sum_kld.abs() < 1e-4, "kld {}", kl.sum_kld);
        assert_eq!(kl.same_top, 1);
        assert!(kl.p_diffs[0].abs() < 1e-4);
        // A different distribution: KL clearly positive, top differs.
        let other: Vec<f32> = logits.iter().rev().copied().collect();
        let mut kl2 = KlStats::default();
        kl2.add(&other, &rec, 3);
        assert!(kl2.sum_kld > 0.1);
    }

    #[test]
    fn writer_and_reader_agree() {
        let n_vocab = 5;
        let c = Chunks::new((0..16).map(|i| i % 5).collect(), 8, Some(1), None).unwrap();
        let mut w = LogitsWriter::new(Vec::new(), &c, n_vocab).unwrap();
        for i in 0..c.n_chunk() {
            let logits: Vec<f32> = (0..c.scored_per_chunk() * n_vocab)
                .map(|k| (k % 7) as f32)
                .collect();
            let nlls = w.chunk(&logits, c.targets(i)).unwrap();
            assert_eq!(nlls.len(), 3);
        }
        let bytes = w.finish().unwrap();
        let mut r = LogitsReader::new(&bytes[..], Some(1)).unwrap();
        assert_eq!(r.n_vocab, 5);
        assert_eq!(r.chunks.n_ctx, 8);
        assert_eq!(r.chunks.tokens, c.tokens);
        for _ in 0..2 {
            assert_eq!(r.next_chunk().unwrap().len(), 3 * record_len(5));
        }
        assert!(r.next_chunk().is_err());
        assert!(LogitsReader::new(&b"_logitz_"[..], None).is_err());
        assert!(LogitsReader::new(&bytes[..20], None).is_err());
    }

    #[test]
    fn estimate_matches_hand_computation() {
        let mut s = PplStats::default();
        for v in [1.0, 2.0, 3.0] {
            s.add(v);
        }
        let (ppl, unc) = s.estimate();
        assert!((ppl - 2.0f64.exp()).abs() < 1e-12);
        // var = (1+4+9)/3 - 4 = 2/3; sqrt(var/2) = sqrt(1/3)
        assert!((unc - ppl * (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
