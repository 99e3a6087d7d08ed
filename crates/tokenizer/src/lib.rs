//! Tokenizer and chat template, built from a GGUF file's metadata.
//!
//! Owns text → token ids (byte-level BPE for `gpt2` vocabularies,
//! SentencePiece with scores for `llama` ones, and the special-token
//! partition in front of both), ids → bytes, the end-of-generation set, and
//! rendering `tokenizer.chat_template` with Hugging Face semantics.
//!
//! Token ids equal llama.cpp's (b11434) for the same text: the algorithms,
//! tie-breaks and Unicode classes follow its `llama-vocab.cpp` and
//! `unicode.cpp`, and `tests/llama_cpp_fixtures.rs` checks ids produced by
//! `llama-tokenize` (see `scripts/reference/tokenizer_fixtures.sh`).
//! Not reproduced: per-model `lstrip`/`rstrip` token attributes (Phi-3, Jina),
//! which llama.cpp sets from model names.

mod bpe;
mod decode;
mod eog;
mod error;
mod pretokenize;
mod special;
mod spm;
mod template;
mod unicode;
mod vocab;

use std::collections::BTreeSet;

use gguf::GgufFile;

pub use error::{ErrorKind, TemplateError, TokenizerError};
pub use template::{ChatMessage, ChatTemplate};

use bpe::{Bpe, Words};
use decode::Pieces;
use pretokenize::PreTokenizer;
use special::{Fragment, SpecialMatcher};
use vocab::{attr, ModelKind, Vocab, KEY_MODEL, KEY_PRE};

const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// A model's tokenizer: encode, decode and special-token facts.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    /// Present for BPE vocabularies.
    bpe: Option<Bpe>,
    specials: SpecialMatcher,
    pieces: Pieces,
    eog: BTreeSet<u32>,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Self, TokenizerError> {
        let model = f
            .get_str(KEY_MODEL)
            .ok_or(TokenizerError::MissingMetadata { key: KEY_MODEL })?;
        let (kind, pre) = match model {
            "llama" => (ModelKind::Spm, None),
            "gpt2" => {
                let name = f.get_str(KEY_PRE).unwrap_or("default");
                (ModelKind::Bpe, Some(PreTokenizer::from_name(name)?))
            }
            // Gemma 4: its own BPE kind, whatever `tokenizer.ggml.pre` says
            // (llama.cpp forces its `gemma4` pre-tokenizer), cleaning spaces.
            "gemma4" => (ModelKind::SpmBpe, None),
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let clean_spaces = pre.is_some_and(|(_, clean)| clean) || kind == ModelKind::SpmBpe;
        let mut vocab = Vocab::load(f, kind, clean_spaces)?;
        if pre.is_some_and(|(p, _)| p.adds_bos_by_default())
            && f.get_bool("tokenizer.ggml.add_bos_token").is_none()
        {
            vocab.add_bos = true;
        }
        let words = match (kind, pre) {
            (_, Some((pre, _))) => Some(Words::ByteLevel(pre)),
            (ModelKind::SpmBpe, None) => Some(Words::SpmStyle),
            _ => None,
        };
        let bpe = match words {
            Some(words) => {
                let merges = f
                    .get_str_array(KEY_MERGES)
                    .ok_or(TokenizerError::MissingMetadata { key: KEY_MERGES })?;
                Some(Bpe::new(&vocab, &merges, words)?)
            }
            None => None,
        };
        let eog = eog::detect_specials(&mut vocab);
        let specials = SpecialMatcher::new(&vocab)?;
        let pieces = Pieces::new(&vocab, bpe.as_ref().and_then(Bpe::byte_map));
        Ok(Self {
            vocab,
            bpe,
            specials,
            pieces,
            eog,
            chat_template: f.get_str(KEY_CHAT_TEMPLATE).map(str::to_string),
        })
    }

    /// Token ids for `text`. `add_special` adds BOS/EOS where the model's
    /// `add_bos_token`/`add_eos_token` flags ask for them; `parse_special`
    /// turns control tokens' texts (e.g. `<|im_start|>`) into those tokens
    /// instead of tokenizing them as plain text.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = if text.is_empty() {
            Vec::new()
        } else {
            self.specials.partition(&self.vocab, text, parse_special)
        };
        let v = &self.vocab;
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.extend(v.special.bos);
        }
        // SentencePiece: a space is prepended to text at the start and after
        // each special token, when the model asks for it.
        let mut after_special = true;
        let mut buf = String::new();
        for frag in fragments {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(a, b) => {
                    let piece = &text[a..b];
                    match &self.bpe {
                        Some(bpe) => bpe.encode(v, piece, &mut out),
                        None => {
                            buf.clear();
                            if v.add_space_prefix && after_special {
                                buf.push(' ');
                            }
                            buf.push_str(piece);
                            spm::encode(v, &buf, &mut out);
                        }
                    }
                    after_special = false;
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.special.eos);
        }
        out
    }

    /// The bytes `id` contributes to decoded text: byte-level BPE tokens as
    /// raw bytes, SentencePiece `▁` as a space and `<0xNN>` as that byte,
    /// control and user-defined tokens as their text. Empty for unknown ids.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces.get(id)
    }

    /// Text for `ids` (invalid UTF-8 replaced). With `skip_special`, control
    /// and unknown tokens are left out, as is a leading BOS / trailing EOS the
    /// model adds itself.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let bytes = decode::detokenize(&self.vocab, &self.pieces, ids, skip_special);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.special.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.special.eos
    }

    /// Whether the model adds BOS when asked for special tokens.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether `id` ends generation: EOS, EOT, EOM, the FIM pad/repo/separator
    /// tokens, and tokens such as `<|im_end|>`, `<end_of_turn>` or
    /// `<|endoftext|>` (llama.cpp's list).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    /// Whether `id` is a control token (never shown to users).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.has_attr(id, attr::CONTROL)
    }

    /// The id of the token whose text is exactly `piece` (as stored in the
    /// vocabulary, e.g. `<|im_end|>` or `▁the`).
    pub fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.vocab.id(piece)
    }

    /// The token's text as stored in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// `tokenizer.chat_template`, if the GGUF has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The model's chat template, ready to render, or
    /// [`TokenizerError::NoChatTemplate`].
    pub fn load_chat_template(&self) -> Result<ChatTemplate, TokenizerError> {
        let source = self.chat_template().ok_or(TokenizerError::NoChatTemplate)?;
        ChatTemplate::new(
            source,
            self.bos_token().unwrap_or_default(),
            self.eos_token().unwrap_or_default(),
        )
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_id().and_then(|id| self.vocab.text(id))
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_id().and_then(|id| self.vocab.text(id))
    }
}
