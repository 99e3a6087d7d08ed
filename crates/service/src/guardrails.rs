//! Project guardrails: moderation a project requires of its requests, on
//! top of the endpoints' own rules.
//!
//! - **Input**: every message of a chat request (and so of the Responses
//!   and Messages APIs, translated to chat), every prompt of a completion
//!   (token ids read as the text they stand for) and every input of an
//!   embeddings request (text only: token ids cannot be checked and are
//!   refused) is classified before anything is reserved; one flagged
//!   refuses the request with a 400 `content_policy_violation` naming it,
//!   billed nothing.
//! - **Output**: every chat answer (local or routed, whole or streamed,
//!   and so the Responses and Messages APIs') is generated whole, checked
//!   and only then answered (`Service::chat` hands back a whole answer; a
//!   stream replays it: [`replay`]), so nothing unchecked reaches the
//!   client, at the cost of streaming's first-token latency. A flagged
//!   choice has its content withheld and ends with `finish_reason:
//!   "content_filter"`, billed for what was generated (the charge is
//!   settled by then).
//!
//! Both run the local classifier (`crate::moderation`), unmetered: the
//! request they guard is metered itself. A project's setting is read from
//! the store at most every [`GUARDRAIL_CACHE_TTL`] per process, and at
//! once in the process that changed it ([`Service::set_guardrails`]).
//! Changing it is audited as `project.guardrails_changed`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use api::{
    ApiError, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChunkChoice, ChunkDelta,
    Completion, CompletionRequest, EmbeddingItem, EmbeddingRequest, FinishReason,
    FunctionCallDelta, InvalidCode, PromptInput, ToolCallDelta,
};
use store::{NewAuditEntry, Store, StoreError};

pub use store::Guardrails;

use crate::{RequestContext, Result, Service};

/// How long a project's guardrails are trusted once read.
pub const GUARDRAIL_CACHE_TTL: Duration = Duration::from_secs(5);

/// Projects' guardrails as last read, by (organisation, project).
#[derive(Default)]
pub struct GuardrailCache {
    read: Mutex<HashMap<(String, String), (Instant, Guardrails)>>,
}

impl GuardrailCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Instant, Guardrails)>> {
        // A plain map: a panic elsewhere cannot leave it inconsistent.
        self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sets project `project_id`'s guardrails and records
/// `project.guardrails_changed` by `actor`, with both settings.
pub async fn set(
    store: &Store,
    org_id: &str,
    project_id: &str,
    guardrails: Guardrails,
    actor: &str,
) -> std::result::Result<Guardrails, StoreError> {
    let before = store.project_guardrails(org_id, project_id).await?;
    store
        .set_project_guardrails(org_id, project_id, guardrails)
        .await?;
    store
        .append_audit(&NewAuditEntry {
            org_id: org_id.to_owned(),
            actor: actor.to_owned(),
            action: "project.guardrails_changed".to_owned(),
            target: project_id.to_owned(),
            before: serde_json::to_value(before).ok(),
            after: serde_json::to_value(guardrails).ok(),
        })
        .await?;
    Ok(guardrails)
}

/// The text of every message of a chat request, in order.
pub fn chat_texts(request: &ChatCompletionRequest) -> Vec<String> {
    request
        .messages
        .iter()
        .map(|m| m.content().map(|c| c.text()).unwrap_or_default())
        .collect()
}

/// The text of every prompt of a completion request, token-id prompts
/// read with `decode`.
pub fn completion_texts(
    request: &CompletionRequest,
    decode: impl Fn(&[u32]) -> String,
) -> Vec<String> {
    request
        .prompt
        .inputs()
        .iter()
        .map(|input| match input {
            PromptInput::Text(text) => (*text).to_owned(),
            PromptInput::Tokens(ids) => decode(ids),
        })
        .collect()
}

/// The text of every input of an embeddings request; token-id inputs
/// cannot be read by the classifier, so a project that moderates input
/// refuses them (400 naming `input`).
pub fn embedding_texts(request: &EmbeddingRequest) -> Result<Vec<String>> {
    request
        .input
        .items()
        .iter()
        .map(|item| match item {
            EmbeddingItem::Text(text) => Ok((*text).to_owned()),
            EmbeddingItem::Tokens(_) => Err(ApiError::invalid(
                "input",
                InvalidCode::InvalidValue,
                "This project moderates its inputs, which must then be text: token ids \
                 cannot be checked.",
            )
            .into()),
        })
        .collect()
}

/// A whole (checked) answer as the chunks a stream of it would carry: per
/// choice an opening chunk with its content, reasoning and tool calls and
/// one with its finish reason, then the usage chunk when `include_usage`.
pub fn replay(answer: &ChatCompletion, include_usage: bool) -> Vec<ChatCompletionChunk> {
    let chunk = |choices| {
        ChatCompletionChunk::new(
            answer.id.clone(),
            answer.created,
            answer.model.clone(),
            choices,
            include_usage,
        )
    };
    let mut chunks = Vec::new();
    for choice in &answer.choices {
        let mut delta = ChunkDelta::opening();
        delta.content = choice.message.content.clone().or(Some(String::new()));
        delta.reasoning_content = choice.message.reasoning_content.clone();
        delta.reasoning = choice.message.reasoning.clone();
        delta.tool_calls = choice.message.tool_calls.as_ref().map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, call)| ToolCallDelta {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    id: Some(call.id.clone()),
                    kind: Some(call.kind),
                    function: Some(FunctionCallDelta {
                        name: Some(call.function.name.clone()),
                        arguments: Some(call.function.arguments.clone()),
                    }),
                })
                .collect()
        });
        chunks.push(chunk(vec![ChunkChoice {
            index: choice.index,
            delta,
            logprobs: choice.logprobs.clone(),
            finish_reason: None,
        }]));
        chunks.push(chunk(vec![ChunkChoice {
            index: choice.index,
            delta: ChunkDelta::default(),
            logprobs: None,
            finish_reason: Some(choice.finish_reason),
        }]));
    }
    if let (true, Some(usage)) = (include_usage, answer.usage.clone()) {
        chunks.push(ChatCompletionChunk::usage_only(
            answer.id.clone(),
            answer.created,
            answer.model.clone(),
            usage,
        ));
    }
    chunks
}

