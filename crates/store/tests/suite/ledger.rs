//! The usage ledger, reservations, settlement and recovery.

use sqlx::Executor;
use store::{Backend, ErrorKind, NewReservation, NewUsage, Progress, Reservation, Store};

use crate::support::Db;

pub fn usage(org: &str, request_id: &str, created_at: i64) -> NewUsage {
    NewUsage {
        endpoint: String::new(),
        request_id: request_id.into(),
        org_id: org.into(),
        project_id: Some("proj_1".into()),
        api_key_id: Some("key_1".into()),
        user_id: None,
        model: "smollm2".into(),
        backend: "local".into(),
        prompt_tokens: 10,
        cached_tokens: 4,
        completion_tokens: 20,
        cost: 700,
        latency_ms: 123,
        status: "ok".into(),
        finish_reason: Some("stop".into()),
        created_at,
    }
}

fn reservation(org: &str, request_id: &str, amount: i64) -> NewReservation {
    NewReservation {
        request_id: request_id.into(),
        org_id: org.into(),
        project_id: Some("proj_1".into()),
        api_key_id: Some("key_1".into()),
        user_id: None,
        amount,
        created_at: 1_000,
        model: Some("m".into()),
        backend: Some("local".into()),
        owner: None,
        endpoint: "/v1/chat/completions".into(),
    }
}

/// A stored reservation that has made no progress yet.
fn stored(org: &str, request_id: &str, amount: i64) -> Reservation {
    Reservation {
        reserved: reservation(org, request_id, amount),
        progress: Progress::default(),
    }
}

async fn count_rows(store: &Store, org: &str) -> usize {
    store
        .list_usage(org, 0, i64::MAX, None, 1000)
        .await
        .unwrap()
        .len()
}

pub async fn ledger_retry_returns_the_existing_row(db: Db) {
    let s = &db.store;
    let first = s
        .record_usage(&usage("org_a", "req-1", 5_000))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.record.usage, usage("org_a", "req-1", 5_000));
    let retry = NewUsage {
        endpoint: String::new(),
        cost: 999_999,
        completion_tokens: 1,
        ..usage("org_a", "req-1", 6_000)
    };
    let second = s.record_usage(&retry).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.record, first.record);
    assert_eq!(count_rows(s, "org_a").await, 1);
    assert_eq!(s.get_usage("org_a", "req-1").await.unwrap(), first.record);

    let bad = NewUsage {
        endpoint: String::new(),
        cached_tokens: 11,
        ..usage("org_a", "req-2", 1)
    };
    assert_eq!(
        s.record_usage(&bad).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    let negative = NewUsage {
        endpoint: String::new(),
        cost: -1,
        ..usage("org_a", "req-2", 1)
    };
    assert_eq!(
        s.record_usage(&negative).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
}

pub async fn ledger_concurrent_inserts_of_one_request_id_write_one_row(db: Db) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let u = NewUsage {
                endpoint: String::new(),
                cost: i,
                ..usage("org_a", "req-race", 7_000)
            };
            if i % 2 == 0 {
                store.record_usage(&u).await
            } else {
                store.settle(&u).await
            }
        }));
    }
    let mut created = 0;
    let mut rows = Vec::new();
    for task in tasks {
        let recorded = task.await.unwrap().unwrap();
        created += usize::from(recorded.created);
        rows.push(recorded.record);
    }
    assert_eq!(created, 1);
    assert!(
        rows.windows(2).all(|w| w[0] == w[1]),
        "every caller sees the same row"
    );
    assert_eq!(count_rows(&db.store, "org_a").await, 1);
}

pub async fn ledger_rows_are_immutable(db: Db) {
    db.store
        .record_usage(&usage("org_a", "req-1", 1))
        .await
        .unwrap();
    let mut raw = db.raw().await;
    assert!(raw
        .execute("UPDATE usage_ledger SET cost = 0")
        .await
        .is_err());
    assert!(raw.execute("DELETE FROM usage_ledger").await.is_err());
    assert_eq!(
        db.store
            .get_usage("org_a", "req-1")
            .await
            .unwrap()
            .usage
            .cost,
        700
    );
}

