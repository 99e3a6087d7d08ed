//! Reading a chat answer as blocks: the one place that turns streamed chat
//! chunks (the local path's [`crate::generation::chat::ChatChunks`] or a
//! routed gateway stream) and whole chat answers into a sequence of text
//! blocks and tool-call blocks, for the APIs that speak in blocks — the
//! Responses API ([`crate::responses`]) and Anthropic's Messages API
//! ([`crate::anthropic`]).
//!
//! It parses nothing: tool calls arrive already parsed, as chat
//! `tool_calls` deltas; this only tracks which block is open, opens the next
//! one and closes the last, so that every format's events come in the
//! order their clients expect (a block's start, its deltas, its end).
//!
//! Both answer paths feed the same writer ([`BlockFormat`]): a local
//! answer's events become chat chunks first ([`Blocks`], an
//! [`AnswerFormat`], through [`events_of`]); a routed model's gateway
//! stream already is chat chunks, written as they arrive
//! ([`RoutedBlocks`]), so a routed stream is a stream too.

use std::future::Future;
use std::pin::Pin;

use api::{ApiError, ChatCompletion, ChatCompletionChunk, FinishReason, Usage};
use gateway::GatewayStream;

use crate::generation::chat::ChatChunks;
use crate::generation::{AnswerEvent, AnswerFormat};
use crate::metering::Charge;

/// A writer of another API's events from chat's chunks (the Responses
/// API's and Anthropic's): what [`events_of`] drives.
pub trait ChunkWriter {
    /// The event it writes.
    type Event: serde::Serialize + Send + 'static;
    /// The events one chat chunk means.
    fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<Self::Event>;
    /// The closing events, once the answer's usage is known.
    fn done(&mut self, usage: &Usage) -> Vec<Self::Event>;
    /// The answer's first choice ended on the stop string `stop` (the
    /// engine says which matched); nothing by default.
    fn stopped_by(&mut self, _stop: &str) {}
}

/// Work awaited before an answer's last events are written.
pub type BeforeLast = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A [`ChunkWriter`] that writes a whole event stream: its opening, its
/// failure, and its SSE event names.
pub trait BlockFormat: ChunkWriter + Send + 'static {
    /// The opening events.
    fn opening(&mut self) -> Vec<Self::Event>;
    /// The events of a failure mid-stream.
    fn failure(&mut self, err: &ApiError) -> Vec<Self::Event>;
    /// Work awaited after the last events are made and before they are
    /// written (a stored response written first); none by default.
    fn before_last(&mut self) -> Option<BeforeLast> {
        None
    }
    /// An event's SSE `event:` name.
    fn event_name(event: &Self::Event) -> &'static str;
}

/// The events one answer event means: chat's chunks for it, each rewritten
/// by `writer`, then the closing events when it is the answer's end.
pub fn events_of<W: ChunkWriter>(
    chat: &mut ChatChunks,
    writer: &mut W,
    event: AnswerEvent,
) -> Vec<W::Event> {
    let usage = match &event {
        AnswerEvent::Done(usage) => Some(usage.clone()),
        _ => None,
    };
    if let AnswerEvent::Finished {
        index: 0,
        stop: Some(stop),
        ..
    } = &event
    {
        writer.stopped_by(stop);
    }
    let mut events = Vec::new();
    for chunk in chat.event(event) {
        events.extend(writer.chunk(&chunk));
    }
    if let Some(usage) = usage {
        events.extend(writer.done(&usage));
    }
    events
}

/// A local answer written by a [`BlockFormat`]: chat's own format
/// ([`ChatChunks`], where tool calls and reasoning are parsed) rewritten.
pub struct Blocks<W> {
    chat: ChatChunks,
    writer: W,
}

impl<W> Blocks<W> {
    /// `writer`'s events from the chunks of `chat`.
    pub fn new(chat: ChatChunks, writer: W) -> Self {
        Blocks { chat, writer }
    }
}

impl<W: BlockFormat> AnswerFormat for Blocks<W> {
    type Chunk = W::Event;

    fn opening(&mut self, choices: usize) -> Vec<W::Event> {
        // Chat's opening chunks carry only the role.
        let _ = self.chat.opening(choices);
        self.writer.opening()
    }

    fn event(&mut self, event: AnswerEvent) -> Vec<W::Event> {
        events_of(&mut self.chat, &mut self.writer, event)
    }

    fn event_name(chunk: &W::Event) -> Option<&'static str> {
        Some(W::event_name(chunk))
    }

    fn ends_with_done(&self) -> bool {
        false
    }

    fn failure(&mut self, err: &ApiError) -> Option<Vec<W::Event>> {
        Some(self.writer.failure(err))
    }

    fn before_last(&mut self) -> Option<BeforeLast> {
        self.writer.before_last()
    }
}

