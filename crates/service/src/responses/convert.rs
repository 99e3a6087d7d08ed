//! A Responses request as the chat request the service runs (its
//! instructions, the chained conversation, this turn's items, tools,
//! `tool_choice` and `text.format` on chat's own types), and the response
//! object it answers with.

use api::{
    ChatCompletionRequest, ChatMessage, CreateResponseRequest, FunctionCall, FunctionDefinition,
    FunctionName, Item, MessageContent, NamedToolChoice, ResponseObject, ResponseToolChoice,
    TextConfig, Tool, ToolCall, ToolChoice, ToolChoiceMode, ToolType,
};
use serde_json::Value;

use crate::Result;

/// The chat messages of `items`: messages by role, a model's function calls
/// as its assistant turn's `tool_calls`, their outputs as `tool` messages.
pub fn chat_messages(instructions: Option<&str>, items: &[Item]) -> Vec<ChatMessage> {
    let mut messages = Vec::new();
    if let Some(instructions) = instructions {
        messages.push(ChatMessage::System {
            content: instructions.into(),
            name: None,
        });
    }
    for item in items {
        match item {
            Item::Message { role, content, .. } => {
                let text = MessageContent::Text(api::content_text(content));
                messages.push(match role.as_str() {
                    "assistant" => ChatMessage::Assistant {
                        content: Some(text),
                        name: None,
                        refusal: None,
                        tool_calls: None,
                    },
                    "system" => ChatMessage::System {
                        content: text,
                        name: None,
                    },
                    "developer" => ChatMessage::Developer {
                        content: text,
                        name: None,
                    },
                    _ => ChatMessage::User {
                        content: text,
                        name: None,
                    },
                });
            }
            Item::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => {
                let call = ToolCall {
                    id: call_id.clone(),
                    kind: ToolType::Function,
                    function: FunctionCall {
                        name: name.clone(),
                        arguments: arguments.clone(),
                    },
                };
                // Calls right after the model's text (or other calls) are
                // the same assistant turn.
                if let Some(ChatMessage::Assistant { tool_calls, .. }) = messages.last_mut() {
                    tool_calls.get_or_insert_with(Vec::new).push(call);
                } else {
                    messages.push(ChatMessage::Assistant {
                        content: None,
                        name: None,
                        refusal: None,
                        tool_calls: Some(vec![call]),
                    });
                }
            }
            Item::FunctionCallOutput {
                call_id, output, ..
            } => messages.push(ChatMessage::Tool {
                content: MessageContent::Text(output.clone()),
                tool_call_id: call_id.clone(),
            }),
            // Earlier reasoning is not shown to the model again.
            Item::Reasoning { .. } => {}
        }
    }
    messages
}

/// The chat request of a Responses turn whose conversation so far is
/// `history` (a chained turn's) and whose new items are `items`.
pub fn chat_request(
    request: &CreateResponseRequest,
    history: &[Item],
    items: &[Item],
) -> Result<ChatCompletionRequest> {
    let mut all = history.to_vec();
    all.extend_from_slice(items);
    let tools = request.tools.as_ref().map(|tools| {
        tools
            .iter()
            .map(|tool| Tool {
                kind: ToolType::Function,
                function: FunctionDefinition {
                    name: tool.name.clone().unwrap_or_default(),
                    description: tool.description.clone(),
                    parameters: tool.parameters.clone(),
                    strict: tool.strict,
                },
            })
            .collect()
    });
    let tool_choice = request.tool_choice()?.map(|choice| match choice {
        ResponseToolChoice::None => ToolChoice::Mode(ToolChoiceMode::None),
        ResponseToolChoice::Auto => ToolChoice::Mode(ToolChoiceMode::Auto),
        ResponseToolChoice::Required => ToolChoice::Mode(ToolChoiceMode::Required),
        ResponseToolChoice::Function(name) => ToolChoice::Named(NamedToolChoice {
            kind: ToolType::Function,
            function: FunctionName { name },
        }),
    });
    let chat = ChatCompletionRequest {
        model: request.model.clone(),
        messages: chat_messages(request.instructions.as_deref(), &all),
        temperature: request.temperature,
        top_p: request.top_p,
        max_completion_tokens: request.max_output_tokens,
        // A streamed turn streams from a routed model too.
        stream: request.is_stream().then_some(true),
        logprobs: request.wants_logprobs().then_some(true),
        top_logprobs: request
            .wants_logprobs()
            .then_some(request.top_logprobs.unwrap_or(0)),
        response_format: request
            .text
            .as_ref()
            .and_then(|text| text.format.as_ref())
            .map(api::TextFormat::to_chat),
        tools,
        tool_choice,
        parallel_tool_calls: request.parallel_tool_calls,
        user: request.user.clone(),
        seed: request.seed,
        reasoning_effort: request
            .reasoning
            .as_ref()
            .and_then(|reasoning| reasoning.effort.clone()),
        ..ChatCompletionRequest::default()
    };
    if let Err(api::ApiError::InvalidRequest { message, .. }) = chat.enable_thinking() {
        let message = message.replace("reasoning_effort", "reasoning.effort");
        return Err(api::ApiError::invalid(
            "reasoning.effort",
            api::InvalidCode::InvalidValue,
            message,
        )
        .into());
    }
    // The rules every API with tools shares (tool turns, schemas, names).
    chat.validate()?;
    Ok(chat)
}

