//! Several `parlance serve` instances on one database, as real processes:
//! instances own their reservations. One instance is killed (`kill -9`)
//! and restarted while the other streams; the survivor's requests are each
//! billed once, `ok`, for exactly the tokens its clients were told, and the
//! killed instance's own requests are settled `interrupted` only after its
//! lease ran out — never by the restart, and with the endpoint they came
//! through — and its background response, which a client polls through
//! the survivor, ends `failed` (the server restarted) instead of staying
//! pending. Runs on SQLite (one file, several
//! processes) always, and on PostgreSQL when `PARLANCE_TEST_POSTGRES_URL`
//! names a server (a fresh database is made and dropped).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use store::Store;
use support::Server;

/// The lease the test instances hold: long enough for a restart to happen
/// well inside it, short enough for the test.
const LEASE_SECS: u64 = 8;
/// Streams the surviving instance serves across the restart.
const SURVIVOR_STREAMS: usize = 6;
/// Tokens each of them generates.
const SURVIVOR_TOKENS: u64 = 96;

fn serve(data_dir: &Path, database_url: &str) -> (Server, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .env("PARLANCE_INSTANCE_LEASE_SECS", LEASE_SECS.to_string())
        .env_remove("PARLANCE_ADMIN_KEY")
        .env_remove("PARLANCE_DATABASE_URL")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--port", "0", "--threads", "1", "--database-url"])
        .arg(database_url)
        .arg("--model")
        .arg(testkit::model_path(testkit::SMOLLM2))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (server, addr, lines) = Server::listening(child);
    std::thread::spawn(move || lines.for_each(drop));
    (server, addr)
}

/// Opens a streamed chat request and reads until `min_chunks` content
/// chunks arrived; the socket is left open, the stream running.
fn open_stream(addr: &str, request_id: &str, max_tokens: u64, min_chunks: usize) -> TcpStream {
    let body = json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
        // No end of text before max_tokens: the token counts are exact.
        "logit_bias": {"0": -100, "2": -100},
    })
    .to_string();
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         x-request-id: {request_id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut chunks = 0;
    let mut line = String::new();
    while chunks < min_chunks {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        if line.starts_with("data: {") && line.contains("\"content\"") {
            chunks += 1;
        }
    }
    socket
}

/// Reads a stream to its end; the usage its client was told.
fn finish_stream(mut socket: TcpStream) -> Value {
    let mut rest = String::new();
    socket.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "{rest}");
    rest.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| chunk.get("usage").cloned())
        .find(|usage| !usage.is_null())
        .expect("a usage chunk")
}

