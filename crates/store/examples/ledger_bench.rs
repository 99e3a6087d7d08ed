//! The usage ledger at scale: write throughput through the real settle path,
//! a bulk load of millions of ledger rows with their rollups, and the usage
//! and costs queries timed against the rollups and against the ledger.
//!
//! A benchmark, not a test: it creates its own database, prints a table and
//! drops the database at the end (unless `--keep`).
//!
//! ```sh
//! cargo run --release -p store --example ledger_bench -- \
//!     --url 'sqlite:///tmp/ledger_bench.db?mode=rwc' --rows 10000000
//! cargo run --release -p store --example ledger_bench -- \
//!     --url postgres://postgres@127.0.0.1:5432/ledger_bench_1 --rows 10000000
//! ```
//!
//! Options: `--rows N` (bulk rows, default 10,000,000), `--writers N`
//! (concurrent settle loops, default 16), `--write-secs S` (each write phase,
//! default 10), `--runs N` (timed runs per query, median reported, default
//! 5), `--ledger-runs N` (runs of the ledger-direct baseline, default 3; 0
//! skips it), `--keep` (leave the database).
//!
//! Phases: (a) writers settle new rows for `--write-secs` on the empty
//! database; (b) bulk load (SQLite: multi-row INSERTs of 1,000 rows;
//! PostgreSQL: COPY), committed every 100,000 rows, in time order over 30 whole UTC days ending at today's midnight,
//! for 20 organisations of Zipf-like sizes (organisation k gets a share ∝
//! 1/(k+1)), 2–5 projects each with 1–3 keys, three models, and one request
//! in five made from the web app by one of three users; then the rollups of
//! those rows in one INSERT … SELECT … GROUP BY per width (what migration
//! 0004 does), then ANALYZE (PostgreSQL: VACUUM ANALYZE, as autovacuum
//! would); (a') the writers again on the loaded database; (c) the queries,
//! for the largest organisation over the 30 days.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{AnyConnection, Connection, Executor, Row};
use store::{
    now_ms, BucketWidth, CostGroupBy, CostsQuery, GroupBy, NewUsage, Store, UsageFilter, UsagePage,
    UsageQuery,
};

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
const DAYS: i64 = 30;
const ORGS: usize = 20;
const MODELS: [&str; 3] = ["gpt-4o-mini", "llama-3.1-8b", "smollm2-135m"];
/// Picodollars per input and output token of each model.
const PRICES: [(i64, i64); 3] = [(150_000, 600_000), (50_000, 80_000), (10_000, 20_000)];
const BATCH_ROWS: usize = 1_000;
const TX_ROWS: usize = 100_000;
const LEDGER_COLUMNS: &str = "request_id, org_id, project_id, api_key_id, user_id, model, \
    backend, prompt_tokens, cached_tokens, completion_tokens, cost, latency_ms, status, \
    finish_reason, created_at";

type BenchResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Options {
    url: String,
    rows: usize,
    writers: usize,
    write_secs: u64,
    runs: usize,
    ledger_runs: usize,
    keep: bool,
}

