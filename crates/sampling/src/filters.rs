//! The candidate list and the filters of the sampling chain.
//!
//! Every filter takes a [`Candidates`] list and leaves it non-empty, with
//! the most likely token still in it and `p` renormalised over what it
//! kept, so each can be tested on its own. Filters that only drop tokens
//! (top-k, top-p, min-p) reuse the probabilities they were given; the
//! ones that change logits (temperature) recompute the softmax.
//!
//! Selection is partial wherever it can be: on long lists one comparison
//! per token against a sampled threshold first drops every token that
//! cannot make the cut (the `select` module); top-k then selects its `k`
//! with `select_nth_unstable` and sorts only those; top-p sorts only the
//! few hundred most likely tokens, or for flat distributions only the
//! histogram bucket where its cut falls. No full sort of a vocabulary.

use std::cmp::Ordering;

use crate::math::{exp_shifted_in_place, max_f32};
use crate::select::{self, Histogram};

/// One token under consideration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Its (possibly biased, penalised, scaled) logit.
    pub logit: f32,
    /// Its probability within the list; meaningful once the list has
    /// probabilities (after any filter, or [`softmax`]).
    pub p: f32,
}

/// The tokens still in the running, with the list's ordering state.
/// The buffer is reused between tokens: [`Candidates::fill`] does not
/// allocate once it has grown to the vocabulary size.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    items: Vec<Candidate>,
    /// Sorted by descending logit (ties: ascending id).
    sorted: bool,
    /// `p` holds the softmax of the current logits over the list.
    has_probs: bool,
    /// Contiguous working copy of the logits for [`softmax`].
    scratch: Vec<f32>,
}

/// Descending logit, then ascending id: the order every filter keeps.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

impl Candidates {
    /// An empty list with room for `n` candidates.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            items: Vec::with_capacity(n),
            scratch: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// A list holding every token of `logits` (id = index).
    pub fn from_logits(logits: &[f32]) -> Self {
        let mut c = Self::default();
        c.fill(logits);
        c
    }

    /// Refills the list with every token of `logits` (id = index). NaN
    /// logits become `-inf` so that they are never chosen.
    pub fn fill(&mut self, logits: &[f32]) {
        self.items.clear();
        self.items
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                id: i as u32,
                logit: if l.is_nan() { f32::NEG_INFINITY } else { l },
                p: 0.0,
            }));
        self.sorted = false;
        self.has_probs = false;
    }

    /// Like [`Candidates::fill`] followed by [`top_k`]'s pre-selection,
    /// without materialising tokens that cannot be among the `k` best.
    /// Ids are still indices into `logits`; the list is unsorted.
    pub fn fill_top_k(&mut self, logits: &[f32], k: usize) {
        let t = (k > 0 && k < logits.len())
            .then(|| select::threshold_for_top(logits.len(), k, |i| logits[i]))
            .flatten();
        if let Some(t) = t {
            self.items.clear();
            for (i, &l) in logits.iter().enumerate() {
                // NaN fails the comparison and is dropped.
                if l >= t {
                    self.items.push(Candidate {
                        id: i as u32,
                        logit: l,
                        p: 0.0,
                    });
                }
            }
            self.sorted = false;
            self.has_probs = false;
            if self.items.len() >= k {
                return;
            }
        }
        self.fill(logits);
    }

    /// Moves the candidates with logit `>= t` to the front (order not
    /// kept) and returns how many there are.
    fn partition_at_least(&mut self, t: f32) -> usize {
        let mut front = 0;
        for i in 0..self.items.len() {
            if self.items[i].logit >= t {
                self.items.swap(front, i);
                front += 1;
            }
        }
        self.sorted = false;
        front
    }

    /// The candidates, in the list's current order.
    pub fn as_slice(&self) -> &[Candidate] {
        &self.items
    }

    /// Mutable access to the candidates (e.g. to bias logits by id right
    /// after [`Candidates::fill`], while `items[i].id == i`). Any change
    /// invalidates the list's ordering and probabilities.
    pub fn as_mut_slice(&mut self) -> &mut [Candidate] {
        self.sorted = false;
        self.has_probs = false;
        &mut self.items
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the list is sorted by descending logit.
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// The first candidate with the highest logit (lowest id on ties if
    /// the list is in id or sorted order).
    pub fn argmax(&self) -> Option<&Candidate> {
        if self.sorted {
            return self.items.first();
        }
        let mut best: Option<&Candidate> = None;
        for c in &self.items {
            match best {
                Some(b) if c.logit <= b.logit => {}
                _ => best = Some(c),
            }
        }
        best
    }

    fn ensure_probs(&mut self) {
        if !self.has_probs {
            softmax(self);
        }
    }

    /// Keeps the first `n` candidates and renormalises their `p`.
    fn truncate_renormalise(&mut self, n: usize) {
        self.items.truncate(n.max(1));
        let sum: f64 = self.items.iter().map(|c| f64::from(c.p)).sum();
        if sum > 0.0 {
            let inv = 1.0 / sum;
            for c in &mut self.items {
                c.p = (f64::from(c.p) * inv) as f32;
            }
        } else {
            softmax(self);
        }
    }
}