/// The response object of `request` as it starts (`status`, no output).
pub fn base_object(
    id: &str,
    request: &CreateResponseRequest,
    model: &str,
    status: &str,
) -> ResponseObject {
    ResponseObject {
        id: id.to_owned(),
        object: ResponseObject::OBJECT.to_owned(),
        created_at: crate::unix_now(),
        status: status.to_owned(),
        error: None,
        incomplete_details: None,
        instructions: request.instructions.clone(),
        max_output_tokens: request.max_output_tokens,
        model: model.to_owned(),
        output: Vec::new(),
        output_text: String::new(),
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        previous_response_id: request.previous_response_id.clone(),
        store: request.is_stored(),
        background: request.is_background(),
        temperature: request.temperature.unwrap_or(1.0),
        text: request.text.clone().unwrap_or(TextConfig {
            format: Some(api::TextFormat::Text),
        }),
        tool_choice: request
            .tool_choice
            .clone()
            .unwrap_or_else(|| Value::String("auto".into())),
        tools: request
            .tools
            .iter()
            .flatten()
            .map(|tool| {
                let mut value = serde_json::to_value(tool).unwrap_or(Value::Null);
                if let Value::Object(object) = &mut value {
                    object
                        .entry("strict")
                        .or_insert(Value::Bool(tool.strict.unwrap_or(false)));
                    object
                        .entry("parameters")
                        .or_insert_with(|| serde_json::json!({}));
                    object.entry("description").or_insert(Value::Null);
                }
                value
            })
            .collect(),
        top_p: request.top_p.unwrap_or(1.0),
        truncation: request.truncation.unwrap_or_default(),
        usage: None,
        user: request.user.clone(),
        metadata: request.metadata.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_join_the_assistant_turn_and_outputs_become_tool_messages() {
        let items = vec![
            Item::user_text("weather?"),
            Item::assistant("msg_1", "Let me look.", "completed"),
            Item::FunctionCall {
                id: "fc_1".into(),
                call_id: "call_1".into(),
                name: "weather".into(),
                arguments: "{}".into(),
                status: "completed".into(),
            },
            Item::FunctionCallOutput {
                id: "fco_1".into(),
                call_id: "call_1".into(),
                output: "sunny".into(),
                status: "completed".into(),
            },
        ];
        let messages = chat_messages(Some("be brief"), &items);
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].role(), "system");
        match &messages[2] {
            ChatMessage::Assistant {
                content,
                tool_calls,
                ..
            } => {
                assert_eq!(content.as_ref().unwrap().text(), "Let me look.");
                assert_eq!(tool_calls.as_ref().unwrap()[0].id, "call_1");
            }
            other => panic!("expected the assistant turn, got {other:?}"),
        }
        assert!(
            matches!(&messages[3], ChatMessage::Tool { tool_call_id, .. } if tool_call_id == "call_1")
        );
    }
}
