//! Turning a raw request body into a typed request, or into an
//! [`ApiError`] that names the offending parameter.
//!
//! serde reports *what* failed but not *where*, so parsing runs in two
//! steps: the bytes become a `serde_json::Value` (failure: malformed JSON),
//! then the value becomes the request. If that fails, a table of the
//! request's fields is walked, each present field checked against its own
//! type, so that `"temperature": "hot"` is reported against `temperature`
//! and an unknown role against `messages[0].role`. A test keeps each table
//! in step with its request type.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::chat::{
    ChatCompletionRequest, ChatMessage, MessageContent, ResponseFormat, Tool, ToolCall, ToolChoice,
};
use crate::common::{Role, Stop, StreamOptions};
use crate::completion::{CompletionRequest, Prompt};
use crate::error::{ApiError, InvalidCode};
use crate::tokenize::{DetokenizeRequest, TokenizeRequest};

/// A request body this module can parse with parameter-naming errors.
pub trait RequestBody: DeserializeOwned {
    /// The request's top-level fields, for locating a failure.
    fn fields() -> &'static [Field];

    /// Range and consistency checks after parsing; none by default.
    fn check(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// One field of a request: its name, what type it must have (for the
/// message), and how to check a value against that type.
#[derive(Clone, Copy)]
pub struct Field {
    name: &'static str,
    expected: &'static str,
    check: Check,
}

#[derive(Clone, Copy)]
enum Check {
    /// Deserialise the value as the field's own type.
    Typed(fn(&Value) -> Result<(), serde_json::Error>),
    /// Look inside the value; given the param name, return the error.
    Nested(fn(&str, &Value) -> Option<ApiError>),
}

/// Deserialises `value` as `T`, keeping only whether it worked.
pub(crate) fn typed<T: DeserializeOwned>(value: &Value) -> Result<(), serde_json::Error> {
    T::deserialize(value).map(drop)
}

pub(crate) const fn field(
    name: &'static str,
    expected: &'static str,
    check: fn(&Value) -> Result<(), serde_json::Error>,
) -> Field {
    Field {
        name,
        expected,
        check: Check::Typed(check),
    }
}

const DECIMAL: &str = "a decimal";
const INTEGER: &str = "an integer";
const BOOLEAN: &str = "a boolean";
const STRING: &str = "a string";
const STOP: &str = "a string or an array of strings";
const LOGIT_BIAS: &str = "an object mapping token ids to numbers";
const CONTENT: &str = "a string or an array of content parts";

type OptF64 = Option<f64>;
type OptI64 = Option<i64>;
type OptBool = Option<bool>;
type OptString = Option<String>;
type OptBias = Option<std::collections::BTreeMap<String, f64>>;

static CHAT_FIELDS: &[Field] = &[
    field("model", STRING, typed::<String>),
    Field {
        name: "messages",
        expected: "an array of messages",
        check: Check::Nested(locate_messages),
    },
    field("temperature", DECIMAL, typed::<OptF64>),
    field("top_p", DECIMAL, typed::<OptF64>),
    field("n", INTEGER, typed::<OptI64>),
    field("stream", BOOLEAN, typed::<OptBool>),
    field(
        "stream_options",
        "an object",
        typed::<Option<StreamOptions>>,
    ),
    field("stop", STOP, typed::<Option<Stop>>),
    field("max_tokens", INTEGER, typed::<OptI64>),
    field("max_completion_tokens", INTEGER, typed::<OptI64>),
    field("presence_penalty", DECIMAL, typed::<OptF64>),
    field("frequency_penalty", DECIMAL, typed::<OptF64>),
    field("logit_bias", LOGIT_BIAS, typed::<OptBias>),
    field("logprobs", BOOLEAN, typed::<OptBool>),
    field("top_logprobs", INTEGER, typed::<OptI64>),
    field("seed", INTEGER, typed::<OptI64>),
    field(
        "response_format",
        "an object with type 'text', 'json_object' or 'json_schema'",
        typed::<Option<ResponseFormat>>,
    ),
    field(
        "tools",
        "an array of function tools",
        typed::<Option<Vec<Tool>>>,
    ),
    field(
        "tool_choice",
        "a string ('none', 'auto' or 'required') or an object naming a function",
        typed::<Option<ToolChoice>>,
    ),
    field("parallel_tool_calls", BOOLEAN, typed::<OptBool>),
    field("user", STRING, typed::<OptString>),
    field("reasoning_effort", STRING, typed::<OptString>),
    field("store", BOOLEAN, typed::<OptBool>),
    field(
        "metadata",
        "an object of string values",
        typed::<Option<std::collections::BTreeMap<String, String>>>,
    ),
    field("audio", "an object", typed::<Option<Value>>),
    field("modalities", "an array of strings", typed::<Option<Value>>),
    field("web_search_options", "an object", typed::<Option<Value>>),
    field("moderation", "an object", typed::<Option<Value>>),
    field("functions", "an array of functions", typed::<Option<Value>>),
    field(
        "function_call",
        "a string or an object",
        typed::<Option<Value>>,
    ),
];

static COMPLETION_FIELDS: &[Field] = &[
    field("model", STRING, typed::<String>),
    field(
        "prompt",
        "a string, an array of strings, an array of token ids, or an array of token-id arrays",
        typed::<Prompt>,
    ),
    field("best_of", INTEGER, typed::<OptI64>),
    field("echo", BOOLEAN, typed::<OptBool>),
    field("frequency_penalty", DECIMAL, typed::<OptF64>),
    field("logit_bias", LOGIT_BIAS, typed::<OptBias>),
    field("logprobs", INTEGER, typed::<OptI64>),
    field("max_tokens", INTEGER, typed::<OptI64>),
    field("n", INTEGER, typed::<OptI64>),
    field("presence_penalty", DECIMAL, typed::<OptF64>),
    field("seed", INTEGER, typed::<OptI64>),
    field("stop", STOP, typed::<Option<Stop>>),
    field("stream", BOOLEAN, typed::<OptBool>),
    field(
        "stream_options",
        "an object",
        typed::<Option<StreamOptions>>,
    ),
    field("suffix", STRING, typed::<OptString>),
    field("temperature", DECIMAL, typed::<OptF64>),
    field("top_p", DECIMAL, typed::<OptF64>),
    field("user", STRING, typed::<OptString>),
];

static TOKENIZE_FIELDS: &[Field] = &[
    field("content", STRING, typed::<String>),
    field("add_special", BOOLEAN, typed::<OptBool>),
    field("with_pieces", BOOLEAN, typed::<OptBool>),
];

static DETOKENIZE_FIELDS: &[Field] = &[field("tokens", "an array of token ids", typed::<Vec<u32>>)];

static PLAIN_MESSAGE_FIELDS: &[Field] = &[
    field("content", CONTENT, typed::<MessageContent>),
    field("name", STRING, typed::<OptString>),
];

static ASSISTANT_MESSAGE_FIELDS: &[Field] = &[
    field("content", CONTENT, typed::<Option<MessageContent>>),
    field("name", STRING, typed::<OptString>),
    field("refusal", STRING, typed::<OptString>),
    field(
        "tool_calls",
        "an array of tool calls",
        typed::<Option<Vec<ToolCall>>>,
    ),
];

static TOOL_MESSAGE_FIELDS: &[Field] = &[
    field("content", CONTENT, typed::<MessageContent>),
    field("tool_call_id", STRING, typed::<String>),
];

impl RequestBody for ChatCompletionRequest {
    fn fields() -> &'static [Field] {
        CHAT_FIELDS
    }

    fn check(&self) -> Result<(), ApiError> {
        self.validate()
    }
}

impl RequestBody for CompletionRequest {
    fn fields() -> &'static [Field] {
        COMPLETION_FIELDS
    }

