//! The metering writer of a store on a SQLite file: one thread that owns
//! one connection (`sqlite_raw`), takes every metering write of the
//! process from one queue, gathers what waits into a batch (group commit,
//! up to [`MAX_BATCH`] writes), runs it in one transaction
//! (`batch_sqlite`) and answers each caller.
//!
//! A write costs one wake of this thread and one of its caller: the batch
//! runs here, start to commit, with no other thread to hop to (through
//! sqlx a batch went to its connection's thread and back two or three
//! times, each return a wake of the writer's task among the requests'
//! tasks). A write waits while the batch before it commits, then goes with
//! everything that arrived meanwhile; at rest it goes alone at once.
//! Nothing is answered before its batch committed, so what a caller is
//! told is durable (`batch` has the crash and exactly-once argument). A
//! batch that fails as a whole (the database busy past its 5 s timeout, a
//! statement failing) is rolled back and its writes run again one by one,
//! each in its own transaction, so one bad write fails alone.
//!
//! The thread ends when the store is closed or its last clone dropped (the
//! queue's last sender gone), closing its connection.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use crate::batch::{LedgerWrite, LedgerWritten};
use crate::sqlite_raw::RawConn;
use crate::{batch_sqlite, Result, StoreError};

/// The most writes one transaction takes.
pub(crate) const MAX_BATCH: usize = 256;

type Outcomes = Result<Vec<Result<LedgerWritten>>>;

/// Where the outcomes of writes handed over arrive.
pub(crate) type Answer = oneshot::Receiver<Outcomes>;

/// Writes handed over together, and where their outcomes go.
struct Job {
    writes: Vec<LedgerWrite>,
    reply: oneshot::Sender<Outcomes>,
}

/// A handle on the writer thread.
#[derive(Debug)]
pub(crate) struct LedgerThread {
    queue: mpsc::Sender<Job>,
}

impl LedgerThread {
    /// Starts the writer for the database file `path`; `fallbacks` counts
    /// its batches that failed as a whole. `None` if no thread could start.
    pub(crate) fn start(path: PathBuf, fallbacks: Arc<AtomicU64>) -> Option<LedgerThread> {
        let (queue, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("parlance-ledger".into())
            .spawn(move || serve(&path, &jobs, &fallbacks))
            .ok()?;
        Some(LedgerThread { queue })
    }

    /// Commits `writes` (with whatever else waits) and answers each one's
    /// outcome once committed; `None` if the thread is gone.
    pub(crate) fn write(&self, writes: Vec<LedgerWrite>) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job { writes, reply }).ok()?;
        Some(answer)
    }
}

/// The connection, opened when first needed and again after one had to be
/// closed.
struct Conn<'p> {
    path: &'p std::path::Path,
    open: Option<RawConn>,
}

impl Conn<'_> {
    fn get(&mut self) -> Result<&mut RawConn> {
        let conn = match self.open.take() {
            Some(conn) => conn,
            None => RawConn::open(self.path)?,
        };
        Ok(self.open.insert(conn))
    }

    /// Runs `writes` as one batch; closes the connection if it is left in
    /// a transaction it could not end.
    fn batch(&mut self, writes: &[LedgerWrite]) -> Outcomes {
        let conn = self.get()?;
        let (outcome, fit) = batch_sqlite::run(conn, writes);
        if !fit {
            self.open = None;
        }
        outcome
    }
}

fn serve(path: &std::path::Path, jobs: &mpsc::Receiver<Job>, fallbacks: &AtomicU64) {
    let mut conn = Conn { path, open: None };
    while let Ok(first) = jobs.recv() {
        let mut taken = first.writes.len();
        let mut batch = vec![first];
        while taken < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => {
                    taken += job.writes.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = batch.iter().map(|job| job.writes.len()).collect();
        let (writes, replies): (Vec<Vec<LedgerWrite>>, Vec<_>) =
            batch.into_iter().map(|job| (job.writes, job.reply)).unzip();
        let writes: Vec<LedgerWrite> = writes.into_iter().flatten().collect();
        let mut outcomes = match conn.batch(&writes) {
            Ok(outcomes) => outcomes,
            Err(err) => {
                fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, writes = writes.len(),
                    "a ledger batch failed; writing its writes one by one");
                writes.iter().map(|write| alone(&mut conn, write)).collect()
            }
        }
        .into_iter();
        for (reply, size) in replies.into_iter().zip(sizes) {
            let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
        }
    }
}

/// `write` in a transaction of its own: its outcome, or the error that
/// failed the transaction.
fn alone(conn: &mut Conn<'_>, write: &LedgerWrite) -> Result<LedgerWritten> {
    let mut outcomes = conn.batch(std::slice::from_ref(write))?;
    outcomes.pop().unwrap_or_else(|| {
        Err(StoreError::Corrupt(
            "a batch of one answered nothing".into(),
        ))
    })
}
