//! Reasoning split out of chat answers, end to end: `parlance serve` with
//! the default SmolLM2 model and a real thinking template from llama.cpp's
//! source (`--chat-template`; DeepSeek-R1-Distill's, which ends the prompt
//! with `<think>` when thinking is on), answering whole and streamed.
//!
//! SmolLM2 never writes `</think>` itself, so with thinking on its whole
//! (short) answer is reasoning: this shows the prompt rendered with
//! `enable_thinking` from `reasoning_effort`, the answer read for
//! reasoning, and the field written whole and streamed; the tag parsing
//! itself (tags split across tokens, the block closing mid-answer) is
//! tested on constructed streams in `service::generation::reasoning`.
//!
//! The template comes from llama.cpp b11434's source, fetched by
//! `scripts/reference/vocab_fixtures.sh` into
//! `~/.cache/parlance-reference/llama.cpp` (or `$PARLANCE_TEMPLATES_DIR`);
//! without it the test says so and passes, unless
//! `PARLANCE_REQUIRE_VOCAB` is set.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::Server;

const TEMPLATE: &str = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja";

fn template() -> Option<PathBuf> {
    let dir = match std::env::var_os("PARLANCE_TEMPLATES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/parlance-reference/llama.cpp/models/templates"),
    };
    let path = dir.join(TEMPLATE);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("PARLANCE_REQUIRE_VOCAB").is_none(),
        "no {TEMPLATE} in {}: run scripts/reference/vocab_fixtures.sh",
        dir.display()
    );
    println!(
        "skipping: no {TEMPLATE} in {} (scripts/reference/vocab_fixtures.sh fetches it)",
        dir.display()
    );
    None
}

/// `parlance serve` of SmolLM2 with `template` and `extra` flags.
fn serve(template: &Path, extra: &[&str], data_dir: &Path) -> (Server, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--port", "0", "--threads", "2", "--model"])
        .arg(testkit::model_path(testkit::SMOLLM2))
        .arg("--chat-template")
        .arg(template)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (server, addr, _lines) = Server::listening(child);
    (server, addr)
}

/// POSTs `body` over HTTP/1.0 (so the body is not chunked); the status
/// line and the body.
fn post(addr: &str, body: &Value) -> (String, String) {
    post_to(addr, "/v1/chat/completions", body)
}

/// [`post`] to `path`.
fn post_to(addr: &str, path: &str, body: &Value) -> (String, String) {
    let body = body.to_string();
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    write!(
        socket,
        "POST {path} HTTP/1.0\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

fn chat(effort: Option<&str>, stream: bool) -> Value {
    let mut body = json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": stream,
    });
    if let Some(effort) = effort {
        body["reasoning_effort"] = json!(effort);
    }
    body
}

/// A whole answer's message.
fn whole(addr: &str, effort: Option<&str>) -> Value {
    let (status, body) = post(addr, &chat(effort, false));
    assert!(status.contains(" 200"), "{status}\n{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    answer["choices"][0]["message"].clone()
}

/// A streamed answer's deltas joined per field: (reasoning under `field`,
/// content, the other reasoning field seen).
fn streamed(addr: &str, effort: Option<&str>, field: &str, other: &str) -> (String, String, bool) {
    let (status, body) = post(addr, &chat(effort, true));
    assert!(status.contains(" 200"), "{status}\n{body}");
    let (mut reasoning, mut content, mut other_seen) = (String::new(), String::new(), false);
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        let delta = &chunk["choices"][0]["delta"];
        if let Some(text) = delta[field].as_str() {
            reasoning.push_str(text);
        }
        if let Some(text) = delta["content"].as_str() {
            content.push_str(text);
        }
        other_seen |= !delta[other].is_null();
    }
    (reasoning, content, other_seen)
}

