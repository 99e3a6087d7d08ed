//! The meter's one ledger writer: every reservation, progress record,
//! settlement and release of a [`crate::Meter`] goes through one task that
//! commits them in batches ([`store::Store::write_batch`], group commit).
//!
//! A write waits in the writer's queue while the batch before it commits,
//! then goes with everything that arrived meanwhile (up to [`MAX_BATCH`]),
//! so under load one commit — and, on SQLite, one take of the write lock —
//! serves many requests, and at rest a write goes alone at once. Each caller
//! is answered only after its batch committed, so what a caller is told is
//! durable (see `store::batch` for the crash and exactly-once argument).
//! When a batch as a whole fails (the database was busy), its writes are
//! retried one by one, so one bad moment fails no more than it did before.
//!
//! A store on a SQLite file gathers its batches itself, on the thread that
//! owns its ledger connection (`store::Store::groups_writes`): there each
//! write goes straight to the store, with no task of ours between.
//!
//! On PostgreSQL [`PG_WRITERS`] batches overlap: while one commits (its
//! round trips and WAL flush), the next gathers what waits and starts its
//! statements. That keeps every guarantee: a write is only sent once the
//! writes it depends on were answered, i.e. committed (a settlement after
//! its reservation), so two batches in flight hold independent writes; the
//! budget counters are locked `FOR UPDATE` in one lock order, as between
//! instances; the ledger and the reservations are keyed by organisation
//! and request id. On an in-memory SQLite database one writer runs.

use std::sync::{Arc, OnceLock};

use store::{LedgerWrite, LedgerWritten, Store, StoreError};
use tokio::sync::{mpsc, oneshot, Mutex};

/// The most writes one transaction takes.
pub const MAX_BATCH: usize = 256;

/// How many batches may be in flight at once on PostgreSQL.
pub const PG_WRITERS: usize = 2;

type Reply = oneshot::Sender<store::Result<LedgerWritten>>;

/// A handle on the writer task, started on first use. Cheap to clone.
#[derive(Clone)]
pub struct LedgerWriter {
    store: Store,
    queue: Arc<OnceLock<mpsc::UnboundedSender<(LedgerWrite, Reply)>>>,
}

impl LedgerWriter {
    /// A writer into `store`; its task starts with the first write.
    pub fn new(store: Store) -> Self {
        LedgerWriter {
            store,
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Commits `write` with whatever else is waiting, and answers its own
    /// outcome once committed. Outside a Tokio runtime it writes alone.
    pub async fn write(&self, write: LedgerWrite) -> store::Result<LedgerWritten> {
        if self.store.groups_writes() || tokio::runtime::Handle::try_current().is_err() {
            return alone(&self.store, &write).await;
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let writers = match self.store.backend() {
                store::Backend::Postgres => PG_WRITERS,
                store::Backend::Sqlite => 1,
            };
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..writers {
                tokio::spawn(run(self.store.clone(), rx.clone()));
            }
            tx
        });
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((write, _))) = queue.send((write, reply)) {
            return alone(&self.store, &write).await;
        }
        match answer.await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::Corrupt(
                "the ledger writer stopped before answering".into(),
            )),
        }
    }
}

async fn alone(store: &Store, write: &LedgerWrite) -> store::Result<LedgerWritten> {
    let mut outcomes = store.write_batch(std::slice::from_ref(write)).await?;
    outcomes.pop().unwrap_or_else(|| {
        Err(StoreError::Corrupt(
            "a batch of one answered nothing".into(),
        ))
    })
}

/// A writer task: takes what is waiting (the queue is held only while
/// taking, so another writer gathers the next batch while this one
/// commits), commits it, answers, again; ends when every handle is gone.
async fn run(store: Store, queue: Arc<Mutex<mpsc::UnboundedReceiver<(LedgerWrite, Reply)>>>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        let taken = queue.lock().await.recv_many(&mut jobs, MAX_BATCH).await;
        if taken == 0 {
            break;
        }
        let (writes, replies): (Vec<LedgerWrite>, Vec<Reply>) = jobs.drain(..).unzip();
        match store.write_batch(&writes).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, writes = writes.len(),
                    "a ledger batch failed; writing its writes one by one");
                for (reply, write) in replies.into_iter().zip(&writes) {
                    let _ = reply.send(alone(&store, write).await);
                }
            }
        }
    }
}
