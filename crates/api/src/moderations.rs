//! `POST /v1/moderations`: [`ModerationRequest`] (a string, strings, or
//! content parts of which only text is read), and the [`Moderation`] it
//! answers: per input `flagged`, OpenAI's 13 categories with a boolean
//! and a score in [0, 1], and the input types each score was taken from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::parse::{field, typed, Field, RequestBody};
use crate::{ApiError, InvalidCode};

/// OpenAI's moderation categories, in the order the API documents them.
pub const MODERATION_CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// The model names accepted (the first is the default).
pub const MODERATION_MODELS: [&str; 2] = ["omni-moderation-latest", "text-moderation-latest"];

/// The most inputs one request may carry.
pub const MAX_MODERATION_INPUTS: usize = 2048;

/// The body of `POST /v1/moderations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModerationRequest {
    /// What to classify.
    pub input: ModerationInput,
    /// `omni-moderation-latest` (default) or `text-moderation-latest`, or
    /// a configured upstream's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `input`: a string, strings, or an array of content parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModerationInput {
    /// One text.
    Text(String),
    /// Several texts, one result each.
    Texts(Vec<String>),
    /// Content parts (`{"type":"text","text":…}`, `image_url`), one result
    /// for all of them.
    Parts(Vec<Value>),
}

impl ModerationRequest {
    /// The texts to classify, one per result.
    pub fn texts(&self) -> Vec<String> {
        match &self.input {
            ModerationInput::Text(t) => vec![t.clone()],
            ModerationInput::Texts(ts) => ts.clone(),
            ModerationInput::Parts(parts) => vec![parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")],
        }
    }

    /// The model answered as.
    pub fn model_name(&self) -> &str {
        self.model.as_deref().unwrap_or(MODERATION_MODELS[0])
    }

    fn validate(&self) -> Result<(), ApiError> {
        let n = match &self.input {
            ModerationInput::Text(_) => 1,
            ModerationInput::Texts(t) => t.len(),
            ModerationInput::Parts(p) => p.len(),
        };
        if n == 0 {
            return Err(ApiError::invalid(
                "input",
                InvalidCode::EmptyArray,
                "`input` must not be an empty array.",
            ));
        }
        if n > MAX_MODERATION_INPUTS {
            return Err(ApiError::invalid(
                "input",
                InvalidCode::ArrayAboveMaxLength,
                format!("`input` has {n} entries; at most {MAX_MODERATION_INPUTS} are allowed."),
            ));
        }
        if let ModerationInput::Parts(parts) = &self.input {
            for (i, part) in parts.iter().enumerate() {
                let ok = match part["type"].as_str() {
                    Some("text") => part["text"].is_string(),
                    Some("image_url") => part["image_url"]["url"].is_string(),
                    _ => false,
                };
                if !ok {
                    return Err(ApiError::invalid(
                        format!("input[{i}]"),
                        InvalidCode::InvalidValue,
                        "A content part must be {\"type\":\"text\",\"text\":…} or \
                         {\"type\":\"image_url\",\"image_url\":{\"url\":…}}.",
                    ));
                }
            }
        }
        Ok(())
    }
}

static MODERATION_FIELDS: &[Field] = &[
    field(
        "input",
        "a string, an array of strings or an array of content parts",
        typed::<ModerationInput>,
    ),
    field("model", "a string", typed::<Option<String>>),
];

impl RequestBody for ModerationRequest {
    fn fields() -> &'static [Field] {
        MODERATION_FIELDS
    }

    fn check(&self) -> Result<(), ApiError> {
        self.validate()
    }
}

/// One input's classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModerationResult {
    /// Whether any category is flagged.
    pub flagged: bool,
    /// Each category: flagged or not.
    pub categories: BTreeMap<String, bool>,
    /// Each category's score in [0, 1].
    pub category_scores: BTreeMap<String, f64>,
    /// Each category: the input types its score came from (`text` here).
    pub category_applied_input_types: BTreeMap<String, Vec<String>>,
}

impl ModerationResult {
    /// A result from one score per category (in [`MODERATION_CATEGORIES`]
    /// order), flagged where a score reaches `threshold`.
    pub fn from_scores(scores: &[f64; 13], threshold: f64) -> Self {
        let mut categories = BTreeMap::new();
        let mut category_scores = BTreeMap::new();
        let mut applied = BTreeMap::new();
        for (name, &score) in MODERATION_CATEGORIES.iter().zip(scores) {
            let score = score.clamp(0.0, 1.0);
            categories.insert((*name).to_owned(), score >= threshold);
            category_scores.insert((*name).to_owned(), score);
            applied.insert((*name).to_owned(), vec!["text".to_owned()]);
        }
        Self {
            flagged: categories.values().any(|&f| f),
            categories,
            category_scores,
            category_applied_input_types: applied,
        }
    }
}

/// The answer of `POST /v1/moderations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moderation {
    /// `modr-…`.
    pub id: String,
    /// The model answered as.
    pub model: String,
    /// One per input.
    pub results: Vec<ModerationResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_request;

    #[test]
    fn shapes_and_errors() {
        let r: ModerationRequest = parse_request(br#"{"input":"hi"}"#).unwrap();
        assert_eq!(r.texts(), vec!["hi"]);
        assert_eq!(r.model_name(), "omni-moderation-latest");
        let r: ModerationRequest =
            parse_request(br#"{"input":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"http://x"}}],"model":"text-moderation-latest"}"#).unwrap();
        assert_eq!(r.texts(), vec!["a"]);
        let e = parse_request::<ModerationRequest>(br#"{"input":[]}"#).unwrap_err();
        assert_eq!(e.param(), Some("input"));
        let e = parse_request::<ModerationRequest>(br#"{"input":[{"type":"audio"}]}"#).unwrap_err();
        assert_eq!(e.param(), Some("input[0]"));
        let e = parse_request::<ModerationRequest>(br#"{}"#).unwrap_err();
        assert_eq!(e.param(), Some("input"));
    }

    #[test]
    fn a_result_has_all_thirteen_categories() {
        let mut s = [0.0; 13];
        s[11] = 0.9;
        let r = ModerationResult::from_scores(&s, 0.5);
        assert!(r.flagged && r.categories["violence"] && !r.categories["hate"]);
        assert_eq!(r.category_scores.len(), 13);
        assert_eq!(
            r.category_applied_input_types["sexual/minors"],
            vec!["text"]
        );
    }
}
