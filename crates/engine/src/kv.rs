//! The block KV cache: a fixed pool of blocks, each holding `block_size`
//! positions of keys and values for every layer; each sequence owns a table of
//! blocks. The model reads and writes through it but does not own it, so the
//! scheduler can run many sequences in one batch and free a sequence's blocks
//! the moment its client leaves.
//!
//! With prefix caching on, full blocks a sequence has computed are registered
//! in a [`prefix`] index; when the sequence ends they stay in the pool as
//! unreferenced cached blocks, and a later sequence whose tokens start with
//! the same blocks takes them (reference-counted, read-only) instead of
//! computing them again. Every block is in exactly one state: free,
//! referenced by one or more sequences, or cached and unreferenced; the last
//! are evicted least recently used first when the free list runs out.
//!
//! A model with recurrent (linear-attention) layers also keeps a
//! [`SeqState`] per sequence here, beside its blocks: created zeroed on
//! first use, dropped with the sequence. Such a cache never reuses a prefix
//! (cached keys and values alone do not restore the recurrent state).

mod prefix;

use std::collections::HashMap;

pub use prefix::PrefixStats;
use prefix::{Link, PrefixIndex};

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
    #[error("sequence {seq} wrote position {pos}, inside a shared read-only block")]
    ReadOnlyBlock { seq: SeqId, pos: usize },
}

/// The recurrent state one sequence carries beside its keys and values (a
/// model's linear-attention layers: convolution windows and delta-rule
/// matrices, laid out as the model says), and the position it has reached.
#[derive(Debug, Clone, Default)]
pub struct SeqState {
    /// The position of the next row this state expects (0: fresh).
    pub next_pos: usize,
    pub data: Vec<f32>,
}

#[derive(Debug, Default)]
struct SeqBlocks {
    blocks: Vec<u32>,
    /// Positions with keys and values written.
    len: usize,
    /// Prefix-index links of the leading full blocks, one per block.
    chain: Vec<Link>,
    /// A hash collision stopped registration of this sequence's blocks.
    chain_broken: bool,
}

/// Key and value storage for all layers of one model.
pub struct KvCache {
    n_layers: usize,
    kv_dim: usize,
    block_size: usize,
    /// `[layer][block][slot][kv_dim]`, flattened per layer: IEEE half
    /// precision bits, as llama.cpp's default F16 cache stores them.
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
    free: Vec<u32>,
    /// Sequences referencing each block.
    refs: Vec<u32>,
    seqs: HashMap<SeqId, SeqBlocks>,
    prefix: PrefixIndex,
    prefix_caching: bool,
    /// Floats of recurrent state per sequence (0: the model has none).
    state_len: usize,
    states: HashMap<SeqId, SeqState>,
}

impl KvCache {
    /// A cache for `capacity_tokens` positions in all, shared by every
    /// sequence, with prefix caching on (it only acts on blocks registered
    /// through [`KvCache::cache_full_blocks`]).
    pub fn new(n_layers: usize, kv_dim: usize, block_size: usize, capacity_tokens: usize) -> Self {
        let n_blocks = capacity_tokens.div_ceil(block_size).max(1);
        let per_layer = n_blocks * block_size * kv_dim;
        KvCache {
            n_layers,
            kv_dim,
            block_size,
            k: (0..n_layers).map(|_| vec![0; per_layer]).collect(),
            v: (0..n_layers).map(|_| vec![0; per_layer]).collect(),
            free: (0..n_blocks as u32).rev().collect(),
            refs: vec![0; n_blocks],
            seqs: HashMap::new(),
            prefix: PrefixIndex::new(n_blocks),
            prefix_caching: true,
            state_len: 0,
            states: HashMap::new(),
        }
    }

    /// Gives every sequence a recurrent state of `floats_per_seq` floats
    /// ([`KvCache::recurrent_state`]); with any, prefix caching is off for
    /// good (a prefix's keys and values without its state cannot resume it).
    pub fn with_recurrent_state(mut self, floats_per_seq: usize) -> Self {
        self.state_len = floats_per_seq;
        if floats_per_seq > 0 {
            self.prefix_caching = false;
        }
        self
    }

    /// Turns prefix caching on or off; off, finished sequences' blocks go
    /// straight back to the free list and admission never looks up a prefix.
    /// A cache with recurrent state keeps it off.
    pub fn set_prefix_caching(&mut self, on: bool) {
        self.prefix_caching = on && self.state_len == 0;
    }

    /// Whether prefix caching is on.
    pub fn prefix_caching(&self) -> bool {
        self.prefix_caching
    }