/// Sets `p` to the softmax of the logits (max subtracted first). If every
/// logit is `-inf` the probability is spread evenly, so a list is never
/// left without a distribution.
pub fn softmax(c: &mut Candidates) {
    // Work on a contiguous copy of the logits so the exp loop vectorises.
    let e = &mut c.scratch;
    e.clear();
    e.extend(c.items.iter().map(|x| x.logit));
    let max = max_f32(e);
    if max == f32::NEG_INFINITY {
        let uniform = 1.0 / c.items.len().max(1) as f32;
        c.items.iter_mut().for_each(|x| x.p = uniform);
    } else {
        let inv = (1.0 / exp_shifted_in_place(e, max)) as f32;
        for (x, &v) in c.items.iter_mut().zip(e.iter()) {
            x.p = v * inv;
        }
    }
    c.has_probs = true;
}

/// Keeps the `k` highest logits (ties at the boundary go to the lower
/// id), sorted when it dropped any. `k == 0` keeps everything.
pub fn top_k(c: &mut Candidates, k: usize) {
    let n = c.items.len();
    if k > 0 && k < n {
        if !c.sorted {
            // Drop most of a long list with one comparison per token.
            if let Some(t) = select::threshold_for_top(n, k, |i| c.items[i].logit) {
                let front = c.partition_at_least(t);
                if front >= k {
                    c.items.truncate(front);
                }
            }
        }
        c.items.select_nth_unstable_by(k - 1, by_logit_desc);
        c.items.truncate(k);
        c.items.sort_unstable_by(by_logit_desc);
        c.sorted = true;
        c.has_probs = false;
    }
    c.ensure_probs();
}

/// How many of the most likely tokens top-p tries first on a long list.
const TOP_P_FIRST: usize = 256;

/// Keeps the smallest set of most likely tokens whose probability sum
/// reaches `p` (at least one token). `p >= 1` keeps everything. The kept
/// list is sorted unless it was long and flat: then only the tokens in
/// the histogram bucket of the cut are sorted.
pub fn top_p(c: &mut Candidates, p: f32) {
    c.ensure_probs();
    if p >= 1.0 || c.items.len() <= 1 {
        return;
    }
    let target = f64::from(p);
    if !c.sorted {
        // Most distributions put `p` of their mass on a few hundred
        // tokens: try those first.
        let n = c.items.len();
        if let Some(t) = select::threshold_for_top(n, TOP_P_FIRST, |i| c.items[i].logit) {
            let front = c.partition_at_least(t);
            c.items[..front].sort_unstable_by(by_logit_desc);
            if let Some(keep) = prefix_reaching(&c.items[..front], 0.0, target) {
                c.sorted = true;
                return c.truncate_renormalise(keep);
            }
        }
        if c.items.len() >= select::MIN_LEN && top_p_by_histogram(c, target) {
            return;
        }
        c.items.sort_unstable_by(by_logit_desc);
        c.sorted = true;
    }
    if let Some(keep) = prefix_reaching(&c.items, 0.0, target) {
        c.truncate_renormalise(keep);
    }
}

