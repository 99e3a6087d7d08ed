//! End to end with the official `openai` Python SDK: runs the pytest suite in
//! `tests/e2e/` against the real `parlance serve`, so `cargo test --workspace`
//! runs it too.
//!
//! The suite's Python environment is a virtualenv at `target/e2e-venv`, made
//! on first use from `tests/e2e/requirements.txt` and the other files of
//! `support::python::REQUIREMENTS` (pip needs the package index once) and
//! reused while the requirements are unchanged.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::python::{repo_root, venv, wait_with_timeout};

/// The whole suite normally takes well under a minute; this only stops a hang.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

#[test]
fn openai_python_sdk_against_parlance_serve() {
    let root = repo_root();
    let bin = env!("CARGO_BIN_EXE_parlance");

    // Fail loudly, before any Python, when the binary has no `serve`.
    let help = Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .expect("running parlance serve --help");
    assert!(
        help.status.success(),
        "`parlance serve --help` failed ({}): the server subcommand is missing or broken:\n{}",
        help.status,
        String::from_utf8_lossy(&help.stderr)
    );

    let model = testkit::model_path(testkit::SMOLLM2);
    // tests/e2e/test_embeddings.py serves the embedding model from the data
    // directory: pull it now if it is missing.
    testkit::model_path(testkit::MINILM);
    let python = venv(&root);

    // Output goes straight to the terminal (not captured), so progress shows live.
    let mut child = Command::new(&python)
        .args(["-m", "pytest", "tests/e2e", "-q"])
        .current_dir(&root)
        .env("PARLANCE_BIN", bin)
        .env("PARLANCE_E2E_MODEL", &model)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start pytest with {}: {e}", python.display()));
    let status = wait_with_timeout(&mut child, SUITE_TIMEOUT)
        .unwrap_or_else(|| panic!("the e2e suite ran past {SUITE_TIMEOUT:?} and was killed"));
    match status.code() {
        Some(0) => {}
        Some(5) => panic!("pytest collected no test in tests/e2e"),
        _ => panic!("the openai SDK e2e suite failed ({status}); pytest's report is above"),
    }
}
