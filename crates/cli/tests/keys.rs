//! API keys and the usage ledger through the real binary: `keys create`
//! prints only the secret; a server with a key asks for it (401 without);
//! each request writes exactly one ledger row whose tokens and cost match
//! the usage the client got, a client that leaves mid-stream is billed as
//! `cancelled`; a revoked key is refused; with no key, serve runs open on
//! loopback and refuses to start on any other address.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use store::{Store, UsageRecord};
use support::Server;

const MODEL: &str = "smollm2-135m-instruct";

fn parlance(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .env_remove("PARLANCE_ADMIN_KEY")
        .env_remove("PARLANCE_DATABASE_URL")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

/// Starts `serve` on `host`, port 0; returns it and its address.
fn serve(data_dir: &Path, host: &str) -> (Server, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .env_remove("PARLANCE_ADMIN_KEY")
        .env_remove("PARLANCE_DATABASE_URL")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "serve",
            "--host",
            host,
            "--port",
            "0",
            "--threads",
            "2",
            "--model",
        ])
        .arg(testkit::model_path(testkit::SMOLLM2))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (server, addr, lines) = Server::listening(child);
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    (server, addr)
}

fn http(addr: &str, path: &str, key: Option<&str>, request_id: &str, body: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    let method = if body.is_empty() { "GET" } else { "POST" };
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         {auth}x-request-id: {request_id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    socket
}

/// Status and body of a whole answer.
fn call(addr: &str, path: &str, key: Option<&str>, request_id: &str, body: &str) -> (u16, String) {
    let mut socket = http(addr, path, key, request_id, body);
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn store_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("parlance.db").display()
    )
}