/// A routed model's streamed answer, to be written by a [`BlockFormat`]:
/// the gateway's chat chunks (relayed as they arrive), the charge the
/// relay settles, and the writer.
pub struct RoutedBlocks<W> {
    /// The gateway's stream.
    pub stream: GatewayStream,
    /// The reservation, settled when the stream ends, fails or is dropped.
    pub charge: Option<Charge>,
    /// The endpoint's writer.
    pub writer: W,
}

/// One step of a chat answer read as blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A reasoning block begins (a thinking model's reasoning, split off
    /// as chat's `reasoning_content`).
    ReasoningStart,
    /// More of the open reasoning block.
    Reasoning(String),
    /// The reasoning block ends, with its whole text.
    ReasoningEnd(String),
    /// A text block begins.
    TextStart,
    /// More text of the open text block.
    Text(String),
    /// The text block ends, with its whole text.
    TextEnd(String),
    /// A tool-call block begins.
    CallStart {
        /// The call's id.
        id: String,
        /// The function called.
        name: String,
    },
    /// More of the open call's arguments (JSON text).
    Arguments(String),
    /// The call ends, with its whole arguments.
    CallEnd {
        /// The call's id.
        id: String,
        /// The function called.
        name: String,
        /// The whole arguments.
        arguments: String,
    },
}

/// Which block is open.
#[derive(Debug, Default)]
enum Open {
    #[default]
    None,
    Reasoning(String),
    Text(String),
    Call {
        index: u32,
        id: String,
        name: String,
        arguments: String,
    },
}

/// The reader of one answer's first choice.
#[derive(Debug, Default)]
pub struct BlockReader {
    open: Open,
    finish: Option<FinishReason>,
    /// How many tool calls were made.
    pub calls: u32,
}

impl BlockReader {
    /// The pieces of one chat chunk (only choice 0 is read: these APIs
    /// have one choice).
    pub fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<Piece> {
        let mut pieces = Vec::new();
        for choice in chunk.choices.iter().filter(|choice| choice.index == 0) {
            let reasoning = choice
                .delta
                .reasoning_content
                .as_deref()
                .or(choice.delta.reasoning.as_deref());
            if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
                self.reasoning(text, &mut pieces);
            }
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(text, &mut pieces);
            }
            for call in choice.delta.tool_calls.iter().flatten() {
                let same = matches!(&self.open, Open::Call { index, .. } if *index == call.index);
                if !same {
                    self.close(&mut pieces);
                    let id = call.id.clone().unwrap_or_default();
                    let name = call
                        .function
                        .as_ref()
                        .and_then(|function| function.name.clone())
                        .unwrap_or_default();
                    pieces.push(Piece::CallStart {
                        id: id.clone(),
                        name: name.clone(),
                    });
                    self.calls += 1;
                    self.open = Open::Call {
                        index: call.index,
                        id,
                        name,
                        arguments: String::new(),
                    };
                }
                let delta = call
                    .function
                    .as_ref()
                    .and_then(|function| function.arguments.clone())
                    .unwrap_or_default();
                if let Open::Call { arguments, .. } = &mut self.open {
                    if !delta.is_empty() {
                        arguments.push_str(&delta);
                        pieces.push(Piece::Arguments(delta));
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish.get_or_insert(reason);
                self.close(&mut pieces);
            }
        }
        pieces
    }