pub async fn settle_writes_the_row_and_drops_the_reservation_together(db: Db) {
    let s = &db.store;
    s.reserve(&reservation("org_a", "req-1", 5_000))
        .await
        .unwrap();
    let dup = s
        .reserve(&reservation("org_a", "req-1", 1))
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::Conflict);
    assert_eq!(s.list_reservations("org_a").await.unwrap().len(), 1);

    let settled = s.settle(&usage("org_a", "req-1", 2_000)).await.unwrap();
    assert!(settled.created);
    assert!(s.list_reservations("org_a").await.unwrap().is_empty());
    assert_eq!(s.get_usage("org_a", "req-1").await.unwrap(), settled.record);
    // Settling again (a retry) changes nothing.
    let again = s.settle(&usage("org_a", "req-1", 3_000)).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.record, settled.record);
    assert_eq!(count_rows(s, "org_a").await, 1);

    // Concurrent settlements of one reservation: one row, reservation gone.
    s.reserve(&reservation("org_a", "req-2", 5_000))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = s.clone();
        tasks.push(tokio::spawn(async move {
            store.settle(&usage("org_a", "req-2", 4_000)).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap().unwrap().created);
    }
    assert_eq!(created, 1);
    assert!(s.recover().await.unwrap().is_empty());
    assert_eq!(count_rows(s, "org_a").await, 2);
}

