//! The rate-limit middleware: each authenticated request takes one request
//! from its key's and project's buckets before any work (a 429 when one is
//! spent), carries its [`RequestLimits`] to the handler in its extensions
//! (the handler passes them to the service, which takes the request's
//! tokens when it reserves), and answers with OpenAI's `x-ratelimit-*`
//! headers from the most constraining bucket. Whose buckets, with which
//! limits, and failing open when Redis is down: `service::limits`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use service::{Admission, RequestLimits};

use crate::auth::{store_of, Caller};
use crate::error::api_error_response;
use crate::state::AppState;

/// The middleware, layered right inside `auth::authenticate`. Requests
/// without a tenant (no store) are not limited.
pub async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let (Some(limiting), Some(Caller::Tenant(tenant))) = (
        state.service().rate_limits(),
        request.extensions().get::<Caller>(),
    ) else {
        return next.run(request).await;
    };
    let limits = match limiting.admit(store_of(state.auth()), tenant).await {
        Admission::Unlimited => return next.run(request).await,
        Admission::Refused(limits, error) => {
            let mut response = api_error_response(&error);
            decorate(&limits, &mut response);
            return response;
        }
        Admission::Admitted(limits) => limits,
    };
    request.extensions_mut().insert(Arc::clone(&limits));
    let mut response = next.run(request).await;
    decorate(&limits, &mut response);
    response
}

/// Sets the `x-ratelimit-*` headers (and, on a 429, the retry headers).
fn decorate(limits: &RequestLimits, response: &mut Response) {
    let refused = response.status() == StatusCode::TOO_MANY_REQUESTS;
    for (name, value) in limits.headers(refused) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
}
