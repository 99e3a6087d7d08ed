//! `POST /tokenize` and `POST /detokenize` in llama.cpp's shape. The body
//! may name a `model`; without one, the first served model is used.

use api::{
    ApiError, DetokenizeRequest, DetokenizeResponse, InvalidCode, Piece, TokenizeRequest,
    TokenizeResponse, TokenizeToken,
};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use service::ServedModel;

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;

/// The optional `model` field of the llama.cpp-shaped bodies.
#[derive(Deserialize)]
struct ModelField {
    #[serde(default)]
    model: Option<String>,
}

/// The model the body names (resolved like every endpoint's), else the
/// first loaded one.
fn model_of(state: &AppState, context: &Context, body: &[u8]) -> Result<ServedModel, ServerError> {
    let name = serde_json::from_slice::<ModelField>(body)
        .ok()
        .and_then(|field| field.model);
    Ok(state
        .service()
        .engine_for(context.tenant(), name.as_deref())?)
}

/// Text → token ids (with their pieces on request).
pub async fn tokenize(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Json<TokenizeResponse>, ServerError> {
    let request: TokenizeRequest = api::parse_request(&body)?;
    let tokenizer = model_of(&state, &context, &body)?
        .engine
        .tokenizer()
        .clone();
    let tokens = tokio::task::spawn_blocking(move || {
        let ids = tokenizer.encode(&request.content, request.add_special.unwrap_or(false), true);
        ids.into_iter()
            .map(|id| match request.with_pieces {
                Some(true) => TokenizeToken::WithPiece {
                    id,
                    piece: Piece::from_bytes(tokenizer.token_bytes(id).to_vec()),
                },
                _ => TokenizeToken::Id(id),
            })
            .collect()
    })
    .await
    .map_err(service::Error::from)?;
    Ok(Json(TokenizeResponse { tokens }))
}

/// Token ids → text.
pub async fn detokenize(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Json<DetokenizeResponse>, ServerError> {
    let request: DetokenizeRequest = api::parse_request(&body)?;
    let tokenizer = model_of(&state, &context, &body)?
        .engine
        .tokenizer()
        .clone();
    let vocab = tokenizer.vocab_size();
    if let Some(bad) = request.tokens.iter().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::invalid(
            "tokens",
            InvalidCode::InvalidValue,
            format!("Invalid token id {bad}: the vocabulary has {vocab} tokens."),
        )
        .into());
    }
    let content = tokio::task::spawn_blocking(move || tokenizer.decode(&request.tokens, false))
        .await
        .map_err(service::Error::from)?;
    Ok(Json(DetokenizeResponse { content }))
}
