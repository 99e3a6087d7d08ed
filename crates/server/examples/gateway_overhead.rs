//! The gateway-overhead benchmark (not a test): how much latency Parlance's
//! router adds in front of a fast OpenAI-compatible upstream.
//!
//! It starts a mock upstream on 127.0.0.1 (a fixed small answer, whole or
//! streamed as asked; its own single-threaded runtime, like a separate
//! process), then an in-process Parlance server (the real `server::router`,
//! two worker threads) whose `[gateway]` routes the model `bench` to that
//! upstream, metered into a SQLite ledger (WAL, as `parlance serve` runs
//! it) or unmetered. An open-loop load generator (fixed arrival rate: a
//! request is sent every 1/rate seconds whether or not earlier ones have
//! answered) measures each request from send to the last byte of the body,
//! for (a) the mock directly and (b) through Parlance, and prints p50/p99
//! and the added latency (b − a). After each metered run on SQLite it
//! prints that ledger's CPU time per request (its writer thread; sqlx's
//! threads, mostly the WAL checkpointer), read from Linux's `/proc`: CPU
//! time, so what other processes take from those threads does not count.
//! It still falls as more writes share a commit, which they do under load:
//! compare it between runs alternated on one machine.
//!
//! It also times the metering's two SQLite transactions per request (the
//! reservation before the call, the settlement after) on their own, and
//! with the path `ledger`, the meter's throughput without HTTP: metered
//! requests per second through `service::Meter` and its one ledger writer
//! (group commit), 64 and 256 at a time.
//!
//! ```text
//! cargo run --release -p server --example gateway_overhead -- [SECS] [RATE,RATE…] [PATH,…]
//! ```
//! The metered ledger is a SQLite file in a temp dir, or the database
//! `PARLANCE_BENCH_DATABASE_URL` names (e.g. an empty PostgreSQL database).
//! Defaults: 10 s per run at 500 and 2,000 requests/s, every path
//! (`metered`, `unmetered`; `direct` always runs, as the baseline). Results are in
//! `docs/PERFORMANCE.md` ("Gateway overhead").

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use server::{AppState, Auth};
use service::Tenant;
use store::Store;

const WHOLE: &str = r#"{"id":"chatcmpl-mock","object":"chat.completion","created":1,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how are you?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":6,"total_tokens":13}}"#;

fn streamed() -> String {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\
             \"model\":\"up\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\
             \"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let mut out = chunk(r#"{"role":"assistant","content":""}"#, "null");
    for word in ["Hello", " there,", " how", " are", " you?"] {
        out.push_str(&chunk(&format!("{{\"content\":\"{word}\"}}"), "null"));
    }
    out.push_str(&chunk("{}", "\"stop\""));
    out.push_str(
        "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\
         \"model\":\"up\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":6,\
         \"total_tokens\":13}}\n\ndata: [DONE]\n\n",
    );
    out
}

/// Starts the mock upstream on its own thread and runtime.
fn start_mock() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let stream_body: &'static str = Box::leak(streamed().into_boxed_str());
            let app = Router::new()
                .route(
                    "/v1/chat/completions",
                    post(move |body: Bytes| async move {
                        let wants_stream = body.windows(13).any(|w| w == b"\"stream\":true");
                        if wants_stream {
                            ([(header::CONTENT_TYPE, "text/event-stream")], stream_body)
                                .into_response()
                        } else {
                            ([(header::CONTENT_TYPE, "application/json")], WHOLE).into_response()
                        }
                    }),
                )
                .route(
                    "/v1/models",
                    get(|| async { r#"{"object":"list","data":[]}"# }),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    rx.recv().expect("the mock's address")
}

/// Starts Parlance in front of `upstream` on its own thread and runtime
/// (two workers); metered into a SQLite ledger in `dir` when given.
fn start_parlance(upstream: SocketAddr, ledger: Option<String>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let gw: gateway::GatewayConfig = serde_json::from_value(json!({
                "models": [{
                    "name": "bench",
                    "backends": [{
                        "id": "mock", "kind": "openai",
                        "base_url": format!("http://{upstream}/v1"),
                        "model": "up", "api_key": "sk-bench",
                    }],
                }],
                "health": {"enabled": false},
            }))
            .expect("a valid gateway config");
            let mut state = AppState::new(Vec::new())
                .with_gateway(&gw)
                .expect("a usable gateway config");
            if let Some(url) = ledger {
                let store = Store::connect(&url).await.expect("store");
                let org = store.create_org("local").await.expect("org");
                let project = store
                    .create_project(&org.id, "local")
                    .await
                    .expect("project");
                state = state.with_auth(Auth::Open {
                    store,
                    tenant: Tenant {
                        org_id: org.id,
                        project_id: project.id,
                        api_key_id: "local".into(),
                        admin: true,
                        ..Tenant::default()
                    },
                });
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            server::serve(listener, state).await.expect("serve");
        });
    });
    rx.recv().expect("Parlance's address")
}

