//! `POST /v1/completions`, the legacy endpoint: one or several prompts
//! (text or token ids), `n` choices each, answered whole or streamed.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::{
    Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, FinishReason, PromptInput,
    Usage,
};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use engine::Tokenizer;

use crate::auth::Caller;
use crate::error::ServerError;
use crate::generation::{self, cached_of_prompts, collect, finite, token_text, Settings, TokenOut};
use crate::middleware::{RawBody, RequestId};
use crate::routes::{access, begin_charge, blocking, submit_or_release, with_timeout};
use crate::state::AppState;
use crate::stream::{sse_response, StreamFormat};

/// Creates a (legacy) completion.
pub async fn create_completion(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    request_id: Option<Extension<RequestId>>,
    RawBody(body): RawBody,
) -> Result<Response, ServerError> {
    let request: CompletionRequest = api::parse_request(&body)?;
    let model = access::resolve_model(&state, caller.as_ref(), &request.model)?.clone();
    let inputs: Vec<Result<Vec<u32>, String>> = request
        .prompt
        .inputs()
        .into_iter()
        .map(|input| match input {
            PromptInput::Tokens(tokens) => Ok(tokens.to_vec()),
            PromptInput::Text(text) => Err(text.to_owned()),
        })
        .collect();
    let engine = model.engine.clone();
    let prompts: Vec<Vec<u32>> = blocking(move || {
        inputs
            .into_iter()
            .map(|input| input.unwrap_or_else(|text| engine.encode_prompt(&text)))
            .collect()
    })
    .await?;
    let settings = settings(&request)?;
    let prompt_tokens = prompts.iter().fold(0u32, |sum, p| {
        sum.saturating_add(generation::saturate(p.len()))
    });
    let choices = (prompts.len() as u64).saturating_mul(u64::from(request.choice_count()));
    let per_choice = u64::from(settings.max_tokens.unwrap_or(1));
    let mut charge = begin_charge(
        &state,
        caller.as_ref(),
        request_id.as_ref(),
        &model.name,
        prompt_tokens,
        per_choice.saturating_mul(choices),
    )
    .await?;
    let generations = submit_or_release(
        &state,
        &model.engine,
        &prompts,
        request.choice_count(),
        &settings,
        "prompt",
        &mut charge,
    )
    .await?;
    let format = CompletionFormat {
        id: format!("cmpl-{}", crate::random_hex()),
        created: crate::unix_now(),
        model: model.name.clone(),
        include_usage: request.include_usage(),
        logprobs: settings.logprobs.is_some(),
        tokenizer: model.engine.tokenizer().clone(),
        offsets: Vec::new(),
    };
    if request.is_stream() {
        let n = request.choice_count();
        return Ok(sse_response(
            generations,
            format,
            (prompt_tokens, n),
            charge,
        ));
    }
    let progress = charge.as_mut();
    let n = request.choice_count();
    let answer = with_timeout(state.request_timeout(), async move {
        let mut progress = progress;
        let mut format = format;
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
            let index = index as u32;
            choices.push(CompletionChoice {
                index,
                logprobs: format.logprobs_of(index, &done.tokens),
                text: done.text,
                finish_reason: Some(done.finish_reason),
            });
        }
        let mut answer = format.completion(choices);
        answer.usage = Some(Usage::new(prompt_tokens, completion_tokens, cached_tokens));
        Ok(answer)
    })
    .await;
    if let Some(charge) = charge {
        let ended = answer.as_ref().ok().map(|answer| {
            let tokens = answer.usage.as_ref().map_or(0, |u| u.completion_tokens);
            (tokens, answer.choices.first().and_then(|c| c.finish_reason))
        });
        charge.conclude(ended).await;
    }
    Ok(Json(answer?).into_response())
}

fn settings(request: &CompletionRequest) -> Result<Settings, api::ApiError> {
    Ok(Settings {
        temperature: request.temperature,
        top_p: request.top_p,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        logit_bias: generation::logit_bias(request.logit_bias.as_ref())?,
        seed: request.seed,
        max_tokens: Some(request.max_output_tokens().max(1)),
        stop: request
            .stop_sequences()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        logprobs: request
            .logprobs
            .map(|k| k.clamp(0, api::MAX_COMPLETION_LOGPROBS) as usize),
    })
}

/// Legacy completion events: one `text_completion` object per delta,
/// `finish_reason` on the last of each choice, then the usage object.
struct CompletionFormat {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
    tokenizer: Arc<Tokenizer>,
    /// Per choice, the characters of text already returned.
    offsets: Vec<u32>,
}

impl CompletionFormat {
    fn completion(&self, choices: Vec<CompletionChoice>) -> Completion {
        Completion::new(self.id.clone(), self.created, self.model.clone(), choices)
    }

    /// The legacy parallel-array logprobs of `tokens`, continuing choice
    /// `index`'s character offsets.
    fn logprobs_of(&mut self, index: u32, tokens: &[TokenOut]) -> Option<CompletionLogprobs> {
        if !self.logprobs {
            return None;
        }
        let index = index as usize;
        if self.offsets.len() <= index {
            self.offsets.resize(index + 1, 0);
        }
        let mut out = CompletionLogprobs::default();
        for token in tokens {
            let Some(logprobs) = &token.logprobs else {
                continue;
            };
            let text = token_text(&self.tokenizer, token.id);
            out.text_offset.push(self.offsets[index]);
            self.offsets[index] =
                self.offsets[index].saturating_add(generation::saturate(text.chars().count()));
            out.tokens.push(text);
            out.token_logprobs
                .push(Some(finite(logprobs.chosen_logprob)));
            let top: BTreeMap<String, f32> = logprobs
                .top
                .iter()
                .map(|&(id, logprob)| (token_text(&self.tokenizer, id), finite(logprob)))
                .collect();
            out.top_logprobs.push(Some(top));
        }
        Some(out)
    }

    fn event(
        &mut self,
        index: u32,
        text: String,
        tokens: &[TokenOut],
        reason: Option<FinishReason>,
    ) -> String {
        let logprobs = self.logprobs_of(index, tokens);
        api::sse_data(&self.completion(vec![CompletionChoice {
            text,
            index,
            logprobs,
            finish_reason: reason,
        }]))
    }
}

impl StreamFormat for CompletionFormat {
    fn opening(&mut self, _index: u32) -> Option<String> {
        None
    }

    fn delta(&mut self, index: u32, text: String, tokens: Vec<TokenOut>) -> String {
        self.event(index, text, &tokens, None)
    }

    fn finish(
        &mut self,
        index: u32,
        text: String,
        tokens: Vec<TokenOut>,
        reason: FinishReason,
    ) -> String {
        self.event(index, text, &tokens, Some(reason))
    }

    fn usage(&mut self, usage: Usage) -> Option<String> {
        self.include_usage.then(|| {
            let mut event = self.completion(Vec::new());
            event.usage = Some(usage);
            api::sse_data(&event)
        })
    }
}
