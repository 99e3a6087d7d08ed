//! The block KV cache: a fixed pool of blocks, each holding `block_size`
//! positions of keys and values for every layer; each sequence owns a table of
//! blocks. The model reads and writes through it but does not own it, so the
//! scheduler can run many sequences in one batch and free a sequence's blocks
//! the moment its client leaves.

use std::collections::HashMap;

/// Identifies one sequence in the cache (chosen by the scheduler).
pub type SeqId = u64;

/// Positions per block.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    #[error("KV cache is full: {needed} more blocks needed, {free} free")]
    OutOfBlocks { needed: usize, free: usize },
    #[error("unknown sequence {0}")]
    UnknownSequence(SeqId),
}

#[derive(Debug, Default)]
struct SeqBlocks {
    blocks: Vec<u32>,
    /// Positions with keys and values written.
    len: usize,
}

/// Key and value storage for all layers of one model.
pub struct KvCache {
    n_layers: usize,
    kv_dim: usize,
    block_size: usize,
    /// `[layer][block][slot][kv_dim]`, flattened per layer.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    free: Vec<u32>,
    seqs: HashMap<SeqId, SeqBlocks>,
}

impl KvCache {
    /// A cache for `capacity_tokens` positions in all, shared by every sequence.
    pub fn new(n_layers: usize, kv_dim: usize, block_size: usize, capacity_tokens: usize) -> Self {
        let n_blocks = capacity_tokens.div_ceil(block_size).max(1);
        let per_layer = n_blocks * block_size * kv_dim;
        KvCache {
            n_layers,
            kv_dim,
            block_size,
            k: (0..n_layers).map(|_| vec![0.0; per_layer]).collect(),
            v: (0..n_layers).map(|_| vec![0.0; per_layer]).collect(),
            free: (0..n_blocks as u32).rev().collect(),
            seqs: HashMap::new(),
        }
    }

    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Blocks in the pool, free or not.
    pub fn total_blocks(&self) -> usize {
        self.k
            .first()
            .map_or(0, |l| l.len() / (self.block_size * self.kv_dim))
    }

    /// Blocks needed to hold `tokens` positions.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Positions already written for `seq` (0 for an unknown sequence).
    pub fn seq_len(&self, seq: SeqId) -> usize {
        self.seqs.get(&seq).map_or(0, |s| s.len)
    }

    /// Makes room for `seq` to hold `total` positions, allocating blocks as needed.
    pub fn reserve(&mut self, seq: SeqId, total: usize) -> Result<(), KvError> {
        let have = self.seqs.get(&seq).map_or(0, |s| s.blocks.len());
        let need = self.blocks_for(total).saturating_sub(have);
        if need > self.free.len() {
            return Err(KvError::OutOfBlocks {
                needed: need,
                free: self.free.len(),
            });
        }
        let entry = self.seqs.entry(seq).or_default();
        for _ in 0..need {
            // Checked above: `need <= free.len()`.
            if let Some(b) = self.free.pop() {
                entry.blocks.push(b);
            }
        }
        Ok(())
    }

    /// Releases every block of `seq`.
    pub fn free_seq(&mut self, seq: SeqId) {
        if let Some(s) = self.seqs.remove(&seq) {
            self.free.extend(s.blocks);
        }
    }

    fn index(&self, seq: SeqId, pos: usize) -> Result<usize, KvError> {
        let s = self.seqs.get(&seq).ok_or(KvError::UnknownSequence(seq))?;
        let block = *s
            .blocks
            .get(pos / self.block_size)
            .ok_or(KvError::OutOfBlocks {
                needed: 1,
                free: self.free.len(),
            })?;
        Ok((block as usize * self.block_size + pos % self.block_size) * self.kv_dim)
    }

    /// Writes the key and value rows of `seq` at `pos` in `layer`, rounded to
    /// half precision as llama.cpp's default F16 cache stores them (so that
    /// our numbers track the reference's).
    pub fn write(
        &mut self,
        layer: usize,
        seq: SeqId,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), KvError> {
        let at = self.index(seq, pos)?;
        let round = |x: f32| kernels::f16_to_f32(kernels::f32_to_f16(x));
        for (dst, &x) in self.k[layer][at..at + self.kv_dim].iter_mut().zip(k) {
            *dst = round(x);
        }
        for (dst, &x) in self.v[layer][at..at + self.kv_dim].iter_mut().zip(v) {
            *dst = round(x);
        }
        let s = self
            .seqs
            .get_mut(&seq)
            .ok_or(KvError::UnknownSequence(seq))?;
        s.len = s.len.max(pos + 1);
        Ok(())
    }

    /// A read view of one sequence's keys and values in one layer.
    pub fn view(&self, layer: usize, seq: SeqId) -> Result<SeqView<'_>, KvError> {
        let s = self.seqs.get(&seq).ok_or(KvError::UnknownSequence(seq))?;
        Ok(SeqView {
            k: &self.k[layer],
            v: &self.v[layer],
            blocks: &s.blocks,
            block_size: self.block_size,
            kv_dim: self.kv_dim,
        })
    }
}

/// Keys and values of one sequence in one layer, addressed by position.
pub struct SeqView<'a> {
    k: &'a [f32],
    v: &'a [f32],
    blocks: &'a [u32],
    block_size: usize,
    kv_dim: usize,
}

impl SeqView<'_> {
    fn at(&self, pos: usize) -> usize {
        (self.blocks[pos / self.block_size] as usize * self.block_size + pos % self.block_size)
            * self.kv_dim
    }

    /// The whole key row (all KV heads) at `pos`; `pos` must be below the reserved length.
    pub fn key(&self, pos: usize) -> &[f32] {
        let at = self.at(pos);
        &self.k[at..at + self.kv_dim]
    }

    pub fn value(&self, pos: usize) -> &[f32] {
        let at = self.at(pos);
        &self.v[at..at + self.kv_dim]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_reserved_reused_and_refused_when_full() {
        let mut kv = KvCache::new(2, 4, 4, 16); // 4 blocks
        kv.reserve(1, 9).unwrap(); // 3 blocks
        assert_eq!(kv.free_blocks(), 1);
        assert_eq!(
            kv.reserve(2, 8),
            Err(KvError::OutOfBlocks { needed: 2, free: 1 })
        );
        kv.write(1, 1, 8, &[1.0, 2.0, 3.0, 4.0], &[5.0; 4]).unwrap(); // exact in f16
        assert_eq!(kv.view(1, 1).unwrap().key(8), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(kv.seq_len(1), 9);
        kv.free_seq(1);
        assert_eq!(kv.free_blocks(), 4);
        kv.reserve(2, 16).unwrap();
        assert_eq!(kv.free_blocks(), 0);
    }

    #[test]
    fn sequences_do_not_see_each_other() {
        let mut kv = KvCache::new(1, 2, 2, 8);
        kv.reserve(1, 2).unwrap();
        kv.reserve(2, 2).unwrap();
        kv.write(0, 1, 0, &[1.0, 1.0], &[1.0, 1.0]).unwrap();
        kv.write(0, 2, 0, &[2.0, 2.0], &[2.0, 2.0]).unwrap();
        assert_eq!(kv.view(0, 1).unwrap().key(0), &[1.0, 1.0]);
        assert_eq!(kv.view(0, 2).unwrap().value(0), &[2.0, 2.0]);
        assert!(kv.write(0, 3, 0, &[0.0; 2], &[0.0; 2]).is_err());
    }
}
