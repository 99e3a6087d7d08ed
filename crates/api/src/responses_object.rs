//! What the Responses API answers: the response object
//! ([`ResponseObject`]), the items of its input and output ([`Item`]), the
//! input-items page ([`ItemList`]), the deletion receipt, and the streamed
//! events ([`ResponseEvent`], each with its `sequence_number`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, InvalidCode};
use crate::responses::{TextConfig, Truncation};

/// One item of a response's input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A message: the user's, the developer's, or the model's.
    Message {
        /// `msg_…`.
        id: String,
        /// `user`, `system`, `developer` or `assistant`.
        role: String,
        /// `completed` (or `in_progress` / `incomplete` on output).
        status: String,
        /// Its parts.
        content: Vec<ItemContent>,
    },
    /// A call the model made.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// The id its output answers.
        call_id: String,
        /// The function.
        name: String,
        /// Its arguments, JSON text.
        arguments: String,
        /// `completed` or `in_progress`.
        status: String,
    },
    /// A call's result, sent back by the client.
    FunctionCallOutput {
        /// `fco_…`.
        id: String,
        /// The call it answers.
        call_id: String,
        /// The result, as text.
        output: String,
        /// `completed`.
        status: String,
    },
    /// A thinking model's reasoning, split off its answer. Sent back as
    /// input it is accepted and left out of the prompt (chat templates
    /// drop earlier turns' reasoning too).
    Reasoning {
        /// `rs_…`.
        id: String,
        /// Always empty: no summaries are written.
        #[serde(default)]
        summary: Vec<Value>,
        /// The reasoning text, as `reasoning_text` parts.
        #[serde(default)]
        content: Vec<ReasoningText>,
        /// `completed`, `in_progress` or `incomplete`.
        #[serde(default = "completed")]
        status: String,
    },
}

fn completed() -> String {
    "completed".into()
}

/// A reasoning item's text part (`type: "reasoning_text"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningText {
    /// Always `reasoning_text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: String,
}

impl ReasoningText {
    /// A part holding `text`.
    pub fn new(text: impl Into<String>) -> Self {
        ReasoningText {
            kind: "reasoning_text".into(),
            text: text.into(),
        }
    }
}

/// One part of a message item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ItemContent {
    /// Text the user or developer sent.
    InputText {
        /// The text.
        text: String,
    },
    /// Text the model wrote.
    OutputText {
        /// The text.
        text: String,
        /// Always empty here.
        #[serde(default)]
        annotations: Vec<Value>,
        /// Each token's logprob, when asked for (`include`).
        #[serde(default)]
        logprobs: Vec<Value>,
    },
    /// A refusal the model gave.
    Refusal {
        /// Its text.
        refusal: String,
    },
}