fn parse_options() -> BenchResult<Options> {
    let mut options = Options {
        url: String::new(),
        rows: 10_000_000,
        writers: 16,
        write_secs: 10,
        runs: 5,
        ledger_runs: 3,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => options.url = value()?,
            "--rows" => options.rows = value()?.replace('_', "").parse()?,
            "--writers" => options.writers = value()?.parse()?,
            "--write-secs" => options.write_secs = value()?.parse()?,
            "--runs" => options.runs = value()?.parse()?,
            "--ledger-runs" => options.ledger_runs = value()?.parse()?,
            "--keep" => options.keep = true,
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    if options.url.is_empty() {
        return Err("--url sqlite:///path?mode=rwc or postgres://…/new_db is required".into());
    }
    Ok(options)
}

/// The organisations, projects, keys and users the data is spread over.
struct Tenants {
    orgs: Vec<Org>,
    /// Cumulative weights of the organisations (Zipf-like).
    cumulative: Vec<f64>,
}

struct Org {
    id: String,
    /// (project, its keys)
    projects: Vec<(String, Vec<String>)>,
    users: Vec<String>,
}

impl Tenants {
    fn new(rng: &mut StdRng) -> Tenants {
        let mut orgs = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        for o in 0..ORGS {
            let projects = (0..rng.gen_range(2..=5))
                .map(|p| {
                    let keys = (0..rng.gen_range(1..=3))
                        .map(|k| format!("key_{o:02}_{p}_{k}"))
                        .collect();
                    (format!("proj_{o:02}_{p}"), keys)
                })
                .collect();
            let users = (0..3).map(|u| format!("user_{o:02}_{u}")).collect();
            orgs.push(Org {
                id: format!("org_{o:02}"),
                projects,
                users,
            });
            total += 1.0 / (o as f64 + 1.0);
            cumulative.push(total);
        }
        for c in &mut cumulative {
            *c /= total;
        }
        Tenants { orgs, cumulative }
    }

    /// A random request of a random organisation at `created_at`.
    fn usage(&self, rng: &mut StdRng, request_id: String, created_at: i64) -> NewUsage {
        let pick: f64 = rng.gen();
        let o = self.cumulative.iter().position(|&c| pick <= c).unwrap_or(0);
        let org = &self.orgs[o];
        let (project, keys) = &org.projects[rng.gen_range(0..org.projects.len())];
        let web = rng.gen_bool(0.2);
        let m = rng.gen_range(0..MODELS.len());
        let prompt = rng.gen_range(50..4_000);
        let completion = rng.gen_range(10..1_000);
        NewUsage {
            endpoint: String::new(),
            request_id,
            org_id: org.id.clone(),
            project_id: Some(project.clone()),
            api_key_id: (!web).then(|| keys[rng.gen_range(0..keys.len())].clone()),
            user_id: web.then(|| org.users[rng.gen_range(0..org.users.len())].clone()),
            model: MODELS[m].into(),
            backend: "local".into(),
            prompt_tokens: prompt,
            cached_tokens: rng.gen_range(0..=prompt / 2),
            completion_tokens: completion,
            cost: prompt * PRICES[m].0 + completion * PRICES[m].1,
            latency_ms: rng.gen_range(100..5_000),
            status: "ok".into(),
            finish_reason: Some("stop".into()),
            created_at,
        }
    }
}

/// Creates the benchmark's database; returns the URL to give the store.
async fn create_database(url: &str) -> BenchResult<()> {
    if let Some(path) = sqlite_path(url) {
        if std::path::Path::new(&path).exists() {
            return Err(format!("{path} exists; remove it or pick another path").into());
        }
        return Ok(());
    }
    let (admin_url, name) = postgres_admin(url)?;
    let mut admin = AnyConnection::connect(&admin_url).await?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    admin.close().await?;
    Ok(())
}

async fn drop_database(url: &str) -> BenchResult<()> {
    if let Some(path) = sqlite_path(url) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        return Ok(());
    }
    let (admin_url, name) = postgres_admin(url)?;
    let mut admin = AnyConnection::connect(&admin_url).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    admin.close().await?;
    Ok(())
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://")?;
    Some(rest.split('?').next().unwrap_or(rest).to_owned())
}

/// `postgres://…/name?q` → (`postgres://…/postgres?q`, `name`).
fn postgres_admin(url: &str) -> BenchResult<(String, String)> {
    let (path, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let slash = path.rfind('/').ok_or("postgres URL without a database")?;
    let name = &path[slash + 1..];
    let valid = !name.is_empty()
        && name != "postgres"
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!("database name {name:?}: use [a-z0-9_], not postgres").into());
    }
    Ok((
        format!("{}postgres{query}", &path[..=slash]),
        name.to_owned(),
    ))
}

/// Phase (a): `writers` loops settling new rows for `secs`; rows/s and
/// latency percentiles.
async fn write_phase(
    store: &Store,
    tenants: Arc<Tenants>,
    writers: usize,
    secs: u64,
    tag: &str,
) -> BenchResult<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for w in 0..writers {
        let store = store.clone();
        let tenants = tenants.clone();
        let stop = stop.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64);
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let usage = tenants.usage(&mut rng, format!("w{tag}_{w}_{n}"), now_ms());
                let t = Instant::now();
                store.settle(&usage).await?;
                latencies.push(t.elapsed());
                n += 1;
            }
            Ok::<_, store::StoreError>(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Ok(format!(
        "{} rows in {elapsed:.1} s = {:.0} rows/s (latency p50 {:.2} ms, p99 {:.2} ms)",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    ))
}

