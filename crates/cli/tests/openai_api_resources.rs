//! openai-python's OWN generated API tests, run unmodified against the real
//! `parlance serve`: `tests/api_resources/chat/test_completions.py` (with
//! the stored chat completions' routes),
//! `tests/api_resources/chat/completions/test_messages.py`,
//! `tests/api_resources/test_completions.py` and
//! `tests/api_resources/test_models.py` (with deleting a model alias) of the
//! SDK version that `tests/e2e/requirements.txt` pins.
//!
//! Upstream runs them against a mock server at `TEST_API_BASE_URL`; here
//! that is a `parlance serve --port 0 --config FILE` serving the SmolLM2 test
//! model under the model names the tests send (`gpt-6-astra`,
//! `gpt-3.5-turbo-instruct`, …) as gateway aliases, open (no API key exists
//! in its fresh data directory, so the tests' key is accepted).
//!
//! The tests come from the SDK's sdist, fetched into `target/reference/` by
//! `scripts/reference/fetch_openai_python_tests.sh` (pip needs the package
//! index once; nothing of them is committed). The venv is `target/e2e-venv`
//! (`support::python`). The only failures allowed are the all-params create
//! tests that send `max_tokens: 0` / `best_of: 0`, listed by node id in
//! `tests/openai_api_resources/parlance_api_resources.py`; anything else that
//! fails, or nothing collected, fails this test.
//!
//! The tests use made-up ids (`completion_id`, `after`, the fine-tune
//! `ft:gpt-4o-mini:acemeco:suffix:abc123`). The plugin makes them real
//! before each test that needs one: a stored completion is created through
//! the API (`store: true`) and renamed in the server's SQLite file
//! (`PARLANCE_API_RESOURCES_DB`); a deleted alias comes back by reloading
//! the configuration with SIGHUP (`PARLANCE_API_RESOURCES_SERVER_PID`).
//!
//! `PARLANCE_API_RESOURCES_PYTEST_ARGS` (split on whitespace) is appended to
//! pytest's arguments, e.g. `-k models` or `-x`, to narrow a local run.

mod support;

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::python::{repo_root, venv, wait_or_interrupt};
use support::Server;

/// The most the pytest run may take. Every test but 15 answers in about a
/// second (the whole rest runs in ~25 s on 2 cores); those 15, the
/// non-streamed chat creates (`test_method_create_overload_1`,
/// `test_raw_response_create_overload_1`,
/// `test_streaming_response_create_overload_1`, in each of the 5 client
/// variants), send no `max_tokens`, so the model writes until it stops or
/// fills its context (8192 tokens for SmolLM2): from one to ten minutes each
/// on 2 cores. Past this limit pytest is interrupted (its summary of what ran
/// still prints) and the test fails.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

/// How long an interrupted pytest gets to print its summary.
const INTERRUPT_GRACE: Duration = Duration::from_secs(30);

/// openai-python's Responses API tests, with their own plugin
/// (`tests/openai_api_resources/parlance_responses.py`: seeded ids, the
/// failures allowed and why).
const RESPONSES_TEST_FILES: [&str; 3] = [
    "tests/api_resources/test_responses.py",
    "tests/api_resources/responses/test_input_items.py",
    "tests/api_resources/responses/test_input_tokens.py",
];

/// The test files run, relative to the unpacked sdist.
const TEST_FILES: [&str; 4] = [
    "tests/api_resources/chat/test_completions.py",
    "tests/api_resources/chat/completions/test_messages.py",
    "tests/api_resources/test_completions.py",
    "tests/api_resources/test_models.py",
];

/// openai-python's embeddings and moderations tests, run with the files
/// above against all-MiniLM-L6-v2 on our own encoder, served under the
/// model name they send (`text-embedding-3-small`, an embedding alias);
/// moderation runs the local classifier on the same model.
const EMBEDDING_TEST_FILES: [&str; 3] = [
    "tests/api_resources/test_embeddings.py",
    "tests/api_resources/test_moderations.py",
    // Only its embeddings and moderations tests run (the plugin deselects
    // the usage pages of endpoints Parlance does not serve).
    "tests/api_resources/admin/organization/test_usage.py",
];

/// The model names the generated tests send, served as aliases of the test
/// model: chat and `models.retrieve` use `gpt-6-astra`, completions
/// `gpt-3.5-turbo-instruct`, `models.delete` a fine-tune's id (an alias
/// here, which the delete removes and a SIGHUP reload brings back).
const ALIASES: [&str; 3] = [
    "gpt-6-astra",
    "gpt-3.5-turbo-instruct",
    "ft:gpt-4o-mini:acemeco:suffix:abc123",
];

/// How many of the server's last stderr lines a failure shows.
const LOG_TAIL: usize = 80;

/// `parlance.toml` for the run: the model file, and a gateway model of the
/// same name (its file stem, as `serve` names a loaded GGUF) on the local
/// engine with the aliases.
fn config(model: &Path) -> String {
    let name = model
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("the model file has a UTF-8 stem");
    let aliases: Vec<String> = ALIASES.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "models = [{model:?}]\n\
         threads = 2\n\
         default_max_tokens = 64\n\
         embedding_models = [{embedder:?}]\n\
         embedding_aliases = {{ \"text-embedding-3-small\" = \"all-minilm-l6-v2\" }}\n\
         \n\
         [[gateway.models]]\n\
         name = {name:?}\n\
         aliases = [{aliases}]\n\
         \n\
         [[gateway.models.backends]]\n\
         kind = \"local\"\n",
        model = model.to_str().expect("the model path is UTF-8"),
        aliases = aliases.join(", "),
        embedder = testkit::model_path(testkit::MINILM)
            .to_str()
            .expect("the embedding model's path is UTF-8"),
    )
}