    /// The recurrent state of `seq`, zeroed at its first use (`None` when
    /// the model keeps none). It lives until [`KvCache::free_seq`].
    pub fn recurrent_state(&mut self, seq: SeqId) -> Option<&mut SeqState> {
        if self.state_len == 0 {
            return None;
        }
        let len = self.state_len;
        Some(self.states.entry(seq).or_insert_with(|| SeqState {
            next_pos: 0,
            data: vec![0.0; len],
        }))
    }

    #[cfg(test)]
    fn set_hasher(&mut self, hasher: prefix::BlockHasher) {
        self.prefix.set_hasher(hasher);
    }

    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks on the free list (cached blocks not counted).
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Cached blocks no sequence references: kept for reuse, evictable.
    pub fn cached_blocks(&self) -> usize {
        self.prefix.idle_len()
    }

    /// Blocks referenced by at least one sequence.
    pub fn used_blocks(&self) -> usize {
        self.total_blocks() - self.free_blocks() - self.cached_blocks()
    }

    /// Blocks a sequence could be given now: free ones and evictable ones.
    pub fn available_blocks(&self) -> usize {
        self.free.len() + self.prefix.idle_len()
    }

    /// Blocks in the pool, whatever their state.
    pub fn total_blocks(&self) -> usize {
        self.refs.len()
    }

    /// Prefix-cache activity so far.
    pub fn prefix_stats(&self) -> PrefixStats {
        self.prefix.stats
    }

    /// Blocks needed to hold `tokens` positions.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Positions already written for `seq` (0 for an unknown sequence).
    pub fn seq_len(&self, seq: SeqId) -> usize {
        self.seqs.get(&seq).map_or(0, |s| s.len)
    }

    /// Sequences referencing `block` (for tests and checks).
    pub fn block_refs(&self, block: u32) -> u32 {
        self.refs.get(block as usize).copied().unwrap_or(0)
    }

    /// The blocks of `seq`, in position order.
    pub fn seq_blocks(&self, seq: SeqId) -> &[u32] {
        self.seqs.get(&seq).map_or(&[], |s| &s.blocks)
    }

    /// A block for a sequence: from the free list, else the least recently
    /// used cached block.
    fn allocate(&mut self) -> Option<u32> {
        let b = self.free.pop().or_else(|| self.prefix.evict())?;
        self.refs[b as usize] = 1;
        Some(b)
    }

    /// Starts `seq` (not yet in the cache) with room for `total` positions,
    /// taking the cached blocks that hold a prefix of `tokens`. Returns how
    /// many leading positions are already computed. At least the last token
    /// is always left to compute, so the caller gets its logits. On error
    /// nothing changed.
    pub fn admit(&mut self, seq: SeqId, tokens: &[u32], total: usize) -> Result<usize, KvError> {
        if self.seqs.contains_key(&seq) {
            self.reserve(seq, total)?;
            return Ok(self.seq_len(seq));
        }
        let hits = if self.prefix_caching && !tokens.is_empty() {
            let max_blocks = (tokens.len() - 1) / self.block_size;
            self.prefix.lookup(tokens, self.block_size, max_blocks)
        } else {
            Vec::new()
        };
        let need = self.blocks_for(total).saturating_sub(hits.len());
        let revived = hits.iter().filter(|(b, _)| self.prefix.is_idle(*b)).count();
        let available = self.available_blocks() - revived;
        if need > available {
            return Err(KvError::OutOfBlocks {
                needed: need,
                free: available,
            });
        }
        let mut entry = SeqBlocks::default();
        for &(b, link) in &hits {
            self.prefix.unpark(b);
            self.refs[b as usize] += 1;
            entry.blocks.push(b);
            entry.chain.push(link);
        }
        entry.len = hits.len() * self.block_size;
        for _ in 0..need {
            // Checked above: `need` blocks are free or evictable.
            if let Some(b) = self.allocate() {
                entry.blocks.push(b);
            }
        }
        if self.prefix_caching {
            let st = &mut self.prefix.stats;
            st.lookups += 1;
            st.hit_blocks += hits.len() as u64;
            st.hit_tokens += entry.len as u64;
        }
        let cached = entry.len;
        self.seqs.insert(seq, entry);
        Ok(cached)
    }

