//! The `POST /v1/responses` request ([`CreateResponseRequest`]) and its
//! validation: `input` as a string or as items ([`Item`]: messages with
//! text parts, `function_call`, `function_call_output`), function `tools`,
//! `tool_choice`, `text.format`, and the state fields (`store`,
//! `previous_response_id`, `background`). Every refusal names its `param`
//! (`input[2].type`, `max_output_tokens`, …).
//!
//! What the endpoint answers (the response object, its items and the
//! streamed events) is in [`crate::responses_object`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::{JsonSchemaFormat, ResponseFormat};
use crate::error::{ApiError, InvalidCode};
use crate::parse::{field, typed, Field, RequestBody};
use crate::responses_object::{Item, ItemContent};

/// OpenAI's smallest `max_output_tokens`.
pub const MIN_OUTPUT_TOKENS: i64 = 16;

/// The body of `POST /v1/responses`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateResponseRequest {
    /// The model id.
    pub model: String,
    /// A string (one user message) or an array of items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<ResponseInput>,
    /// A system message put before the input (not carried to a later turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Output token limit, at least 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<i64>,
    /// Sampling temperature, 0–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Function tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ResponseTool>>,
    /// `"none"`, `"auto"`, `"required"` or `{"type": "function", "name": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Whether several tools may be called in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The text output's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// Up to 16 string pairs kept with the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Whether the response is kept for retrieval and chaining (default
    /// true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Extra output to include: `message.output_text.logprobs` is served;
    /// the other values OpenAI documents are refused, each with why
    /// ([`include_refusal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// The alternatives reported at each output token, 0–20 (it asks for
    /// the output's logprobs, as the `include` value does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// `auto` (drop the conversation's oldest items until the prompt
    /// fits) or `disabled` (the default: refuse an overlong prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<Truncation>,
    /// Stream the answer as typed events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Run detached; poll it with `GET /v1/responses/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
    /// The stored response this turn continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// A seed, for reproducible sampling (an extension, as on chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// How a thinking model reasons: `effort` is chat's
    /// `reasoning_effort` (`none` turns thinking off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
}

/// `reasoning`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasoningConfig {
    /// `none`, `minimal`, `low`, `medium` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// A summary of the reasoning (accepted; no summaries are written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponseInput {
    /// One user message.
    Text(String),
    /// Items, each checked by [`CreateResponseRequest::input_items`].
    Items(Vec<Value>),
}

/// `truncation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Drop the oldest items when the prompt does not fit.
    Auto,
    /// Refuse a prompt that does not fit (the default).
    #[default]
    Disabled,
}

/// One entry of `tools`: a function (other tool types are refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseTool {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the arguments must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `text`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// The output's format (default: text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
}

/// `text.format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching `schema`.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The JSON Schema.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Value>,
        /// What it is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Whether the output must follow it exactly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

impl TextFormat {
    /// The chat `response_format` asking for the same output.
    pub fn to_chat(&self) -> ResponseFormat {
        match self {
            TextFormat::Text => ResponseFormat::Text,
            TextFormat::JsonObject => ResponseFormat::JsonObject,
            TextFormat::JsonSchema {
                name,
                schema,
                description,
                strict,
            } => ResponseFormat::JsonSchema {
                json_schema: JsonSchemaFormat {
                    name: name.clone(),
                    description: description.clone(),
                    schema: schema.clone(),
                    strict: *strict,
                },
            },
        }
    }
}

/// `tool_choice`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseToolChoice {
    /// Never call a tool.
    None,
    /// The model decides.
    Auto,
    /// Call at least one tool.
    Required,
    /// Call this function.
    Function(String),
}

impl CreateResponseRequest {
    /// Whether the answer is streamed.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the output's logprobs are asked for (`include`
    /// `message.output_text.logprobs`, or `top_logprobs`).
    pub fn wants_logprobs(&self) -> bool {
        self.top_logprobs.is_some()
            || self
                .include
                .iter()
                .flatten()
                .any(|value| value == INCLUDE_LOGPROBS)
    }

    /// Whether the response is stored (default true).
    pub fn is_stored(&self) -> bool {
        self.store.unwrap_or(true)
    }

    /// Whether it runs detached.
    pub fn is_background(&self) -> bool {
        self.background.unwrap_or(false)
    }

    /// The output limit as the engine takes it.
    pub fn max_tokens(&self) -> Option<u32> {
        self.max_output_tokens
            .map(|limit| u32::try_from(limit.max(0)).unwrap_or(u32::MAX))
    }

