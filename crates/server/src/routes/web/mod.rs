//! The chat web app: its pages and assets ([`assets`]), sign-up, sign-in
//! and the signed-in person ([`account`]), and their conversations stored
//! server-side ([`conversations`]), and the admin pages' JSON ([`admin`]).
//!
//! [`public`] routes need no credentials (the page, its assets, signing up
//! and in); [`authenticated`] routes sit behind [`crate::auth::authenticate`]
//! like the OpenAI API, and want a signed-in person (a session cookie). The
//! app itself talks to `/v1/*` with the same cookie.

pub mod account;
pub mod admin;
pub mod assets;
pub mod conversations;

use api::ApiError;
use axum::body::Bytes;
use axum::routing::{delete, get, patch, post, put};
use axum::{Extension, Router};
use serde::de::DeserializeOwned;
use store::Store;

use crate::auth::{store_of, Caller};
use crate::state::AppState;

/// The routes anyone may call: the app's page and assets, sign-up, sign-in
/// and sign-out.
pub fn public() -> Router<AppState> {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::asset))
        .route("/api/auth/signup", post(account::signup))
        .route("/api/auth/login", post(account::login))
        .route("/api/auth/logout", post(account::logout))
}

/// The routes of a signed-in person (behind authentication).
pub fn authenticated() -> Router<AppState> {
    Router::new()
        .route("/api/me", get(account::me))
        .route("/api/auth/invite", post(account::accept_invite))
        .route(
            "/api/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route(
            "/api/conversations/{id}",
            get(conversations::retrieve)
                .patch(conversations::update)
                .delete(conversations::delete),
        )
        .route(
            "/api/conversations/{id}/messages",
            post(conversations::append),
        )
        .route(
            "/api/conversations/{id}/truncate",
            post(conversations::truncate),
        )
        .route("/api/admin/members", get(admin::members))
        .route(
            "/api/admin/members/{user_id}",
            patch(admin::set_role).delete(admin::remove),
        )
        .route("/api/admin/members/{user_id}/plan", put(admin::assign_plan))
        .route("/api/admin/pending", get(admin::pending))
        .route("/api/admin/pending/{user_id}", delete(admin::reject))
        .route("/api/admin/pending/{user_id}/approve", post(admin::approve))
        .route(
            "/api/admin/invites",
            get(admin::invites).post(admin::invite),
        )
        .route(
            "/api/admin/invites/{invite_id}",
            delete(admin::delete_invite),
        )
        .route("/api/admin/plans", get(admin::plans))
        .route("/api/admin/projects", get(admin::projects))
        .route(
            "/api/admin/projects/{project_id}/guardrails",
            put(admin::set_guardrails),
        )
        .route(
            "/api/admin/prices",
            get(admin::prices).post(admin::set_price),
        )
}

/// The store, or a 404 on a server without one.
fn store(state: &AppState) -> Result<Store, ApiError> {
    store_of(state.auth())
        .cloned()
        .ok_or_else(|| ApiError::NotFound {
            message: "The web app needs a database; this server has none.".into(),
        })
}

/// The signed-in person of a request: (store, org id, user id).
struct Person {
    store: Store,
    org_id: String,
    user_id: String,
}

/// The person signed in with the session cookie; a 401 without one.
fn person(state: &AppState, caller: Option<Extension<Caller>>) -> Result<Person, ApiError> {
    let store = store(state)?;
    match caller {
        Some(Extension(Caller::Tenant(tenant))) => match tenant.user_id {
            Some(user_id) => Ok(Person {
                store,
                org_id: tenant.org_id,
                user_id,
            }),
            None => Err(ApiError::Unauthorized {
                message: "This needs a signed-in person: sign in to the web app \
                          (an API key has no conversations)."
                    .into(),
            }),
        },
        _ => Err(ApiError::Unauthorized {
            message: "Sign in to the web app first.".into(),
        }),
    }
}

/// Parses a JSON body into `T`, as an OpenAI error object when it fails.
fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| api::from_json_error(&err))
}