impl ItemContent {
    /// Model text.
    pub fn output_text(text: impl Into<String>) -> Self {
        ItemContent::OutputText {
            text: text.into(),
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

impl Item {
    /// A user message holding `text` (its id to be assigned:
    /// [`Item::assign_ids`]).
    pub fn user_text(text: &str) -> Self {
        Item::Message {
            id: String::new(),
            role: "user".into(),
            status: "completed".into(),
            content: vec![ItemContent::InputText { text: text.into() }],
        }
    }

    /// A model message (`msg_…` id given), `status` as it stands.
    pub fn assistant(id: &str, text: &str, status: &str) -> Self {
        Item::Message {
            id: id.into(),
            role: "assistant".into(),
            status: status.into(),
            content: vec![ItemContent::output_text(text)],
        }
    }

    /// Gives each item sent without an id a fresh one: `fresh(prefix)`
    /// with `msg`, `fc` or `fco` (this crate has no randomness of its own).
    pub fn assign_ids(items: &mut [Item], mut fresh: impl FnMut(&str) -> String) {
        for item in items {
            let (id, prefix) = match item {
                Item::Message { id, .. } => (id, "msg"),
                Item::FunctionCall { id, .. } => (id, "fc"),
                Item::FunctionCallOutput { id, .. } => (id, "fco"),
                Item::Reasoning { id, .. } => (id, "rs"),
            };
            if id.is_empty() {
                *id = fresh(prefix);
            }
        }
    }

    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            Item::Message { id, .. }
            | Item::FunctionCall { id, .. }
            | Item::FunctionCallOutput { id, .. }
            | Item::Reasoning { id, .. } => id,
        }
    }

    /// One input item from the request; `param` is its place (`input[2]`).
    /// A message may leave out `type` (OpenAI's "easy" input message) and
    /// give `content` as a string.
    pub fn from_input(value: &Value, param: &str) -> Result<Item, ApiError> {
        let Value::Object(object) = value else {
            return Err(ApiError::invalid(
                param,
                InvalidCode::InvalidType,
                format!("Invalid type for '{param}': expected an input item object."),
            ));
        };
        let kind = match object.get("type") {
            None if object.contains_key("role") => "message",
            None => return Err(missing(&format!("{param}.type"))),
            Some(Value::String(kind)) => kind.as_str(),
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("{param}.type"),
                    InvalidCode::InvalidType,
                    format!("Invalid type for '{param}.type': expected a string."),
                ))
            }
        };
        let text = |name: &str| -> Result<String, ApiError> {
            match object.get(name) {
                Some(Value::String(text)) => Ok(text.clone()),
                None | Some(Value::Null) => Err(missing(&format!("{param}.{name}"))),
                Some(_) => Err(ApiError::invalid(
                    format!("{param}.{name}"),
                    InvalidCode::InvalidType,
                    format!("Invalid type for '{param}.{name}': expected a string."),
                )),
            }
        };
        // An item sent without an id gets one later (`assign_ids`).
        let given_id = |_prefix: &str| {
            object
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match kind {
            "message" => {
                let role = text("role")?;
                if !matches!(role.as_str(), "user" | "system" | "developer" | "assistant") {
                    return Err(ApiError::invalid(
                        format!("{param}.role"),
                        InvalidCode::InvalidValue,
                        format!(
                            "Invalid value for '{param}.role': '{role}'; expected 'user', \
                             'system', 'developer' or 'assistant'."
                        ),
                    ));
                }
                let content = message_content(object.get("content"), &format!("{param}.content"))?;
                Ok(Item::Message {
                    id: given_id("msg"),
                    role,
                    status: "completed".into(),
                    content,
                })
            }
            "function_call" => Ok(Item::FunctionCall {
                id: given_id("fc"),
                call_id: text("call_id")?,
                name: text("name")?,
                arguments: text("arguments")?,
                status: "completed".into(),
            }),
            "function_call_output" => {
                let output = match object.get("output") {
                    // Outputs given as parts: their text, joined.
                    Some(Value::Array(_)) => {
                        let parts =
                            message_content(object.get("output"), &format!("{param}.output"))?;
                        crate::responses::content_text(&parts)
                    }
                    _ => text("output")?,
                };
                Ok(Item::FunctionCallOutput {
                    id: given_id("fco"),
                    call_id: text("call_id")?,
                    output,
                    status: "completed".into(),
                })
            }
            "reasoning" => {
                let content = object
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|part| part.get("text").and_then(Value::as_str))
                    .map(ReasoningText::new)
                    .collect();
                Ok(Item::Reasoning {
                    id: given_id("rs"),
                    summary: Vec::new(),
                    content,
                    status: "completed".into(),
                })
            }
            other => Err(ApiError::invalid(
                format!("{param}.type"),
                InvalidCode::InvalidValue,
                format!(
                    "Invalid value for '{param}.type': '{other}' items are not supported; \
                     expected 'message', 'function_call', 'function_call_output' or \
                     'reasoning'."
                ),
            )),
        }
    }
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        param,
        InvalidCode::MissingRequiredParameter,
        format!("Missing required parameter: '{param}'."),
    )
}

