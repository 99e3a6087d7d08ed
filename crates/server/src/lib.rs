//! The OpenAI-compatible HTTP server: axum routes over the service layer
//! (`service`), authentication, SSE streaming, the web app, the status page
//! and metrics, and the one table from error kind to HTTP status
//! ([`error::status_for`]).
//!
//! - [`AppState`]: the [`service::Service`] (models, routing, meter, rate
//!   limits), the [`Auth`] mode — with a store, every route but `/health`
//!   asks for a key or a session ([`auth`]) and every generation is metered
//!   — and the HTTP settings.
//! - [`router`]: every route, each also without the `/v1` prefix, wrapped
//!   in the request-id, panic-catching and fallback layers, so that every
//!   answer — success, error, unknown route, panic — carries
//!   `x-request-id` and errors are the OpenAI error object.
//! - [`limits`]: the middleware taking one request from the caller's key and
//!   project, and OpenAI's `x-ratelimit-*` headers and 429s.
//! - `/v1/organization/*` (`routes::organization`): usage, costs, projects,
//!   keys, budgets, audit log and invoices for admin keys; the web app
//!   (`routes::web`: sign-up with approval, throttled sign-in, the admin
//!   pages' JSON); `/api/status` and `/status`; `/metrics`.
//! - [`client`]: the client's address for per-address sign-in throttling
//!   (the TCP peer's, which [`serve`] records; `X-Forwarded-For` only from
//!   trusted proxies).
//! - [`incidents`] records the gateway's breaker changes as incidents.
//! - [`serve`]: runs the router on a listener until ctrl-c or SIGTERM, then
//!   lets in-flight requests finish (up to the shutdown grace) and waits
//!   for every ledger write.
//!
//! Routes are thin: they parse, call the service, and write JSON or SSE; a
//! streamed body owns its answer, so a client that leaves cancels its
//! generations in the engine.

mod auth;
pub mod client;
mod error;
pub mod incidents;
mod limits;
mod middleware;
mod routes;
mod state;
mod stream;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;

use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::{AdminKey, Auth, Caller};
pub use error::{status_for, ServerError};
/// The gateway crate, re-exported for the binary's configuration.
pub use gateway;
pub use incidents::Background;
pub use middleware::REQUEST_ID;
pub use ratelimit::Limiter;
pub use state::{
    AppState, DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, SIGNUP_ENV,
};

/// The application: every route, under `/v1` and without it.
pub fn router(state: AppState) -> Router {
    let mut routes: Vec<(&str, MethodRouter<AppState>)> = vec![
        ("/models", get(routes::models::list_models)),
        (
            "/models/{*id}",
            get(routes::models::retrieve_model).delete(routes::models::delete_model),
        ),
        (
            "/chat/completions",
            post(routes::chat::create_chat_completion).get(routes::stored_completions::list),
        ),
        (
            "/chat/completions/{id}",
            get(routes::stored_completions::retrieve)
                .post(routes::stored_completions::update)
                .delete(routes::stored_completions::delete),
        ),
        (
            "/chat/completions/{id}/messages",
            get(routes::stored_completions::messages),
        ),
        ("/completions", post(routes::completions::create_completion)),
        ("/tokenize", post(routes::tokenize::tokenize)),
        ("/detokenize", post(routes::tokenize::detokenize)),
    ];
    routes.extend(routes::organization::routes());
    routes.extend(routes::responses::routes());
    routes.extend(routes::embeddings::routes());
    routes.extend(routes::moderations::routes());
    let mut app = Router::new();
    for (path, route) in routes {
        app = app
            .route(&format!("/v1{path}"), route.clone())
            .route(path, route);
    }
    app = app.merge(routes::web::authenticated());
    // Layers run outside in: authenticate, then the rate limits.
    let app = app
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .merge(anthropic_routes(&state));
    let metrics = get(routes::metrics::metrics);
    let health = get(routes::models::health);
    let app = app
        .route("/v1/health", health.clone())
        .route("/health", health)
        .route("/metrics", metrics)
        .route("/api/status", get(routes::status::status_json))
        .route("/status", get(routes::status::status_page))
        .merge(routes::web::public());
    wrap(app, state)
}

/// Anthropic's Messages API, under `/v1` and without it: authenticated
/// and limited like every API route, and every error it answers rewritten
/// in Anthropic's shape (outermost, so that refusals by authentication and
/// the rate limits are rewritten too).
fn anthropic_routes(state: &AppState) -> Router<AppState> {
    let mut app = Router::new();
    for prefix in ["/v1", ""] {
        app = app
            .route(
                &format!("{prefix}/messages"),
                post(routes::anthropic::create_message),
            )
            .route(
                &format!("{prefix}/messages/count_tokens"),
                post(routes::anthropic::count_tokens),
            );
    }
    app.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        limits::enforce,
    ))
    .route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ))
    .route_layer(axum::middleware::from_fn(
        routes::anthropic::anthropic_errors,
    ))
}

