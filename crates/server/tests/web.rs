//! The web app's HTTP side on a real SQLite store: sign-up in its three
//! modes (approval, the default, with the admin pages' approve and reject;
//! open; closed), sign-in throttled per account and per client address
//! (with a hand-driven clock), sign-out with the session cookie, `/api/me`,
//! the CSRF rule for cookie requests, conversations scoped to their person,
//! the page's strict CSP, a chat made with the cookie billed to the person,
//! and the admin pages' JSON (`/api/admin/…`: roles, removal, plans,
//! prices, all audited).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use server::client::TrustedProxies;
use server::{AppState, Auth};
use store::{NewApiKey, Store};

use common::{send, Answer, MODEL};
use service::accounts::{Accounts, Clock, Signup};

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    app: Router,
}

/// A server with the default accounts: sign-ups wait for approval.
async fn world() -> World {
    world_with(|state| state).await
}

/// A server whose state `configure` finishes (accounts, trusted proxies).
async fn world_with(configure: impl FnOnce(AppState) -> AppState) -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let state = AppState::new([(MODEL.to_owned(), common::engine())]).with_auth(Auth::Keys {
        store: store.clone(),
        admin: None,
    });
    let state = configure(state);
    World {
        _dir: dir,
        app: server::router(state),
        store,
    }
}

/// A request with an optional cookie, content type and body.
async fn call(
    app: &Router,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    content_type: Option<&str>,
    body: Option<String>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("parlance_session={cookie}"));
    }
    if let Some(kind) = content_type {
        request = request.header("content-type", kind);
    }
    let body = body.map_or_else(Body::empty, Body::from);
    send(app, request.body(body).unwrap()).await
}

async fn json_call(app: &Router, method: Method, path: &str, cookie: &str, body: Value) -> Answer {
    call(
        app,
        method,
        path,
        Some(cookie),
        Some("application/json"),
        Some(body.to_string()),
    )
    .await
}