/// Waits up to 30 s for the ledger row of `request_id`.
fn ledger_row(data_dir: &Path, org_id: &str, request_id: &str) -> UsageRecord {
    runtime().block_on(async {
        let store = Store::connect(&store_url(data_dir)).await.unwrap();
        for _ in 0..300 {
            if let Ok(row) = store.get_usage(org_id, request_id).await {
                store.close().await;
                return row;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no ledger row for {request_id}");
    })
}

fn ledger_rows(data_dir: &Path, org_id: &str) -> Vec<UsageRecord> {
    runtime().block_on(async {
        let store = Store::connect(&store_url(data_dir)).await.unwrap();
        let rows = store
            .list_usage(org_id, i64::MIN, i64::MAX, None, 1000)
            .await
            .unwrap();
        store.close().await;
        rows
    })
}

fn create_key(data_dir: &Path) -> String {
    let out = parlance(
        data_dir,
        &[
            "keys",
            "create",
            "--org",
            "acme",
            "--project",
            "web",
            "--name",
            "ci",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout:?}");
    assert!(lines[0].starts_with("sk-"), "{stdout:?}");
    lines[0].to_owned()
}

fn reference_cost(prompt: u64, completion: u64) -> i64 {
    billing::cost(
        billing::Usage::new(prompt, completion),
        &billing::ModelPrices::reference(),
    )
    .unwrap()
    .to_i64_units()
    .unwrap()
}

#[test]
fn keys_guard_the_api_and_every_request_is_in_the_ledger_once() {
    let data = tempfile::tempdir().unwrap();
    let secret = create_key(data.path());
    let second = create_key(data.path());
    assert_ne!(secret, second);
    let key = runtime().block_on(async {
        let store = Store::connect(&store_url(data.path())).await.unwrap();
        let key = store.authenticate_key(&secret).await.unwrap();
        store.close().await;
        key
    });

    let listed = parlance(data.path(), &["keys", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains(&key.id), "{listed}");
    assert!(!listed.contains(&secret), "the secret is never listed");
    assert!(listed.contains(&key.redacted), "{listed}");

    let (server, addr) = serve(data.path(), "127.0.0.1");
    let chat = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 3,
    })
    .to_string();

    // No key, a wrong key: 401 with the error object.
    let (status, body) = call(&addr, "/v1/chat/completions", None, "r-nokey", &chat);
    assert_eq!(status, 401, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key", "{body}");
    let (status, _) = call(&addr, "/v1/models", Some("sk-wrong"), "r-wrong", "");
    assert_eq!(status, 401);
    let (status, _) = call(&addr, "/v1/completions", None, "r-nokey2", &chat);
    assert_eq!(status, 401);
    // /health stays open.
    let (status, _) = call(&addr, "/health", None, "r-health", "");
    assert_eq!(status, 200);

    // With the key: 200 and one ledger row matching the usage returned.
    let (status, body) = call(&addr, "/v1/chat/completions", Some(&secret), "r-ok", &chat);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let prompt = answer["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = answer["usage"]["completion_tokens"].as_u64().unwrap();
    let row = ledger_row(data.path(), &key.org_id, "r-ok").usage;
    assert_eq!(row.prompt_tokens as u64, prompt);
    assert_eq!(row.completion_tokens as u64, completion);
    assert_eq!(row.cost, reference_cost(prompt, completion));
    assert!(row.cost > 0);
    assert_eq!(row.status, "ok");
    assert_eq!(row.api_key_id.as_deref(), Some(key.id.as_str()));
    assert_eq!(row.project_id.as_deref(), Some(key.project_id.as_str()));
    assert_eq!(row.backend, "local");
    assert_eq!(row.model, MODEL);
    assert!(row.finish_reason.is_some());

    // The same request id again writes no second row.
    let (status, _) = call(&addr, "/v1/chat/completions", Some(&secret), "r-ok", &chat);
    assert_eq!(status, 400);

    // A stream the client leaves after a few chunks: one `cancelled` row
    // billing at least the tokens it received.
    let long = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": 4000,
        "stream": true,
        "logit_bias": {"0": -100, "2": -100},
    })
    .to_string();
    let mut socket = http(
        &addr,
        "/v1/chat/completions",
        Some(&secret),
        "r-gone",
        &long,
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen)
        .matches("\"content\":")
        .count()
        < 4
    {
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("[DONE]"), "{head}");
    // Deltas with text (the opening role delta has empty content).
    let received = head
        .matches("\"content\":\"")
        .count()
        .saturating_sub(head.matches("\"content\":\"\"").count());
    drop(socket);
    let row = ledger_row(data.path(), &key.org_id, "r-gone").usage;
    assert_eq!(row.status, "cancelled");
    assert!(
        row.completion_tokens as usize >= received,
        "{} < {received}",
        row.completion_tokens
    );
    assert_eq!(
        row.cost,
        reference_cost(row.prompt_tokens as u64, row.completion_tokens as u64)
    );

    // A streamed request that runs to the end, n = 2: one row, the sum.
    let streamed = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 3,
        "n": 2,
        "stream": true,
        "stream_options": {"include_usage": true},
    })
    .to_string();
    let (status, body) = call(
        &addr,
        "/v1/chat/completions",
        Some(&secret),
        "r-stream",
        &streamed,
    );
    assert_eq!(status, 200, "{body}");
    let usage: Value = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| !v["usage"].is_null())
        .map(|v| v["usage"].clone())
        .expect("a usage chunk");
    let row = ledger_row(data.path(), &key.org_id, "r-stream").usage;
    assert_eq!(row.status, "ok");
    assert_eq!(
        row.completion_tokens as u64,
        usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        row.prompt_tokens as u64,
        usage["prompt_tokens"].as_u64().unwrap()
    );

    // Legacy completions are metered too.
    let legacy = json!({"model": MODEL, "prompt": "Hello", "max_tokens": 2}).to_string();
    let (status, body) = call(&addr, "/v1/completions", Some(&secret), "r-legacy", &legacy);
    assert_eq!(status, 200, "{body}");
    let row = ledger_row(data.path(), &key.org_id, "r-legacy").usage;
    assert_eq!(row.status, "ok");

    // Every request once; refused ones (401, reused id) wrote nothing.
    let ids: Vec<String> = ledger_rows(data.path(), &key.org_id)
        .into_iter()
        .map(|r| r.usage.request_id)
        .collect();
    assert_eq!(ids, ["r-ok", "r-gone", "r-stream", "r-legacy"]);

    // A revoked key is refused at once.
    let out = parlance(data.path(), &["keys", "revoke", &key.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, body) = call(
        &addr,
        "/v1/chat/completions",
        Some(&secret),
        "r-revoked",
        &chat,
    );
    assert_eq!(status, 401, "{body}");
    let (status, _) = call(&addr, "/v1/models", Some(&second), "r-second", "");
    assert_eq!(status, 200);
    drop(server);
}

#[test]
fn without_keys_serve_runs_open_on_loopback_only() {
    let data = tempfile::tempdir().unwrap();
    let out = parlance(
        data.path(),
        &[
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--model",
            "/no/such.gguf",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing"), "{stderr}");

    // A reservation a crash left open is settled at start.
    runtime().block_on(async {
        let store = Store::connect(&store_url(data.path())).await.unwrap();
        let reservation = store::NewReservation {
            request_id: "crashed-1".into(),
            org_id: "org_crashed".into(),
            amount: 1000,
            created_at: store::now_ms(),
            ..store::NewReservation::default()
        };
        store.reserve(&reservation).await.unwrap();
        store.close().await;
    });

    let (_server, addr) = serve(data.path(), "127.0.0.1");
    let row = ledger_row(data.path(), "org_crashed", "crashed-1").usage;
    assert_eq!((row.status.as_str(), row.cost), ("interrupted", 0));
    let chat = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
    })
    .to_string();
    let (status, body) = call(&addr, "/v1/chat/completions", None, "open-1", &chat);
    assert_eq!(status, 200, "{body}");
    // SDKs always send some key: an unknown one is ignored when open.
    let (status, body) = call(
        &addr,
        "/v1/chat/completions",
        Some("sk-any"),
        "open-2",
        &chat,
    );
    assert_eq!(status, 200, "{body}");
    // Both metered under the built-in `local` organisation and key.
    for id in ["open-1", "open-2"] {
        let (org, key) = ledger_org_and_key(data.path(), id);
        assert_eq!(key, "local");
        assert_eq!(org, ledger_org_and_key(data.path(), "open-1").0);
    }
}

