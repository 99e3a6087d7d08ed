//! Incidents of the gateway's backends: opened once per backend, closed,
//! listed, and downtime over a window and per day.

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
    daily_downtime_agrees_with_downtime(store).await;
}

const DAY: i64 = 86_400_000;
const MIN: i64 = 60_000;

/// Per-day downtime (one query per backend) agrees with `downtime_ms` over
/// each day: an incident inside a day, one spanning midnight, one still
/// open (lasting until `until`), days after `until` empty; and the joint
/// downtime of two backends is only the time both were down. Called by
/// [`incidents_open_once_close_and_give_downtime`] on its store, with its
/// own backends.
async fn daily_downtime_agrees_with_downtime(store: &store::Store) {
    let from = 10 * DAY; // a UTC midnight
    let at = |day: i64, minutes: i64| from + day * DAY + minutes * MIN;
    // d1: 11 min on day 0; 23:50 on day 1 to 00:20 on day 2; open since
    // 22:00 on day 3.
    store
        .open_incident("d1", "m", "a", at(0, 600))
        .await
        .unwrap();
    store.close_incidents("d1", at(0, 611)).await.unwrap();
    store
        .open_incident("d1", "m", "b", at(1, 23 * 60 + 50))
        .await
        .unwrap();
    store.close_incidents("d1", at(2, 20)).await.unwrap();
    store
        .open_incident("d1", "m", "c", at(3, 22 * 60))
        .await
        .unwrap();
    // d2: 10:05 to 10:30 on day 0, open since 22:30 on day 3.
    store
        .open_incident("d2", "m", "x", at(0, 605))
        .await
        .unwrap();
    store.close_incidents("d2", at(0, 630)).await.unwrap();
    store
        .open_incident("d2", "m", "y", at(3, 22 * 60 + 30))
        .await
        .unwrap();

    let until = at(3, 23 * 60);
    let daily = store.daily_downtime_ms("d1", from, 5, until).await.unwrap();
    assert_eq!(daily, [11 * MIN, 10 * MIN, 20 * MIN, 60 * MIN, 0]);
    for (i, down) in daily.iter().enumerate() {
        let start = from + i as i64 * DAY;
        let expected = if start < until {
            store
                .downtime_ms("d1", start, (start + DAY).min(until))
                .await
                .unwrap()
        } else {
            0
        };
        assert_eq!(*down, expected, "day {i}");
    }
    // Later, the open incident has grown; the closed ones are unchanged.
    let later = store
        .daily_downtime_ms("d1", from, 5, at(4, 6 * 60))
        .await
        .unwrap();
    assert_eq!(later, [11 * MIN, 10 * MIN, 20 * MIN, 120 * MIN, 360 * MIN]);
    // A window that starts mid-incident counts only its part.
    assert_eq!(
        store
            .daily_downtime_ms("d1", at(2, 0), 2, until)
            .await
            .unwrap(),
        [20 * MIN, 60 * MIN]
    );
    assert_eq!(
        store
            .daily_downtime_ms("none", from, 3, until)
            .await
            .unwrap(),
        [0, 0, 0]
    );
    // Both down at once: 10:05–10:11 on day 0, 22:30–23:00 on day 3.
    assert_eq!(
        store
            .daily_joint_downtime_ms(&["d1", "d2"], from, 5, until)
            .await
            .unwrap(),
        [6 * MIN, 0, 0, 30 * MIN, 0]
    );
    assert_eq!(
        store
            .daily_joint_downtime_ms(&["d1"], from, 5, until)
            .await
            .unwrap(),
        daily
    );
    assert_eq!(
        store
            .daily_joint_downtime_ms(&[], from, 2, until)
            .await
            .unwrap(),
        [0, 0]
    );
}
