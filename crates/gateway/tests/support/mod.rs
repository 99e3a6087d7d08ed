//! Misbehaving upstreams on 127.0.0.1 for the gateway's tests, and
//! helpers to configure a gateway in front of them.
//!
//! [`Mock`] is a small HTTP/1.1 server written on raw Tokio sockets, so a
//! test controls every byte: it can answer well (whole or SSE), hang before
//! the head, stall or drop mid-stream, send 429/500/garbage, delay the
//! first token, replay a fixture — and be killed (listener and every open
//! connection closed) and restarted on the same port.

#![allow(dead_code)] // Each test binary uses a different part of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::{
    BackendConfig, BackendKind, BreakerConfig, GatewayConfig, HealthConfig, ModelConfig,
    RetryConfig, RoutingStrategy, TimeoutsConfig,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How a mock answers `POST …/chat/completions` (and `/messages`).
#[derive(Debug, Clone)]
pub enum Behavior {
    /// A good answer, whole or streamed as asked, of `words` words.
    Ok { words: usize },
    /// Read the request, never answer.
    HangBeforeHeaders,
    /// Stream the head and `words` words, then go silent.
    StallMidStream { words: usize },
    /// Stream the head and `words` words, then close the connection.
    DropMidStream { words: usize },
    /// 429 with `retry-after` (seconds) when given.
    RateLimited { retry_after: Option<u64> },
    /// This status with an OpenAI error body.
    Status(u16),
    /// 200 with a body that is not what was asked for.
    Garbage,
    /// Stream the head and the role chunk, wait, then answer normally.
    SlowFirstToken { delay: Duration, words: usize },
    /// Answer with this content type and body, as they are.
    Raw {
        content_type: &'static str,
        body: String,
    },
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method and path, e.g. `POST /v1/chat/completions`.
    pub line: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` if none or not JSON).
    pub body: Value,
}

struct Shared {
    name: String,
    behavior: Mutex<Behavior>,
    health_ok: Mutex<bool>,
    recorded: Mutex<Vec<Recorded>>,
    chat_requests: AtomicU64,
}

/// A mock upstream.
pub struct Mock {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Mock {
    /// Starts a mock named `name` on a free port.
    pub async fn start(name: &str, behavior: Behavior) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            behavior: Mutex::new(behavior),
            health_ok: Mutex::new(true),
            recorded: Mutex::new(Vec::new()),
            chat_requests: AtomicU64::new(0),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Mock {
            addr,
            shared,
            server: Mutex::new(Some(server)),
        }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Changes how it answers from now on.
    pub fn set(&self, behavior: Behavior) {
        *self.shared.behavior.lock().unwrap() = behavior;
    }

    /// Makes `GET /v1/models` answer 200 (true) or 503 (false).
    pub fn set_healthy(&self, healthy: bool) {
        *self.shared.health_ok.lock().unwrap() = healthy;
    }

    /// Chat requests received so far.
    pub fn chat_requests(&self) -> u64 {
        self.shared.chat_requests.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// Closes the listener and every open connection.
    pub fn kill(&self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        let server = tokio::spawn(serve(listener, self.shared.clone()));
        *self.server.lock().unwrap() = Some(server);
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port with nothing listening on it.
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/v1")
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((socket, _)) = accepted {
                    connections.spawn(connection(socket, shared.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(mut socket: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut socket, &mut buffer).await else {
            return;
        };
        shared.recorded.lock().unwrap().push(request.clone());
        let keep_open = respond(&mut socket, &shared, &request).await;
        if !keep_open {
            return;
        }
    }
}

async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Recorded> {
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let mut piece = [0u8; 8192];
        let n = socket.read(&mut piece).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&piece[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let mut piece = [0u8; 8192];
        let n = socket.read(&mut piece).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&piece[..n]);
    }
    let body =
        serde_json::from_slice(&buffer[body_start..body_start + length]).unwrap_or(Value::Null);
    buffer.drain(..body_start + length);
    let mut parts = request_line.split(' ');
    let line = format!("{} {}", parts.next()?, parts.next()?);
    Some(Recorded {
        line,
        headers,
        body,
    })
}

async fn write_whole(socket: &mut TcpStream, status: &str, extra: &str, body: &str) -> bool {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.is_ok()
        && socket.write_all(body.as_bytes()).await.is_ok()
}

async fn write_stream_head(socket: &mut TcpStream) -> bool {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await.is_ok()
}

/// Answers one request; `true` to keep the connection for the next.
async fn respond(socket: &mut TcpStream, shared: &Shared, request: &Recorded) -> bool {
    if request.line.starts_with("GET ") {
        let ok = *shared.health_ok.lock().unwrap();
        let (status, body) = if ok {
            ("200 OK", r#"{"object":"list","data":[]}"#)
        } else {
            ("503 Service Unavailable", r#"{"error":{"message":"down"}}"#)
        };
        return write_whole(socket, status, "", body).await;
    }
    shared.chat_requests.fetch_add(1, Ordering::SeqCst);
    let behavior = shared.behavior.lock().unwrap().clone();
    let stream = request.body["stream"] == true;
    let model = request.body["model"].as_str().unwrap_or("mock").to_owned();
    let answer = Answer {
        name: shared.name.clone(),
        model,
        include_usage: request.body["stream_options"]["include_usage"] == true,
    };
    match behavior {
        Behavior::Ok { words } if !stream => {
            write_whole(socket, "200 OK", "", &answer.whole(words).to_string()).await
        }
        Behavior::Ok { words } => {
            if write_stream_head(socket).await {
                let _ = socket.write_all(answer.all_events(words).as_bytes()).await;
            }
            false
        }
        Behavior::HangBeforeHeaders => {
            std::future::pending::<()>().await;
            false
        }
        Behavior::StallMidStream { words } | Behavior::DropMidStream { words } => {
            if write_stream_head(socket).await {
                let _ = socket
                    .write_all(answer.opening_events(words).as_bytes())
                    .await;
                let _ = socket.flush().await;
                if matches!(behavior, Behavior::StallMidStream { .. }) {
                    std::future::pending::<()>().await;
                }
            }
            false
        }
        Behavior::RateLimited { retry_after } => {
            let extra = retry_after.map_or(String::new(), |s| format!("retry-after: {s}\r\n"));
            let body = r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#;
            write_whole(socket, "429 Too Many Requests", &extra, body).await
        }
        Behavior::Status(code) => {
            let body =
                format!(r#"{{"error":{{"message":"mock status {code}","type":"server_error"}}}}"#);
            write_whole(socket, &format!("{code} Mock"), "", &body).await
        }
        Behavior::Garbage if !stream => write_whole(socket, "200 OK", "", "<html>not json").await,
        Behavior::Garbage => {
            if write_stream_head(socket).await {
                let _ = socket.write_all(b"data: {this is not json\n\n").await;
            }
            false
        }
        Behavior::SlowFirstToken { delay, words } => {
            if write_stream_head(socket).await {
                let _ = socket
                    .write_all(answer.event(&answer.role_chunk()).as_bytes())
                    .await;
                tokio::time::sleep(delay).await;
                let rest = answer.all_events(words);
                let rest = rest.split_once("\n\n").map_or("", |(_, r)| r).to_owned();
                let _ = socket.write_all(rest.as_bytes()).await;
            }
            false
        }
        Behavior::Raw { content_type, body } => {
            if content_type == "text/event-stream" {
                if write_stream_head(socket).await {
                    let _ = socket.write_all(body.as_bytes()).await;
                }
                false
            } else {
                write_whole(socket, "200 OK", "", &body).await
            }
        }
    }
}

/// Builds the mock's answers.
struct Answer {
    name: String,
    model: String,
    include_usage: bool,
}

impl Answer {
    fn words(&self, count: usize) -> Vec<String> {
        (0..count)
            .map(|i| {
                if i == 0 {
                    self.name.clone()
                } else {
                    format!(" w{i}")
                }
            })
            .collect()
    }

    fn whole(&self, words: usize) -> Value {
        json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.words(words).concat()},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": words, "total_tokens": 7 + words}
        })
    }

    fn chunk(&self, delta: Value, finish: Value) -> Value {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    }

    fn role_chunk(&self) -> Value {
        self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
    }

    fn event(&self, value: &Value) -> String {
        format!("data: {value}\n\n")
    }

    /// The role chunk and one chunk per word.
    fn opening_events(&self, words: usize) -> String {
        let mut out = self.event(&self.role_chunk());
        for word in self.words(words) {
            out.push_str(": keep-alive comment\n\n");
            out.push_str(&self.event(&self.chunk(json!({"content": word}), Value::Null)));
        }
        out
    }

    fn all_events(&self, words: usize) -> String {
        let mut out = self.opening_events(words);
        out.push_str(&self.event(&self.chunk(json!({}), json!("stop"))));
        if self.include_usage {
            out.push_str(&self.event(&json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": words, "total_tokens": 7 + words}
            })));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}

/// Short timeouts so that fault tests finish quickly.
pub fn short_timeouts() -> TimeoutsConfig {
    TimeoutsConfig {
        connect_ms: 1_000,
        headers_ms: 400,
        first_token_ms: 400,
        idle_ms: 400,
        request_ms: 2_000,
    }
}

/// An `openai` backend entry for `url`.
pub fn openai(id: &str, url: &str, priority: u32) -> BackendConfig {
    BackendConfig {
        id: Some(id.to_owned()),
        kind: BackendKind::Openai,
        base_url: Some(url.to_owned()),
        model: Some("upstream-model".to_owned()),
        api_key: Some("sk-test".to_owned()),
        api_key_env: None,
        weight: 1,
        priority,
        timeouts: short_timeouts(),
        health_path: "models".to_owned(),
        default_max_tokens: 256,
    }
}

/// A model named `name` over `backends`.
pub fn model(name: &str, backends: Vec<BackendConfig>) -> ModelConfig {
    ModelConfig {
        name: name.to_owned(),
        aliases: Vec::new(),
        fallbacks: Vec::new(),
        routing: RoutingStrategy::Weighted,
        backends,
    }
}

/// A config for `models` with fast retries, a 3-failure breaker open for
/// `open_ms`, and health checks off.
pub fn config(models: Vec<ModelConfig>, open_ms: u64) -> GatewayConfig {
    GatewayConfig {
        models,
        retry: RetryConfig {
            max_attempts: 4,
            per_backend: 2,
            backoff_base_ms: 1,
            backoff_max_ms: 5,
        },
        breaker: BreakerConfig {
            consecutive_failures: 3,
            error_rate_percent: 50,
            window: 20,
            min_requests: 10,
            open_ms,
        },
        health: HealthConfig {
            enabled: false,
            interval_ms: 50,
        },
    }
}

/// A one-message chat request for `model`.
pub fn chat(model: &str, stream: bool) -> api::ChatCompletionRequest {
    let mut request: api::ChatCompletionRequest = serde_json::from_value(json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in eight words please."}],
    }))
    .expect("a valid request");
    request.stream = Some(stream);
    request
}

/// Polls `condition` every 10 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
