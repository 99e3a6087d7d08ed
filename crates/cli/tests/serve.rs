//! `parlance serve` as a user runs it: on port 0 it prints the real
//! address, lists its models and answers a chat request over HTTP.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::Server;

fn request(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn serve_on_port_zero_prints_the_address_and_answers() {
    let model = testkit::model_path(testkit::SMOLLM2);
    let data_dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["serve", "--port", "0", "--threads", "2", "--model"])
        .arg(&model)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_server, addr, _lines) = Server::listening(child);
    assert!(!addr.ends_with(":0"), "{addr}");

    let models = request(&addr, "GET", "/v1/models", "");
    assert!(models.starts_with("HTTP/1.1 200"), "{models}");
    assert!(
        models.contains("\"id\":\"smollm2-135m-instruct\""),
        "{models}"
    );
    assert!(models.to_ascii_lowercase().contains("x-request-id:"));

    let body = r#"{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#;
    let chat = request(&addr, "POST", "/v1/chat/completions", body);
    assert!(chat.starts_with("HTTP/1.1 200"), "{chat}");
    assert!(chat.contains("\"chat.completion\""), "{chat}");
}
