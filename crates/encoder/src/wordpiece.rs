//! BERT's WordPiece tokenizer, built from a `tokenizer.json`: special
//! tokens matched in the raw text, the BERT normalizer (control characters
//! dropped, whitespace to spaces, CJK characters isolated, accents stripped
//! by NFD, lowercasing), the BERT pre-tokenizer (whitespace and punctuation
//! split), greedy longest-match WordPiece with the `##` continuation
//! prefix, and `[CLS] … [SEP]` around the result. The ids equal Hugging
//! Face `tokenizers`' for the same file (the fidelity fixtures check it).
//!
//! A GGUF's `bert` vocabulary (`tokenizer.ggml.model = "bert"`) is read back
//! too: llama.cpp's converter wrote each word-initial piece with a leading
//! `▁` and each continuation without its `##`, control tokens as they are;
//! [`WordPiece::from_gguf`] undoes that, so the same ids come out. Of the
//! normalizer the GGUF keeps only `tokenizer.ggml.normalizer.lowercase`
//! (accents are stripped with it, as BERT does; true when absent).

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A WordPiece vocabulary and the BERT text rules.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
    pad: u32,
    prefix: String,
    max_word_chars: usize,
    lowercase: bool,
    strip_accents: bool,
    chinese_chars: bool,
    clean_text: bool,
    /// Added special tokens matched verbatim before normalization.
    specials: Vec<(String, u32)>,
    vocab_len: usize,
}

#[derive(serde::Deserialize)]
struct File {
    model: Model,
    #[serde(default)]
    normalizer: Option<Normalizer>,
    #[serde(default)]
    added_tokens: Vec<Added>,
}

#[derive(serde::Deserialize)]
struct Model {
    #[serde(rename = "type")]
    kind: String,
    vocab: HashMap<String, u32>,
    #[serde(default = "unk")]
    unk_token: String,
    #[serde(default = "prefix")]
    continuing_subword_prefix: String,
    #[serde(default = "max_chars")]
    max_input_chars_per_word: usize,
}

#[derive(serde::Deserialize)]
struct Normalizer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes")]
    clean_text: bool,
    #[serde(default = "yes")]
    handle_chinese_chars: bool,
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default = "yes")]
    lowercase: bool,
}

#[derive(serde::Deserialize)]
struct Added {
    id: u32,
    content: String,
    #[serde(default)]
    special: bool,
}

fn unk() -> String {
    "[UNK]".to_owned()
}
fn prefix() -> String {
    "##".to_owned()
}
fn max_chars() -> usize {
    100
}
fn yes() -> bool {
    true
}

