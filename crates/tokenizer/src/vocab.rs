//! The vocabulary as read from GGUF metadata: token texts and their lookup
//! map, per-token attributes and scores, the special token ids and the
//! `add_*` flags, with llama.cpp's defaults for each tokenizer model.

use std::sync::Arc;

use gguf::GgufFile;
use rustc_hash::FxHashMap;

use crate::error::TokenizerError;

/// Per-token attribute bits, derived from `tokenizer.ggml.token_type`.
pub(crate) mod attr {
    /// Token type 0 (or out of range): never rendered.
    pub const UNDEFINED: u8 = 0;
    pub const UNKNOWN: u8 = 1 << 0;
    pub const UNUSED: u8 = 1 << 1;
    pub const NORMAL: u8 = 1 << 2;
    pub const CONTROL: u8 = 1 << 3;
    pub const USER_DEFINED: u8 = 1 << 4;
    pub const BYTE: u8 = 1 << 5;
}

/// Which algorithm turns text into ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelKind {
    /// SentencePiece with scores (`tokenizer.ggml.model = llama`).
    Spm,
    /// Byte-level BPE with merges (`tokenizer.ggml.model = gpt2`).
    Bpe,
    /// BPE with merges over raw UTF-8, spaces as `▁` and `<0xNN>` byte
    /// tokens (`tokenizer.ggml.model = gemma4`).
    SpmBpe,
}

/// The special token ids llama.cpp tracks; `None` where the model has none.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Token texts, attributes and flags.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub kind: ModelKind,
    pub texts: Vec<Arc<str>>,
    pub ids: FxHashMap<Arc<str>, u32>,
    pub attrs: Vec<u8>,
    pub scores: Vec<f32>,
    pub special: SpecialIds,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// llama.cpp's `clean_spaces` (HF `clean_up_tokenization_spaces`), used when decoding.
    pub clean_spaces: bool,
}

pub(crate) const KEY_MODEL: &str = "tokenizer.ggml.model";
pub(crate) const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";

impl Vocab {
    /// Reads the vocabulary. `clean_spaces` comes from the pre-tokenizer choice
    /// (BPE only); SentencePiece never cleans spaces.
    pub(crate) fn load(
        f: &GgufFile,
        kind: ModelKind,
        clean_spaces: bool,
    ) -> Result<Self, TokenizerError> {
        let tokens = f
            .get_str_array(KEY_TOKENS)
            .ok_or(TokenizerError::MissingMetadata { key: KEY_TOKENS })?;
        let n = tokens.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(TokenizerError::InvalidMetadata {
                key: KEY_TOKENS,
                reason: format!("{n} tokens"),
            });
        }
        let scores = read_scores(f, n)?;
        let attrs = read_attrs(f, n)?;

        let mut texts = Vec::with_capacity(n);
        let mut ids = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for (i, t) in tokens.iter().enumerate() {
            // llama.cpp renames empty tokens so that each text maps to one id.
            let text: Arc<str> = if t.is_empty() {
                Arc::from(format!("[EMPTY_{i}]"))
            } else {
                Arc::from(*t)
            };
            // `i < n`, which fits u32 (checked above).
            ids.insert(Arc::clone(&text), i as u32);
            texts.push(text);
        }