/// Latencies of one run, in microseconds, and the requests that failed.
struct Run {
    micros: Vec<u64>,
    failed: usize,
    achieved_rate: f64,
}

impl Run {
    fn percentile(&self, p: f64) -> u64 {
        if self.micros.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * self.micros.len() as f64).ceil() as usize;
        self.micros[rank.clamp(1, self.micros.len()) - 1]
    }
}

/// Sends `rate` requests a second to `url` for `secs` seconds, open loop.
async fn run(client: &reqwest::Client, url: &str, stream: bool, rate: u32, secs: u64) -> Run {
    let body = Bytes::from(
        json!({
            "model": "bench",
            "stream": stream,
            "messages": [{"role": "user", "content": "Say hello."}],
        })
        .to_string(),
    );
    let total = u64::from(rate) * secs;
    let period = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + period * u32::try_from(i).expect("fewer than 2^32 requests");
        tokio::time::sleep_until(due).await;
        let request = client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let response = request.send().await.map_err(|e| format!("send: {e}"))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|e| format!("body: {e}"))?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes);
                return Err(format!(
                    "{status}: {}",
                    text.chars().take(160).collect::<String>()
                ));
            }
            if stream && !bytes.ends_with(b"data: [DONE]\n\n") {
                let text = String::from_utf8_lossy(&bytes);
                let tail: String = text
                    .chars()
                    .rev()
                    .take(160)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(format!("no [DONE]: …{tail}"));
            }
            Ok(sent.elapsed().as_micros() as u64)
        });
    }
    let sent_in = start.elapsed();
    let mut micros = Vec::with_capacity(total as usize);
    let mut failed = 0;
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    while let Some(outcome) = tasks.join_next().await {
        match outcome.map_err(|e| format!("task: {e}")).and_then(|r| r) {
            Ok(us) => micros.push(us),
            Err(reason) => {
                failed += 1;
                *reasons.entry(reason).or_default() += 1;
            }
        }
    }
    // Why requests failed, most common first (a few kinds).
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    for (reason, count) in reasons.iter().take(3) {
        eprintln!("  failed ×{count}: {reason}");
    }
    micros.sort_unstable();
    Run {
        micros,
        failed,
        achieved_rate: total as f64 / sent_in.as_secs_f64(),
    }
}

