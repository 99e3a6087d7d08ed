//! A chat answer written as the Responses API's typed events
//! ([`ResponseWriter`]), in OpenAI's order, each with a rising
//! `sequence_number`: `response.created`, `response.in_progress`; per
//! output item `response.output_item.added`, (for a message)
//! `response.content_part.added`, `response.output_text.delta` … `.done`,
//! `response.content_part.done`, (for a call)
//! `response.function_call_arguments.delta` … `.done`; then
//! `response.output_item.done`; last `response.completed` (or
//! `.incomplete` / `.failed`). The same writer gives the whole response
//! object of an answer that is not streamed.
//!
//! The writer is a [`BlockFormat`]: a local answer's chat chunks
//! ([`ResponseEvents`]) and a routed model's gateway stream are written by
//! it alike, and a response kept ([`ResponseWriter::keeping`]) is stored
//! before its last event is written.

use api::{
    ApiError, ChatCompletion, ChatCompletionChunk, ChoiceLogprobs, EventBody, FinishReason,
    IncompleteDetails, Item, ItemContent, ReasoningText, ResponseError, ResponseEvent,
    ResponseObject, ResponseUsage, Usage,
};

use serde_json::Value;

use super::Keep;
use crate::chat_blocks::{BeforeLast, BlockFormat, BlockReader, Blocks, ChunkWriter, Piece};

/// Writes one response's events and keeps its object up to date.
pub struct ResponseWriter {
    object: ResponseObject,
    reader: BlockReader,
    sequence: u64,
    /// The open item's place in `output`.
    open: Option<usize>,
    /// Where the streamed response is stored, once over.
    keep: Option<Keep>,
    /// Logprobs of output tokens not yet sent with a text delta
    /// (`include: ["message.output_text.logprobs"]`).
    pending_logprobs: Vec<Value>,
    /// The open text part's logprobs so far.
    text_logprobs: Vec<Value>,
}

impl ResponseWriter {
    /// A writer for `object` (as it starts: no output).
    pub fn new(object: ResponseObject) -> Self {
        ResponseWriter {
            object,
            reader: BlockReader::default(),
            sequence: 0,
            open: None,
            keep: None,
            pending_logprobs: Vec::new(),
            text_logprobs: Vec::new(),
        }
    }

    /// Stores the streamed response into `keep` before its last event
    /// (or after a failure).
    pub fn keeping(mut self, keep: Option<Keep>) -> Self {
        self.keep = keep;
        self
    }

    /// The response as it stands.
    pub fn object(&self) -> &ResponseObject {
        &self.object
    }

    fn event(&mut self, kind: &'static str, body: EventBody) -> ResponseEvent {
        let event = ResponseEvent {
            kind,
            sequence_number: self.sequence,
            body,
        };
        self.sequence += 1;
        event
    }

    fn response_event(&mut self, kind: &'static str) -> ResponseEvent {
        let response = Box::new(self.object.clone());
        self.event(kind, EventBody::Response { response })
    }

    /// `response.created` and `response.in_progress`.
    pub fn opening(&mut self) -> Vec<ResponseEvent> {
        self.object.status = "in_progress".into();
        vec![
            self.response_event("response.created"),
            self.response_event("response.in_progress"),
        ]
    }

    /// The events of one chat chunk.
    pub fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<ResponseEvent> {
        for choice in chunk.choices.iter().filter(|choice| choice.index == 0) {
            self.logprobs(choice.logprobs.as_ref());
        }
        let pieces = self.reader.chunk(chunk);
        self.pieces(pieces)
    }

    /// Keeps the logprobs of output tokens (asked for with `include`) for
    /// the next text delta.
    fn logprobs(&mut self, logprobs: Option<&ChoiceLogprobs>) {
        let tokens = logprobs.and_then(|logprobs| logprobs.content.as_ref());
        self.pending_logprobs.extend(
            tokens
                .into_iter()
                .flatten()
                .filter_map(|token| serde_json::to_value(token).ok()),
        );
    }

    /// The events of a whole chat answer (a routed one), then its end.
    pub fn whole(&mut self, completion: &ChatCompletion) -> Vec<ResponseEvent> {
        if let Some(choice) = completion.choices.first() {
            self.logprobs(choice.logprobs.as_ref());
        }
        let pieces = self.reader.whole(completion);
        let mut events = self.pieces(pieces);
        let usage = completion
            .usage
            .clone()
            .unwrap_or_else(|| Usage::new(0, 0, 0));
        events.extend(self.done(&usage));
        events
    }