#[test]
fn a_thinking_template_returns_reasoning_apart_whole_and_streamed() {
    let Some(template) = template() else {
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve(&template, &[], data_dir.path());

    // Thinking on: the prompt ends inside `<think>`, so the answer is
    // reasoning, and none of it is content.
    let message = whole(&addr, Some("high"));
    let reasoning = message["reasoning_content"]
        .as_str()
        .unwrap_or_else(|| panic!("no reasoning_content: {message}"))
        .to_owned();
    assert!(!reasoning.is_empty(), "{message}");
    assert_eq!(message["content"], json!(""), "{message}");
    assert!(message.get("reasoning").is_none(), "{message}");

    let (streamed_reasoning, streamed_content, other) =
        streamed(&addr, Some("high"), "reasoning_content", "reasoning");
    assert_eq!(streamed_reasoning, reasoning);
    assert_eq!(streamed_content, "");
    assert!(!other);

    // Thinking off (`none`): the template closes the block in the prompt
    // and the answer is all content.
    let message = whole(&addr, Some("none"));
    assert!(message.get("reasoning_content").is_none(), "{message}");
    assert!(
        !message["content"].as_str().unwrap().is_empty(),
        "{message}"
    );
    let (streamed_reasoning, streamed_content, _) =
        streamed(&addr, Some("none"), "reasoning_content", "reasoning");
    assert_eq!(streamed_reasoning, "");
    assert_eq!(json!(streamed_content), message["content"]);

    // An effort no model knows is refused by name.
    let (status, body) = post(&addr, &chat(Some("extreme"), false));
    assert!(status.contains(" 400"), "{status}\n{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["param"], json!("reasoning_effort"), "{body}");

    // The Responses API: `reasoning.effort` is the same switch; the
    // reasoning comes as a `reasoning` item, never in the output text.
    let responses = |effort: &str| {
        post_to(
            &addr,
            "/v1/responses",
            &json!({
                "model": "smollm2-135m-instruct",
                "input": "What is 2 + 2?",
                "max_output_tokens": 16,
                "temperature": 0,
                "reasoning": {"effort": effort},
            }),
        )
    };
    let (status, body) = responses("high");
    assert!(status.contains(" 200"), "{status}\n{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["output_text"], json!(""), "{body}");
    let items = answer["output"].as_array().expect("output");
    assert_eq!(items[0]["type"], json!("reasoning"), "{body}");
    assert!(
        items
            .iter()
            .all(|item| item["type"] != json!("message") || !item.to_string().contains(&reasoning)),
        "{body}"
    );
    let (status, body) = responses("none");
    assert!(status.contains(" 200"), "{status}\n{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(
        !answer["output_text"].as_str().unwrap().is_empty(),
        "{body}"
    );
    let (status, body) = responses("extreme");
    assert!(status.contains(" 400"), "{status}\n{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["param"], json!("reasoning.effort"), "{body}");
}

#[test]
fn reasoning_can_be_written_under_vllms_name() {
    let Some(template) = template() else {
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve(
        &template,
        &["--reasoning-field", "reasoning"],
        data_dir.path(),
    );
    let message = whole(&addr, Some("low"));
    assert!(message.get("reasoning_content").is_none(), "{message}");
    assert!(
        !message["reasoning"].as_str().unwrap_or_default().is_empty(),
        "{message}"
    );
    let (reasoning, content, other) =
        streamed(&addr, Some("low"), "reasoning", "reasoning_content");
    assert_eq!(json!(reasoning), message["reasoning"]);
    assert_eq!(content, "");
    assert!(!other);
}

/// A chat template (ChatML) whose prompt ends inside `<think>`.
const THINKING_CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}";

#[test]
fn the_web_app_shows_reasoning_collapsed_above_the_answer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let chromium = std::env::var_os("PARLANCE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let have = chromium.is_file()
        && root
            .join("tests/browser/node_modules/playwright-core/package.json")
            .is_file()
        && Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
    if !have {
        assert!(
            std::env::var("PARLANCE_TEST_BROWSER").as_deref() != Ok("1"),
            "PARLANCE_TEST_BROWSER=1 but node, chromium or tests/browser/node_modules is missing"
        );
        println!("skipping: node, chromium or tests/browser/node_modules is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("thinking.jinja");
    std::fs::write(&template, THINKING_CHATML).unwrap();
    let status = Command::new("node")
        .arg("tests/browser/reasoning.mjs")
        .current_dir(&root)
        .env("PARLANCE_BIN", env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_MODEL", testkit::model_path(testkit::SMOLLM2))
        .env("PARLANCE_CHROMIUM", &chromium)
        .env("PARLANCE_TEMPLATE", &template)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the browser check failed; its report is above"
    );
}