/// A message's `content`: a string, or text parts (`input_text`,
/// `output_text`, `refusal`); other parts (images, files, audio) are
/// refused, naming their place.
fn message_content(value: Option<&Value>, param: &str) -> Result<Vec<ItemContent>, ApiError> {
    match value {
        Some(Value::String(text)) => Ok(vec![ItemContent::InputText { text: text.clone() }]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(index, part)| {
                let place = format!("{param}[{index}]");
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                let text = part.get("text").and_then(Value::as_str);
                match (kind, text) {
                    ("input_text" | "text", Some(text)) => Ok(ItemContent::InputText {
                        text: text.to_owned(),
                    }),
                    ("output_text", Some(text)) => Ok(ItemContent::output_text(text)),
                    ("refusal", _) => Ok(ItemContent::Refusal {
                        refusal: part
                            .get("refusal")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    }),
                    ("input_text" | "output_text" | "text", None) => {
                        Err(missing(&format!("{place}.text")))
                    }
                    _ => Err(ApiError::invalid(
                        format!("{place}.type"),
                        InvalidCode::InvalidValue,
                        format!(
                            "Invalid value for '{place}.type': '{kind}' parts are not supported; \
                             only text parts are."
                        ),
                    )),
                }
            })
            .collect(),
        None | Some(Value::Null) => Err(missing(param)),
        Some(_) => Err(ApiError::invalid(
            param,
            InvalidCode::InvalidType,
            format!("Invalid type for '{param}': expected a string or an array of parts."),
        )),
    }
}

/// Why a response is `incomplete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` here.
    pub reason: String,
}

/// Why a response `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    /// `server_error`, …
    pub code: String,
    /// A sentence for the client.
    pub message: String,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u32,
    /// Prompt tokens written to a cache (0: the prefix cache fills itself
    /// at no extra charge).
    #[serde(default)]
    pub cache_write_tokens: u32,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    /// Always 0 here.
    pub reasoning_tokens: u32,
}

/// A response's token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseUsage {
    /// The whole prompt (a chained turn's history included).
    pub input_tokens: u32,
    /// Of which cached.
    pub input_tokens_details: InputTokensDetails,
    /// Generated.
    pub output_tokens: u32,
    /// Reasoning tokens (none).
    pub output_tokens_details: OutputTokensDetails,
    /// Input plus output.
    pub total_tokens: u32,
}

impl ResponseUsage {
    /// The Responses form of a chat usage.
    pub fn from_chat(usage: &crate::Usage) -> Self {
        ResponseUsage {
            input_tokens: usage.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: usage
                    .prompt_tokens_details
                    .as_ref()
                    .map_or(0, |details| details.cached_tokens),
                cache_write_tokens: 0,
            },
            output_tokens: usage.completion_tokens,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: usage.total_tokens,
        }
    }
}

/// The response object (`object: "response"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseObject {
    /// `resp_…`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `queued`, `in_progress`, `completed`, `incomplete`, `failed`,
    /// `cancelled`.
    pub status: String,
    /// Set when it failed.
    pub error: Option<ResponseError>,
    /// Set when it is incomplete.
    pub incomplete_details: Option<IncompleteDetails>,
    /// The request's instructions.
    pub instructions: Option<String>,
    /// The request's output limit.
    pub max_output_tokens: Option<i64>,
    /// The model that answered.
    pub model: String,
    /// What the model produced.
    pub output: Vec<Item>,
    /// The text of every output message, joined (a convenience the SDKs
    /// also compute).
    pub output_text: String,
    /// The request's setting (default true).
    pub parallel_tool_calls: bool,
    /// The response it continued.
    pub previous_response_id: Option<String>,
    /// Whether it is stored.
    pub store: bool,
    /// Whether it ran detached.
    pub background: bool,
    /// The request's temperature (default 1).
    pub temperature: f64,
    /// The request's `text` (format text by default).
    pub text: TextConfig,
    /// The request's `tool_choice` (default `auto`).
    pub tool_choice: Value,
    /// The request's tools.
    pub tools: Vec<Value>,
    /// The request's `top_p` (default 1).
    pub top_p: f64,
    /// The request's truncation.
    pub truncation: Truncation,
    /// Token counts, once done.
    pub usage: Option<ResponseUsage>,
    /// The request's `user`.
    pub user: Option<String>,
    /// The request's metadata.
    pub metadata: BTreeMap<String, String>,
}

