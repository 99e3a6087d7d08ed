//! Incremental UTF-8 decoding of detokenized bytes.
//!
//! Byte-level tokenizers emit pieces that may end in the middle of a
//! character. [`Utf8Decoder`] releases only complete characters and keeps
//! an incomplete tail (at most 3 bytes) for the next push. Bytes that can
//! never become valid are replaced with U+FFFD exactly where and as often
//! as `String::from_utf8_lossy` would replace them in the whole stream:
//! the concatenation of every output equals the one-shot lossy decode.
//!
//! This holds because lossy decoding is a left-to-right scan whose only
//! look-ahead is the rest of the current sequence: std's decoder reports
//! "unexpected end" (`error_len() == None`) precisely for a tail that more
//! bytes could still complete, and any other error is final.

/// Streaming bytes → `String` decoder for one sequence.
#[derive(Debug, Clone, Default)]
pub struct Utf8Decoder {
    /// Incomplete trailing sequence from the previous push (0..=3 bytes).
    pending: Vec<u8>,
    /// Scratch buffer for `pending + new bytes`, reused between pushes.
    scratch: Vec<u8>,
}

impl Utf8Decoder {
    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `bytes` after whatever was held back; returns the complete
    /// characters, holding back an incomplete tail.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len() + self.pending.len());
        if self.pending.is_empty() {
            self.pending = decode_into(bytes, &mut out).to_vec();
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(&self.pending);
            self.scratch.extend_from_slice(bytes);
            let tail = decode_into(&self.scratch, &mut out);
            self.pending.clear();
            self.pending.extend_from_slice(tail);
        }
        out
    }

    /// Ends the stream: an incomplete tail becomes one U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Whether bytes are held back waiting for the rest of a character.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Appends the lossy decoding of `bytes` to `out`, except for an
/// incomplete final sequence, which is returned.
fn decode_into<'a>(mut bytes: &'a [u8], out: &mut String) -> &'a [u8] {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return &[];
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // `valid_up_to` marks the end of a valid prefix.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        bytes = &rest[bad..];
                    }
                    None => return rest,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> String {
        let mut d = Utf8Decoder::new();
        let mut out = String::new();
        let mut last = 0;
        for &c in cuts {
            let c = c.min(bytes.len()).max(last);
            out.push_str(&d.push(&bytes[last..c]));
            last = c;
        }
        out.push_str(&d.push(&bytes[last..]));
        out.push_str(&d.finish());
        out
    }

    #[test]
    fn holds_back_a_split_character() {
        let euro = "€".as_bytes(); // E2 82 AC
        let mut d = Utf8Decoder::new();
        assert_eq!(d.push(b"a"), "a");
        assert_eq!(d.push(&euro[..1]), "");
        assert_eq!(d.push(&euro[1..2]), "");
        assert!(d.has_pending());
        assert_eq!(d.push(&euro[2..]), "€");
        assert!(!d.has_pending());
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_are_replaced_at_once() {
        let mut d = Utf8Decoder::new();
        // 0xC0 can never start a valid sequence; 0xE2 0x41 is broken by 'A'.
        assert_eq!(d.push(&[0xC0]), "\u{FFFD}");
        assert_eq!(d.push(&[0xE2]), "");
        assert_eq!(d.push(b"A"), "\u{FFFD}A");
        // A truncated sequence at the end is one replacement.
        assert_eq!(d.push(&[0xF0, 0x9F, 0x98]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn surrogates_and_overlongs_match_lossy() {
        let bytes = [0xED, 0xA0, 0x80, b'x', 0xE0, 0x80, 0xAF, 0xF4, 0x90];
        let want = String::from_utf8_lossy(&bytes).into_owned();
        for cut in 0..=bytes.len() {
            assert_eq!(decode_in_pieces(&bytes, &[cut]), want, "cut {cut}");
        }
    }

    fn cuts_strategy() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(0usize..80, 0..12).prop_map(|mut v| {
            v.sort_unstable();
            v
        })
    }

    proptest! {
        #[test]
        fn random_bytes_any_split_equals_one_shot_lossy(
            bytes in prop::collection::vec(any::<u8>(), 0..80),
            cuts in cuts_strategy(),
        ) {
            let want = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert_eq!(decode_in_pieces(&bytes, &cuts), want);
        }

        #[test]
        fn mostly_valid_bytes_any_split_equals_one_shot_lossy(
            // Lead and continuation bytes in proportions that make near-valid
            // sequences (the interesting case) common.
            bytes in prop::collection::vec(
                prop::sample::select(vec![
                    b'a', 0x80, 0x9F, 0xA0, 0xBF, 0xC2, 0xDF, 0xE0, 0xE2, 0xED, 0xEF, 0xF0, 0xF4, 0xF5,
                ]),
                0..60,
            ),
            cuts in cuts_strategy(),
        ) {
            let want = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert_eq!(decode_in_pieces(&bytes, &cuts), want);
        }

        #[test]
        fn valid_text_split_mid_character_round_trips(text in "\\PC{0,30}", cuts in cuts_strategy()) {
            prop_assert_eq!(decode_in_pieces(text.as_bytes(), &cuts), text);
        }

        #[test]
        fn single_byte_pushes_round_trip(text in "\\PC{0,30}") {
            let cuts: Vec<usize> = (0..text.len()).collect();
            prop_assert_eq!(decode_in_pieces(text.as_bytes(), &cuts), text);
        }
    }
}