async fn get(app: &Router, path: &str, cookie: &str) -> Answer {
    call(app, Method::GET, path, Some(cookie), None, None).await
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

async fn signup(app: &Router, email: &str) -> (Answer, String) {
    let answer = call(
        app,
        Method::POST,
        "/api/auth/signup",
        None,
        Some("application/json"),
        Some(json!({"email": email, "name": "Person", "password": "correct horse"}).to_string()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let token = session_of(&answer);
    (answer, token)
}

/// Signs up without expecting a session (a pending or refused sign-up).
async fn try_signup(app: &Router, email: &str) -> Answer {
    call(
        app,
        Method::POST,
        "/api/auth/signup",
        None,
        Some("application/json"),
        Some(json!({"email": email, "name": "Person", "password": "correct horse"}).to_string()),
    )
    .await
}

/// Signs in, from `peer` when given (as `serve` records it).
async fn login_from(
    app: &Router,
    email: &str,
    password: &str,
    peer: Option<&str>,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/api/auth/login")
        .header("content-type", "application/json");
    if let Some(hops) = forwarded_for {
        request = request.header("x-forwarded-for", hops);
    }
    let mut request = request
        .body(Body::from(
            json!({"email": email, "password": password}).to_string(),
        ))
        .unwrap();
    if let Some(peer) = peer {
        let addr: SocketAddr = peer.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    send(app, request).await
}

async fn login(app: &Router, email: &str, password: &str) -> Answer {
    login_from(app, email, password, None, None).await
}

/// A second person under the default policy: they sign up (202, no
/// session), the owner approves them, and they sign in.
async fn join(w: &World, owner: &str, email: &str) -> (Answer, String) {
    let pending = try_signup(&w.app, email).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text());
    let id = pending.json()["user"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/admin/pending/{id}/approve");
    let approved = json_call(&w.app, Method::POST, &path, owner, json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    let answer = login(&w.app, email, "correct horse").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let token = session_of(&answer);
    (answer, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_signup_owns_the_default_org_later_ones_are_members() {
    // Open sign-up: a later person is a member with a session at once.
    let w = world_with(|s| s.with_accounts(Accounts::new(Signup::Open))).await;
    let (first, alice) = signup(&w.app, "alice@example.com").await;
    let cookie = first.headers["set-cookie"].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let body = first.json();
    assert_eq!(body["role"], "owner");
    assert_eq!(body["organization"]["name"], "default");
    assert_eq!(body["user"]["email"], "alice@example.com");
    let (second, bob) = signup(&w.app, "Bob@Example.com").await;
    assert_eq!(second.json()["role"], "member");
    assert_ne!(alice, bob);

    let me = get(&w.app, "/api/me", &bob).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    let me = me.json();
    assert_eq!(me["user"]["email"], "bob@example.com");
    assert_eq!(me["admin"], false);
    assert_eq!(me["plan"]["id"], "free");
    assert!(me["quota"]["remaining"].is_u64(), "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_and_login_refuse_bad_input_with_error_objects() {
    let w = world().await;
    signup(&w.app, "alice@example.com").await;
    let post = |path: &'static str, body: Value| {
        let app = w.app.clone();
        async move {
            call(
                &app,
                Method::POST,
                path,
                None,
                Some("application/json"),
                Some(body.to_string()),
            )
            .await
        }
    };
    let again = post(
        "/api/auth/signup",
        json!({"email": "ALICE@example.com", "password": "another one"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error()["param"], "email");
    let short = post(
        "/api/auth/signup",
        json!({"email": "c@example.com", "password": "short"}),
    )
    .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert_eq!(short.error()["param"], "password");
    let missing = post("/api/auth/signup", json!({"email": "c@example.com"})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    missing.error();
    let broken = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some("application/json"),
        Some("{".into()),
    )
    .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    broken.error();
    let wrong = post(
        "/api/auth/login",
        json!({"email": "alice@example.com", "password": "wrong password"}),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let unknown = post(
        "/api/auth/login",
        json!({"email": "nobody@example.com", "password": "wrong password"}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error()["message"], unknown.error()["message"]);
    // A cross-site form cannot sign anyone in.
    let form = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some("application/x-www-form-urlencoded"),
        Some("email=alice%40example.com&password=correct+horse".into()),
    )
    .await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
    form.error();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_opens_a_session_and_logout_ends_it() {
    let w = world().await;
    let (_, first) = signup(&w.app, "alice@example.com").await;
    let login = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some("application/json"),
        Some(json!({"email": "alice@example.com", "password": "correct horse"}).to_string()),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let second = session_of(&login);
    assert_ne!(first, second);
    let out = json_call(&w.app, Method::POST, "/api/auth/logout", &second, json!({})).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let me = get(&w.app, "/api/me", &second).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    me.error();
    // The other session lives on.
    assert_eq!(get(&w.app, "/api/me", &first).await.status, StatusCode::OK);
    // No cookie, no bearer: a 401 like the API's.
    let anonymous = call(&w.app, Method::GET, "/api/me", None, None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let garbage = get(&w.app, "/api/me", "sess-not-a-session").await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_requests_that_change_state_must_be_json_or_carry_the_header() {
    let w = world().await;
    let (_, alice) = signup(&w.app, "alice@example.com").await;
    for kind in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let answer = call(
            &w.app,
            Method::POST,
            "/api/conversations",
            Some(&alice),
            kind,
            Some(r#"{"title":"forged"}"#.into()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{kind:?}");
        assert!(answer.error()["message"]
            .as_str()
            .unwrap()
            .contains("x-parlance-csrf"));
        // The OpenAI API is guarded the same way.
        let chat = call(
            &w.app,
            Method::POST,
            "/v1/chat/completions",
            Some(&alice),
            kind,
            Some(common::chat("Hi", json!({"max_tokens": 1})).to_string()),
        )
        .await;
        assert_eq!(chat.status, StatusCode::FORBIDDEN, "{kind:?}");
    }
    assert!(w
        .store
        .list_usage(&get_org(&w.store).await, 0, i64::MAX, None, 10)
        .await
        .unwrap()
        .is_empty());
    let created = json_call(
        &w.app,
        Method::POST,
        "/api/conversations",
        &alice,
        json!({"title": "mine"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/api/conversations/{id}");
    let bare = call(&w.app, Method::DELETE, &path, Some(&alice), None, None).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    let request = Request::builder()
        .method(Method::DELETE)
        .uri(&path)
        .header("cookie", format!("parlance_session={alice}"))
        .header("x-parlance-csrf", "1")
        .body(Body::empty())
        .unwrap();
    let deleted = send(&w.app, request).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text());
    assert_eq!(deleted.json()["deleted"], true);
}

async fn get_org(store: &Store) -> String {
    store.find_org_by_name("default").await.unwrap().unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_belong_to_their_person() {
    let w = world().await;
    let (_, alice) = signup(&w.app, "alice@example.com").await;
    let (_, bob) = join(&w, &alice, "bob@example.com").await;
    let created = json_call(
        &w.app,
        Method::POST,
        "/api/conversations",
        &alice,
        json!({"title": "  Plans  ", "model": MODEL, "system_prompt": "Be brief.",
               "settings": {"temperature": 0.3, "max_tokens": 64}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let conv = created.json();
    assert_eq!(conv["title"], "Plans");
    assert_eq!(conv["settings"]["max_tokens"], 64);
    let id = conv["id"].as_str().unwrap();
    let base = format!("/api/conversations/{id}");
    let messages = format!("{base}/messages");
    let user = json_call(
        &w.app,
        Method::POST,
        &messages,
        &alice,
        json!({"role": "user", "content": "Hello"}),
    )
    .await;
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.text());
    let answer = json_call(
        &w.app,
        Method::POST,
        &messages,
        &alice,
        json!({"role": "assistant", "content": "Hi!", "request_id": "req_1",
               "prompt_tokens": 3, "completion_tokens": 2}),
    )
    .await;
    let answer_id = answer.json()["id"].as_str().unwrap().to_owned();
    let full = get(&w.app, &base, &alice).await.json();
    assert_eq!(full["messages"].as_array().unwrap().len(), 2);
    assert_eq!(full["messages"][1]["request_id"], "req_1");
    assert_eq!(full["messages"][1]["completion_tokens"], 2);

    // Bob sees nothing of it: every route is a 404 (or an empty list).
    let list = get(&w.app, "/api/conversations", &bob).await.json();
    assert_eq!(list["data"], json!([]));
    assert_eq!(get(&w.app, &base, &bob).await.status, StatusCode::NOT_FOUND);
    for (method, path, body) in [
        (Method::PATCH, base.clone(), json!({"title": "x"})),
        (Method::DELETE, base.clone(), json!({})),
        (
            Method::POST,
            messages.clone(),
            json!({"role": "user", "content": "x"}),
        ),
        (
            Method::POST,
            format!("{base}/truncate"),
            json!({"from_message_id": answer_id}),
        ),
    ] {
        let answer = json_call(&w.app, method.clone(), &path, &bob, body).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
        answer.error();
    }

    // Alice: search, rename, truncate, refusals, delete.
    let found = get(&w.app, "/api/conversations?search=hello", &alice).await;
    assert_eq!(found.json()["data"][0]["id"], id);
    let none = get(&w.app, "/api/conversations?search=zzz", &alice).await;
    assert_eq!(none.json()["data"], json!([]));
    let bad_limit = get(&w.app, "/api/conversations?limit=many", &alice).await;
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);
    bad_limit.error();
    let renamed = json_call(
        &w.app,
        Method::PATCH,
        &base,
        &alice,
        json!({"title": "Trips"}),
    )
    .await;
    assert_eq!(renamed.json()["title"], "Trips");
    let empty = json_call(&w.app, Method::PATCH, &base, &alice, json!({"title": " "})).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(empty.error()["param"], "title");
    let unknown = json_call(
        &w.app,
        Method::PATCH,
        &base,
        &alice,
        json!({"colour": "red"}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let role = json_call(
        &w.app,
        Method::POST,
        &messages,
        &alice,
        json!({"role": "tool", "content": "x"}),
    )
    .await;
    assert_eq!(role.status, StatusCode::BAD_REQUEST);
    role.error();
    let cut = json_call(
        &w.app,
        Method::POST,
        &format!("{base}/truncate"),
        &alice,
        json!({"from_message_id": answer_id}),
    )
    .await;
    assert_eq!(cut.json()["deleted_messages"], 1);
    let full = get(&w.app, &base, &alice).await.json();
    assert_eq!(full["messages"].as_array().unwrap().len(), 1);
    let gone = json_call(&w.app, Method::DELETE, &base, &alice, json!({})).await;
    assert_eq!(gone.status, StatusCode::OK);
    assert_eq!(
        get(&w.app, &base, &alice).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_has_no_conversations_and_the_admin_api_follows_the_role() {
    let w = world().await;
    let (_, alice) = signup(&w.app, "alice@example.com").await;
    let (_, bob) = join(&w, &alice, "bob@example.com").await;
    let org = get_org(&w.store).await;
    let project = w.store.create_project(&org, "p").await.unwrap();
    let new = NewApiKey {
        project_id: project.id,
        name: "k".into(),
        ..NewApiKey::default()
    };
    let (_, secret) = w.store.create_key(&org, &new).await.unwrap();
    let request = Request::builder()
        .uri("/api/conversations")
        .header("authorization", format!("Bearer {}", secret.expose()))
        .body(Body::empty())
        .unwrap();
    let answer = send(&w.app, request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    answer.error();
    // The owner's session may use the admin API; a member's may not.
    let owner = get(&w.app, "/v1/organization/projects", &alice).await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text());
    let member = get(&w.app, "/v1/organization/projects", &bob).await;
    assert_eq!(member.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_with_the_session_cookie_is_billed_to_the_person() {
    let w = world().await;
    let (me, alice) = signup(&w.app, "alice@example.com").await;
    let user_id = me.json()["user"]["id"].as_str().unwrap().to_owned();
    let body = common::chat("Say hi", json!({"max_tokens": 3, "temperature": 0}));
    let answer = json_call(&w.app, Method::POST, "/v1/chat/completions", &alice, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let org = get_org(&w.store).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let rows = loop {
        let rows = w
            .store
            .list_usage(&org, 0, i64::MAX, None, 10)
            .await
            .unwrap();
        if !rows.is_empty() || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(rows.len(), 1, "one ledger row");
    let row = &rows[0].usage;
    assert_eq!(row.user_id.as_deref(), Some(user_id.as_str()));
    assert_eq!(
        row.api_key_id.as_deref(),
        Some(format!("session:{user_id}").as_str())
    );
    let chat_project = w
        .store
        .find_project_by_name(&org, "chat")
        .await
        .unwrap()
        .expect("the chat project was created");
    assert_eq!(row.project_id.as_deref(), Some(chat_project.id.as_str()));
    // The person's quota counts it.
    let me = get(&w.app, "/api/me", &alice).await.json();
    assert_eq!(me["quota"]["used"]["messages"], 1, "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_with_a_strict_csp() {
    let w = world().await;
    let page = call(&w.app, Method::GET, "/", None, None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert!(csp.contains("object-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(page.text().contains("/assets/app.js"));
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/vendor/preact/preact.module.js", "text/javascript"),
        ("/assets/vendor/dompurify/LICENSE", "text/plain"),
        ("/assets/vendor/VERSIONS", "text/plain"),
    ] {
        let answer = call(&w.app, Method::GET, path, None, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    let missing = call(
        &w.app,
        Method::GET,
        "/assets/../Cargo.toml",
        None,
        None,
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let missing = call(&w.app, Method::GET, "/assets/nope.js", None, None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    missing.error();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_the_web_api_is_a_404() {
    let app = common::app();
    let answer = common::post(
        &app,
        "/api/auth/signup",
        json!({"email": "a@example.com", "password": "long enough"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    answer.error();
    let me = common::get(&app, "/api/me").await;
    assert_eq!(me.status, StatusCode::NOT_FOUND);
    me.error();
    // The page itself is still served.
    assert_eq!(common::get(&app, "/").await.status, StatusCode::OK);
}

/// The local org's audit entries with this action.
async fn audited(store: &Store, org: &str, action: &str) -> Vec<store::AuditEntry> {
    let all = store.list_audit(org, None, 1000).await.unwrap();
    all.into_iter()
        .filter(|e| e.entry.action == action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_roles_and_members_are_refused_with_403() {
    let w = world().await;
    let (_, alice) = signup(&w.app, "alice@example.com").await;
    let (bob_answer, bob) = join(&w, &alice, "bob@example.com").await;
    let bob_id = bob_answer.json()["user"]["id"].as_str().unwrap().to_owned();
    let alice_id = get(&w.app, "/api/me", &alice).await.json()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org = get_org(&w.store).await;

    // A member may not see or change anything.
    for path in [
        "/api/admin/members",
        "/api/admin/plans",
        "/api/admin/prices",
    ] {
        let refused = get(&w.app, path, &bob).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(refused.json()["error"]["type"], "permission_error");
    }
    let path = format!("/api/admin/members/{alice_id}");
    let refused = json_call(
        &w.app,
        Method::PATCH,
        &path,
        &bob,
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let list = get(&w.app, "/api/admin/members", &alice).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let data = list.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["role"], "member");
    assert_eq!(data[1]["plan"], "free");

    // Promote Bob; he then sees the admin API; the change is audited.
    let path = format!("/api/admin/members/{bob_id}");
    let done = json_call(
        &w.app,
        Method::PATCH,
        &path,
        &alice,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(get(&w.app, "/api/me", &bob).await.json()["admin"], true);
    assert_eq!(
        get(&w.app, "/api/admin/members", &bob).await.status,
        StatusCode::OK
    );
    let entries = audited(&w.store, &org, "member.role_changed").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.actor, format!("user:{alice_id}"));
    assert_eq!(entries[0].entry.before, Some(json!({"role": "member"})));
    assert_eq!(entries[0].entry.after, Some(json!({"role": "admin"})));

    // An admin may not touch an owner; an unknown role or member is refused.
    let owner = format!("/api/admin/members/{alice_id}");
    let refused = json_call(
        &w.app,
        Method::PATCH,
        &owner,
        &bob,
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    let bad = json_call(
        &w.app,
        Method::PATCH,
        &path,
        &alice,
        json!({"role": "king"}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown = json_call(
        &w.app,
        Method::PATCH,
        "/api/admin/members/nobody",
        &alice,
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text());

    // The last owner can be neither demoted nor removed.
    let last = json_call(
        &w.app,
        Method::PATCH,
        &owner,
        &alice,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(last.status, StatusCode::BAD_REQUEST, "{}", last.text());
    assert!(last.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("last owner"));
    let last = call(
        &w.app,
        Method::DELETE,
        &owner,
        Some(&alice),
        Some("application/json"),
        None,
    )
    .await;
    assert_eq!(last.status, StatusCode::BAD_REQUEST, "{}", last.text());

    // Removing Bob ends his access.
    let gone = call(
        &w.app,
        Method::DELETE,
        &path,
        Some(&alice),
        Some("application/json"),
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.text());
    assert_eq!(audited(&w.store, &org, "member.removed").await.len(), 1);
    assert_ne!(get(&w.app, "/api/me", &bob).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_assigns_plans_and_sets_prices_with_audit() {
    let w = world().await;
    let (_, alice) = signup(&w.app, "alice@example.com").await;
    let (bob_answer, bob) = join(&w, &alice, "bob@example.com").await;
    let bob_id = bob_answer.json()["user"]["id"].as_str().unwrap().to_owned();
    let org = get_org(&w.store).await;

    let plans = get(&w.app, "/api/admin/plans", &alice).await.json();
    let ids: Vec<&str> = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"free") && ids.contains(&"plus"), "{ids:?}");

    let path = format!("/api/admin/members/{bob_id}/plan");
    let done = json_call(&w.app, Method::PUT, &path, &alice, json!({"plan": "plus"})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(
        get(&w.app, "/api/me", &bob).await.json()["plan"]["id"],
        "plus"
    );
    let entries = audited(&w.store, &org, "plan.assigned").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.after, Some(json!({"plan": "plus"})));
    let bad = json_call(&w.app, Method::PUT, &path, &alice, json!({"plan": "gold"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());

    // Prices: USD per 1M tokens, exact; the default cached price is the input's.
    let body = json!({"model": "m", "input": "0.15", "output": "0.6"});
    let set = json_call(&w.app, Method::POST, "/api/admin/prices", &alice, body).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    let prices = w.store.list_prices().await.unwrap();
    let price = prices.iter().find(|p| p.model == "m").unwrap();
    assert_eq!(price.input, 150_000, "0.15 USD / 1M tokens in picodollars");
    assert_eq!(price.cached_input, 150_000);
    assert_eq!(price.output, 600_000);
    let listed = get(&w.app, "/api/admin/prices", &alice).await.json();
    let row = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "m")
        .unwrap()
        .clone();
    assert_eq!(row["input_per_1m_usd"], "0.150000");
    assert_eq!(audited(&w.store, "*", "price.set").await.len(), 1);
    for body in [
        json!({"model": "m", "input": "-1", "output": "1"}),
        json!({"model": "m", "input": "x", "output": "1"}),
        json!({"model": " ", "input": "1", "output": "1"}),
        json!({"model": "m", "input": "1", "output": "1", "per": "1g"}),
    ] {
        let bad = json_call(&w.app, Method::POST, "/api/admin/prices", &alice, body).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    }
    let body = json!({"model": "m", "input": "1", "output": "1"});
    let refused = json_call(&w.app, Method::POST, "/api/admin/prices", &bob, body).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_new_people_wait_until_an_admin_approves_or_rejects_them() {
    let w = world().await;
    // The first person is still the owner, with a session at once.
    let (first, alice) = signup(&w.app, "alice@example.com").await;
    assert_eq!(first.json()["role"], "owner");
    let alice_id = first.json()["user"]["id"].as_str().unwrap().to_owned();
    let org = get_org(&w.store).await;

    let pending = try_signup(&w.app, "bob@example.com").await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text());
    assert!(pending.headers.get("set-cookie").is_none(), "no session");
    let body = pending.json();
    assert_eq!(body["status"], "pending");
    let bob_id = body["user"]["id"].as_str().unwrap().to_owned();
    // The right password says approval is pending; a wrong one is a 401.
    let early = login(&w.app, "bob@example.com", "correct horse").await;
    assert_eq!(early.status, StatusCode::FORBIDDEN, "{}", early.text());
    assert!(early.headers.get("set-cookie").is_none());
    assert!(early.error()["message"]
        .as_str()
        .unwrap()
        .contains("waiting for approval"));
    let wrong = login(&w.app, "bob@example.com", "wrong password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let again = try_signup(&w.app, "Bob@example.com").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error()["param"], "email");

    let carol = try_signup(&w.app, "carol@example.com").await;
    assert_eq!(carol.status, StatusCode::ACCEPTED);
    let carol_id = carol.json()["user"]["id"].as_str().unwrap().to_owned();
    let list = get(&w.app, "/api/admin/pending", &alice).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let list = list.json();
    let emails: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["bob@example.com", "carol@example.com"]);
    assert!(list["data"][0]["requested_at"].is_i64());
    let members = get(&w.app, "/api/admin/members", &alice).await.json();
    assert_eq!(
        members["data"].as_array().unwrap().len(),
        1,
        "not members yet"
    );

    // Approving makes Bob a member who can sign in; it is audited.
    let path = format!("/api/admin/pending/{bob_id}/approve");
    let approved = json_call(&w.app, Method::POST, &path, &alice, json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    assert_eq!(approved.json()["role"], "member");
    let twice = json_call(&w.app, Method::POST, &path, &alice, json!({})).await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND, "{}", twice.text());
    let entries = audited(&w.store, &org, "member.approved").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.actor, format!("user:{alice_id}"));
    assert_eq!(entries[0].entry.target, bob_id);
    assert_eq!(entries[0].entry.after, Some(json!({"role": "member"})));
    let signed_in = login(&w.app, "bob@example.com", "correct horse").await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text());
    assert_eq!(signed_in.json()["role"], "member");
    let bob = session_of(&signed_in);

    // A member may neither see nor decide the queue.
    assert_eq!(
        get(&w.app, "/api/admin/pending", &bob).await.status,
        StatusCode::FORBIDDEN
    );
    let carol_path = format!("/api/admin/pending/{carol_id}");
    for (method, path) in [
        (Method::POST, format!("{carol_path}/approve")),
        (Method::DELETE, carol_path.clone()),
    ] {
        let refused = json_call(&w.app, method, &path, &bob, json!({})).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }

    // Rejecting Carol deletes her request and account, audited; she may
    // sign up again.
    let rejected = json_call(&w.app, Method::DELETE, &carol_path, &alice, json!({})).await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.text());
    assert_eq!(rejected.json()["deleted"], true);
    let entries = audited(&w.store, &org, "member.rejected").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.target, carol_id);
    assert_eq!(
        entries[0].entry.before.as_ref().unwrap()["email"],
        "carol@example.com"
    );
    let gone = login(&w.app, "carol@example.com", "correct horse").await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    let list = get(&w.app, "/api/admin/pending", &alice).await.json();
    assert_eq!(list["data"], json!([]));
    assert_eq!(
        try_signup(&w.app, "carol@example.com").await.status,
        StatusCode::ACCEPTED
    );
    let unknown = json_call(
        &w.app,
        Method::POST,
        "/api/admin/pending/user_nobody/approve",
        &alice,
        json!({}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_signup_lets_only_the_first_person_in() {
    let w = world_with(|s| s.with_accounts(Accounts::new(Signup::Closed))).await;
    let (first, _) = signup(&w.app, "alice@example.com").await;
    assert_eq!(first.json()["role"], "owner");
    let refused = try_signup(&w.app, "bob@example.com").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert!(refused.error()["message"]
        .as_str()
        .unwrap()
        .contains("closed"));
    assert!(refused.headers.get("set-cookie").is_none());
    assert_eq!(
        login(&w.app, "bob@example.com", "correct horse")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

/// A world whose sign-in throttling reads `clock`.
async fn throttled_world(clock: &Clock, proxies: &str) -> World {
    let (clock, proxies): (Clock, TrustedProxies) = (clock.clone(), proxies.parse().unwrap());
    world_with(move |s| {
        s.with_accounts(Accounts::default().with_clock(clock))
            .with_trusted_proxies(proxies)
    })
    .await
}

/// Asserts a 429 `rate_limit_exceeded` with `retry-after: secs` and no
/// session.
fn assert_locked(answer: &Answer, secs: u64) {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.text()
    );
    assert_eq!(answer.headers["retry-after"], secs.to_string().as_str());
    assert!(answer.headers.get("set-cookie").is_none());
    let error = answer.error();
    assert_eq!(error["type"], "rate_limit_error");
    assert_eq!(error["code"], "rate_limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_backs_off_exponentially_per_account_and_the_right_password_works_after_the_wait() {
    let clock = Clock::manual(1_700_000_000_000);
    let w = throttled_world(&clock, "").await;
    signup(&w.app, "alice@example.com").await;
    let org = get_org(&w.store).await;
    let (right, wrong) = ("correct horse", "wrong password");

    for _ in 0..5 {
        let answer = login(&w.app, "alice@example.com", wrong).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    }
    // Locked for a minute: even the right password waits.
    let locked = login(&w.app, "Alice@Example.com", right).await;
    assert_locked(&locked, 60);
    assert!(locked.error()["message"]
        .as_str()
        .unwrap()
        .contains("try again in 60 seconds"));
    // Other accounts are not (and without a peer nothing counts per address).
    let other = login(&w.app, "nobody@example.com", wrong).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    clock.advance(Duration::from_secs(59));
    assert_locked(&login(&w.app, "alice@example.com", right).await, 1);
    clock.advance(Duration::from_secs(1));

    // Each failure after a lock locks again for twice as long, up to 15 min.
    for wait in [120, 240, 480, 900, 900] {
        let answer = login(&w.app, "alice@example.com", wrong).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
        assert_locked(&login(&w.app, "alice@example.com", wrong).await, wait);
        clock.advance(Duration::from_secs(wait));
    }
    // After the wait the right password works, and clears the failures:
    // the next lock comes after five failures again, for a minute.
    let signed_in = login(&w.app, "alice@example.com", right).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text());
    session_of(&signed_in);
    for _ in 0..5 {
        let answer = login(&w.app, "alice@example.com", wrong).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    }
    assert_locked(&login(&w.app, "alice@example.com", right).await, 60);

    // Every failure and every lock is audited; refusals while locked are not.
    let failed = audited(&w.store, &org, "sign_in.failed").await;
    assert_eq!(failed.len(), 5 + 1 + 5 + 5);
    let alice_failure = &failed[0].entry;
    assert_eq!(alice_failure.target, "alice@example.com");
    assert_eq!(alice_failure.actor, "address:unknown");
    let after = alice_failure.after.as_ref().unwrap();
    assert_eq!(after["failures"], 1);
    assert_eq!(after["address"], Value::Null);
    let locks = audited(&w.store, &org, "sign_in.locked_out").await;
    let seconds: Vec<i64> = locks
        .iter()
        .map(|e| {
            e.entry.after.as_ref().unwrap()["lock_seconds"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seconds, [60, 120, 240, 480, 900, 900, 60]);
    assert!(locks
        .iter()
        .all(|e| e.entry.target == "account:alice@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_throttled_per_client_address_and_forwarded_for_is_not_believed() {
    let clock = Clock::manual(1_700_000_000_000);
    let w = throttled_world(&clock, "").await;
    signup(&w.app, "alice@example.com").await;
    let org = get_org(&w.store).await;
    let attacker = Some("203.0.113.7:5000");
    // Twenty failures from one address, each on another account (so no
    // account locks), each claiming another X-Forwarded-For.
    for i in 0..20 {
        let email = format!("guess{i}@example.com");
        let hop = format!("198.51.100.{i}");
        let answer = login_from(&w.app, &email, "wrong password", attacker, Some(&hop)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{i}: {}",
            answer.text()
        );
    }
    let right = "correct horse";
    let locked = login_from(
        &w.app,
        "alice@example.com",
        right,
        Some("203.0.113.7:6000"),
        Some("192.0.2.1"),
    )
    .await;
    assert_locked(&locked, 60);
    assert!(locked.error()["message"]
        .as_str()
        .unwrap()
        .contains("address"));
    // Another address, and a request without a peer, are not locked; nor
    // is Alice's account by the refused attempt.
    let elsewhere = login_from(
        &w.app,
        "alice@example.com",
        right,
        Some("203.0.113.8:5000"),
        None,
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.text());
    assert_eq!(
        login(&w.app, "alice@example.com", right).await.status,
        StatusCode::OK
    );
    let locks = audited(&w.store, &org, "sign_in.locked_out").await;
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].entry.target, "address:203.0.113.7");
    assert_eq!(locks[0].entry.actor, "address:203.0.113.7");
    // After the wait, the address may sign in again.
    clock.advance(Duration::from_secs(60));
    let later = login_from(&w.app, "alice@example.com", right, attacker, None).await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_forwarded_for_names_the_client() {
    let clock = Clock::manual(1_700_000_000_000);
    let w = throttled_world(&clock, "127.0.0.1").await;
    signup(&w.app, "alice@example.com").await;
    let proxy = Some("127.0.0.1:9000");
    for i in 0..20 {
        let email = format!("guess{i}@example.com");
        let answer = login_from(&w.app, &email, "wrong", proxy, Some("203.0.113.7")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    }
    let right = "correct horse";
    // That client is locked, even when it makes up an entry on the left;
    // another client behind the same proxy is not.
    let locked = login_from(
        &w.app,
        "alice@example.com",
        right,
        proxy,
        Some("198.51.100.1, 203.0.113.7"),
    )
    .await;
    assert_locked(&locked, 60);
    let other = login_from(
        &w.app,
        "alice@example.com",
        right,
        proxy,
        Some("203.0.113.99"),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
}
