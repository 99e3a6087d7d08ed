//! A real listener: a client that leaves mid-stream (dropping its socket)
//! has its generation dropped at once (so the engine frees it), and the
//! server answers the next request promptly.

mod common;

use std::time::Duration;

use serde_json::json;
use server::AppState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(state: AppState) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, server::router(state)).await.unwrap();
    });
    addr
}

/// Waits up to ten seconds for the engine to report `n` cancelled sequences.
async fn wait_for_engine_cancellations(state: &AppState, n: u64) {
    let engine = &state.models().next().expect("one model").engine;
    for _ in 0..200 {
        if engine.stats().cancelled >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the engine did not cancel the sequence: {:?}",
        engine.stats()
    );
}

/// Waits up to ten seconds for the server to hold no generation.
async fn wait_for_no_live_generation(state: &AppState) {
    for _ in 0..200 {
        if state.live_generations() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} generations still held", state.live_generations());
}

fn http_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_stream_does_not_hurt_the_server() {
    let state = common::state();
    let addr = start(state.clone()).await;
    let body = common::chat(
        "Write a very long story about a dragon.",
        json!({"max_tokens": 4000, "stream": true, "temperature": 1.0}),
    )
    .to_string();
    let cancelled_before = state
        .models()
        .next()
        .expect("one model")
        .engine
        .stats()
        .cancelled;
    for round in 1..=2 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(http_post("/v1/chat/completions", &body).as_bytes())
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while String::from_utf8_lossy(&seen).matches("data: ").count() < 4 {
            let n = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut buf))
                .await
                .expect("stream stalled")
                .unwrap();
            assert!(n > 0, "stream closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&seen);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("x-request-id:"));
        assert_eq!(state.live_generations(), 1);
        drop(socket);
        // The body owned the generation: gone with the client, and the
        // engine cancelled the sequence (freeing its KV blocks).
        wait_for_no_live_generation(&state).await;
        wait_for_engine_cancellations(&state, cancelled_before + round).await;
    }

    let small = common::chat("Hi", json!({"max_tokens": 4})).to_string();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(http_post("/v1/chat/completions", &small).as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_string(&mut answer))
        .await
        .expect("no prompt answer after a client left")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"chat.completion\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_requests_hold_no_generation() {
    let state = common::state();
    let app = server::router(state.clone());
    let body = common::chat("Hi", json!({"max_tokens": 2, "n": 2}));
    let answer = common::post(&app, "/v1/chat/completions", body.clone()).await;
    assert_eq!(answer.status, axum::http::StatusCode::OK);
    let mut streamed = body;
    streamed["stream"] = json!(true);
    common::post(&app, "/v1/chat/completions", streamed)
        .await
        .events();
    assert_eq!(state.live_generations(), 0);
}