fn sql_text(value: Option<&str>) -> String {
    match value {
        // Generated ids and names: [a-z0-9_.-] only, nothing to escape.
        Some(v) => format!("'{v}'"),
        None => "NULL".into(),
    }
}

/// Phase (b): `rows` ledger rows in time order over the 30 days before
/// `end`, then their rollups. Returns the rows per organisation.
async fn bulk_load(url: &str, tenants: &Tenants, rows: usize, end: i64) -> BenchResult<Vec<usize>> {
    let mut conn = AnyConnection::connect(url).await?;
    if sqlite_path(url).is_some() {
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -524288;",
        )
        .await?;
    }
    let before: i64 =
        sqlx::query("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) AS id FROM usage_ledger")
            .fetch_one(&mut conn)
            .await?
            .try_get("id")?;
    let mut rng = StdRng::seed_from_u64(42);
    let start = end - DAYS * DAY;
    let step = (DAYS * DAY) as f64 / rows as f64;
    let mut per_org = vec![0usize; ORGS];
    let mut next = |i: usize, per_org: &mut Vec<usize>| -> BenchResult<NewUsage> {
        let at = start + (i as f64 * step) as i64 + rng.gen_range(0..step.max(1.0) as i64);
        let u = tenants.usage(&mut rng, format!("b{i:09}"), at.min(end - 1));
        per_org[u.org_id[4..].parse::<usize>()?] += 1;
        Ok(u)
    };
    let t = Instant::now();
    let mut done = 0;
    let mut pg = match sqlite_path(url) {
        Some(_) => None,
        None => Some(sqlx::PgConnection::connect(url).await?),
    };
    while done < rows {
        let tx_end = (done + TX_ROWS).min(rows);
        if let Some(pg) = pg.as_mut() {
            // PostgreSQL: COPY, one statement (one transaction) per 100,000 rows.
            let mut data = String::with_capacity(200 * TX_ROWS);
            for i in done..tx_end {
                let u = next(i, &mut per_org)?;
                let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "\\N".into());
                data.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    u.request_id,
                    u.org_id,
                    text(&u.project_id),
                    text(&u.api_key_id),
                    text(&u.user_id),
                    u.model,
                    u.backend,
                    u.prompt_tokens,
                    u.cached_tokens,
                    u.completion_tokens,
                    u.cost,
                    u.latency_ms,
                    u.status,
                    text(&u.finish_reason),
                    u.created_at
                ));
            }
            let mut copy = pg
                .copy_in_raw(&format!("COPY usage_ledger ({LEDGER_COLUMNS}) FROM STDIN"))
                .await?;
            copy.send(data.into_bytes()).await?;
            copy.finish().await?;
            done = tx_end;
        } else {
            // SQLite: multi-row INSERTs of 1,000 rows, 100,000 per transaction.
            let mut tx = conn.begin().await?;
            while done < tx_end {
                let batch_end = (done + BATCH_ROWS).min(tx_end);
                let mut sql = String::with_capacity(300 * BATCH_ROWS);
                sql.push_str(&format!(
                    "INSERT INTO usage_ledger ({LEDGER_COLUMNS}) VALUES "
                ));
                for i in done..batch_end {
                    let u = next(i, &mut per_org)?;
                    if i > done {
                        sql.push(',');
                    }
                    sql.push_str(&format!(
                        "('{}','{}',{},{},{},'{}','{}',{},{},{},{},{},'{}',{},{})",
                        u.request_id,
                        u.org_id,
                        sql_text(u.project_id.as_deref()),
                        sql_text(u.api_key_id.as_deref()),
                        sql_text(u.user_id.as_deref()),
                        u.model,
                        u.backend,
                        u.prompt_tokens,
                        u.cached_tokens,
                        u.completion_tokens,
                        u.cost,
                        u.latency_ms,
                        u.status,
                        sql_text(u.finish_reason.as_deref()),
                        u.created_at
                    ));
                }
                tx.execute(sql.as_str()).await?;
                done = batch_end;
            }
            tx.commit().await?;
        }
        if done % 1_000_000 == 0 || done == rows {
            let secs = t.elapsed().as_secs_f64();
            eprintln!(
                "  loaded {done} rows in {secs:.0} s ({:.0} rows/s)",
                done as f64 / secs
            );
        }
    }
    if let Some(pg) = pg {
        pg.close().await?;
    }
    let load = t.elapsed().as_secs_f64();
    println!(
        "bulk ledger load: {rows} rows in {load:.1} s = {:.0} rows/s",
        rows as f64 / load
    );

    let t = Instant::now();
    for width in [3_600_000i64, MINUTE] {
        let sql = format!(
            "INSERT INTO usage_rollup (org_id, width_ms, start_ms, project_id, api_key_id, model, \
             user_id, input_tokens, cached_tokens, output_tokens, requests, cost) \
             SELECT org_id, {width}, created_at - ((created_at % {width}) + {width}) % {width}, \
             COALESCE(project_id, ''), COALESCE(api_key_id, ''), model, COALESCE(user_id, ''), \
             SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens), COUNT(*), SUM(cost) \
             FROM usage_ledger WHERE id > {before} GROUP BY 1, 2, 3, 4, 5, 6, 7"
        );
        conn.execute(sql.as_str()).await?;
    }
    println!(
        "rollup build (INSERT … SELECT … GROUP BY, both widths): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    if sqlite_path(url).is_some() {
        conn.execute("ANALYZE").await?;
    } else {
        conn.execute("VACUUM ANALYZE usage_ledger").await?;
        conn.execute("VACUUM ANALYZE usage_rollup").await?;
    }
    println!("analyze: {:.1} s", t.elapsed().as_secs_f64());
    let counts = sqlx::query("SELECT width_ms, CAST(COUNT(*) AS BIGINT) AS n FROM usage_rollup GROUP BY width_ms ORDER BY width_ms")
        .fetch_all(&mut conn)
        .await?;
    for row in counts {
        let width: i64 = row.try_get("width_ms")?;
        let n: i64 = row.try_get("n")?;
        println!("rollup rows of width {} min: {n}", width / MINUTE);
    }
    conn.close().await?;
    Ok(per_org)
}