/// Length of the shortest prefix of `items` whose mass, added to
/// `start`, reaches `target`; `None` if even all of them fall short.
fn prefix_reaching(items: &[Candidate], start: f64, target: f64) -> Option<usize> {
    let mut cum = start;
    for (i, x) in items.iter().enumerate() {
        cum += f64::from(x.p);
        if cum >= target {
            return Some(i + 1);
        }
    }
    None
}

/// Top-p over a long unsorted list: tokens in buckets above the cut are
/// kept unsorted, only the cut's bucket is sorted. Returns `false`
/// (list untouched but reordered) when rounding makes the bucket masses
/// disagree with the exact sums, so the caller falls back to sorting.
fn top_p_by_histogram(c: &mut Candidates, target: f64) -> bool {
    let Some(h) = Histogram::over(c.items.iter().map(|x| x.logit)) else {
        return false;
    };
    let b = h.mass_cutoff(c.items.iter().map(|x| (x.logit, x.p)), target);
    // Three-way partition: [above the cut | in the cut's bucket | below].
    let items = &mut c.items;
    let (mut above, mut next, mut below) = (0, 0, items.len());
    while next < below {
        let bucket = h.bucket(items[next].logit);
        if bucket > b {
            items.swap(above, next);
            above += 1;
            next += 1;
        } else if bucket == b {
            next += 1;
        } else {
            below -= 1;
            items.swap(next, below);
        }
    }
    let mass_above: f64 = items[..above].iter().map(|x| f64::from(x.p)).sum();
    if mass_above >= target {
        return false;
    }
    items[above..below].sort_unstable_by(by_logit_desc);
    match prefix_reaching(&items[above..below], mass_above, target) {
        Some(n) => {
            c.sorted = above == 0;
            c.truncate_renormalise(above + n);
            true
        }
        None => false,
    }
}

/// Keeps tokens whose probability is at least `min_p` times the most
/// likely one's. `min_p <= 0` keeps everything.
pub fn min_p(c: &mut Candidates, min_p: f32) {
    c.ensure_probs();
    if min_p <= 0.0 || c.items.len() <= 1 {
        return;
    }
    let p_max = c.items.iter().map(|x| x.p).fold(0.0f32, f32::max);
    // Clamped so that the most likely token always passes.
    let threshold = min_p.min(1.0) * p_max;
    if c.sorted {
        let keep = c.items.partition_point(|x| x.p >= threshold);
        c.truncate_renormalise(keep);
    } else {
        c.items.retain(|x| x.p >= threshold);
        let keep = c.items.len();
        c.truncate_renormalise(keep);
    }
}

/// Divides every logit by `t` and recomputes the softmax. `t` must be
/// positive; other values leave the logits as they are.
pub fn temperature(c: &mut Candidates, t: f32) {
    if t > 0.0 && t.is_finite() && t != 1.0 {
        let inv = 1.0 / t;
        for x in &mut c.items {
            x.logit *= inv;
        }
        c.has_probs = false;
    }
    c.ensure_probs();
}

/// Picks the candidate where the cumulative probability passes `u`,
/// uniform in `[0, 1)` (the list's probabilities sum to 1: every filter
/// renormalises). Tokens with zero probability are never picked. Returns
/// `None` only for an empty list.
pub fn draw(c: &mut Candidates, u: f64) -> Option<u32> {
    c.ensure_probs();
    let target = u;
    let mut cum = 0.0f64;
    let mut last_positive = None;
    for x in &c.items {
        if x.p > 0.0 {
            cum += f64::from(x.p);
            last_positive = Some(x.id);
            if cum > target {
                return Some(x.id);
            }
        }
    }
    // Rounding can leave `cum` a hair below `target`.
    last_positive.or_else(|| c.items.first().map(|x| x.id))
}

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;