/// The fallbacks and layers every route gets: 404/405 error objects,
/// panics turned into 500 error objects, and the request id outermost so
/// that all of these answers carry it.
fn wrap(app: Router<AppState>, state: AppState) -> Router {
    app.fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            drain_and_cut,
        ))
        .with_state(state)
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn(middleware::request_id))
}

/// Serves `state` on `listener` until ctrl-c or SIGTERM, then shuts down
/// gracefully (see [`serve_until`]).
pub async fn serve(listener: TcpListener, state: AppState) -> Result<(), ServerError> {
    serve_until(listener, state, shutdown_signal()).await
}

/// Serves `state` on `listener`, with the lease's upkeep, the health checks
/// and the incident recorder running, until `signal` completes. Then it
/// drains — new requests are refused with 503 and `retry-after`, `/health`
/// answers `draining` — while the requests and streams in flight finish,
/// for up to the state's shutdown grace (dropping the rest, which settles
/// them `cancelled`); then it stops accepting, and returns once every
/// ledger write has finished and the lease is ended.
pub async fn serve_until(
    listener: TcpListener,
    state: AppState,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let background = state.start_background();
    let grace = state.shutdown_grace();
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
    let draining = state.clone();
    let signal = async move {
        signal.await;
        // Drain first: new requests are refused (503, `retry-after`) and
        // `/health` says `draining` while those in flight finish; only then
        // does the listener close.
        draining.start_draining();
        let _ = signalled_tx.send(());
        tracing::info!(
            in_flight = draining.in_flight(),
            "draining: refusing new requests while those in flight finish"
        );
        let idle = async {
            while draining.in_flight() > 0 {
                tokio::time::sleep(DRAIN_POLL).await;
            }
        };
        let _ = tokio::time::timeout(draining.shutdown_grace(), idle).await;
    };
    let mut server = Box::pin(
        axum::serve(
            listener,
            // The peer's address, for per-address sign-in throttling.
            router(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .into_future(),
    );
    let deadline = async move {
        if signalled.await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: finishing requests in flight"
        );
        tokio::time::sleep(grace).await;
    };
    let served = tokio::select! {
        served = &mut server => served,
        () = deadline => {
            tracing::warn!(
                generations = state.live_generations(),
                "shutdown grace over: cutting the requests still in flight"
            );
            // Handlers answer 503 and streams end; their charges settle
            // `cancelled`. Then the connections close by themselves.
            state.cut_token().cancel();
            match tokio::time::timeout(CUT_WAIT, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::error!("connections still open after the cut; leaving them");
                    Ok(())
                }
            }
        }
    };
    drop(server);
    drop(background);
    if let Some(meter) = state.meter() {
        meter.flush().await;
    }
    if let Some(lease) = state.lease() {
        lease.end().await;
    }
    tracing::info!("ledger flushed; stopped");
    served?;
    Ok(())
}

/// How long connections get to close after in-flight work was cut.
const CUT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a draining server looks whether its last request finished.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// Paths a draining server still answers: what a load balancer and a
/// scraper read.
const ANSWERED_WHILE_DRAINING: [&str; 3] = ["/health", "/v1/health", "/metrics"];

/// Shutdown around every request: while draining, a new request is refused
/// with 503 and `retry-after` (but for [`ANSWERED_WHILE_DRAINING`]); every
/// other is counted in flight until its answer — a stream, until its body —
/// ends; and when the shutdown grace is over, a handler still working
/// answers 503 and an event stream ends (dropping its generations and
/// settling its charge `cancelled`).
async fn drain_and_cut(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures_util::StreamExt;
    let refused = || {
        let mut response = error::api_error_response(&api::ApiError::Overloaded {
            retry_after_secs: Some(1),
        });
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        response
    };
    if state.is_draining() && !ANSWERED_WHILE_DRAINING.contains(&request.uri().path()) {
        return refused();
    }
    let in_flight = state.track_request();
    let cut = state.cut_token().clone();
    let response = tokio::select! {
        response = next.run(request) => response,
        () = cut.cancelled() => return refused(),
    };
    let streamed = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streamed {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body
        .into_data_stream()
        .take_until(cut.cancelled_owned())
        .map(move |frame| {
            // Held by the body: the request is in flight until it ends.
            let _held = &in_flight;
            frame
        });
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(body))
}

/// Completes on ctrl-c or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

pub(crate) use service::random_hex;

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
}