impl ResponseObject {
    /// The `object` value.
    pub const OBJECT: &'static str = "response";

    /// The joined text of the output messages.
    pub fn joined_text(output: &[Item]) -> String {
        output
            .iter()
            .filter_map(|item| match item {
                Item::Message { content, .. } => Some(content),
                _ => None,
            })
            .flatten()
            .filter_map(|part| match part {
                ItemContent::OutputText { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// `DELETE /v1/responses/{id}`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedResponse {
    /// The id deleted.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

/// `POST /v1/responses/input_tokens`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokenCount {
    /// Always `response.input_tokens`.
    pub object: String,
    /// The prompt's tokens.
    pub input_tokens: u32,
}

impl InputTokenCount {
    /// The `object` value.
    pub const OBJECT: &'static str = "response.input_tokens";
}

/// `GET /v1/responses/{id}/input_items`'s page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemList {
    /// Always `list`.
    pub object: String,
    /// The items of this page.
    pub data: Vec<Item>,
    /// The first item's id.
    pub first_id: Option<String>,
    /// The last item's id.
    pub last_id: Option<String>,
    /// Whether more follow.
    pub has_more: bool,
}

/// One streamed event: its `type`, its place in the stream, and its body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseEvent {
    /// `response.created`, `response.output_text.delta`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Rises by one per event, from 0.
    pub sequence_number: u64,
    /// The event's fields.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The fields of a [`ResponseEvent`], by kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventBody {
    /// `response.created`, `.in_progress`, `.completed`, `.incomplete`,
    /// `.failed`.
    Response {
        /// The response as it stands.
        response: Box<ResponseObject>,
    },
    /// `response.output_item.added` / `.done`.
    Item {
        /// The item's place in `output`.
        output_index: u32,
        /// The item.
        item: Item,
    },
    /// `response.content_part.added` / `.done`.
    Part {
        /// The message item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place in the message.
        content_index: u32,
        /// The part.
        part: ItemContent,
    },
    /// `response.output_text.delta`.
    TextDelta {
        /// The message item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place.
        content_index: u32,
        /// New text.
        delta: String,
        /// Its tokens' logprobs, when asked for (`include`).
        logprobs: Vec<Value>,
    },
    /// `response.output_text.done`.
    TextDone {
        /// The message item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place.
        content_index: u32,
        /// The whole text.
        text: String,
        /// Its tokens' logprobs, when asked for (`include`).
        logprobs: Vec<Value>,
    },
    /// `response.reasoning_text.delta`.
    ReasoningDelta {
        /// The reasoning item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place.
        content_index: u32,
        /// New reasoning text.
        delta: String,
    },
    /// `response.reasoning_text.done`.
    ReasoningDone {
        /// The reasoning item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place.
        content_index: u32,
        /// The whole reasoning text.
        text: String,
    },
    /// `response.function_call_arguments.delta`.
    ArgumentsDelta {
        /// The call item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// New argument text.
        delta: String,
    },
    /// `response.function_call_arguments.done`.
    ArgumentsDone {
        /// The call item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The whole arguments.
        arguments: String,
        /// The function.
        name: String,
    },
    /// `error`: the stream failed.
    Error {
        /// A code, when one applies.
        code: Option<String>,
        /// A sentence for the client.
        message: String,
        /// The parameter at fault, if any.
        param: Option<String>,
    },
}