/// A whole legacy completion as the events of its stream: each choice's
/// text with its `finish_reason`, then (`include_usage`) the usage alone.
pub fn replay_completion(answer: &Completion, include_usage: bool) -> Vec<Completion> {
    let event = |choices, usage| Completion {
        choices,
        usage,
        ..answer.clone()
    };
    let mut events: Vec<Completion> = answer
        .choices
        .iter()
        .map(|choice| event(vec![choice.clone()], None))
        .collect();
    if include_usage {
        events.push(event(Vec::new(), answer.usage.clone()));
    }
    events
}

impl Service {
    /// Whether `context`'s project moderates answers (then they are
    /// generated whole and checked before anything is sent).
    pub async fn moderates_output(&self, context: &RequestContext) -> bool {
        self.guardrails_for(context).await.output
    }

    /// [`Service::filter_output`] for a legacy completion: every choice
    /// whose text (the echoed prompt included: what the client would see)
    /// is flagged is withheld, text empty and `finish_reason`
    /// `content_filter`, billed for what was generated.
    pub async fn filter_completion(
        &self,
        context: &RequestContext,
        mut answer: Completion,
    ) -> Result<Completion> {
        if !self.moderates_output(context).await {
            return Ok(answer);
        }
        let (index, texts): (Vec<usize>, Vec<String>) = answer
            .choices
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.text.trim().is_empty())
            .map(|(i, c)| (i, c.text.clone()))
            .unzip();
        if texts.is_empty() {
            return Ok(answer);
        }
        let results = self.classify(texts).await?;
        for (i, result) in index.into_iter().zip(results) {
            if result.flagged {
                let choice = &mut answer.choices[i];
                choice.text = String::new();
                choice.logprobs = None;
                choice.finish_reason = Some(FinishReason::ContentFilter);
            }
        }
        Ok(answer)
    }

    /// [`set`], and this process uses the new setting at once.
    pub async fn set_guardrails(
        &self,
        store: &Store,
        org_id: &str,
        project_id: &str,
        guardrails: Guardrails,
        actor: &str,
    ) -> std::result::Result<Guardrails, StoreError> {
        let set = set(store, org_id, project_id, guardrails, actor).await?;
        self.guardrails.map().insert(
            (org_id.to_owned(), project_id.to_owned()),
            (Instant::now(), set),
        );
        Ok(set)
    }

    /// The guardrails of `context`'s project (none when unmetered, or when
    /// the project is not a row of the store).
    pub async fn guardrails_for(&self, context: &RequestContext) -> Guardrails {
        let (Some(meter), Some(tenant)) = (self.meter(), &context.tenant) else {
            return Guardrails::default();
        };
        let key = (tenant.org_id.clone(), tenant.project_id.clone());
        let cached = self.guardrails.map().get(&key).copied();
        if let Some((at, guardrails)) = cached {
            if at.elapsed() < GUARDRAIL_CACHE_TTL {
                return guardrails;
            }
        }
        let read = meter.store().project_guardrails(&key.0, &key.1).await;
        let guardrails = match read {
            Ok(guardrails) => guardrails,
            Err(err) if err.kind() == store::ErrorKind::NotFound => Guardrails::default(),
            Err(err) => {
                // Fail closed to what was last known, else open (logged).
                tracing::warn!(error = %err, project_id = %key.1, "cannot read the project's guardrails");
                return cached.map_or_else(Guardrails::default, |(_, g)| g);
            }
        };
        self.guardrails
            .map()
            .insert(key, (Instant::now(), guardrails));
        guardrails
    }

    /// Refuses `texts` (a request's messages) with a 400
    /// `content_policy_violation` naming the first flagged one, when
    /// `context`'s project moderates input.
    pub async fn check_input(&self, context: &RequestContext, texts: Vec<String>) -> Result<()> {
        self.check_input_at(context, texts, "messages").await
    }

    /// [`Service::check_input`] for inputs named `param[i]` (`prompt`,
    /// `input`).
    pub async fn check_input_at(
        &self,
        context: &RequestContext,
        texts: Vec<String>,
        param: &str,
    ) -> Result<()> {
        if !self.guardrails_for(context).await.input {
            return Ok(());
        }
        let (index, texts): (Vec<usize>, Vec<String>) = texts
            .into_iter()
            .enumerate()
            .filter(|(_, t)| !t.trim().is_empty())
            .unzip();
        if texts.is_empty() {
            return Ok(());
        }
        let results = self.classify(texts).await?;
        match results.iter().position(|r| r.flagged) {
            None => Ok(()),
            Some(at) => {
                let flagged: Vec<&str> = results[at]
                    .categories
                    .iter()
                    .filter(|(_, &on)| on)
                    .map(|(c, _)| c.as_str())
                    .collect();
                Err(ApiError::invalid(
                    format!("{param}[{}]", index[at]),
                    InvalidCode::ContentPolicyViolation,
                    format!(
                        "This project moderates its requests, and {param}[{}] was flagged \
                         ({}). Nothing was run or billed.",
                        index[at],
                        flagged.join(", ")
                    ),
                )
                .into())
            }
        }
    }

    /// Withholds every choice of `answer` whose content is flagged (its
    /// `finish_reason` becomes `content_filter`), when `context`'s project
    /// moderates output. The answer was billed already, for what was
    /// generated.
    pub async fn filter_output(
        &self,
        context: &RequestContext,
        mut answer: ChatCompletion,
    ) -> Result<ChatCompletion> {
        if !self.guardrails_for(context).await.output {
            return Ok(answer);
        }
        let (index, texts): (Vec<usize>, Vec<String>) = answer
            .choices
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.message
                    .content
                    .as_ref()
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| (i, t.clone()))
            })
            .unzip();
        if texts.is_empty() {
            return Ok(answer);
        }
        let results = self.classify(texts).await?;
        for (i, result) in index.into_iter().zip(results) {
            if result.flagged {
                let choice = &mut answer.choices[i];
                choice.message.content = None;
                choice.message.reasoning_content = None;
                choice.message.reasoning = None;
                choice.finish_reason = FinishReason::ContentFilter;
            }
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{ChatChoice, ChatCompletionMessage, Usage};

    fn answer(content: Option<&str>, reason: FinishReason) -> ChatCompletion {
        let mut message = ChatCompletionMessage::assistant("");
        message.content = content.map(str::to_owned);
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 5,
            total_tokens: 8,
            prompt_tokens_details: None,
            completion_tokens_details: None,
        };
        let choice = ChatChoice {
            index: 0,
            message,
            logprobs: None,
            finish_reason: reason,
        };
        ChatCompletion::new("chatcmpl-1", 7, "m", vec![choice], usage)
    }

    #[test]
    fn a_withheld_answer_replays_as_no_text_and_content_filter() {
        let chunks = replay(&answer(None, FinishReason::ContentFilter), true);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some(""));
        assert_eq!(chunks[0].choices[0].finish_reason, None);
        assert_eq!(
            chunks[1].choices[0].finish_reason,
            Some(FinishReason::ContentFilter)
        );
        assert!(chunks[2].choices.is_empty());
        assert_eq!(
            chunks[2].usage.as_ref().map(|u| u.completion_tokens),
            Some(5)
        );
        assert!(chunks
            .iter()
            .all(|c| c.id == "chatcmpl-1" && c.model == "m"));
    }

    #[test]
    fn a_passed_answer_replays_its_text_without_usage_unless_asked() {
        let chunks = replay(&answer(Some("Hello."), FinishReason::Stop), false);
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[0].choices[0].delta.content.as_deref(),
            Some("Hello.")
        );
        assert_eq!(chunks[1].choices[0].finish_reason, Some(FinishReason::Stop));
    }
}
