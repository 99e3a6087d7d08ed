//! Group commit (`Store::write_batch`): many metering writes in one
//! transaction keep every guarantee of one write per transaction — each
//! request is billed once however its settlements are batched and raced,
//! a failed write rolls back alone, and a settlement lost before its batch
//! committed leaves the reservation for the sweep to settle `interrupted`.

use sqlx::Executor;
use store::{
    BucketWidth, BudgetKind, BudgetScope, ErrorKind, GroupBy, LedgerWrite, LedgerWritten,
    NewReservation, NewUsage, Organization, Progress, Project, UsageFilter, UsageQuery,
};

use crate::support::Db;

fn reservation(org: &str, project: &str, request_id: &str, amount: i64) -> NewReservation {
    NewReservation {
        request_id: request_id.into(),
        org_id: org.into(),
        project_id: Some(project.into()),
        amount,
        created_at: store::now_ms(),
        model: Some("m".into()),
        backend: Some("local".into()),
        owner: Some("inst_dead".into()),
        endpoint: "/v1/chat/completions".into(),
        ..NewReservation::default()
    }
}

/// A progress record of `completion_tokens` tokens, each costing 1.
fn progress(org: &str, request_id: &str, completion_tokens: i64) -> LedgerWrite {
    LedgerWrite::Progress {
        org_id: org.into(),
        request_id: request_id.into(),
        progress: Progress {
            prompt_tokens: 3,
            cached_tokens: 0,
            completion_tokens,
            cost: completion_tokens,
        },
        served: None,
    }
}

/// Organisation "acme" and its project, the project with a monthly budget
/// of these hard and soft limits.
async fn project_with_monthly_budget(
    db: &Db,
    hard: Option<i64>,
    soft: Option<i64>,
) -> (Organization, Project) {
    let (org, project) = db.org_with_project("acme").await;
    db.store
        .set_budget(
            &org.id,
            BudgetScope::Project,
            &project.id,
            BudgetKind::Monthly,
            hard,
            soft,
        )
        .await
        .unwrap();
    (org, project)
}

fn usage(org: &str, project: &str, request_id: &str, cost: i64) -> NewUsage {
    NewUsage {
        request_id: request_id.into(),
        org_id: org.into(),
        project_id: Some(project.into()),
        model: "m".into(),
        backend: "local".into(),
        prompt_tokens: 3,
        completion_tokens: 5,
        cost,
        status: "ok".into(),
        created_at: store::now_ms(),
        ..NewUsage::default()
    }
}

