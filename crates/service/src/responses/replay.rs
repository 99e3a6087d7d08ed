//! A stored response read back as its events (`GET /v1/responses/{id}
//! ?stream=true`, `starting_after`), and a turn's input counted without
//! running it (`POST /v1/responses/input_tokens`).
//!
//! The replay is written from the stored object, in the order and shape a
//! live stream has (`response.created`, `response.in_progress`, per item
//! its added / delta / done events, the final status event), so the SDK's
//! stream helpers assemble the same response. A response still `queued` or
//! `in_progress` (a background one) is waited for until it ends, within the
//! request timeout, and then replayed: events are not kept while it runs.

use std::time::Duration;

use api::{
    ApiError, CreateResponseRequest, EventBody, InputTokenCount, InvalidCode, Item, ItemContent,
    ResponseEvent, ResponseObject,
};

use crate::generation::chat as local_chat;
use crate::requests::{RequestContext, Service};
use crate::Result;

/// How often a replay waiting for a running response reads it again.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// The events a live stream of `object` (ended) would have sent.
pub fn events_of(object: &ResponseObject) -> Vec<ResponseEvent> {
    let mut events = Vec::new();
    let mut push = |kind: &'static str, body: EventBody| {
        let sequence_number = events.len() as u64;
        events.push(ResponseEvent {
            kind,
            sequence_number,
            body,
        });
    };
    let mut opening = object.clone();
    opening.status = "in_progress".into();
    opening.output.clear();
    opening.output_text.clear();
    opening.usage = None;
    opening.error = None;
    opening.incomplete_details = None;
    for kind in ["response.created", "response.in_progress"] {
        push(
            kind,
            EventBody::Response {
                response: Box::new(opening.clone()),
            },
        );
    }
    for (index, item) in object.output.iter().enumerate() {
        let output_index = index as u32;
        match item {
            Item::Message {
                id, role, content, ..
            } => {
                let started = Item::Message {
                    id: id.clone(),
                    role: role.clone(),
                    status: "in_progress".into(),
                    content: Vec::new(),
                };
                push(
                    "response.output_item.added",
                    EventBody::Item {
                        output_index,
                        item: started,
                    },
                );
                for (part_index, part) in content.iter().enumerate() {
                    let content_index = part_index as u32;
                    let ItemContent::OutputText { text, logprobs, .. } = part else {
                        continue;
                    };
                    push(
                        "response.content_part.added",
                        EventBody::Part {
                            item_id: id.clone(),
                            output_index,
                            content_index,
                            part: ItemContent::output_text(""),
                        },
                    );
                    push(
                        "response.output_text.delta",
                        EventBody::TextDelta {
                            item_id: id.clone(),
                            output_index,
                            content_index,
                            delta: text.clone(),
                            logprobs: logprobs.clone(),
                        },
                    );
                    push(
                        "response.output_text.done",
                        EventBody::TextDone {
                            item_id: id.clone(),
                            output_index,
                            content_index,
                            text: text.clone(),
                            logprobs: logprobs.clone(),
                        },
                    );
                    push(
                        "response.content_part.done",
                        EventBody::Part {
                            item_id: id.clone(),
                            output_index,
                            content_index,
                            part: part.clone(),
                        },
                    );
                }
            }
            Item::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                let started = Item::FunctionCall {
                    id: id.clone(),
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    status: "in_progress".into(),
                };
                push(
                    "response.output_item.added",
                    EventBody::Item {
                        output_index,
                        item: started,
                    },
                );
                push(
                    "response.function_call_arguments.delta",
                    EventBody::ArgumentsDelta {
                        item_id: id.clone(),
                        output_index,
                        delta: arguments.clone(),
                    },
                );
                push(
                    "response.function_call_arguments.done",
                    EventBody::ArgumentsDone {
                        item_id: id.clone(),
                        output_index,
                        arguments: arguments.clone(),
                        name: name.clone(),
                    },
                );
            }
            Item::Reasoning { id, content, .. } => {
                let started = Item::Reasoning {
                    id: id.clone(),
                    summary: Vec::new(),
                    content: Vec::new(),
                    status: "in_progress".into(),
                };
                push(
                    "response.output_item.added",
                    EventBody::Item {
                        output_index,
                        item: started,
                    },
                );
                for (part_index, part) in content.iter().enumerate() {
                    let content_index = part_index as u32;
                    push(
                        "response.reasoning_text.delta",
                        EventBody::ReasoningDelta {
                            item_id: id.clone(),
                            output_index,
                            content_index,
                            delta: part.text.clone(),
                        },
                    );
                    push(
                        "response.reasoning_text.done",
                        EventBody::ReasoningDone {
                            item_id: id.clone(),
                            output_index,
                            content_index,
                            text: part.text.clone(),
                        },
                    );
                }
            }
            // A response's output holds no call outputs.
            Item::FunctionCallOutput { .. } => continue,
        }
        push(
            "response.output_item.done",
            EventBody::Item {
                output_index,
                item: item.clone(),
            },
        );
    }
    let last = match object.status.as_str() {
        "incomplete" => "response.incomplete",
        // `cancelled` has no event of its own: the stream fails with it.
        "failed" | "cancelled" => "response.failed",
        _ => "response.completed",
    };
    push(
        last,
        EventBody::Response {
            response: Box::new(object.clone()),
        },
    );
    events
}

