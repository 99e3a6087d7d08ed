//! Budgets: hard limits enforced by reservations (also under concurrency),
//! settlement moving holds into spend, prepaid balances, soft limits
//! reported once, and progress records a recovery bills.

use std::sync::Arc;

use store::{
    month_of, BudgetKind, BudgetScope, ErrorKind, NewReservation, NewUsage, Progress, Store,
};

use crate::support::{new_key, Db};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn reservation(org: &str, project: &str, key: &str, id: &str, amount: i64) -> NewReservation {
    NewReservation {
        request_id: id.into(),
        org_id: org.into(),
        project_id: Some(project.into()),
        api_key_id: Some(key.into()),
        user_id: None,
        amount,
        created_at: now_ms(),
        model: Some("m".into()),
        backend: Some("local".into()),
        owner: None,
        endpoint: String::new(),
    }
}

fn usage_of(r: &NewReservation, cost: i64) -> NewUsage {
    NewUsage {
        endpoint: String::new(),
        request_id: r.request_id.clone(),
        org_id: r.org_id.clone(),
        project_id: r.project_id.clone(),
        api_key_id: r.api_key_id.clone(),
        model: "m".into(),
        backend: "local".into(),
        prompt_tokens: 1,
        completion_tokens: 1,
        cost,
        status: "ok".into(),
        created_at: r.created_at,
        ..NewUsage::default()
    }
}

pub async fn hard_limit_admits_what_fits_and_settles_into_spend(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    let status = s
        .set_budget(
            &org.id,
            BudgetScope::Project,
            &project.id,
            BudgetKind::Monthly,
            Some(100),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (status.spent, status.reserved, status.available()),
        (0, 0, Some(100))
    );
    assert_eq!(status.period, month_of(now_ms()));

    let r1 = reservation(&org.id, &project.id, &key.id, "r1", 60);
    s.reserve(&r1).await.unwrap();
    let r2 = reservation(&org.id, &project.id, &key.id, "r2", 50);
    let err = s.reserve(&r2).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    assert!(err.to_string().contains(&project.id), "{err}");
    // Refused: no reservation row is left behind.
    assert_eq!(s.list_reservations(&org.id).await.unwrap().len(), 1);

    // Settling for less than the worst case frees the rest.
    s.settle(&usage_of(&r1, 15)).await.unwrap();
    let status = s
        .budget_status(&org.id, BudgetScope::Project, &project.id)
        .await
        .unwrap();
    assert_eq!(
        (status.spent, status.reserved, status.available()),
        (15, 0, Some(85))
    );
    s.reserve(&r2).await.unwrap();
    assert!(s.release(&org.id, "r2").await.unwrap());
    let status = s
        .budget_status(&org.id, BudgetScope::Project, &project.id)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (15, 0));
    // A retried settlement changes nothing.
    s.settle(&usage_of(&r1, 15)).await.unwrap();
    let status = s
        .budget_status(&org.id, BudgetScope::Project, &project.id)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (15, 0));
}

pub async fn every_scope_must_fit_and_refusal_holds_nothing(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Org,
        &org.id,
        BudgetKind::Monthly,
        Some(1000),
        None,
    )
    .await
    .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Key,
        &key.id,
        BudgetKind::Monthly,
        Some(10),
        None,
    )
    .await
    .unwrap();
    let err = s
        .reserve(&reservation(&org.id, &project.id, &key.id, "big", 11))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded);
    // The organisation's hold taken before the key refused was rolled back.
    let org_status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!(org_status.reserved, 0);
    s.reserve(&reservation(&org.id, &project.id, &key.id, "ok", 10))
        .await
        .unwrap();
    let org_status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!(org_status.reserved, 10);
    assert_eq!(s.list_budgets(&org.id).await.unwrap().len(), 2);
}

