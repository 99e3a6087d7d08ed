//! People in the web app: `POST /api/auth/signup`, `/api/auth/login`,
//! `/api/auth/logout` and `GET /api/me`.
//!
//! Everyone signs up into the installation's default organisation (the one
//! keyless, admin-key and `parlance keys create` requests bill, created when missing): the
//! first person to sign up becomes its owner, later ones members. Signing
//! up or in opens a session and sets the [`SESSION_COOKIE`]: HttpOnly,
//! SameSite=Strict, Path=/, lasting [`SESSION_TTL`], and Secure when the
//! request came over https (`X-Forwarded-Proto: https` from a proxy) or
//! `PARLANCE_SECURE_COOKIES=1` is set.
//!
//! Sign-up is open to anyone who can reach the server unless
//! `PARLANCE_SIGNUP=closed`: then only the first person (the owner) may
//! sign up, and later ones get a 403 telling them to ask an owner.

use std::time::Duration;

use api::ApiError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Role, Store};

use super::{json_body, person, store};
use crate::auth::{csrf_refusal, passes_csrf_check, session_cookie, Caller, SESSION_COOKIE};
use crate::state::AppState;

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest password accepted at sign-up.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Set to `1` or `true` to mark the session cookie Secure always.
pub const SECURE_COOKIES_ENV: &str = "PARLANCE_SECURE_COOKIES";
/// Set to `closed` to let only the first person sign up.
pub const SIGNUP_ENV: &str = "PARLANCE_SIGNUP";