    /// `input` as items (a string is one user message), each given an id;
    /// an item of an unknown type, or a malformed one, names its place.
    pub fn input_items(&self) -> Result<Vec<Item>, ApiError> {
        match &self.input {
            None => Ok(Vec::new()),
            Some(ResponseInput::Text(text)) => Ok(vec![Item::user_text(text)]),
            Some(ResponseInput::Items(items)) => items
                .iter()
                .enumerate()
                .map(|(index, value)| Item::from_input(value, &format!("input[{index}]")))
                .collect(),
        }
    }

    /// `tool_choice`, checked against the tools given.
    pub fn tool_choice(&self) -> Result<Option<ResponseToolChoice>, ApiError> {
        let Some(value) = &self.tool_choice else {
            return Ok(None);
        };
        let choice = match value {
            Value::String(mode) => match mode.as_str() {
                "none" => ResponseToolChoice::None,
                "auto" => ResponseToolChoice::Auto,
                "required" => ResponseToolChoice::Required,
                other => return Err(bad_tool_choice(&format!("unknown mode '{other}'"))),
            },
            Value::Object(object) => {
                match (
                    object.get("type").and_then(Value::as_str),
                    object.get("name"),
                ) {
                    (Some("function"), Some(Value::String(name))) => {
                        ResponseToolChoice::Function(name.clone())
                    }
                    (Some("function"), _) => {
                        return Err(ApiError::invalid(
                            "tool_choice.name",
                            InvalidCode::MissingRequiredParameter,
                            "Missing required parameter: 'tool_choice.name'.",
                        ))
                    }
                    (Some(other), _) => {
                        return Err(bad_tool_choice(&format!(
                            "type '{other}' is not supported; use 'function'"
                        )))
                    }
                    (None, _) => return Err(bad_tool_choice("an object needs a 'type'")),
                }
            }
            _ => return Err(bad_tool_choice("expected a string or an object")),
        };
        if let ResponseToolChoice::Function(name) = &choice {
            let known = self
                .tools
                .iter()
                .flatten()
                .any(|tool| tool.name.as_deref() == Some(name.as_str()));
            if !known {
                return Err(ApiError::invalid(
                    "tool_choice",
                    InvalidCode::InvalidValue,
                    format!("Tool choice '{name}' not found in 'tools' parameter."),
                ));
            }
        }
        Ok(Some(choice))
    }

    /// Range and consistency checks.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.model.is_empty() {
            return Err(ApiError::invalid(
                "model",
                InvalidCode::MissingRequiredParameter,
                "Missing required parameter: 'model'.",
            ));
        }
        let items = self.input_items()?;
        if items.is_empty() && self.previous_response_id.is_none() {
            return Err(ApiError::invalid(
                "input",
                InvalidCode::MissingRequiredParameter,
                "Missing required parameter: 'input'.",
            ));
        }
        if let Some(limit) = self.max_output_tokens {
            if limit < MIN_OUTPUT_TOKENS {
                return Err(ApiError::invalid(
                    "max_output_tokens",
                    InvalidCode::IntegerBelowMinValue,
                    format!(
                        "Invalid 'max_output_tokens': integer below minimum value. Expected a \
                         value >= {MIN_OUTPUT_TOKENS}, but got {limit} instead."
                    ),
                ));
            }
        }
        crate::validate::check_decimal("temperature", self.temperature, 0.0, 2.0)?;
        crate::validate::check_decimal("top_p", self.top_p, 0.0, 1.0)?;
        for (index, tool) in self.tools.iter().flatten().enumerate() {
            if tool.kind != "function" {
                return Err(ApiError::invalid(
                    format!("tools[{index}].type"),
                    InvalidCode::InvalidValue,
                    format!(
                        "Tool type '{}' is not supported here; only 'function' tools are.",
                        tool.kind
                    ),
                ));
            }
            if tool.name.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    format!("tools[{index}].name"),
                    InvalidCode::MissingRequiredParameter,
                    format!("Missing required parameter: 'tools[{index}].name'."),
                ));
            }
        }
        self.tool_choice()?;
        if let Some(metadata) = &self.metadata {
            crate::stored::check_metadata("metadata", metadata)?;
        }
        for (index, value) in self.include.iter().flatten().enumerate() {
            if let Some(why) = include_refusal(value) {
                return Err(ApiError::invalid(
                    format!("include[{index}]"),
                    InvalidCode::InvalidValue,
                    why,
                ));
            }
        }
        crate::validate::check_integer(
            "top_logprobs",
            self.top_logprobs,
            0,
            crate::validate::MAX_TOP_LOGPROBS,
        )?;
        if self.is_background() && !self.is_stored() {
            return Err(ApiError::invalid(
                "background",
                InvalidCode::InvalidValue,
                "Background responses must be stored: 'background': true needs 'store': true.",
            ));
        }
        if self.is_background() && self.is_stream() {
            return Err(ApiError::invalid(
                "stream",
                InvalidCode::InvalidValue,
                "Streaming a background response is not supported; poll it instead.",
            ));
        }
        Ok(())
    }
}

