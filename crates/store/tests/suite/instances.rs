//! Instances own their reservations: only those whose owner's lease has
//! expired (or that have no owner) are orphaned, so one instance's recovery
//! never settles another's live requests.

use store::{NewReservation, NewStoredResponse};

use crate::support::Db;

fn reservation(org_id: &str, request_id: &str, owner: Option<&str>) -> NewReservation {
    NewReservation {
        request_id: request_id.into(),
        org_id: org_id.into(),
        amount: 10,
        created_at: 1_000,
        owner: owner.map(str::to_owned),
        ..NewReservation::default()
    }
}

fn ids(reservations: &[store::Reservation]) -> Vec<&str> {
    reservations
        .iter()
        .map(|r| r.reserved.request_id.as_str())
        .collect()
}

pub async fn only_an_expired_or_missing_owner_orphans_a_reservation(db: Db) {
    let store = &db.store;
    let (org, _) = db.org_with_project("acme").await;
    store.register_instance("inst_a", 0, 10_000).await.unwrap();
    store.register_instance("inst_b", 0, 5_000).await.unwrap();
    store
        .reserve(&reservation(&org.id, "a-live", Some("inst_a")))
        .await
        .unwrap();
    store
        .reserve(&reservation(&org.id, "b-live", Some("inst_b")))
        .await
        .unwrap();
    store
        .reserve(&reservation(&org.id, "gone", Some("inst_gone")))
        .await
        .unwrap();
    store
        .reserve(&reservation(&org.id, "legacy", None))
        .await
        .unwrap();
    let owners: Vec<Option<String>> = store
        .list_reservations(&org.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.reserved.owner)
        .collect();
    assert!(owners.contains(&Some("inst_a".into())), "{owners:?}");

    // Both leases hold: only the unowned and the vanished owner's.
    let orphaned = store.orphaned_reservations(4_000).await.unwrap();
    assert_eq!(ids(&orphaned), ["gone", "legacy"]);
    // inst_b's lease expires at 5 000 …
    let orphaned = store.orphaned_reservations(6_000).await.unwrap();
    assert_eq!(ids(&orphaned), ["b-live", "gone", "legacy"]);
    // … unless its heartbeat renews it; a renewal never shortens a lease.
    assert!(store.renew_lease("inst_b", 20_000).await.unwrap());
    assert!(store.renew_lease("inst_b", 7_000).await.unwrap());
    let orphaned = store.orphaned_reservations(15_000).await.unwrap();
    assert_eq!(ids(&orphaned), ["a-live", "gone", "legacy"]);
    let live: Vec<String> = store
        .live_instances(15_000)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(live, ["inst_b"]);

    // An instance that still owns a reservation is not forgotten; one that
    // owns none is, and renewing a forgotten instance says so.
    assert_eq!(store.forget_instances(15_000).await.unwrap(), 0);
    store.release(&org.id, "a-live").await.unwrap();
    assert_eq!(store.forget_instances(15_000).await.unwrap(), 1);
    assert!(!store.renew_lease("inst_a", 30_000).await.unwrap());
    // A clean shutdown ends the lease: what it still owns is orphaned at once.
    store.end_lease("inst_b").await.unwrap();
    let orphaned = store.orphaned_reservations(15_000).await.unwrap();
    assert_eq!(ids(&orphaned), ["b-live", "gone", "legacy"]);
}

