//! Keeps SQLite's WAL checkpoints off the commit path.
//!
//! In WAL mode a commit appends pages to the write-ahead log; a checkpoint
//! syncs the log, copies its pages back into the database file and syncs
//! that, and the log starts again from its beginning at the first write
//! after everything in it was copied. By default SQLite checkpoints inside
//! the commit that grows the log past 1,000 pages: at 2,000 metered
//! requests/s that was every ~45 ms, 3–13 ms each (up to 50 ms when the
//! disk stalled), and every metering write queued behind it waited — the
//! metered p99 of docs/PERFORMANCE.md.
//!
//! So a store on a SQLite file runs one more connection, here, that
//! checkpoints `PASSIVE` every [`BUSY_EVERY`] while pages are being written
//! (every [`IDLE_EVERY`] while none are). A passive checkpoint takes no lock
//! a writer needs and its syncs happen on this connection's thread; when a
//! pass copied everything, the next write starts the log again, so it stays
//! at a few hundred pages. The store's own connections keep SQLite's
//! automatic checkpoint only as a backstop, at 10,000 pages (40 MB), for a
//! checkpointer that stalls or a reader that holds the log: then a commit
//! checkpoints as before. Durability is unchanged (the same syncs, on
//! another thread). Several processes on one file each run their own; a
//! pass that finds another checkpoint under way answers busy and tries
//! again soon.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection, Executor, Row};

use crate::SqliteLedger;

/// Between passes while the last one copied pages: a few batches' worth.
const BUSY_EVERY: Duration = Duration::from_millis(20);
/// Between passes while the log had nothing to copy.
const IDLE_EVERY: Duration = Duration::from_millis(200);

/// Starts the checkpointer for the store whose metering writer is `alive`;
/// it stops when the store is closed or dropped. Without a Tokio runtime
/// nothing runs (SQLite's automatic checkpoint does it all, as before).
pub(crate) fn start(options: &AnyConnectOptions, alive: &Arc<SqliteLedger>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let options = options.clone();
    let alive = Arc::downgrade(alive);
    runtime.spawn(async move {
        let mut conn = None;
        run(&options, &mut conn, &alive).await;
        if let Some(conn) = conn {
            let _ = conn.close().await;
        }
    });
}

/// Passes until the store closes. A failure (the connection could not be
/// opened, a pass failed) only waits: the next try opens a new connection.
async fn run(
    options: &AnyConnectOptions,
    slot: &mut Option<AnyConnection>,
    alive: &Weak<SqliteLedger>,
) {
    let mut wait = IDLE_EVERY;
    let mut last = None;
    loop {
        tokio::time::sleep(wait).await;
        if !alive.upgrade().is_some_and(|kept| kept.is_open()) {
            return;
        }
        wait = IDLE_EVERY;
        let conn = match slot {
            Some(conn) => conn,
            None => match open(options).await {
                Ok(conn) => slot.insert(conn),
                Err(err) => {
                    tracing::debug!(error = %err, "the WAL checkpointer could not connect");
                    continue;
                }
            },
        };
        match pass(conn).await {
            Ok(Some(now)) => {
                // Pages were written since the last pass, or some are left.
                if now.busy || now.copied < now.log || Some(now) != last {
                    wait = BUSY_EVERY;
                }
                last = Some(now);
            }
            // A connection finds the database in WAL mode on a read: before
            // its first (or while the file was new), a checkpoint answers as
            // if it were not.
            Ok(None) => {
                let read = sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await;
                if read.is_err() {
                    *slot = None;
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "a WAL checkpoint pass failed");
                *slot = None;
            }
        }
    }
}

/// A connection for checkpoints: it never waits for a lock (a pass that
/// finds one taken answers busy), and syncs as the store's others do.
async fn open(options: &AnyConnectOptions) -> sqlx::Result<AnyConnection> {
    let mut conn = options.connect().await?;
    conn.execute("PRAGMA busy_timeout = 0; PRAGMA synchronous = NORMAL;")
        .await?;
    Ok(conn)
}

/// What one checkpoint pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pass {
    /// Another checkpoint held the lock.
    busy: bool,
    /// Pages in the log.
    log: i64,
    /// Pages of the log now in the database.
    copied: i64,
}

/// One passive checkpoint; `None` when the database is not in WAL mode.
async fn pass(conn: &mut AnyConnection) -> sqlx::Result<Option<Pass>> {
    // Stepped to its end and not kept prepared: a statement left open
    // holds a read transaction, and a checkpoint inside one does nothing.
    let rows = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    // (busy, pages in the log, pages copied), -1s when not in WAL mode.
    let busy: i64 = row.try_get(0)?;
    let log: i64 = row.try_get(1)?;
    let copied: i64 = row.try_get(2)?;
    // Busy: another connection's checkpoint holds the lock (then SQLite
    // answers -1s too).
    Ok((busy != 0 || log >= 0).then_some(Pass {
        busy: busy != 0,
        log,
        copied,
    }))
}
