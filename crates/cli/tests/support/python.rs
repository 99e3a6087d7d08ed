//! The Python side of the tests that drive `parlance serve` with the
//! official `openai` SDK (`openai_sdk.rs`, `openai_api_resources.rs`): one
//! virtualenv, `target/e2e-venv`, made on first use from the requirement
//! files below (pip needs the package index once) and reused while they are
//! unchanged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Every requirement file the venv is made from, relative to the repository
/// root. `.ci/run` installs the same ones.
pub const REQUIREMENTS: [&str; 2] = [
    // The SDK and pytest, for tests/e2e.
    "tests/e2e/requirements.txt",
    // What openai-python's own generated tests import besides.
    "tests/openai_api_resources/requirements.txt",
];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Runs `cmd` to completion; panics, naming `what`, unless it succeeds.
pub fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{what}: {cmd:?} failed with {status}");
}

/// The python of `target/e2e-venv` with every file of [`REQUIREMENTS`]
/// installed; quick when it already is (a stamp file holds the requirements
/// it was made from).
pub fn venv(root: &Path) -> PathBuf {
    let venv = root.join("target/e2e-venv");
    let python = venv.join("bin/python");
    let mut wanted = String::new();
    for file in REQUIREMENTS {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        wanted.push_str(&format!("# {file}\n{text}\n"));
    }
    let stamp = venv.join(".parlance-requirements");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&*wanted) {
        return python;
    }
    if !python.is_file() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating the e2e virtualenv (needs python3 with venv)",
        );
    }
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]);
    for file in REQUIREMENTS {
        pip.arg("-r").arg(root.join(file));
    }
    run(
        &mut pip,
        &format!(
            "installing {} into target/e2e-venv",
            REQUIREMENTS.join(" and ")
        ),
    );
    std::fs::write(&stamp, &wanted).expect("writing the venv stamp");
    python
}

/// Waits for `child` at most `timeout`; past it, kills it and returns `None`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let status = wait_with_timeout_no_kill(child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Like [`wait_with_timeout`], but past `timeout` interrupts `child` first
/// (SIGINT, as ctrl-c: pytest then prints its summary of what ran) and kills
/// it only if it is still running `grace` later. Returns its status and
/// whether it was interrupted.
pub fn wait_or_interrupt(
    child: &mut Child,
    timeout: Duration,
    grace: Duration,
) -> (ExitStatus, bool) {
    if let Some(status) = wait_with_timeout_no_kill(child, timeout) {
        return (status, false);
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    if let Some(status) = wait_with_timeout_no_kill(child, grace) {
        return (status, true);
    }
    let _ = child.kill();
    (child.wait().expect("waiting for a killed child"), true)
}

fn wait_with_timeout_no_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            return Some(status);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
