//! Token ids back to bytes: the piece each token contributes (computed once
//! per vocabulary, as llama.cpp's piece cache) and detokenization with
//! llama.cpp's leading-space and space-cleaning rules.

use crate::bpe::ByteMap;
use crate::spm::SPACE_MARK;
use crate::vocab::{attr, ModelKind, Vocab};

/// Every token's piece, concatenated, with offsets.
#[derive(Debug)]
pub(crate) struct Pieces {
    bytes: Vec<u8>,
    /// `offsets[id]..offsets[id + 1]` is token `id`'s piece.
    offsets: Vec<usize>,
}

impl Pieces {
    /// Computes the pieces; `byte_map` is the byte-level alphabet for BPE
    /// vocabularies (`None` for SentencePiece).
    pub(crate) fn new(vocab: &Vocab, byte_map: Option<&ByteMap>) -> Self {
        let mut bytes = Vec::with_capacity(vocab.len() * 6);
        let mut offsets = Vec::with_capacity(vocab.len() + 1);
        offsets.push(0);
        for id in 0..vocab.len() as u32 {
            append_piece(vocab, byte_map, id, &mut bytes);
            offsets.push(bytes.len());
        }
        Self { bytes, offsets }
    }

    pub(crate) fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a..b],
            _ => &[],
        }
    }
}

fn append_piece(vocab: &Vocab, byte_map: Option<&ByteMap>, id: u32, out: &mut Vec<u8>) {
    let a = vocab.attr(id);
    let text = &*vocab.texts[id as usize];
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        out.extend_from_slice(text.as_bytes());
    } else if a & attr::NORMAL != 0 {
        match (vocab.kind, byte_map) {
            (ModelKind::Bpe, Some(map)) => append_byte_level(map, text, out),
            _ => out.extend_from_slice(text.replace(SPACE_MARK, " ").as_bytes()),
        }
    } else if a & attr::BYTE != 0 {
        if let Some(b) = vocab.byte_of(id) {
            out.push(b);
        }
    }
    // Unused and undefined tokens contribute nothing.
}

/// Decodes a byte-level BPE token's text to raw bytes; a code point outside
/// the byte alphabet is written the way llama.cpp writes it.
fn append_byte_level(map: &ByteMap, text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match map.byte_of(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}

/// llama.cpp's `detokenize` with `remove_special = unparse_special' = skip_special`.
pub(crate) fn detokenize(
    vocab: &Vocab,
    pieces: &Pieces,
    ids: &[u32],
    skip_special: bool,
) -> Vec<u8> {
    let mut ids = ids;
    let mut remove_space = vocab.add_space_prefix;
    if skip_special && vocab.add_bos && ids.first().is_some_and(|&t| Some(t) == vocab.special.bos) {
        remove_space = false;
        ids = &ids[1..];
    }
    if skip_special && vocab.add_eos && ids.last().is_some_and(|&t| Some(t) == vocab.special.eos) {
        ids = &ids[..ids.len() - 1];
    }
    let mut out = Vec::new();
    for &id in ids {
        let hidden = skip_special && vocab.has_attr(id, attr::UNKNOWN | attr::CONTROL);
        if !hidden {
            let mut piece = pieces.get(id);
            if remove_space {
                piece = piece.strip_prefix(b" ").unwrap_or(piece);
            }
            out.extend_from_slice(piece);
        }
        remove_space = false;
    }
    if vocab.clean_spaces {
        out = clean_spaces(&out);
    }
    out
}

/// HF's `clean_up_tokenization_spaces` as llama.cpp does it: drop the space
/// before `? ! . ,`, around a lone `'`, and before `'s 'm 're 've`.
fn clean_spaces(text: &[u8]) -> Vec<u8> {
    // Pass 1: " ?", " !", " .", " ,".
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // Pass 2: " ' " becomes "'".
    let src = std::mem::take(&mut out);
    let mut prev = None;
    let mut i = 0;
    while i < src.len() {
        let x = src[i];
        if i > 0 && x == b'\'' && i + 1 < src.len() && prev == Some(b' ') && src[i + 1] == b' ' {
            out.pop();
            out.push(x);
            // The space after is dropped, and the next byte sees no space before it.
            prev = Some(0);
            i += 2;
            continue;
        }
        out.push(x);
        prev = Some(x);
        i += 1;
    }
    // Pass 3: " 's", " 'm", " 're", " 've" lose their space.
    let src = std::mem::take(&mut out);
    for (i, &x) in src.iter().enumerate() {
        if i > 0 && src[i - 1] == b' ' && x == b'\'' && i + 1 < src.len() {
            let x1 = src[i + 1];
            let x2 = src.get(i + 2).copied();
            let drop = matches!(x1, b's' | b'm') || matches!((x1, x2), (b'r' | b'v', Some(b'e')));
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_spaces_rules() {
        assert_eq!(clean_spaces(b"Hi , you !"), b"Hi, you!");
        assert_eq!(clean_spaces(b"a ' b"), b"a'b");
        assert_eq!(clean_spaces(b"it 's we 're I 'll"), b"it's we're I 'll");
        assert_eq!(clean_spaces(b" ."), b".");
        assert_eq!(clean_spaces(b""), b"");
    }
}
