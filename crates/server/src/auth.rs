//! Who is calling: the `Authorization: Bearer sk-…` check (or Anthropic's
//! `x-api-key: sk-…`), or the web app's
//! session cookie, in front of every route but `/health` and the web app's
//! public pages, and the [`Caller`] it leaves on the request.
//!
//! [`Auth::Keys`]: a request must carry a key the store knows (looked up by
//! its hash) or the admin key (compared in constant time); anything else is
//! a 401 `invalid_api_key`. [`Auth::Open`]: no key is asked for and every
//! request is billed to a built-in tenant (a key the store knows is still
//! honoured; any other, such as the placeholder SDKs insist on, is ignored). [`Auth::Off`] (no store at all, as in the route tests):
//! nothing is checked and nothing metered.
//!
//! Sessions: a request without an `Authorization` header that carries the
//! [`SESSION_COOKIE`] is the signed-in person (`service::Tenant::of_session`): their
//! organisation, its `chat` project (created on demand), the key id
//! `session:<user_id>` in the ledger, their plan (`user_id`), and admin
//! rights for owners and admins. An unknown, expired or revoked session is
//! a 401 in either mode. A cookie-authenticated request that changes state
//! (any method but GET, HEAD and OPTIONS) must be JSON or carry
//! [`CSRF_HEADER`]: a cross-site HTML form can send neither, so it cannot
//! act with the cookie (SameSite=Strict already keeps the cookie off
//! cross-site requests; this is the second lock).

use api::ApiError;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use store::Store;

use crate::error::ServerError;
use crate::state::AppState;
use service::Tenant;

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

/// The header Anthropic's clients send their key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The bearer token of the request: `None` without an `Authorization`
/// header, `Some(Err)` when it is not a bearer token. Without
/// `Authorization`, an `x-api-key` header (Anthropic's clients) is the key.
fn bearer(request: &Request) -> Option<Result<String, ()>> {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        let key = request.headers().get(API_KEY_HEADER)?;
        return Some(
            key.to_str()
                .map(str::trim)
                .ok()
                .filter(|key| !key.is_empty())
                .map(str::to_owned)
                .ok_or(()),
        );
    };
    let text = value.to_str().map_err(|_| ());
    Some(text.and_then(|text| {
        let (scheme, token) = text.trim().split_once(' ').ok_or(())?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .then(|| token.to_owned())
            .ok_or(())
    }))
}

/// The web app's session cookie.
pub const SESSION_COOKIE: &str = "parlance_session";
/// The header (any value) that marks a cookie-authenticated request as sent
/// by the app's own scripts, when its body is not JSON.
pub const CSRF_HEADER: &str = "x-parlance-csrf";

/// The value of the session cookie, if the request sends one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Whether a cookie-authenticated request may change state: safe methods
/// always; others only as JSON or with [`CSRF_HEADER`].
pub fn passes_csrf_check(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    json || headers.contains_key(CSRF_HEADER)
}

/// The 403 of a cookie-authenticated request that fails the CSRF check.
pub fn csrf_refusal() -> ApiError {
    ApiError::Forbidden {
        message: format!(
            "A request signed in with the session cookie must send a JSON body \
             (Content-Type: application/json) or the {CSRF_HEADER} header."
        ),
    }
}

/// The store behind the auth mode, if any.
pub fn store_of(auth: &Auth) -> Option<&Store> {
    match auth {
        Auth::Off => None,
        Auth::Open { store, .. } | Auth::Keys { store, .. } => Some(store),
    }
}

/// Authenticates the request and leaves its [`Caller`] in its extensions,
/// or answers 401 (403 for a cookie request failing the CSRF check).
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = bearer(&request);
    let cookie = session_cookie(request.headers());
    if let (None, Some(token), Some(store)) = (&header, cookie, store_of(state.auth())) {
        if !passes_csrf_check(request.method(), request.headers()) {
            return ServerError::from(csrf_refusal()).into_response();
        }
        return match Tenant::of_session(store, &token).await {
            Ok(tenant) => {
                request.extensions_mut().insert(Caller::Tenant(tenant));
                next.run(request).await
            }
            Err(err) => ServerError::from(err).into_response(),
        };
    }
    match identify(state.auth(), header).await {
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
        Err(store::StoreError::Unauthorized(store::PROJECT_ARCHIVED)) => Err(unauthorized(
            "This API key's project is archived: its keys no longer work. Use a key of an \
             active project.",
        )),
        Err(err) if err.kind() == store::ErrorKind::Unauthorized => match open {
            // Open: a key the store does not know is no key at all.
            Some(tenant) => Ok(Caller::Tenant(tenant.clone())),
            None => Err(unauthorized("Incorrect API key provided.")),
        },
        // A saturated database is a 503 to retry, not a server fault.
        Err(err) => Err(ServerError::from(err).into_response()),
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
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            "a=1; parlance_session=sess-xyz; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("sess-xyz"));
        headers.insert(COOKIE, "parlance_session=; x=y".parse().unwrap());
        assert_eq!(session_cookie(&headers), None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn csrf_check_wants_json_or_the_header_on_unsafe_methods() {
        let mut headers = HeaderMap::new();
        assert!(passes_csrf_check(&Method::GET, &headers));
        assert!(!passes_csrf_check(&Method::POST, &headers));
        assert!(!passes_csrf_check(&Method::DELETE, &headers));
        headers.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!passes_csrf_check(&Method::POST, &headers));
        headers.insert(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        assert!(!passes_csrf_check(&Method::POST, &headers));
        headers.insert(
            CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(passes_csrf_check(&Method::POST, &headers));
        let mut headers = HeaderMap::new();
        headers.insert(CSRF_HEADER, "1".parse().unwrap());
        assert!(passes_csrf_check(&Method::DELETE, &headers));
    }

    #[test]
    fn admin_key_debug_hides_the_secret() {
        let key = AdminKey::new("sk-secret".into()).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        assert!(AdminKey::new(String::new()).is_none());
    }
}