/// The `include` value this server serves: each output token's logprob.
pub const INCLUDE_LOGPROBS: &str = "message.output_text.logprobs";

/// Why `include` may not hold `value` (`None`: it is served). OpenAI's
/// other values each need something this server does not have.
pub fn include_refusal(value: &str) -> Option<String> {
    let why = match value {
        INCLUDE_LOGPROBS => return None,
        "reasoning.encrypted_content" => {
            "this server does not encrypt reasoning (store the response and \
             continue it with `previous_response_id` instead)"
        }
        "file_search_call.results"
        | "web_search_call.results"
        | "web_search_call.action.sources"
        | "code_interpreter_call.outputs"
        | "computer_call_output.output.image_url" => {
            "it belongs to a built-in tool, and this server serves only function tools"
        }
        "message.input_image.image_url" => "this server accepts no image input",
        _ => {
            return Some(format!(
                "Invalid value: '{value}'. Supported values are: '{INCLUDE_LOGPROBS}'."
            ))
        }
    };
    Some(format!("Including '{value}' is not supported: {why}."))
}

fn bad_tool_choice(detail: &str) -> ApiError {
    ApiError::invalid(
        "tool_choice",
        InvalidCode::InvalidValue,
        format!("Invalid value for 'tool_choice': {detail}."),
    )
}

