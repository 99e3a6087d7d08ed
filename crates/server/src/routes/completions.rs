//! `POST /v1/completions`, the legacy endpoint: one or several prompts
//! (text or token ids), `n` choices each, answered whole or streamed. The
//! model (or alias) is resolved like every other endpoint's, and must have
//! a local engine; generation takes the service's one local path. Under a
//! project's output guardrails the answer is checked whole before it is
//! sent.

use api::CompletionRequest;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use service::generation::completion::{self, CompletionChunks};
use service::LocalRequest;

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;
use crate::stream::{sse_frames, sse_response};

/// Creates a (legacy) completion.
pub async fn create_completion(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Response, ServerError> {
    let request: CompletionRequest = api::parse_request(&body)?;
    let service = state.service();
    let resolved = service.resolve(context.tenant(), &request.model)?;
    let model = resolved.engine()?;
    completion::check_supported(&request, &resolved.model)?;
    let prompts = completion::prompts(&model.engine, &request).await?;
    let tokenizer = model.engine.tokenizer().clone();
    let texts = service::guardrails::completion_texts(&request, |ids| tokenizer.decode(ids, true));
    service.check_input_at(&context.0, texts, "prompt").await?;
    let settings = completion::settings(&request)?;
    let local = LocalRequest {
        model,
        name: &resolved.model,
        prompts,
        n: request.choice_count(),
        settings: &settings,
        param: completion::PARAM,
    };
    let answer = service.start_local(&context.0, local).await?;
    let format = CompletionChunks::new(
        resolved.model.clone(),
        request.include_usage(),
        settings.logprobs.is_some(),
        model.engine.tokenizer().clone(),
    )
    .echoing(
        completion::echoed(model.engine.tokenizer(), &request),
        request.choice_count(),
    );
    if service.moderates_output(&context.0).await {
        // Output moderation: generated whole, checked, then sent (a stream
        // replays it), so nothing flagged is ever sent.
        let whole = answer.collect_within(state.request_timeout()).await?;
        let checked = service
            .filter_completion(&context.0, format.completion(whole))
            .await?;
        if !request.is_stream() {
            return Ok(Json(checked).into_response());
        }
        let mut frames: Vec<String> =
            service::guardrails::replay_completion(&checked, request.include_usage())
                .iter()
                .map(api::sse_data)
                .collect();
        frames.push(api::sse_done().to_owned());
        return Ok(sse_frames(frames));
    }
    if request.is_stream() {
        return Ok(sse_response(answer, format));
    }
    let whole = answer.collect_within(state.request_timeout()).await?;
    Ok(Json(format.completion(whole)).into_response())
}