pub async fn batched_settlements_bill_each_request_once_under_concurrency(db: Db) {
    let store = &db.store;
    let (org, project) = project_with_monthly_budget(&db, Some(1_000_000), None).await;
    const N: i64 = 120;
    // Reservations in batches of 10, from 4 tasks at once.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (store, org, project) = (store.clone(), org.id.clone(), project.id.clone());
        tasks.push(tokio::spawn(async move {
            for chunk in (0..N).filter(|i| i % 4 == t).collect::<Vec<_>>().chunks(10) {
                let writes: Vec<LedgerWrite> = chunk
                    .iter()
                    .map(|i| {
                        LedgerWrite::Reserve(reservation(&org, &project, &format!("r{i}"), 100))
                    })
                    .collect();
                for outcome in store.write_batch(&writes).await.unwrap() {
                    assert!(
                        matches!(outcome, Ok(LedgerWritten::Reserved)),
                        "{outcome:?}"
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut settlers = Vec::new();
    // Every request settled three times: twice in one batch, once more in
    // another batch racing it, from 3 tasks at once.
    for t in 0..3 {
        let (store, org, project) = (store.clone(), org.id.clone(), project.id.clone());
        settlers.push(tokio::spawn(async move {
            let mut created = 0;
            for chunk in (0..N).collect::<Vec<_>>().chunks(15) {
                let mut writes = Vec::new();
                for i in chunk {
                    // Rows that fall in several rollup buckets (minutes,
                    // models, users), the same for every retry.
                    let mut row = usage(&org, &project, &format!("r{i}"), i + 1);
                    row.model = ["m", "n"][(i % 2) as usize].into();
                    row.user_id = (i % 3 != 0).then(|| format!("user{}", i % 3));
                    row.prompt_tokens = *i;
                    row.created_at -= (i % 4) * 60_000 + i;
                    let settle = LedgerWrite::Settle(row);
                    writes.push(settle.clone());
                    if t == 0 {
                        writes.push(settle);
                    }
                }
                for outcome in store.write_batch(&writes).await.unwrap() {
                    match outcome {
                        Ok(LedgerWritten::Settled(recorded, _)) => {
                            created += i64::from(recorded.created)
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            created
        }));
    }
    let mut created = 0;
    for task in settlers {
        created += task.await.unwrap();
    }
    assert_eq!(created, N, "each request's row was created once");
    let rows = store
        .list_usage(&org.id, 0, i64::MAX, None, 1000)
        .await
        .unwrap();
    assert_eq!(rows.len(), N as usize);
    assert!(store.list_reservations(&org.id).await.unwrap().is_empty());
    let status = store
        .budget_status(&org.id, BudgetScope::Project, &project.id)
        .await
        .unwrap();
    assert_eq!(status.reserved, 0, "every hold given back once");
    assert_eq!(status.spent, (1..=N).sum::<i64>(), "every cost spent once");
    // The rollups count each created row once, in its own buckets.
    let now = store::now_ms();
    for bucket_width in [BucketWidth::Minute, BucketWidth::Hour] {
        let q = UsageQuery {
            start: now - 2 * 3_600_000,
            end: now + 60_000,
            bucket_width,
            group_by: vec![GroupBy::Model, GroupBy::UserId, GroupBy::Endpoint],
            filter: UsageFilter::default(),
            limit: Some(168),
            page: None,
        };
        let rolled = store.usage(&org.id, &q).await.unwrap();
        assert_eq!(rolled, store.usage_from_ledger(&org.id, &q).await.unwrap());
        let requests: i64 = rolled
            .buckets
            .iter()
            .flat_map(|b| &b.results)
            .map(|r| r.num_model_requests)
            .sum();
        assert_eq!(requests, N, "{bucket_width:?} rollups count each row once");
    }
    // Each rollup row starts on its width (a row a window early or late
    // would still be summed into the right hour by a query).
    let misaligned: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM usage_rollup WHERE org_id = '{}' AND start_ms % width_ms <> 0",
        org.id
    ))
    .fetch_one(&mut db.raw().await)
    .await
    .unwrap();
    assert_eq!(misaligned, 0, "rollup windows start on their width");
    assert_eq!(
        store.batches_run_one_by_one(),
        0,
        "every batch ran as a set"
    );
}

pub async fn a_failed_write_in_a_batch_rolls_back_alone(db: Db) {
    let store = &db.store;
    let (org, project) = project_with_monthly_budget(&db, Some(150), None).await;
    let (o, p) = (org.id.as_str(), project.id.as_str());
    let outcomes = store
        .write_batch(&[
            LedgerWrite::Reserve(reservation(o, p, "a", 100)),
            LedgerWrite::Reserve(reservation(o, p, "a", 10)),
            LedgerWrite::Reserve(reservation(o, p, "too-big", 100)),
            LedgerWrite::Reserve(reservation(o, p, "b", 50)),
            LedgerWrite::Settle(usage(o, p, "a", 30)),
            LedgerWrite::Release(o.into(), "b".into()),
        ])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], Ok(LedgerWritten::Reserved)));
    assert_eq!(
        outcomes[1].as_ref().unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        outcomes[2].as_ref().unwrap_err().kind(),
        ErrorKind::QuotaExceeded
    );
    assert!(matches!(outcomes[3], Ok(LedgerWritten::Reserved)));
    assert!(matches!(&outcomes[4], Ok(LedgerWritten::Settled(r, _)) if r.created));
    assert!(matches!(outcomes[5], Ok(LedgerWritten::Released(true))));
    let rows = store.list_usage(o, 0, i64::MAX, None, 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].usage.cost, 30);
    assert!(store.list_reservations(o).await.unwrap().is_empty());
    let status = store
        .budget_status(o, BudgetScope::Project, p)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (30, 0));
    assert_eq!(
        store.batches_run_one_by_one(),
        0,
        "refusals need no fallback"
    );
}

pub async fn a_settlement_lost_before_its_batch_committed_is_recovered_by_the_sweep(db: Db) {
    let store = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (o, p) = (org.id.as_str(), project.id.as_str());
    let progress = Progress {
        prompt_tokens: 3,
        cached_tokens: 0,
        completion_tokens: 2,
        cost: 7,
    };
    let outcomes = store
        .write_batch(&[
            LedgerWrite::Reserve(reservation(o, p, "lost", 100)),
            LedgerWrite::Progress {
                org_id: o.into(),
                request_id: "lost".into(),
                progress,
                served: None,
            },
        ])
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    // The process dies with the settlement's batch written but not
    // committed: the database discards it.
    {
        let mut raw = db.raw().await;
        raw.execute("BEGIN").await.unwrap();
        raw.execute(
            format!(
                "INSERT INTO usage_ledger (request_id, org_id, model, backend, prompt_tokens, \
                 cached_tokens, completion_tokens, cost, latency_ms, status, created_at) \
                 VALUES ('lost', '{o}', 'm', 'local', 3, 0, 5, 9, 1, 'ok', 1000)"
            )
            .as_str(),
        )
        .await
        .unwrap();
        raw.execute(format!("DELETE FROM reservations WHERE org_id = '{o}'").as_str())
            .await
            .unwrap();
        drop(raw);
    }
    assert_eq!(
        store
            .list_usage(o, 0, i64::MAX, None, 10)
            .await
            .unwrap()
            .len(),
        0
    );
    // The dead instance never registered a lease: its reservation is
    // orphaned, and the sweep settles it `interrupted` at its progress.
    let orphaned = store.orphaned_reservations(i64::MAX / 2).await.unwrap();
    let [lost] = orphaned.as_slice() else {
        panic!("{orphaned:?}")
    };
    assert_eq!(lost.progress, progress);
    // The reservation kept its endpoint, so the interrupted row carries it.
    assert_eq!(lost.reserved.endpoint, "/v1/chat/completions");
    let interrupted = NewUsage {
        endpoint: lost.reserved.endpoint.clone(),
        prompt_tokens: lost.progress.prompt_tokens,
        completion_tokens: lost.progress.completion_tokens,
        cost: lost.progress.cost,
        status: "interrupted".into(),
        ..usage(o, p, "lost", 0)
    };
    for _ in 0..2 {
        let outcome = store
            .write_batch(&[LedgerWrite::Settle(interrupted.clone())])
            .await
            .unwrap();
        assert!(outcome[0].is_ok());
    }
    let rows = store.list_usage(o, 0, i64::MAX, None, 10).await.unwrap();
    assert_eq!(rows.len(), 1, "billed once");
    assert_eq!(
        (rows[0].usage.status.as_str(), rows[0].usage.cost),
        ("interrupted", 7)
    );
    assert_eq!(rows[0].usage.endpoint, "/v1/chat/completions");
    assert!(store.list_reservations(o).await.unwrap().is_empty());
}

/// Concurrent batches of reservations against one hard limit: the
/// set-based admission (counters read once per batch, under the batch's
/// lock) never lets them together pass it, and admits exactly what fits.
pub async fn batched_reservations_never_pass_a_hard_limit_under_concurrency(db: Db) {
    let store = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    store
        .set_budget(
            &org.id,
            BudgetScope::Org,
            &org.id,
            BudgetKind::Monthly,
            Some(1_000),
            None,
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (store, org, project) = (store.clone(), org.id.clone(), project.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0;
            for b in 0..3 {
                let writes: Vec<LedgerWrite> = (0..8)
                    .map(|i| {
                        LedgerWrite::Reserve(reservation(
                            &org,
                            &project,
                            &format!("t{t}b{b}i{i}"),
                            70,
                        ))
                    })
                    .collect();
                for outcome in store.write_batch(&writes).await.unwrap() {
                    match outcome {
                        Ok(LedgerWritten::Reserved) => admitted += 1,
                        Err(err) => assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}"),
                        Ok(other) => panic!("{other:?}"),
                    }
                }
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert_eq!(admitted, 14, "1,000 holds exactly 14 reservations of 70");
    let status = store
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (0, 14 * 70));
    assert_eq!(store.list_reservations(&org.id).await.unwrap().len(), 14);
    assert_eq!(
        store.batches_run_one_by_one(),
        0,
        "every batch ran as a set"
    );
}

/// In one batch: a soft limit crossed is reported once, by the settlement
/// that crossed it; the latest of two progress records is kept; a request
/// id already in the ledger cannot be reserved again (nor by
/// `Store::reserve`), and says so.
pub async fn one_batch_reports_soft_limits_keeps_progress_and_refuses_used_ids(db: Db) {
    let store = &db.store;
    let (org, project) = project_with_monthly_budget(&db, None, Some(100)).await;
    let (o, p) = (org.id.as_str(), project.id.as_str());
    let mut writes = vec![LedgerWrite::Reserve(reservation(o, p, "open", 5))];
    writes.extend((0..4).map(|i| LedgerWrite::Settle(usage(o, p, &format!("s{i}"), 40))));
    let outcomes = store.write_batch(&writes).await.unwrap();
    let notices: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Ok(LedgerWritten::Settled(_, reached)) if !reached.is_empty() => {
                assert_eq!(reached[0].spent, 120, "spend when it was crossed");
                Some(i)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        [3],
        "the third settlement (40 → 80 → 120) crossed 100"
    );
    let status = store
        .budget_status(o, BudgetScope::Project, p)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (160, 5));
    let progress = |completion_tokens| progress(o, "open", completion_tokens);
    let outcomes = store
        .write_batch(&[
            progress(9),
            progress(4),
            LedgerWrite::Reserve(reservation(o, p, "s1", 5)),
        ])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], Ok(LedgerWritten::Progressed(true))));
    let used = outcomes[2].as_ref().unwrap_err();
    assert_eq!(used.kind(), ErrorKind::Conflict);
    assert!(
        used.to_string().contains(store::REQUEST_ID_IN_LEDGER),
        "{used}"
    );
    let open = store.list_reservations(o).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].progress.completion_tokens, 9, "progress only grows");
    let used = store
        .reserve(&reservation(o, p, "s2", 5))
        .await
        .unwrap_err();
    assert!(
        used.to_string().contains(store::REQUEST_ID_IN_LEDGER),
        "{used}"
    );
    let status = store
        .budget_status(o, BudgetScope::Project, p)
        .await
        .unwrap();
    assert_eq!(status.reserved, 5, "refused reservations hold nothing");
    assert_eq!(
        store.batches_run_one_by_one(),
        0,
        "every batch ran as a set"
    );
}

