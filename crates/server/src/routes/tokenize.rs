//! `POST /tokenize` and `POST /detokenize` in llama.cpp's shape. The body
//! may name a `model`; without one, the first served model is used.

use api::{
    ApiError, DetokenizeRequest, DetokenizeResponse, InvalidCode, Piece, TokenizeRequest,
    TokenizeResponse, TokenizeToken,
};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::blocking;
use crate::state::{AppState, ServedModel};

/// The optional `model` field of the llama.cpp-shaped bodies.
#[derive(Deserialize)]
struct ModelField {
    #[serde(default)]
    model: Option<String>,
}

fn model_of<'a>(state: &'a AppState, body: &[u8]) -> Result<&'a ServedModel, ApiError> {
    let name = serde_json::from_slice::<ModelField>(body)
        .ok()
        .and_then(|field| field.model);
    state.model_or_default(name.as_deref())
}

/// Text → token ids (with their pieces on request).
pub async fn tokenize(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Json<TokenizeResponse>, ServerError> {
    let request: TokenizeRequest = api::parse_request(&body)?;
    let tokenizer = model_of(&state, &body)?.engine.tokenizer().clone();
    let tokens = blocking(move || {
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
    .await?;
    Ok(Json(TokenizeResponse { tokens }))
}

/// Token ids → text.
pub async fn detokenize(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Json<DetokenizeResponse>, ServerError> {
    let request: DetokenizeRequest = api::parse_request(&body)?;
    let tokenizer = model_of(&state, &body)?.engine.tokenizer().clone();
    let vocab = tokenizer.vocab_size();
    if let Some(bad) = request.tokens.iter().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::invalid(
            "tokens",
            InvalidCode::InvalidValue,
            format!("Invalid token id {bad}: the vocabulary has {vocab} tokens."),
        )
        .into());
    }
    let content = blocking(move || tokenizer.decode(&request.tokens, false)).await?;
    Ok(Json(DetokenizeResponse { content }))
}