/// `scripts/reference/fetch_openai_python_tests.sh`: the folder it unpacked
/// (or found) the sdist in.
fn fetch_tests(root: &Path, python: &Path) -> std::path::PathBuf {
    let script = root.join("scripts/reference/fetch_openai_python_tests.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("PYTHON", python)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}): openai-python's tests could not be fetched",
        script.display(),
        out.status
    );
    let dir = String::from_utf8(out.stdout).expect("the script prints a path");
    let dir = std::path::PathBuf::from(dir.lines().last().unwrap_or("").trim());
    for file in TEST_FILES.iter().chain(&EMBEDDING_TEST_FILES) {
        assert!(
            dir.join(file).is_file(),
            "{} is missing after the fetch",
            dir.join(file).display()
        );
    }
    dir
}

#[test]
fn openai_python_generated_api_tests_against_parlance_serve() {
    let root = repo_root();
    let bin = env!("CARGO_BIN_EXE_parlance");
    let model = testkit::model_path(testkit::SMOLLM2);
    let python = venv(&root);
    let tests_dir = fetch_tests(&root, &python);

    let data = tempfile::tempdir().expect("temporary data dir");
    let config_path = data.path().join("parlance.toml");
    std::fs::File::create(&config_path)
        .and_then(|mut f| f.write_all(config(&model).as_bytes()))
        .expect("writing parlance.toml");

    let child = Command::new(bin)
        .args(["serve", "--port", "0", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(data.path().join("data"))
        // Nothing from the environment may turn keys on or move the store.
        .env_remove("PARLANCE_ADMIN_KEY")
        .env_remove("PARLANCE_DATABASE_URL")
        .env_remove("PARLANCE_REDIS_URL")
        .env_remove("PARLANCE_HOST")
        .env_remove("PARLANCE_MODELS")
        // One line per request (method, path, status) for the failure message.
        .env("PARLANCE_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting parlance serve");
    let (mut server, addr, rest) = Server::listening(child);

    // Keep reading the server's stderr (a full pipe would stall it), holding
    // the last lines for the failure message.
    let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in rest.map_while(Result::ok) {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() == LOG_TAIL {
                    log.pop_front();
                }
                log.push_back(line);
            }
        })
    };
    let server_log = || {
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        if log.is_empty() {
            "(nothing)".to_owned()
        } else {
            log.iter().cloned().collect::<Vec<_>>().join("\n")
        }
    };

    let base_url = format!("http://{addr}/v1");
    eprintln!(
        "openai-python {TEST_FILES:?} from {} against {base_url}",
        tests_dir.display()
    );
    let mut pytest = Command::new(&python);
    pytest
        .args(["-m", "pytest"])
        .arg("--rootdir")
        .arg(&tests_dir)
        // Upstream's pytest settings (asyncio mode, strict xfail, warnings
        // as errors) stay; only its addopts go, which want pytest-xdist.
        .args(["-o", "addopts=", "-p", "no:cacheprovider"])
        .args(["-p", "parlance_api_resources", "-p", "parlance_responses"])
        .args(["--tb=short", "-rfEx", "--durations=15"])
        .args(TEST_FILES)
        .args(RESPONSES_TEST_FILES)
        .args(EMBEDDING_TEST_FILES);
    if let Ok(extra) = std::env::var("PARLANCE_API_RESOURCES_PYTEST_ARGS") {
        pytest.args(extra.split_whitespace());
    }
    let mut child = pytest
        .current_dir(&tests_dir)
        .env("TEST_API_BASE_URL", &base_url)
        .env(
            "PARLANCE_RESPONSES_DB",
            data.path().join("data").join("parlance.db"),
        )
        .env(
            "PARLANCE_API_RESOURCES_DB",
            data.path().join("data").join("parlance.db"),
        )
        .env(
            "PARLANCE_API_RESOURCES_SERVER_PID",
            server.0.id().to_string(),
        )
        .env("PYTHONPATH", root.join("tests/openai_api_resources"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("OPENAI_TEST_HTTP_CLIENT")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start pytest with {}: {e}", python.display()));
    let (status, interrupted) = wait_or_interrupt(&mut child, SUITE_TIMEOUT, INTERRUPT_GRACE);

    // Nothing the tests send may take the server down.
    let exited = server.0.try_wait().expect("polling the server");
    drop(server);
    let _ = reader.join();
    if let Some(code) = exited {
        panic!(
            "parlance serve died during the tests ({code}); its last stderr lines:\n{}",
            server_log()
        );
    }
    if interrupted {
        panic!(
            "openai-python's tests ran past {SUITE_TIMEOUT:?} and were interrupted (pytest's \
             summary of what ran is above); the server's last stderr lines:\n{}",
            server_log()
        );
    }
    match status.code() {
        Some(0) => {}
        Some(5) => panic!("pytest collected no test from {TEST_FILES:?}"),
        _ => panic!(
            "openai-python's generated tests failed against parlance serve ({status}); pytest's \
             report is above. The server's last stderr lines:\n{}",
            server_log()
        ),
    }
}