    /// The pieces of a whole answer (its first choice), all at once.
    pub fn whole(&mut self, completion: &ChatCompletion) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let Some(choice) = completion.choices.first() else {
            return pieces;
        };
        let reasoning = choice
            .message
            .reasoning_content
            .as_deref()
            .or(choice.message.reasoning.as_deref());
        if let Some(text) = reasoning.filter(|text| !text.is_empty()) {
            self.reasoning(text, &mut pieces);
        }
        if let Some(text) = choice
            .message
            .content
            .as_deref()
            .filter(|text| !text.is_empty())
        {
            self.text(text, &mut pieces);
        }
        self.close(&mut pieces);
        for call in choice.message.tool_calls.iter().flatten() {
            self.calls += 1;
            pieces.push(Piece::CallStart {
                id: call.id.clone(),
                name: call.function.name.clone(),
            });
            if !call.function.arguments.is_empty() {
                pieces.push(Piece::Arguments(call.function.arguments.clone()));
            }
            pieces.push(Piece::CallEnd {
                id: call.id.clone(),
                name: call.function.name.clone(),
                arguments: call.function.arguments.clone(),
            });
        }
        self.finish.get_or_insert(choice.finish_reason);
        pieces
    }

    /// Closes whatever is open (the answer ended or failed).
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut pieces = Vec::new();
        self.close(&mut pieces);
        pieces
    }

    /// The first finish reason seen.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    fn reasoning(&mut self, text: &str, pieces: &mut Vec<Piece>) {
        if !matches!(self.open, Open::Reasoning(_)) {
            self.close(pieces);
            pieces.push(Piece::ReasoningStart);
            self.open = Open::Reasoning(String::new());
        }
        if let Open::Reasoning(whole) = &mut self.open {
            whole.push_str(text);
        }
        pieces.push(Piece::Reasoning(text.to_owned()));
    }

    fn text(&mut self, text: &str, pieces: &mut Vec<Piece>) {
        if !matches!(self.open, Open::Text(_)) {
            self.close(pieces);
            pieces.push(Piece::TextStart);
            self.open = Open::Text(String::new());
        }
        if let Open::Text(whole) = &mut self.open {
            whole.push_str(text);
        }
        pieces.push(Piece::Text(text.to_owned()));
    }

    fn close(&mut self, pieces: &mut Vec<Piece>) {
        match std::mem::take(&mut self.open) {
            Open::None => {}
            Open::Reasoning(text) => pieces.push(Piece::ReasoningEnd(text)),
            Open::Text(text) => pieces.push(Piece::TextEnd(text)),
            Open::Call {
                id,
                name,
                arguments,
                ..
            } => pieces.push(Piece::CallEnd {
                id,
                name,
                arguments,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{ChunkChoice, ChunkDelta, FunctionCallDelta, ToolCallDelta};

    fn chunk(delta: ChunkDelta, finish: Option<FinishReason>) -> ChatCompletionChunk {
        ChatCompletionChunk::new(
            "c",
            0,
            "m",
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            false,
        )
    }

    fn call(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ChunkDelta {
        ChunkDelta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                kind: None,
                function: Some(FunctionCallDelta {
                    name: name.map(str::to_owned),
                    arguments: Some(args.to_owned()),
                }),
            }]),
            ..ChunkDelta::default()
        }
    }

    #[test]
    fn reasoning_comes_apart_before_the_text() {
        let mut reader = BlockReader::default();
        let mut pieces = Vec::new();
        let thinking = |text: &str| ChunkDelta {
            reasoning_content: Some(text.into()),
            ..ChunkDelta::default()
        };
        pieces.extend(reader.chunk(&chunk(thinking("Hmm, "), None)));
        pieces.extend(reader.chunk(&chunk(thinking("two."), None)));
        pieces.extend(reader.chunk(&chunk(ChunkDelta::text("2"), Some(FinishReason::Stop))));
        assert_eq!(
            pieces,
            vec![
                Piece::ReasoningStart,
                Piece::Reasoning("Hmm, ".into()),
                Piece::Reasoning("two.".into()),
                Piece::ReasoningEnd("Hmm, two.".into()),
                Piece::TextStart,
                Piece::Text("2".into()),
                Piece::TextEnd("2".into()),
            ]
        );
    }

    #[test]
    fn text_then_calls_open_and_close_in_order() {
        let mut reader = BlockReader::default();
        let mut pieces = Vec::new();
        pieces.extend(reader.chunk(&chunk(ChunkDelta::opening(), None)));
        pieces.extend(reader.chunk(&chunk(ChunkDelta::text("Hi"), None)));
        pieces.extend(reader.chunk(&chunk(call(0, Some("c1"), Some("f"), "{\"a\""), None)));
        pieces.extend(reader.chunk(&chunk(call(0, None, None, ":1}"), None)));
        pieces.extend(reader.chunk(&chunk(
            call(1, Some("c2"), Some("g"), "{}"),
            Some(FinishReason::ToolCalls),
        )));
        assert_eq!(
            pieces,
            vec![
                Piece::TextStart,
                Piece::Text("Hi".into()),
                Piece::TextEnd("Hi".into()),
                Piece::CallStart {
                    id: "c1".into(),
                    name: "f".into()
                },
                Piece::Arguments("{\"a\"".into()),
                Piece::Arguments(":1}".into()),
                Piece::CallEnd {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: "{\"a\":1}".into()
                },
                Piece::CallStart {
                    id: "c2".into(),
                    name: "g".into()
                },
                Piece::Arguments("{}".into()),
                Piece::CallEnd {
                    id: "c2".into(),
                    name: "g".into(),
                    arguments: "{}".into()
                },
            ]
        );
        assert_eq!(reader.calls, 2);
        assert_eq!(reader.finish_reason(), Some(FinishReason::ToolCalls));
        assert!(reader.finish().is_empty());
    }
}