/// Whether every `function_call_output` of `items` answers a call made
/// earlier in `history` (a chained turn's previous conversation, which the
/// service loads) or in `items`; the first that does not names its place
/// (`input[i].call_id`).
pub fn check_call_ids(history: &[Item], items: &[Item]) -> Result<(), ApiError> {
    let mut calls: Vec<&str> = history
        .iter()
        .filter_map(|item| match item {
            Item::FunctionCall { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    for (index, item) in items.iter().enumerate() {
        match item {
            Item::FunctionCall { call_id, .. } => calls.push(call_id),
            Item::FunctionCallOutput { call_id, .. } if !calls.contains(&call_id.as_str()) => {
                return Err(ApiError::invalid(
                    format!("input[{index}].call_id"),
                    InvalidCode::InvalidValue,
                    format!("No tool call found for function call output with call_id {call_id}."),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A text part's text, for messages whose content is parts.
pub fn content_text(parts: &[ItemContent]) -> String {
    parts
        .iter()
        .map(|part| match part {
            ItemContent::InputText { text } | ItemContent::OutputText { text, .. } => text.as_str(),
            ItemContent::Refusal { refusal } => refusal.as_str(),
        })
        .collect()
}

type OptF64 = Option<f64>;
type OptI64 = Option<i64>;
type OptBool = Option<bool>;
type OptString = Option<String>;

static RESPONSE_FIELDS: &[Field] = &[
    field("model", "a string", typed::<String>),
    field(
        "input",
        "a string or an array of input items",
        typed::<Option<ResponseInput>>,
    ),
    field("instructions", "a string", typed::<OptString>),
    field("max_output_tokens", "an integer", typed::<OptI64>),
    field("temperature", "a decimal", typed::<OptF64>),
    field("top_p", "a decimal", typed::<OptF64>),
    field(
        "tools",
        "an array of function tools",
        typed::<Option<Vec<ResponseTool>>>,
    ),
    field("parallel_tool_calls", "a boolean", typed::<OptBool>),
    field(
        "text",
        "an object with 'format' of type 'text', 'json_object' or 'json_schema'",
        typed::<Option<TextConfig>>,
    ),
    field(
        "metadata",
        "an object of string values",
        typed::<Option<BTreeMap<String, String>>>,
    ),
    field("user", "a string", typed::<OptString>),
    field("store", "a boolean", typed::<OptBool>),
    field(
        "include",
        "an array of strings",
        typed::<Option<Vec<String>>>,
    ),
    field(
        "truncation",
        "a string ('auto' or 'disabled')",
        typed::<Option<Truncation>>,
    ),
    field("stream", "a boolean", typed::<OptBool>),
    field("background", "a boolean", typed::<OptBool>),
    field("previous_response_id", "a string", typed::<OptString>),
    field("seed", "an integer", typed::<OptI64>),
    field("top_logprobs", "an integer", typed::<OptI64>),
    field(
        "reasoning",
        "an object with 'effort' ('none', 'minimal', 'low', 'medium' or 'high')",
        typed::<Option<ReasoningConfig>>,
    ),
];

impl RequestBody for CreateResponseRequest {
    fn fields() -> &'static [Field] {
        RESPONSE_FIELDS
    }

    fn check(&self) -> Result<(), ApiError> {
        self.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_request;

    fn parse(body: &str) -> Result<CreateResponseRequest, ApiError> {
        parse_request(body.as_bytes())
    }

    fn param(err: ApiError) -> Option<String> {
        err.param().map(str::to_owned)
    }

    #[test]
    fn a_string_input_is_one_user_message() {
        let request = parse(r#"{"model":"m","input":"hi"}"#).unwrap();
        let items = request.input_items().unwrap();
        assert_eq!(items.len(), 1);
        assert!(matches!(&items[0], Item::Message { role, .. } if role == "user"));
        assert!(request.is_stored());
    }

    #[test]
    fn bad_input_names_its_param() {
        let unknown = parse(
            r#"{"model":"m","input":[{"type":"message","role":"user","content":"a"},{"type":"web_search_call"}]}"#,
        );
        assert_eq!(
            param(unknown.unwrap_err()).as_deref(),
            Some("input[1].type")
        );
        let small = parse(r#"{"model":"m","input":"a","max_output_tokens":15}"#);
        assert_eq!(
            param(small.unwrap_err()).as_deref(),
            Some("max_output_tokens")
        );
        let orphan = parse(r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c1","output":"x"}]}"#)
            .unwrap();
        let items = orphan.input_items().unwrap();
        let err = check_call_ids(&[], &items).unwrap_err();
        assert_eq!(param(err).as_deref(), Some("input[0].call_id"));
        let typed = parse(r#"{"model":"m","input":"a","temperature":"hot"}"#);
        assert_eq!(param(typed.unwrap_err()).as_deref(), Some("temperature"));
        let tool = parse(r#"{"model":"m","input":"a","tools":[{"type":"web_search"}]}"#);
        assert_eq!(param(tool.unwrap_err()).as_deref(), Some("tools[0].type"));
        let choice = parse(
            r#"{"model":"m","input":"a","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"g"}}"#,
        );
        assert_eq!(param(choice.unwrap_err()).as_deref(), Some("tool_choice"));
        let missing = parse(r#"{"model":"m"}"#);
        assert_eq!(param(missing.unwrap_err()).as_deref(), Some("input"));
        let pairs: Vec<String> = (0..17).map(|i| format!(r#""k{i}":"v""#)).collect();
        let many = parse(&format!(
            r#"{{"model":"m","input":"a","metadata":{{{}}}}}"#,
            pairs.join(",")
        ));
        assert_eq!(param(many.unwrap_err()).as_deref(), Some("metadata"));
        let long = parse(&format!(
            r#"{{"model":"m","input":"a","metadata":{{"k":"{}"}}}}"#,
            "v".repeat(513)
        ));
        assert_eq!(param(long.unwrap_err()).as_deref(), Some("metadata.k"));
    }

    #[test]
    fn include_serves_logprobs_and_names_each_refused_value() {
        let logprobs = parse(
            r#"{"model":"m","input":"a","include":["message.output_text.logprobs"],"top_logprobs":3}"#,
        )
        .unwrap();
        assert!(logprobs.wants_logprobs());
        assert!(!parse(r#"{"model":"m","input":"a"}"#)
            .unwrap()
            .wants_logprobs());
        let encrypted = parse(
            r#"{"model":"m","input":"a","include":["message.output_text.logprobs","reasoning.encrypted_content"]}"#,
        )
        .unwrap_err();
        assert_eq!(param(encrypted.clone()).as_deref(), Some("include[1]"));
        assert!(encrypted
            .to_string()
            .contains("reasoning.encrypted_content"));
        let unknown = parse(r#"{"model":"m","input":"a","include":["bogus"]}"#).unwrap_err();
        assert_eq!(param(unknown.clone()).as_deref(), Some("include[0]"));
        assert!(unknown.to_string().contains("Supported values"));
        let top = parse(r#"{"model":"m","input":"a","top_logprobs":21}"#).unwrap_err();
        assert_eq!(param(top).as_deref(), Some("top_logprobs"));
    }

    #[test]
    fn a_call_output_answers_a_call_before_it() {
        let request = parse(
            r#"{"model":"m","input":[
                {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
                {"type":"function_call_output","call_id":"c1","output":"42"}]}"#,
        )
        .unwrap();
        check_call_ids(&[], &request.input_items().unwrap()).unwrap();
    }
}
