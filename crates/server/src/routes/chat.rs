//! `POST /v1/chat/completions`: the model (or alias) is resolved through
//! the gateway. A model served by exactly one local engine takes the direct
//! path: render the conversation with the model's own template (off the
//! executor), start one generation per choice, and answer whole or as a
//! stream of chunks (logprobs, `n`, exact prompt counts). Every other model
//! is routed by the gateway (failover, retries, fallbacks, breakers): the
//! reservation is sized with an estimate of the prompt, and the charge is
//! settled with the upstream's reported usage, for the backend and model
//! that served.

use std::sync::Arc;

use api::{
    ApiError, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionMessage,
    ChatCompletionRequest, ChatMessage, ChoiceLogprobs, ChunkChoice, ChunkDelta, FinishReason,
    InvalidCode, Usage,
};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use engine::Tokenizer;

use crate::auth::Caller;
use crate::error::{from_engine, ServerError};
use crate::generation::{self, cached_of_prompts, chat_logprobs, collect, Settings, TokenOut};
use crate::middleware::{RawBody, RequestId};
use crate::routes::{access, begin_charge, blocking, submit_or_release, with_timeout};
use crate::state::{AppState, ServedModel};
use crate::stream::{gateway_sse_response, sse_response, StreamFormat};

/// The header naming a conversation, whose requests the gateway sends to
/// the backend that served it last (its prefix cache is warm there).
pub const CONVERSATION_HEADER: &str = "x-parlance-conversation";

/// Completion tokens per choice reserved for a remote request that sets no
/// `max_tokens` (the upstream's context length is not known here).
pub const REMOTE_DEFAULT_MAX_TOKENS: u64 = 4096;

