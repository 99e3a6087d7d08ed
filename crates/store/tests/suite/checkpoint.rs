//! SQLite's log is checkpointed off the commit path
//! (`store/src/checkpoint.rs`): pages a burst of metering commits wrote to
//! the log are copied into the database by the store's checkpointer, not
//! by a commit (whose own checkpoint waits for 10,000 pages), and the next
//! write starts the log again from its beginning.
//!
//! Read from the `-shm` file, whose header SQLite documents (the WAL-index
//! format): `mxFrame`, the pages in the log, at byte 16, and `nBackfill`,
//! those copied into the database, at byte 96, in native byte order.

use std::time::{Duration, Instant};

use store::{LedgerWrite, LedgerWritten, NewUsage, Store};

use crate::support::Db;

/// (pages in the log, pages of it copied into the database).
fn log_state(shm: &str) -> (u32, u32) {
    let bytes = std::fs::read(shm).expect("the -shm file");
    let at = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().unwrap());
    (at(16), at(96))
}

async fn settle(store: &Store, org: &str, project: &str, i: usize) {
    let usage = NewUsage {
        request_id: format!("req_{i}"),
        org_id: org.into(),
        project_id: Some(project.into()),
        api_key_id: Some(format!("key_{}", i % 7)),
        model: "m".into(),
        backend: "local".into(),
        prompt_tokens: 3,
        completion_tokens: 5,
        cost: 7,
        status: "ok".into(),
        created_at: store::now_ms(),
        ..NewUsage::default()
    };
    let outcome = store.write_batch(&[LedgerWrite::Settle(usage)]).await;
    assert!(
        matches!(
            outcome.unwrap().as_slice(),
            [Ok(LedgerWritten::Settled(..))]
        ),
        "settlement {i}"
    );
}

pub async fn the_checkpointer_copies_the_log_and_it_restarts(db: Db) {
    let store = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let path = db.url.trim_start_matches("sqlite://");
    let shm = format!("{}-shm", path.split('?').next().unwrap());
    // A burst of commits, one settlement each: more than SQLite's default
    // 1,000 pages (a commit would have checkpointed), fewer than 10,000.
    for i in 0..400 {
        settle(store, &org.id, &project.id, i).await;
    }
    let (burst, _) = log_state(&shm);
    assert!(burst > 1_000, "the burst wrote only {burst} pages");
    // Nothing commits now: only the checkpointer can copy the log.
    let deadline = Instant::now() + Duration::from_secs(10);
    let copied = loop {
        let (log, copied) = log_state(&shm);
        if copied == log || Instant::now() > deadline {
            break (log, copied);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        copied.1, copied.0,
        "copied {} of {} pages",
        copied.1, copied.0
    );
    // The next commit writes the log from its beginning again.
    settle(store, &org.id, &project.id, 400).await;
    let (log, _) = log_state(&shm);
    assert!(log < 100, "the log holds {log} pages after a restart");
}
