//! The partition step that runs before any tokenizer model: occurrences of
//! special tokens' texts in the input become those tokens, and the text
//! between them is left for the model. Like llama.cpp, control and unknown
//! tokens are only matched when the caller parses specials; user-defined
//! tokens always are. Longer tokens are matched first, each one splitting the
//! remaining text fragments at its leftmost non-overlapping occurrences.

use aho_corasick::AhoCorasick;

use crate::error::TokenizerError;
use crate::vocab::{attr, Vocab};

/// One piece of partitioned input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Raw text, as a byte range of the input.
    Text(usize, usize),
    /// A special token matched by its text.
    Token(u32),
}

/// The special tokens in matching order, with a matcher used to skip those
/// absent from a given input.
#[derive(Debug)]
pub(crate) struct SpecialMatcher {
    /// Ids of control, user-defined and unknown tokens, longest text first.
    ids: Vec<u32>,
    /// Patterns in the same order as `ids`.
    finder: Option<AhoCorasick>,
}

impl SpecialMatcher {
    pub(crate) fn new(vocab: &Vocab) -> Result<Self, TokenizerError> {
        let wanted = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut ids: Vec<u32> = (0..vocab.len() as u32)
            .filter(|&id| vocab.has_attr(id, wanted))
            .collect();
        // llama.cpp sorts by length only (unstable); ties broken by id here.
        ids.sort_by_key(|&id| (std::cmp::Reverse(vocab.texts[id as usize].len()), id));
        let finder = if ids.is_empty() {
            None
        } else {
            let patterns = ids.iter().map(|&id| vocab.texts[id as usize].as_bytes());
            let ac = AhoCorasick::new(patterns).map_err(|e| TokenizerError::InvalidMetadata {
                key: "tokenizer.ggml.tokens",
                reason: format!("cannot index special tokens: {e}"),
            })?;
            Some(ac)
        };
        Ok(Self { ids, finder })
    }

    /// Splits `text` into raw-text fragments and special tokens.
    pub(crate) fn partition(
        &self,
        vocab: &Vocab,
        text: &str,
        parse_special: bool,
    ) -> Vec<Fragment> {
        let mut fragments = vec![Fragment::Text(0, text.len())];
        let Some(finder) = &self.finder else {
            return fragments;
        };
        // Which special tokens occur anywhere in the input: a token absent from
        // the whole text cannot occur in any fragment of it.
        let mut present = vec![false; self.ids.len()];
        let mut any = false;
        for m in finder.find_overlapping_iter(text) {
            present[m.pattern().as_usize()] = true;
            any = true;
        }
        if !any {
            return fragments;
        }
        let skip_bits = attr::CONTROL | attr::UNKNOWN;
        for (idx, &id) in self.ids.iter().enumerate() {
            if !present[idx] || (!parse_special && vocab.has_attr(id, skip_bits)) {
                continue;
            }
            split_on(&mut fragments, text, &vocab.texts[id as usize], id);
        }
        fragments
    }
}

/// Replaces every text fragment containing `needle` by the pieces around its
/// occurrences and the token between them.
fn split_on(fragments: &mut Vec<Fragment>, text: &str, needle: &str, id: u32) {
    let mut out = Vec::with_capacity(fragments.len() + 2);
    for &frag in fragments.iter() {
        let Fragment::Text(mut start, end) = frag else {
            out.push(frag);
            continue;
        };
        while let Some(pos) = text[start..end].find(needle) {
            let at = start + pos;
            if at > start {
                out.push(Fragment::Text(start, at));
            }
            out.push(Fragment::Token(id));
            start = at + needle.len();
        }
        if start < end {
            out.push(Fragment::Text(start, end));
        }
    }
    *fragments = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_on_finds_every_non_overlapping_occurrence() {
        let text = "a<x>b<x><x>";
        let mut frags = vec![Fragment::Text(0, text.len())];
        split_on(&mut frags, text, "<x>", 7);
        assert_eq!(
            frags,
            vec![
                Fragment::Text(0, 1),
                Fragment::Token(7),
                Fragment::Text(4, 5),
                Fragment::Token(7),
                Fragment::Token(7),
            ]
        );
    }

    #[test]
    fn split_on_leaves_tokens_and_unmatched_text() {
        let text = "xxaaa";
        let mut frags = vec![Fragment::Token(1), Fragment::Text(0, 5)];
        split_on(&mut frags, text, "aa", 2);
        assert_eq!(
            frags,
            vec![
                Fragment::Token(1),
                Fragment::Text(0, 2),
                Fragment::Token(2),
                Fragment::Text(4, 5),
            ]
        );
    }
}
