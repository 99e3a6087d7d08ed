//! Usage aggregation: buckets, group-by, filters, pagination.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Executor;
use store::{
    Backend, BucketWidth, CostGroupBy, CostResult, CostsQuery, ErrorKind, GroupBy, NewUsage,
    UsageBucket, UsageFilter, UsagePage, UsageQuery, UsageResult, COSTS_LIMITS,
};

use crate::ledger::usage;
use crate::support::Db;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2024-01-01T00:00:00Z, a day boundary.
const T0: i64 = 1_704_067_200_000;

fn row(org: &str, id: &str, at: i64, project: &str, model: &str, tokens: i64) -> NewUsage {
    NewUsage {
        endpoint: String::new(),
        project_id: Some(project.into()),
        api_key_id: Some(format!("key_{project}")),
        user_id: Some("user_1".into()),
        model: model.into(),
        prompt_tokens: tokens,
        cached_tokens: 0,
        completion_tokens: 2 * tokens,
        cost: 3 * tokens,
        ..usage(org, id, at)
    }
}

/// Rows for org A in hours 0, 1 and 3 after T0, and one for org B.
async fn seed(db: &Db) {
    let rows = [
        row("org_a", "r1", T0 + 10, "p1", "m1", 1),
        row("org_a", "r2", T0 + HOUR - 1, "p1", "m2", 10),
        row("org_a", "r3", T0 + HOUR, "p2", "m1", 100),
        row("org_a", "r4", T0 + HOUR + 5, "p1", "m1", 1_000),
        row("org_a", "r5", T0 + 3 * HOUR, "p2", "m2", 10_000),
        row("org_b", "r6", T0 + 10, "p9", "m1", 100_000),
    ];
    for r in rows {
        db.store.record_usage(&r).await.unwrap();
    }
}

fn query(width: BucketWidth, group_by: Vec<GroupBy>) -> UsageQuery {
    UsageQuery {
        start: T0,
        end: T0 + 4 * HOUR,
        bucket_width: width,
        group_by,
        filter: UsageFilter::default(),
        limit: None,
        page: None,
    }
}

fn total(input: i64, requests: i64) -> UsageResult {
    UsageResult {
        input_tokens: input,
        output_tokens: 2 * input,
        cost: 3 * input,
        num_model_requests: requests,
        ..UsageResult::default()
    }
}

pub async fn usage_buckets_and_group_by_sum_right(db: Db) {
    seed(&db).await;
    let s = &db.store;
    let page = s
        .usage("org_a", &query(BucketWidth::Hour, vec![]))
        .await
        .unwrap();
    assert_eq!(page.next_page, None);
    let starts: Vec<i64> = page.buckets.iter().map(|b| b.start_time).collect();
    assert_eq!(starts, [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]);
    assert_eq!(page.buckets[0].end_time, T0 + HOUR);
    assert_eq!(page.buckets[0].results, [total(11, 2)]);
    assert_eq!(page.buckets[1].results, [total(1_100, 2)]);
    assert!(page.buckets[2].results.is_empty());
    assert_eq!(page.buckets[3].results, [total(10_000, 1)]);

    let by_model = s
        .usage("org_a", &query(BucketWidth::Hour, vec![GroupBy::Model]))
        .await
        .unwrap();
    let hour1: Vec<(Option<String>, i64)> = by_model.buckets[0]
        .results
        .iter()
        .map(|r| (r.model.clone(), r.input_tokens))
        .collect();
    assert_eq!(hour1, [(Some("m1".into()), 1), (Some("m2".into()), 10)]);
    assert!(by_model.buckets[0]
        .results
        .iter()
        .all(|r| r.project_id.is_none()));

    let day = s
        .usage(
            "org_a",
            &query(
                BucketWidth::Day,
                vec![GroupBy::ProjectId, GroupBy::ApiKeyId],
            ),
        )
        .await
        .unwrap();
    assert_eq!(day.buckets.len(), 1);
    let per_project: Vec<(Option<String>, Option<String>, i64, i64)> = day.buckets[0]
        .results
        .iter()
        .map(|r| {
            (
                r.project_id.clone(),
                r.api_key_id.clone(),
                r.input_tokens,
                r.num_model_requests,
            )
        })
        .collect();
    assert_eq!(
        per_project,
        [
            (Some("p1".into()), Some("key_p1".into()), 1_011, 3),
            (Some("p2".into()), Some("key_p2".into()), 10_100, 2),
        ]
    );
    let by_user = s
        .usage("org_a", &query(BucketWidth::Day, vec![GroupBy::UserId]))
        .await
        .unwrap();
    assert_eq!(
        by_user.buckets[0].results[0].user_id.as_deref(),
        Some("user_1")
    );
    assert_eq!(by_user.buckets[0].results[0].cost, 3 * 11_111);

    // Minute buckets split the first hour's two requests.
    let minutes = UsageQuery {
        end: T0 + HOUR,
        ..query(BucketWidth::Minute, vec![])
    };
    let page = s.usage("org_a", &minutes).await.unwrap();
    assert_eq!(page.buckets.len(), 60);
    assert_eq!(page.buckets[0].results, [total(1, 1)]);
    assert_eq!(page.buckets[59].results, [total(10, 1)]);

    // Organisation B sees only its own row.
    let b = s
        .usage("org_b", &query(BucketWidth::Day, vec![]))
        .await
        .unwrap();
    assert_eq!(b.buckets[0].results, [total(100_000, 1)]);
    let c = s
        .usage("org_c", &query(BucketWidth::Day, vec![]))
        .await
        .unwrap();
    assert!(c.buckets[0].results.is_empty());
}