impl Service {
    /// `GET /v1/responses/{id}?stream=true`: the stored response's events
    /// after sequence number `starting_after` (all when `None`), once it
    /// has ended (waited for within `timeout`).
    pub async fn replay_response(
        &self,
        context: &RequestContext,
        id: &str,
        starting_after: Option<u64>,
        timeout: Duration,
    ) -> Result<Vec<ResponseEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let object = loop {
            let object = self.retrieve_response(context, id).await?;
            if !matches!(object.status.as_str(), "queued" | "in_progress") {
                break object;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Timeout {
                    after_secs: timeout.as_secs(),
                }
                .into());
            }
            tokio::time::sleep(WAIT_POLL).await;
        };
        let mut events = events_of(&object);
        if let Some(after) = starting_after {
            events.retain(|event| event.sequence_number > after);
        }
        Ok(events)
    }

    /// `POST /v1/responses/input_tokens`: the prompt tokens the turn
    /// `request` would bill, with the model's own template and tokenizer (a
    /// routed model's: the gateway's estimate); the chained conversation
    /// and `truncation` count as they would. Nothing is reserved or billed.
    pub async fn count_response_input_tokens(
        &self,
        context: &RequestContext,
        request: CreateResponseRequest,
    ) -> Result<InputTokenCount> {
        let count = |input_tokens| InputTokenCount {
            object: InputTokenCount::OBJECT.into(),
            input_tokens,
        };
        if request.input.is_none() && request.previous_response_id.is_none() {
            // Nothing to run, so nothing to check but the instructions:
            // their prompt alone, or nothing.
            let Some(instructions) = request.instructions.as_deref() else {
                return Ok(count(0));
            };
            let chat = api::ChatCompletionRequest {
                model: request.model.clone(),
                messages: super::convert::chat_messages(Some(instructions), &[]),
                ..api::ChatCompletionRequest::default()
            };
            return Ok(count(
                self.prompt_tokens(context, &request.model, &chat).await?,
            ));
        }
        request.validate()?;
        let mut items = request.input_items()?;
        Item::assign_ids(&mut items, |prefix| format!("{prefix}_count"));
        let history = match &request.previous_response_id {
            Some(previous) => self.history_of(context, previous).await?,
            None => Vec::new(),
        };
        api::check_call_ids(&history, &items)?;
        let chat = self
            .fitted_chat(context, &request, &history, &items)
            .await?;
        Ok(count(
            self.prompt_tokens(context, &request.model, &chat).await?,
        ))
    }

    /// The prompt tokens of `chat` on `model`: its own template and
    /// tokenizer, or the gateway's estimate for a routed model.
    async fn prompt_tokens(
        &self,
        context: &RequestContext,
        model: &str,
        chat: &api::ChatCompletionRequest,
    ) -> Result<u32> {
        let resolved = self.resolve(context.tenant.as_ref(), model)?;
        Ok(match resolved.direct() {
            Some(served) => {
                let prompt = local_chat::prompt(&served.engine, &resolved.model, chat).await?;
                u32::try_from(prompt.len()).unwrap_or(u32::MAX)
            }
            None => gateway::estimate_prompt_tokens(chat),
        })
    }
}

/// A `starting_after` query value, or a 400 naming it.
pub fn starting_after(text: Option<&str>) -> Result<Option<u64>> {
    text.map(|text| {
        text.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "starting_after",
                InvalidCode::InvalidType,
                format!("Invalid 'starting_after': expected a non-negative integer, got '{text}'."),
            )
            .into()
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_rises_by_one_and_ends_with_the_stored_object() {
        let mut object: ResponseObject = serde_json::from_value(serde_json::json!({
            "id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
            "model": "m", "output": [], "output_text": "", "parallel_tool_calls": true,
            "store": true, "background": false, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "truncation": "disabled", "metadata": {}
        }))
        .unwrap();
        object.output = vec![
            Item::assistant("msg_1", "Hello", "completed"),
            Item::FunctionCall {
                id: "fc_1".into(),
                call_id: "call_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
                status: "completed".into(),
            },
        ];
        let events = events_of(&object);
        let kinds: Vec<_> = events.iter().map(|event| event.kind).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert!(events
            .iter()
            .enumerate()
            .all(|(place, event)| event.sequence_number == place as u64));
        match &events.last().unwrap().body {
            EventBody::Response { response } => assert_eq!(**response, object),
            other => panic!("expected the response, got {other:?}"),
        }
    }
}
