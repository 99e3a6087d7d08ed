//! The web app in real headless Chromium: runs `node tests/browser/run.mjs`
//! (playwright-core driving Debian's `/usr/bin/chromium`) against the real
//! `parlance serve` and the real default model — sign up, streaming, stop,
//! regenerate, edit-and-resend, reload, an API key used from the `openai`
//! SDK, the usage page, hostile markdown; then (tests/browser/more.mjs) the
//! admin page, KaTeX, attachments, key limits, usage by key and project,
//! the invoice and an axe-core accessibility check — and refreshes the
//! screenshots in `docs/screenshots/`.
//!
//! Needs node, `tests/browser/node_modules` (`npm ci` there) and chromium.
//! Without them the test prints a note and passes, except in CI
//! (`PARLANCE_TEST_BROWSER=1`, set by `.ci/run`), where it fails saying
//! what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The scenarios take a minute or two; this only stops a hang.
const TIMEOUT: Duration = Duration::from_secs(900);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// What is missing to run the browser tests, if anything.
fn missing(root: &Path, chromium: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!(
            "{} (apt-get install -y chromium, or set PARLANCE_CHROMIUM)",
            chromium.display()
        ));
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|status| status.success()) {
        missing.push("node (Node.js 18 or newer)".into());
    }
    for package in ["playwright-core", "axe-core"] {
        let manifest = format!("tests/browser/node_modules/{package}/package.json");
        if !root.join(manifest).is_file() {
            missing.push(format!(
                "tests/browser/node_modules/{package} (run `npm ci` in tests/browser)"
            ));
        }
    }
    missing
}

#[test]
fn web_app_in_headless_chromium() {
    let root = repo_root();
    let chromium = std::env::var_os("PARLANCE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let required = std::env::var("PARLANCE_TEST_BROWSER").is_ok_and(|v| v == "1");
    let missing = missing(&root, &chromium);
    if !missing.is_empty() {
        let message = format!(
            "the browser tests need: {}. `.ci/run` installs them.",
            missing.join("; ")
        );
        assert!(!required, "PARLANCE_TEST_BROWSER=1 but {message}");
        eprintln!("SKIPPED web_app_in_headless_chromium: {message}");
        return;
    }
    let model = testkit::model_path(testkit::SMOLLM2);
    let python = root.join("target/e2e-venv/bin/python");
    let mut command = Command::new("node");
    command
        .arg("tests/browser/run.mjs")
        .current_dir(&root)
        .env("PARLANCE_BIN", env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_MODEL", &model)
        .env("PARLANCE_CHROMIUM", &chromium)
        .env("PARLANCE_SCREENSHOTS", root.join("docs/screenshots"))
        .stdin(Stdio::null());
    if python.is_file() {
        command.env("PARLANCE_PYTHON", &python);
    } else {
        assert!(
            !required,
            "PARLANCE_TEST_BROWSER=1 but {} (with the openai SDK) is missing; .ci/run makes it",
            python.display()
        );
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node tests/browser/run.mjs: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser tests ran past {TIMEOUT:?} and were killed");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "the browser tests failed ({status}); their report is above"
    );
}
