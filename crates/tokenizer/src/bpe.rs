//! Byte-level BPE (GPT-2 style): every byte of a pre-tokenized word is mapped
//! to a printable code point, then adjacent symbols are merged by the rank of
//! their pair in `tokenizer.ggml.merges` (lowest rank first, leftmost first on
//! ties) until no ranked pair remains. Symbols are interned as ids so that a
//! merge lookup is one hash of two integers.
//!
//! Gemma 4's "SPM-style" BPE (`tokenizer.ggml.model = gemma4`) merges the same
//! way over raw UTF-8 characters instead: spaces become `▁`, words are runs of
//! non-newlines or of newlines (a run of newlines that is a token stays
//! whole), and a piece that is no token falls back to `<0xNN>` byte tokens.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::error::TokenizerError;
use crate::pretokenize::PreTokenizer;
use crate::spm::SPACE_MARK;
use crate::vocab::Vocab;

/// Id for a symbol whose text is neither a token nor a merge product.
const NO_ID: u32 = u32::MAX;

/// The GPT-2 byte ↔ code point tables.
#[derive(Debug)]
pub(crate) struct ByteMap {
    to_char: [char; 256],
    /// Indexed by code point; only code points below 512 are used.
    to_byte: Vec<Option<u8>>,
}

impl ByteMap {
    pub(crate) fn new() -> Self {
        let printable =
            |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let mut to_char = ['\0'; 256];
        let mut to_byte = vec![None; 512];
        let mut next = 256u32;
        for b in 0..256u32 {
            let cp = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            // Every `cp` is below 512 and so a valid scalar value.
            let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
            to_char[b as usize] = c;
            to_byte[cp as usize] = Some(b as u8);
        }
        Self { to_char, to_byte }
    }

    /// Appends the byte-level encoding of `bytes` to `out`.
    pub(crate) fn encode_into(&self, bytes: &[u8], out: &mut String) {
        out.extend(bytes.iter().map(|&b| self.to_char[b as usize]));
    }

    /// The byte a code point of the byte-level alphabet stands for.
    pub(crate) fn byte_of(&self, c: char) -> Option<u8> {
        self.to_byte.get(c as usize).copied().flatten()
    }
}

/// A ranked merge: the pair's rank and the id of the merged symbol.
#[derive(Debug, Clone, Copy)]
struct Merge {
    rank: u32,
    merged: u32,
}

/// How a fragment of text becomes the words BPE merges within.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Words {
    /// Byte-level: a pre-tokenizer's words, each byte as a code point.
    ByteLevel(PreTokenizer),
    /// Gemma 4's SPM-style BPE: raw UTF-8, spaces as `▁`, split at newlines.
    SpmStyle,
}

/// Merges, word splitting and byte map of a BPE vocabulary.
#[derive(Debug)]
pub(crate) struct Bpe {
    words: Words,
    bytes: ByteMap,
    merges: FxHashMap<(u32, u32), Merge>,
    /// Merge products and parts that are not vocabulary tokens, with ids from
    /// `vocab.len()` upwards.
    extra: FxHashMap<String, u32>,
}

impl Bpe {
    pub(crate) fn new(
        vocab: &Vocab,
        merges: &[&str],
        words: Words,
    ) -> Result<Self, TokenizerError> {
        let mut bpe = Bpe {
            words,
            bytes: ByteMap::new(),
            merges: FxHashMap::with_capacity_and_hasher(merges.len(), Default::default()),
            extra: FxHashMap::default(),
        };
        let mut joined = String::new();
        for (rank, line) in merges.iter().enumerate() {
            // The pair is split at the first space after the first byte.
            // (A space byte is never inside a multi-byte character, so `pos`
            // is a character boundary.)
            let Some(pos) = line.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (left, right) = (&line[..pos], &line[pos + 1..]);
            let a = bpe.intern(vocab, left);
            let b = bpe.intern(vocab, right);
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let merged = bpe.intern(vocab, &joined);
            let rank = u32::try_from(rank).map_err(|_| TokenizerError::InvalidMetadata {
                key: "tokenizer.ggml.merges",
                reason: "too many merges".into(),
            })?;
            // The first listing of a pair wins.
            bpe.merges.entry((a, b)).or_insert(Merge { rank, merged });
        }
        Ok(bpe)
    }

    /// The byte-level alphabet, for byte-level vocabularies only.
    pub(crate) fn byte_map(&self) -> Option<&ByteMap> {
        match self.words {
            Words::ByteLevel(_) => Some(&self.bytes),
            Words::SpmStyle => None,
        }
    }

    fn intern(&mut self, vocab: &Vocab, text: &str) -> u32 {
        if let Some(id) = vocab.id(text) {
            return id;
        }
        if let Some(&id) = self.extra.get(text) {
            return id;
        }
        let id = (vocab.len() + self.extra.len()) as u32;
        self.extra.insert(text.to_string(), id);
        id
    }