/// Creates a chat completion.
pub async fn create_chat_completion(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ServerError> {
    let request: ChatCompletionRequest = api::parse_request(&body)?;
    let not_found = || ApiError::ModelNotFound {
        model: request.model.clone(),
    };
    // One snapshot of the routing for the whole request (a reload may
    // replace it meanwhile).
    let routing = state.routing();
    let served = routing
        .gateway
        .resolve(&request.model)
        .ok_or_else(not_found)?
        .to_owned();
    if !access::may_use(caller.as_ref(), &request.model)
        && !access::may_use(caller.as_ref(), &served)
    {
        return Err(not_found().into());
    }
    let direct = routing
        .direct
        .get(&served)
        .and_then(|engine| state.models().find(|m| &m.name == engine))
        .cloned();
    match direct {
        Some(model) => local(state, caller, request_id, request, model, served).await,
        None => {
            let gateway = routing.gateway.clone();
            let options = gateway::RouteOptions {
                sticky_key: sticky_key(caller.as_ref(), &headers, &request),
            };
            let route = Route {
                gateway,
                options,
                model: served,
            };
            routed(state, route, caller, request_id, request).await
        }
    }
}

/// The sticky key of a routed request: the conversation header, else the
/// request's `user`, scoped by organisation and by kind so that no two
/// collide.
fn sticky_key(
    caller: Option<&Extension<Caller>>,
    headers: &HeaderMap,
    request: &ChatCompletionRequest,
) -> Option<String> {
    let org = match caller {
        Some(Extension(Caller::Tenant(tenant))) => tenant.org_id.as_str(),
        _ => "",
    };
    let conversation = headers
        .get(CONVERSATION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty());
    match (conversation, request.user.as_deref()) {
        (Some(conversation), _) => Some(format!("{org}/conversation:{conversation}")),
        (None, Some(user)) if !user.is_empty() => Some(format!("{org}/user:{user}")),
        _ => None,
    }
}

/// Where a routed request goes: the gateway in force, how, and the
/// gateway model asked for.
struct Route {
    gateway: gateway::Gateway,
    options: gateway::RouteOptions,
    model: String,
}

/// A model the gateway routes (remote backends, several backends or
/// fallbacks).
async fn routed(
    state: AppState,
    route: Route,
    caller: Option<Extension<Caller>>,
    request_id: Option<Extension<RequestId>>,
    request: ChatCompletionRequest,
) -> Result<Response, ServerError> {
    let Route {
        gateway,
        options,
        model,
    } = route;
    let prompt_estimate = gateway::estimate_prompt_tokens(&request);
    let per_choice = request
        .max_output_tokens()
        .map_or(REMOTE_DEFAULT_MAX_TOKENS, u64::from);
    let mut charge = begin_charge(
        &state,
        caller.as_ref(),
        request_id.as_ref(),
        &model,
        prompt_estimate,
        per_choice.saturating_mul(u64::from(request.choice_count())),
    )
    .await?;
    let stream = request.is_stream();
    let reply = if stream {
        gateway.chat(request, options).await.map_err(ApiError::from)
    } else {
        with_timeout(state.request_timeout(), async move {
            gateway.chat(request, options).await.map_err(ApiError::from)
        })
        .await
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(err) => {
            // Nothing was served: nothing is billed.
            if let Some(charge) = charge.take() {
                charge.release().await;
            }
            return Err(err.into());
        }
    };
    match reply {
        gateway::GatewayReply::Stream(stream, served) => {
            if let Some(charge) = charge.as_mut() {
                charge.served_by(&served.model, &served.backend).await;
                charge.label_reservation();
            }
            Ok(gateway_sse_response(stream, charge))
        }
        gateway::GatewayReply::Whole(answer, served) => {
            if let Some(mut charge) = charge {
                charge.served_by(&served.model, &served.backend).await;
                let (prompt, completion, cached) = match &answer.usage {
                    Some(usage) => (
                        usage.prompt_tokens,
                        usage.completion_tokens,
                        usage
                            .prompt_tokens_details
                            .as_ref()
                            .map_or(0, |d| d.cached_tokens),
                    ),
                    None => (prompt_estimate, estimate_completion(&answer), 0),
                };
                charge.set_prompt_tokens(prompt);
                charge.set_cached_tokens(cached);
                let reason = answer.choices.first().map(|c| c.finish_reason);
                // Written on the meter's task (awaited at shutdown), so the
                // answer does not wait for the ledger.
                charge.finish_detached(crate::metering::Outcome::Ok, completion, reason);
            }
            Ok(Json(answer).into_response())
        }
    }
}

/// Completion tokens of an answer whose upstream gave no usage: its text
/// at four characters a token.
fn estimate_completion(answer: &ChatCompletion) -> u32 {
    let chars: usize = answer
        .choices
        .iter()
        .filter_map(|c| c.message.content.as_ref())
        .map(|text| text.chars().count())
        .sum();
    generation::saturate(chars.div_ceil(4))
}

/// A model served by exactly one local engine: the direct engine path,
/// answering as `served` (the gateway's model name).
async fn local(
    state: AppState,
    caller: Option<Extension<Caller>>,
    request_id: Option<Extension<RequestId>>,
    request: ChatCompletionRequest,
    mut model: ServedModel,
    served: String,
) -> Result<Response, ServerError> {
    model.name = served;
    if !model.engine.info().has_chat_template {
        return Err(ApiError::invalid(
            "messages",
            InvalidCode::InvalidValue,
            format!(
                "The model `{}` has no chat template; use /v1/completions instead.",
                model.name
            ),
        )
        .into());
    }
    let messages = template_messages(&request.messages);
    let engine = model.engine.clone();
    let prompt = blocking(move || {
        let text = engine.render_chat(&messages, true)?;
        Ok(engine.encode_prompt(&text))
    })
    .await?
    .map_err(|err| from_engine(err, "messages"))?;
    let settings = settings(&request)?;
    let prompt_tokens = generation::saturate(prompt.len());
    let per_choice = settings.max_tokens.map_or_else(
        || {
            model
                .engine
                .info()
                .context_length
                .saturating_sub(prompt.len()) as u64
        },
        u64::from,
    );
    let mut charge = begin_charge(
        &state,
        caller.as_ref(),
        request_id.as_ref(),
        &model.name,
        prompt_tokens,
        per_choice.saturating_mul(u64::from(request.choice_count())),
    )
    .await?;
    let generations = submit_or_release(
        &state,
        &model.engine,
        &[prompt],
        request.choice_count(),
        &settings,
        "messages",
        &mut charge,
    )
    .await?;
    let tokenizer = model.engine.tokenizer().clone();
    let id = format!("chatcmpl-{}", crate::random_hex());
    let created = crate::unix_now();
    if request.is_stream() {
        let format = ChatFormat {
            id,
            created,
            model: model.name.clone(),
            include_usage: request.include_usage(),
            logprobs: settings.logprobs.is_some(),
            tokenizer,
        };
        let n = request.choice_count();
        return Ok(sse_response(
            generations,
            format,
            (prompt_tokens, n),
            charge,
        ));
    }
    let logprobs = settings.logprobs.is_some();
    let progress = charge.as_mut();
    let n = request.choice_count();
    let answer = with_timeout(state.request_timeout(), async move {
        let mut progress = progress;
        let mut choices = Vec::with_capacity(generations.len());
        let mut completion_tokens = 0u32;
        let mut cached_tokens = 0u32;
        for (index, generation) in generations.into_iter().enumerate() {
            let done = collect(generation).await?;
            completion_tokens = completion_tokens.saturating_add(done.completion_tokens);
            cached_tokens = cached_tokens.saturating_add(cached_of_prompts(
                index,
                n,
                done.cached_prompt_tokens,
            ));
            if let Some(charge) = progress.as_deref_mut() {
                charge.set_cached_tokens(cached_tokens);
                charge.set_completion_tokens(completion_tokens);
            }
            choices.push(ChatChoice {
                index: index as u32,
                logprobs: logprobs.then(|| choice_logprobs(&tokenizer, &done.tokens)),
                message: ChatCompletionMessage::assistant(done.text),
                finish_reason: done.finish_reason,
            });
        }
        let usage = Usage::new(prompt_tokens, completion_tokens, cached_tokens);
        Ok(ChatCompletion::new(id, created, model.name, choices, usage))
    })
    .await;
    if let Some(charge) = charge {
        let ended = answer.as_ref().ok().map(|answer| {
            let tokens = answer.usage.as_ref().map_or(0, |u| u.completion_tokens);
            (tokens, answer.choices.first().map(|c| c.finish_reason))
        });
        charge.conclude(ended).await;
    }
    Ok(Json(answer?).into_response())
}

/// The request's messages as the chat template takes them: `developer`
/// becomes `system` (templates know only the older name); array contents
/// are joined.
pub(crate) fn template_messages(messages: &[ChatMessage]) -> Vec<engine::ChatMessage> {
    messages
        .iter()
        .map(|message| {
            let role = match message {
                ChatMessage::Developer { .. } => "system",
                other => other.role(),
            };
            let content = message.content().map(|c| c.text()).unwrap_or_default();
            engine::ChatMessage::new(role, content)
        })
        .collect()
}

pub(crate) fn settings(request: &ChatCompletionRequest) -> Result<Settings, ApiError> {
    let logprobs = (request.logprobs == Some(true)).then(|| {
        request
            .top_logprobs
            .unwrap_or(0)
            .clamp(0, api::MAX_TOP_LOGPROBS) as usize
    });
    Ok(Settings {
        temperature: request.temperature,
        top_p: request.top_p,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        logit_bias: generation::logit_bias(request.logit_bias.as_ref())?,
        seed: request.seed,
        max_tokens: request.max_output_tokens(),
        stop: request
            .stop_sequences()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        logprobs,
    })
}

fn choice_logprobs(tokenizer: &Tokenizer, tokens: &[TokenOut]) -> ChoiceLogprobs {
    ChoiceLogprobs {
        content: Some(chat_logprobs(tokenizer, tokens)),
        refusal: None,
    }
}

/// Chat chunks: an opening `role: assistant` delta per choice, text
/// deltas, one finishing chunk per choice, and the usage chunk.
struct ChatFormat {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
    tokenizer: Arc<Tokenizer>,
}

impl ChatFormat {
    fn chunk(&self, choice: ChunkChoice) -> String {
        api::sse_data(&ChatCompletionChunk::new(
            self.id.clone(),
            self.created,
            self.model.clone(),
            vec![choice],
            self.include_usage,
        ))
    }

    fn logprobs_of(&self, tokens: &[TokenOut]) -> Option<ChoiceLogprobs> {
        self.logprobs
            .then(|| choice_logprobs(&self.tokenizer, tokens))
    }
}

impl StreamFormat for ChatFormat {
    fn opening(&mut self, index: u32) -> Option<String> {
        Some(self.chunk(ChunkChoice {
            index,
            delta: ChunkDelta::opening(),
            logprobs: None,
            finish_reason: None,
        }))
    }

    fn delta(&mut self, index: u32, text: String, tokens: Vec<TokenOut>) -> String {
        self.chunk(ChunkChoice {
            index,
            delta: ChunkDelta::text(text),
            logprobs: self.logprobs_of(&tokens),
            finish_reason: None,
        })
    }

    fn finish(
        &mut self,
        index: u32,
        text: String,
        tokens: Vec<TokenOut>,
        reason: FinishReason,
    ) -> String {
        let delta = if text.is_empty() {
            ChunkDelta::default()
        } else {
            ChunkDelta::text(text)
        };
        let logprobs = if tokens.is_empty() {
            None
        } else {
            self.logprobs_of(&tokens)
        };
        self.chunk(ChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason: Some(reason),
        })
    }

    fn usage(&mut self, usage: Usage) -> Option<String> {
        self.include_usage.then(|| {
            api::sse_data(&ChatCompletionChunk::usage_only(
                self.id.clone(),
                self.created,
                self.model.clone(),
                usage,
            ))
        })
    }
}
