//! The web app's HTTP side on a real SQLite store: sign-up, sign-in and
//! sign-out with the session cookie, `/api/me`, the CSRF rule for cookie
//! requests, conversations scoped to their person, the page's strict CSP,
//! a chat made with the cookie billed to the person, and the admin pages'
//! JSON (`/api/admin/…`: roles, removal, plans, prices, all audited).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use server::{AppState, Auth};
use store::{NewApiKey, Store};

use common::{send, Answer, MODEL};

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    app: Router,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let state = AppState::new([(MODEL.to_owned(), common::engine())]).with_auth(Auth::Keys {
        store: store.clone(),
        admin: None,
    });
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_signup_owns_the_default_org_later_ones_are_members() {
    let w = world().await;
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
    let (_, bob) = signup(&w.app, "bob@example.com").await;
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
    let (_, bob) = signup(&w.app, "bob@example.com").await;
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
    let (bob_answer, bob) = signup(&w.app, "bob@example.com").await;
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
    let (bob_answer, bob) = signup(&w.app, "bob@example.com").await;
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