    /// Makes room for `seq` to hold `total` positions, allocating blocks as needed.
    pub fn reserve(&mut self, seq: SeqId, total: usize) -> Result<(), KvError> {
        let have = self.seqs.get(&seq).map_or(0, |s| s.blocks.len());
        let need = self.blocks_for(total).saturating_sub(have);
        if need > self.available_blocks() {
            return Err(KvError::OutOfBlocks {
                needed: need,
                free: self.available_blocks(),
            });
        }
        let mut got = Vec::with_capacity(need);
        for _ in 0..need {
            // Checked above: `need` blocks are free or evictable.
            if let Some(b) = self.allocate() {
                got.push(b);
            }
        }
        self.seqs.entry(seq).or_default().blocks.extend(got);
        Ok(())
    }

    /// Registers the full blocks of `seq` that lie inside `tokens` (its known
    /// tokens, from position 0) and are written, so that later sequences
    /// with the same prefix can take them. Does nothing with prefix caching off.
    pub fn cache_full_blocks(&mut self, seq: SeqId, tokens: &[u32]) {
        if !self.prefix_caching {
            return;
        }
        let bs = self.block_size;
        let Some(s) = self.seqs.get_mut(&seq) else {
            return;
        };
        let full = tokens.len().min(s.len) / bs;
        while !s.chain_broken && s.chain.len() < full.min(s.blocks.len()) {
            let i = s.chain.len();
            let parent = s.chain.last().copied();
            match self
                .prefix
                .register(s.blocks[i], parent, &tokens[i * bs..(i + 1) * bs])
            {
                Some(link) => s.chain.push(link),
                None => s.chain_broken = true,
            }
        }
    }