impl WordPiece {
    /// Parse a Hugging Face `tokenizer.json` whose model is WordPiece.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.model.kind != "WordPiece" {
            return Err(format!(
                "the tokenizer model is {}, not WordPiece",
                file.model.kind
            ));
        }
        let norm = match file.normalizer {
            Some(n) if n.kind == "BertNormalizer" => n,
            Some(n) => return Err(format!("normalizer {} is not supported", n.kind)),
            None => Normalizer {
                kind: "BertNormalizer".to_owned(),
                clean_text: true,
                handle_chinese_chars: true,
                strip_accents: None,
                lowercase: true,
            },
        };
        let id_of = |token: &str| {
            file.model
                .vocab
                .get(token)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {token}"))
        };
        let mut specials: Vec<(String, u32)> = file
            .added_tokens
            .iter()
            .filter(|a| a.special && !a.content.is_empty())
            .map(|a| (a.content.clone(), a.id))
            .collect();
        // Longest first, so one special that prefixes another never wins.
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Ok(Self {
            unk: id_of(&file.model.unk_token)?,
            cls: id_of("[CLS]")?,
            sep: id_of("[SEP]")?,
            pad: id_of("[PAD]").unwrap_or(0),
            vocab_len: file.model.vocab.len(),
            vocab: file.model.vocab,
            prefix: file.model.continuing_subword_prefix,
            max_word_chars: file.model.max_input_chars_per_word,
            lowercase: norm.lowercase,
            strip_accents: norm.strip_accents.unwrap_or(norm.lowercase),
            chinese_chars: norm.handle_chinese_chars,
            clean_text: norm.clean_text,
            specials,
        })
    }

    /// The vocabulary of a GGUF whose `tokenizer.ggml.model` is `bert`.
    pub fn from_gguf(file: &gguf::GgufFile) -> Result<Self, String> {
        match file.get_str("tokenizer.ggml.model") {
            Some("bert") => {}
            Some(other) => return Err(format!("the tokenizer model is {other}, not bert")),
            None => return Err("tokenizer.ggml.model is missing".into()),
        }
        let tokens = file
            .get_str_array("tokenizer.ggml.tokens")
            .ok_or("tokenizer.ggml.tokens is missing")?;
        let types = file.get_i32_array("tokenizer.ggml.token_type");
        if types.as_ref().is_some_and(|t| t.len() != tokens.len()) {
            return Err("tokenizer.ggml.token_type does not match the tokens".into());
        }
        // llama_token_type: 3 is CONTROL.
        let control = |i: usize| match &types {
            Some(t) => t[i] == 3,
            None => tokens[i].starts_with('[') && tokens[i].ends_with(']'),
        };
        let mut vocab = HashMap::with_capacity(tokens.len());
        let mut specials = Vec::new();
        for (i, tok) in tokens.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| "too many tokens")?;
            let piece = if control(i) {
                if !tok.is_empty() {
                    specials.push(((*tok).to_owned(), id));
                }
                (*tok).to_owned()
            } else if let Some(word) = tok.strip_prefix('\u{2581}') {
                word.to_owned()
            } else {
                format!("##{tok}")
            };
            // The first id of a piece wins, as in a vocab.txt.
            vocab.entry(piece).or_insert(id);
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        let lowercase = file
            .get_bool("tokenizer.ggml.normalizer.lowercase")
            .unwrap_or(true);
        let id_of = |key: &str, text: &str| -> Result<u32, String> {
            match file.get_u32(key) {
                Some(id) if (id as usize) < tokens.len() => Ok(id),
                Some(id) => Err(format!("{key} {id} is outside the vocabulary")),
                None => vocab
                    .get(text)
                    .copied()
                    .ok_or_else(|| format!("the vocabulary has no {text} and {key} is missing")),
            }
        };
        Ok(Self {
            unk: id_of("tokenizer.ggml.unknown_token_id", "[UNK]")?,
            cls: id_of("tokenizer.ggml.cls_token_id", "[CLS]")?,
            sep: id_of("tokenizer.ggml.seperator_token_id", "[SEP]")?,
            pad: id_of("tokenizer.ggml.padding_token_id", "[PAD]").unwrap_or(0),
            vocab_len: tokens.len(),
            vocab,
            prefix: "##".to_owned(),
            max_word_chars: max_chars(),
            lowercase,
            strip_accents: lowercase,
            chinese_chars: true,
            clean_text: true,
            specials,
        })
    }

    /// The number of ids (the highest id plus one, for an id check).
    pub fn vocab_size(&self) -> usize {
        self.vocab_len
    }

    /// The id of `[PAD]`.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// `[CLS]` + the text's word pieces + `[SEP]`, untruncated.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.cls];
        let mut rest = text;
        while !rest.is_empty() {
            let found = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            match found {
                Some((at, len, id)) => {
                    self.encode_plain(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    rest = "";
                }
            }
        }
        ids.push(self.sep);
        ids
    }

    /// `[CLS]` + `ids` + `[SEP]`, for input given as token ids.
    pub fn wrap_ids(&self, ids: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(self.cls);
        out.extend_from_slice(ids);
        out.push(self.sep);
        out
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let normalized = self.normalize(text);
        for word in pre_tokenize(&normalized) {
            self.word_pieces(word, out);
        }
    }

    fn normalize(&self, text: &str) -> String {
        let mut s = String::with_capacity(text.len());
        for c in text.chars() {
            if self.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    continue;
                }
                if is_bert_whitespace(c) {
                    s.push(' ');
                    continue;
                }
            }
            if self.chinese_chars && is_chinese(c) {
                s.push(' ');
                s.push(c);
                s.push(' ');
            } else {
                s.push(c);
            }
        }
        if self.strip_accents {
            s = s
                .nfd()
                .filter(|c| c.general_category() != GeneralCategory::NonspacingMark)
                .collect();
        }
        if self.lowercase {
            // Per character, as the reference does (no final-sigma rule).
            s = s.chars().flat_map(char::to_lowercase).collect();
        }
        s
    }

    fn word_pieces(&self, word: &str, out: &mut Vec<u32>) {
        if word.chars().count() > self.max_word_chars {
            out.push(self.unk);
            return;
        }
        let start_len = out.len();
        let mut start = 0;
        let mut piece = String::new();
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.prefix);
                }
                piece.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
                while end > start && !word.is_char_boundary(end) {
                    end -= 1;
                }
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(start_len);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

/// Split on whitespace, and isolate every punctuation character.
fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
        } else if is_punctuation(c) {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
            words.push(&text[i..i + c.len_utf8()]);
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    words
}

fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Unassigned
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
    )
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            c.general_category(),
            GeneralCategory::ConnectorPunctuation
                | GeneralCategory::DashPunctuation
                | GeneralCategory::ClosePunctuation
                | GeneralCategory::FinalPunctuation
                | GeneralCategory::InitialPunctuation
                | GeneralCategory::OtherPunctuation
                | GeneralCategory::OpenPunctuation
        )
}

fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let vocab: Vec<&str> = vec![
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cafe", "run", "##ning", "!", "un", "##aff",
            "##able", "中",
        ];
        let vocab: HashMap<String, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), i as u32))
            .collect();
        let json = serde_json::json!({
            "model": {"type": "WordPiece", "vocab": vocab, "unk_token": "[UNK]",
                      "continuing_subword_prefix": "##", "max_input_chars_per_word": 100},
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                           "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "added_tokens": [{"id": 2, "content": "[CLS]", "special": true},
                             {"id": 3, "content": "[SEP]", "special": true}]
        });
        WordPiece::from_json(&json.to_string()).expect("tiny tokenizer")
    }

    #[test]
    fn lowercases_strips_accents_and_splits_pieces() {
        let t = tiny();
        // [CLS] the café running ! unaffable [SEP]
        assert_eq!(
            t.encode("The CAFÉ Running! unaffable"),
            vec![2, 4, 5, 6, 7, 8, 9, 10, 11, 3]
        );
    }

    #[test]
    fn unknown_words_become_one_unk_and_specials_are_kept() {
        let t = tiny();
        assert_eq!(t.encode("the xyz [SEP] the"), vec![2, 4, 1, 3, 4, 3]);
        assert_eq!(t.encode("中中"), vec![2, 12, 12, 3]);
        assert_eq!(t.encode(""), vec![2, 3]);
        assert_eq!(t.encode("\u{0}\u{200b}the\u{a0}the"), vec![2, 4, 4, 3]);
    }
}