    /// The answer ended with `usage`: every open item closed, the status
    /// set (`incomplete` at the token limit or when moderation withheld the
    /// answer), `response.completed` or
    /// `response.incomplete`.
    pub fn done(&mut self, usage: &Usage) -> Vec<ResponseEvent> {
        let pieces = self.reader.finish();
        let mut events = self.pieces(pieces);
        self.object.usage = Some(ResponseUsage::from_chat(usage));
        // OpenAI's two reasons for an incomplete response: the token limit,
        // and an answer withheld by moderation (the project's guardrails).
        let incomplete = match self.reader.finish_reason() {
            Some(FinishReason::Length) => Some("max_output_tokens"),
            Some(FinishReason::ContentFilter) => Some("content_filter"),
            _ => None,
        };
        let kind = if let Some(reason) = incomplete {
            self.object.status = "incomplete".into();
            self.object.incomplete_details = Some(IncompleteDetails {
                reason: reason.into(),
            });
            "response.incomplete"
        } else {
            self.object.status = "completed".into();
            "response.completed"
        };
        events.push(self.response_event(kind));
        events
    }

    /// The answer failed: `error` and `response.failed`.
    pub fn failed(&mut self, err: &ApiError) -> Vec<ResponseEvent> {
        let pieces = self.reader.finish();
        let mut events = self.pieces(pieces);
        let object = err.to_object();
        self.object.status = "failed".into();
        self.object.error = Some(ResponseError {
            code: object.code.clone().unwrap_or_else(|| "server_error".into()),
            message: object.message.clone(),
        });
        events.push(self.event(
            "error",
            EventBody::Error {
                code: object.code.clone(),
                message: object.message.clone(),
                param: object.param.clone(),
            },
        ));
        events.push(self.response_event("response.failed"));
        events
    }

    /// The response cancelled (a background one).
    pub fn cancelled(&mut self) {
        self.reader.finish();
        self.object.status = "cancelled".into();
    }

    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<ResponseEvent> {
        let mut events = Vec::new();
        for piece in pieces {
            self.piece(piece, &mut events);
        }
        events
    }

    /// Opens `item` at `output_index` (the output's end):
    /// `response.output_item.added`.
    fn add_item(&mut self, output_index: u32, item: Item, events: &mut Vec<ResponseEvent>) {
        self.object.output.push(item.clone());
        self.open = Some(output_index as usize);
        events.push(self.event(
            "response.output_item.added",
            EventBody::Item { output_index, item },
        ));
    }