    fn check(&self) -> Result<(), ApiError> {
        self.validate()
    }
}

impl RequestBody for TokenizeRequest {
    fn fields() -> &'static [Field] {
        TOKENIZE_FIELDS
    }
}

impl RequestBody for DetokenizeRequest {
    fn fields() -> &'static [Field] {
        DETOKENIZE_FIELDS
    }
}

/// Parses and validates a request body: malformed JSON, a wrong type or a
/// value out of range each become an [`ApiError`] naming the parameter.
pub fn parse_request<T: RequestBody>(body: &[u8]) -> Result<T, ApiError> {
    let request: T = parse_json(body)?;
    request.check()?;
    Ok(request)
}

/// Parses a request body without the range checks of [`parse_request`].
pub fn parse_json<T: RequestBody>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| from_json_error(&err))?;
    let Value::Object(object) = &value else {
        return Err(ApiError::invalid_body(format!(
            "The request body must be a JSON object, but got {} instead.",
            describe(&value)
        )));
    };
    T::deserialize(&value).map_err(|err| {
        locate_in_object(object, "", T::fields()).unwrap_or_else(|| from_json_error(&err))
    })
}

/// Turns a serde_json error into an [`ApiError`]: syntax errors become
/// [`ApiError::MalformedJson`]; a missing field names itself as the param;
/// other type errors, having no path, name no param. Prefer
/// [`parse_request`], which names the param of every field.
pub fn from_json_error(err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Io | Category::Syntax | Category::Eof => ApiError::MalformedJson {
            detail: err.to_string(),
        },
        Category::Data => {
            let message = err.to_string();
            match missing_field(&message) {
                Some(name) => missing(name),
                None => ApiError::invalid_body(format!("Invalid request body: {message}.")),
            }
        }
    }
}

