//! `POST /tokenize` and `POST /detokenize` in llama.cpp's server shape,
//! which load testers and tooling use to count tokens.
//!
//! `{"content": "...", "add_special": bool?, "with_pieces": bool?}` →
//! `{"tokens": [1, 2, …]}` (or `[{"id": 1, "piece": "…"}, …]` with
//! pieces); `{"tokens": [...]}` → `{"content": "..."}`.

use serde::{Deserialize, Serialize};

/// The body of `POST /tokenize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizeRequest {
    /// The text to tokenize.
    pub content: String,
    /// Add the model's special tokens (such as BOS); default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_special: Option<bool>,
    /// Return each token's text piece alongside its id; default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_pieces: Option<bool>,
}

/// The answer of `POST /tokenize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizeResponse {
    /// The tokens, in order.
    pub tokens: Vec<TokenizeToken>,
}

/// One token of a tokenize answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenizeToken {
    /// Just the id (without `with_pieces`).
    Id(u32),
    /// The id and its piece (with `with_pieces`).
    WithPiece {
        /// The token id.
        id: u32,
        /// The token's text.
        piece: Piece,
    },
}

/// A token's piece: text when it is valid UTF-8 alone, else its bytes
/// (as llama.cpp does for partial characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Piece {
    /// Valid UTF-8.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Piece {
    /// Text when `bytes` is valid UTF-8, else the bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Piece::Text(text),
            Err(err) => Piece::Bytes(err.into_bytes()),
        }
    }
}

/// The body of `POST /detokenize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetokenizeRequest {
    /// The token ids to turn back into text.
    pub tokens: Vec<u32>,
}

/// The answer of `POST /detokenize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetokenizeResponse {
    /// The text.
    pub content: String,
}
