//! People in the web app: `POST /api/auth/signup`, `/api/auth/login`,
//! `/api/auth/logout`, `/api/auth/invite` (a signed-in person accepts an
//! invite link) and `GET /api/me`.
//!
//! Everyone signs up into the installation's default organisation (the one
//! keyless, admin-key and `parlance keys create` requests bill, created when missing).
//! The rules are `service::accounts`': the first person becomes its owner;
//! after that, `PARLANCE_SIGNUP` decides — `approval` (the default: the
//! sign-up answers 202 `{"status": "pending"}` without a session, and an
//! owner or admin approves the person on the Admin page), `open` (a member
//! at once) or `closed` (a 403 telling them to ask an owner). A sign-up
//! that carries an invite link's token (`invite`, from the admin API's
//! `/v1/organization/invites`) joins at once with the invited role, under
//! every policy. Signing in is
//! throttled per account and per client address (`crate::client`): 429
//! `rate_limit_exceeded` with `retry-after` while locked out.
//!
//! Signing up (as a member at once) or in opens a session and sets the
//! [`SESSION_COOKIE`]: HttpOnly, SameSite=Strict, Path=/, lasting
//! [`SESSION_TTL`], and Secure when the request came over https
//! (`X-Forwarded-Proto: https` from a proxy) or `PARLANCE_SECURE_COOKIES=1`
//! is set.

use std::net::SocketAddr;
use std::time::Duration;

use api::ApiError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use service::accounts::{NewPerson, SignedUp};
use store::{Role, Store};

use super::{json_body, person, store};
use crate::auth::{csrf_refusal, passes_csrf_check, session_cookie, Caller, SESSION_COOKIE};
use crate::state::AppState;

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Set to `1` or `true` to mark the session cookie Secure always.
pub const SECURE_COOKIES_ENV: &str = "PARLANCE_SECURE_COOKIES";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    email: String,
    #[serde(default)]
    name: String,
    password: String,
    /// An invite link's token: the person joins its organisation with the
    /// invited role at once, whatever the sign-up policy.
    #[serde(default)]
    invite: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    /// An invite link's token: signing in through it joins its
    /// organisation with the invited role (an account that is not yet a
    /// member there), and the session is in that organisation.
    #[serde(default)]
    invite: Option<String>,
}

/// `POST /api/auth/signup {email, name, password, invite?}`: the person as
/// `/api/me` with a session, or 202 `{"status": "pending"}` when their
/// sign-up waits for approval. With an invite link's token, they join the
/// invite's organisation with its role at once (`service::invites`).
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
        let person = NewPerson {
            email: &request.email,
            name: &request.name,
            password: &request.password,
        };
        if let Some(token) = &request.invite {
            let (invite, user) = service::invites::accept(&store, token, person).await?;
            return open_session(&store, &headers, &invite.org_id, &user.id).await;
        }
        let org_id = local_org(&store).await?;
        match state.accounts().sign_up(&store, &org_id, person).await? {
            SignedUp::Member { user, .. } => {
                open_session(&store, &headers, &org_id, &user.id).await
            }
            SignedUp::Pending { user } => Ok((
                StatusCode::ACCEPTED,
                Json(json!({
                    "object": "signup",
                    "status": "pending",
                    "user": {"id": user.id, "email": user.email, "name": user.name},
                    "message": "Thanks for signing up. An owner or admin of the organization \
                                must approve your account before you can sign in.",
                })),
            )
                .into_response()),
        }
    })
    .await
}

/// `POST /api/auth/login {email, password, invite?}`, throttled per
/// account and per client address. With an invite link's token, an
/// account not yet a member of the invite's organisation joins it with the
/// invited role, and the session is there.
pub async fn login(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    result(async {
        if !passes_csrf_check(&method, &headers) {
            return Err(csrf_refusal());
        }
        let store = store(&state)?;
        let request: LoginRequest = json_body(&body)?;
        let peer = peer.map(|Extension(ConnectInfo(peer))| peer);
        let address = crate::client::client_address(peer, &headers, state.trusted_proxies());
        if let Some(token) = &request.invite {
            let (user, _, org_id) = state
                .accounts()
                .sign_in_with_invite(&store, token, &request.email, &request.password, address)
                .await?;
            return open_session(&store, &headers, &org_id, &user.id).await;
        }
        let org_id = local_org(&store).await?;
        let (user, _) = state
            .accounts()
            .sign_in(&store, &org_id, &request.email, &request.password, address)
            .await?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptInviteRequest {
    /// The invite link's token.
    invite: String,
}

/// `POST /api/auth/invite {invite}`: the signed-in person accepts an
/// invite link addressed to their email and joins its organisation with
/// the invited role; answers as `/api/me` with a new session in that
/// organisation (the old session stays valid where it was).
pub async fn accept_invite(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    result(async {
        if !passes_csrf_check(&method, &headers) {
            return Err(csrf_refusal());
        }
        let person = person(&state, caller)?;
        let request: AcceptInviteRequest = json_body(&body)?;
        let (invite, user) =
            service::invites::accept_existing(&person.store, &request.invite, &person.user_id)
                .await?;
        open_session(&person.store, &headers, &invite.org_id, &user.id).await
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

/// Renders a handler's result: the response, or the error object.
async fn result(work: impl std::future::Future<Output = Result<Response, ApiError>>) -> Response {
    match work.await {
        Ok(response) => response,
        Err(err) => crate::error::ServerError::from(err).into_response(),
    }
}