pub async fn concurrent_reservations_never_pass_the_limit(db: Db) {
    let s = db.store.clone();
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    // Room for exactly 7 reservations of 10.
    s.set_budget(
        &org.id,
        BudgetScope::Org,
        &org.id,
        BudgetKind::Monthly,
        Some(75),
        None,
    )
    .await
    .unwrap();
    let ids = Arc::new((org.id.clone(), project.id.clone(), key.id.clone()));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (s, ids) = (s.clone(), ids.clone());
            tokio::spawn(async move {
                let r = reservation(&ids.0, &ids.1, &ids.2, &format!("c{i}"), 10);
                match s.reserve(&r).await {
                    Ok(()) => true,
                    Err(err) if err.kind() == ErrorKind::QuotaExceeded => false,
                    Err(err) => panic!("unexpected {err}"),
                }
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    assert_eq!(admitted, 7);
    let status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!(status.reserved, 70);
}

pub async fn prepaid_balance_tops_up_and_draws_down(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Org,
        &org.id,
        BudgetKind::Prepaid,
        Some(0),
        None,
    )
    .await
    .unwrap();
    let r = reservation(&org.id, &project.id, &key.id, "p1", 5);
    assert_eq!(
        s.reserve(&r).await.unwrap_err().kind(),
        ErrorKind::QuotaExceeded
    );
    let status = s
        .top_up(&org.id, BudgetScope::Org, &org.id, 8)
        .await
        .unwrap();
    assert_eq!(
        (status.period.as_str(), status.available()),
        ("all", Some(8))
    );
    s.reserve(&r).await.unwrap();
    s.settle(&usage_of(&r, 5)).await.unwrap();
    let status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!((status.spent, status.available()), (5, Some(3)));
    // Top-ups need a prepaid budget of the caller's organisation.
    let other = s.create_org("other").await.unwrap();
    let err = s
        .top_up(&other.id, BudgetScope::Org, &org.id, 8)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        s.top_up(&org.id, BudgetScope::Org, &org.id, 0)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidRequest
    );
}

pub async fn soft_limit_is_reported_once_per_period(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Key,
        &key.id,
        BudgetKind::Monthly,
        None,
        Some(20),
    )
    .await
    .unwrap();
    let mut reports = Vec::new();
    for (i, cost) in [10, 10, 10].into_iter().enumerate() {
        let r = reservation(&org.id, &project.id, &key.id, &format!("s{i}"), 100);
        s.reserve(&r).await.unwrap();
        let (_, reached) = s.settle_reporting(&usage_of(&r, cost)).await.unwrap();
        reports.push(reached);
    }
    assert!(reports[0].is_empty());
    assert_eq!(reports[1].len(), 1);
    assert_eq!(reports[1][0].spent, 20);
    assert_eq!(reports[1][0].budget.scope, BudgetScope::Key);
    assert!(reports[2].is_empty());
}

pub async fn budgets_are_scoped_to_their_org(db: Db) {
    let s = &db.store;
    let (a, a_project) = db.org_with_project("a").await;
    let (b, b_project) = db.org_with_project("b").await;
    let (b_key, _) = s
        .create_key(&b.id, &new_key(&b_project, "k"))
        .await
        .unwrap();
    for (scope, id) in [
        (BudgetScope::Org, b.id.as_str()),
        (BudgetScope::Project, b_project.id.as_str()),
        (BudgetScope::Key, b_key.id.as_str()),
    ] {
        let err = s
            .set_budget(&a.id, scope, id, BudgetKind::Monthly, Some(1), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{scope:?}");
    }
    s.set_budget(
        &b.id,
        BudgetScope::Project,
        &b_project.id,
        BudgetKind::Monthly,
        Some(1),
        None,
    )
    .await
    .unwrap();
    assert!(s.list_budgets(&a.id).await.unwrap().is_empty());
    let err = s
        .budget_status(&a.id, BudgetScope::Project, &b_project.id)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!s
        .delete_budget(&a.id, BudgetScope::Project, &b_project.id)
        .await
        .unwrap());
    assert!(s
        .delete_budget(&b.id, BudgetScope::Project, &b_project.id)
        .await
        .unwrap());
    let _ = a_project;
}