/// CPU time so far (ns) of this process's threads whose names start with
/// `parlance-ledger` (the SQLite ledger's writer) and `sqlx-sqlite` (sqlx's
/// SQLite connections: the WAL checkpointer, reads), from Linux's
/// `/proc/self/task/*/schedstat`; zeros elsewhere. Threads that ended
/// meanwhile are not counted.
fn database_cpu_ns() -> (u64, u64) {
    let (mut writer, mut others) = (0, 0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if comm.starts_with("parlance-ledger") {
            writer += ns;
        } else if comm.starts_with("sqlx-sqlite") {
            others += ns;
        }
    }
    (writer, others)
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// Times the metering's SQLite writes alone: reservation, then settlement.
async fn time_ledger(path: &std::path::Path, count: usize) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = Store::connect(&url).await.expect("store");
    let org = store.create_org("timing").await.expect("org");
    let (mut reads, mut reserve, mut settle) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        let request_id = format!("t-{i}");
        let at = store::now_ms();
        // What `Meter::begin` reads first (concurrently): the stored price
        // and whether the request id is already in the ledger.
        let started = Instant::now();
        let (price, used) = tokio::join!(
            store.price_at("bench", at),
            store.get_usage(&org.id, &request_id)
        );
        price.expect("price");
        assert!(used.is_err(), "a fresh request id");
        reads.push(started.elapsed().as_micros() as u64);
        let started = Instant::now();
        store
            .reserve(&store::NewReservation {
                request_id: request_id.clone(),
                org_id: org.id.clone(),
                project_id: None,
                api_key_id: None,
                user_id: None,
                amount: 1_000,
                created_at: at,
                model: Some("bench".into()),
                backend: Some("mock".into()),
                owner: None,
                endpoint: String::new(),
            })
            .await
            .expect("reserve");
        reserve.push(started.elapsed().as_micros() as u64);
        let started = Instant::now();
        store
            .settle_reporting(&store::NewUsage {
                endpoint: String::new(),
                request_id,
                org_id: org.id.clone(),
                model: "bench".into(),
                backend: "mock".into(),
                prompt_tokens: 7,
                completion_tokens: 6,
                cost: 500,
                status: "ok".into(),
                created_at: at,
                ..store::NewUsage::default()
            })
            .await
            .expect("settle");
        settle.push(started.elapsed().as_micros() as u64);
    }
    for (name, mut v) in [("reads", reads), ("reserve", reserve), ("settle", settle)] {
        v.sort_unstable();
        let p = |q: f64| v[((q / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        println!(
            "sqlite {name:<8} p50 {} ms  p99 {} ms  ({count} sequential)",
            ms(p(50.0)),
            ms(p(99.0))
        );
    }
}

/// The meter alone, without HTTP: `workers` requests at a time (closed
/// loop) each take a reservation, record one progress checkpoint (as a
/// stream does at its first token) and settle, through `service::Meter` and
/// its one ledger writer, on a two-worker runtime like Parlance's. Prints
/// the metered requests completed per second and each one's latency.
fn ledger_throughput(url: &str, secs: u64, workers: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let store = Store::connect(url).await.expect("store");
        let org = store.create_org("throughput").await.expect("org");
        let project = store
            .create_project(&org.id, "throughput")
            .await
            .expect("project");
        let meter = service::Meter::new(store, billing::PriceTable::reference());
        let tenant = Tenant {
            org_id: org.id,
            project_id: project.id,
            api_key_id: "bench".into(),
            ..Tenant::default()
        };
        let deadline = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..workers {
            let (meter, tenant) = (meter.clone(), tenant.clone());
            tasks.spawn(async move {
                let mut micros = Vec::new();
                let mut failed = 0usize;
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let request_id = format!("w{w}-{i}");
                    let begun = Instant::now();
                    let planned = service::metering::Planned {
                        request_id: &request_id,
                        model: "bench",
                        endpoint: "/v1/chat/completions",
                        prompt_tokens: 7,
                        max_completion_tokens: 16,
                        unlisted: None,
                    };
                    match meter.begin(&tenant, None, planned).await {
                        Ok(mut charge) => {
                            let mut used = billing::Usage {
                                prompt_tokens: 7,
                                cached_tokens: 0,
                                completion_tokens: 1,
                            };
                            charge.record(used);
                            used.completion_tokens = 6;
                            let finished = service::metering::Outcome::Finished(None);
                            charge.settle(finished, used).written().await;
                            micros.push(begun.elapsed().as_micros() as u64);
                        }
                        Err(_) => failed += 1,
                    }
                }
                (micros, failed)
            });
        }
        let (mut micros, mut failed) = (Vec::new(), 0);
        while let Some(done) = tasks.join_next().await {
            let (m, f) = done.expect("a worker");
            micros.extend(m);
            failed += f;
        }
        meter.flush().await;
        let elapsed = started.elapsed().as_secs_f64();
        micros.sort_unstable();
        let p = |q: f64| {
            micros[((q / 100.0 * micros.len() as f64).ceil() as usize).clamp(1, micros.len()) - 1]
        };
        println!(
            "ledger  {:>5} in flight: {:.0} metered requests/s ({} in {:.1} s; reserve+progress+settle p50 {} ms, p99 {} ms; {} failed)",
            workers,
            micros.len() as f64 / elapsed,
            micros.len(),
            elapsed,
            ms(p(50.0)),
            ms(p(99.0)),
            failed
        );
    });
}