pub async fn usage_filters_and_pagination(db: Db) {
    seed(&db).await;
    let s = &db.store;
    let mut q = query(BucketWidth::Hour, vec![]);
    q.filter = UsageFilter {
        models: vec!["m1".into()],
        project_ids: vec!["p1".into(), "p2".into()],
        ..UsageFilter::default()
    };
    let page = s.usage("org_a", &q).await.unwrap();
    let sums: Vec<i64> = page
        .buckets
        .iter()
        .map(|b| b.results.iter().map(|r| r.input_tokens).sum())
        .collect();
    assert_eq!(sums, [1, 1_100, 0, 0]);
    q.filter = UsageFilter {
        api_key_ids: vec!["key_p2".into()],
        ..UsageFilter::default()
    };
    q.filter.user_ids = vec!["user_1".into()];
    let page = s.usage("org_a", &q).await.unwrap();
    let key_total: i64 = page
        .buckets
        .iter()
        .flat_map(|b| &b.results)
        .map(|r| r.input_tokens)
        .sum();
    assert_eq!(key_total, 10_100);

    // Pages of two hour-buckets: [0, 1], [2, 3], done.
    let mut q = query(BucketWidth::Hour, vec![]);
    q.limit = Some(2);
    let first = s.usage("org_a", &q).await.unwrap();
    assert_eq!(first.buckets.len(), 2);
    assert_eq!(first.buckets[1].results, [total(1_100, 2)]);
    q.page = first.next_page.clone();
    assert!(q.page.is_some());
    let second = s.usage("org_a", &q).await.unwrap();
    assert_eq!(second.buckets[0].start_time, T0 + 2 * HOUR);
    assert_eq!(second.buckets[1].results, [total(10_000, 1)]);
    assert_eq!(second.next_page, None);

    // Endpoints: the embeddings page counts only its rows, completions
    // every row but those.
    let embedding = NewUsage {
        endpoint: "/v1/embeddings".into(),
        ..row("org_a", "r7", T0 + 20, "p1", "minilm", 7)
    };
    s.record_usage(&embedding).await.unwrap();
    let sum = |page: &UsagePage| -> i64 {
        page.buckets
            .iter()
            .flat_map(|b| &b.results)
            .map(|r| r.input_tokens)
            .sum()
    };
    let mut q = query(BucketWidth::Day, vec![]);
    q.filter.endpoints = vec!["/v1/embeddings".into()];
    assert_eq!(sum(&s.usage("org_a", &q).await.unwrap()), 7);
    q.filter = UsageFilter {
        not_endpoints: vec!["/v1/embeddings".into(), "/v1/moderations".into()],
        ..UsageFilter::default()
    };
    assert_eq!(sum(&s.usage("org_a", &q).await.unwrap()), 11_111);
}