pub async fn a_new_monthly_budget_counts_the_month_so_far(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    let r = reservation(&org.id, &project.id, &key.id, "before", 0);
    s.record_usage(&usage_of(&r, 42)).await.unwrap();
    let status = s
        .set_budget(
            &org.id,
            BudgetScope::Key,
            &key.id,
            BudgetKind::Monthly,
            Some(50),
            None,
        )
        .await
        .unwrap();
    assert_eq!((status.spent, status.available()), (42, Some(8)));
}

pub async fn progress_grows_and_recovery_sees_it(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let r = reservation(&org.id, &project.id, "key_x", "g1", 100);
    s.reserve(&r).await.unwrap();
    let at = |n: i64| Progress {
        prompt_tokens: 5,
        cached_tokens: 0,
        completion_tokens: n,
        cost: 5 + n,
    };
    assert!(s.record_progress(&org.id, "g1", at(16)).await.unwrap());
    // A late, older record does not move it back.
    assert!(!s.record_progress(&org.id, "g1", at(3)).await.unwrap());
    let restarted = Store::connect(&db.url).await.unwrap();
    let open = restarted.recover().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].progress, at(16));
    assert_eq!(open[0].reserved.model.as_deref(), Some("m"));
    restarted.settle(&usage_of(&r, 21)).await.unwrap();
    assert!(!s.record_progress(&org.id, "g1", at(20)).await.unwrap());
    restarted.close().await;
}

/// Forty days before `now_ms()`: always in an earlier calendar month.
fn last_month() -> i64 {
    now_ms() - 40 * 86_400_000
}

fn reservation_at(
    org: &str,
    project: &str,
    key: &str,
    id: &str,
    amount: i64,
    at: i64,
) -> NewReservation {
    NewReservation {
        created_at: at,
        ..reservation(org, project, key, id, amount)
    }
}

pub async fn concurrent_reserves_and_settlements_never_overspend(db: Db) {
    let s = db.store.clone();
    let (org, project) = db.org_with_project("acme").await;
    let mut keys = Vec::new();
    for name in ["a", "b"] {
        keys.push(
            s.create_key(&org.id, &new_key(&project, name))
                .await
                .unwrap()
                .0
                .id,
        );
    }
    // Monthly hard limits on every scope, each smaller than what all the
    // requests below would spend if every one were admitted.
    let mut limits = vec![
        (BudgetScope::Org, org.id.clone(), 175),
        (BudgetScope::Project, project.id.clone(), 150),
    ];
    for key in &keys {
        limits.push((BudgetScope::Key, key.clone(), 100));
    }
    for (scope, id, hard) in &limits {
        s.set_budget(&org.id, *scope, id, BudgetKind::Monthly, Some(*hard), None)
            .await
            .unwrap();
    }
    const TASKS: usize = 48;
    let ids = Arc::new((org.id.clone(), project.id.clone(), keys.clone()));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (s, ids) = (s.clone(), ids.clone());
            tokio::spawn(async move {
                let key = &ids.2[i % 2];
                let r = reservation(&ids.0, &ids.1, key, &format!("c{i}"), 10);
                match s.reserve(&r).await {
                    Ok(()) => {}
                    Err(err) if err.kind() == ErrorKind::QuotaExceeded => return None,
                    Err(err) => panic!("unexpected {err}"),
                }
                // The actual cost is at most the worst case reserved.
                let cost = (i as i64 * 7) % 11;
                let first = s.settle(&usage_of(&r, cost)).await.unwrap();
                assert!(first.created);
                // A retry (with another cost) and a late release change nothing.
                let again = s.settle(&usage_of(&r, cost + 1)).await.unwrap();
                assert!(!again.created);
                assert_eq!(again.record.usage.cost, cost);
                assert!(!s.release(&ids.0, &r.request_id).await.unwrap());
                Some((i % 2, cost))
            })
        })
        .collect();
    let mut settled = Vec::new();
    for task in tasks {
        if let Some(done) = task.await.unwrap() {
            settled.push(done);
        }
    }
    let all: i64 = (0..TASKS as i64).map(|i| (i * 7) % 11).sum();
    assert!(all > 175, "the limits must bind: {all}");
    assert!(settled.len() < TASKS, "every request was admitted");
    for (scope, id, hard) in &limits {
        let expected: i64 = settled
            .iter()
            .filter(|(key, _)| *scope != BudgetScope::Key || keys[*key] == *id)
            .map(|(_, cost)| cost)
            .sum();
        let status = s.budget_status(&org.id, *scope, id).await.unwrap();
        assert_eq!(
            (status.spent, status.reserved),
            (expected, 0),
            "{scope:?} {id}"
        );
        assert!(
            status.spent <= *hard,
            "{scope:?} spent {} > {hard}",
            status.spent
        );
    }
    assert!(s.list_reservations(&org.id).await.unwrap().is_empty());
}

