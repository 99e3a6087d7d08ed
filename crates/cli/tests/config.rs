//! `parlance serve --config FILE` as a user runs it: the file is read, the
//! `PARLANCE_*` environment overrides it, flags override both, and a bad
//! file stops the server with a message naming the key and the file.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Server;

/// `parlance --data-dir DIR serve ARGS…` with no `PARLANCE_*` variables
/// inherited from the caller's environment.
fn parlance(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parlance"));
    for key in [
        "PARLANCE_HOST",
        "PARLANCE_PORT",
        "PARLANCE_MODELS",
        "PARLANCE_THREADS",
        "PARLANCE_DATA_DIR",
    ] {
        cmd.env_remove(key);
    }
    cmd.env("PARLANCE_LOG", "warn")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the server and returns it with the address it printed.
fn start(mut cmd: Command) -> (Server, String) {
    let (server, addr, _stderr) = Server::listening(cmd.spawn().unwrap());
    (server, addr)
}

/// Runs a command that must fail quickly; returns its stderr.
fn run_to_failure(mut cmd: Command) -> String {
    let mut server = Server(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "serve succeeded:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
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

/// Writes `parlance.toml` holding `body` into `dir` and returns its path.
fn config_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("parlance.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// A TOML string literal for `path`.
fn quoted(path: &Path) -> String {
    toml_string(&path.to_string_lossy())
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The model by path, plus a second name (a symlink) for the same file.
fn models(dir: &Path) -> (PathBuf, PathBuf) {
    let model = testkit::model_path(testkit::SMOLLM2);
    let other = dir.join("other-name.gguf");
    std::os::unix::fs::symlink(&model, &other).unwrap();
    (model, other)
}

#[test]
fn serves_what_the_config_file_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = models(dir.path());
    let file = config_file(
        dir.path(),
        &format!("port = 0\nthreads = 2\nmodels = [{}]\n", quoted(&model)),
    );
    let mut cmd = parlance(dir.path(), &["--config"]);
    cmd.arg(&file);
    let (_server, addr) = start(cmd);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(!addr.ends_with(":0"), "{addr}");
    let listed = get(&addr, "/v1/models");
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(
        listed.contains("\"id\":\"smollm2-135m-instruct\""),
        "{listed}"
    );
}

#[test]
fn parlance_toml_in_the_data_dir_is_read_without_config() {
    let dir = tempfile::tempdir().unwrap();
    let (_, other) = models(dir.path());
    config_file(
        dir.path(),
        &format!("port = 0\nthreads = 2\nmodels = [{}]\n", quoted(&other)),
    );
    let (_server, addr) = start(parlance(dir.path(), &[]));
    let listed = get(&addr, "/v1/models");
    assert!(listed.contains("\"id\":\"other-name\""), "{listed}");
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (model, other) = models(dir.path());
    let file = config_file(
        dir.path(),
        &format!(
            "host = \"127.0.0.2\"\nport = 0\nthreads = 2\nmodels = [{}]\n",
            quoted(&model)
        ),
    );
    let mut cmd = parlance(dir.path(), &["--host", "127.0.0.1", "--model"]);
    cmd.arg(&other).arg("--config").arg(&file);
    let (_server, addr) = start(cmd);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let listed = get(&addr, "/v1/models");
    assert!(listed.contains("\"id\":\"other-name\""), "{listed}");
    assert!(!listed.contains("smollm2-135m-instruct"), "{listed}");
}

#[test]
fn env_overrides_the_file_but_not_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (model, other) = models(dir.path());
    let file = config_file(
        dir.path(),
        &format!(
            "host = \"127.0.0.2\"\nport = 0\nthreads = 2\nmodels = [{}]\n",
            quoted(&model)
        ),
    );

    let mut cmd = parlance(dir.path(), &["--config"]);
    cmd.arg(&file)
        .env("PARLANCE_HOST", "127.0.0.3")
        .env("PARLANCE_MODELS", &other);
    let (server, addr) = start(cmd);
    assert!(addr.starts_with("127.0.0.3:"), "{addr}");
    let listed = get(&addr, "/v1/models");
    assert!(listed.contains("\"id\":\"other-name\""), "{listed}");
    drop(server);

    let mut cmd = parlance(dir.path(), &["--host", "127.0.0.1", "--config"]);
    cmd.arg(&file).env("PARLANCE_HOST", "127.0.0.3");
    let (_server, addr) = start(cmd);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
}

#[test]
fn an_unknown_key_fails_naming_it_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "port = 0\nmodel = \"x.gguf\"\n");
    let mut cmd = parlance(dir.path(), &["--config"]);
    cmd.arg(&file);
    let stderr = run_to_failure(cmd);
    assert!(stderr.contains("`model`"), "{stderr}");
    assert!(stderr.contains(&*file.to_string_lossy()), "{stderr}");
}

#[test]
fn a_bad_value_fails_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "host = \"127.0.0.1\"\nport = \"eighty\"\n");
    let mut cmd = parlance(dir.path(), &["--config"]);
    cmd.arg(&file);
    let stderr = run_to_failure(cmd);
    assert!(stderr.contains("`port`"), "{stderr}");
    assert!(stderr.contains(&*file.to_string_lossy()), "{stderr}");
}

#[test]
fn a_missing_config_file_and_a_bad_env_value_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let mut cmd = parlance(dir.path(), &["--config"]);
    cmd.arg(&missing);
    let stderr = run_to_failure(cmd);
    assert!(stderr.contains(&*missing.to_string_lossy()), "{stderr}");

    let mut cmd = parlance(dir.path(), &[]);
    cmd.env("PARLANCE_PORT", "eighty");
    let stderr = run_to_failure(cmd);
    assert!(stderr.contains("PARLANCE_PORT"), "{stderr}");
}