/// A progress record batched with its request's settlement needs no write
/// (the batch deletes the reservation): it is answered as before (nothing
/// written), the settlement bills once and frees the hold, and another
/// request's progress in the same batch is still written.
pub async fn progress_batched_with_its_settlement_is_answered_without_a_write(db: Db) {
    let store = &db.store;
    let (org, project) = project_with_monthly_budget(&db, Some(1_000), None).await;
    let (o, p) = (org.id.as_str(), project.id.as_str());
    let opened = store
        .write_batch(&[
            LedgerWrite::Reserve(reservation(o, p, "short", 50)),
            LedgerWrite::Reserve(reservation(o, p, "long", 50)),
        ])
        .await
        .unwrap();
    assert!(opened
        .iter()
        .all(|o| matches!(o, Ok(LedgerWritten::Reserved))));
    let progress = |request_id, completion_tokens| progress(o, request_id, completion_tokens);
    let outcomes = store
        .write_batch(&[
            progress("short", 1),
            LedgerWrite::Settle(usage(o, p, "short", 7)),
            progress("long", 2),
        ])
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], Ok(LedgerWritten::Progressed(false))),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(&outcomes[1], Ok(LedgerWritten::Settled(r, _)) if r.created),
        "{:?}",
        outcomes[1]
    );
    assert!(
        matches!(outcomes[2], Ok(LedgerWritten::Progressed(true))),
        "{:?}",
        outcomes[2]
    );
    let open = store.list_reservations(o).await.unwrap();
    assert_eq!(open.len(), 1, "the settled reservation is gone");
    assert_eq!(open[0].reserved.request_id, "long");
    assert_eq!(open[0].progress.completion_tokens, 2);
    let status = store
        .budget_status(o, BudgetScope::Project, p)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (7, 50));
    assert_eq!(
        store.batches_run_one_by_one(),
        0,
        "every batch ran as a set"
    );
}