/// The field name in serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        param,
        InvalidCode::MissingRequiredParameter,
        format!("Missing required parameter: '{param}'."),
    )
}

/// Checks each present field of `object` against `fields`; the first that
/// fails names the error. With all present fields fine, reports the first
/// absent required one. `prefix` is prepended to param names.
fn locate_in_object(
    object: &Map<String, Value>,
    prefix: &str,
    fields: &[Field],
) -> Option<ApiError> {
    for field in fields {
        let param = format!("{prefix}{}", field.name);
        let error = match (object.get(field.name), field.check) {
            (Some(value), Check::Typed(check)) => check(value)
                .err()
                .map(|err| field_error(&param, field.expected, value, &err)),
            (Some(value), Check::Nested(locate)) => locate(&param, value),
            (None, Check::Typed(check)) => check(&Value::Null).err().map(|_| missing(&param)),
            (None, Check::Nested(_)) => Some(missing(&param)),
        };
        if error.is_some() {
            return error;
        }
    }
    None
}

/// The error for a value that does not deserialise as its field's type.
///
/// A value of the wrong JSON kind (a string where a number belongs) is an
/// `invalid_type`; one of the right kind with wrong contents (an unknown
/// enum tag, a bad array element) is an `invalid_value`.
fn field_error(param: &str, expected: &str, value: &Value, err: &serde_json::Error) -> ApiError {
    let actual = describe(value);
    if !expected.contains(actual) {
        return ApiError::invalid(
            param,
            InvalidCode::InvalidType,
            format!("Invalid type for '{param}': expected {expected}, but got {actual} instead."),
        );
    }
    let message = err.to_string();
    let detail = if message.starts_with("data did not match any variant") {
        format!("expected {expected}")
    } else {
        message
    };
    ApiError::invalid(
        param,
        InvalidCode::InvalidValue,
        format!("Invalid value for '{param}': {detail}."),
    )
}

/// A JSON value's type, as the error messages name it.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(number) if number.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Finds the fault in a `messages` value that did not deserialise.
fn locate_messages(param: &str, value: &Value) -> Option<ApiError> {
    let Value::Array(messages) = value else {
        return Some(ApiError::invalid(
            param,
            InvalidCode::InvalidType,
            format!(
                "Invalid type for '{param}': expected an array of messages, but got {} instead.",
                describe(value)
            ),
        ));
    };
    messages.iter().enumerate().find_map(|(index, message)| {
        let message_param = format!("{param}[{index}]");
        locate_message(&message_param, message)
    })
}

/// Finds the fault in one message, or `None` if it deserialises.
fn locate_message(param: &str, value: &Value) -> Option<ApiError> {
    let Value::Object(object) = value else {
        return Some(ApiError::invalid(
            param,
            InvalidCode::InvalidType,
            format!(
                "Invalid type for '{param}': expected an object, but got {} instead.",
                describe(value)
            ),
        ));
    };
    let role_param = format!("{param}.role");
    let fields = match object.get("role") {
        None => return Some(missing(&role_param)),
        Some(Value::String(role)) => match role.as_str() {
            "developer" | "system" | "user" => PLAIN_MESSAGE_FIELDS,
            "assistant" => ASSISTANT_MESSAGE_FIELDS,
            "tool" => TOOL_MESSAGE_FIELDS,
            other => return Some(unknown_role(&role_param, other)),
        },
        Some(other) => {
            return Some(ApiError::invalid(
                &role_param,
                InvalidCode::InvalidType,
                format!(
                    "Invalid type for '{role_param}': expected a string, but got {} instead.",
                    describe(other)
                ),
            ))
        }
    };
    let err = ChatMessage::deserialize(value).err()?;
    let prefix = format!("{param}.");
    Some(
        locate_in_object(object, &prefix, fields).unwrap_or_else(|| {
            ApiError::invalid(
                param,
                InvalidCode::InvalidValue,
                format!("Invalid value for '{param}': {err}."),
            )
        }),
    )
}