/// The organisation and key of the ledger row of `request_id`, in whichever
/// organisation holds it (exactly one must), waiting up to 30 s.
fn ledger_org_and_key(data_dir: &Path, request_id: &str) -> (String, String) {
    runtime().block_on(async {
        let store = Store::connect(&store_url(data_dir)).await.unwrap();
        for _ in 0..300 {
            let mut found = Vec::new();
            for org in store.list_orgs().await.unwrap() {
                if let Ok(row) = store.get_usage(&org.id, request_id).await {
                    found.push(row.usage);
                }
            }
            assert!(found.len() <= 1, "{request_id} in several organisations");
            if let Some(usage) = found.pop() {
                store.close().await;
                return (usage.org_id, usage.api_key_id.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no ledger row for {request_id}");
    })
}

/// Starts `serve` on loopback with `PARLANCE_ADMIN_KEY` set.
fn serve_with_admin_key(data_dir: &Path, admin_key: &str) -> (Server, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .env("PARLANCE_ADMIN_KEY", admin_key)
        .env_remove("PARLANCE_DATABASE_URL")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--port", "0", "--threads", "2", "--model"])
        .arg(testkit::model_path(testkit::SMOLLM2))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (server, addr, lines) = Server::listening(child);
    std::thread::spawn(move || lines.for_each(drop));
    (server, addr)
}

/// The requests and input tokens a usage page reports for `api_key_id`.
fn usage_of(page: &Value, api_key_id: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for bucket in page["data"].as_array().expect("buckets") {
        for result in bucket["results"].as_array().expect("results") {
            if result["api_key_id"] == api_key_id {
                totals.0 += result["num_model_requests"].as_u64().unwrap();
                totals.1 += result["input_tokens"].as_u64().unwrap();
            }
        }
    }
    totals
}

/// Regression: `keys create` without `--org` put keys in an organisation
/// named `default` while `PARLANCE_ADMIN_KEY` and the web app used `local`,
/// so a newcomer's usage showed nowhere. Now all of them share the
/// installation's one default organisation.
#[test]
fn a_cli_key_is_billed_where_the_admin_key_and_the_web_app_look() {
    let data = tempfile::tempdir().unwrap();
    let out = parlance(data.path(), &["keys", "create", "--name", "newcomer"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let admin_key = "sk-admin-test-0123456789";
    let (_server, addr) = serve_with_admin_key(data.path(), admin_key);

    let chat = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
    })
    .to_string();
    let (status, body) = call(&addr, "/v1/chat/completions", Some(&secret), "r-cli", &chat);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let prompt = answer["usage"]["prompt_tokens"].as_u64().unwrap();

    // The ledger row's key, to find it in the usage pages.
    let url = store_url(data.path());
    let (key_id, cost) = runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let org = store.find_org_by_name("default").await.unwrap().unwrap();
        let row = store.get_usage(&org.id, "r-cli").await.unwrap();
        store.close().await;
        (row.usage.api_key_id.unwrap(), row.usage.cost)
    });

    // The admin key's usage and costs see it.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let usage_path =
        format!("/v1/organization/usage/completions?start_time={since}&group_by=api_key_id");
    let (status, body) = call(&addr, &usage_path, Some(admin_key), "r-usage", "");
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(usage_of(&page, &key_id), (1, prompt), "{body}");
    let costs_path = format!("/v1/organization/costs?start_time={since}");
    let (status, body) = call(&addr, &costs_path, Some(admin_key), "r-costs", "");
    assert_eq!(status, 200, "{body}");
    // The amount is the row's exact cost (integer picodollars, written as
    // an exact decimal: compared as text, never through a float).
    assert!(cost > 0);
    let amount = format!(
        "\"value\":{}",
        billing::Money::from_i64_units(cost).to_decimal_string()
    );
    assert!(
        body.contains(&amount),
        "the CLI key's spend is in the costs: {body}"
    );

    // The web app: the first person to sign up owns the same organisation,
    // and its Usage page (which reads the same API with the session
    // cookie) sees the CLI key's request.
    let signup = json!({"email": "owner@example.com", "password": "a-long-password"}).to_string();
    let mut socket = TcpStream::connect(&addr).unwrap();
    write!(
        socket,
        "POST /api/auth/signup HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{signup}",
        signup.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let mut socket = TcpStream::connect(&addr).unwrap();
    write!(
        socket,
        "GET {usage_path} HTTP/1.1\r\nhost: test\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let page: Value = serde_json::from_str(body).unwrap();
    assert_eq!(usage_of(&page, &key_id), (1, prompt), "{body}");
}
