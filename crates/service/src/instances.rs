//! Instances own their work: each `parlance serve` process holds a
//! [`Lease`] in the store, renewed by a heartbeat, and the meter names it as
//! the owner of every reservation it makes. Recovery — at start-up and in a
//! periodic sweep on every instance — settles `interrupted` only the
//! reservations whose owner's lease has expired (or that have none), for
//! what their last progress record says they produced. So a restarting
//! instance never settles another's live requests, and a killed instance's
//! requests are settled once its lease runs out, by whichever instance
//! sweeps first (the store's ledger writes one row per request id, so two
//! sweeps racing bill once). The same sweep ends `failed` the background
//! responses such an instance was running (still `queued` or
//! `in_progress`), so a client polling them gets an answer.
//!
//! An instance that stalls longer than its lease (a frozen VM) may find its
//! reservations recovered meanwhile: its own settlements then write no
//! second row, and the request is billed at its last checkpoint. Leases are
//! long enough (30 s by default) for that to mean the instance was gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use store::Store;
use tokio::task::JoinHandle;

use crate::metering::settle_interrupted;
use crate::Result;

/// The default lease: how long an instance that stops renewing keeps its
/// reservations from recovery.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// What the lease and its sweep have done, for `/metrics`.
#[derive(Debug, Default)]
pub struct LeaseStats {
    /// Heartbeats that renewed the lease.
    pub renewals: AtomicU64,
    /// Heartbeats that failed (the store did not answer).
    pub renewal_failures: AtomicU64,
    /// Sweeps run (start-up recovery included).
    pub sweeps: AtomicU64,
    /// Orphaned reservations settled `interrupted`.
    pub recovered: AtomicU64,
}

/// This instance's lease.
pub struct Lease {
    id: String,
    store: Store,
    duration: Duration,
    stats: Arc<LeaseStats>,
}

impl Lease {
    /// Registers a new instance in `store` with a lease of `duration`.
    pub async fn acquire(store: &Store, duration: Duration) -> Result<Lease> {
        let id = format!("inst_{}", crate::random_hex());
        let now = store::now_ms();
        store
            .register_instance(&id, now, now.saturating_add(millis(duration)))
            .await?;
        Ok(Lease {
            id,
            store: store.clone(),
            duration,
            stats: Arc::default(),
        })
    }

    /// The instance id reservations name as their owner.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How long the lease holds without a heartbeat.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// What the lease and its sweeps have done.
    pub fn stats(&self) -> &Arc<LeaseStats> {
        &self.stats
    }

    /// Renews the lease for another [`Lease::duration`]; registers the
    /// instance again if its row was forgotten.
    pub async fn renew(&self) -> Result<()> {
        let now = store::now_ms();
        let until = now.saturating_add(millis(self.duration));
        let renewed = self.store.renew_lease(&self.id, until).await;
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(instance = %self.id,
                    "the lease had expired and was forgotten: registering again");
                self.store.register_instance(&self.id, now, until).await?;
            }
            Err(err) => {
                self.stats.renewal_failures.fetch_add(1, Ordering::Relaxed);
                return Err(err.into());
            }
        }
        self.stats.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Settles every orphaned reservation `interrupted` (see the module);
    /// returns how many. Soft limits these settlements reach are logged.
    pub async fn sweep(&self) -> Result<usize> {
        self.stats.sweeps.fetch_add(1, Ordering::Relaxed);
        let now = store::now_ms();
        let orphaned = self.store.orphaned_reservations(now).await?;
        for reservation in &orphaned {
            let reached = settle_interrupted(&self.store, reservation).await?;
            for notice in reached {
                crate::notify::soft_limit_reached(None, &notice).await;
            }
            tracing::warn!(
                request_id = %reservation.reserved.request_id,
                owner = reservation.reserved.owner.as_deref().unwrap_or("none"),
                "settled an interrupted request whose instance is gone"
            );
        }
        self.stats
            .recovered
            .fetch_add(orphaned.len() as u64, Ordering::Relaxed);
        // Background responses whose runner died with its instance end
        // `failed`, so a client polling them gets an answer.
        crate::responses::fail_orphaned(&self.store, now).await?;
        // Instances gone for a whole lease more, owning nothing, are forgotten.
        self.store
            .forget_instances(now.saturating_sub(millis(self.duration)))
            .await?;
        Ok(orphaned.len())
    }

    /// Renews the lease every third of its duration and sweeps for orphans
    /// every half, on the current runtime, until the handle is aborted.
    pub fn spawn_upkeep(self: &Arc<Self>) -> JoinHandle<()> {
        let lease = Arc::clone(self);
        tokio::spawn(async move {
            let beat = (lease.duration / 3).max(Duration::from_millis(100));
            let sweep_every = (lease.duration / 2).max(Duration::from_millis(100));
            let mut heartbeat = tokio::time::interval(beat);
            let mut sweep = tokio::time::interval(sweep_every);
            loop {
                tokio::select! {
                    _ = heartbeat.tick() => {
                        if let Err(err) = lease.renew().await {
                            tracing::error!(error = %err, "cannot renew the instance lease");
                        }
                    }
                    _ = sweep.tick() => {
                        if let Err(err) = lease.sweep().await {
                            tracing::warn!(error = %err, "the interrupted-request sweep failed");
                        }
                    }
                }
            }
        })
    }

    /// Ends the lease (a clean shutdown, after every settlement was
    /// written): whatever this instance still owns is recoverable at once.
    pub async fn end(&self) {
        if let Err(err) = self.store.end_lease(&self.id).await {
            tracing::warn!(error = %err, "cannot end the instance lease; it will expire");
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
