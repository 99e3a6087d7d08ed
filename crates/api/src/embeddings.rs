//! `POST /v1/embeddings`: [`EmbeddingRequest`] with its four input shapes
//! (a string, strings, token ids, lists of token ids), OpenAI's limits on
//! them, `encoding_format` (`float`, or `base64`: little-endian f32 bytes),
//! and the [`EmbeddingList`] it answers.

use serde::{Deserialize, Serialize};

use crate::parse::{field, typed, Field, RequestBody};
use crate::{ApiError, InvalidCode};

/// The most inputs one request may carry (OpenAI's limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// The body of `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// The model id.
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// The length of the vectors, where the model can shorten them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<i64>,
    /// The end user, for abuse monitoring (recorded nowhere else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `input`: a string, strings, token ids, or lists of token ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One input as token ids.
    Tokens(Vec<u32>),
    /// Several inputs as token ids.
    TokenLists(Vec<Vec<u32>>),
}

/// One input after the shapes are flattened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingItem<'a> {
    /// Text to tokenize.
    Text(&'a str),
    /// Token ids to use as they are.
    Tokens(&'a [u32]),
}

/// How the vectors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    /// JSON numbers.
    Float,
    /// Base64 of the little-endian f32 bytes.
    Base64,
}

impl EmbeddingInput {
    /// Each input in order (its `index` in the answer).
    pub fn items(&self) -> Vec<EmbeddingItem<'_>> {
        match self {
            Self::Text(text) => vec![EmbeddingItem::Text(text)],
            Self::Texts(texts) => texts.iter().map(|t| EmbeddingItem::Text(t)).collect(),
            Self::Tokens(tokens) => vec![EmbeddingItem::Tokens(tokens)],
            Self::TokenLists(lists) => lists.iter().map(|l| EmbeddingItem::Tokens(l)).collect(),
        }
    }
}

impl EmbeddingRequest {
    /// The requested encoding (checked by validation).
    pub fn format(&self) -> EncodingFormat {
        match self.encoding_format.as_deref() {
            Some("base64") => EncodingFormat::Base64,
            _ => EncodingFormat::Float,
        }
    }

    fn validate(&self) -> Result<(), ApiError> {
        let items = self.input.items();
        if items.is_empty() {
            return Err(ApiError::invalid(
                "input",
                InvalidCode::EmptyArray,
                "`input` must not be an empty array.",
            ));
        }
        if items.len() > MAX_EMBEDDING_INPUTS {
            return Err(ApiError::invalid(
                "input",
                InvalidCode::ArrayAboveMaxLength,
                format!(
                    "`input` has {} entries; at most {MAX_EMBEDDING_INPUTS} are allowed.",
                    items.len()
                ),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let empty = match item {
                EmbeddingItem::Text(t) => t.is_empty(),
                EmbeddingItem::Tokens(t) => t.is_empty(),
            };
            if empty {
                let param = if items.len() == 1
                    && !matches!(
                        self.input,
                        EmbeddingInput::Texts(_) | EmbeddingInput::TokenLists(_)
                    ) {
                    "input".to_owned()
                } else {
                    format!("input[{i}]")
                };
                return Err(ApiError::invalid(
                    param,
                    InvalidCode::InvalidValue,
                    "An input must not be empty.",
                ));
            }
        }
        match self.encoding_format.as_deref() {
            None | Some("float") | Some("base64") => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    "encoding_format",
                    InvalidCode::InvalidValue,
                    format!("`encoding_format` must be 'float' or 'base64', not {other:?}."),
                ))
            }
        }
        if let Some(d) = self.dimensions {
            if d < 1 {
                return Err(ApiError::invalid(
                    "dimensions",
                    InvalidCode::IntegerBelowMinValue,
                    format!("`dimensions` must be at least 1, not {d}."),
                ));
            }
        }
        if self.model.is_empty() {
            return Err(ApiError::invalid(
                "model",
                InvalidCode::MissingRequiredParameter,
                "`model` must name a model.",
            ));
        }
        Ok(())
    }
}