pub async fn concurrent_reservations_never_overdraw_a_prepaid_balance(db: Db) {
    let s = db.store.clone();
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Org,
        &org.id,
        BudgetKind::Prepaid,
        None,
        None,
    )
    .await
    .unwrap();
    s.top_up(&org.id, BudgetScope::Org, &org.id, 35)
        .await
        .unwrap();
    let ids = Arc::new((org.id.clone(), project.id.clone(), key.id.clone()));
    // Every admitted reservation stays open, so exactly 3 of 10 fit in 35.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (s, ids) = (s.clone(), ids.clone());
            tokio::spawn(async move {
                let r = reservation(&ids.0, &ids.1, &ids.2, &format!("p{i}"), 10);
                match s.reserve(&r).await {
                    Ok(()) => Some(r),
                    Err(err) if err.kind() == ErrorKind::QuotaExceeded => None,
                    Err(err) => panic!("unexpected {err}"),
                }
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for task in tasks {
        admitted.extend(task.await.unwrap());
    }
    assert_eq!(admitted.len(), 3);
    let status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!((status.reserved, status.available()), (30, Some(5)));
    for r in &admitted {
        s.settle(&usage_of(r, 10)).await.unwrap();
    }
    let status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!(
        (status.spent, status.reserved, status.available()),
        (30, 0, Some(5))
    );
    let over = reservation(&org.id, &project.id, &key.id, "over", 6);
    assert_eq!(
        s.reserve(&over).await.unwrap_err().kind(),
        ErrorKind::QuotaExceeded
    );
    s.reserve(&reservation(&org.id, &project.id, &key.id, "last", 5))
        .await
        .unwrap();
}

pub async fn prepaid_overage_is_charged_and_blocks_until_topped_up(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Org,
        &org.id,
        BudgetKind::Prepaid,
        Some(10),
        None,
    )
    .await
    .unwrap();
    let r = reservation(&org.id, &project.id, &key.id, "o1", 10);
    s.reserve(&r).await.unwrap();
    // The backend produced more than the worst case: charged in full.
    s.settle(&usage_of(&r, 15)).await.unwrap();
    let status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!(
        (status.spent, status.reserved, status.available()),
        (15, 0, Some(0))
    );
    // In debt: nothing is admitted, not even a free request.
    for (id, amount) in [("o2", 0), ("o3", 1)] {
        let err = s
            .reserve(&reservation(&org.id, &project.id, &key.id, id, amount))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{amount}");
    }
    // A top-up first pays the debt.
    let status = s
        .top_up(&org.id, BudgetScope::Org, &org.id, 10)
        .await
        .unwrap();
    assert_eq!(
        (status.budget.hard_limit, status.available()),
        (Some(20), Some(5))
    );
    assert_eq!(
        s.reserve(&reservation(&org.id, &project.id, &key.id, "o4", 6))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::QuotaExceeded
    );
    s.reserve(&reservation(&org.id, &project.id, &key.id, "o5", 5))
        .await
        .unwrap();
}