/// A background response's owner: only pending responses whose owner's
/// lease expired (or whose owner is gone) are orphaned, and failing one
/// takes only while it is still pending and still that owner's.
pub async fn only_an_expired_owner_orphans_a_pending_background_response(db: Db) {
    let store = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (o, p) = (org.id.as_str(), project.id.as_str());
    store.register_instance("inst_a", 0, 10_000).await.unwrap();
    store.register_instance("inst_b", 0, 5_000).await.unwrap();
    let background = |id: &str, status: &str, owner: Option<&str>| NewStoredResponse {
        id: id.into(),
        status: status.into(),
        response: format!(r#"{{"id":"{id}","status":"{status}"}}"#),
        input_items: "[]".into(),
        context: "[]".into(),
        owner: owner.map(str::to_owned),
        ..NewStoredResponse::default()
    };
    for new in [
        background("resp_a", "in_progress", Some("inst_a")),
        background("resp_b", "queued", Some("inst_b")),
        background("resp_b_done", "completed", Some("inst_b")),
        background("resp_gone", "in_progress", Some("inst_gone")),
        background("resp_whole", "in_progress", None),
    ] {
        store.create_response(o, p, &new).await.unwrap();
    }
    let orphaned_ids = |now: i64| async move {
        let mut ids: Vec<String> = store
            .orphaned_responses(now)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    };
    // Both leases hold: only the vanished owner's.
    assert_eq!(orphaned_ids(4_000).await, ["resp_gone"]);
    // inst_b's lease expires at 5 000: its pending response, not its
    // finished one.
    assert_eq!(orphaned_ids(6_000).await, ["resp_b", "resp_gone"]);

    let failed = r#"{"id":"resp_b","status":"failed"}"#;
    // Another owner's claim, or another organisation's, takes nothing.
    assert!(!store
        .fail_orphaned_response(o, "resp_b", "inst_a", failed)
        .await
        .unwrap());
    assert!(!store
        .fail_orphaned_response("org_other", "resp_b", "inst_b", failed)
        .await
        .unwrap());
    assert!(store
        .fail_orphaned_response(o, "resp_b", "inst_b", failed)
        .await
        .unwrap());
    let stored = store.get_response(o, p, "resp_b").await.unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.response.as_str()),
        ("failed", failed)
    );
    // Failed once: no longer pending, so neither orphaned nor failed again.
    assert!(!store
        .fail_orphaned_response(o, "resp_b", "inst_b", failed)
        .await
        .unwrap());
    assert_eq!(orphaned_ids(6_000).await, ["resp_gone"]);
    // Its runner was only stalled: when it comes back and ends the
    // response, the sweep's `failed` stands (the first end wins).
    assert!(!store
        .update_response(o, p, "resp_b", "completed", r#"{"id":"resp_b"}"#, None)
        .await
        .unwrap());
    assert!(store.response_should_stop(o, p, "resp_b").await.unwrap());
    let stored = store.get_response(o, p, "resp_b").await.unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.response.as_str()),
        ("failed", failed)
    );
}

/// Migration 0015 (reservations as one B-tree) copies every open
/// reservation whole, progress included: run again over filled rows, it
/// leaves them as they were, and the sweep still finds the orphaned one.
pub async fn open_reservations_survive_the_one_btree_migration(db: Db) {
    let store = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    store.register_instance("inst_a", 0, 10_000).await.unwrap();
    let full = NewReservation {
        project_id: Some(project.id.clone()),
        api_key_id: Some("key_1".into()),
        user_id: Some("user_1".into()),
        model: Some("m".into()),
        backend: Some("local".into()),
        endpoint: "/v1/chat/completions".into(),
        amount: 1_234,
        ..reservation(&org.id, "live", Some("inst_a"))
    };
    store.reserve(&full).await.unwrap();
    store
        .reserve(&reservation(&org.id, "orphan", Some("inst_gone")))
        .await
        .unwrap();
    let progress = store::Progress {
        prompt_tokens: 7,
        cached_tokens: 2,
        completion_tokens: 5,
        cost: 99,
    };
    assert!(store
        .record_progress(&org.id, "live", progress)
        .await
        .unwrap());
    let before = store.list_reservations(&org.id).await.unwrap();
    assert_eq!(before.len(), 2);
    assert!(before
        .iter()
        .any(|r| r.reserved == full && r.progress == progress));

    use sqlx::Executor;
    let mut raw = db.raw().await;
    raw.execute("DELETE FROM _sqlx_migrations WHERE version = 15")
        .await
        .unwrap();
    store.migrate().await.unwrap();

    assert_eq!(store.list_reservations(&org.id).await.unwrap(), before);
    let orphaned = store.orphaned_reservations(4_000).await.unwrap();
    assert_eq!(ids(&orphaned), ["orphan"]);
    // The key still refuses a second reservation of the same id.
    assert!(store.reserve(&full).await.is_err());
}