pub async fn settle_rolls_back_when_the_delete_fails(db: Db) {
    let s = &db.store;
    s.reserve(&reservation("org_a", "req-x", 50)).await.unwrap();
    // Make deleting reservations fail, after the ledger insert succeeded.
    let mut raw = db.raw().await;
    let refuse = match s.backend() {
        Backend::Sqlite => {
            "CREATE TRIGGER reservations_locked BEFORE DELETE ON reservations \
             BEGIN SELECT RAISE(ABORT, 'reservations are locked'); END"
        }
        Backend::Postgres => {
            "CREATE TRIGGER reservations_locked BEFORE DELETE ON reservations \
             FOR EACH ROW EXECUTE FUNCTION parlance_refuse_change('locked')"
        }
    };
    raw.execute(refuse).await.unwrap();
    let err = s.settle(&usage("org_a", "req-x", 2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    // Nothing of the failed settlement stayed: the reservation is still there
    // and there is no ledger row.
    assert_eq!(s.list_reservations("org_a").await.unwrap().len(), 1);
    assert_eq!(count_rows(s, "org_a").await, 0);
    let unlock = match s.backend() {
        Backend::Sqlite => "DROP TRIGGER reservations_locked",
        Backend::Postgres => "DROP TRIGGER reservations_locked ON reservations",
    };
    raw.execute(unlock).await.unwrap();
    // Once deletes work again, the same settlement goes through.
    assert!(s.settle(&usage("org_a", "req-x", 2)).await.unwrap().created);
    assert!(s.list_reservations("org_a").await.unwrap().is_empty());
}

pub async fn recover_lists_leftover_reservations(db: Db) {
    let s = &db.store;
    for id in ["req-1", "req-2", "req-3"] {
        s.reserve(&reservation("org_a", id, 10)).await.unwrap();
    }
    s.reserve(&reservation("org_b", "req-4", 20)).await.unwrap();
    s.settle(&usage("org_a", "req-1", 1)).await.unwrap();
    assert!(s.release("org_a", "req-2").await.unwrap());
    assert!(!s.release("org_a", "req-2").await.unwrap());
    // Another organisation cannot release A's reservation.
    assert!(!s.release("org_b", "req-3").await.unwrap());

    // A "restart": a new store on the same database.
    let restarted = Store::connect(&db.url).await.unwrap();
    let left = restarted.recover().await.unwrap();
    let ids: Vec<&str> = left
        .iter()
        .map(|r| r.reserved.request_id.as_str())
        .collect();
    assert_eq!(ids, ["req-3", "req-4"]);
    assert_eq!(left[0], stored("org_a", "req-3", 10));
    restarted.close().await;
}

pub async fn usage_rows_are_isolated_by_org(db: Db) {
    let s = &db.store;
    s.record_usage(&usage("org_a", "req-a", 10)).await.unwrap();
    s.reserve(&reservation("org_a", "req-r", 10)).await.unwrap();
    assert_eq!(
        s.get_usage("org_b", "req-a").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(count_rows(s, "org_b").await, 0);
    assert!(s.list_reservations("org_b").await.unwrap().is_empty());
    // B's use of A's request id writes B's own row and leaves A's alone.
    let b = s.record_usage(&usage("org_b", "req-a", 20)).await.unwrap();
    assert!(b.created);
    assert_eq!(b.record.usage.org_id, "org_b");
    assert_eq!(count_rows(s, "org_b").await, 1);
    assert_eq!(
        s.get_usage("org_a", "req-a")
            .await
            .unwrap()
            .usage
            .created_at,
        10
    );
}

pub async fn request_ids_are_unique_per_org(db: Db) {
    let s = &db.store;
    // Two organisations reserve, settle and record under one request id.
    s.reserve(&reservation("org_a", "req-1", 10)).await.unwrap();
    s.reserve(&reservation("org_b", "req-1", 20)).await.unwrap();
    assert_eq!(
        s.reserve(&reservation("org_b", "req-1", 30))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    assert_eq!(s.recover().await.unwrap().len(), 2);
    let a = s.settle(&usage("org_a", "req-1", 1_000)).await.unwrap();
    // Settling A's request leaves B's reservation with the same id.
    assert_eq!(
        s.list_reservations("org_b").await.unwrap(),
        vec![stored("org_b", "req-1", 20)]
    );
    let b = s
        .settle(&NewUsage {
            endpoint: String::new(),
            cost: 5,
            ..usage("org_b", "req-1", 2_000)
        })
        .await
        .unwrap();
    assert!(a.created && b.created);
    assert_ne!(a.record.id, b.record.id);
    assert!(s.recover().await.unwrap().is_empty());
    // Each organisation reads its own row.
    let got_a = s.get_usage("org_a", "req-1").await.unwrap();
    let got_b = s.get_usage("org_b", "req-1").await.unwrap();
    assert_eq!(got_a, a.record);
    assert_eq!(got_b, b.record);
    assert_eq!((got_a.usage.cost, got_b.usage.cost), (700, 5));
    assert_eq!(count_rows(s, "org_a").await, 1);
    assert_eq!(count_rows(s, "org_b").await, 1);

    // A retry within one organisation still returns its existing row.
    for org in ["org_a", "org_b"] {
        let retry = s.record_usage(&usage(org, "req-1", 9_000)).await.unwrap();
        assert!(!retry.created);
        assert_eq!(retry.record, s.get_usage(org, "req-1").await.unwrap());
        let again = s.settle(&usage(org, "req-1", 9_000)).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.record, retry.record);
        assert_eq!(count_rows(s, org).await, 1);
    }

    // Releasing is per organisation too.
    s.reserve(&reservation("org_a", "req-2", 10)).await.unwrap();
    s.reserve(&reservation("org_b", "req-2", 10)).await.unwrap();
    assert!(s.release("org_a", "req-2").await.unwrap());
    assert!(!s.release("org_a", "req-2").await.unwrap());
    assert_eq!(
        s.list_reservations("org_b").await.unwrap(),
        vec![stored("org_b", "req-2", 10)]
    );

    // Concurrent first inserts of one id by two organisations: one row each.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = s.clone();
        let org = if i % 2 == 0 { "org_a" } else { "org_b" };
        tasks.push(tokio::spawn(async move {
            store.record_usage(&usage(org, "req-3", 3_000)).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap().unwrap().created);
    }
    assert_eq!(created, 2);
    assert_eq!(count_rows(s, "org_a").await, 2);
    assert_eq!(count_rows(s, "org_b").await, 2);
}
