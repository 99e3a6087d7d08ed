//! Who is calling: the `Authorization: Bearer sk-…` check in front of every
//! route but `/health`, and the [`Caller`] it leaves on the request.
//!
//! [`Auth::Keys`]: a request must carry a key the store knows (looked up by
//! its hash) or the admin key (compared in constant time); anything else is
//! a 401 `invalid_api_key`. [`Auth::Open`]: no key is asked for and every
//! request is billed to a built-in tenant (a key the store knows is still
//! honoured; any other, such as the placeholder SDKs insist on, is ignored). [`Auth::Off`] (no store at all, as in the route tests):
//! nothing is checked and nothing metered.

use api::ApiError;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use store::Store;

use crate::error::ServerError;
use crate::metering::Tenant;
use crate::state::AppState;

/// How requests are authenticated.
#[derive(Clone, Default)]
pub enum Auth {
    /// No store: nothing checked, nothing metered.
    #[default]
    Off,
    /// No key required; requests without one are billed to `tenant`.
    Open {
        /// The store keys are looked up in, when a request sends one.
        store: Store,
        /// The built-in tenant of keyless requests.
        tenant: Tenant,
    },
    /// A key from the store, or the admin key, is required.
    Keys {
        /// The store keys are looked up in.
        store: Store,
        /// `PARLANCE_ADMIN_KEY`, if set, and the tenant its requests are billed to.
        admin: Option<(AdminKey, Tenant)>,
    },
}

/// The admin secret. `Debug` hides it.
#[derive(Clone)]
pub struct AdminKey(String);

impl AdminKey {
    /// Wraps the secret; an empty one is `None`.
    pub fn new(secret: String) -> Option<Self> {
        (!secret.is_empty()).then_some(AdminKey(secret))
    }

    fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(…)")
    }
}

/// Who made a request, left in its extensions by [`authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No store: not metered.
    Unmetered,
    /// Billed to this tenant.
    Tenant(Tenant),
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

fn unauthorized(message: &str) -> Response {
    ServerError::from(ApiError::Unauthorized {
        message: message.to_owned(),
    })
    .into_response()
}

/// The bearer token of the request: `None` without an `Authorization`
/// header, `Some(Err)` when it is not a bearer token.
fn bearer(request: &Request) -> Option<Result<String, ()>> {
    let value = request.headers().get(AUTHORIZATION)?;
    let text = value.to_str().map_err(|_| ());
    Some(text.and_then(|text| {
        let (scheme, token) = text.trim().split_once(' ').ok_or(())?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .then(|| token.to_owned())
            .ok_or(())
    }))
}

/// Authenticates the request and leaves its [`Caller`] in its extensions,
/// or answers 401.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match identify(state.auth(), bearer(&request)).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(response) => response,
    }
}

/// The caller of a request that sent `header` (see [`bearer`]).
async fn identify(auth: &Auth, header: Option<Result<String, ()>>) -> Result<Caller, Response> {
    let (store, admin, open) = match auth {
        Auth::Off => return Ok(Caller::Unmetered),
        Auth::Open { store, tenant } => match header {
            Some(Ok(_)) => (store, None, Some(tenant)),
            // Clients such as the OpenAI SDK always send some key.
            _ => return Ok(Caller::Tenant(tenant.clone())),
        },
        Auth::Keys { store, admin } => (store, admin.as_ref(), None),
    };
    let token = match header {
        None => {
            return Err(unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer sk-…'.",
            ))
        }
        Some(Err(())) => {
            return Err(unauthorized(
                "The Authorization header must be 'Bearer sk-…'.",
            ))
        }
        Some(Ok(token)) => token,
    };
    if let Some((key, tenant)) = admin {
        if key.matches(&token) {
            return Ok(Caller::Tenant(tenant.clone()));
        }
    }
    match store.authenticate_key(&token).await {
        Ok(key) => Ok(Caller::Tenant(Tenant {
            org_id: key.org_id,
            project_id: key.project_id,
            api_key_id: key.id,
            admin: key.kind == store::KeyKind::Admin,
            key_limits: key.limits,
            allowed_models: key.allowed_models,
            user_id: None,
        })),
        Err(err) if err.kind() == store::ErrorKind::Unauthorized => match open {
            // Open: a key the store does not know is no key at all.
            Some(tenant) => Ok(Caller::Tenant(tenant.clone())),
            None => Err(unauthorized("Incorrect API key provided.")),
        },
        Err(err) => Err(ServerError::from(ApiError::Internal {
            detail: format!("key lookup failed: {err}"),
        })
        .into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"sk-abc", b"sk-abc"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-abd"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-ab"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn admin_key_debug_hides_the_secret() {
        let key = AdminKey::new("sk-secret".into()).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        assert!(AdminKey::new(String::new()).is_none());
    }
}
