//! Range and consistency checks on parsed requests, each failure an
//! [`ApiError::InvalidRequest`] naming the parameter as OpenAI does
//! (`temperature`, `messages[1].content`, …) with OpenAI's wording and
//! `code`.
//!
//! The checks run in the order the fields appear in the API reference, so
//! a request with several faults reports the first of them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::chat::{ChatCompletionRequest, ChatMessage, ContentPart, MessageContent};
use crate::common::Stop;
use crate::completion::{CompletionRequest, Prompt};
use crate::error::{ApiError, InvalidCode};

/// The largest `n` accepted.
pub const MAX_N: i64 = 128;
/// The largest `top_logprobs` accepted on chat.
pub const MAX_TOP_LOGPROBS: i64 = 20;
/// The largest `logprobs` accepted on legacy completions.
pub const MAX_COMPLETION_LOGPROBS: i64 = 5;
/// The largest `best_of` accepted on legacy completions.
pub const MAX_BEST_OF: i64 = 20;
/// The largest magnitude of a `logit_bias` value.
pub const MAX_LOGIT_BIAS: f64 = 100.0;

impl ChatCompletionRequest {
    /// Checks every range and cross-field rule; the first failure wins.
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_messages(&self.messages)?;
        check_decimal("temperature", self.temperature, 0.0, 2.0)?;
        check_decimal("top_p", self.top_p, 0.0, 1.0)?;
        check_integer("n", self.n, 1, MAX_N)?;
        check_stop(self.stop.as_ref())?;
        check_integer("max_tokens", self.max_tokens, 1, i64::MAX)?;
        check_integer(
            "max_completion_tokens",
            self.max_completion_tokens,
            1,
            i64::MAX,
        )?;
        check_decimal("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_decimal("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_logit_bias(self.logit_bias.as_ref())?;
        check_integer("top_logprobs", self.top_logprobs, 0, MAX_TOP_LOGPROBS)?;
        if self.top_logprobs.is_some() && self.logprobs != Some(true) {
            return Err(ApiError::invalid(
                "top_logprobs",
                InvalidCode::InvalidValue,
                "Invalid value for 'top_logprobs': 'logprobs' must be set to true when \
                 'top_logprobs' is used.",
            ));
        }
        crate::tools::check_response_format(self.response_format.as_ref())?;
        crate::tools::check_tools(self.tools.as_deref(), self.tool_choice.as_ref())?;
        crate::tools::check_tool_turns(&self.messages)?;
        if let Some(metadata) = &self.metadata {
            crate::stored::check_metadata("metadata", metadata)?;
        }
        crate::unserved::check_chat(self)?;
        Ok(())
    }
}

impl CompletionRequest {
    /// Checks every range and cross-field rule; the first failure wins.
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_prompt(&self.prompt)?;
        check_integer("best_of", self.best_of, 1, MAX_BEST_OF)?;
        check_decimal("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_logit_bias(self.logit_bias.as_ref())?;
        check_integer("logprobs", self.logprobs, 0, MAX_COMPLETION_LOGPROBS)?;
        check_integer("max_tokens", self.max_tokens, 0, i64::MAX)?;
        check_integer("n", self.n, 1, MAX_N)?;
        if let (Some(best_of), Some(n)) = (self.best_of, self.n) {
            if best_of < n {
                return Err(ApiError::invalid(
                    "best_of",
                    InvalidCode::InvalidValue,
                    format!("Invalid 'best_of': {best_of} must be at least 'n' ({n})."),
                ));
            }
        }
        check_decimal("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_stop(self.stop.as_ref())?;
        check_decimal("temperature", self.temperature, 0.0, 2.0)?;
        check_decimal("top_p", self.top_p, 0.0, 1.0)?;
        Ok(())
    }
}

fn validate_messages(messages: &[ChatMessage]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            InvalidCode::EmptyArray,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, \
             but got an empty array instead.",
        ));
    }
    for (index, message) in messages.iter().enumerate() {
        let param = format!("messages[{index}].content");
        match message {
            ChatMessage::Assistant {
                content: None,
                tool_calls,
                ..
            } if tool_calls.as_ref().is_none_or(Vec::is_empty) => {
                return Err(ApiError::invalid(
                    param,
                    InvalidCode::InvalidValue,
                    format!(
                        "Invalid value for 'messages[{index}].content': expected a string \
                         or an array of parts when 'tool_calls' is absent, got null."
                    ),
                ));
            }
            _ => {}
        }
        if let Some(content) = message.content() {
            validate_content(&param, content)?;
        }
    }
    Ok(())
}

fn validate_content(param: &str, content: &MessageContent) -> Result<(), ApiError> {
    let MessageContent::Parts(parts) = content else {
        return Ok(());
    };
    if parts.is_empty() {
        return Err(ApiError::invalid(
            param,
            InvalidCode::EmptyArray,
            format!(
                "Invalid '{param}': empty array. Expected an array with minimum length 1, \
                 but got an empty array instead."
            ),
        ));
    }
    for (index, part) in parts.iter().enumerate() {
        if let ContentPart::Other(value) = part {
            return Err(unsupported_part(&format!("{param}[{index}]"), value));
        }
    }
    Ok(())
}

