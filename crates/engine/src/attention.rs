//! Causal attention of a batch of rows over the block KV cache.
//!
//! Two numerics, chosen per row by how many rows of its sequence the
//! reference's batch held ([`kernels::RowOrder::f32_attention`], following
//! llama.cpp's CPU flash attention, so our logits track the reference's
//! however the scheduler cuts a prompt into passes): short prompts and
//! decode steps take a half-precision online softmax that reproduces
//! llama.cpp's F16 kernel ([`attend_f16`]); rows of long prompt batches take
//! single precision, computed in tiles of queries that share a KV head
//! ([`tiled`]) so that each key and value row is read once per tile rather
//! than once per query.

mod tiled;

use std::collections::HashMap;
use std::ops::Range;

use kernels::{attend_f16, KvRows, ThreadPool};

use crate::error::EngineError;
use crate::kv::{KvCache, SeqId, SeqView};
use crate::layers::BatchRow;

/// The geometry of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Multiplies q·k before the softmax.
    pub scale: f32,
    /// Sliding window: a row at position p sees keys at positions > p - window.
    pub window: Option<usize>,
}

impl AttnShape {
    /// Keys a row at `pos` attends to: the causal prefix, cut to the window.
    fn keys(&self, pos: usize) -> Range<usize> {
        let lo = self.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        lo..pos + 1
    }
}

/// About this many queries (rows × heads of one KV-head group) share a tile of
/// the single-precision path: enough to reuse each key and value row many
/// times while the tile's queries and sums stay in the core's caches.
const QUERIES_PER_TILE: usize = 32;

/// A raw pointer that tasks of one `ThreadPool::run` share to write disjoint slices.
struct SharedOut(*mut f32);
// SAFETY: every task writes only its own, non-overlapping ranges (see `attention`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `[at, at + len)` must lie inside the buffer and no other task may touch it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// One task of a pass.
#[derive(Debug, Clone)]
enum Job {
    /// One row and one query head, in half precision.
    Narrow { row: usize, head: usize },
    /// Rows `order[rows]` (all of one sequence) with every query head of KV
    /// head `kv_head`, in single precision.
    Tile { rows: Range<usize>, kv_head: usize },
}

/// Splits a pass into tasks: rows of sequences with many rows in tiles (the
/// tiles that see the most keys first, so the pool ends evenly), the others
/// one (row, head) at a time. `order` lists the tiled rows, grouped by sequence.
fn plan(rows: &[BatchRow], shape: AttnShape) -> (Vec<Job>, Vec<usize>) {
    let mut by_seq: HashMap<SeqId, Vec<usize>> = HashMap::new();
    let mut seqs = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        by_seq
            .entry(r.seq)
            .or_insert_with(|| {
                seqs.push(r.seq);
                Vec::new()
            })
            .push(i);
    }
    let group = shape.n_head / shape.n_kv_head;
    let tile_rows = QUERIES_PER_TILE.div_ceil(group).max(1);
    let (mut wide, mut narrow, mut order) = (Vec::new(), Vec::new(), Vec::new());
    for seq in seqs {
        let Some(idx) = by_seq.remove(&seq) else {
            continue;
        };
        // Rows the reference takes in single precision go in tiles (however
        // few this pass holds); the others one (row, head) at a time.
        let (mut idx, single): (Vec<usize>, Vec<usize>) =
            idx.into_iter().partition(|&i| rows[i].order.f32_attention);
        for row in single {
            narrow.extend((0..shape.n_head).map(|head| Job::Narrow { row, head }));
        }
        if !idx.is_empty() {
            idx.sort_by_key(|&i| rows[i].pos);
            let base = order.len();
            order.extend_from_slice(&idx);
            for start in (0..idx.len()).step_by(tile_rows).rev() {
                let end = (start + tile_rows).min(idx.len());
                for kv_head in 0..shape.n_kv_head {
                    wide.push(Job::Tile {
                        rows: base + start..base + end,
                        kv_head,
                    });
                }
            }
        }
    }
    wide.extend(narrow);
    (wide, order)
}

/// Causal attention of each batch row over its own sequence's cached keys and
/// values (which must already include the batch's rows). `q` and `out` are
/// `rows.len() × n_head*head_dim`.
pub fn attention(
    rows: &[BatchRow],
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    shape: AttnShape,
    pool: &ThreadPool,
    out: &mut [f32],
) -> Result<(), EngineError> {
    let hd = shape.head_dim;
    let q_dim = shape.n_head * hd;
    assert_eq!(out.len(), rows.len() * q_dim, "attention output size");
    assert_eq!(q.len(), rows.len() * q_dim, "attention query size");
    let views = rows
        .iter()
        .map(|r| kv.view(layer, r.seq))
        .collect::<Result<Vec<_>, _>>()?;
    let (jobs, order) = plan(rows, shape);
    let group = shape.n_head / shape.n_kv_head;
    let shared = SharedOut(out.as_mut_ptr());
    let task = |t: usize| match &jobs[t] {
        &Job::Narrow { row: r, head: h } => {
            let head = HeadView {
                view: &views[r],
                off: (h / group) * hd,
                len: hd,
            };
            let qh = &q[r * q_dim + h * hd..r * q_dim + (h + 1) * hd];
            // SAFETY: this task alone owns out[r*q_dim + h*hd .. + hd] (each
            // (row, head) belongs to exactly one job), and `out` outlives
            // `pool.run`, which returns only when every task is done.
            let o = unsafe { shared.slice(r * q_dim + h * hd, hd) };
            attend_f16(qh, &head, shape.keys(rows[r].pos), shape.scale, o);
        }
        Job::Tile {
            rows: span,
            kv_head,
        } => {
            let tile = &order[span.clone()];
            let head = HeadView {
                view: &views[tile[0]],
                off: kv_head * hd,
                len: hd,
            };
            let heads = kv_head * group..(kv_head + 1) * group;
            let n_q = tile.len() * group;
            let mut qt = Vec::with_capacity(n_q * hd);
            let mut ranges = Vec::with_capacity(n_q);
            for &r in tile {
                for h in heads.clone() {
                    qt.extend_from_slice(&q[r * q_dim + h * hd..r * q_dim + (h + 1) * hd]);
                    ranges.push(shape.keys(rows[r].pos));
                }
            }
            let mut ot = vec![0.0f32; n_q * hd];
            tiled::attend(&qt, &ranges, &head, shape.scale, &mut ot);
            let mut src = ot.chunks_exact(hd);
            for &r in tile {
                for h in heads.clone() {
                    // SAFETY: as above; a row belongs to one tile and a head to
                    // one KV-head group, so no other job writes this slice.
                    let o = unsafe { shared.slice(r * q_dim + h * hd, hd) };
                    if let Some(s) = src.next() {
                        o.copy_from_slice(s);
                    }
                }
            }
        }
    };
    pool.run(jobs.len(), &task);
    Ok(())
}

/// One KV head of one sequence.
struct HeadView<'a> {
    view: &'a SeqView<'a>,
    off: usize,
    len: usize,
}

impl KvRows for HeadView<'_> {
    #[inline]
    fn key(&self, p: usize) -> &[u16] {
        &self.view.key(p)[self.off..self.off + self.len]
    }

    #[inline]
    fn value(&self, p: usize) -> &[u16] {
        &self.view.value(p)[self.off..self.off + self.len]
    }
}

#[cfg(test)]
mod tests;