/// SQLite: a statement failing fails the batch's one transaction (the
/// writer thread's `batch_sqlite`); the writer rolls it back and runs each
/// write again in its own, so only the failing write fails, and the
/// connection goes on serving batches. A trigger stands in for a fault the
/// reads cannot predict (a disk error, a constraint added by hand).
pub async fn a_batch_failing_as_a_whole_runs_again_write_by_write(db: Db) {
    let store = &db.store;
    let (org, project) = db.org_with_project("whole").await;
    let (o, p) = (org.id.as_str(), project.id.as_str());
    db.raw()
        .await
        .execute(
            "CREATE TRIGGER poison BEFORE INSERT ON reservations \
             WHEN NEW.request_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
        )
        .await
        .unwrap();
    let outcomes = store
        .write_batch(&[
            LedgerWrite::Reserve(reservation(o, p, "a", 10)),
            LedgerWrite::Reserve(reservation(o, p, "poison", 10)),
            LedgerWrite::Settle(usage(o, p, "b", 7)),
        ])
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], Ok(LedgerWritten::Reserved)),
        "{outcomes:?}"
    );
    let err = outcomes[1].as_ref().unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
    assert!(matches!(&outcomes[2], Ok(LedgerWritten::Settled(r, _)) if r.created));
    assert_eq!(store.batches_run_one_by_one(), 1);
    let reserved = store.list_reservations(o).await.unwrap();
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0].reserved.request_id, "a");
    // The writer's connection is not left inside the failed transaction.
    let outcomes = store
        .write_batch(&[
            LedgerWrite::Settle(usage(o, p, "a", 5)),
            LedgerWrite::Settle(usage(o, p, "b", 7)),
        ])
        .await
        .unwrap();
    assert!(matches!(&outcomes[0], Ok(LedgerWritten::Settled(r, _)) if r.created));
    assert!(
        matches!(&outcomes[1], Ok(LedgerWritten::Settled(r, _)) if !r.created && r.record.usage.cost == 7)
    );
    assert_eq!(store.batches_run_one_by_one(), 1);
    let rows = store.list_usage(o, 0, i64::MAX, None, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(store.list_reservations(o).await.unwrap().is_empty());
}
