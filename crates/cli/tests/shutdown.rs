//! Signals to the real binary. SIGTERM with a stream in flight: the server
//! drains (`/health` answers `draining`, new requests 503 with
//! `retry-after`), lets the stream finish, stops accepting, flushes the
//! ledger and exits 0 — and the ledger holds the stream's row. SIGHUP: the `[gateway]` section
//! is read again; an invalid file is refused and the old one kept.
#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Server;

#[test]
fn sigterm_lets_the_stream_finish_flushes_the_ledger_and_exits_zero() {
    let model = testkit::model_path(testkit::SMOLLM2);
    let data_dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .env_remove("PARLANCE_ADMIN_KEY")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["serve", "--port", "0", "--threads", "2", "--model"])
        .arg(&model)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut server, addr, lines) = Server::listening(child);
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let body = r#"{"model":"smollm2-135m-instruct","stream":true,"max_tokens":400,
        "logit_bias":{"0":-100,"2":-100},
        "messages":[{"role":"user","content":"Tell me a long story about a lighthouse."}]}"#;
    let mut socket = TcpStream::connect(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         x-request-id: req-shutdown\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Wait for the first event: the stream is in flight.
    let mut received = Vec::new();
    let mut piece = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data: ") {
        let n = socket.read(&mut piece).unwrap();
        assert!(n > 0, "closed before the first event");
        received.extend_from_slice(&piece[..n]);
    }
    let pid = server.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());

    // Draining: while the stream runs, /health says so (503) and a new
    // request is refused with 503 and `retry-after`, for a load balancer to
    // send elsewhere.
    let get = |path: &str| {
        let mut probe = TcpStream::connect(&addr).expect("still accepting while draining");
        write!(
            probe,
            "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        probe.read_to_string(&mut answer).unwrap();
        answer
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let health = get("/health");
        if health.contains("draining") || Instant::now() > deadline {
            break health;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains("\"status\":\"draining\""), "{health}");
    let refused = get("/v1/models");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );

    // The stream runs to its end.
    socket.read_to_end(&mut received).unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");

    // The process exits 0 on its own.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        TcpStream::connect(&addr).is_err(),
        "still accepting after exit"
    );

    // The ledger has the stream's row, settled `ok`.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!(
            "sqlite://{}?mode=rwc",
            data_dir.path().join("parlance.db").display()
        );
        let store = store::Store::connect(&url).await.unwrap();
        let org = store.find_org_by_name("default").await.unwrap().unwrap();
        let row = store.get_usage(&org.id, "req-shutdown").await.unwrap();
        assert_eq!(row.usage.status, "ok");
        assert!(row.usage.completion_tokens >= 1);
        assert!(
            store.recover().await.unwrap().is_empty(),
            "no open reservation"
        );
    });
}

fn get(addr: &str, path: &str) -> String {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer
}

fn gateway_file(alias: &str) -> String {
    format!(
        "[[gateway.models]]\nname = \"remote\"\naliases = [\"{alias}\"]\n\
         [[gateway.models.backends]]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [gateway.health]\nenabled = false\n"
    )
}

/// Sends SIGHUP, then polls `/v1/models` until `check` holds on it.
fn hangup_until(server: &Server, addr: &str, check: impl Fn(&str) -> bool) -> String {
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let models = get(addr, "/v1/models");
        if check(&models) {
            return models;
        }
        assert!(Instant::now() < deadline, "no reload seen: {models}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_the_gateway_and_refuses_an_invalid_file() {
    let model = testkit::model_path(testkit::SMOLLM2);
    let data_dir = tempfile::tempdir().unwrap();
    let config = data_dir.path().join("parlance.toml");
    std::fs::write(&config, gateway_file("first")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .env_remove("PARLANCE_ADMIN_KEY")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["serve", "--port", "0", "--threads", "2", "--model"])
        .arg(&model)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (server, addr, lines) = Server::listening(child);
    let (said, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = said.send(line);
        }
    });
    let models = get(&addr, "/v1/models");
    assert!(models.contains("\"id\":\"first\""), "{models}");
    assert!(
        models.contains("\"id\":\"smollm2-135m-instruct\""),
        "{models}"
    );

    std::fs::write(&config, gateway_file("second")).unwrap();
    let models = hangup_until(&server, &addr, |m| m.contains("\"id\":\"second\""));
    assert!(!models.contains("\"id\":\"first\""), "{models}");

    // An invalid file: refused with a message, the old configuration kept.
    std::fs::write(
        &config,
        "[[gateway.models]]\nname = \"remote\"\nbackends = []\n",
    )
    .unwrap();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = heard
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no refusal printed");
        if line.contains("reload refused") {
            assert!(line.contains("at least one backend"), "{line}");
            break;
        }
    }
    let models = get(&addr, "/v1/models");
    assert!(models.contains("\"id\":\"second\""), "{models}");

    // The good reload is in the audit log, keys masked.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!(
            "sqlite://{}?mode=rwc",
            data_dir.path().join("parlance.db").display()
        );
        let store = store::Store::connect(&url).await.unwrap();
        let org = store.find_org_by_name("default").await.unwrap().unwrap();
        let audit = store.list_audit(&org.id, None, 100).await.unwrap();
        let reloads: Vec<_> = audit
            .iter()
            .filter(|e| e.entry.action == "gateway.reloaded")
            .collect();
        assert_eq!(reloads.len(), 1, "{audit:?}");
        let after = reloads[0].entry.after.as_ref().unwrap();
        assert_eq!(after["models"][0]["aliases"][0], "second");
    });
}