pub async fn a_monthly_budget_starts_again_each_month_and_a_balance_does_not(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Org,
        &org.id,
        BudgetKind::Prepaid,
        Some(25),
        None,
    )
    .await
    .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Key,
        &key.id,
        BudgetKind::Monthly,
        Some(10),
        None,
    )
    .await
    .unwrap();
    // A request that started last month spends last month's key budget
    // and the one prepaid balance.
    let old = reservation_at(&org.id, &project.id, &key.id, "old", 10, last_month());
    s.reserve(&old).await.unwrap();
    s.settle(&usage_of(&old, 10)).await.unwrap();
    let late = reservation_at(&org.id, &project.id, &key.id, "late", 1, last_month());
    assert_eq!(
        s.reserve(&late).await.unwrap_err().kind(),
        ErrorKind::QuotaExceeded
    );
    let key_status = s
        .budget_status(&org.id, BudgetScope::Key, &key.id)
        .await
        .unwrap();
    assert_eq!(
        (
            key_status.period.as_str(),
            key_status.spent,
            key_status.available()
        ),
        (month_of(now_ms()).as_str(), 0, Some(10))
    );
    let org_status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!((org_status.spent, org_status.available()), (10, Some(15)));
    // This month the key has its whole budget again.
    let now = reservation(&org.id, &project.id, &key.id, "now", 10);
    s.reserve(&now).await.unwrap();
    s.settle(&usage_of(&now, 10)).await.unwrap();
    // The balance has 5 left, whatever the month.
    let status = s
        .budget_status(&org.id, BudgetScope::Org, &org.id)
        .await
        .unwrap();
    assert_eq!((status.spent, status.available()), (20, Some(5)));
    let next = reservation_at(&org.id, &project.id, &key.id, "next", 6, last_month());
    let err = s.reserve(&next).await.unwrap_err();
    assert!(err.to_string().contains("prepaid balance"), "{err}");
}

pub async fn settle_and_release_are_idempotent_on_budgets(db: Db) {
    let s = db.store.clone();
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Org,
        &org.id,
        BudgetKind::Monthly,
        Some(100),
        None,
    )
    .await
    .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Project,
        &project.id,
        BudgetKind::Prepaid,
        Some(80),
        None,
    )
    .await
    .unwrap();
    let r = |id: &str, amount: i64| reservation(&org.id, &project.id, &key.id, id, amount);
    // (spent, reserved) of the organisation's and the project's budgets,
    // which every request here counts against alike.
    let check = |expected: (i64, i64)| {
        let (s, org, project) = (s.clone(), org.id.clone(), project.id.clone());
        async move {
            let o = s.budget_status(&org, BudgetScope::Org, &org).await.unwrap();
            let p = s
                .budget_status(&org, BudgetScope::Project, &project)
                .await
                .unwrap();
            assert_eq!(
                [(o.spent, o.reserved), (p.spent, p.reserved)],
                [expected; 2]
            );
        }
    };

    s.reserve(&r("r1", 40)).await.unwrap();
    s.reserve(&r("r2", 30)).await.unwrap();
    check((0, 70)).await;
    // A second release gives nothing back again.
    assert!(s.release(&org.id, "r2").await.unwrap());
    assert!(!s.release(&org.id, "r2").await.unwrap());
    check((0, 40)).await;
    // A retried settlement, even with another cost, charges nothing again;
    // a release after the settlement gives nothing back.
    assert!(s.settle(&usage_of(&r("r1", 40), 25)).await.unwrap().created);
    let retry = s.settle(&usage_of(&r("r1", 40), 39)).await.unwrap();
    assert!(!retry.created);
    assert_eq!(retry.record.usage.cost, 25);
    assert!(!s.release(&org.id, "r1").await.unwrap());
    check((25, 0)).await;

    // Racing settlements and releases of one reservation: one ledger row,
    // one charge, the hold given back once.
    let r3 = r("r3", 50);
    s.reserve(&r3).await.unwrap();
    check((25, 50)).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (s, r3, org) = (s.clone(), r3.clone(), org.id.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    s.settle(&usage_of(&r3, 20)).await.unwrap().created
                } else {
                    s.release(&org, "r3").await.unwrap();
                    false
                }
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap());
    }
    assert_eq!(created, 1);
    check((45, 0)).await;

    // Racing releases: of each reservation's, exactly one gives its hold back.
    const HELD: usize = 12;
    for j in 0..HELD {
        s.reserve(&r(&format!("r4-{j}"), 2)).await.unwrap();
    }
    check((45, 2 * HELD as i64)).await;
    let tasks: Vec<_> = (0..HELD * 6)
        .map(|i| {
            let (s, org, id) = (s.clone(), org.id.clone(), format!("r4-{}", i % HELD));
            tokio::spawn(async move { s.release(&org, &id).await.unwrap() })
        })
        .collect();
    let mut released = 0;
    for task in tasks {
        released += usize::from(task.await.unwrap());
    }
    assert_eq!(released, HELD);
    check((45, 0)).await;
    // The limits are exact afterwards: the balance has 35 left, not more.
    assert_eq!(
        s.reserve(&r("r5", 36)).await.unwrap_err().kind(),
        ErrorKind::QuotaExceeded
    );
    s.reserve(&r("r6", 35)).await.unwrap();
    assert_eq!(s.list_reservations(&org.id).await.unwrap().len(), 1);
}

