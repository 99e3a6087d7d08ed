//! Group commit for the metering writes: many reservations, settlements,
//! releases and progress records in one transaction.
//!
//! A metered request makes two or three writes (its reservation, maybe a
//! progress record, its settlement). One transaction each means one commit
//! each and, on SQLite, every writer queuing on the database's one write
//! lock (and sleeping in its busy handler). [`Store::write_batch`] runs a
//! batch of them in one transaction: a write that fails (a budget that
//! cannot hold a reservation, a request id already reserved) rolls back
//! alone — the batch is run again with each write under its own savepoint —
//! and reports its own error; the rest commit together. Nothing is acknowledged before the commit, so the
//! guarantees of one write per transaction hold: a reservation a caller
//! was told about is durable; a settlement lost to a crash before its
//! batch committed leaves its reservation, which the lease sweep settles
//! `interrupted` at its last progress record; the ledger is keyed by
//! organisation and request id, so a settlement written twice (a retried
//! batch) writes one row.

use sqlx::Acquire;

use crate::ledger::{release_in, reserve_in, settle_in};
use crate::{NewReservation, NewUsage, Progress, Recorded, Result, SoftLimitReached, Store};

/// One metering write.
#[derive(Debug, Clone)]
pub enum LedgerWrite {
    /// [`Store::reserve`].
    Reserve(NewReservation),
    /// [`Store::settle_reporting`].
    Settle(NewUsage),
    /// [`Store::release`]: the organisation and request id.
    Release(String, String),
    /// [`Store::record_progress`] (with the serving model and backend when
    /// given: [`Store::record_progress_served`]).
    Progress {
        /// The organisation.
        org_id: String,
        /// The request.
        request_id: String,
        /// What it produced so far.
        progress: Progress,
        /// The model and backend now serving it, when they changed.
        served: Option<(String, String)>,
    },
}

/// What one write of a batch came to.
#[derive(Debug)]
pub enum LedgerWritten {
    /// A reservation was taken.
    Reserved,
    /// A settlement: the row, and the soft limits it reached.
    Settled(Box<Recorded>, Vec<SoftLimitReached>),
    /// A release: whether a reservation was there.
    Released(bool),
    /// A progress record: whether it was written.
    Progressed(bool),
}

async fn apply(conn: &mut sqlx::AnyConnection, write: &LedgerWrite) -> Result<LedgerWritten> {
    match write {
        LedgerWrite::Reserve(reservation) => {
            reserve_in(conn, reservation).await?;
            Ok(LedgerWritten::Reserved)
        }
        LedgerWrite::Settle(usage) => {
            let (recorded, reached) = settle_in(conn, usage).await?;
            Ok(LedgerWritten::Settled(Box::new(recorded), reached))
        }
        LedgerWrite::Release(org_id, request_id) => Ok(LedgerWritten::Released(
            release_in(conn, org_id, request_id).await?,
        )),
        LedgerWrite::Progress {
            org_id,
            request_id,
            progress,
            served,
        } => {
            let done = crate::ledger::progress_in(
                conn,
                org_id,
                request_id,
                *progress,
                served.as_ref().map(|(m, b)| (m.as_str(), b.as_str())),
            )
            .await?;
            Ok(LedgerWritten::Progressed(done))
        }
    }
}

impl Store {
    /// Runs `writes` in one transaction and answers each one's outcome
    /// once the transaction committed. The batch runs set-based (a fixed
    /// number of statements however many writes: `batch_set`), where a
    /// refused write (a budget without room, a request id in use) fails
    /// alone; if a statement fails, that attempt is rolled back whole and
    /// the batch runs again one write at a time. An error of the whole (no
    /// connection; on PostgreSQL the begin or the commit failed) is the
    /// outer `Err`: then nothing of the batch was written.
    ///
    /// On a SQLite file the writes go to the file's writer thread
    /// (`ledger_thread`), which may run them in one transaction with
    /// other callers' writes (each caller still gets its own outcomes),
    /// and runs them again one by one, each in a transaction of its own.
    /// An in-memory SQLite database has no such thread: its writes run
    /// one by one, each under its own savepoint.
    pub async fn write_batch(&self, writes: &[LedgerWrite]) -> Result<Vec<Result<LedgerWritten>>> {
        if self.backend() == crate::Backend::Sqlite {
            return match self.to_ledger_thread(writes) {
                Some(answer) => answer.await.unwrap_or_else(|_| {
                    Err(crate::StoreError::Corrupt(
                        "the ledger writer stopped before answering".into(),
                    ))
                }),
                None => self.write_batch_isolated(writes).await,
            };
        }
        // PostgreSQL: one transaction, set-based (`batch_set`).
        let attempt = async {
            let mut tx = self.pool().begin().await?;
            match crate::batch_set::apply(&mut tx, writes).await {
                Ok(outcomes) => {
                    tx.commit().await?;
                    Ok(outcomes)
                }
                Err(err) => {
                    tx.rollback().await?;
                    Err(err)
                }
            }
        }
        .await;
        match attempt {
            Ok(outcomes) => Ok(outcomes),
            Err(_) => {
                self.batch_fallbacks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.write_batch_isolated(writes).await
            }
        }
    }

    /// How many batches of this store (and its clones) failed as a set
    /// and ran again one write at a time (a statement failed: the
    /// database was busy, a deadlock with another instance, a bug).
    pub fn batches_run_one_by_one(&self) -> u64 {
        self.batch_fallbacks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Store::write_batch`] with each write under its own savepoint.
    async fn write_batch_isolated(
        &self,
        writes: &[LedgerWrite],
    ) -> Result<Vec<Result<LedgerWritten>>> {
        let mut tx = self.pool().begin().await?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let mut savepoint = tx.begin().await?;
            match apply(&mut savepoint, write).await {
                Ok(written) => {
                    savepoint.commit().await?;
                    outcomes.push(Ok(written));
                }
                Err(err) => {
                    savepoint.rollback().await?;
                    outcomes.push(Err(err));
                }
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}
