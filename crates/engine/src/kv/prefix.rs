//! The prefix cache's index over the KV pool: which full blocks hold which
//! token prefix, and which of them no sequence references any more (kept for
//! reuse, evicted least recently used first).
//!
//! A full block is named by a hash chain, `hash(previous block's hash, the
//! block's token ids)`, as vLLM's automatic prefix caching does. A hash is
//! only a lookup key: a hit is taken only when the stored block's token ids
//! equal the request's and its parent is exactly the block matched one step
//! earlier (each registration gets a unique id, never reused), so by
//! induction the whole prefix is equal, whatever the hash function's
//! collisions. The pool itself (storage, reference counts, free list) stays
//! in [`super::KvCache`].

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;

/// Computes a block's chain hash from its parent's hash and its token ids.
pub(crate) type BlockHasher = fn(u64, &[u32]) -> u64;

/// The chain's seed: the "parent hash" of a sequence's first block.
const ROOT: u64 = 0x9e37_79b9_7f4a_7c15;

/// SipHash-1-3 (std's hasher, fixed keys) over the parent hash and the ids.
pub(crate) fn chain_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u64(parent);
    for &t in tokens {
        h.write_u32(t);
    }
    h.finish()
}

/// How a sequence's full block is known to the index: its chain hash and the
/// unique id of the registered block holding that prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub hash: u64,
    pub uid: u64,
}

/// Prefix-cache activity since the cache was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Sequences admitted with a prefix look-up.
    pub lookups: u64,
    /// Blocks taken from the cache instead of being computed.
    pub hit_blocks: u64,
    /// Positions those blocks hold.
    pub hit_tokens: u64,
    /// Unreferenced cached blocks given up to make room.
    pub evictions: u64,
}

struct Entry {
    hash: u64,
    uid: u64,
    /// `uid` of the block before this one in the prefix; `None` for a first block.
    parent: Option<u64>,
    tokens: Box<[u32]>,
    /// The LRU tick while no sequence references the block.
    idle_since: Option<u64>,
}

pub(crate) struct PrefixIndex {
    /// Per pool block: what it holds, if it is registered.
    entries: Vec<Option<Entry>>,
    by_hash: HashMap<u64, u32>,
    /// Unreferenced registered blocks by the tick they became so (oldest first).
    idle: BTreeMap<u64, u32>,
    tick: u64,
    next_uid: u64,
    hasher: BlockHasher,
    pub stats: PrefixStats,
}

impl PrefixIndex {
    pub fn new(n_blocks: usize) -> Self {
        PrefixIndex {
            entries: (0..n_blocks).map(|_| None).collect(),
            by_hash: HashMap::new(),
            idle: BTreeMap::new(),
            tick: 0,
            next_uid: 1,
            hasher: chain_hash,
            stats: PrefixStats::default(),
        }
    }

    #[cfg(test)]
    pub fn set_hasher(&mut self, hasher: BlockHasher) {
        self.hasher = hasher;
    }

    /// Unreferenced blocks kept for reuse.
    pub fn idle_len(&self) -> usize {
        self.idle.len()
    }

    pub fn is_registered(&self, block: u32) -> bool {
        self.entries[block as usize].is_some()
    }

    fn hash(&self, parent: Option<Link>, tokens: &[u32]) -> u64 {
        (self.hasher)(parent.map_or(ROOT, |l| l.hash), tokens)
    }

    /// The registered blocks holding the leading full blocks of `tokens`
    /// (at most `max_blocks`), verified token by token.
    pub fn lookup(&self, tokens: &[u32], block_size: usize, max_blocks: usize) -> Vec<(u32, Link)> {
        let mut hits = Vec::new();
        let mut prev: Option<Link> = None;
        for chunk in tokens.chunks_exact(block_size).take(max_blocks) {
            let hash = self.hash(prev, chunk);
            let Some(&block) = self.by_hash.get(&hash) else {
                break;
            };
            let Some(e) = &self.entries[block as usize] else {
                break;
            };
            if *e.tokens != *chunk || e.parent != prev.map(|l| l.uid) {
                // A hash collision (or a stale child of an evicted block): not this prefix.
                break;
            }
            let link = Link { hash, uid: e.uid };
            hits.push((block, link));
            prev = Some(link);
        }
        hits
    }

    /// Records that `block`, whose parent in its sequence is `parent`, holds
    /// `tokens`. Returns the link the sequence should remember: the block's
    /// own, or that of an equal block registered earlier (then `block` stays
    /// unregistered and goes back to the free list when released). `None`
    /// when another prefix's block holds the same hash: nothing further of
    /// this sequence can be registered.
    pub fn register(&mut self, block: u32, parent: Option<Link>, tokens: &[u32]) -> Option<Link> {
        let hash = self.hash(parent, tokens);
        let parent_uid = parent.map(|l| l.uid);
        if let Some(&other) = self.by_hash.get(&hash) {
            let e = self.entries[other as usize].as_ref()?;
            return (*e.tokens == *tokens && e.parent == parent_uid)
                .then_some(Link { hash, uid: e.uid });
        }
        let uid = self.next_uid;
        self.next_uid += 1;
        self.entries[block as usize] = Some(Entry {
            hash,
            uid,
            parent: parent_uid,
            tokens: tokens.into(),
            idle_since: None,
        });
        self.by_hash.insert(hash, block);
        Some(Link { hash, uid })
    }

    /// `block` lost its last reference: keep it as the most recently used idle
    /// block. Returns `false` when it is not registered (it belongs on the free list).
    pub fn park(&mut self, block: u32) -> bool {
        let Some(e) = self.entries[block as usize].as_mut() else {
            return false;
        };
        self.tick += 1;
        e.idle_since = Some(self.tick);
        self.idle.insert(self.tick, block);
        true
    }

    /// `block` is referenced again: it is no longer a candidate for eviction.
    pub fn unpark(&mut self, block: u32) {
        if let Some(t) = self.entries[block as usize]
            .as_mut()
            .and_then(|e| e.idle_since.take())
        {
            self.idle.remove(&t);
        }
    }

    /// Whether `block` is registered and unreferenced.
    pub fn is_idle(&self, block: u32) -> bool {
        self.entries[block as usize]
            .as_ref()
            .is_some_and(|e| e.idle_since.is_some())
    }

    /// Unregisters `block` (if it is) so that it can go back to the free list.
    pub fn forget(&mut self, block: u32) {
        if let Some(e) = self.entries[block as usize].take() {
            if let Some(t) = e.idle_since {
                self.idle.remove(&t);
            }
            if self.by_hash.get(&e.hash) == Some(&block) {
                self.by_hash.remove(&e.hash);
            }
        }
    }

    /// Forgets the least recently used idle block and hands it out for reuse.
    pub fn evict(&mut self) -> Option<u32> {
        let (_, block) = self.idle.pop_first()?;
        self.forget(block);
        self.stats.evictions += 1;
        Some(block)
    }
}
