//! Accepting an invite with an account one already has, on a real SQLite
//! store: a signed-in person opens the link (`POST /api/auth/invite`) and
//! joins the invite's organisation with the invited role, in a new session
//! there; a person whose sign-up waits for approval signs in through the
//! link (`POST /api/auth/login` with `invite`) and is a member at once.
//! A used link, another person's link and a wrong password join no one.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use server::{AppState, Auth};
use service::accounts::{Accounts, Signup};
use store::{Role, Store};

use common::{send, Answer};

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    app: Router,
}

/// A server without models (invites need none) under sign-up `policy`.
async fn world(policy: Signup) -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let state = AppState::new(Vec::new())
        .with_auth(Auth::Keys {
            store: store.clone(),
            admin: None,
        })
        .with_accounts(Accounts::new(policy));
    World {
        _dir: dir,
        app: server::router(state),
        store,
    }
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    body: Value,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("parlance_session={cookie}"));
    }
    send(app, request.body(Body::from(body.to_string())).unwrap()).await
}

/// The session token the answer set in its cookie.
fn session_of(answer: &Answer) -> String {
    let cookie = answer
        .headers
        .get("set-cookie")
        .unwrap_or_else(|| panic!("no cookie: {}", answer.text()))
        .to_str()
        .unwrap();
    let value = cookie.strip_prefix("parlance_session=").unwrap();
    value.split(';').next().unwrap().to_owned()
}

async fn sign_up(app: &Router, email: &str) -> Answer {
    call(
        app,
        Method::POST,
        "/api/auth/signup",
        None,
        json!({"email": email, "name": "Person", "password": "correct horse"}),
    )
    .await
}

