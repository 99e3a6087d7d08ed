//! Incidents of the gateway's backends: opened once per backend, closed,
//! listed, and downtime over a window.

use crate::support::Db;

pub async fn incidents_open_once_close_and_give_downtime(db: Db) {
    let store = &db.store;
    let first = store
        .open_incident("b1", "m", "5 failures", 1_000)
        .await
        .unwrap();
    let again = store
        .open_incident("b1", "m", "again", 1_500)
        .await
        .unwrap();
    assert_eq!(first, again, "one open incident per backend");
    store.open_incident("b2", "m", "x", 2_000).await.unwrap();
    assert_eq!(store.downtime_ms("b1", 0, 3_000).await.unwrap(), 2_000);
    assert_eq!(store.close_incidents("b1", 4_000).await.unwrap(), 1);
    assert_eq!(store.close_incidents("b1", 5_000).await.unwrap(), 0);
    assert_eq!(store.downtime_ms("b1", 0, 10_000).await.unwrap(), 3_000);
    assert_eq!(store.downtime_ms("b1", 3_500, 10_000).await.unwrap(), 500);
    assert_eq!(store.downtime_ms("b1", 5_000, 10_000).await.unwrap(), 0);
    // A second incident after the first closed is a new one.
    let second = store
        .open_incident("b1", "m", "again", 6_000)
        .await
        .unwrap();
    assert_ne!(second, first);
    assert_eq!(store.downtime_ms("b1", 0, 7_000).await.unwrap(), 4_000);
    store.close_incidents("b1", 7_000).await.unwrap();
    let listed = store.list_incidents(0, 10).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].id, second);
    assert_eq!(listed[1].backend, "b2");
    assert_eq!(listed[1].closed_at, None);
    assert_eq!(listed[2].closed_at, Some(4_000));
    assert_eq!(listed[2].reason, "5 failures");
    // An old closed one is left out; an open one is always listed.
    let recent = store.list_incidents(6_500, 10).await.unwrap();
    let backends: Vec<(&str, Option<i64>)> = recent
        .iter()
        .map(|i| (i.backend.as_str(), i.closed_at))
        .collect();
    assert_eq!(backends, [("b1", Some(7_000)), ("b2", None)]);
}
