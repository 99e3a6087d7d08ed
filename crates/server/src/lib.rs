//! The OpenAI-compatible HTTP server: axum routes over the engines of the
//! models served, SSE streaming, and the one table from error kind to HTTP
//! status ([`error::status_for`]).
//!
//! - [`AppState`]: the model registry (name → running engine), limits, and
//!   the [`Auth`] mode: with a store, every route but `/health` asks for a
//!   key ([`auth`]) and every generation is reserved for and settled in the
//!   usage ledger ([`metering`]).
//! - [`router`]: every route, each also without the `/v1` prefix, wrapped
//!   in the request-id, panic-catching and fallback layers, so that every
//!   answer — success, error, unknown route, panic — carries
//!   `x-request-id` and errors are the OpenAI error object.
//! - [`limits`]: requests and tokens per minute per key and project, with
//!   OpenAI's `x-ratelimit-*` headers and 429s.
//! - [`quota`]: plans for people and their monthly quota; [`notify`]: the
//!   budget soft-limit webhook.
//! - `/v1/organization/*` (`routes::organization`): usage, costs, projects,
//!   keys, budgets, audit log and invoices for admin keys.
//! - [`serve`]: runs the router on a listener until ctrl-c.
//!
//! Routes are thin; tokenizing and template rendering run on the blocking
//! pool; a streamed body owns its generations, so a client that leaves
//! cancels them in the engine.

mod auth;
mod error;
mod generation;
mod limits;
mod metering;
mod middleware;
mod notify;
pub mod quota;
mod routes;
mod state;
mod stream;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::{AdminKey, Auth, Caller};
pub use error::{status_for, ServerError};
pub use limits::{LimitDefaults, TokenCharge, DEFAULT_KEY_RPM, DEFAULT_KEY_TPM, PROJECT_CACHE_TTL};
pub use metering::{settle_interrupted, Tenant, LOCAL_BACKEND};
pub use middleware::REQUEST_ID;
pub use ratelimit::Limiter;
pub use routes::organization::{budgets, manage};
pub use state::{AppState, ServedModel, DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT};

/// The application: every route, under `/v1` and without it.
pub fn router(state: AppState) -> Router {
    let mut routes: Vec<(&str, MethodRouter<AppState>)> = vec![
        ("/models", get(routes::models::list_models)),
        ("/models/{*id}", get(routes::models::retrieve_model)),
        (
            "/chat/completions",
            post(routes::chat::create_chat_completion),
        ),
        ("/completions", post(routes::completions::create_completion)),
        ("/tokenize", post(routes::tokenize::tokenize)),
        ("/detokenize", post(routes::tokenize::detokenize)),
    ];
    routes.extend(routes::organization::routes());
    let mut app = Router::new();
    for (path, route) in routes {
        app = app
            .route(&format!("/v1{path}"), route.clone())
            .route(path, route);
    }
    // Layers run outside in: authenticate, then the rate limits.
    let app = app
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let health = get(routes::models::health);
    let app = app
        .route("/v1/health", health.clone())
        .route("/health", health);
    wrap(app, state)
}

/// The fallbacks and layers every route gets: 404/405 error objects,
/// panics turned into 500 error objects, and the request id outermost so
/// that all of these answers carry it.
fn wrap(app: Router<AppState>, state: AppState) -> Router {
    app.fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(state)
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn(middleware::request_id))
}

/// Serves `state` on `listener` until ctrl-c, then finishes the requests
/// in flight.
pub async fn serve(listener: TcpListener, state: AppState) -> Result<(), ServerError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %err, "cannot listen for ctrl-c; serving until killed");
        std::future::pending::<()>().await;
    }
    tracing::info!("shutting down");
}

/// Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// 24 random hex digits, for response and request ids.
pub(crate) fn random_hex() -> String {
    format!("{:024x}", rand::random::<u128>() >> 32)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_error_object_with_request_id() {
        let app = Router::new().route(
            "/boom",
            get(|| async {
                let empty: Vec<u8> = Vec::new();
                // Index out of bounds, at run time.
                format!("{}", std::hint::black_box(&empty)[std::hint::black_box(3)])
            }),
        );
        let app = wrap(app, AppState::new([]));
        let request = Request::builder().uri("/boom").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key(&REQUEST_ID));
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"]["type"], "server_error");
        assert!(value["error"]["code"].is_null());
        assert!(!value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("index"));
    }

    #[test]
    fn ids_are_distinct_hex() {
        let (a, b) = (random_hex(), random_hex());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
