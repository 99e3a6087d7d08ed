//! Instances own their reservations: only those whose owner's lease has
//! expired (or that have no owner) are orphaned, so one instance's recovery
//! never settles another's live requests.

use store::NewReservation;

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