static EMBEDDING_FIELDS: &[Field] = &[
    field("model", "a string", typed::<String>),
    field(
        "input",
        "a string, an array of strings, an array of token ids or an array of arrays of token ids",
        typed::<EmbeddingInput>,
    ),
    field("encoding_format", "a string", typed::<Option<String>>),
    field("dimensions", "an integer", typed::<Option<i64>>),
    field("user", "a string", typed::<Option<String>>),
];

impl RequestBody for EmbeddingRequest {
    fn fields() -> &'static [Field] {
        EMBEDDING_FIELDS
    }

    fn check(&self) -> Result<(), ApiError> {
        self.validate()
    }
}

/// A vector as written: numbers, or base64 of little-endian f32 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: "float"`.
    Float(Vec<f32>),
    /// `encoding_format: "base64"`.
    Base64(String),
}

impl EmbeddingVector {
    /// `v` in `format`.
    pub fn encode(v: &[f32], format: EncodingFormat) -> Self {
        match format {
            EncodingFormat::Float => Self::Float(v.to_vec()),
            EncodingFormat::Base64 => {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Self::Base64(base64(&bytes))
            }
        }
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One vector of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// The input's position.
    pub index: u32,
    /// The vector.
    pub embedding: EmbeddingVector,
}

/// The token counts of an embeddings answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Tokens run through the model.
    pub prompt_tokens: u32,
    /// The same (nothing is generated).
    pub total_tokens: u32,
}

/// The answer of `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: String,
    /// One per input, in input order.
    pub data: Vec<Embedding>,
    /// The model that answered.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

impl EmbeddingList {
    /// The answer for `vectors` (in input order) written in `format`.
    pub fn new(
        model: String,
        vectors: &[Vec<f32>],
        format: EncodingFormat,
        prompt_tokens: u32,
    ) -> Self {
        let data = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| Embedding {
                object: "embedding".to_owned(),
                index: u32::try_from(i).unwrap_or(u32::MAX),
                embedding: EmbeddingVector::encode(v, format),
            })
            .collect();
        Self {
            object: "list".to_owned(),
            data,
            model,
            usage: EmbeddingUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_request;

    fn err(body: &str) -> ApiError {
        parse_request::<EmbeddingRequest>(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn every_input_shape_parses() {
        for (body, n) in [
            (r#"{"model":"m","input":"hi"}"#, 1),
            (r#"{"model":"m","input":["a","b"]}"#, 2),
            (r#"{"model":"m","input":[1,2,3]}"#, 1),
            (r#"{"model":"m","input":[[1],[2,3]]}"#, 2),
        ] {
            let r: EmbeddingRequest = parse_request(body.as_bytes()).expect(body);
            assert_eq!(r.input.items().len(), n, "{body}");
        }
    }

    #[test]
    fn bad_input_names_its_param() {
        assert_eq!(err(r#"{"model":"m","input":[]}"#).param(), Some("input"));
        assert_eq!(err(r#"{"model":"m","input":""}"#).param(), Some("input"));
        assert_eq!(
            err(r#"{"model":"m","input":["a",""]}"#).param(),
            Some("input[1]")
        );
        assert_eq!(err(r#"{"model":"m","input":[-1]}"#).param(), Some("input"));
        assert_eq!(
            err(r#"{"model":"m","input":{"a":1}}"#).param(),
            Some("input")
        );
        assert_eq!(err(r#"{"model":"m"}"#).param(), Some("input"));
        let many = format!(
            r#"{{"model":"m","input":[{}]}}"#,
            vec!["\"x\""; 2049].join(",")
        );
        assert_eq!(err(&many).param(), Some("input"));
        assert_eq!(
            err(r#"{"model":"m","input":"a","encoding_format":"int8"}"#).param(),
            Some("encoding_format")
        );
        assert_eq!(
            err(r#"{"model":"m","input":"a","dimensions":0}"#).param(),
            Some("dimensions")
        );
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let v = EmbeddingVector::encode(&[1.0, -2.5], EncodingFormat::Base64);
        // 1.0 = 00 00 80 3f, -2.5 = 00 00 20 c0
        assert_eq!(v, EmbeddingVector::Base64("AACAPwAAIMA=".to_owned()));
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"a"), "YQ==");
    }
}
