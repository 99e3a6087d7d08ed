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
    }
}

fn usage_of(r: &NewReservation, cost: i64) -> NewUsage {
    NewUsage {
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