    fn piece(&mut self, piece: Piece, events: &mut Vec<ResponseEvent>) {
        let output_index = self.object.output.len() as u32;
        match piece {
            Piece::ReasoningStart => {
                let item = Item::Reasoning {
                    id: format!("rs_{}", crate::random_hex()),
                    summary: Vec::new(),
                    content: Vec::new(),
                    status: "in_progress".into(),
                };
                self.add_item(output_index, item, events);
            }
            Piece::Reasoning(delta) => {
                if let Some((index, id)) = self.open_item() {
                    events.push(self.event(
                        "response.reasoning_text.delta",
                        EventBody::ReasoningDelta {
                            item_id: id,
                            output_index: index,
                            content_index: 0,
                            delta,
                        },
                    ));
                }
            }
            Piece::ReasoningEnd(text) => {
                let Some((index, id)) = self.open_item() else {
                    return;
                };
                let status = self.item_status();
                self.object.output[index as usize] = Item::Reasoning {
                    id: id.clone(),
                    summary: Vec::new(),
                    content: vec![ReasoningText::new(text.clone())],
                    status: status.into(),
                };
                self.open = None;
                events.push(self.event(
                    "response.reasoning_text.done",
                    EventBody::ReasoningDone {
                        item_id: id,
                        output_index: index,
                        content_index: 0,
                        text,
                    },
                ));
                let item = self.object.output[index as usize].clone();
                events.push(self.event(
                    "response.output_item.done",
                    EventBody::Item {
                        output_index: index,
                        item,
                    },
                ));
            }
            Piece::TextStart => {
                let id = format!("msg_{}", crate::random_hex());
                let item = Item::Message {
                    id: id.clone(),
                    role: "assistant".into(),
                    status: "in_progress".into(),
                    content: Vec::new(),
                };
                self.add_item(output_index, item, events);
                events.push(self.event(
                    "response.content_part.added",
                    EventBody::Part {
                        item_id: id,
                        output_index,
                        content_index: 0,
                        part: ItemContent::output_text(""),
                    },
                ));
            }
            Piece::Text(delta) => {
                if let Some((index, id)) = self.open_item() {
                    let logprobs = std::mem::take(&mut self.pending_logprobs);
                    self.text_logprobs.extend(logprobs.iter().cloned());
                    events.push(self.event(
                        "response.output_text.delta",
                        EventBody::TextDelta {
                            item_id: id,
                            output_index: index,
                            content_index: 0,
                            delta,
                            logprobs,
                        },
                    ));
                }
            }
            Piece::TextEnd(text) => {
                let Some((index, id)) = self.open_item() else {
                    return;
                };
                let status = self.item_status();
                let mut logprobs = std::mem::take(&mut self.text_logprobs);
                logprobs.append(&mut self.pending_logprobs);
                let part = ItemContent::OutputText {
                    text: text.clone(),
                    annotations: Vec::new(),
                    logprobs: logprobs.clone(),
                };
                self.object.output[index as usize] = Item::Message {
                    id: id.clone(),
                    role: "assistant".into(),
                    status: status.into(),
                    content: vec![part.clone()],
                };
                self.object.output_text.push_str(&text);
                self.open = None;
                events.push(self.event(
                    "response.output_text.done",
                    EventBody::TextDone {
                        item_id: id.clone(),
                        output_index: index,
                        content_index: 0,
                        text: text.clone(),
                        logprobs,
                    },
                ));
                events.push(self.event(
                    "response.content_part.done",
                    EventBody::Part {
                        item_id: id,
                        output_index: index,
                        content_index: 0,
                        part,
                    },
                ));
                let item = self.object.output[index as usize].clone();
                events.push(self.event(
                    "response.output_item.done",
                    EventBody::Item {
                        output_index: index,
                        item,
                    },
                ));
            }
            Piece::CallStart { id, name } => {
                // Logprobs are the output text's, not a call's.
                self.pending_logprobs.clear();
                let call_id = if id.is_empty() {
                    format!("call_{}", crate::random_hex())
                } else {
                    id
                };
                let item = Item::FunctionCall {
                    id: format!("fc_{}", crate::random_hex()),
                    call_id,
                    name,
                    arguments: String::new(),
                    status: "in_progress".into(),
                };
                self.add_item(output_index, item, events);
            }
            Piece::Arguments(delta) => {
                if let Some((index, id)) = self.open_item() {
                    events.push(self.event(
                        "response.function_call_arguments.delta",
                        EventBody::ArgumentsDelta {
                            item_id: id,
                            output_index: index,
                            delta,
                        },
                    ));
                }
            }
            Piece::CallEnd {
                name, arguments, ..
            } => {
                let Some((index, id)) = self.open_item() else {
                    return;
                };
                let status = self.item_status().to_owned();
                if let Some(Item::FunctionCall {
                    arguments: kept,
                    status: kept_status,
                    ..
                }) = self.object.output.get_mut(index as usize)
                {
                    kept.clone_from(&arguments);
                    *kept_status = status;
                }
                self.open = None;
                events.push(self.event(
                    "response.function_call_arguments.done",
                    EventBody::ArgumentsDone {
                        item_id: id,
                        output_index: index,
                        arguments,
                        name,
                    },
                ));
                let item = self.object.output[index as usize].clone();
                events.push(self.event(
                    "response.output_item.done",
                    EventBody::Item {
                        output_index: index,
                        item,
                    },
                ));
            }
        }
    }

    /// An item ending now: `incomplete` when the token limit cut it or
    /// moderation withheld it.
    fn item_status(&self) -> &'static str {
        match self.reader.finish_reason() {
            Some(FinishReason::Length | FinishReason::ContentFilter) => "incomplete",
            _ => "completed",
        }
    }

    fn open_item(&self) -> Option<(u32, String)> {
        let index = self.open?;
        let item = self.object.output.get(index)?;
        Some((index as u32, item.id().to_owned()))
    }
}

/// The local answer of a streamed Responses request: chat's chunks
/// rewritten as Responses events; the response stored (when asked) before
/// its last event goes out.
pub type ResponseEvents = Blocks<ResponseWriter>;

impl ChunkWriter for ResponseWriter {
    type Event = ResponseEvent;

    fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<ResponseEvent> {
        ResponseWriter::chunk(self, chunk)
    }

    fn done(&mut self, usage: &Usage) -> Vec<ResponseEvent> {
        ResponseWriter::done(self, usage)
    }
}

impl BlockFormat for ResponseWriter {
    fn opening(&mut self) -> Vec<ResponseEvent> {
        ResponseWriter::opening(self)
    }

    fn failure(&mut self, err: &ApiError) -> Vec<ResponseEvent> {
        let events = self.failed(err);
        if let Some(keep) = self.keep.take() {
            let object = self.object.clone();
            tokio::spawn(async move { keep.write(&object).await });
        }
        events
    }

    fn before_last(&mut self) -> Option<BeforeLast> {
        let keep = self.keep.take()?;
        let object = self.object.clone();
        Some(Box::pin(async move { keep.write(&object).await }))
    }

    fn event_name(event: &ResponseEvent) -> &'static str {
        event.kind
    }
}