/// The median of `runs` timings of `f` (and its last answer).
async fn median<T, F, Fut>(runs: usize, mut f: F) -> BenchResult<(Duration, Option<T>)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = BenchResult<T>>,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f().await?);
        times.push(t.elapsed());
    }
    times.sort();
    Ok((
        times.get(times.len() / 2).copied().unwrap_or_default(),
        last,
    ))
}

/// Every page of a usage query, from the rollups or from the ledger.
async fn all_pages(
    store: &Store,
    org: &str,
    query: &UsageQuery,
    ledger: bool,
) -> BenchResult<Vec<UsagePage>> {
    let mut q = query.clone();
    let mut pages = Vec::new();
    loop {
        let page = if ledger {
            store.usage_from_ledger(org, &q).await?
        } else {
            store.usage(org, &q).await?
        };
        q.page = page.next_page.clone();
        pages.push(page);
        if q.page.is_none() {
            return Ok(pages);
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Phase (c): each query's median time on the rollups and on the ledger,
/// checking that both answer the same.
async fn query_phase(
    store: &Store,
    tenants: &Tenants,
    org: usize,
    start: i64,
    end: i64,
    options: &Options,
) -> BenchResult<()> {
    let org_data = &tenants.orgs[org];
    let base = UsageQuery {
        start,
        end,
        bucket_width: BucketWidth::Day,
        group_by: vec![],
        filter: UsageFilter::default(),
        limit: Some(31),
        page: None,
    };
    let with = |width: BucketWidth, limit: u32, group_by: Vec<GroupBy>| UsageQuery {
        bucket_width: width,
        limit: Some(limit),
        group_by,
        ..base.clone()
    };
    let all_groups = vec![
        GroupBy::ProjectId,
        GroupBy::ApiKeyId,
        GroupBy::Model,
        GroupBy::UserId,
    ];
    let cases: Vec<(String, UsageQuery)> = vec![
        ("1d, no group (1 page)".into(), base.clone()),
        (
            "1d, by project+model".into(),
            with(
                BucketWidth::Day,
                31,
                vec![GroupBy::ProjectId, GroupBy::Model],
            ),
        ),
        (
            "1d, by all 4 dimensions".into(),
            with(BucketWidth::Day, 31, all_groups.clone()),
        ),
        (
            "1d, filter 1 project + 1 model".into(),
            UsageQuery {
                filter: UsageFilter {
                    project_ids: vec![org_data.projects[0].0.clone()],
                    models: vec![MODELS[0].into()],
                    ..UsageFilter::default()
                },
                ..base.clone()
            },
        ),
        (
            "1d, unaligned start/end (edge minutes from ledger)".into(),
            UsageQuery {
                start: start + 12_345,
                end: end - 6_789,
                ..base.clone()
            },
        ),
        (
            "1h, no group (5 pages of 168)".into(),
            with(BucketWidth::Hour, 168, vec![]),
        ),
        (
            "1h, by model (5 pages)".into(),
            with(BucketWidth::Hour, 168, vec![GroupBy::Model]),
        ),
        (
            "1m, no group (30 pages of 1440)".into(),
            with(BucketWidth::Minute, 1440, vec![]),
        ),
        (
            "1m, by all 4 (30 pages of 1440)".into(),
            with(BucketWidth::Minute, 1440, all_groups),
        ),
    ];
    let org_id = org_data.id.as_str();
    println!();
    println!("| query ({org_id}, 30 days) | rollup median ms | ledger-direct median ms | speed-up | same answer |");
    println!("|---|---:|---:|---:|---|");
    for (name, q) in &cases {
        let (rollup_time, rollup) =
            median(options.runs, || all_pages(store, org_id, q, false)).await?;
        let (ledger_ms, speedup, same) = if options.ledger_runs > 0 {
            let (ledger_time, ledger) =
                median(options.ledger_runs, || all_pages(store, org_id, q, true)).await?;
            let speedup = ledger_time.as_secs_f64() / rollup_time.as_secs_f64().max(1e-9);
            (
                ms(ledger_time),
                format!("{speedup:.0}×"),
                if rollup == ledger { "yes" } else { "NO" },
            )
        } else {
            ("–".into(), "–".into(), "–")
        };
        println!(
            "| {name} | {} | {ledger_ms} | {speedup} | {same} |",
            ms(rollup_time)
        );
    }
    let costs = CostsQuery {
        start,
        end,
        group_by: vec![CostGroupBy::ProjectId, CostGroupBy::LineItem],
        project_ids: vec![],
        limit: Some(30),
        page: None,
    };
    let (costs_time, _) = median(options.runs, || async {
        Ok(store.costs(org_id, &costs).await?)
    })
    .await?;
    println!(
        "| costs, 1d by project_id+line_item (1 page) | {} | – | – | – |",
        ms(costs_time)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let options = parse_options()?;
    sqlx::any::install_default_drivers();
    create_database(&options.url).await?;
    let result = run(&options).await;
    if options.keep {
        println!("kept {}", options.url);
    } else {
        drop_database(&options.url).await?;
    }
    result
}

async fn run(options: &Options) -> BenchResult<()> {
    let started = Instant::now();
    let store = Store::connect(&options.url).await?;
    println!(
        "backend: {:?}, rows: {}, writers: {}",
        store.backend(),
        options.rows,
        options.writers
    );
    let tenants = Arc::new(Tenants::new(&mut StdRng::seed_from_u64(7)));
    let end = now_ms().div_euclid(DAY) * DAY;
    let start = end - DAYS * DAY;

    let line = write_phase(
        &store,
        tenants.clone(),
        options.writers,
        options.write_secs,
        "e",
    )
    .await?;
    println!("(a) settle, empty database: {line}");
    let per_org = bulk_load(&options.url, &tenants, options.rows, end).await?;
    let line = write_phase(
        &store,
        tenants.clone(),
        options.writers,
        options.write_secs,
        "l",
    )
    .await?;
    println!("(a') settle, after the load: {line}");
    let (org, rows) = per_org
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map_or((0, 0), |(o, n)| (o, *n));
    println!(
        "largest organisation: {} with {rows} of the bulk rows",
        tenants.orgs[org].id
    );
    query_phase(&store, &tenants, org, start, end, options).await?;
    store.close().await;
    println!("\ntotal {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
