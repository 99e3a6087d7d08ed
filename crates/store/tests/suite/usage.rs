//! Usage aggregation: buckets, group-by, filters, pagination.

use store::{BucketWidth, ErrorKind, GroupBy, NewUsage, UsageFilter, UsageQuery, UsageResult};

use crate::ledger::usage;
use crate::support::Db;

const HOUR: i64 = 3_600_000;
/// 2024-01-01T00:00:00Z, a day boundary.
const T0: i64 = 1_704_067_200_000;

fn row(org: &str, id: &str, at: i64, project: &str, model: &str, tokens: i64) -> NewUsage {
    NewUsage {
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