fn param_of(answer: &Answer) -> String {
    answer.json()["error"]["param"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn actions(store: &Store, org_id: &str) -> Vec<(String, String)> {
    store
        .list_audit(org_id, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.entry.action, e.entry.actor))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_person_accepts_an_invite_with_their_account() {
    let w = world(Signup::Open).await;
    let owner = sign_up(&w.app, "owner@example.com").await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text());
    let ada = sign_up(&w.app, "ada@example.com").await;
    assert_eq!(ada.status, StatusCode::OK, "{}", ada.text());
    let home = ada.json()["organization"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ada_id = ada.json()["user"]["id"].as_str().unwrap().to_owned();
    let ada_home = session_of(&ada);

    // Another organisation invites Ada as an admin, and Bob as a reader.
    let other = w.store.create_org("research").await.unwrap();
    let (_, token) = service::invites::create(
        &w.store,
        &other.id,
        "user:boss",
        "Ada@Example.com",
        Role::Admin,
    )
    .await
    .unwrap();
    let (bobs, bob_token) = service::invites::create(
        &w.store,
        &other.id,
        "user:boss",
        "bob@example.com",
        Role::Reader,
    )
    .await
    .unwrap();

    // Not signed in: nothing to accept with.
    let anonymous = call(
        &w.app,
        Method::POST,
        "/api/auth/invite",
        None,
        json!({"invite": token.expose()}),
    )
    .await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.text()
    );
    // Bob's link is not Ada's.
    let wrong = call(
        &w.app,
        Method::POST,
        "/api/auth/invite",
        Some(&ada_home),
        json!({"invite": bob_token.expose()}),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.text());
    assert_eq!(param_of(&wrong), "email");
    assert_eq!(
        w.store
            .get_invite(&other.id, &bobs.id)
            .await
            .unwrap()
            .accepted_at,
        None,
        "a refused acceptance leaves the invite pending"
    );

    // Ada opens her link signed in: she joins as an admin, signed in there.
    let joined = call(
        &w.app,
        Method::POST,
        "/api/auth/invite",
        Some(&ada_home),
        json!({"invite": token.expose()}),
    )
    .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text());
    let body = joined.json();
    assert_eq!(body["organization"]["id"], other.id.as_str());
    assert_eq!(body["role"], "admin");
    assert_eq!(body["user"]["id"], ada_id.as_str());
    let ada_there = session_of(&joined);
    let me = call(&w.app, Method::GET, "/api/me", Some(&ada_there), json!({})).await;
    assert_eq!(me.json()["organization"]["id"], other.id.as_str());
    assert_eq!(me.json()["role"], "admin");
    assert_eq!(
        w.store.get_role(&other.id, &ada_id).await.unwrap(),
        Role::Admin
    );
    // Her first membership and session are as they were.
    let me = call(&w.app, Method::GET, "/api/me", Some(&ada_home), json!({})).await;
    assert_eq!(me.json()["organization"]["id"], home.as_str());
    assert_eq!(me.json()["role"], "member");
    assert!(actions(&w.store, &other.id)
        .await
        .contains(&("invite.accepted".to_owned(), format!("user:{ada_id}"))));

    // The link worked once.
    let again = call(
        &w.app,
        Method::POST,
        "/api/auth/invite",
        Some(&ada_home),
        json!({"invite": token.expose()}),
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text());
    assert_eq!(param_of(&again), "invite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_waiting_for_approval_signs_in_through_an_invite_and_joins() {
    let w = world(Signup::Approval).await;
    let owner = sign_up(&w.app, "owner@example.com").await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text());
    let owner_session = session_of(&owner);
    let org = owner.json()["organization"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pia = sign_up(&w.app, "pia@example.com").await;
    assert_eq!(pia.status, StatusCode::ACCEPTED, "{}", pia.text());
    let pia_id = pia.json()["user"]["id"].as_str().unwrap().to_owned();

    // The owner invites her from the admin page's JSON.
    let invite = call(
        &w.app,
        Method::POST,
        "/api/admin/invites",
        Some(&owner_session),
        json!({"email": "pia@example.com", "role": "reader"}),
    )
    .await;
    assert_eq!(invite.status, StatusCode::OK, "{}", invite.text());
    let url = invite.json()["invite_url"].as_str().unwrap().to_owned();
    let token = url.split("invite=").nth(1).unwrap().to_owned();

    // Signing up again through the link is refused: she has an account.
    let taken = call(
        &w.app,
        Method::POST,
        "/api/auth/signup",
        None,
        json!({"email": "pia@example.com", "password": "correct horse", "invite": token}),
    )
    .await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST, "{}", taken.text());
    // A wrong password through the link joins no one.
    let login = |password: &'static str| {
        let (app, token) = (w.app.clone(), token.clone());
        async move {
            call(
                &app,
                Method::POST,
                "/api/auth/login",
                None,
                json!({"email": "pia@example.com", "password": password, "invite": token}),
            )
            .await
        }
    };
    let wrong = login("wrong horse").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text());
    assert!(w.store.get_role(&org, &pia_id).await.is_err());
    // Without the link she still waits; through it she is a reader at once.
    let plain = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        json!({"email": "pia@example.com", "password": "correct horse"}),
    )
    .await;
    assert_eq!(plain.status, StatusCode::FORBIDDEN, "{}", plain.text());
    let joined = login("correct horse").await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text());
    assert_eq!(joined.json()["role"], "reader");
    assert_eq!(joined.json()["organization"]["id"], org.as_str());
    session_of(&joined);
    let pending = call(
        &w.app,
        Method::GET,
        "/api/admin/pending",
        Some(&owner_session),
        json!({}),
    )
    .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.text());
    assert_eq!(
        pending.json()["data"],
        json!([]),
        "the invite settled her sign-up"
    );
    // The link is used: signing in through it again is a 400.
    let used = login("correct horse").await;
    assert_eq!(used.status, StatusCode::BAD_REQUEST, "{}", used.text());
    assert_eq!(param_of(&used), "invite");
    assert!(actions(&w.store, &org)
        .await
        .contains(&("invite.accepted".to_owned(), format!("user:{pia_id}"))));
}