pub async fn soft_limits_are_reported_once_under_concurrency_and_again_next_period(db: Db) {
    let s = db.store.clone();
    let (org, project) = db.org_with_project("acme").await;
    let (key, _) = s
        .create_key(&org.id, &new_key(&project, "k"))
        .await
        .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Org,
        &org.id,
        BudgetKind::Monthly,
        None,
        Some(50),
    )
    .await
    .unwrap();
    s.set_budget(
        &org.id,
        BudgetScope::Project,
        &project.id,
        BudgetKind::Monthly,
        Some(1000),
        Some(30),
    )
    .await
    .unwrap();
    let ids = Arc::new((org.id.clone(), project.id.clone(), key.id.clone()));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (s, ids) = (s.clone(), ids.clone());
            tokio::spawn(async move {
                let r = reservation(&ids.0, &ids.1, &ids.2, &format!("s{i}"), 10);
                s.reserve(&r).await.unwrap();
                let (_, reached) = s.settle_reporting(&usage_of(&r, 10)).await.unwrap();
                // A retried settlement never reports again.
                let (_, again) = s.settle_reporting(&usage_of(&r, 10)).await.unwrap();
                assert!(again.is_empty());
                reached
            })
        })
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        reports.extend(task.await.unwrap());
    }
    reports.sort_by_key(|r| r.budget.scope);
    let this_month = month_of(now_ms());
    let seen: Vec<_> = reports
        .iter()
        .map(|r| (r.budget.scope, r.period.as_str(), r.spent))
        .collect();
    assert_eq!(
        seen,
        [
            (BudgetScope::Org, this_month.as_str(), 50),
            (BudgetScope::Project, this_month.as_str(), 30),
        ]
    );
    // Further spend this month reports nothing.
    let more = reservation(&org.id, &project.id, &key.id, "more", 10);
    s.reserve(&more).await.unwrap();
    assert!(s
        .settle_reporting(&usage_of(&more, 10))
        .await
        .unwrap()
        .1
        .is_empty());
    // Another month is another period: reaching the soft limit there
    // reports again.
    let old = reservation_at(&org.id, &project.id, &key.id, "old", 30, last_month());
    s.reserve(&old).await.unwrap();
    let (_, reached) = s.settle_reporting(&usage_of(&old, 30)).await.unwrap();
    let seen: Vec<_> = reached
        .iter()
        .map(|r| (r.budget.scope, r.period.clone(), r.spent))
        .collect();
    assert_eq!(seen, [(BudgetScope::Project, month_of(last_month()), 30)]);
}
