//! End to end: the real `parlance` binary, driven as a person or a script would.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn parlance() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_parlance"));
    c.env("PARLANCE_LOG", "warn");
    c
}

fn model(name: &str) -> String {
    testkit::model_path(name).display().to_string()
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn tokenize_matches_the_llama_cpp_fixture() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/tokenizer/smollm2-135m-instruct.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let entries = fixture
        .as_array()
        .or_else(|| fixture["entries"].as_array())
        .expect("fixture entries");
    let mut checked = 0;
    let with_text = entries
        .iter()
        .filter(|e| e["parse_special"] == true && e["text"].as_str().is_some_and(|t| t.len() > 3));
    for e in with_text.step_by(7).take(5) {
        let text = e["text"].as_str().unwrap();
        let mut cmd = parlance();
        cmd.args([
            "tokenize",
            "--model",
            &model(testkit::SMOLLM2),
            "--parse-special",
        ]);
        let out = run_with_stdin(cmd, text);
        assert!(out.status.success(), "{}", stderr(&out));
        let ids: Vec<u64> = stdout(&out)
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        let want: Vec<u64> = e["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ids, want, "text {text:?}");
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn generate_greedy_is_deterministic_and_respects_max_tokens() {
    let gen = || {
        let out = parlance()
            .args([
                "generate",
                "--model",
                &model(testkit::SMOLLM2),
                "--prompt",
                "The capital of France is",
            ])
            .args(["--temperature", "0", "--max-tokens", "12", "--threads", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let a = gen();
    assert_eq!(a, gen());
    assert!(a.contains("Paris"), "{a:?}");
    // 12 tokens of English is well under 100 characters.
    assert!(a.len() < 100, "{a:?}");
}

#[test]
fn chat_streams_a_reply_and_keeps_history() {
    let mut cmd = parlance();
    cmd.args([
        "chat",
        "--model",
        &model(testkit::SMOLLM2),
        "--temperature",
        "0",
        "--max-tokens",
        "40",
        "--threads",
        "2",
    ]);
    let out = run_with_stdin(
        cmd,
        "What is the capital of France?\n/reset\nAnd of Italy?\n/exit\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // One streamed reply per question, each ended by a newline.
    let replies: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(replies.len() >= 2, "two replies expected: {text:?}");
    assert!(stderr(&out).contains("history cleared"));
}

#[test]
fn chat_shows_a_tool_call_readably() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools.json");
    std::fs::write(
        &tools,
        r#"[{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                           "required": ["city"], "additionalProperties": false}}}]"#,
    )
    .unwrap();
    let mut cmd = parlance();
    cmd.args([
        "chat",
        "--model",
        &model(testkit::SMOLLM2),
        "--tools",
        tools.to_str().unwrap(),
        "--tool-choice",
        "required",
        "--temperature",
        "0",
        "--max-tokens",
        "80",
        "--threads",
        "2",
    ]);
    let out = run_with_stdin(cmd, "What is the weather in Paris?\n/exit\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let call = text
        .lines()
        .find_map(|l| l.strip_prefix("→ get_weather("))
        .unwrap_or_else(|| panic!("no call shown: {text:?}"));
    let args: serde_json::Value = serde_json::from_str(call.strip_suffix(')').unwrap()).unwrap();
    assert!(args["city"].is_string(), "{text:?}");
    // The raw call syntax is not shown.
    assert!(!text.contains("<tool_call>"), "{text:?}");
}

#[test]
fn chat_with_a_model_without_template_says_what_to_do() {
    let mut cmd = parlance();
    cmd.args(["chat", "--model", &model(testkit::GEMMA3)]);
    let out = run_with_stdin(cmd, "hi\n");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no chat template"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("parlance generate"));
}

#[test]
fn unknown_model_and_missing_file_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = parlance()
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "pull",
            "no-such-model",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("smollm2-135m-instruct") && err.contains("gemma3-270m"),
        "lists the catalog: {err}"
    );

    let out = parlance()
        .args([
            "generate",
            "--model",
            "/nonexistent/model.gguf",
            "--prompt",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/model.gguf"),
        "{}",
        stderr(&out)
    );

    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00").unwrap();
    let out = parlance()
        .args([
            "generate",
            "--model",
            bad.to_str().unwrap(),
            "--prompt",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("truncated or malformed GGUF"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn models_lists_the_catalog_and_what_is_pulled() {
    let dir = tempfile::tempdir().unwrap();
    let out = parlance()
        .args(["--data-dir", dir.path().to_str().unwrap(), "models"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    for line in text
        .lines()
        .filter(|l| l.starts_with("smollm2") || l.starts_with("gemma3"))
    {
        assert!(
            line.contains(" no "),
            "nothing is pulled in an empty data dir: {line}"
        );
    }
    assert!(text.contains("smollm2-135m-instruct") && text.contains("(default)"));
}
