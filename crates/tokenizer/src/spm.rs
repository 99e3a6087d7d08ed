//! SentencePiece-style tokenization with scores (llama.cpp's SPM tokenizer):
//! spaces become `▁`, the text starts as one symbol per code point, and the
//! adjacent pair whose concatenation is the highest-scoring vocabulary token
//! is merged (leftmost first on ties) until no pair forms a token. Symbols
//! left that are not tokens are emitted as `<0xNN>` byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;

/// The SentencePiece word-boundary mark that stands for a space.
pub(crate) const SPACE_MARK: &str = "\u{2581}";

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    /// Byte length; 0 once merged into its left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Greater is merged first: higher score, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        // `partial_cmp` so that -0.0 and 0.0 tie, as they do in llama.cpp;
        // scores are never NaN in practice (a NaN would compare equal).
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes one raw-text fragment (already prefixed with a space where the
/// model asks for it), appending ids to `out`.
pub(crate) fn encode(vocab: &Vocab, raw: &str, out: &mut Vec<u32>) {
    let text = raw.replace(' ', SPACE_MARK);
    let n = text.chars().count();
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n).then_some(i + 1),
        })
        .collect();
    let mut queue = BinaryHeap::new();
    for i in 1..symbols.len() {
        push_pair(vocab, &text, &symbols, i - 1, i, &mut queue);
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        // Skip pairs made stale by an earlier merge.
        if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.left].next = r.next;
        symbols[b.right].len = 0;
        if let Some(nx) = r.next {
            symbols[nx].prev = Some(b.left);
        }
        if let Some(pv) = l.prev {
            push_pair(vocab, &text, &symbols, pv, b.left, &mut queue);
        }
        if let Some(nx) = r.next {
            push_pair(vocab, &text, &symbols, b.left, nx, &mut queue);
        }
    }
    for s in symbols.iter().filter(|s| s.len > 0) {
        let piece = &text[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => {
                for &byte in piece.as_bytes() {
                    if let Some(id) = byte_token(vocab, byte) {
                        out.push(id);
                    }
                }
            }
        }
    }
}

fn push_pair(
    vocab: &Vocab,
    text: &str,
    symbols: &[Symbol],
    left: usize,
    right: usize,
    queue: &mut BinaryHeap<Bigram>,
) {
    let (l, r) = (symbols[left], symbols[right]);
    let len = l.len + r.len;
    let Some(id) = vocab.id(&text[l.start..l.start + len]) else {
        return;
    };
    queue.push(Bigram {
        left,
        right,
        score: vocab.scores[id as usize],
        len,
    });
}

/// The token for a raw byte: `<0xNN>`, else the byte itself as a token, else
/// the unknown token.
fn byte_token(vocab: &Vocab, byte: u8) -> Option<u32> {
    let hex = format!("<0x{byte:02X}>");
    vocab
        .id(&hex)
        .or_else(|| {
            byte.is_ascii()
                .then(|| vocab.id(char::from(byte).encode_utf8(&mut [0; 4])))
                .flatten()
        })
        .or(vocab.special.unk)
}
