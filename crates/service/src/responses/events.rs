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
//! [`ResponseEvents`] is the local path's [`AnswerFormat`]: it wraps chat's
//! own format ([`ChatChunks`], where tool calls are parsed) and rewrites its
//! chunks through the writer, and stores the finished response before its
//! last event is written.

use std::future::Future;
use std::pin::Pin;

use api::{
    ApiError, ChatCompletion, ChatCompletionChunk, EventBody, FinishReason, IncompleteDetails,
    Item, ItemContent, ResponseError, ResponseEvent, ResponseObject, ResponseUsage, Usage,
};

use super::Keep;
use crate::chat_blocks::{events_of, BlockReader, ChunkWriter, Piece};
use crate::generation::chat::ChatChunks;
use crate::generation::{AnswerEvent, AnswerFormat};

/// Writes one response's events and keeps its object up to date.
pub struct ResponseWriter {
    object: ResponseObject,
    reader: BlockReader,
    sequence: u64,
    /// The open item's place in `output`.
    open: Option<usize>,
}

impl ResponseWriter {
    /// A writer for `object` (as it starts: no output).
    pub fn new(object: ResponseObject) -> Self {
        ResponseWriter {
            object,
            reader: BlockReader::default(),
            sequence: 0,
            open: None,
        }
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
        let pieces = self.reader.chunk(chunk);
        self.pieces(pieces)
    }

    /// The events of a whole chat answer (a routed one), then its end.
    pub fn whole(&mut self, completion: &ChatCompletion) -> Vec<ResponseEvent> {
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
    /// set (`incomplete` at the token limit), `response.completed` or
    /// `response.incomplete`.
    pub fn done(&mut self, usage: &Usage) -> Vec<ResponseEvent> {
        let pieces = self.reader.finish();
        let mut events = self.pieces(pieces);
        self.object.usage = Some(ResponseUsage::from_chat(usage));
        let kind = if self.reader.finish_reason() == Some(FinishReason::Length) {
            self.object.status = "incomplete".into();
            self.object.incomplete_details = Some(IncompleteDetails {
                reason: "max_output_tokens".into(),
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

    fn piece(&mut self, piece: Piece, events: &mut Vec<ResponseEvent>) {
        let output_index = self.object.output.len() as u32;
        match piece {
            Piece::TextStart => {
                let id = format!("msg_{}", crate::random_hex());
                let item = Item::Message {
                    id: id.clone(),
                    role: "assistant".into(),
                    status: "in_progress".into(),
                    content: Vec::new(),
                };
                self.object.output.push(item.clone());
                self.open = Some(output_index as usize);
                events.push(self.event(
                    "response.output_item.added",
                    EventBody::Item { output_index, item },
                ));
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
                    events.push(self.event(
                        "response.output_text.delta",
                        EventBody::TextDelta {
                            item_id: id,
                            output_index: index,
                            content_index: 0,
                            delta,
                            logprobs: Vec::new(),
                        },
                    ));
                }
            }
            Piece::TextEnd(text) => {
                let Some((index, id)) = self.open_item() else {
                    return;
                };
                let status = self.item_status();
                self.object.output[index as usize] = Item::assistant(&id, &text, status);
                self.object.output_text.push_str(&text);
                self.open = None;
                events.push(self.event(
                    "response.output_text.done",
                    EventBody::TextDone {
                        item_id: id.clone(),
                        output_index: index,
                        content_index: 0,
                        text: text.clone(),
                        logprobs: Vec::new(),
                    },
                ));
                events.push(self.event(
                    "response.content_part.done",
                    EventBody::Part {
                        item_id: id,
                        output_index: index,
                        content_index: 0,
                        part: ItemContent::output_text(text),
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
                self.object.output.push(item.clone());
                self.open = Some(output_index as usize);
                events.push(self.event(
                    "response.output_item.added",
                    EventBody::Item { output_index, item },
                ));
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

    /// An item ending now: `incomplete` when the token limit cut it.
    fn item_status(&self) -> &'static str {
        if self.reader.finish_reason() == Some(FinishReason::Length) {
            "incomplete"
        } else {
            "completed"
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
pub struct ResponseEvents {
    chat: ChatChunks,
    writer: ResponseWriter,
    keep: Option<Keep>,
}

impl ResponseEvents {
    /// Events of `object` from the chunks of `chat`, stored into `keep`.
    pub fn new(chat: ChatChunks, object: ResponseObject, keep: Option<Keep>) -> Self {
        ResponseEvents {
            chat,
            writer: ResponseWriter::new(object),
            keep,
        }
    }
}

impl ChunkWriter for ResponseWriter {
    type Event = ResponseEvent;

    fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<ResponseEvent> {
        ResponseWriter::chunk(self, chunk)
    }

    fn done(&mut self, usage: &Usage) -> Vec<ResponseEvent> {
        ResponseWriter::done(self, usage)
    }
}

impl AnswerFormat for ResponseEvents {
    type Chunk = ResponseEvent;

    fn opening(&mut self, choices: usize) -> Vec<ResponseEvent> {
        // Chat's opening chunks carry only the role.
        let _ = self.chat.opening(choices);
        self.writer.opening()
    }

    fn event(&mut self, event: AnswerEvent) -> Vec<ResponseEvent> {
        events_of(&mut self.chat, &mut self.writer, event)
    }

    fn event_name(chunk: &ResponseEvent) -> Option<&'static str> {
        Some(chunk.kind)
    }

    fn ends_with_done(&self) -> bool {
        false
    }

    fn failure(&mut self, err: &ApiError) -> Option<Vec<ResponseEvent>> {
        let events = self.writer.failed(err);
        if let Some(keep) = self.keep.take() {
            let object = self.writer.object().clone();
            tokio::spawn(async move { keep.write(&object).await });
        }
        Some(events)
    }

    fn before_last(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let keep = self.keep.take()?;
        let object = self.writer.object().clone();
        Some(Box::pin(async move { keep.write(&object).await }))
    }
}