        let mut vocab = Vocab {
            kind,
            texts,
            ids,
            attrs,
            scores,
            special: SpecialIds::default(),
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            clean_spaces,
        };
        vocab.read_flags_and_ids(f);
        Ok(vocab)
    }

    /// Defaults per model kind, then the GGUF keys that override them.
    fn read_flags_and_ids(&mut self, f: &GgufFile) {
        let n = self.texts.len();
        let in_range = |id: u32| (id as usize) < n;
        let (bos, eos, unk) = match self.kind {
            ModelKind::Spm => {
                self.add_space_prefix = true;
                self.add_bos = true;
                (Some(1), Some(2), Some(0))
            }
            ModelKind::Bpe => (Some(11), Some(11), None),
            // llama.cpp gives Gemma 4's vocabulary no default ids, and always
            // adds BOS (its workaround for files that say otherwise).
            ModelKind::SpmBpe => (None, None, None),
        };
        let s = &mut self.special;
        s.bos = bos.filter(|&id| in_range(id));
        s.eos = eos.filter(|&id| in_range(id));
        s.unk = unk.filter(|&id| in_range(id));

        type Slot = fn(&mut SpecialIds) -> &mut Option<u32>;
        let keys: [(&str, Slot); 17] = [
            ("tokenizer.ggml.bos_token_id", |s| &mut s.bos),
            ("tokenizer.ggml.eos_token_id", |s| &mut s.eos),
            ("tokenizer.ggml.eot_token_id", |s| &mut s.eot),
            ("tokenizer.ggml.eom_token_id", |s| &mut s.eom),
            ("tokenizer.ggml.unknown_token_id", |s| &mut s.unk),
            ("tokenizer.ggml.seperator_token_id", |s| &mut s.sep),
            ("tokenizer.ggml.padding_token_id", |s| &mut s.pad),
            ("tokenizer.ggml.mask_token_id", |s| &mut s.mask),
            ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
            // Deprecated spellings of the FIM ids.
            ("tokenizer.ggml.prefix_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.suffix_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.middle_token_id", |s| &mut s.fim_mid),
        ];
        for (key, slot) in keys {
            // An out-of-range id in the file keeps the default (as llama.cpp does).
            if let Some(id) = f.get_u32(key).filter(|&id| in_range(id)) {
                *slot(s) = Some(id);
            }
        }

        if let Some(v) = f.get_bool("tokenizer.ggml.add_space_prefix") {
            self.add_space_prefix = v;
        }
        if let Some(v) = f.get_bool("tokenizer.ggml.add_bos_token") {
            self.add_bos = v;
        }
        if self.kind == ModelKind::SpmBpe {
            self.add_bos = true;
        }
        if let Some(v) = f.get_bool("tokenizer.ggml.add_eos_token") {
            self.add_eos = v;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    /// The id of the token whose text is exactly `text`.
    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    pub(crate) fn attr(&self, id: u32) -> u8 {
        self.attrs
            .get(id as usize)
            .copied()
            .unwrap_or(attr::UNDEFINED)
    }

    pub(crate) fn has_attr(&self, id: u32, bits: u8) -> bool {
        self.attr(id) & bits != 0
    }

    pub(crate) fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(|t| &**t)
    }

    /// The byte an SPM-style `<0xNN>` byte token stands for.
    pub(crate) fn byte_of(&self, id: u32) -> Option<u8> {
        let t = self.text(id)?;
        let hex = t.get(3..5)?;
        u8::from_str_radix(hex, 16).ok()
    }
}

fn read_scores(f: &GgufFile, n: usize) -> Result<Vec<f32>, TokenizerError> {
    let Some(value) = f.get(KEY_SCORES) else {
        return Ok(vec![0.0; n]);
    };
    let invalid = |reason: String| TokenizerError::InvalidMetadata {
        key: KEY_SCORES,
        reason,
    };
    let arr = value
        .as_array()
        .ok_or_else(|| invalid("not an array".into()))?;
    if arr.len() < n {
        return Err(invalid(format!("{} scores for {n} tokens", arr.len())));
    }
    arr.iter()
        .take(n)
        .map(|v| {
            v.as_f32()
                .or_else(|| v.as_i64().map(|i| i as f32))
                .ok_or_else(|| invalid("not a number array".into()))
        })
        .collect()
}

fn read_attrs(f: &GgufFile, n: usize) -> Result<Vec<u8>, TokenizerError> {
    if f.get(KEY_TOKEN_TYPE).is_none() {
        return Ok(vec![attr::NORMAL; n]);
    }
    let types = f
        .get_i32_array(KEY_TOKEN_TYPE)
        .ok_or(TokenizerError::InvalidMetadata {
            key: KEY_TOKEN_TYPE,
            reason: "not an integer array".into(),
        })?;
    if types.len() < n {
        return Err(TokenizerError::InvalidMetadata {
            key: KEY_TOKEN_TYPE,
            reason: format!("{} types for {n} tokens", types.len()),
        });
    }
    Ok(types
        .iter()
        .take(n)
        .map(|&t| match t {
            1 => attr::NORMAL,
            2 => attr::UNKNOWN,
            3 => attr::CONTROL,
            4 => attr::USER_DEFINED,
            5 => attr::UNUSED,
            6 => attr::BYTE,
            _ => attr::UNDEFINED,
        })
        .collect())
}