/// Whether a sign-up may go ahead: always for the first person, and for
/// later ones unless sign-up is `closed`.
fn signup_allowed(policy: Option<&str>, first: bool) -> bool {
    first || !policy.is_some_and(|p| p.trim().eq_ignore_ascii_case("closed"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    email: String,
    #[serde(default)]
    name: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// `POST /api/auth/signup {email, name, password}`.
pub async fn signup(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    result(async {
        if !passes_csrf_check(&method, &headers) {
            return Err(csrf_refusal());
        }
        let store = store(&state)?;
        let request: SignupRequest = json_body(&body)?;
        if request.password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(invalid(
                format!("The password must have at least {MIN_PASSWORD_CHARS} characters."),
                "password",
            ));
        }
        if !request.email.contains('@') {
            return Err(invalid("The email must contain '@'.".into(), "email"));
        }
        let org_id = local_org(&store).await?;
        let first = store
            .list_members(&org_id)
            .await
            .map_err(service::Error::from)?
            .is_empty();
        if !signup_allowed(std::env::var(SIGNUP_ENV).ok().as_deref(), first) {
            return Err(ApiError::Forbidden {
                message: "Sign-up is closed on this server: ask an owner of the organization \
                          to add you."
                    .into(),
            });
        }
        let name = match request.name.trim() {
            "" => request
                .email
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned(),
            name => name.to_owned(),
        };
        let user = store
            .create_user(&request.email, &name, &request.password)
            .await
            .map_err(|err| match err.kind() {
                store::ErrorKind::Conflict => invalid(
                    "This email is already registered: sign in instead.".into(),
                    "email",
                ),
                _ => service::Error::from(err).into(),
            })?;
        let role = if first { Role::Owner } else { Role::Member };
        store
            .set_role(&org_id, &user.id, role)
            .await
            .map_err(service::Error::from)?;
        open_session(&store, &headers, &org_id, &user.id).await
    })
    .await
}

/// `POST /api/auth/login {email, password}`.
pub async fn login(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    result(async {
        if !passes_csrf_check(&method, &headers) {
            return Err(csrf_refusal());
        }
        let store = store(&state)?;
        let request: LoginRequest = json_body(&body)?;
        let wrong = || ApiError::Unauthorized {
            message: "Wrong email or password.".into(),
        };
        let user = store
            .verify_password(&request.email, &request.password)
            .await
            .map_err(|err| match err.kind() {
                store::ErrorKind::Unauthorized => wrong(),
                _ => service::Error::from(err).into(),
            })?;
        let org_id = local_org(&store).await?;
        store
            .get_role(&org_id, &user.id)
            .await
            .map_err(|_| wrong())?;
        open_session(&store, &headers, &org_id, &user.id).await
    })
    .await
}

/// `POST /api/auth/logout`: ends the session of the cookie (if any) and
/// clears the cookie.
pub async fn logout(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    result(async {
        if !passes_csrf_check(&method, &headers) {
            return Err(csrf_refusal());
        }
        let store = store(&state)?;
        if let Some(token) = session_cookie(&headers) {
            store
                .revoke_session(&token)
                .await
                .map_err(service::Error::from)?;
        }
        let mut response = Json(json!({"signed_out": true})).into_response();
        let cookie = format!(
            "{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{}",
            if secure(&headers) { "; Secure" } else { "" }
        );
        set_cookie(&mut response, &cookie)?;
        Ok(response)
    })
    .await
}

/// `GET /api/me`: the person, their organisation and role, their plan and
/// what is left of its quota this month.
pub async fn me(State(state): State<AppState>, caller: Option<Extension<Caller>>) -> Response {
    result(async {
        let person = person(&state, caller)?;
        let body = describe(&person.store, &person.org_id, &person.user_id).await?;
        Ok(Json(body).into_response())
    })
    .await
}

/// The JSON of `GET /api/me` (also the answer to signing up and in).
async fn describe(store: &Store, org_id: &str, user_id: &str) -> Result<Value, ApiError> {
    let org = store.get_org(org_id).await.map_err(service::Error::from)?;
    let members = store
        .list_members(org_id)
        .await
        .map_err(service::Error::from)?;
    let (user, role) = members
        .into_iter()
        .find(|(user, _)| user.id == user_id)
        .ok_or_else(|| ApiError::Unauthorized {
            message: "You are no longer a member of this organization.".into(),
        })?;
    let now = billing::Timestamp::now();
    let (plan, remaining) = service::plans::remaining(store, org_id, user_id, now).await?;
    Ok(json!({
        "object": "me",
        "user": {"id": user.id, "email": user.email, "name": user.name},
        "organization": {"id": org.id, "name": org.name},
        "role": role.as_str(),
        "admin": matches!(role, Role::Owner | Role::Admin),
        "plan": plan,
        "quota": remaining,
    }))
}

/// Opens a session and answers with [`describe`] and the cookie.
async fn open_session(
    store: &Store,
    headers: &HeaderMap,
    org_id: &str,
    user_id: &str,
) -> Result<Response, ApiError> {
    let ttl_ms = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
    let (_, token) = store
        .create_session(org_id, user_id, ttl_ms)
        .await
        .map_err(service::Error::from)?;
    let body = describe(store, org_id, user_id).await?;
    let mut response = Json(body).into_response();
    let cookie = format!(
        "{SESSION_COOKIE}={}; Max-Age={}; Path=/; HttpOnly; SameSite=Strict{}",
        token.expose(),
        SESSION_TTL.as_secs(),
        if secure(headers) { "; Secure" } else { "" }
    );
    set_cookie(&mut response, &cookie)?;
    Ok(response)
}

fn set_cookie(response: &mut Response, cookie: &str) -> Result<(), ApiError> {
    let value = HeaderValue::from_str(cookie).map_err(|err| ApiError::Internal {
        detail: format!("session cookie: {err}"),
    })?;
    response.headers_mut().append(SET_COOKIE, value);
    Ok(())
}

/// Whether the cookie must be Secure: see the module documentation.
fn secure(headers: &HeaderMap) -> bool {
    let forced = std::env::var(SECURE_COOKIES_ENV)
        .is_ok_and(|value| matches!(value.trim(), "1" | "true" | "yes"));
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    forced || https
}

/// The id of the installation's default organisation, which the web app
/// signs people into (the CLI's keys and `PARLANCE_ADMIN_KEY` bill it too).
async fn local_org(store: &Store) -> Result<String, ApiError> {
    Ok(service::ensure_org(store, service::DEFAULT_ORG).await?)
}

fn invalid(message: String, param: &str) -> ApiError {
    ApiError::InvalidRequest {
        message,
        param: Some(param.to_owned()),
        code: None,
    }
}

/// Renders a handler's result: the response, or the error object.
async fn result(work: impl std::future::Future<Output = Result<Response, ApiError>>) -> Response {
    match work.await {
        Ok(response) => response,
        Err(err) => crate::error::ServerError::from(err).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_signup_still_lets_the_first_person_in() {
        assert!(signup_allowed(None, false));
        assert!(signup_allowed(Some("open"), false));
        assert!(signup_allowed(Some("closed"), true));
        assert!(!signup_allowed(Some("closed"), false));
        assert!(!signup_allowed(Some(" Closed "), false));
    }
}