/// One plain request with `connection: close`; the JSON body of the
/// answer (which must be a success).
fn http(addr: &str, method: &str, path: &str, request_id: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         x-request-id: {request_id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {body}"))
}

async fn default_org(store: &Store) -> String {
    store
        .find_org_by_name(store::DEFAULT_ORG)
        .await
        .unwrap()
        .expect("the default organisation")
        .id
}

/// One restart at a time: four servers at once would starve two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn restart_under_load(database_url: &str) {
    let _one_at_a_time = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_a, addr_a) = serve(data.path(), database_url);
    let (mut b, addr_b) = serve(data.path(), database_url);

    // Two of B's requests are in flight (past their first checkpoint) …
    let doomed: Vec<TcpStream> = (0..2)
        .map(|i| open_stream(&addr_b, &format!("b-{i}"), 4000, 20))
        .collect();
    // … and so is a background response, which B runs detached.
    let background = http(
        &addr_b,
        "POST",
        "/v1/responses",
        "bg-0",
        Some(&json!({
            "model": "smollm2-135m-instruct",
            "input": "Write a very long story about a dragon.",
            "max_output_tokens": 4000,
            "background": true,
        })),
    );
    assert_eq!(background["status"], "queued", "{background}");
    let background_id = background["id"].as_str().unwrap().to_owned();
    // … and A streams while B is killed and restarted: B dies once every
    // one of A's streams has its first chunk.
    let (streaming_tx, streaming) = std::sync::mpsc::channel();
    let survivors: Vec<_> = (0..SURVIVOR_STREAMS)
        .map(|i| {
            let addr = addr_a.clone();
            let streaming = streaming_tx.clone();
            std::thread::spawn(move || {
                let id = format!("a-{i}");
                let socket = open_stream(&addr, &id, SURVIVOR_TOKENS, 1);
                let _ = streaming.send(());
                (id, finish_stream(socket))
            })
        })
        .collect();
    for _ in 0..SURVIVOR_STREAMS {
        streaming
            .recv_timeout(Duration::from_secs(120))
            .expect("A's streams started");
    }
    // … and once B's requests have recorded a checkpoint past their first
    // token (what the recovery will bill).
    let store = runtime.block_on(Store::connect(database_url)).unwrap();
    let org = runtime.block_on(default_org(&store));
    let checkpointed = Instant::now() + Duration::from_secs(60);
    loop {
        let progress: Vec<i64> = runtime
            .block_on(store.list_reservations(&org))
            .unwrap()
            .into_iter()
            .filter(|r| r.reserved.request_id.starts_with("b-"))
            .map(|r| r.progress.completion_tokens)
            .collect();
        if progress.len() == 2 && progress.iter().all(|&tokens| tokens >= 16) {
            break;
        }
        assert!(
            Instant::now() < checkpointed,
            "B never checkpointed: {progress:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The background response is running (its runner says so) when B dies.
    let running_by = Instant::now() + Duration::from_secs(60);
    loop {
        let before = http(
            &addr_b,
            "GET",
            &format!("/v1/responses/{background_id}"),
            "bg-get",
            None,
        );
        if before["status"] == "in_progress" {
            break;
        }
        assert!(
            before["status"] == "queued" && Instant::now() < running_by,
            "the background response never read in_progress: {before}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    let killed_at = Instant::now();
    drop(doomed);
    let (_b, _addr_b) = serve(data.path(), database_url);
    let restarted_after = killed_at.elapsed();
    assert!(
        restarted_after < Duration::from_secs(LEASE_SECS / 2),
        "the restart took {restarted_after:?}: too slow for this test's lease"
    );

    // The restart settled nothing of B's or A's: B's lease still holds.
    let open: Vec<String> = runtime
        .block_on(store.list_reservations(&org))
        .unwrap()
        .into_iter()
        .map(|r| r.reserved.request_id)
        .collect();
    for id in ["b-0", "b-1"] {
        assert!(
            open.contains(&id.to_owned()),
            "{id} was settled by the restart: {open:?}"
        );
    }

    // Every one of A's requests: one row, `ok`, exactly what its client got.
    for survivor in survivors {
        let (id, usage) = survivor.join().unwrap();
        // The row is written as the stream ends, on the server's own task.
        let row = runtime.block_on(async {
            for _ in 0..100 {
                if let Ok(row) = store.get_usage(&org, &id).await {
                    return row.usage;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{id} has no ledger row");
        });
        assert_eq!(row.status, "ok", "{id}: {row:?}");
        assert_eq!(row.completion_tokens as u64, SURVIVOR_TOKENS, "{id}");
        assert_eq!(
            row.completion_tokens,
            usage["completion_tokens"].as_i64().unwrap(),
            "{id}"
        );
        assert_eq!(
            row.prompt_tokens,
            usage["prompt_tokens"].as_i64().unwrap(),
            "{id}"
        );
    }

    // B's own requests are settled `interrupted` once its lease ran out,
    // for what their last checkpoint recorded, by a sweep.
    let deadline = killed_at + Duration::from_secs(LEASE_SECS * 4);
    let rows = loop {
        let rows: Vec<_> = ["b-0", "b-1"]
            .iter()
            .filter_map(|id| runtime.block_on(store.get_usage(&org, id)).ok())
            .collect();
        if rows.len() == 2 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "B's requests were never recovered"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let settled_after = killed_at.elapsed();
    // The lease was last renewed at most a third of it before the kill.
    let earliest = Duration::from_secs(LEASE_SECS) * 2 / 3;
    assert!(
        settled_after >= earliest,
        "B's requests were settled {settled_after:?} after the kill, before its lease ran out"
    );
    for row in rows {
        let usage = row.usage;
        assert_eq!(usage.status, "interrupted", "{usage:?}");
        assert!(usage.completion_tokens >= 16, "{usage:?}");
        assert!(usage.cost > 0, "{usage:?}");
        // The reservation kept the endpoint the request came through.
        assert_eq!(usage.endpoint, "/v1/chat/completions", "{usage:?}");
    }

    // The background response B was running ends `failed` (the server
    // restarted), which a client polling it through A is told.
    let polled = loop {
        let polled = http(
            &addr_a,
            "GET",
            &format!("/v1/responses/{background_id}"),
            "bg-poll",
            None,
        );
        if !matches!(polled["status"].as_str(), Some("queued" | "in_progress")) {
            break polled;
        }
        assert!(
            Instant::now() < deadline,
            "the background response stayed pending: {polled}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(polled["status"], "failed", "{polled}");
    assert_eq!(polled["error"]["code"], "server_error", "{polled}");
    let message = polled["error"]["message"].as_str().unwrap();
    assert!(message.contains("restarted"), "{polled}");
    // Its charge was settled `interrupted` by the sweep too, as a Responses
    // request.
    let usage = runtime
        .block_on(store.get_usage(&org, "bg-0"))
        .expect("the background response's ledger row")
        .usage;
    assert_eq!(
        (usage.status.as_str(), usage.endpoint.as_str()),
        ("interrupted", "/v1/responses"),
        "{usage:?}"
    );
    runtime.block_on(store.close());
}

#[test]
fn a_restart_never_settles_another_instances_live_requests_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        data.path().join("shared.db").display()
    );
    restart_under_load(&url);
}

#[test]
fn a_restart_never_settles_another_instances_live_requests_on_postgres() {
    let Ok(admin_url) = std::env::var("PARLANCE_TEST_POSTGRES_URL") else {
        eprintln!("skipping PostgreSQL: set PARLANCE_TEST_POSTGRES_URL");
        return;
    };
    let name = format!("parlance_instances_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .arg(&admin_url)
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql (PostgreSQL's client) runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let (base, query) = match admin_url.rsplit_once('/') {
        Some((base, rest)) => (
            base.to_owned(),
            rest.split_once('?')
                .map_or(String::new(), |(_, q)| format!("?{q}")),
        ),
        None => panic!("PARLANCE_TEST_POSTGRES_URL names no database: {admin_url}"),
    };
    let url = format!("{base}/{name}{query}");
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| restart_under_load(&url)));
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// How many client requests were answered, for the test to wait on.
#[derive(Default)]
struct Answered {
    count: std::sync::Mutex<usize>,
    changed: std::sync::Condvar,
}

impl Answered {
    fn count(&self, outcome: &Outcome) {
        if let Outcome::Answered(..) = outcome {
            *self.count.lock().unwrap() += 1;
            self.changed.notify_all();
        }
    }

    /// Waits until `more` requests beyond those answered now are answered.
    fn wait_for_more(&self, more: usize) {
        let count = self.count.lock().unwrap();
        let target = *count + more;
        let (count, waited) = self
            .changed
            .wait_timeout_while(count, Duration::from_secs(120), |n| *n < target)
            .unwrap();
        drop(count);
        assert!(
            !waited.timed_out(),
            "no request was answered for two minutes"
        );
    }
}

/// What one client request came to.
enum Outcome {
    /// Answered 200: the request id and the usage the client was told.
    Answered(String, Value),
    /// Anything but a 200 or a retry a load balancer would make.
    Failed(String),
}

/// One request as a load balancer in front of `instances` would send it:
/// to the next instance in turn, moving on when one refuses the connection,
/// closes it before answering, or answers 503 while draining — the same
/// request id each time, so that a retry can never bill twice.
fn balanced_request(instances: &std::sync::Mutex<Vec<String>>, start: usize, id: &str) -> Outcome {
    let body = json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": 6,
        "logit_bias": {"0": -100, "2": -100},
    })
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut turn = start;
    while Instant::now() < deadline {
        let addr = {
            let list = instances.lock().unwrap();
            list[turn % list.len()].clone()
        };
        turn += 1;
        let Ok(mut socket) = TcpStream::connect(&addr) else {
            continue;
        };
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let sent = write!(
            socket,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\n\
             content-type: application/json\r\nx-request-id: {id}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut answer = String::new();
        if sent.is_err() || socket.read_to_string(&mut answer).is_err() || answer.is_empty() {
            continue;
        }
        if answer.starts_with("HTTP/1.1 503") {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if !answer.starts_with("HTTP/1.1 200") {
            return Outcome::Failed(answer);
        }
        let json = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let usage = serde_json::from_str::<Value>(json)
            .map(|v| v["usage"].clone())
            .unwrap_or(Value::Null);
        return Outcome::Answered(id.to_owned(), usage);
    }
    Outcome::Failed(format!("{id}: no instance answered in two minutes"))
}

/// A rolling restart: three instances on one database, each stopped with
/// SIGTERM (it drains) and started again in turn, under continuous load.
/// No request fails, and the ledger holds exactly one `ok` row per answer,
/// with the tokens its client was told.
#[test]
fn a_rolling_restart_of_three_instances_fails_and_misbills_nothing() {
    let _one_at_a_time = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let data = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        data.path().join("shared.db").display()
    );
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let (server, addr) = serve(data.path(), &url);
        servers.push(server);
        addrs.push(addr);
    }
    let instances = std::sync::Arc::new(std::sync::Mutex::new(addrs));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(Answered::default());
    let clients: Vec<_> = (0..3)
        .map(|client| {
            let (instances, stop) = (instances.clone(), stop.clone());
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let id = format!("roll-{client}-{n}");
                    let outcome = balanced_request(&instances, client + n, &id);
                    answered.count(&outcome);
                    outcomes.push(outcome);
                    n += 1;
                }
                outcomes
            })
        })
        .collect();
    // Load is running before the first restart, and each restarted
    // instance serves alongside the others before the next one stops.
    answered.wait_for_more(3);
    for (index, slot) in servers.iter_mut().enumerate() {
        let pid = slot.0.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(signalled.success());
        let status = slot.0.wait().unwrap();
        assert_eq!(status.code(), Some(0), "instance {index} exited {status:?}");
        let (server, addr) = serve(data.path(), &url);
        *slot = server;
        instances.lock().unwrap()[index] = addr;
        answered.wait_for_more(3);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcomes: Vec<Outcome> = clients
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect();
    let failures: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(why) => Some(why),
            Outcome::Answered(..) => None,
        })
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let answered: Vec<(&String, &Value)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Answered(id, usage) => Some((id, usage)),
            Outcome::Failed(_) => None,
        })
        .collect();
    assert!(answered.len() >= 10, "only {} requests ran", answered.len());
    eprintln!(
        "{} requests answered across the rolling restart",
        answered.len()
    );
    drop(servers);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let org = default_org(&store).await;
        let rows = store
            .list_usage(&org, 0, i64::MAX, None, 10_000)
            .await
            .unwrap();
        assert_eq!(rows.len(), answered.len(), "one row per answered request");
        for (id, usage) in &answered {
            let row = store.get_usage(&org, id).await.unwrap().usage;
            assert_eq!(row.status, "ok", "{id}");
            assert_eq!(
                row.completion_tokens,
                usage["completion_tokens"].as_i64().unwrap(),
                "{id}"
            );
            assert_eq!(
                row.prompt_tokens,
                usage["prompt_tokens"].as_i64().unwrap(),
                "{id}"
            );
        }
        assert!(
            store.recover().await.unwrap().is_empty(),
            "nothing left open"
        );
        store.close().await;
    });
}