pub async fn usage_rejects_bad_queries(db: Db) {
    let s = &db.store;
    let mut q = query(BucketWidth::Day, vec![]);
    q.limit = Some(32);
    assert_eq!(
        s.usage("org_a", &q).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    q.limit = None;
    q.page = Some("garbage".into());
    assert_eq!(
        s.usage("org_a", &q).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    q.page = None;
    q.end = q.start;
    assert_eq!(
        s.usage("org_a", &q).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    assert_eq!("1h".parse::<BucketWidth>().unwrap(), BucketWidth::Hour);
    assert!("2h".parse::<BucketWidth>().is_err());
    assert_eq!("model".parse::<GroupBy>().unwrap(), GroupBy::Model);
}

/// Random ledger rows for two organisations over three days, bunched into a
/// few hot minutes (often right on or next to a minute or hour boundary) so
/// rollup rows sum several requests and the query edges cut through them;
/// some go through `settle`, some are retried (a retry must not count twice).
/// Returns the rows as stored.
async fn seed_random(db: &Db, rng: &mut StdRng) -> Vec<NewUsage> {
    let projects = [Some("p1"), Some("p2"), None];
    let keys = [Some("k1"), Some("k2"), None];
    let users = [Some("u1"), Some("u2"), None];
    let models = ["m1", "m2", "m3"];
    let hot: Vec<i64> = (0..12)
        .map(|i| {
            let unit = if i % 3 == 0 { HOUR } else { MINUTE };
            T0 + rng.gen_range(0..3 * DAY) / unit * unit
        })
        .collect();
    let mut rows = Vec::new();
    for i in 0..300 {
        let base = hot[rng.gen_range(0..hot.len())];
        let at = match rng.gen_range(0..6) {
            0 => base,
            1 => base - 1,
            2 => base + 1,
            3 | 4 => base + rng.gen_range(-MINUTE..2 * MINUTE),
            _ => T0 + rng.gen_range(0..3 * DAY),
        };
        let prompt = rng.gen_range(0..1_000);
        let record = NewUsage {
            endpoint: String::new(),
            project_id: projects[rng.gen_range(0..3)].map(String::from),
            api_key_id: keys[rng.gen_range(0..3)].map(String::from),
            user_id: users[rng.gen_range(0..3)].map(String::from),
            model: models[rng.gen_range(0..3)].into(),
            prompt_tokens: prompt,
            cached_tokens: rng.gen_range(0..=prompt),
            completion_tokens: rng.gen_range(0..1_000),
            cost: rng.gen_range(0..1_000_000_000),
            ..usage(
                ["org_a", "org_b"][rng.gen_range(0..2)],
                &format!("r{i}"),
                at,
            )
        };
        if rng.gen_bool(0.5) {
            db.store.settle(&record).await.unwrap();
        } else {
            db.store.record_usage(&record).await.unwrap();
        }
        if rng.gen_bool(0.1) {
            let retry = NewUsage {
                endpoint: String::new(),
                cost: 1,
                ..record.clone()
            };
            assert!(!db.store.record_usage(&retry).await.unwrap().created);
        }
        rows.push(record);
    }
    rows
}

fn random_subset<T: Clone>(rng: &mut StdRng, items: &[T]) -> Vec<T> {
    items
        .iter()
        .filter(|_| rng.gen_bool(0.3))
        .cloned()
        .collect()
}

/// A random query over the seeded days: any width; start and end on a
/// minute or hour boundary, at a row's time, next to it, or anywhere; random
/// groups, filters and page sizes.
fn random_query(rng: &mut StdRng, rows: &[NewUsage]) -> UsageQuery {
    let width = [BucketWidth::Minute, BucketWidth::Hour, BucketWidth::Day][rng.gen_range(0..3)];
    let snap = |rng: &mut StdRng, t: i64| match rng.gen_range(0..4) {
        0 => t / MINUTE * MINUTE,
        1 => t / HOUR * HOUR,
        2 => t,
        _ => rows[rng.gen_range(0..rows.len())].created_at + rng.gen_range(-1..=1),
    };
    let span = match width {
        BucketWidth::Minute => rng.gen_range(1..6 * HOUR),
        BucketWidth::Hour => rng.gen_range(1..3 * DAY),
        BucketWidth::Day => rng.gen_range(1..5 * DAY),
    };
    let at = T0 - HOUR + rng.gen_range(0..3 * DAY);
    let start = snap(rng, at);
    let end = snap(rng, start + span).max(start + 1);
    let (_, max) = width.default_and_max_limit();
    let group_all = [
        GroupBy::ProjectId,
        GroupBy::ApiKeyId,
        GroupBy::Model,
        GroupBy::UserId,
    ];
    UsageQuery {
        start,
        end,
        bucket_width: width,
        group_by: random_subset(rng, &group_all),
        filter: UsageFilter {
            project_ids: random_subset(rng, &["p1".into(), "p2".into()]),
            api_key_ids: random_subset(rng, &["k1".into(), "k2".into(), "k9".into()]),
            models: random_subset(rng, &["m1".into(), "m3".into()]),
            user_ids: random_subset(rng, &["u1".into()]),
            ..UsageFilter::default()
        },
        limit: rng.gen_bool(0.5).then(|| rng.gen_range(1..=max.min(200))),
        page: None,
    }
}

/// The page a query should answer, summed here from the rows in memory: an
/// oracle independent of the store's SQL. Groups sort as the database sorts
/// these ASCII ids, absent ones first on SQLite and last on PostgreSQL.
fn expected_page(rows: &[NewUsage], org: &str, q: &UsageQuery, backend: Backend) -> UsagePage {
    let width = q.bucket_width.millis();
    let limit = i64::from(q.limit.unwrap_or(q.bucket_width.default_and_max_limit().0));
    let first = match &q.page {
        Some(cursor) => cursor["page_".len()..].parse().unwrap(),
        None => q.start.div_euclid(width) * width,
    };
    let page_end = (first + limit * width).min(q.end);
    let from = first.max(q.start);
    let wanted = |values: &Vec<String>, value: Option<&String>| {
        values.is_empty() || value.is_some_and(|v| values.contains(v))
    };
    type Key = [(bool, Option<String>); 4];
    let mut sums: BTreeMap<(i64, Key), UsageResult> = BTreeMap::new();
    for r in rows {
        let f = &q.filter;
        if r.org_id != org
            || r.created_at < from
            || r.created_at >= page_end
            || !wanted(&f.project_ids, r.project_id.as_ref())
            || !wanted(&f.api_key_ids, r.api_key_id.as_ref())
            || !wanted(&f.models, Some(&r.model))
            || !wanted(&f.user_ids, r.user_id.as_ref())
        {
            continue;
        }
        let dim = |g: GroupBy, value: Option<&String>| {
            let value = value.filter(|_| q.group_by.contains(&g)).cloned();
            // (sorts-last flag, value): NULLs last on PostgreSQL.
            (backend == Backend::Postgres && value.is_none(), value)
        };
        let key = [
            dim(GroupBy::ProjectId, r.project_id.as_ref()),
            dim(GroupBy::ApiKeyId, r.api_key_id.as_ref()),
            dim(GroupBy::Model, Some(&r.model)),
            dim(GroupBy::UserId, r.user_id.as_ref()),
        ];
        let bucket = r.created_at.div_euclid(width) * width;
        let sum = sums.entry((bucket, key.clone())).or_default();
        sum.project_id = key[0].1.clone();
        sum.api_key_id = key[1].1.clone();
        sum.model = key[2].1.clone();
        sum.user_id = key[3].1.clone();
        sum.input_tokens += r.prompt_tokens;
        sum.input_cached_tokens += r.cached_tokens;
        sum.output_tokens += r.completion_tokens;
        sum.num_model_requests += 1;
        sum.cost += r.cost;
    }
    let mut buckets = Vec::new();
    let mut at = first;
    while at < page_end {
        let results = sums
            .range((at, Key::default())..)
            .take_while(|((bucket, _), _)| *bucket == at)
            .map(|(_, sum)| sum.clone())
            .collect();
        buckets.push(UsageBucket {
            start_time: at,
            end_time: at + width,
            results,
        });
        at += width;
    }
    let next_page = (page_end < q.end).then(|| format!("page_{page_end}"));
    UsagePage { buckets, next_page }
}

/// The rollup answer equals summing the ledger directly (in SQL and in
/// memory), page by page, for random data and random queries.
async fn rollup_answers_like_the_ledger(db: Db) {
    let seed: u64 = rand::random();
    eprintln!("rollup_answers_like_the_ledger seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let rows = seed_random(&db, &mut rng).await;
    let backend = db.store.backend();
    let mut results = 0;
    for _ in 0..150 {
        let mut q = random_query(&mut rng, &rows);
        let org = ["org_a", "org_b", "org_c"][rng.gen_range(0..3)];
        for _ in 0..8 {
            let rollup = db.store.usage(org, &q).await.unwrap();
            let ledger = db.store.usage_from_ledger(org, &q).await.unwrap();
            let context = format!("seed {seed}, org {org}, query {q:?}");
            assert_eq!(rollup, expected_page(&rows, org, &q, backend), "{context}");
            assert_eq!(rollup, ledger, "{context}");
            results += rollup
                .buckets
                .iter()
                .map(|b| b.results.len())
                .sum::<usize>();
            q.page = rollup.next_page;
            if q.page.is_none() {
                break;
            }
        }
    }
    assert!(results > 100, "the random queries found too little usage");
}

/// Re-running migration 0004 over a filled ledger rebuilds the same rollups
/// as the inserts kept.
async fn rollup_migration_backfills_the_ledger(db: Db) {
    let mut rng = StdRng::seed_from_u64(4);
    seed_random(&db, &mut rng).await;
    let q = UsageQuery {
        start: T0 - 7,
        end: T0 + 3 * DAY + 11,
        bucket_width: BucketWidth::Hour,
        group_by: vec![GroupBy::ProjectId, GroupBy::Model, GroupBy::UserId],
        filter: UsageFilter::default(),
        limit: Some(168),
        page: None,
    };
    let before = db.store.usage("org_a", &q).await.unwrap();
    let mut raw = db.raw().await;
    raw.execute("DROP TABLE usage_rollup").await.unwrap();
    raw.execute("DELETE FROM _sqlx_migrations WHERE version = 4")
        .await
        .unwrap();
    db.store.migrate().await.unwrap();
    let after = db.store.usage("org_a", &q).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(
        after,
        db.store.usage_from_ledger("org_a", &q).await.unwrap()
    );
    assert!(after.buckets.iter().any(|b| !b.results.is_empty()));
}

/// Costs are the usage costs per day, by project and line item (the model).
async fn costs_by_project_and_line_item(db: Db) {
    seed(&db).await;
    let s = &db.store;
    let q = CostsQuery {
        start: T0,
        end: T0 + 2 * DAY,
        group_by: vec![CostGroupBy::ProjectId],
        ..CostsQuery::default()
    };
    let page = s.costs("org_a", &q).await.unwrap();
    assert_eq!(page.next_page, None);
    assert_eq!(page.buckets.len(), 2);
    assert_eq!(page.buckets[0].end_time, T0 + DAY);
    let amounts: Vec<(Option<String>, i64)> = page.buckets[0]
        .results
        .iter()
        .map(|r| (r.project_id.clone(), r.amount))
        .collect();
    assert_eq!(
        amounts,
        [
            (Some("p1".into()), 3 * 1_011),
            (Some("p2".into()), 3 * 10_100)
        ]
    );
    assert!(page.buckets[1].results.is_empty());

    let by_item = CostsQuery {
        group_by: vec![CostGroupBy::LineItem, CostGroupBy::ProjectId],
        project_ids: vec!["p2".into()],
        limit: Some(1),
        ..q.clone()
    };
    let page = s.costs("org_a", &by_item).await.unwrap();
    let items: Vec<CostResult> = page.buckets[0].results.clone();
    let item = |model: &str, amount| CostResult {
        project_id: Some("p2".into()),
        line_item: Some(model.into()),
        amount,
    };
    assert_eq!(items, [item("m1", 300), item("m2", 30_000)]);
    assert_eq!(page.next_page.as_deref(), Some("page_1704153600000"));

    let total = s
        .costs(
            "org_a",
            &CostsQuery {
                group_by: vec![],
                ..q.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(total.buckets[0].results[0].amount, 3 * 11_111);
    assert_eq!(total.buckets[0].results[0].project_id, None);
    let too_many = CostsQuery {
        limit: Some(COSTS_LIMITS.1 + 1),
        ..q
    };
    let err = s.costs("org_a", &too_many).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        "line_item".parse::<CostGroupBy>().unwrap(),
        CostGroupBy::LineItem
    );
    assert!("model".parse::<CostGroupBy>().is_err());
}

/// These cases are declared here rather than in `main.rs`'s `suite!` list;
/// same pairing: one test on SQLite, one on PostgreSQL.
macro_rules! rollup_cases {
    ($($case:ident),* $(,)?) => {
        mod rollup_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::support::on_sqlite(super::$case).await;
                }
            )*
        }
        mod rollup_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::support::on_postgres(super::$case).await;
                }
            )*
        }
    };
}

rollup_cases! {
    rollup_answers_like_the_ledger,
    rollup_migration_backfills_the_ledger,
    costs_by_project_and_line_item,
}