fn main() {
    // The servers' own log (`RUST_LOG=error` says why a request failed
    // with a 5xx; the table only counts it).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let rates: Vec<u32> = args
        .next()
        .map(|s| s.split(',').filter_map(|r| r.parse().ok()).collect())
        .unwrap_or_else(|| vec![500, 2_000]);
    // Which paths to run besides `direct` (the baseline), e.g. `unmetered`.
    let only: Option<Vec<String>> = args
        .next()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let dir = tempfile::tempdir().expect("a temp dir");
    let mock = start_mock();
    // The metered ledger: `PARLANCE_BENCH_DATABASE_URL` (e.g. an empty
    // PostgreSQL database), else a SQLite file in a temp dir.
    let ledger = std::env::var("PARLANCE_BENCH_DATABASE_URL").unwrap_or_else(|_| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("ledger.db").display()
        )
    });
    println!(
        "metered ledger: {}",
        ledger.split('@').next_back().unwrap_or(&ledger)
    );
    if only
        .as_ref()
        .is_some_and(|o| o.iter().any(|n| n == "ledger"))
    {
        // The ledger alone: a fresh database each time (SQLite) or the
        // one named (rows of earlier runs stay in it).
        for workers in [64, 256] {
            let url = match std::env::var("PARLANCE_BENCH_DATABASE_URL") {
                Ok(url) => url,
                Err(_) => format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join(format!("alone-{workers}.db")).display()
                ),
            };
            ledger_throughput(&url, secs, workers);
        }
        if only.as_ref().is_some_and(|o| o.len() == 1) {
            return;
        }
    }
    let metered = start_parlance(mock, Some(ledger));
    let unmetered = start_parlance(mock, None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        time_ledger(&dir.path().join("timing.db"), 2_000).await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("a client");
        let targets: Vec<(&str, String)> = [
            ("direct", format!("http://{mock}/v1/chat/completions")),
            ("metered", format!("http://{metered}/v1/chat/completions")),
            ("unmetered", format!("http://{unmetered}/v1/chat/completions")),
        ]
        .into_iter()
        .filter(|(name, _)| {
            *name == "direct" || only.as_ref().is_none_or(|o| o.iter().any(|n| n == name))
        })
        .collect();
        // Warm up every path (connections, SQLite pages, allocator).
        for (_, url) in &targets {
            for stream in [false, true] {
                run(&client, url, stream, 500, 1).await;
            }
        }
        println!(
            "{:<6} {:>5} {:<9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6}",
            "mode", "rate", "path", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "p50 ×", "p99 ×", "failed"
        );
        for stream in [false, true] {
            for &rate in &rates {
                let mut direct = None;
                for (name, url) in &targets {
                    let cpu_before = database_cpu_ns();
                    let result = run(&client, url, stream, rate, secs).await;
                    let cpu_after = database_cpu_ns();
                    let (p50, p99) = (result.percentile(50.0), result.percentile(99.0));
                    let (base50, base99) = *direct.get_or_insert((p50, p99));
                    println!(
                        "{:<6} {:>5} {:<9} {:>8} {:>8} {:>8} {:>8} {:>9.2} {:>9.2} {:>6}  (sent {:.0}/s)",
                        if stream { "stream" } else { "whole" },
                        rate,
                        name,
                        ms(p50),
                        ms(p99),
                        ms(p50.saturating_sub(base50)),
                        ms(p99.saturating_sub(base99)),
                        p50 as f64 / base50.max(1) as f64,
                        p99 as f64 / base99.max(1) as f64,
                        result.failed,
                        result.achieved_rate,
                    );
                    // The metered server's SQLite work per request, in CPU
                    // time (not counting what other processes take from it).
                    let served = result.micros.len().max(1) as u64;
                    let writer = cpu_after.0.saturating_sub(cpu_before.0) / served;
                    let others = cpu_after.1.saturating_sub(cpu_before.1) / served;
                    if *name == "metered" && writer + others > 0 {
                        println!(
                            "       SQLite CPU per request: writer thread {:.1} µs, sqlx's threads \
                             (checkpoints) {:.1} µs",
                            writer as f64 / 1000.0,
                            others as f64 / 1000.0
                        );
                    }
                }
            }
        }
    });
}