    fn lookup(&self, vocab: &Vocab, text: &str) -> u32 {
        vocab
            .id(text)
            .or_else(|| self.extra.get(text).copied())
            .unwrap_or(NO_ID)
    }

    /// Tokenizes one raw-text fragment, appending ids to `out`.
    pub(crate) fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut word = String::new();
        let mut session = Session::default();
        let pre = match self.words {
            Words::ByteLevel(pre) => pre,
            Words::SpmStyle => return self.encode_spm_style(vocab, text, &mut session, out),
        };
        for (a, b) in pre.split(text) {
            word.clear();
            self.bytes.encode_into(&text.as_bytes()[a..b], &mut word);
            if pre.ignores_merges() {
                if let Some(id) = vocab.id(&word) {
                    out.push(id);
                    continue;
                }
            }
            session.run(self, vocab, &word, out);
        }
    }

    /// [`Bpe::encode`] for Gemma 4's SPM-style vocabulary.
    fn encode_spm_style(
        &self,
        vocab: &Vocab,
        text: &str,
        session: &mut Session,
        out: &mut Vec<u32>,
    ) {
        let escaped = text.replace(' ', SPACE_MARK);
        let mut rest = escaped.as_str();
        while let Some(first) = rest.chars().next() {
            let newlines = first == '\n';
            let len = rest
                .find(|c: char| (c == '\n') != newlines)
                .unwrap_or(rest.len());
            let (word, tail) = rest.split_at(len);
            rest = tail;
            if newlines {
                if let Some(id) = vocab.id(word) {
                    out.push(id);
                    continue;
                }
            }
            session.run(self, vocab, word, out);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    /// Byte range in the encoded word; `start == end` once merged away.
    start: usize,
    end: usize,
    id: u32,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge: `(rank, left, right, left id, right id)`; the queue
/// pops the lowest rank, then the leftmost pair.
type Candidate = Reverse<(u32, usize, usize, u32, u32)>;

/// Scratch space reused across the words of one fragment.
#[derive(Default)]
struct Session {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Candidate>,
}

impl Session {
    fn run(&mut self, bpe: &Bpe, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        self.symbols.clear();
        self.queue.clear();
        let n = word.chars().count();
        for (i, (start, c)) in word.char_indices().enumerate() {
            let end = start + c.len_utf8();
            self.symbols.push(Symbol {
                start,
                end,
                id: bpe.lookup(vocab, &word[start..end]),
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
            });
        }
        for i in 1..self.symbols.len() {
            self.push_pair(bpe, i - 1, i);
        }
        while let Some(Reverse((_, left, right, left_id, right_id))) = self.queue.pop() {
            let (l, r) = (self.symbols[left], self.symbols[right]);
            // Skip pairs made stale by an earlier merge.
            if l.start == l.end || r.start == r.end || l.id != left_id || r.id != right_id {
                continue;
            }
            let Some(m) = bpe.merges.get(&(left_id, right_id)) else {
                continue;
            };
            self.symbols[left].end = r.end;
            self.symbols[left].id = m.merged;
            self.symbols[left].next = r.next;
            self.symbols[right].end = r.start;
            if let Some(nx) = r.next {
                self.symbols[nx].prev = Some(left);
            }
            if let Some(pv) = l.prev {
                self.push_pair(bpe, pv, left);
            }
            if let Some(nx) = r.next {
                self.push_pair(bpe, left, nx);
            }
        }
        for s in self.symbols.iter().filter(|s| s.start < s.end) {
            if (s.id as usize) < vocab.len() {
                out.push(s.id);
                continue;
            }
            // Not a token: fall back to single-byte tokens, as llama.cpp does
            // (bytes that are no token on their own are dropped).
            for &b in &word.as_bytes()[s.start..s.end] {
                if matches!(bpe.words, Words::SpmStyle) {
                    out.extend(vocab.id(&format!("<0x{b:02X}>")));
                } else if b.is_ascii() {
                    if let Some(id) = vocab.id(char::from(b).encode_utf8(&mut [0; 4])) {
                        out.push(id);
                    }
                }
            }
        }
    }

    fn push_pair(&mut self, bpe: &Bpe, left: usize, right: usize) {
        let (a, b) = (self.symbols[left].id, self.symbols[right].id);
        if let Some(m) = bpe.merges.get(&(a, b)) {
            self.queue.push(Reverse((m.rank, left, right, a, b)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_round_trips_and_matches_gpt2() {
        let m = ByteMap::new();
        for b in 0..=255u8 {
            let mut s = String::new();
            m.encode_into(&[b], &mut s);
            let c = s.chars().next().expect("one char per byte");
            assert_eq!(m.byte_of(c), Some(b));
        }
        let mut s = String::new();
        m.encode_into(b" \n!", &mut s);
        assert_eq!(s, "Ġ\u{10A}!");
    }
}
