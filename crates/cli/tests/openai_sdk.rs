//! End to end with the official `openai` Python SDK: runs the pytest suite in
//! `tests/e2e/` against the real `parlance serve`, so `cargo test --workspace`
//! runs it too.
//!
//! The suite's Python environment is a virtualenv at `target/e2e-venv`, made
//! here on first use from `tests/e2e/requirements.txt` (pip needs the package
//! index once) and reused while the requirements are unchanged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The whole suite normally takes well under a minute; this only stops a hang.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{what}: {cmd:?} failed with {status}");
}

/// `target/e2e-venv` with the pinned requirements installed; quick when it
/// already is (a stamp file holds the requirements it was made from).
fn venv(root: &Path) -> PathBuf {
    let venv = root.join("target/e2e-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/e2e/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements.display()));
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
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "installing tests/e2e/requirements.txt into target/e2e-venv",
    );
    std::fs::write(&stamp, &wanted).expect("writing the venv stamp");
    python
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for pytest") {
            return Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

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