    /// Releases `seq`'s reference to each of its blocks. A block nobody
    /// references any more stays cached if it is registered (its tail
    /// becoming the first to be evicted), else goes back to the free list.
    pub fn free_seq(&mut self, seq: SeqId) {
        self.states.remove(&seq);
        let Some(s) = self.seqs.remove(&seq) else {
            return;
        };
        for &b in s.blocks.iter().rev() {
            let r = &mut self.refs[b as usize];
            *r = r.saturating_sub(1);
            if *r == 0 && !(self.prefix_caching && self.prefix.park(b)) {
                self.prefix.forget(b);
                self.free.push(b);
            }
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
        if self.prefix.is_registered(block) {
            // Registered blocks are full and may be shared: never rewritten.
            return Err(KvError::ReadOnlyBlock { seq, pos });
        }
        Ok((block as usize * self.block_size + pos % self.block_size) * self.kv_dim)
    }

    /// Writes the key and value rows of `seq` at `pos` in `layer`, rounded to
    /// half precision as llama.cpp's default F16 cache stores them (so that
    /// our numbers track the reference's, at half the memory of f32).
    pub fn write(
        &mut self,
        layer: usize,
        seq: SeqId,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), KvError> {
        let at = self.index(seq, pos)?;
        let half = kernels::f32_to_f16;
        for (dst, &x) in self.k[layer][at..at + self.kv_dim].iter_mut().zip(k) {
            *dst = half(x);
        }
        for (dst, &x) in self.v[layer][at..at + self.kv_dim].iter_mut().zip(v) {
            *dst = half(x);
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
    k: &'a [u16],
    v: &'a [u16],
    blocks: &'a [u32],
    block_size: usize,
    kv_dim: usize,
}

impl SeqView<'_> {
    #[inline]
    fn at(&self, pos: usize) -> usize {
        (self.blocks[pos / self.block_size] as usize * self.block_size + pos % self.block_size)
            * self.kv_dim
    }

    /// The whole key row (all KV heads) at `pos` as half-precision bits;
    /// `pos` must be below the reserved length.
    #[inline]
    pub fn key(&self, pos: usize) -> &[u16] {
        let at = self.at(pos);
        &self.k[at..at + self.kv_dim]
    }

    /// The whole value row at `pos`, as [`SeqView::key`].
    #[inline]
    pub fn value(&self, pos: usize) -> &[u16] {
        let at = self.at(pos);
        &self.v[at..at + self.kv_dim]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached row back as f32.
    fn floats(row: &[u16]) -> Vec<f32> {
        row.iter().map(|&h| kernels::f16_to_f32(h)).collect()
    }

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
        assert_eq!(floats(kv.view(1, 1).unwrap().key(8)), [1.0, 2.0, 3.0, 4.0]);
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
        assert_eq!(floats(kv.view(0, 1).unwrap().key(0)), [1.0, 1.0]);
        assert_eq!(floats(kv.view(0, 2).unwrap().value(0)), [2.0, 2.0]);
        assert!(kv.write(0, 3, 0, &[0.0; 2], &[0.0; 2]).is_err());
    }

    /// Writes every position of `seq` that `tokens` holds (key = [pos, token],
    /// exact in f16) and registers its full blocks.
    fn compute(kv: &mut KvCache, seq: SeqId, tokens: &[u32]) -> usize {
        let cached = kv.admit(seq, tokens, tokens.len()).unwrap();
        for (p, &t) in tokens.iter().enumerate().skip(cached) {
            let row = [p as f32, t as f32];
            kv.write(0, seq, p, &row, &row).unwrap();
        }
        kv.cache_full_blocks(seq, tokens);
        cached
    }

    fn assert_adds_up(kv: &KvCache) {
        let used = (0..kv.total_blocks() as u32)
            .filter(|&b| kv.block_refs(b) > 0)
            .count();
        assert_eq!(used, kv.used_blocks());
        assert_eq!(
            kv.free_blocks() + kv.used_blocks() + kv.cached_blocks(),
            kv.total_blocks()
        );
    }

    #[test]
    fn a_finished_prefix_is_cached_and_reused_read_only() {
        let mut kv = KvCache::new(1, 2, 4, 64); // 16 blocks of 4
        let a: Vec<u32> = (100..110).collect();
        assert_eq!(compute(&mut kv, 1, &a), 0);
        let a_blocks = kv.seq_blocks(1)[..2].to_vec();
        kv.free_seq(1);
        assert_eq!(kv.cached_blocks(), 2, "two full blocks stay cached");
        assert_eq!(kv.free_blocks(), 14);
        assert_adds_up(&kv);

        // Same first 8 tokens, another tail: the two full blocks are reused.
        let mut b = a[..8].to_vec();
        b.extend([7, 7, 7]);
        assert_eq!(kv.admit(2, &b, b.len() + 1).unwrap(), 8);
        assert_eq!(&kv.seq_blocks(2)[..2], &a_blocks[..]);
        assert_eq!(kv.seq_len(2), 8);
        assert_eq!(floats(kv.view(0, 2).unwrap().key(5)), [5.0, 105.0]);
        assert_eq!(kv.cached_blocks(), 0);
        // A second sequence shares them too; nobody may write into them.
        assert_eq!(kv.admit(3, &b, b.len() + 1).unwrap(), 8);
        assert_eq!(kv.block_refs(a_blocks[0]), 2);
        assert_eq!(
            kv.write(0, 3, 4, &[0.0; 2], &[0.0; 2]),
            Err(KvError::ReadOnlyBlock { seq: 3, pos: 4 })
        );
        kv.write(0, 3, 8, &[0.0; 2], &[0.0; 2]).unwrap();
        assert_adds_up(&kv);

        // Releasing one sharer keeps the blocks in use for the other.
        kv.free_seq(3);
        assert_eq!(kv.block_refs(a_blocks[0]), 1);
        assert_eq!(kv.cached_blocks(), 0);
        assert_adds_up(&kv);
        kv.free_seq(2);
        assert_eq!(kv.cached_blocks(), 2);
        assert_eq!(kv.free_blocks(), 14);
        assert_adds_up(&kv);
        let st = kv.prefix_stats();
        assert_eq!((st.lookups, st.hit_blocks, st.hit_tokens), (3, 4, 16));
    }

    #[test]
    fn a_fully_cached_prompt_still_computes_its_last_block() {
        let mut kv = KvCache::new(1, 2, 4, 64);
        let a: Vec<u32> = (0..8).collect();
        compute(&mut kv, 1, &a);
        kv.free_seq(1);
        assert_eq!(kv.cached_blocks(), 2);
        // Only the first block: the last token's logits must be computed.
        assert_eq!(kv.admit(2, &a, 9).unwrap(), 4);
        assert_eq!(kv.admit(3, &a[..5], 6).unwrap(), 4);
        assert_eq!(kv.admit(4, &a[..4], 5).unwrap(), 0);
    }

    #[test]
    fn a_hash_collision_is_not_reused() {
        let mut kv = KvCache::new(1, 2, 4, 64);
        kv.set_hasher(|_, _| 42); // every block collides
        let a = [1, 2, 3, 4, 5];
        let b = [9, 9, 9, 9, 5];
        compute(&mut kv, 1, &a);
        kv.free_seq(1);
        assert_eq!(kv.cached_blocks(), 1);
        // Same hash, other tokens: computed afresh, and not registered.
        assert_eq!(compute(&mut kv, 2, &b), 0);
        assert_eq!(floats(kv.view(0, 2).unwrap().key(1)), [1.0, 9.0]);
        kv.free_seq(2);
        assert_eq!(kv.cached_blocks(), 1);
        assert_adds_up(&kv);
        // The genuine prefix still hits.
        assert_eq!(kv.admit(3, &a, 6).unwrap(), 4);
        assert_eq!(floats(kv.view(0, 3).unwrap().key(1)), [1.0, 2.0]);
    }

    #[test]
    fn a_block_under_another_parent_is_not_reused() {
        let mut kv = KvCache::new(1, 2, 4, 64);
        // A hash that ignores the parent: equal second blocks collide
        // whatever came before them.
        kv.set_hasher(|_, t| u64::from(t[0]));
        let a = [1, 1, 1, 1, 9, 9, 9, 9, 0];
        let b = [2, 2, 2, 2, 9, 9, 9, 9, 0];
        compute(&mut kv, 1, &a);
        compute(&mut kv, 2, &b);
        kv.free_seq(1);
        kv.free_seq(2);
        // b's first block hits; its second is a's, computed after other keys.
        assert_eq!(kv.admit(3, &b, 10).unwrap(), 4);
        assert_eq!(kv.admit(4, &a, 10).unwrap(), 8);
        assert_eq!(floats(kv.view(0, 4).unwrap().key(5)), [5.0, 9.0]);
    }

    #[test]
    fn cached_blocks_are_evicted_least_recently_used_tail_first() {
        let mut kv = KvCache::new(1, 2, 4, 16); // 4 blocks
        let a = [1, 1, 1, 1, 2, 2, 2, 2];
        let b = [3, 3, 3, 3, 4, 4, 4, 4];
        compute(&mut kv, 1, &a);
        kv.free_seq(1);
        compute(&mut kv, 2, &b);
        kv.free_seq(2);
        assert_eq!((kv.free_blocks(), kv.cached_blocks()), (0, 4));
        // One new block: a's tail goes first.
        compute(&mut kv, 3, &[5, 5, 5]);
        assert_eq!(kv.prefix_stats().evictions, 1);
        assert_adds_up(&kv);
        kv.free_seq(3);
        assert_eq!(kv.admit(4, &a, 5).unwrap(), 4, "a's head is still cached");
        // b's head hits; its tail, the only idle block left, is evicted for room.
        assert_eq!(kv.admit(5, &b, 5).unwrap(), 4);
        assert_eq!(kv.prefix_stats().evictions, 2);
        assert_eq!(kv.available_blocks(), 0);
        assert!(matches!(
            kv.admit(6, &[8; 4], 5),
            Err(KvError::OutOfBlocks { .. })
        ));
        assert_adds_up(&kv);
    }

    #[test]
    fn recurrent_state_is_per_sequence_and_dies_with_it() {
        let mut kv = KvCache::new(1, 2, 4, 64).with_recurrent_state(3);
        kv.set_prefix_caching(true);
        assert!(
            !kv.prefix_caching(),
            "no prefix reuse beside recurrent state"
        );
        let a: Vec<u32> = (0..10).collect();
        compute(&mut kv, 1, &a);
        kv.cache_full_blocks(1, &a);
        let st = kv.recurrent_state(1).unwrap();
        assert_eq!(st.data, [0.0; 3]);
        st.data[0] = 5.0;
        st.next_pos = 10;
        assert_eq!(kv.recurrent_state(2).unwrap().data, [0.0; 3]);
        assert_eq!(kv.recurrent_state(1).unwrap().data[0], 5.0);
        kv.free_seq(1);
        assert_eq!(kv.cached_blocks(), 0);
        // The same tokens again: nothing reused, a fresh state.
        assert_eq!(kv.admit(1, &a, 11).unwrap(), 0);
        let st = kv.recurrent_state(1).unwrap();
        assert_eq!((st.next_pos, st.data[0]), (0, 0.0));
        assert!(KvCache::new(1, 2, 4, 64).recurrent_state(1).is_none());
    }

    #[test]
    fn with_prefix_caching_off_blocks_go_back_to_the_free_list() {
        let mut kv = KvCache::new(1, 2, 4, 64);
        kv.set_prefix_caching(false);
        let a: Vec<u32> = (0..10).collect();
        compute(&mut kv, 1, &a);
        kv.free_seq(1);
        assert_eq!((kv.free_blocks(), kv.cached_blocks()), (16, 0));
        assert_eq!(kv.admit(2, &a, 11).unwrap(), 0);
        assert_eq!(kv.prefix_stats(), PrefixStats::default());
    }
}
