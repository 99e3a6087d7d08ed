//! The routes, thin: each parses its body and hands the work to the
//! service (`service::Service`), then writes the answer as JSON or as a
//! stream ([`crate::stream`]). [`Context`] is the request as the service
//! sees it.

pub mod anthropic;
pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod metrics;
pub mod models;
pub mod moderations;
pub mod organization;
pub mod responses;
pub mod status;
pub mod stored_completions;
pub mod tokenize;
pub mod web;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use service::{RequestContext, RequestLimits, Tenant};

use crate::auth::Caller;
use crate::middleware::RequestId;

/// The request as the service sees it: its tenant (from [`Caller`]), its
/// id ([`RequestId`]) and its rate limits (left by `limits::enforce`).
pub struct Context(pub RequestContext);

impl Context {
    /// The tenant billed, when metered.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.0.tenant.as_ref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Context {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let tenant = match parts.extensions.get::<Caller>() {
            Some(Caller::Tenant(tenant)) => Some(tenant.clone()),
            _ => None,
        };
        let request_id = match parts.extensions.get::<RequestId>() {
            Some(RequestId(id)) => id.clone(),
            None => format!("req_{}", service::random_hex()),
        };
        let limits = parts.extensions.get::<Arc<RequestLimits>>().cloned();
        let endpoint = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or_else(
                || endpoint_of(parts.uri.path()),
                |path| endpoint_of(path.as_str()),
            );
        Ok(Context(RequestContext {
            tenant,
            request_id,
            limits,
            endpoint,
        }))
    }
}

/// The endpoint a ledger row names: the route's path, always with `/v1`
/// (every route is also served without it).
fn endpoint_of(path: &str) -> String {
    if path.starts_with("/v1/") {
        path.to_owned()
    } else {
        format!("/v1{path}")
    }
}