fn unknown_role(param: &str, role: &str) -> ApiError {
    let supported: Vec<String> = Role::ALL.iter().map(|r| format!("'{r}'")).collect();
    ApiError::invalid(
        param,
        InvalidCode::InvalidValue,
        format!(
            "Invalid value for '{param}': '{role}'. Supported values are: {}.",
            supported.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{JsonSchemaFormat, ToolChoiceMode};
    use std::collections::BTreeMap;

    fn names(fields: &[Field]) -> Vec<&'static str> {
        fields.iter().map(|field| field.name).collect()
    }

    /// Every key a fully populated request serialises must be in its table,
    /// so a field added to the type cannot lose its param name.
    #[test]
    fn chat_table_covers_every_field() {
        let request = ChatCompletionRequest {
            model: "m".into(),
            messages: vec![],
            temperature: Some(1.0),
            top_p: Some(1.0),
            n: Some(1),
            stream: Some(true),
            stream_options: Some(StreamOptions {
                include_usage: Some(true),
            }),
            stop: Some(Stop::One("x".into())),
            max_tokens: Some(1),
            max_completion_tokens: Some(1),
            presence_penalty: Some(0.0),
            frequency_penalty: Some(0.0),
            logit_bias: Some(BTreeMap::new()),
            logprobs: Some(true),
            top_logprobs: Some(1),
            seed: Some(1),
            response_format: Some(ResponseFormat::JsonSchema {
                json_schema: JsonSchemaFormat {
                    name: "n".into(),
                    description: None,
                    schema: None,
                    strict: None,
                },
            }),
            tools: Some(vec![]),
            tool_choice: Some(ToolChoice::Mode(ToolChoiceMode::Auto)),
            parallel_tool_calls: Some(true),
            user: Some("u".into()),
            store: Some(true),
            metadata: Some(BTreeMap::new()),
            audio: Some(Value::Null),
            modalities: Some(Value::Null),
            web_search_options: Some(Value::Null),
            moderation: Some(Value::Null),
            functions: Some(Value::Null),
            function_call: Some(Value::Null),
            reasoning_effort: Some("low".into()),
        };
        let value = serde_json::to_value(request).unwrap();
        let table = names(CHAT_FIELDS);
        for key in value.as_object().unwrap().keys() {
            assert!(
                table.contains(&key.as_str()),
                "{key} missing from CHAT_FIELDS"
            );
        }
    }

    #[test]
    fn completion_table_covers_every_field() {
        let request = CompletionRequest {
            model: "m".into(),
            prompt: Prompt::Text("p".into()),
            best_of: Some(1),
            echo: Some(false),
            frequency_penalty: Some(0.0),
            logit_bias: Some(BTreeMap::new()),
            logprobs: Some(1),
            max_tokens: Some(1),
            n: Some(1),
            presence_penalty: Some(0.0),
            seed: Some(1),
            stop: Some(Stop::One("x".into())),
            stream: Some(true),
            stream_options: Some(StreamOptions::default()),
            suffix: Some("s".into()),
            temperature: Some(1.0),
            top_p: Some(1.0),
            user: Some("u".into()),
        };
        let value = serde_json::to_value(request).unwrap();
        let table = names(COMPLETION_FIELDS);
        for key in value.as_object().unwrap().keys() {
            assert!(
                table.contains(&key.as_str()),
                "{key} missing from COMPLETION_FIELDS"
            );
        }
    }

    #[test]
    fn tokenize_tables_cover_every_field() {
        let request = TokenizeRequest {
            content: "c".into(),
            add_special: Some(true),
            with_pieces: Some(true),
        };
        let value = serde_json::to_value(request).unwrap();
        for key in value.as_object().unwrap().keys() {
            assert!(names(TOKENIZE_FIELDS).contains(&key.as_str()), "{key}");
        }
        assert_eq!(names(DETOKENIZE_FIELDS), ["tokens"]);
    }

    #[test]
    fn missing_field_is_read_from_serde_message() {
        assert_eq!(missing_field("missing field `model`"), Some("model"));
        assert_eq!(missing_field("invalid type: string"), None);
    }
}
