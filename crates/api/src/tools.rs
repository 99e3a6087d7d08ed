//! Rules on `tools`, `tool_choice`, `parallel_tool_calls`, `response_format`
//! and the tool turns of a conversation that hold before any model sees
//! the request: each failure names its `param`. Shared by every API that
//! takes function tools (chat completions; Responses and Anthropic's
//! messages convert to these types first).
//!
//! - a function is named once, with a name of 1–64 letters, digits, `_`
//!   or `-`; its `parameters`, if given, is a JSON object;
//! - `tool_choice` needs `tools`, and a named choice names one of them;
//! - a `tool` message answers a call of an earlier assistant message, by
//!   the call's id, once; a call id is not used twice;
//! - `response_format: json_schema` carries a `schema` that is an object.
//!
//! What a schema may contain is checked where it is compiled (the
//! `grammar` crate), which names the place inside it.

use std::collections::{BTreeMap, BTreeSet};

use crate::chat::{ChatMessage, ResponseFormat, Tool, ToolChoice, ToolChoiceMode};
use crate::error::{ApiError, InvalidCode};

/// Most tools in one request (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;

/// The tool rules for one request.
pub fn check_tools(
    tools: Option<&[Tool]>,
    tool_choice: Option<&ToolChoice>,
) -> Result<(), ApiError> {
    let tools = tools.unwrap_or_default();
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::invalid(
            "tools",
            InvalidCode::ArrayAboveMaxLength,
            format!(
                "Invalid 'tools': array too long. Expected an array with maximum length \
                 {MAX_TOOLS}, but got an array with length {} instead.",
                tools.len()
            ),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, tool) in tools.iter().enumerate() {
        let name = &tool.function.name;
        let param = format!("tools[{i}].function.name");
        if !is_name(name) {
            return Err(ApiError::invalid(
                param,
                InvalidCode::InvalidValue,
                format!(
                    "Invalid 'tools[{i}].function.name': string does not match pattern. \
                     Expected a string of 1 to 64 letters, digits, underscores or dashes, \
                     got '{name}'."
                ),
            ));
        }
        if !names.insert(name.as_str()) {
            return Err(ApiError::invalid(
                param,
                InvalidCode::InvalidValue,
                format!("Invalid 'tools': the function '{name}' is defined more than once."),
            ));
        }
        if let Some(parameters) = &tool.function.parameters {
            if !parameters.is_object() {
                return Err(ApiError::invalid(
                    format!("tools[{i}].function.parameters"),
                    InvalidCode::InvalidType,
                    format!(
                        "Invalid type for 'tools[{i}].function.parameters': expected an \
                         object (a JSON Schema)."
                    ),
                ));
            }
        }
    }
    match tool_choice {
        Some(ToolChoice::Mode(ToolChoiceMode::None)) | None => {}
        Some(_) if tools.is_empty() => {
            return Err(ApiError::invalid(
                "tool_choice",
                InvalidCode::InvalidValue,
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when \
                 'tools' are specified.",
            ));
        }
        Some(ToolChoice::Named(named)) if !names.contains(named.function.name.as_str()) => {
            return Err(ApiError::invalid(
                "tool_choice",
                InvalidCode::InvalidValue,
                format!(
                    "Invalid value for 'tool_choice': no function named '{}' in 'tools'.",
                    named.function.name
                ),
            ));
        }
        Some(_) => {}
    }
    Ok(())
}

/// The conversation's tool turns: every `tool` message answers an open
/// call of an earlier assistant message, by id.
pub fn check_tool_turns(messages: &[ChatMessage]) -> Result<(), ApiError> {
    // Call id → whether a tool message answered it.
    let mut calls: BTreeMap<&str, bool> = BTreeMap::new();
    for (index, message) in messages.iter().enumerate() {
        match message {
            ChatMessage::Assistant {
                tool_calls: Some(tool_calls),
                ..
            } => {
                for (j, call) in tool_calls.iter().enumerate() {
                    if calls.insert(call.id.as_str(), false).is_some() {
                        return Err(ApiError::invalid(
                            format!("messages[{index}].tool_calls[{j}].id"),
                            InvalidCode::InvalidValue,
                            format!(
                                "Invalid 'messages[{index}].tool_calls[{j}].id': the id '{}' \
                                 is used by an earlier tool call.",
                                call.id
                            ),
                        ));
                    }
                }
            }
            ChatMessage::Tool { tool_call_id, .. } => {
                let any_calls = !calls.is_empty();
                match calls.get_mut(tool_call_id.as_str()) {
                    Some(answered @ false) => *answered = true,
                    Some(true) => {
                        return Err(ApiError::invalid(
                            format!("messages[{index}].tool_call_id"),
                            InvalidCode::InvalidValue,
                            format!(
                                "Invalid 'messages[{index}].tool_call_id': the tool call \
                             '{tool_call_id}' was already answered."
                            ),
                        ));
                    }
                    None if !any_calls => {
                        return Err(ApiError::invalid(
                            format!("messages[{index}].role"),
                            InvalidCode::InvalidValue,
                            format!(
                                "Invalid parameter: messages with role 'tool' must be a response \
                             to a preceding message with 'tool_calls' (messages[{index}])."
                            ),
                        ));
                    }
                    None => {
                        return Err(ApiError::invalid(
                            format!("messages[{index}].tool_call_id"),
                            InvalidCode::InvalidValue,
                            format!(
                                "Invalid 'messages[{index}].tool_call_id': no preceding tool call \
                             has the id '{tool_call_id}'."
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `name` is a function's or a schema's name as OpenAI takes it:
/// 1 to 64 ASCII letters, digits, underscores or dashes.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `response_format` carries what its type needs.
pub fn check_response_format(format: Option<&ResponseFormat>) -> Result<(), ApiError> {
    if let Some(ResponseFormat::JsonSchema { json_schema }) = format {
        let name = &json_schema.name;
        if !is_name(name) {
            return Err(ApiError::invalid(
                "response_format.json_schema.name",
                InvalidCode::InvalidValue,
                format!(
                    "Invalid 'response_format.json_schema.name': expected 1 to 64 letters, \
                     digits, underscores or dashes, got '{name}'."
                ),
            ));
        }
        match &json_schema.schema {
            Some(schema) if schema.is_object() || schema.is_boolean() => {}
            Some(_) => {
                return Err(ApiError::invalid(
                    "response_format.json_schema.schema",
                    InvalidCode::InvalidType,
                    "Invalid type for 'response_format.json_schema.schema': expected an object \
                     (a JSON Schema).",
                ))
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_name;

    #[test]
    fn names_are_1_to_64_letters_digits_underscores_or_dashes() {
        assert!(is_name("get_weather-2"));
        assert!(is_name(&"a".repeat(64)));
        assert!(!is_name(""));
        assert!(!is_name(&"a".repeat(65)));
        assert!(!is_name("get weather"));
        assert!(!is_name("météo"));
    }
}