/// The error for a content part that is not a well-formed text part.
fn unsupported_part(param: &str, part: &Value) -> ApiError {
    match part.get("type") {
        Some(Value::String(kind)) if kind == "text" => ApiError::invalid(
            format!("{param}.text"),
            InvalidCode::InvalidType,
            format!("Invalid type for '{param}.text': expected a string."),
        ),
        Some(Value::String(kind)) => ApiError::invalid(
            format!("{param}.type"),
            InvalidCode::InvalidValue,
            format!(
                "Invalid value for '{param}.type': '{kind}'. Supported values are: \
                 'text'. This server accepts only text content parts."
            ),
        ),
        Some(_) => ApiError::invalid(
            format!("{param}.type"),
            InvalidCode::InvalidType,
            format!("Invalid type for '{param}.type': expected a string."),
        ),
        None => ApiError::invalid(
            format!("{param}.type"),
            InvalidCode::MissingRequiredParameter,
            format!("Missing required parameter: '{param}.type'."),
        ),
    }
}

fn validate_prompt(prompt: &Prompt) -> Result<(), ApiError> {
    let empty_list = |param: String| {
        ApiError::invalid(
            param.clone(),
            InvalidCode::EmptyArray,
            format!(
                "Invalid '{param}': empty array. Expected an array with minimum length 1, \
                 but got an empty array instead."
            ),
        )
    };
    match prompt {
        Prompt::Texts(texts) if texts.is_empty() => Err(empty_list("prompt".to_owned())),
        Prompt::Tokens(tokens) if tokens.is_empty() => Err(empty_list("prompt".to_owned())),
        Prompt::TokenLists(lists) => match lists.iter().position(Vec::is_empty) {
            Some(index) => Err(empty_list(format!("prompt[{index}]"))),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// `value` must lie in `min..=max`.
pub(crate) fn check_decimal(
    param: &str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<(), ApiError> {
    let Some(value) = value else { return Ok(()) };
    if value < min {
        return Err(ApiError::invalid(
            param,
            InvalidCode::DecimalBelowMinValue,
            format!(
                "Invalid '{param}': decimal below minimum value. Expected a value >= {min}, \
                 but got {value} instead."
            ),
        ));
    }
    if value > max {
        return Err(ApiError::invalid(
            param,
            InvalidCode::DecimalAboveMaxValue,
            format!(
                "Invalid '{param}': decimal above maximum value. Expected a value <= {max}, \
                 but got {value} instead."
            ),
        ));
    }
    Ok(())
}

/// `value` must lie in `min..=max`.
pub(crate) fn check_integer(
    param: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
) -> Result<(), ApiError> {
    let Some(value) = value else { return Ok(()) };
    if value < min {
        return Err(ApiError::invalid(
            param,
            InvalidCode::IntegerBelowMinValue,
            format!(
                "Invalid '{param}': integer below minimum value. Expected a value >= {min}, \
                 but got {value} instead."
            ),
        ));
    }
    if value > max {
        return Err(ApiError::invalid(
            param,
            InvalidCode::IntegerAboveMaxValue,
            format!(
                "Invalid '{param}': integer above maximum value. Expected a value <= {max}, \
                 but got {value} instead."
            ),
        ));
    }
    Ok(())
}

fn check_stop(stop: Option<&Stop>) -> Result<(), ApiError> {
    match stop {
        Some(Stop::Many(many)) if many.len() > Stop::MAX => Err(ApiError::invalid(
            "stop",
            InvalidCode::ArrayAboveMaxLength,
            format!(
                "Invalid 'stop': array too long. Expected an array with maximum length {}, \
                 but got an array with length {} instead.",
                Stop::MAX,
                many.len()
            ),
        )),
        _ => Ok(()),
    }
}

fn check_logit_bias(bias: Option<&BTreeMap<String, f64>>) -> Result<(), ApiError> {
    for (key, value) in bias.into_iter().flatten() {
        if key.parse::<u32>().is_err() {
            return Err(ApiError::invalid(
                "logit_bias",
                InvalidCode::InvalidValue,
                format!(
                    "Invalid key in 'logit_bias': {key}. You should only be submitting \
                     non-negative integers."
                ),
            ));
        }
        if !(-MAX_LOGIT_BIAS..=MAX_LOGIT_BIAS).contains(value) {
            return Err(ApiError::invalid(
                "logit_bias",
                InvalidCode::InvalidValue,
                format!(
                    "Invalid value for 'logit_bias': bias for token {key} is {value}; \
                     expected a value between -100 and 100."
                ),
            ));
        }
    }
    Ok(())
}
